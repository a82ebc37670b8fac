//! `POST /in/{source}`: size limit → verifier → one transaction storing the event and its
//! deliveries → `202 {"id": …}`. Nothing is acknowledged before it is durable.

pub mod commit;
pub mod verify;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use switchboard_core::ids::{new_delivery_id, new_event_id};
use switchboard_core::time::now_millis;
use switchboard_store::{NewDelivery, NewEvent};

use crate::problem::Problem;
use crate::state::AppState;

/// Header values replaced by `[redacted]` before an event's headers are stored.
const REDACTED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-api-key",
];

/// The ingest handler.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(source) = state.sources.get(&source_id) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            "Unknown source",
            format!("no source `{source_id}` is configured"),
        )
        .into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            metrics::counter!("switchboard_ingest_rejected_total", "source" => source_id.clone(), "reason" => "too_large").increment(1);
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                format!(
                    "the body exceeds the limit of {} bytes",
                    state.max_body_bytes
                ),
            )
            .into_response();
        }
        Err(rejection) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "Unreadable body",
                rejection.body_text(),
            )
            .into_response();
        }
    };
    let verified = match source.verifier.verify(&headers, &body) {
        Ok(verified) => verified,
        Err(error) => {
            metrics::counter!("switchboard_ingest_rejected_total", "source" => source_id.clone(), "reason" => "signature").increment(1);
            tracing::info!(source = %source_id, %error, "rejected unverified request");
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_signature",
                "Signature verification failed",
                error.to_string(),
            )
            .into_response();
        }
    };
    let received_at = now_millis();
    let event = NewEvent {
        id: new_event_id(),
        source: source_id.clone(),
        tenant: None,
        event_type: None,
        dedup_key: verified.dedup_key,
        headers: stored_headers(&headers),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
        received_at,
        deliveries: source
            .routes
            .iter()
            .map(|route| NewDelivery {
                id: new_delivery_id(),
                route_id: route.id.clone(),
                destination: route.destination.clone(),
            })
            .collect(),
    };
    let id = event.id.clone();
    let routes = event.deliveries.len();
    match state.committer.commit(event).await {
        Ok(()) => {
            tracing::debug!(event = %id, source = %source_id, routes, "event stored");
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "id": id })),
            )
                .into_response()
        }
        Err(commit::CommitError::Closed) => {
            Problem::unavailable("the server is shutting down; retry against another node or later")
                .into_response()
        }
        Err(commit::CommitError::Store(error)) => {
            tracing::error!(source = %source_id, %error, "could not store event");
            Problem::unavailable("the event could not be stored; retry later").into_response()
        }
    }
}

fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if REDACTED_HEADERS.contains(&name.as_str()) {
                "[redacted]".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}
