//! `/healthz` (the process answers), `/readyz` (the store answers; migrations ran before the
//! listener opened) and `/metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;
use crate::state::AppState;

/// Liveness.
pub async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            Problem::unavailable("the store is not reachable").into_response()
        }
    }
}

/// Prometheus exposition (behind a `read` token when `server.metrics_require_token`).
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Response {
    if state.metrics_require_token {
        let (parts, _) = request.into_parts();
        if let Err(problem) = crate::api::auth::authenticate(&state, &parts).await {
            return problem.into_response();
        }
    }
    let Some(handle) = crate::metrics::handle() else {
        return Problem::unavailable("another metrics recorder is installed in this process")
            .into_response();
    };
    match state.store.delivery_counts().await {
        Ok(counts) => {
            for status in switchboard_core::DeliveryStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!("switchboard_deliveries", "status" => status.as_str())
                    .set(n as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "could not count deliveries for /metrics"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
