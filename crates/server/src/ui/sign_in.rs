//! Signing in with an API token, and signing out.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{self, Session};
use super::{UiResult, html_response, layout, see_other};
use crate::problem::Problem;
use crate::state::AppState;

/// Query of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct Next {
    /// Where to go after signing in.
    next: Option<String>,
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    /// An API token (`sb_…`).
    token: String,
    /// Where to go afterwards.
    next: Option<String>,
}

fn form_markup(next: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form.signin method="post" action="/ui/sign-in" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input #token type="password" name="token" required autocomplete="current-password"
                    placeholder="sb_…" autofocus;
                p.hint { "Any token with scope read can look; write is needed to change things and replay." }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /ui/sign-in`
pub async fn form(Query(q): Query<Next>) -> Response {
    html_response(form_markup(&session::safe_next(q.next.as_deref()), None))
}

/// `POST /ui/sign-in`: checks the token and sets the session cookie.
pub async fn submit(
    State(state): State<Arc<AppState>>,
    axum::Extension(audit): axum::Extension<crate::api::audit::AuditSlot>,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult {
    if !session::same_origin(&headers) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "csrf_rejected",
            "Forbidden",
            "sign-in must come from this dashboard's own page",
        )
        .into());
    }
    let credentials: Credentials = serde_urlencoded::from_bytes(&body)
        .map_err(|e| Problem::bad_request(format!("unreadable form: {e}")))?;
    let next = session::safe_next(credentials.next.as_deref());
    match session::start(&state, &headers, &credentials.token).await {
        Ok((cookie, token_id)) => {
            // The audit layer records the sign-in under this token.
            audit.set_actor(&token_id);
            let mut response = see_other(&next);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(problem) if problem.status == 401 => {
            let mut response = html_response(form_markup(
                &next,
                Some("That token is unknown or revoked."),
            ));
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(response)
        }
        Err(problem) => Err(problem.into()),
    }
}

/// `POST /ui/sign-out`
pub async fn sign_out(
    State(state): State<Arc<AppState>>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> UiResult {
    let _: std::collections::HashMap<String, String> = session.form(&body)?;
    let mut response = see_other("/ui/sign-in");
    if let Some(cookie) = session::end(&state, &session, &headers).await? {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response.into_response())
}
