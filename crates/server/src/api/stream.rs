//! `GET /v1/stream`: events and delivery attempts as Server-Sent Events, as they commit.
//!
//! The first message is `event: ready` with the starting cursor. Each later message has
//! `event: event` or `event: attempt`, a JSON `data` line
//! ([`StreamEvent`], [`StreamAttempt`]) and an `id` that is a feed cursor: a client that
//! reconnects with `Last-Event-ID` (browsers do it by themselves) or `?after=` resumes right
//! after the last message it got, with no gap and no repeat (see [`crate::live`]). Idle streams
//! get a `:` keep-alive comment every `stream.keep_alive`. Every `stream.auth_recheck` an open
//! stream checks its bearer token again and ends once the token was revoked.
//!
//! With `body=true` an event carries its raw body as base64 (`body_base64`): `switchboard
//! listen` forwards events from it without a second request per event, in stream order, and
//! without racing retention (a body fetched later by id may already be pruned). Bodies are
//! bounded by the ingest limits, and the per-stream buffer by `stream.buffer` items.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::response::sse::Event as SseEvent;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use switchboard_core::time::format_rfc3339;
use switchboard_store::{FeedAttempt, FeedCursor, FeedEntry, FeedFilter, FeedItem};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Auth, Read, bearer_hash, principal_for_hash};
use super::events::Header;
use super::extract::ApiQuery;
use super::{ApiResult, internal};
use crate::live::{Start, outcome, sse};
use crate::problem::{FieldError, Problem};
use crate::state::AppState;

/// Query of `GET /v1/stream`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only these sources (comma-separated, at most 100); events and the attempts of their
    /// deliveries.
    pub source: Option<String>,
    /// Only these event types (comma-separated, at most 100).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// What to send: `events`, `attempts` or both (comma-separated; default both).
    pub include: Option<String>,
    /// `true`: events carry their raw body as base64 (`body_base64`).
    pub body: Option<bool>,
    /// Where to start without a cursor: `now` (default) or `beginning`.
    pub from: Option<String>,
    /// Resume after this cursor (an `id` of an earlier message). `Last-Event-ID` wins over it.
    pub after: Option<String>,
}

/// `event: event` — an event was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamEvent {
    /// Event id.
    pub id: String,
    /// Source id.
    pub source: String,
    /// Event type, when known.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Tenant, for events published to one.
    pub tenant: Option<String>,
    /// Receive time (RFC 3339).
    pub received_at: String,
    /// Content type of the body.
    pub content_type: Option<String>,
    /// Body size in bytes.
    pub body_bytes: u64,
    /// Request headers as received (credentials redacted).
    pub headers: Vec<Header>,
    /// The raw body, base64 (only with `body=true`, and not once retention removed it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// Whether retention removed the body.
    pub payload_pruned: bool,
}

/// `event: attempt` — a delivery attempt was recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamAttempt {
    /// Event id.
    pub event_id: String,
    /// Delivery id (`webhook-id`).
    pub delivery_id: String,
    /// Source of the event.
    pub source: String,
    /// Type of the event.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Route id.
    pub route: String,
    /// Destination id.
    pub destination: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// `delivered`, `retrying`, `failed` (permanent error), `dead` (retries exhausted) or
    /// `filtered`.
    pub outcome: &'static str,
    /// HTTP status of the response, if one came.
    pub status_code: Option<u16>,
    /// Error, when the attempt failed without a usable response.
    pub error: Option<String>,
    /// Time to the response or error, in milliseconds.
    pub latency_ms: u64,
    /// When the attempt started (RFC 3339).
    pub started_at: String,
}

/// Most values of one filter (each becomes a bound parameter of every store query).
const MAX_FILTER_VALUES: usize = 100;

fn list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn invalid(field: &str, message: &str) -> Problem {
    Problem::validation(
        format!("{field}: {message}"),
        vec![FieldError {
            field: field.into(),
            message: message.into(),
        }],
    )
}

