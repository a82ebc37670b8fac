//! The spans Switchboard opens, in one place so their names and fields stay consistent:
//! `ingest` → `commit` for an accepted request, `attempt` → `route` for each delivery try,
//! `proxy call` (→ `oauth refresh`) for calls through a connection, and `sync page` for a
//! sync's page fetch.
//!
//! Every span is an ordinary `tracing` span: log lines inside it carry its fields (request id,
//! trace id), and when `[tracing]` is on, the OpenTelemetry layer exports it. An event's spans
//! all share the event's trace id: the ingest span is started with the trace and span ids
//! derived from the event (see [`switchboard_core::correlation`]), and an attempt — later, on
//! any node — names that derived ingest span as its parent.

use std::cell::Cell;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use switchboard_core::correlation::Correlation;
use switchboard_store::ClaimedDelivery;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

thread_local! {
    /// Ids the next started OTel span must take (set only while [`start_event_span`] starts
    /// one, on this thread).
    static PRESET: Cell<(Option<TraceId>, Option<SpanId>)> = const { Cell::new((None, None)) };
}

/// Hands out preset ids when [`start_event_span`] asks for them, random ids otherwise.
#[derive(Debug, Default)]
pub(crate) struct EventIdGenerator {
    random: RandomIdGenerator,
}

impl IdGenerator for EventIdGenerator {
    fn new_trace_id(&self) -> TraceId {
        let (trace, span) = PRESET.get();
        match trace {
            Some(trace) => {
                PRESET.set((None, span));
                trace
            }
            None => self.random.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        let (trace, span) = PRESET.get();
        match span {
            Some(span) => {
                PRESET.set((trace, None));
                span
            }
            None => self.random.new_span_id(),
        }
    }
}

/// The `ingest` span of an event accepted on `source` (see [`start_event_span`]).
pub fn ingest(source: &str, event_id: &str, correlation: &Correlation) -> Span {
    let span = tracing::info_span!(
        "ingest",
        source = %source,
        event = %event_id,
        request_id = %correlation.request_id,
        trace_id = %correlation.trace_id,
    );
    start_event_span(&span, correlation);
    span
}

/// The `commit` span: waiting for the group commit that makes the event durable.
pub fn commit(routes: usize) -> Span {
    tracing::info_span!("commit", routes)
}

/// The `attempt` span of one delivery try, a child of its event's ingest span.
pub fn attempt(delivery: &ClaimedDelivery) -> Span {
    let correlation = &delivery.correlation;
    let span = tracing::info_span!(
        "attempt",
        delivery = %delivery.id,
        event = %delivery.event_id,
        destination = %delivery.destination,
        attempt = delivery.attempts + 1,
        request_id = %correlation.request_id,
        trace_id = %correlation.trace_id,
    );
    if let Some(parent) = remote_context(
        &correlation.trace_id,
        &correlation.event_span_id,
        correlation.sampled,
    ) {
        // Fails only when tracing is off (no OpenTelemetry layer): nothing to link then.
        let _ = span.set_parent(parent);
    }
    span
}

/// The `route` span: a route's filter and transforms (and the destination's templates).
pub fn route(route_id: &str) -> Span {
    tracing::info_span!("route", route = %route_id)
}

/// The `proxy call` span of a call through connection `connection`; a child of the caller's
/// `traceparent` when it sent one.
pub fn proxy_call(connection: &str, method: &str, correlation: &Correlation) -> Span {
    let span = tracing::info_span!(
        "proxy call",
        connection = %connection,
        method = %method,
        request_id = %correlation.request_id,
        trace_id = %correlation.trace_id,
    );
    start_event_span(&span, correlation);
    span
}

/// The `oauth refresh` span of a token refresh of `connection` (a child of the current span).
pub fn oauth_refresh(connection: &str) -> Span {
    tracing::info_span!("oauth refresh", connection = %connection)
}

/// The `sync page` span of page `page` (0-based) of sync `sync` (a child of the current span),
/// for the sync runner to wrap each page fetch in.
pub fn sync_page(sync: &str, page: u64) -> Span {
    tracing::info_span!("sync page", sync = %sync, page)
}

/// The span id of the current span when tracing is on (to send as the parent in an outgoing
/// `traceparent`), `None` otherwise.
pub fn current_span_id() -> Option<String> {
    let context = Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.span_id().to_string())
}

/// Starts `span`'s OpenTelemetry span now, with the event's trace id (unless it joins the
/// caller's trace, whose `traceparent` becomes its parent) and the event's derived span id.
/// Without the OpenTelemetry layer this does nothing.
fn start_event_span(span: &Span, correlation: &Correlation) {
    if let Some(parent_span) = &correlation.parent_span_id
        && let Some(parent) =
            remote_context(&correlation.trace_id, parent_span, correlation.sampled)
    {
        let _ = span.set_parent(parent);
    }
    let trace = TraceId::from_hex(&correlation.trace_id).ok();
    let own = SpanId::from_hex(&correlation.event_span_id).ok();
    PRESET.set((trace, own));
    // `context()` builds the OTel span on this thread, taking the preset ids.
    let _ = span.context();
    PRESET.set((None, None));
}

/// A remote parent context (`trace_id`, `span_id`), as if received in a `traceparent`.
fn remote_context(trace_id: &str, span_id: &str, sampled: bool) -> Option<opentelemetry::Context> {
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let flags = if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let parent = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    Some(opentelemetry::Context::new().with_remote_span_context(parent))
}
