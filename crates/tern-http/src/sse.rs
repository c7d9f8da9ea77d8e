//! `GET /sse?channels=a,b`: Server-Sent Events for clients that can only
//! read a stream. Each event is one message: `id` is its serial (resume
//! with `Last-Event-ID` or `?lastEvent=`), `data` its JSON (with the
//! channel), or with `?enveloped=false` just the payload (text, or base64
//! for bytes). `?rewind=N` (or a `[?rewind=N]name` qualifier per channel)
//! first replays the last N messages of each channel from history.
//!
//! The stream is a hub session (client id `"\0sse:" + id`, clean, QoS 0
//! subscriptions), so its queue is bounded like every other subscriber's;
//! the session ends when the client goes. The stream opens with the
//! comment `: subscribed` once its subscriptions are in place; comments
//! keep it alive every 15 s.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tern_auth::Op;
use tern_hub::{
    ConnLink, HistoryQuery, Hub, KickReason, NextOutgoing, Outgoing, SessionHandle, SubOptions,
};
use tern_realtime::{Message, channel_name, serial_of};

use crate::rest::ably_error;
use crate::{HttpState, Peer};

/// Most messages replayed per channel on resume.
const RESUME_MAX: usize = 1000;
/// Most messages a rewind asks for per channel.
const REWIND_MAX: usize = 1000;

/// The session of one stream; detached when the stream is dropped.
struct Attached {
    hub: Arc<Hub>,
    session: Arc<SessionHandle>,
    link: Arc<ConnLink>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.hub
            .disconnect(&self.session, &self.link, None, 0, Instant::now());
    }
}

struct StreamState {
    att: Attached,
    /// Events ready to send.
    ready: VecDeque<Event>,
    /// Per channel, the last sequence number already sent from history:
    /// live deliveries up to it are duplicates.
    replayed: HashMap<Arc<str>, u64>,
    enveloped: bool,
    done: bool,
}

fn event(hub: &Hub, m: &tern_hub::Message, enveloped: bool) -> Event {
    let mut w = Message::from_hub(m, hub.wall_ms(m.received_at));
    w.make_json_ready();
    let ev = Event::default().id(serial_of(m.seq));
    if enveloped {
        let mut v = serde_json::to_value(&w).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("channel".into(), serde_json::Value::from(&*m.topic));
        }
        ev.data(v.to_string())
    } else {
        match w.data {
            Some(tern_realtime::Data::Text(t)) => ev.data(t),
            Some(other) => ev.data(serde_json::to_string(&other).unwrap_or_default()),
            None => ev.data(""),
        }
    }
}

impl StreamState {
    /// Moves what the session has queued into `ready`.
    fn drain(&mut self) {
        let hub = self.att.hub.clone();
        let mut st = self.att.session.state.lock();
        let now = Instant::now();
        loop {
            match st.next_outgoing(usize::MAX, now) {
                NextOutgoing::Send(Outgoing::Publish {
                    delivery,
                    packet_id,
                    ..
                }) => {
                    if let Some(pid) = packet_id {
                        st.abandon(pid);
                    }
                    let m = &delivery.msg;
                    if self
                        .replayed
                        .get(&m.topic)
                        .is_some_and(|&last| m.seq <= last)
                    {
                        continue;
                    }
                    self.ready.push_back(event(&hub, m, self.enveloped));
                }
                NextOutgoing::Send(Outgoing::Release { packet_id }) => {
                    st.abandon(packet_id);
                }
                NextOutgoing::Expired => {}
                NextOutgoing::WindowFull | NextOutgoing::Idle => break,
            }
        }
    }
}

