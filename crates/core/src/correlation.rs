//! Correlation ids: one request id and one W3C trace id per event, carried from ingest to every
//! attempt and sent downstream (`X-Request-Id`, `traceparent`).
//!
//! Nothing extra is stored: the ids are derived from what the event already keeps (its id and
//! its stored request headers), so old events, replays and other nodes all agree on them.
//! - request id: the inbound `X-Request-Id` when it is acceptable (1–128 visible ASCII
//!   characters from a safe set), else the trace id of a valid inbound `traceparent`, else the
//!   event id.
//! - trace id: the trace id of a valid inbound `traceparent` (so Switchboard joins the caller's
//!   trace), else the event id's 128 bits (a UUIDv7 is 16 bytes, exactly a trace id).

use serde::Serialize;

/// Longest accepted `X-Request-Id`; longer ones are ignored (the event id is used instead).
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The W3C Trace Context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The correlation of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Correlation {
    /// The request id sent as `X-Request-Id` and written on every log line about the event.
    pub request_id: String,
    /// The W3C trace id: 32 lowercase hex digits, never all zeros.
    pub trace_id: String,
    /// The caller's span id from an inbound `traceparent` (16 hex digits), if there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// Whether the caller sampled the trace (`traceparent` flag `01`); true when we start it.
    pub sampled: bool,
    /// The span id of the event's ingest span (16 hex digits), derived from the event id so
    /// that later spans (attempts on any node) can name it as their parent without storing it.
    pub event_span_id: String,
}

impl Correlation {
    /// Derives the correlation of event `event_id` from its stored request headers (names
    /// compared case-insensitively).
    pub fn derive(event_id: &str, headers: &[(String, String)]) -> Self {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let parent = header(TRACEPARENT_HEADER).and_then(parse_traceparent);
        let request_id = header(REQUEST_ID_HEADER)
            .map(str::trim)
            .filter(|id| is_valid_request_id(id))
            .map(str::to_owned)
            .or_else(|| parent.as_ref().map(|p| p.trace_id.clone()))
            .unwrap_or_else(|| event_id.to_owned());
        match parent {
            Some(parent) => Self {
                request_id,
                trace_id: parent.trace_id,
                parent_span_id: Some(parent.span_id),
                sampled: parent.sampled,
                event_span_id: span_id_of(event_id),
            },
            None => Self {
                request_id,
                trace_id: trace_id_of(event_id),
                parent_span_id: None,
                sampled: true,
                event_span_id: span_id_of(event_id),
            },
        }
    }

    /// The `traceparent` value for a request made on behalf of this event from span `span_id`
    /// (16 hex digits).
    pub fn traceparent(&self, span_id: &str) -> String {
        let flags = if self.sampled { "01" } else { "00" };
        format!("00-{}-{span_id}-{flags}", self.trace_id)
    }
}

/// A parsed `traceparent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits, not all zeros.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zeros.
    pub span_id: String,
    /// The `sampled` flag.
    pub sampled: bool,
}

/// Parses a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`). Versions above `00` are
/// accepted when their first four fields have the version-00 shape, as the spec asks;
/// version `ff`, upper-case hex and all-zero ids are refused.
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    let rest = parts.next();
    if !is_lower_hex(version, 2) || version == "ff" || (version == "00" && rest.is_some()) {
        return None;
    }
    if !is_lower_hex(trace_id, 32) || trace_id.bytes().all(|b| b == b'0') {
        return None;
    }
    if !is_lower_hex(span_id, 16) || span_id.bytes().all(|b| b == b'0') {
        return None;
    }
    if !is_lower_hex(flags, 2) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(TraceParent {
        trace_id: trace_id.to_owned(),
        span_id: span_id.to_owned(),
        sampled: flags & 1 == 1,
    })
}

/// Whether `id` may be used as a request id: 1 to [`MAX_REQUEST_ID_LEN`] characters of ASCII
/// letters, digits and `-_.:/+=@`, so it is safe in headers, logs and URLs.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b))
}