/// Parses the query (and `Last-Event-ID`) into a filter and a start.
fn parse(q: StreamQuery, headers: &HeaderMap) -> Result<(FeedFilter, Start), Problem> {
    let include = list(q.include.as_deref());
    if let Some(bad) = include
        .iter()
        .find(|k| k.as_str() != "events" && k.as_str() != "attempts")
    {
        return Err(invalid(
            "include",
            &format!("`{bad}` is not one of events, attempts"),
        ));
    }
    let sources = list(q.source.as_deref());
    let event_types = list(q.event_type.as_deref());
    if sources.len() > MAX_FILTER_VALUES {
        return Err(invalid("source", "at most 100 sources"));
    }
    if event_types.len() > MAX_FILTER_VALUES {
        return Err(invalid("type", "at most 100 types"));
    }
    let filter = FeedFilter {
        sources,
        event_types,
        no_events: !include.is_empty() && !include.iter().any(|k| k == "events"),
        no_attempts: !include.is_empty() && !include.iter().any(|k| k == "attempts"),
        with_body: q.body.unwrap_or(false),
    };
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| invalid("Last-Event-ID", "not a cursor"))?;
    let start = match (last_event_id, q.after) {
        (Some(cursor), _) => Start::After(
            FeedCursor::parse(&cursor).ok_or_else(|| invalid("Last-Event-ID", "not a cursor"))?,
        ),
        (None, Some(cursor)) => Start::After(
            FeedCursor::parse(&cursor).ok_or_else(|| invalid("after", "not a cursor"))?,
        ),
        (None, None) => match q.from.as_deref() {
            None | Some("now") => Start::Now,
            Some("beginning") => Start::Beginning,
            Some(_) => return Err(invalid("from", "one of now, beginning")),
        },
    };
    Ok((filter, start))
}

/// The wire form of an event.
pub fn event_message(e: switchboard_store::EventRecord, with_body: bool) -> StreamEvent {
    let pruned = e.body_pruned_at.is_some();
    StreamEvent {
        body_base64: (with_body && !pruned)
            .then(|| base64::engine::general_purpose::STANDARD.encode(&e.body)),
        id: e.id,
        source: e.source,
        event_type: e.event_type,
        tenant: e.tenant,
        received_at: format_rfc3339(e.received_at),
        content_type: e.content_type,
        body_bytes: e.body_len,
        headers: e
            .headers
            .into_iter()
            .map(|(name, value)| Header { name, value })
            .collect(),
        payload_pruned: pruned,
    }
}

/// The wire form of an attempt.
pub fn attempt_message(a: FeedAttempt) -> StreamAttempt {
    let outcome = outcome(&a);
    StreamAttempt {
        outcome,
        event_id: a.attempt.event_id,
        delivery_id: a.attempt.delivery_id,
        source: a.source,
        event_type: a.event_type,
        route: a.route_id,
        destination: a.attempt.destination,
        attempt: a.attempt.attempt,
        status_code: a.attempt.status_code,
        error: a.attempt.error,
        latency_ms: a.attempt.latency_ms,
        started_at: format_rfc3339(a.attempt.started_at),
    }
}

/// The SSE message of one feed item: `event: event` or `event: attempt`.
fn sse_message(item: FeedItem, with_body: bool) -> Option<SseEvent> {
    match item.entry {
        FeedEntry::Event(e) => sse::message(&item.cursor, "event", &event_message(e, with_body)),
        FeedEntry::Attempt(a) => sse::message(&item.cursor, "attempt", &attempt_message(a)),
    }
}

/// Streams events and delivery attempts as they commit (Server-Sent Events).
///
/// The first message is `event: ready` (data: `{"cursor": …}`); then `event: event` (data:
/// `StreamEvent`) and `event: attempt` (data: `StreamAttempt`). Each `id` is a cursor to resume
/// after it with `Last-Event-ID` or `?after=`. The stream checks its token again every
/// `stream.auth_recheck` (30 s) and ends once the token was revoked.
#[utoipa::path(get, path = "/stream", tag = "events", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this message id (sent by SSE clients on reconnect)")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "An endless stream of `event` (StreamEvent JSON) and `attempt` (StreamAttempt JSON) messages"),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)),
    security(("bearer" = [])))]
pub async fn stream(
    _auth: Auth<Read>,
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> ApiResult<Response> {
    let (filter, start) = parse(q, &headers)?;
    // The token the stream was opened with (the extractor just checked it): checked again
    // every `stream.auth_recheck`, so revoking it ends the stream.
    let token_hash = bearer_hash(&headers)?;
    let slot = state.live.admit().map_err(sse::too_many)?;
    let after = state.live.start(start).await.map_err(internal)?;
    let with_body = filter.with_body;
    let items = state.live.follow(after, filter);
    // The first message names the starting cursor, so a client that drops before any item
    // still resumes from where it started (not from a later "now").
    let ready = SseEvent::default()
        .id(after.encode())
        .event("ready")
        .data(format!("{{\"cursor\":\"{}\"}}", after.encode()));
    let checker = state.clone();
    let recheck: sse::Recheck = Box::new(move || {
        let (state, hash) = (checker.clone(), token_hash.clone());
        Box::pin(async move { principal_for_hash(&state, &hash).await.is_ok() })
    });
    Ok(sse::respond(
        &state.live,
        items,
        slot,
        Some(ready),
        move |item| sse_message(item, with_body),
        recheck,
    ))
}

/// Routes of this resource.
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(stream))
}
