//! `/v1/deliveries` and `/v1/attempts`: where each event went, and every try.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use switchboard_core::DeliveryStatus;
use switchboard_core::time::format_rfc3339;
use switchboard_store::{AttemptRecord, DeliveryFilter, DeliveryRecord};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read};
use super::events::{Header, encode_body, parse_status};
use super::extract::ApiQuery;
use super::pagination::{self, Page};
use super::{ApiResult, internal};
use crate::problem::Problem;
use crate::state::AppState;

/// A delivery: one event on one route.
#[derive(Debug, Serialize, ToSchema)]
pub struct Delivery {
    /// Delivery id, sent as `webhook-id`.
    pub id: String,
    /// Event id.
    pub event_id: String,
    /// Route id.
    pub route_id: String,
    /// Destination id.
    pub destination: String,
    /// `pending`, `in_flight`, `succeeded`, `failed` or `cancelled`.
    #[schema(value_type = String, example = "pending")]
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (RFC 3339; meaningful while pending).
    pub next_attempt_at: String,
    /// HTTP status of the last attempt.
    pub last_status: Option<u16>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    /// Delivery id.
    pub delivery_id: String,
    /// Event id.
    pub event_id: String,
    /// Destination id.
    pub destination: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Latency in milliseconds.
    pub latency_ms: u64,
    /// `delivered`, `retryable` or `permanent`.
    pub outcome: String,
    /// HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    /// Transport or policy error.
    pub error: Option<String>,
    /// URL requested.
    pub request_url: String,
    /// Response headers.
    pub response_headers: Vec<Header>,
    /// Response body excerpt (text or base64, see `response_body_encoding`).
    pub response_body: String,
    /// `utf8` or `base64`.
    pub response_body_encoding: &'static str,
    /// The event's request id, sent as `X-Request-Id` with the attempt (null when the event
    /// is gone).
    pub request_id: Option<String>,
    /// The event's trace id, sent in the attempt's `traceparent`.
    pub trace_id: Option<String>,
}

/// Fills the request id and trace id of `attempts` from their events (one read per event).
pub async fn with_correlation(
    store: &dyn switchboard_store::Store,
    mut attempts: Vec<Attempt>,
) -> Result<Vec<Attempt>, switchboard_store::StoreError> {
    let mut known: std::collections::HashMap<String, Option<(String, String)>> =
        std::collections::HashMap::new();
    for attempt in &mut attempts {
        if !known.contains_key(&attempt.event_id) {
            let ids = store.get_event(&attempt.event_id).await?.map(|event| {
                let c =
                    switchboard_core::correlation::Correlation::derive(&event.id, &event.headers);
                (c.request_id, c.trace_id)
            });
            known.insert(attempt.event_id.clone(), ids);
        }
        if let Some(Some((request_id, trace_id))) = known.get(&attempt.event_id) {
            attempt.request_id = Some(request_id.clone());
            attempt.trace_id = Some(trace_id.clone());
        }
    }
    Ok(attempts)
}

/// A delivery with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: Delivery,
    /// Its attempts, oldest first.
    pub attempt_log: Vec<Attempt>,
}

/// Filters for `GET /v1/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only this event.
    pub event_id: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this destination.
    pub destination: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Filters for `GET /v1/attempts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AttemptQuery {
    /// Attempts of this event's deliveries.
    pub event_id: Option<String>,
    /// Attempts of this delivery.
    pub delivery_id: Option<String>,
}

/// Maps a stored delivery.
pub fn delivery(d: DeliveryRecord) -> Delivery {
    Delivery {
        id: d.id,
        event_id: d.event_id,
        route_id: d.route_id,
        destination: d.destination,
        status: d.status,
        attempts: d.attempts,
        next_attempt_at: format_rfc3339(d.next_attempt_at),
        last_status: d.last_status,
        last_error: d.last_error,
        created_at: format_rfc3339(d.created_at),
        updated_at: format_rfc3339(d.updated_at),
    }
}

fn attempt(a: AttemptRecord) -> Attempt {
    let (response_body, response_body_encoding) = encode_body(&a.response_body);
    Attempt {
        delivery_id: a.delivery_id,
        event_id: a.event_id,
        destination: a.destination,
        attempt: a.attempt,
        started_at: format_rfc3339(a.started_at),
        latency_ms: a.latency_ms,
        outcome: a.outcome,
        status_code: a.status_code,
        error: a.error,
        request_url: a.request_url,
        response_headers: a
            .response_headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
        response_body,
        response_body_encoding,
        request_id: None,
        trace_id: None,
    }
}

/// Lists deliveries, newest first.
#[utoipa::path(get, path = "/deliveries", tag = "deliveries", params(DeliveryQuery),
    responses((status = 200, body = Page<Delivery>), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Json<Page<Delivery>>> {
    let limit = pagination::limit(q.limit)?;
    let filter = DeliveryFilter {
        status: parse_status(q.status.as_deref())?,
        destination: q.destination,
        event_id: q.event_id,
        before_seq: pagination::decode(q.cursor.as_deref())?,
        limit: limit + 1,
    };
    let rows = state
        .store
        .list_deliveries(&filter)
        .await
        .map_err(internal)?;
    Ok(Json(pagination::page(rows, limit, |d| d.seq, delivery)))
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/deliveries/{id}", tag = "deliveries", params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, body = DeliveryDetail), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryDetail>> {
    let record = state
        .store
        .get_delivery(&id)
        .await
        .map_err(internal)?
        .ok_or_else(|| Problem::not_found(format!("no delivery `{id}`")))?;
    let attempts = state
        .store
        .list_attempts(None, Some(&id))
        .await
        .map_err(internal)?;
    let attempt_log = attempts.into_iter().map(attempt).collect();
    let attempt_log = with_correlation(state.store.as_ref(), attempt_log)
        .await
        .map_err(internal)?;
    Ok(Json(DeliveryDetail {
        delivery: delivery(record),
        attempt_log,
    }))
}

/// Attempts of an event's or a delivery's deliveries, oldest first.
#[utoipa::path(get, path = "/attempts", tag = "deliveries", params(AttemptQuery),
    responses((status = 200, body = Vec<Attempt>), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn attempts(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<AttemptQuery>,
) -> ApiResult<Json<Vec<Attempt>>> {
    if q.event_id.is_none() && q.delivery_id.is_none() {
        return Err(Problem::validation(
            "give event_id or delivery_id",
            vec![crate::problem::FieldError {
                field: "event_id".into(),
                message: "event_id or delivery_id is required".into(),
            }],
        ));
    }
    let rows = state
        .store
        .list_attempts(q.event_id.as_deref(), q.delivery_id.as_deref())
        .await
        .map_err(internal)?;
    let attempts = rows.into_iter().map(attempt).collect();
    Ok(Json(
        with_correlation(state.store.as_ref(), attempts)
            .await
            .map_err(internal)?,
    ))
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(attempts))
}
