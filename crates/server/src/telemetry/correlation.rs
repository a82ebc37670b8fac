//! Correlation on the wire: read `X-Request-Id` / `traceparent` from an inbound request and
//! write them on every outgoing request made for an event (deliveries, proxy calls).

use http::{HeaderMap, HeaderName, HeaderValue};
use switchboard_core::correlation::{
    Correlation, REQUEST_ID_HEADER, TRACEPARENT_HEADER, new_span_id,
};

/// The correlation of a request identified by `id` (an event id, or a fresh id for a call that
/// stores nothing), from its `X-Request-Id` and `traceparent` headers.
pub fn from_headers(id: &str, headers: &HeaderMap) -> Correlation {
    let pick = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| (name.to_owned(), v.to_owned()))
    };
    let pairs: Vec<(String, String)> = [pick(REQUEST_ID_HEADER), pick(TRACEPARENT_HEADER)]
        .into_iter()
        .flatten()
        .collect();
    Correlation::derive(id, &pairs)
}

/// The two headers an outgoing request carries for its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `X-Request-Id`: the event's request id.
    pub request_id: HeaderValue,
    /// `traceparent`: the event's trace id and the span making the request.
    pub traceparent: HeaderValue,
}

impl Outgoing {
    /// The headers for a request made on behalf of `correlation` from span `span_id` (the
    /// current trace span when tracing is on, else a fresh id).
    pub fn new(correlation: &Correlation, span_id: Option<String>) -> Option<Self> {
        let span_id = span_id.unwrap_or_else(new_span_id);
        Some(Self {
            request_id: HeaderValue::from_str(&correlation.request_id).ok()?,
            traceparent: HeaderValue::from_str(&correlation.traceparent(&span_id)).ok()?,
        })
    }

    /// Whether `name` is one of the headers this sets (others' values for them are dropped).
    pub fn is_own(name: &str) -> bool {
        name.eq_ignore_ascii_case(REQUEST_ID_HEADER)
            || name.eq_ignore_ascii_case(TRACEPARENT_HEADER)
    }

    /// Sets both headers on `headers`, replacing any value they had.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(
            HeaderName::from_static(REQUEST_ID_HEADER),
            self.request_id.clone(),
        );
        headers.insert(
            HeaderName::from_static(TRACEPARENT_HEADER),
            self.traceparent.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::correlation::parse_traceparent;

    #[test]
    fn reads_and_writes_the_headers() {
        let mut inbound = HeaderMap::new();
        inbound.insert("x-request-id", HeaderValue::from_static("abc-1"));
        inbound.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let c = from_headers("01937d6e-8f1c-7a2b-9c3d-4e5f60718293", &inbound);
        assert_eq!(c.request_id, "abc-1");
        assert_eq!(c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let out = Outgoing::new(&c, Some("1111111111111111".into())).expect("valid");
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("stale"));
        out.apply(&mut headers);
        assert_eq!(headers.get_all("x-request-id").iter().count(), 1);
        assert_eq!(headers["x-request-id"], "abc-1");
        let tp = parse_traceparent(headers["traceparent"].to_str().expect("ascii")).expect("valid");
        assert_eq!(tp.trace_id, c.trace_id);
        assert_eq!(tp.span_id, "1111111111111111");
        let fresh = Outgoing::new(&c, None).expect("valid");
        assert!(parse_traceparent(fresh.traceparent.to_str().expect("ascii")).is_some());
        assert!(Outgoing::is_own("X-Request-Id") && Outgoing::is_own("TraceParent"));
        assert!(!Outgoing::is_own("webhook-id"));
    }
}
