//! The browser dashboard at `/ui`: server-rendered HTML (maud), one small hand-written script and
//! stylesheet embedded in the binary, no build step.
//!
//! Pages call the same functions as the `/v1` handlers (store queries, replay, route creation
//! and dry-run, resource listings), so the dashboard never has rules of its own. Sign-in turns an
//! API token into a sealed session cookie ([`session`]); every form POST carries the session's
//! CSRF token. Lists update live through `GET /ui/live` ([`live`]).

pub mod assets;
pub mod audit;
pub mod deliveries;
pub mod destinations;
pub mod endpoints;
pub mod events;
pub mod forms;
pub mod layout;
pub mod live;
pub mod overview;
pub mod resources;
pub mod routes;
pub mod session;
pub mod sign_in;
pub mod sources;
pub mod syncs;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use crate::problem::Problem;
use crate::state::AppState;

pub use session::UiState;

/// Largest form body the dashboard accepts.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// A dashboard handler's result: a page, or a problem shown as an error page.
pub type UiResult<T = Response> = Result<T, UiError>;

/// A problem rendered as an HTML error page with the problem's status.
#[derive(Debug)]
pub struct UiError(pub Problem);

impl From<Problem> for UiError {
    fn from(problem: Problem) -> Self {
        Self(problem)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let problem = self.0;
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let markup = layout::bare(
            problem.title,
            html! {
                p.error role="alert" { (problem.detail) }
                @if !problem.errors.is_empty() {
                    ul {
                        @for e in &problem.errors { li { code { (e.field) } ": " (e.message) } }
                    }
                }
                p { a href="/ui" { "Back to the overview" } }
            },
        );
        (status, html_response(markup)).into_response()
    }
}

/// An HTML page with the dashboard's security headers: a strict Content-Security-Policy (no
/// inline scripts, so even a markup mistake could not run injected code), no framing, no
/// caching of pages that show payloads. (No `form-action`: browsers apply it to the redirect
/// after a POST, which would block "Connect" from reaching the OAuth provider.)
pub fn html_response(markup: Markup) -> Response {
    let mut response = markup.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A `303 See Other` to `location` (after a form POST).
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Percent-encodes a value for a URL query or path segment.
pub fn enc(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The `/ui` routes; changes made through them are recorded in the audit trail
/// ([`audit::layer`]).
pub fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(overview::page))
        .route("/ui/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/ui/sign-out", post(sign_in::sign_out))
        .route("/ui/live", get(live::stream))
        .route("/ui/assets/ui.css", get(assets::css))
        .route("/ui/assets/ui.js", get(assets::js))
        .route("/ui/events", get(events::list))
        .route("/ui/events/{id}", get(events::detail))
        .route("/ui/deliveries", get(deliveries::list))
        .route("/ui/deliveries/{id}", get(deliveries::detail))
        .route("/ui/deliveries/{id}/replay", post(deliveries::replay_one))
        .route(
            "/ui/replay",
            get(deliveries::bulk_confirm).post(deliveries::bulk_replay),
        )
        .route("/ui/sources", get(sources::list).post(sources::create))
        .route(
            "/ui/sources/{id}",
            get(sources::detail).post(sources::update),
        )
        .route("/ui/sources/{id}/test-event", post(sources::test_event))
        .route("/ui/sources/{id}/delete", post(sources::delete))
        .route("/ui/sources/{id}/{action}", post(sources::set_enabled))
        .route(
            "/ui/destinations",
            get(destinations::list).post(destinations::create),
        )
        .route(
            "/ui/destinations/{id}",
            get(destinations::detail).post(destinations::update),
        )
        .route(
            "/ui/destinations/{id}/rotate-secret",
            post(destinations::rotate_secret),
        )
        .route("/ui/destinations/{id}/delete", post(destinations::delete))
        .route(
            "/ui/destinations/{id}/{action}",
            post(destinations::set_enabled),
        )
        .route(
            "/ui/tenants",
            get(resources::tenants).post(resources::create_tenant),
        )
        .route(
            "/ui/tenants/{tenant}/endpoints",
            post(resources::create_endpoint),
        )
        .route(
            "/ui/tenants/{tenant}/rename",
            post(endpoints::rename_tenant),
        )
        .route(
            "/ui/tenants/{tenant}/delete",
            post(endpoints::delete_tenant),
        )
        .route(
            "/ui/tenants/{tenant}/endpoints/{id}",
            get(endpoints::detail).post(endpoints::update),
        )
        .route(
            "/ui/tenants/{tenant}/endpoints/{id}/delete",
            post(endpoints::delete),
        )
        .route(
            "/ui/tenants/{tenant}/endpoints/{id}/rotate-secret",
            post(resources::rotate_endpoint_secret),
        )
        .route(
            "/ui/tenants/{tenant}/endpoints/{id}/{action}",
            post(resources::set_endpoint_enabled),
        )
        .route("/ui/connections", get(resources::connections))
        .route("/ui/connections/{id}/connect", post(resources::connect))
        .route(
            "/ui/connections/{id}/test",
            post(resources::test_connection),
        )
        .route("/ui/syncs", get(syncs::list))
        .route("/ui/syncs/{id}", get(syncs::detail))
        .route("/ui/syncs/{id}/run", post(syncs::run))
        .route("/ui/syncs/{id}/cancel", post(syncs::cancel))
        .route("/ui/syncs/{id}/resolve", post(syncs::resolve))
        .route("/ui/routes", get(routes::list).post(routes::create))
        .route("/ui/routes/{id}", get(routes::detail).post(routes::update))
        .route("/ui/routes/{id}/dry-run", post(routes::dry_run))
        .route("/ui/routes/{id}/delete", post(routes::delete))
        .route("/ui/routes/{id}/{action}", post(routes::set_enabled))
        .layer(axum::middleware::from_fn_with_state(state, audit::layer))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
}
