//! The REST API on channels (ABLY-PROTOCOL.md §6): publish, history,
//! presence, channel metadata. Bodies are JSON or MessagePack (`Accept` /
//! `Content-Type: application/x-msgpack`); errors are
//! `{"error": {message, code, statusCode}}` with `x-ably-errorcode` and
//! `x-ably-errormessage` headers, the HTTP status equal to `statusCode`.
//!
//! Credentials: `Authorization: Basic base64(keyName:secret)` (over TLS, or
//! on loopback, as for MQTT), `Authorization: Bearer <token>` (the token
//! as is or base64-encoded, as the Ably SDKs send it), or none when the
//! server accepts anonymous clients. The same capabilities as every other
//! protocol apply.

// Handlers return their refusal as a ready `Response` (`Result<_,
// Response>`): it is large, but only built on the error path of a request.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use tern_auth::{Op, Principal};
use tern_hub::{HistoryQuery, PublishOnce};
use tern_realtime::message::{decode, encode};
use tern_realtime::{Data, ErrorInfo, Format, Message, channel_name, serial_of};

use crate::{HttpState, Peer};

/// Most messages a history page returns.
pub const HISTORY_LIMIT_MAX: usize = 1000;
/// Messages a history page returns when `limit` is not given.
pub const HISTORY_LIMIT_DEFAULT: usize = 100;
/// Most messages in one publish request.
pub const PUBLISH_BATCH_MAX: usize = 1000;

/// An Ably error response.
pub fn ably_error(e: &ErrorInfo) -> Response {
    let status = StatusCode::from_u16(e.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "error": e });
    let mut r = (status, body.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&e.code.to_string()) {
        h.insert("x-ably-errorcode", v);
    }
    let printable: String = e
        .message
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&printable) {
        h.insert("x-ably-errormessage", v);
    }
    r
}

fn err(status: u16, code: u32, message: impl Into<String>) -> Response {
    ably_error(&ErrorInfo::new(code, status, message))
}

/// The response format the client asked for.
fn response_format(headers: &HeaderMap) -> Format {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/x-msgpack") {
        Format::Msgpack
    } else {
        Format::Json
    }
}

/// The format of a request body.
fn body_format(headers: &HeaderMap) -> Format {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("application/x-msgpack") {
        Format::Msgpack
    } else {
        Format::Json
    }
}