/// `GET /sse`.
pub async fn stream(
    State(st): State<Arc<HttpState>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let principal = match crate::rest::authenticate(&st, peer, &headers, &query) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let err = |status: u16, code: u32, m: String| {
        ably_error(&tern_realtime::ErrorInfo::new(code, status, m))
    };
    let Some(list) = query.get("channels").filter(|c| !c.is_empty()) else {
        return err(400, 40000, "channels is required".into());
    };
    let max = st.realtime.cfg.channels_per_connection_max;
    let raw: Vec<&str> = list.split(',').filter(|c| !c.is_empty()).collect();
    if raw.len() > max {
        return err(400, 40000, format!("at most {max} channels per stream"));
    }
    let default_rewind = match query.get("rewind").map(|r| r.parse::<usize>()) {
        None => None,
        Some(Ok(n)) if n <= REWIND_MAX => Some(n),
        Some(_) => {
            return err(
                400,
                40003,
                format!("rewind must be a number of messages up to {REWIND_MAX}"),
            );
        }
    };
    // (hub channel, rewind)
    let mut channels: Vec<(String, Option<usize>)> = Vec::new();
    for c in raw {
        let name = match channel_name(c) {
            Ok(n) => n.to_owned(),
            Err(e) => return ably_error(&e),
        };
        let rewind = match c.strip_prefix("[?").and_then(|r| r.split_once(']')) {
            Some((q, _)) => match q.strip_prefix("rewind=").map(str::parse::<usize>) {
                Some(Ok(n)) if n <= REWIND_MAX => Some(n),
                _ => {
                    return err(
                        400,
                        40003,
                        format!("unsupported channel qualifier in {c}; use [?rewind=N]"),
                    );
                }
            },
            None => default_rewind,
        };
        if !st
            .mqtt
            .auth
            .authenticator
            .check(&principal, &Op::Subscribe, &name)
        {
            return err(
                401,
                40160,
                format!("the credentials do not allow subscribing to {name}"),
            );
        }
        channels.push((name, rewind));
    }
    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(query.get("lastEvent").map(String::as_str))
        .and_then(|s| u64::from_str_radix(s, 16).ok());

    let hub = st.mqtt.hub.clone();
    let mut id = [0u8; 9];
    if getrandom::fill(&mut id).is_err() {
        return err(500, 50000, "no randomness for a stream id".into());
    }
    let client_id = format!(
        "\0sse:{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let attached = match hub.connect(&client_id, true, 0, Instant::now()) {
        Ok(a) => a,
        Err(e) => return err(503, 50003, format!("no session for the stream: {e}")),
    };
    let att = Attached {
        hub: hub.clone(),
        session: attached.session,
        link: attached.link,
    };
    // Subscribe first, then replay: nothing published in between is lost
    // (live copies of replayed messages are skipped).
    for (name, _) in &channels {
        if let Err(e) = hub.subscribe(&att.session, name, SubOptions::default()) {
            return err(400, 40000, format!("cannot subscribe to {name}: {e}"));
        }
    }
    // A first comment tells the client the stream is subscribed.
    let mut ready = VecDeque::from([Event::default().comment("subscribed")]);
    let mut replayed = HashMap::new();
    let enveloped = query.get("enveloped").map(String::as_str) != Some("false");
    if let Some(h) = hub.history() {
        for (name, rewind) in &channels {
            let q = match (resume_from, rewind) {
                (Some(after), _) => HistoryQuery {
                    channel: name.clone(),
                    start_ms: None,
                    end_ms: None,
                    limit: RESUME_MAX,
                    forwards: true,
                    after_seq: Some(after),
                },
                (None, Some(n)) if *n > 0 => HistoryQuery {
                    channel: name.clone(),
                    start_ms: None,
                    end_ms: None,
                    limit: *n,
                    forwards: false,
                    after_seq: None,
                },
                _ => continue,
            };
            let mut msgs = match h.query(&q) {
                Ok(p) => p.messages,
                Err(e) => {
                    tracing::warn!(channel = %name, error = %e, "history unreadable for an SSE replay");
                    continue;
                }
            };
            if !q.forwards {
                msgs.reverse();
            }
            if let Some(last) = msgs.last() {
                replayed.insert(Arc::from(name.as_str()), last.seq);
            }
            for m in &msgs {
                ready.push_back(event(&hub, m, enveloped));
            }
        }
    }
    let state = StreamState {
        att,
        ready,
        replayed,
        enveloped,
        done: false,
    };
    let s = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            if let Some(ev) = s.ready.pop_front() {
                return Some((Ok::<Event, Infallible>(ev), s));
            }
            s.drain();
            if !s.ready.is_empty() {
                continue;
            }
            s.att.link.woken().await;
            if s.att.link.kicked() != KickReason::None {
                // Taken over cannot happen (unique id); shutting down ends
                // the stream.
                s.done = true;
            }
        }
    });
    Sse::new(s)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
