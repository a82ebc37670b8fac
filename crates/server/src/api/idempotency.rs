//! `Idempotency-Key` on POST: the first response to a key is recorded and replayed for the same
//! request (same caller, method, path and body); reusing a key for a different body is `422`;
//! a key whose first request is still running is `409`. Server errors are not recorded, so a
//! client may retry them with the same key. Recorded responses are sealed with the vault (a
//! created token appears in one) and kept for 24 hours; a key left in progress by a crash is
//! taken over after 5 minutes.

use std::sync::Arc;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use switchboard_core::time::now_millis;
use switchboard_store::IdempotencyState;

use crate::problem::Problem;
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Largest body the middleware buffers (the API's body limit is lower).
const MAX_BODY: usize = 2 * 1024 * 1024;
/// Largest recorded response.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The middleware.
pub async fn layer(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    let Ok(key) = key.to_str().map(str::to_owned) else {
        return Problem::bad_request("Idempotency-Key must be visible ASCII").into_response();
    };
    if key.is_empty() || key.len() > 255 {
        return Problem::bad_request("Idempotency-Key must be 1 to 255 characters").into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
                "the request body is too large",
            )
            .into_response();
        }
    };
    // Keys are per caller: the scope hashes the credentials with the method and path.
    let caller = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let scope = hex(&Sha256::digest(
        [
            caller.as_slice(),
            b"\n",
            parts.method.as_str().as_bytes(),
            b" ",
            parts.uri.path().as_bytes(),
        ]
        .concat(),
    ));
    let request_hash = hex(&Sha256::digest(&bytes));
    let state_now = state
        .store
        .idempotency_begin(&scope, &key, &request_hash, now_millis())
        .await;
    match state_now {
        Err(error) => {
            tracing::error!(%error, "idempotency lookup failed");
            Problem::unavailable("cannot check the Idempotency-Key right now").into_response()
        }
        Ok(IdempotencyState::InProgress { .. }) => Problem::conflict(
            "idempotency_in_progress",
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response(),
        Ok(IdempotencyState::Completed {
            request_hash: first,
            status,
            response,
        }) => {
            if first != request_hash {
                return Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "Idempotency key reused",
                    "this Idempotency-Key was used with a different request body",
                )
                .into_response();
            }
            // Recorded responses are sealed: a created token's value must not sit in clear.
            match state.vault.open_sealed(&response) {
                Ok(body) => replay(status, body),
                Err(error) => {
                    tracing::error!(%error, "cannot open a recorded idempotent response");
                    Problem::internal().into_response()
                }
            }
        }
        Ok(IdempotencyState::Started) => {
            let request = Request::from_parts(parts, Body::from(bytes));
            let response = next.run(request).await;
            record(&state, &scope, &key, response).await
        }
    }
}

fn replay(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_client_error() || status.is_server_error() {
        "application/problem+json"
    } else {
        "application/json"
    };
    let mut response = (status, Bytes::from(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

async fn record(state: &AppState, scope: &str, key: &str, response: Response) -> Response {
    let status = response.status();
    if status.is_server_error() {
        if let Err(error) = state.store.idempotency_abandon(scope, key).await {
            tracing::warn!(%error, "could not release an Idempotency-Key");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, MAX_RESPONSE).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "response too large to record for Idempotency-Key");
            let _ = state.store.idempotency_abandon(scope, key).await;
            return Problem::internal().into_response();
        }
    };
    let sealed = match state.vault.seal(&bytes) {
        Ok(sealed) => sealed,
        Err(error) => {
            tracing::error!(%error, "cannot seal the response for an Idempotency-Key");
            let _ = state.store.idempotency_abandon(scope, key).await;
            return Response::from_parts(parts, Body::from(bytes));
        }
    };
    if let Err(error) = state
        .store
        .idempotency_finish(scope, key, status.as_u16(), &sealed)
        .await
    {
        tracing::warn!(%error, "could not record the response for an Idempotency-Key");
    }
    Response::from_parts(parts, Body::from(bytes))
}