/// A body in `format`, status `status`.
fn body<T: Serialize>(status: StatusCode, value: &T, format: Format) -> Response {
    let mut r = (status, encode(value, format)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

/// Who the request is, from its credentials; refusals are responses.
pub(crate) fn authenticate(
    st: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<Principal, Response> {
    let policy = &st.mqtt.auth;
    if policy.is_blocked(peer.ip()) {
        return Err(err(
            429,
            42910,
            "too many failed logins from this address; try again later",
        ));
    }
    let auth = &policy.authenticator;
    let key_login = |name: &str, secret: &str| -> Result<Principal, Response> {
        if !st.secure && !policy.key_login_plain.unwrap_or(st.loopback) {
            return Err(err(
                401,
                40103,
                "a key is accepted over TLS only on this listener; use a token",
            ));
        }
        auth.authenticate_key(name, secret).map_err(|e| {
            policy.record_failure(peer.ip());
            err(e.http_status(), e.ably_code(), e.to_string())
        })
    };
    let token_login = |token: &str| -> Result<Principal, Response> {
        let now = tern_auth::now_ms();
        match auth.authenticate_token(token, now) {
            Ok(p) => Ok(p),
            Err(first) => {
                // The Ably SDKs send the token base64-encoded.
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(token.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                match decoded.map(|t| auth.authenticate_token(&t, now)) {
                    Some(Ok(p)) => Ok(p),
                    _ => Err(err(
                        first.http_status(),
                        first.ably_code(),
                        first.to_string(),
                    )),
                }
            }
        }
    };
    let mut principal = if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| err(401, 40101, "invalid Authorization header"))?
            .trim();
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or_else(|| err(401, 40101, "invalid Authorization header"))?;
        if scheme.eq_ignore_ascii_case("basic") {
            let (name, secret) = crate::tokens::decode_basic(rest)
                .ok_or_else(|| err(401, 40101, "invalid Basic credentials"))?;
            key_login(&name, &secret)?
        } else if scheme.eq_ignore_ascii_case("bearer") {
            token_login(rest.trim())?
        } else {
            return Err(err(401, 40101, "unsupported Authorization scheme"));
        }
    } else if let Some(key) = query.get("key") {
        let (name, secret) = key
            .split_once(':')
            .ok_or_else(|| err(401, 40101, "invalid key"))?;
        key_login(name, secret)?
    } else if let Some(t) = query
        .get("accessToken")
        .or_else(|| query.get("access_token"))
    {
        token_login(t)?
    } else if policy.allow_anonymous {
        auth.anonymous(Arc::clone(&policy.anonymous_capability))
    } else {
        return Err(err(
            401,
            40101,
            "credentials required: Basic auth with a key, or a Bearer token",
        ));
    };
    // A key may act as any client id; ably-js names it in X-Ably-ClientId.
    if principal.client_id.is_none()
        && principal.kind == tern_auth::PrincipalKind::Key
        && let Some(v) = headers.get("x-ably-clientid")
    {
        let id = v
            .to_str()
            .ok()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| err(400, 40012, "invalid X-Ably-ClientId header"))?;
        principal.client_id = Some(id);
    }
    Ok(principal)
}

/// The common start of a channel request: who it is, the channel (from
/// the path segment), and whether any of `ops` is allowed on it.
fn channel_request(
    st: &HttpState,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    raw: &str,
    ops: &[Op],
) -> Result<(Principal, String), Response> {
    let principal = authenticate(st, peer, headers, query)?;
    let channel = channel(raw)?;
    let auth = &st.mqtt.auth.authenticator;
    if !ops.iter().any(|op| auth.check(&principal, op, &channel)) {
        let what: Vec<String> = ops.iter().map(|op| format!("{op:?}")).collect();
        return Err(err(
            401,
            40160,
            format!(
                "the credentials do not allow {} on channel {channel}",
                what.join(" or ")
            ),
        ));
    }
    Ok((principal, channel))
}

/// A channel path segment: percent-decoded by the router; qualifiers
/// removed and the name checked.
fn channel(raw: &str) -> Result<String, Response> {
    channel_name(raw)
        .map(str::to_owned)
        .map_err(|e| ably_error(&e))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Message>),
    One(Box<Message>),
}

