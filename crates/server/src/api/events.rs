//! `/v1/events`: stored events, with filters, the raw body and their deliveries.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use switchboard_core::DeliveryStatus;
use switchboard_core::time::format_rfc3339;
use switchboard_store::{DeliveryFilter, EventFilter, EventRecord};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read};
use super::extract::ApiQuery;
use super::pagination::{self, Page};
use super::{ApiResult, internal, parse_time};
use crate::problem::Problem;
use crate::state::AppState;

/// A header as received.
#[derive(Debug, Serialize, ToSchema)]
pub struct Header {
    /// Lowercase name.
    pub name: String,
    /// Value (credentials redacted).
    pub value: String,
}

/// An event in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventSummary {
    /// Event id.
    pub id: String,
    /// Source id.
    pub source: String,
    /// Event type, when known.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Provider's de-duplication key.
    pub dedup_key: Option<String>,
    /// Receive time (RFC 3339).
    pub received_at: String,
    /// Content type of the body.
    pub content_type: Option<String>,
    /// Body size in bytes.
    pub body_bytes: u64,
    /// Tenant, for events published to one.
    pub tenant: Option<String>,
    /// When retention removed the body (RFC 3339); the event and its deliveries stay.
    pub payload_pruned_at: Option<String>,
    /// The request id every log line and delivery of this event carries (`X-Request-Id`).
    pub request_id: String,
    /// The W3C trace id of this event's spans and of its deliveries' `traceparent`.
    pub trace_id: String,
}

/// A delivery as listed with its event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDelivery {
    /// Delivery id (`webhook-id`).
    pub id: String,
    /// Destination id.
    pub destination: String,
    /// Status.
    #[schema(value_type = String, example = "succeeded")]
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
}

/// One event with headers, body and deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetail {
    /// Summary fields.
    #[serde(flatten)]
    pub summary: EventSummary,
    /// Request headers as received (credentials redacted).
    pub headers: Vec<Header>,
    /// The body: text when it is UTF-8, base64 otherwise (see `body_encoding`).
    pub body: String,
    /// `utf8` or `base64`.
    pub body_encoding: &'static str,
    /// Deliveries of this event.
    pub deliveries: Vec<EventDelivery>,
}

/// Filters for `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this source.
    pub source: Option<String>,
    /// Only this event type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Only events with a delivery in this status (`pending`, `in_flight`, `succeeded`,
    /// `failed`, `cancelled`, `filtered`).
    pub status: Option<String>,
    /// `false`: only events no route delivers (no route, or every route's filter said no);
    /// `true`: only events at least one route delivers.
    pub routed: Option<bool>,
    /// Received at or after (RFC 3339).
    pub since: Option<String>,
    /// Received before (RFC 3339).
    pub until: Option<String>,
    /// Only events whose raw body contains this text (compared as bytes, case-sensitive; 1–256
    /// bytes). The search runs in the database and reaches all of history, but one page
    /// examines the bodies of at most 10,000 events (of those the other filters let through):
    /// a page may then hold fewer than `limit` items, even none, while `next_cursor` continues
    /// the search further back.
    #[param(min_length = 1, max_length = 256)]
    pub body_contains: Option<String>,
    /// Page size, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Most event bodies one page of a body text search examines (the rest is left to the next
/// page, see [`switchboard_store::Store::search_events`]): bounds the work of one request
/// whatever the history holds.
pub const BODY_SCAN: u32 = 10_000;

/// Longest body text to search for, in bytes.
pub const MAX_BODY_TEXT: usize = 256;

/// Checks a body search text (`field` names it in the problem): `None` stays `None`, longer
/// than [`MAX_BODY_TEXT`] is refused.
pub fn body_text(field: &str, text: Option<String>) -> Result<Option<String>, Problem> {
    match text {
        Some(text) if text.is_empty() || text.len() > MAX_BODY_TEXT => Err(Problem::validation(
            format!("{field} must be 1 to {MAX_BODY_TEXT} bytes"),
            vec![crate::problem::FieldError {
                field: field.into(),
                message: format!("must be 1 to {MAX_BODY_TEXT} bytes"),
            }],
        )),
        text => Ok(text),
    }
}

/// Parses a delivery status filter.
pub fn parse_status(value: Option<&str>) -> Result<Option<DeliveryStatus>, Problem> {
    value
        .map(|s| {
            DeliveryStatus::parse(s).ok_or_else(|| {
                Problem::validation(
                    format!("unknown status `{s}`"),
                    vec![crate::problem::FieldError {
                        field: "status".into(),
                        message:
                            "one of pending, in_flight, succeeded, failed, cancelled, filtered"
                                .into(),
                    }],
                )
            })
        })
        .transpose()
}

/// The listing view of a stored event (also used by the offline CLI).
pub fn summary(e: &EventRecord) -> EventSummary {
    let correlation = switchboard_core::correlation::Correlation::derive(&e.id, &e.headers);
    EventSummary {
        request_id: correlation.request_id,
        trace_id: correlation.trace_id,
        id: e.id.clone(),
        source: e.source.clone(),
        event_type: e.event_type.clone(),
        dedup_key: e.dedup_key.clone(),
        tenant: e.tenant.clone(),
        payload_pruned_at: e.body_pruned_at.map(format_rfc3339),
        received_at: format_rfc3339(e.received_at),
        content_type: e.content_type.clone(),
        body_bytes: e.body_len,
    }
}

/// Text when UTF-8, otherwise base64.
pub fn encode_body(body: &[u8]) -> (String, &'static str) {
    match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(body),
            "base64",
        ),
    }
}

/// Lists events, newest first.
#[utoipa::path(get, path = "/events", tag = "events", params(EventQuery),
    responses((status = 200, body = Page<EventSummary>), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub async fn list(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<Page<EventSummary>>> {
    let limit = pagination::limit(q.limit)?;
    let filter = EventFilter {
        source: q.source,
        event_type: q.event_type,
        delivery_status: parse_status(q.status.as_deref())?,
        routed: q.routed,
        since: q
            .since
            .as_deref()
            .map(|s| parse_time("since", s))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|s| parse_time("until", s))
            .transpose()?,
        before_seq: pagination::decode(q.cursor.as_deref())?,
        body_contains: body_text("body_contains", q.body_contains)?,
        limit: limit + 1,
    };
    let (rows, next) = state
        .store
        .search_events(&filter, BODY_SCAN)
        .await
        .map_err(internal)?
        .into_page(limit);
    Ok(Json(Page {
        items: rows.iter().map(summary).collect(),
        next_cursor: next.map(pagination::encode_seq),
    }))
}

/// One event with its headers, body and deliveries.
#[utoipa::path(get, path = "/events/{id}", tag = "events", params(("id" = String, Path, description = "Event id")),
    responses((status = 200, body = EventDetail), (status = 401, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn get(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> ApiResult<Json<EventDetail>> {
    let event = state
        .store
        .get_event(&id)
        .await
        .map_err(internal)?
        .ok_or_else(|| Problem::not_found(format!("no event `{id}`")))?;
    let deliveries = state
        .store
        .list_deliveries(&DeliveryFilter {
            event_id: Some(id),
            limit: 1000,
            ..Default::default()
        })
        .await
        .map_err(internal)?;
    let (body, body_encoding) = encode_body(&event.body);
    Ok(Json(EventDetail {
        summary: summary(&event),
        headers: event
            .headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
        body,
        body_encoding,
        deliveries: deliveries
            .into_iter()
            .map(|d| EventDelivery {
                id: d.id,
                destination: d.destination,
                status: d.status,
                attempts: d.attempts,
            })
            .collect(),
    }))
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
}
