//! The dashboard's stylesheet and script, embedded in the binary (no build step).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /ui/assets/ui.css`
pub async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

/// `GET /ui/assets/ui.js`
pub async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}