/// `POST /channels/{name}/messages`: one message or an array (JSON or
/// msgpack); with `?enveloped=false` the body itself is the data of one
/// message (`name` from the query), typed by its `Content-Type`.
pub async fn publish(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    request_body: axum::body::Body,
) -> Response {
    let (principal, channel) =
        match channel_request(&st, peer, &headers, &query, &raw, &[Op::Publish]) {
            Ok(v) => v,
            Err(r) => return r,
        };
    let limit = st.realtime.cfg.message_bytes_max;
    let Ok(bytes) = axum::body::to_bytes(request_body, limit.saturating_mul(2).max(1024)).await
    else {
        return err(
            413,
            40009,
            format!("request body above {} bytes", limit * 2),
        );
    };
    let messages: Vec<Message> = if query.get("enveloped").map(String::as_str) == Some("false") {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream");
        let data = if ct.starts_with("application/json") {
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) => Data::Json(v),
                Err(e) => return err(400, 40000, format!("invalid JSON body: {e}")),
            }
        } else if ct.starts_with("text/") {
            match String::from_utf8(bytes.to_vec()) {
                Ok(t) => Data::Text(t),
                Err(_) => return err(400, 40013, "a text body must be UTF-8"),
            }
        } else {
            Data::Binary(bytes.clone())
        };
        vec![Message {
            name: query.get("name").cloned(),
            data: Some(data),
            ..Message::default()
        }]
    } else {
        match decode::<OneOrMany>(&bytes, body_format(&headers)) {
            Ok(OneOrMany::Many(v)) => v,
            Ok(OneOrMany::One(m)) => vec![*m],
            Err(e) => return ably_error(&e.to_error_info()),
        }
    };
    if messages.is_empty() {
        return err(400, 40000, "no message to publish");
    }
    if messages.len() > PUBLISH_BATCH_MAX {
        return err(
            400,
            40009,
            format!("at most {PUBLISH_BATCH_MAX} messages per request"),
        );
    }
    let total: usize = messages.iter().map(Message::data_len).sum();
    if total > limit {
        return err(
            400,
            40009,
            format!("messages of {total} bytes exceed the maximum message size of {limit} bytes"),
        );
    }
    // The identity: a bound client id fills in or must match.
    let bound = principal.client_id.clone().filter(|c| c != "*");
    let mut hub_msgs = Vec::with_capacity(messages.len());
    for mut m in messages {
        match (&m.client_id, &bound) {
            (Some(given), Some(b)) if given != b => {
                return err(
                    400,
                    40012,
                    format!("clientId {given} does not match the credentials' {b}"),
                );
            }
            (None, Some(b)) => m.client_id = Some(b.clone()),
            _ => {}
        }
        m.connection_id = None;
        match m.into_hub(&channel, None) {
            Ok(h) => hub_msgs.push(h),
            Err(e) => return ably_error(&e),
        }
    }
    let hub = &st.mqtt.hub;
    let mut serials = Vec::with_capacity(hub_msgs.len());
    let mut first_id = None;
    let mut durable = 0;
    for h in hub_msgs {
        let id = h.props.as_ref().and_then(|p| p.id.clone());
        match hub.publish_once(h) {
            Ok(PublishOnce::Published(r, seq)) => {
                durable = durable.max(r.durable_seq);
                serials.push(serial_of(seq));
                first_id.get_or_insert_with(|| id.unwrap_or_else(|| tern_realtime::id_of(seq)));
            }
            Ok(PublishOnce::Duplicate(seq)) => {
                serials.push(serial_of(seq));
                first_id.get_or_insert_with(|| id.unwrap_or_else(|| tern_realtime::id_of(seq)));
            }
            Err(e) => return err(400, 40010, format!("invalid channel name: {e}")),
        }
    }
    // Answer once the messages are in history (when the channel keeps it).
    if durable > 0
        && let Some(j) = hub.journal()
        && let Err(e) = j.wait_durable(durable).await
    {
        return if e.disk_full {
            err(
                507,
                50000,
                "the store's disk is full; the message may not be kept",
            )
        } else {
            err(500, 50000, "the store failed; the message may not be kept")
        };
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Published {
        channel: String,
        message_id: String,
        serials: Vec<String>,
    }
    body(
        StatusCode::CREATED,
        &Published {
            channel,
            message_id: first_id.unwrap_or_default(),
            serials,
        },
        response_format(&headers),
    )
}

/// A list response: the items, and the `Link` header (or, with
/// `envelope=json`, both wrapped in a 200 body for browsers).
fn list<T: Serialize>(
    items: &[T],
    links: Vec<(String, &str)>,
    query: &HashMap<String, String>,
    format: Format,
) -> Response {
    let link = links
        .iter()
        .map(|(target, rel)| format!("<{target}>; rel=\"{rel}\""))
        .collect::<Vec<_>>()
        .join(", ");
    if query.get("envelope").map(String::as_str) == Some("json") {
        let v = serde_json::json!({
            "statusCode": 200,
            "response": items,
            "headers": { "link": link },
        });
        return body(StatusCode::OK, &v, Format::Json);
    }
    let mut r = body(StatusCode::OK, &items, format);
    if !link.is_empty()
        && let Ok(v) = HeaderValue::from_str(&link)
    {
        r.headers_mut().insert(header::LINK, v);
    }
    r
}

