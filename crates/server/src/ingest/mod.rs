//! `POST /in/{source}`: rate limit → size limit → verifier → one transaction storing the event
//! and its deliveries → `202 {"id": …}`. Nothing is acknowledged before it is durable, and
//! nothing slow (no network) happens before the commit.

pub mod commit;
pub mod rejections;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use switchboard_core::correlation::{Correlation, REQUEST_ID_HEADER};
use switchboard_core::ids::{new_delivery_id, new_event_id};
use switchboard_core::time::now_millis;
use switchboard_store::{InsertOutcome, NewDelivery, NewEvent, Rejection as StoredRejection};
use tracing::Instrument as _;

use crate::problem::Problem;
use crate::state::{AppState, SourceRuntime};
use crate::verifiers::{Inbound, Rejection, Verdict};

/// The ingest handler. The event's id is chosen first so that its `ingest` span (and every
/// log line inside it) carries the event's request id and trace id from the start.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(source_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let event_id = new_event_id();
    let correlation = crate::telemetry::from_headers(&event_id, &headers);
    let span = crate::telemetry::spans::ingest(&source_id, &event_id, &correlation);
    let request_id = correlation.request_id.clone();
    let counted = source_id.clone();
    let request = Request {
        source_id,
        uri,
        headers,
        event_id,
        correlation,
    };
    let mut response = accept(state.clone(), request, body).instrument(span).await;
    let status = response.status();
    // Only configured sources are counted: unknown ids must not grow the map.
    // 5xx (store unavailable, shutting down) is neither: the request was not judged.
    if (status.is_success() || (status.is_client_error() && status != StatusCode::NOT_FOUND))
        && state.registry.current().sources.contains_key(&counted)
    {
        state.activity.record(&counted, status.is_success());
    }
    // Echo the request id so a caller that sent none can still find the event's log lines.
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    response
}

/// An ingest request, once its event id and correlation are chosen.
struct Request {
    source_id: String,
    uri: Uri,
    headers: HeaderMap,
    event_id: String,
    correlation: Correlation,
}

async fn accept(
    state: Arc<AppState>,
    request: Request,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Request {
        source_id,
        uri,
        headers,
        event_id,
        correlation,
    } = request;
    let runtime = state.registry.current();
    let Some(source) = runtime.sources.get(&source_id) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_source",
            "Unknown source",
            format!("no source `{source_id}` is configured"),
        )
        .into_response();
    };
    if source.kind != "webhook" {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "not_a_webhook_source",
            "Not a webhook source",
            format!(
                "source `{source_id}` is a `{}` source: Switchboard fetches its events, it does not accept webhooks",
                source.kind
            ),
        )
        .into_response();
    }
    if !source.enabled {
        return disabled(&source_id);
    }
    if let Some(response) = rate_limited(&source_id, source) {
        return response;
    }
    let body = match body {
        Ok(body) if body.len() <= source.max_body_bytes => body,
        Ok(_) => return too_large(&source_id, source),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large(&source_id, source);
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
    let received_at = now_millis();
    let inbound = Inbound {
        headers: &headers,
        body: &body,
        uri: &uri,
        now: received_at / 1000,
    };
    let accepted = match source.verifier.verify(&inbound) {
        Ok(Verdict::Accept(accepted)) => accepted,
        Ok(Verdict::Handshake(handshake)) => {
            tracing::info!(source = %source_id, "answered a verified handshake");
            return (handshake.status, axum::Json(handshake.body)).into_response();
        }
        Err(rejection) => {
            return reject(&state, &source_id, source, &headers, body.len(), rejection);
        }
    };
    let event = NewEvent {
        id: event_id,
        source: source_id.clone(),
        tenant: None,
        event_type: accepted.event_type.clone(),
        dedup_key: accepted.dedup_key.clone(),
        headers: rejections::redacted_headers(&headers, &source.credential_headers),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
        received_at,
        forward_headers: Vec::new(),
        deliveries: source
            .routes
            .iter()
            .map(|route| NewDelivery {
                id: new_delivery_id(),
                route_id: route.id.clone(),
                destination: route.destination.clone(),
                ordering_key: runtime
                    .destinations
                    .get(&route.destination)
                    .filter(|t| t.ordered)
                    .map(|_| String::new()),
            })
            .collect(),
    };
    let id = event.id.clone();
    let routes = event.deliveries.len();
    let committed = state
        .committer
        .commit(event)
        .instrument(crate::telemetry::spans::commit(routes))
        .await;
    match committed {
        Ok(InsertOutcome::Inserted) if accepted.empty_ack => {
            tracing::info!(event = %id, source = %source_id, routes, request_id = %correlation.request_id, trace_id = %correlation.trace_id, "event stored");
            StatusCode::OK.into_response()
        }
        Ok(InsertOutcome::Inserted) => {
            tracing::info!(event = %id, source = %source_id, routes, request_id = %correlation.request_id, trace_id = %correlation.trace_id, "event stored");
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({ "id": id })),
            )
                .into_response()
        }
        Ok(InsertOutcome::Duplicate { original_id }) => {
            tracing::info!(event = %original_id, source = %source_id, request_id = %correlation.request_id, "duplicate ignored");
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "id": original_id, "duplicate": true })),
            )
                .into_response()
        }
        Err(commit::CommitError::Closed) => {
            Problem::unavailable("the server is shutting down; retry against another node or later")
                .into_response()
        }
        Err(commit::CommitError::Store(error)) => {
            tracing::error!(source = %source_id, request_id = %correlation.request_id, %error, "could not store event");
            Problem::unavailable("the event could not be stored; retry later").into_response()
        }
    }
}

