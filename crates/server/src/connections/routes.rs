//! Routes outside the OpenAPI-described API: `ANY /v1/proxy/{id}/{*path}` (the provider's own
//! API, whose answers are the provider's) and `GET /oauth/callback` (where browsers come back
//! from a provider, authenticated by the single-use `state`).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use serde_json::json;

use super::ConnectionError;
use super::client::{ApiRequest, CallError, ConnectionClient, is_hop_by_hop};
use crate::api::auth::{Scope, authenticate};
use crate::problem::Problem;
use crate::state::AppState;

/// The routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/proxy/{id}", any(proxy_root))
        .route("/v1/proxy/{id}/{*path}", any(proxy))
        .route("/oauth/callback", get(callback))
}

async fn proxy_root(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    forward(state, id, String::new(), request).await
}

async fn proxy(
    State(state): State<Arc<AppState>>,
    Path((id, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    forward(state, id, path, request).await
}

/// Maps a connection failure to its problem.
pub fn connection_problem(error: &ConnectionError) -> Problem {
    match error {
        ConnectionError::NotFound(_) => Problem::not_found(error.to_string()),
        ConnectionError::Conflict(_) => {
            Problem::conflict("connection_not_ready", error.to_string())
        }
        ConnectionError::Invalid(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "connection_invalid",
            "Connection unusable",
            error.to_string(),
        ),
        ConnectionError::Token(token) => Problem::new(
            StatusCode::BAD_GATEWAY,
            if token.transient {
                "token_request_failed"
            } else {
                "needs_reauth"
            },
            "Token request failed",
            error.to_string(),
        ),
        ConnectionError::Busy(_) => Problem::unavailable(error.to_string()),
        ConnectionError::Store(store) => crate::api::internal(store),
    }
}

fn retry_after(mut response: Response, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Maps a failed call to its response.
pub fn call_problem(error: CallError) -> Response {
    match error {
        CallError::Connection(error) => connection_problem(&error).into_response(),
        CallError::CircuitOpen(wait) => retry_after(
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit_open",
                "Circuit open",
                CallError::CircuitOpen(wait).to_string(),
            )
            .into_response(),
            wait,
        ),
        CallError::RateLimited(wait) => retry_after(
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Rate limited",
                CallError::RateLimited(wait).to_string(),
            )
            .into_response(),
            wait,
        ),
        e @ CallError::Busy => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "bulkhead_full",
            "Too many calls in flight",
            e.to_string(),
        )
        .into_response(),
        e @ CallError::Timeout(_) => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "provider_timeout",
            "Provider timeout",
            e.to_string(),
        )
        .into_response(),
        e @ CallError::Network(_) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "provider_unreachable",
            "Provider unreachable",
            e.to_string(),
        )
        .into_response(),
        e @ CallError::Blocked(_) => Problem::new(
            StatusCode::BAD_GATEWAY,
            "address_blocked",
            "Address not allowed",
            e.to_string(),
        )
        .into_response(),
        CallError::Provider {
            error,
            response,
            attempts,
        } => {
            let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let detail = format!(
                "{} answered HTTP {} after {attempts} attempt(s){}",
                error.provider,
                error.status,
                error
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            let problem = Problem::new(status, "provider_error", "Provider error", detail);
            let mut body = serde_json::to_value(&problem).unwrap_or_else(|_| json!({}));
            body["provider_error"] = serde_json::to_value(&error).unwrap_or_default();
            let mut out = (status, axum::Json(body)).into_response();
            out.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            if let Some(value) = response.headers.get(header::RETRY_AFTER) {
                out.headers_mut().insert(header::RETRY_AFTER, value.clone());
            }
            out
        }
    }
}

async fn forward(state: Arc<AppState>, id: String, path: String, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let principal = match authenticate(&state, &parts).await {
        Ok(principal) => principal,
        Err(problem) => {
            let mut response = problem.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return response;
        }
    };
    let needed = if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        Scope::Read
    } else {
        Scope::Write
    };
    if principal.scope < needed {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "this token has scope `{}`; {} through the proxy needs `{}`",
                principal.scope.as_str(),
                parts.method,
                needed.as_str()
            ),
        )
        .into_response();
    }
    let body = match to_bytes(body, state.connections.max_body_bytes()).await {
        Ok(body) => body,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                "the request body is larger than server.max_body_bytes",
            )
            .into_response();
        }
    };
    let mut headers = parts.headers.clone();
    headers.remove(header::AUTHORIZATION);
    let request = ApiRequest {
        method: parts.method.clone(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers,
        body,
        max_retries: None,
    };
    let client = ConnectionClient::new(state.connections.clone());
    match client.call(&id, request).await {
        Ok(answer) => {
            let mut response = Response::new(Body::from(answer.body));
            *response.status_mut() = answer.status;
            for (name, value) in &answer.headers {
                if !is_hop_by_hop(name, &answer.headers) {
                    response.headers_mut().append(name.clone(), value.clone());
                }
            }
            if let Ok(value) = HeaderValue::from_str(&answer.attempts.to_string()) {
                response
                    .headers_mut()
                    .insert("x-switchboard-attempts", value);
            }
            response
        }
        Err(error) => call_problem(error),
    }
}

