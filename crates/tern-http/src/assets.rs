//! Files served as they are: the browser client library (`/lib/tern.js`)
//! and a page that shows a channel live (`/demo/channel`).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const TERN_JS: &str = include_str!("../assets/tern.js");
const CHANNEL_HTML: &str = include_str!("../assets/channel.html");

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// `GET /lib/tern.js`.
pub async fn tern_js() -> Response {
    file(TERN_JS, "text/javascript; charset=utf-8")
}

/// `GET /demo/channel`.
pub async fn channel_page() -> Response {
    file(CHANNEL_HTML, "text/html; charset=utf-8")
}
