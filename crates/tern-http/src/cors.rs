//! CORS for pages on other origins calling the REST API and SSE
//! (ABLY-PROTOCOL.md §6): the request's origin is echoed with credentials
//! allowed (the Ably SDK's fetch sends `credentials: 'include'` with an
//! Authorization header, which rules out `*`), the headers the SDKs send
//! are allowed, and `Link` and the Ably error headers are exposed.
//! Credentials are never cookies here, so echoing the origin grants a page
//! nothing its own Authorization header does not.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const ALLOW_HEADERS: &str = "authorization, content-type, accept, x-ably-version, ably-agent, x-ably-clientid, last-event-id";
const EXPOSE_HEADERS: &str = "link, x-ably-errorcode, x-ably-errormessage, x-ably-serverid";

/// Adds CORS headers; answers preflight requests itself.
pub async fn layer(req: Request<Body>, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let Some(origin) = origin else {
        return next.run(req).await;
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut r = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("3600"),
        );
    } else {
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
    }
    r
}