/// How long a sender is asked to wait before retrying a paused source.
const DISABLED_RETRY_AFTER_SECS: u32 = 300;

/// `503` for a paused source: the sender keeps the event and retries, so nothing is lost while
/// the source is disabled.
fn disabled(source_id: &str) -> Response {
    let mut response = Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "source_disabled",
        "Source disabled",
        format!("source `{source_id}` is disabled; the request was not stored, retry later"),
    )
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(DISABLED_RETRY_AFTER_SECS),
    );
    response
}

fn rate_limited(source_id: &str, source: &SourceRuntime) -> Option<Response> {
    let limiter = source.limiter.as_ref()?;
    let not_until = limiter.check().err()?;
    let wait = not_until.wait_time_from(governor::clock::Clock::now(
        &governor::clock::DefaultClock::default(),
    ));
    let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    metrics::counter!("switchboard_ingest_rejected_total", "source" => source_id.to_owned(), "reason" => "rate_limited")
        .increment(1);
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "Too many requests",
        format!("source `{source_id}` is over its rate limit; retry in {retry_after}s"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    Some(response)
}

fn too_large(source_id: &str, source: &SourceRuntime) -> Response {
    metrics::counter!("switchboard_ingest_rejected_total", "source" => source_id.to_owned(), "reason" => "too_large")
        .increment(1);
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "Payload too large",
        format!(
            "the body exceeds the limit of {} bytes",
            source.max_body_bytes
        ),
    )
    .into_response()
}

fn reject(
    state: &AppState,
    source_id: &str,
    source: &SourceRuntime,
    headers: &HeaderMap,
    body_len: usize,
    rejection: Rejection,
) -> Response {
    metrics::counter!("switchboard_ingest_rejected_total", "source" => source_id.to_owned(), "reason" => rejection.code)
        .increment(1);
    tracing::info!(source = %source_id, code = rejection.code, detail = %rejection.detail, "rejected request");
    state.rejections.record(StoredRejection {
        source: source_id.to_owned(),
        received_at: now_millis(),
        code: rejection.code.to_owned(),
        detail: rejection.detail.clone(),
        headers: rejections::redacted_headers(headers, &source.credential_headers),
        body_len: body_len as u64,
    });
    Problem::new(
        StatusCode::UNAUTHORIZED,
        rejection.code,
        "Request not authenticated",
        rejection.detail,
    )
    .into_response()
}