/// `GET /oauth/callback` query.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem}}</style>\
         </head><body><h1>{title}</h1><p>{message}</p></body></html>",
        title = escape(title),
        message = escape(message)
    );
    let mut response = (status, Html(html)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn callback(
    State(state): State<Arc<AppState>>,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return page(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            "The provider sent Switchboard an unreadable answer.",
        );
    };
    if let Some(error) = query.error {
        // Spend the state so the link cannot be replayed, then say what the provider said.
        let mut connection = None;
        if let Some(s) = &query.state
            && let Ok(Some(flow)) = state
                .connections
                .store()
                .take_oauth_state(&crate::api::auth::hash_token(s), 0)
                .await
        {
            connection = Some(flow.connection_id);
        }
        let detail = query
            .error_description
            .map(|d| format!("{error}: {d}"))
            .unwrap_or(error);
        audit_callback(
            &state,
            "authorize_refused",
            connection,
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": detail }),
        )
        .await;
        return page(
            StatusCode::BAD_REQUEST,
            "Authorization refused",
            &format!("The provider did not authorize the connection ({detail})."),
        );
    }
    let (Some(code), Some(flow_state)) = (query.code, query.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Authorization failed",
            "The provider's answer has no code or state.",
        );
    };
    match state
        .connections
        .finish_authorization(&flow_state, &code)
        .await
    {
        Ok(id) => {
            tracing::info!(connection = %id, "connection authorized");
            let status = if state.connections.config().success_redirect.is_some() {
                StatusCode::SEE_OTHER
            } else {
                StatusCode::OK
            };
            audit_callback(
                &state,
                "authorize",
                Some(id.clone()),
                status,
                serde_json::json!({ "status": "active" }),
            )
            .await;
            match &state.connections.config().success_redirect {
                Some(url) => {
                    let separator = if url.contains('?') { '&' } else { '?' };
                    let target = format!(
                        "{url}{separator}{}",
                        form_urlencoded::Serializer::new(String::new())
                            .append_pair("connection_id", &id)
                            .finish()
                    );
                    Redirect::to(&target).into_response()
                }
                None => page(
                    StatusCode::OK,
                    "Connected",
                    &format!("Connection `{id}` is authorized. You can close this window."),
                ),
            }
        }
        Err(ConnectionError::Store(error)) => {
            tracing::error!(%error, "could not finish an authorization");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Authorization failed",
                "Switchboard could not store the connection; see its logs.",
            )
        }
        Err(error) => {
            let status = if matches!(error, ConnectionError::Token(_)) {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::BAD_REQUEST
            };
            audit_callback(
                &state,
                "authorize_failed",
                None,
                status,
                serde_json::json!({ "error": error.to_string() }),
            )
            .await;
            page(status, "Authorization failed", &error.to_string())
        }
    }
}

/// Records the end of an OAuth authorization in the audit trail. The callback is outside
/// `/v1` (the browser comes back from the provider without a token), so the audit middleware
/// does not see it; the actor is the provider's redirect.
async fn audit_callback(
    state: &AppState,
    action: &str,
    connection: Option<String>,
    status: StatusCode,
    outcome: serde_json::Value,
) {
    let record = switchboard_store::AuditRecord {
        seq: 0,
        id: format!("aud_{}", uuid::Uuid::now_v7().simple()),
        at: switchboard_core::time::now_millis(),
        actor: "oauth-callback".into(),
        action: action.into(),
        resource_kind: "connection".into(),
        resource_id: connection,
        method: "GET".into(),
        path: "/oauth/callback".into(),
        status: status.as_u16(),
        request_id: None,
        before: None,
        after: Some(outcome.to_string()),
    };
    if let Err(error) = state.store.record_audit(&record).await {
        metrics::counter!("switchboard_audit_failures_total").increment(1);
        tracing::error!(%error, action, "could not record an audit entry");
    }
}
