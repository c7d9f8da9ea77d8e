//! `POST /keys/{keyName}/requestToken` and `GET /time`, Ably's way.
//!
//! A token request is either a signed TokenRequest (no credentials: the
//! MAC proves the key holder made it) or TokenParams sent with HTTP Basic
//! auth using the key itself. Errors are `{"error": {code, message,
//! statusCode}}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tern_auth::{AuthError, TokenParams, TokenRequest, now_ms};

use crate::HttpState;

/// An error response with Ably's shape (body, status, `x-ably-*`
/// headers), as every REST endpoint answers.
pub fn error(status: u16, code: u32, message: impl Into<String>) -> Response {
    crate::rest::ably_error(&tern_realtime::ErrorInfo::new(code, status, message))
}

fn auth_error(e: &AuthError) -> Response {
    error(e.http_status(), e.ably_code(), e.to_string())
}

/// `GET /time`: `[ms since the Unix epoch]`.
pub async fn time() -> Json<[u64; 1]> {
    Json([now_ms()])
}

/// `key:secret` from an `Authorization: Basic ...` header (scheme name
/// case-insensitive, RFC 9110); `Ok(None)` without the header, `Err` for a
/// header that is not valid Basic credentials.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, Box<Response>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        Box::new(error(
            401,
            40101,
            "the Authorization header must be Basic credentials for a key",
        ))
    };
    let value = value.to_str().map_err(|_| bad())?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    decode_basic(encoded).map(Some).ok_or_else(bad)
}

/// `keyName:secret` from the base64 part of Basic credentials.
pub(crate) fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, secret) = text.split_once(':')?;
    Some((name.to_owned(), secret.to_owned()))
}

/// Most bytes accepted in a token request body.
const BODY_BYTES_MAX: usize = 64 * 1024;

/// `POST /keys/{keyName}/requestToken`.
pub async fn request_token(
    State(st): State<Arc<HttpState>>,
    axum::extract::ConnectInfo(crate::Peer(peer)): axum::extract::ConnectInfo<crate::Peer>,
    Path(key_name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Ok(body) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return error(413, 40009, "token request body too large");
    };
    let policy = &st.mqtt.auth;
    if policy.is_blocked(peer.ip()) {
        return error(
            429,
            42910,
            "too many failed logins from this address; try again later",
        );
    }
    let auth = &policy.authenticator;
    let now = now_ms();
    let basic = match basic_credentials(&headers) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Some((name, secret)) = basic {
        if name != key_name {
            return error(
                401,
                40101,
                "the Basic auth key differs from the key in the path",
            );
        }
        if !st.secure && !st.mqtt.auth.key_login_plain.unwrap_or(st.loopback) {
            return error(
                401,
                40103,
                "Basic auth with a key is accepted over TLS only on this listener",
            );
        }
        let params: TokenParams = if body.is_empty() {
            TokenParams::default()
        } else {
            match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => return error(400, 40000, format!("invalid TokenParams JSON: {e}")),
            }
        };
        return match auth.request_token_with_key(&name, &secret, &params, now) {
            Ok(details) => Json(details).into_response(),
            Err(e) => {
                if matches!(e, AuthError::BadSecret | AuthError::UnknownKey(_)) {
                    policy.record_failure(peer.ip());
                }
                auth_error(&e)
            }
        };
    }
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(400, 40000, format!("invalid TokenRequest JSON: {e}")),
    };
    if request.key_name != key_name {
        return error(
            401,
            40101,
            "the TokenRequest keyName differs from the key in the path",
        );
    }
    match auth.request_token(&request, now) {
        Ok(details) => Json(details).into_response(),
        Err(e) => {
            if matches!(e, AuthError::BadMac) {
                policy.record_failure(peer.ip());
            }
            auth_error(&e)
        }
    }
}