/// The trace id of an event that did not arrive with a `traceparent`: the event id's UUID
/// bits, or (for an id that is not a UUID) a stable 128-bit hash of it.
pub fn trace_id_of(event_id: &str) -> String {
    let bits = match uuid::Uuid::parse_str(event_id) {
        Ok(uuid) if !uuid.is_nil() => uuid.as_u128(),
        _ => fnv1a_128(event_id.as_bytes()),
    };
    format!("{:032x}", bits.max(1))
}

/// The ingest span id of an event: the low 64 bits of its UUID (a UUIDv7's random part), or
/// of the stable hash of an id that is not a UUID.
pub fn span_id_of(event_id: &str) -> String {
    let bits = match uuid::Uuid::parse_str(event_id) {
        Ok(uuid) if !uuid.is_nil() => uuid.as_u128(),
        _ => fnv1a_128(event_id.as_bytes()),
    };
    format!("{:016x}", (bits as u64).max(1))
}

/// A fresh random span id (16 hex digits, never all zeros).
pub fn new_span_id() -> String {
    format!("{:016x}", rand::random::<u64>().max(1))
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// FNV-1a, 128-bit variant: stable across versions and platforms (unlike `DefaultHasher`).
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes.iter().fold(OFFSET, |hash, &b| {
        (hash ^ u128::from(b)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const EVENT: &str = "01937d6e-8f1c-7a2b-9c3d-4e5f60718293";
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn created_from_the_event_id_without_headers() {
        let c = Correlation::derive(EVENT, &[]);
        assert_eq!(c.request_id, EVENT);
        assert_eq!(c.trace_id, "01937d6e8f1c7a2b9c3d4e5f60718293");
        assert_eq!(c.parent_span_id, None);
        assert_eq!(c.event_span_id, "9c3d4e5f60718293");
        assert!(c.sampled);
        assert_eq!(
            c.traceparent("00f067aa0ba902b7"),
            "00-01937d6e8f1c7a2b9c3d4e5f60718293-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn request_id_header_wins_and_is_validated() {
        let c = Correlation::derive(EVENT, &headers(&[("X-Request-Id", "req-42")]));
        assert_eq!(c.request_id, "req-42");
        assert_eq!(c.trace_id, trace_id_of(EVENT));
        for bad in ["", "has space", "new\nline", &"x".repeat(129), "é"] {
            let c = Correlation::derive(EVENT, &headers(&[("x-request-id", bad)]));
            assert_eq!(c.request_id, EVENT, "{bad:?} must be ignored");
        }
        let longest = "x".repeat(MAX_REQUEST_ID_LEN);
        let c = Correlation::derive(EVENT, &headers(&[("x-request-id", &longest)]));
        assert_eq!(c.request_id, longest);
    }

    #[test]
    fn traceparent_joins_the_callers_trace() {
        let c = Correlation::derive(EVENT, &headers(&[("traceparent", TP)]));
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.request_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        let both = Correlation::derive(
            EVENT,
            &headers(&[("traceparent", TP), ("x-request-id", "abc")]),
        );
        assert_eq!(both.request_id, "abc");
        assert_eq!(both.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let unsampled = Correlation::derive(
            EVENT,
            &headers(&[(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            )]),
        );
        assert!(!unsampled.sampled);
        assert!(unsampled.traceparent("1111111111111111").ends_with("-00"));
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad:?}");
            let c = Correlation::derive(EVENT, &headers(&[("traceparent", bad)]));
            assert_eq!(c.trace_id, trace_id_of(EVENT));
        }
        // A future version with extra fields is read by its version-00 prefix.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn non_uuid_ids_get_a_stable_trace_id() {
        let a = trace_id_of("not-a-uuid");
        assert_eq!(a.len(), 32);
        assert_eq!(a, trace_id_of("not-a-uuid"));
        assert_ne!(a, trace_id_of("not-a-uuid2"));
        let span = new_span_id();
        assert_eq!(span.len(), 16);
        assert!(parse_traceparent(&format!("00-{a}-{span}-01")).is_some());
    }
}