fn num(query: &HashMap<String, String>, name: &str) -> Result<Option<u64>, Response> {
    match query.get(name) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| err(400, 40003, format!("{name} must be a whole number"))),
    }
}

/// `limit`: default 100, between 1 and 1000.
fn limit(query: &HashMap<String, String>) -> Result<usize, Response> {
    let l = num(query, "limit")?.map_or(HISTORY_LIMIT_DEFAULT, |l| l as usize);
    if l == 0 || l > HISTORY_LIMIT_MAX {
        return Err(err(
            400,
            40003,
            format!("limit must be between 1 and {HISTORY_LIMIT_MAX}"),
        ));
    }
    Ok(l)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn q(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /channels/{name}/messages`: `start`, `end` (ms, inclusive),
/// `limit` (default 100, at most 1000), `direction` (`backwards` default,
/// `forwards`), `cursor` (from a `Link`), `from_serial` (history up to a
/// channel serial, for `untilAttach`).
pub async fn history(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (_, channel) = match channel_request(&st, peer, &headers, &query, &raw, &[Op::History]) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let parsed = (|| {
        let start = num(&query, "start")?;
        let end = num(&query, "end")?;
        let limit = limit(&query)?;
        let cursor = num(&query, "cursor")?;
        Ok::<_, Response>((start, end, limit, cursor))
    })();
    let (start, end, limit, cursor) = match parsed {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return err(400, 40003, "start must not be after end");
    }
    let forwards = match query.get("direction").map(String::as_str) {
        None | Some("backwards") => false,
        Some("forwards") => true,
        Some(_) => return err(400, 40003, "direction must be forwards or backwards"),
    };
    // untilAttach: nothing after the attach serial.
    let until = match query.get("from_serial") {
        Some(s) => match u64::from_str_radix(s, 16) {
            Ok(v) => Some(v),
            Err(_) => return err(400, 40003, "from_serial is not a channel serial"),
        },
        None => None,
    };
    let after_seq = match (cursor, until, forwards) {
        (Some(c), _, _) => Some(c),
        (None, Some(u), false) => Some(u.saturating_add(1)),
        _ => None,
    };
    let hub = &st.mqtt.hub;
    let page = match hub.history() {
        Some(h) => match h.query(&HistoryQuery {
            channel: channel.clone(),
            start_ms: start,
            end_ms: end,
            limit,
            forwards,
            after_seq,
        }) {
            Ok(p) => p,
            Err(e) => return err(500, 50000, format!("history could not be read: {e}")),
        },
        None => tern_hub::HistoryPage::default(),
    };
    let format = response_format(&headers);
    let mut items: Vec<Message> = page
        .messages
        .iter()
        .filter(|m| !forwards || until.is_none_or(|u| m.seq <= u))
        .map(|m| Message::from_hub(m, hub.wall_ms(m.received_at)))
        .collect();
    if format == Format::Json {
        for m in &mut items {
            m.make_json_ready();
        }
    }
    let mut base = format!(
        "limit={limit}&direction={}",
        if forwards { "forwards" } else { "backwards" }
    );
    if let Some(s) = start {
        base.push_str(&format!("&start={s}"));
    }
    if let Some(e) = end {
        base.push_str(&format!("&end={e}"));
    }
    let mut links = vec![
        (format!("./messages?{base}"), "first"),
        (
            match cursor {
                Some(c) => format!("./messages?{base}&cursor={c}"),
                None => format!("./messages?{base}"),
            },
            "current",
        ),
    ];
    if let Some(next) = page.next {
        links.push((
            format!("./messages?{base}&cursor={}", q(&next.to_string())),
            "next",
        ));
    }
    list(&items, links, &query, format)
}

/// `GET /channels/{name}/presence`: the members, as PRESENT messages;
/// `clientId`, `connectionId` filter, `limit` bounds (default 100, at most
/// 1000).
pub async fn presence(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (_, channel) = match channel_request(
        &st,
        peer,
        &headers,
        &query,
        &raw,
        &[Op::Subscribe, Op::Presence],
    ) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let limit = match limit(&query) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let format = response_format(&headers);
    let mut members: Vec<_> = st
        .realtime
        .presence
        .members(&channel)
        .into_iter()
        .filter(|m| {
            query
                .get("clientId")
                .is_none_or(|c| m.client_id.as_deref() == Some(c))
                && query
                    .get("connectionId")
                    .is_none_or(|c| m.connection_id.as_deref() == Some(c))
        })
        .take(limit)
        .collect();
    if format == Format::Json {
        for m in &mut members {
            m.make_json_ready();
        }
    }
    list(&members, Vec::new(), &query, format)
}

/// `GET /channels/{name}/presence/history`: presence events are not kept
/// yet, so the list is empty (see docs/status.md).
pub async fn presence_history(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (_, _) = match channel_request(&st, peer, &headers, &query, &raw, &[Op::History]) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let empty: Vec<Message> = Vec::new();
    list(&empty, Vec::new(), &query, response_format(&headers))
}

/// ChannelDetails.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelDetails {
    channel_id: String,
    name: String,
    status: ChannelStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChannelStatus {
    is_active: bool,
    occupancy: Occupancy,
}

#[derive(Debug, Serialize)]
struct Occupancy {
    metrics: Metrics,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    /// Sessions subscribed (any protocol, any matching filter).
    subscribers: usize,
    presence_members: usize,
}

fn details(st: &HttpState, channel: &str) -> ChannelDetails {
    let subscribers = st.mqtt.hub.occupancy(channel);
    let presence_members = st.realtime.presence.members(channel).len();
    ChannelDetails {
        channel_id: channel.to_owned(),
        name: channel.to_owned(),
        status: ChannelStatus {
            is_active: subscribers + presence_members > 0,
            occupancy: Occupancy {
                metrics: Metrics {
                    subscribers,
                    presence_members,
                },
            },
        },
    }
}

/// `GET /channels/{name}`: ChannelDetails with occupancy (subscribers of
/// every protocol, presence members).
pub async fn channel_details(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (_, channel) = match channel_request(&st, peer, &headers, &query, &raw, &[Op::Subscribe]) {
        Ok(v) => v,
        Err(r) => return r,
    };
    body(
        StatusCode::OK,
        &details(&st, &channel),
        response_format(&headers),
    )
}

/// `GET /channels`: active channels (with subscribers on their exact name)
/// the credentials may subscribe to; `prefix` filters, `limit` bounds
/// (default 100, at most 1000), `by=id` lists names only.
pub async fn channels(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = match authenticate(&st, peer, &headers, &query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let limit = match limit(&query) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let auth = &st.mqtt.auth.authenticator;
    // Look further than `limit`: wildcard filters and channels the
    // credentials may not see are skipped.
    let mut names: Vec<String> = st
        .mqtt
        .hub
        .subscribed_filters(prefix, limit.saturating_mul(4).max(64))
        .into_iter()
        .map(|(f, _)| f)
        .filter(|f| !tern_hub::topic::has_wildcard(f) && !f.starts_with('$') && !f.starts_with('['))
        .filter(|f| auth.check(&principal, &Op::Subscribe, f))
        .collect();
    names.sort();
    names.dedup();
    names.truncate(limit);
    let format = response_format(&headers);
    if query.get("by").map(String::as_str) == Some("id") {
        return list(&names, Vec::new(), &query, format);
    }
    let items: Vec<ChannelDetails> = names.iter().map(|n| details(&st, n)).collect();
    list(&items, Vec::new(), &query, format)
}
