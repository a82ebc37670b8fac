//! One HTTP attempt: build the signed request, send it with a timeout, classify the response.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use switchboard_core::AttemptOutcome;
use switchboard_core::outcome::parse_retry_after;
use switchboard_signatures::standard_webhooks;

use super::destinations::HttpTarget;
use super::ssrf::{BlockedAddress, GuardedResolver, Policy};
use crate::telemetry::Outgoing;
use switchboard_core::correlation::{REQUEST_ID_HEADER, TRACEPARENT_HEADER};

/// The `user-agent` of every delivery.
pub const USER_AGENT_VALUE: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// What an attempt produced.
#[derive(Debug)]
pub struct AttemptReport {
    /// How scheduling should treat it.
    pub outcome: AttemptOutcome,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Error text when there was no usable response (or the status was an error).
    pub error: Option<String>,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Bounded response body excerpt.
    pub body_excerpt: Vec<u8>,
    /// Time to the response.
    pub latency: std::time::Duration,
}

/// The request an attempt sends: body, content type and per-message headers.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Body bytes (the event's, or the transform's output).
    pub body: Vec<u8>,
    /// `content-type`.
    pub content_type: Option<String>,
    /// Headers the publisher asked to send with the message.
    pub headers: Vec<(String, String)>,
    /// The destination's templates rendered for this message (URL, headers, subject…).
    pub rendered: crate::template::Rendered,
}

/// Sends deliveries over a shared connection pool.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: std::sync::Arc<Policy>,
    excerpt_limit: usize,
}

impl Sender {
    /// Builds the HTTP client. Redirects are not followed (a 3xx is a permanent failure: the
    /// receiver should be reconfigured) and environment proxies are ignored. Every resolved
    /// address, and every IP-literal URL, is checked against the SSRF `policy`.
    pub fn new(policy: Policy, excerpt_limit: usize) -> Result<Self, reqwest::Error> {
        let policy = std::sync::Arc::new(policy);
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(USER_AGENT_VALUE)
            // Always installed: even `allow_private_networks` leaves cloud metadata refused.
            .dns_resolver(std::sync::Arc::new(GuardedResolver::new(policy.clone())));
        Ok(Self {
            client: builder.build()?,
            policy,
            excerpt_limit,
        })
    }

    /// Makes one attempt of `delivery_id` with the prepared request.
    pub async fn send(
        &self,
        target: &HttpTarget,
        delivery_id: &str,
        prepared: &Prepared,
        outgoing: Option<&Outgoing>,
    ) -> AttemptReport {
        let body = prepared.body.as_slice();
        let content_type = prepared.content_type.as_deref();
        let started = Instant::now();
        let templated_url = match prepared.rendered.get("url").map(reqwest::Url::parse) {
            None => None,
            Some(Ok(url)) if matches!(url.scheme(), "http" | "https") => Some(url),
            Some(Ok(url)) => {
                let error = format!("the templated url `{url}` is not http(s)");
                return failure(AttemptOutcome::Permanent, error, started);
            }
            Some(Err(error)) => {
                let error = format!("the templated url is not a valid URL: {error}");
                return failure(AttemptOutcome::Permanent, error, started);
            }
        };
        let url = templated_url.as_ref().unwrap_or(&target.url);
        // IP literals never reach the resolver: check them here.
        if let Some(ip) = literal_ip(url)
            && let Err(blocked) = self.policy.check(ip)
        {
            return failure(AttemptOutcome::Permanent, blocked.to_string(), started);
        }
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut request = self
            .client
            .post(url.clone())
            .timeout(target.timeout)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header("webhook-id", delivery_id)
            .header("webhook-timestamp", timestamp.to_string());
        // During a rotation's grace period every active secret signs: receivers holding
        // either secret verify (space-separated signatures, Standard Webhooks).
        let keys = target.signing_keys(timestamp.saturating_mul(1000));
        if !keys.is_empty() {
            request = request.header(
                "webhook-signature",
                standard_webhooks::sign_header(&keys, delivery_id, timestamp, body),
            );
        }
        if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(ct).ok()) {
            request = request.header(CONTENT_TYPE, ct);
        }
        // The event's correlation, unless the destination sets these headers itself.
        if let Some(outgoing) = outgoing {
            let configured = |name: &str| target.headers.iter().any(|(k, _)| k.as_str() == name);
            if !configured(REQUEST_ID_HEADER) {
                request = request.header(REQUEST_ID_HEADER, outgoing.request_id.clone());
            }
            if !configured(TRACEPARENT_HEADER) {
                request = request.header(TRACEPARENT_HEADER, outgoing.traceparent.clone());
            }
        }
        // Per-message headers first, then the destination's own (which win on a clash).
        for (name, value) in &prepared.headers {
            if super::destinations::is_reserved_header(name)
                || (outgoing.is_some() && Outgoing::is_own(name))
            {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                request = request.header(name, value);
            }
        }
        for (name, value) in &target.headers {
            request = request.header(name.clone(), value.clone());
        }
        for (name, value) in prepared.rendered.with_prefix("header:") {
            match (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => request = request.header(name, value),
                _ => {
                    let error = format!("the templated header `{name}` is not a valid header");
                    return failure(AttemptOutcome::Permanent, error, started);
                }
            }
        }
        let response = match request.body(body.to_vec()).send().await {
            Ok(response) => response,
            Err(error) => return report_error(&error, target.timeout, started),
        };
        read_report(response, started, self.excerpt_limit).await.0
    }

    /// The outbound network policy, for connectors' IP-literal checks.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The shared HTTP client (SSRF-guarded, no redirects), for connectors.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Classifies a response: status (with `Retry-After`), headers and a bounded body excerpt,
/// which is also returned for callers that read the answer.
pub async fn read_report(
    response: reqwest::Response,
    started: Instant,
    excerpt_limit: usize,
) -> (AttemptReport, Vec<u8>) {
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body_excerpt = read_excerpt(response, excerpt_limit).await;
    let outcome = AttemptOutcome::from_status(status, retry_after);
    let error = match outcome {
        AttemptOutcome::Delivered => None,
        _ => Some(format!("HTTP {status}")),
    };
    let report = AttemptReport {
        outcome,
        status: Some(status),
        error,
        headers,
        body_excerpt: body_excerpt.clone(),
        latency: started.elapsed(),
    };
    (report, body_excerpt)
}

/// The IP address a URL names literally (those never reach the guarded resolver).
pub(crate) fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Reads at most `limit` bytes of the body, then drops the rest of the stream.
async fn read_excerpt(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut excerpt = Vec::new();
    while excerpt.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - excerpt.len());
                excerpt.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    excerpt
}

fn failure(outcome: AttemptOutcome, error: String, started: Instant) -> AttemptReport {
    AttemptReport {
        outcome,
        status: None,
        error: Some(error),
        headers: Vec::new(),
        body_excerpt: Vec::new(),
        latency: started.elapsed(),
    }
}

/// Classifies a request that got no response (refused address, timeout, connection error).
pub fn report_error(
    error: &reqwest::Error,
    timeout: std::time::Duration,
    started: Instant,
) -> AttemptReport {
    if let Some(blocked) = find_source::<BlockedAddress>(error) {
        return failure(AttemptOutcome::Permanent, blocked.to_string(), started);
    }
    let message = if error.is_timeout() {
        format!("timed out after {}", humantime_secs(timeout))
    } else if error.is_connect() {
        format!("connection failed: {}", root_cause(error))
    } else if error.is_builder() {
        return failure(
            AttemptOutcome::Permanent,
            format!("invalid request: {}", root_cause(error)),
            started,
        );
    } else {
        format!("request failed: {}", root_cause(error))
    };
    failure(
        AttemptOutcome::Retryable { retry_after: None },
        message,
        started,
    )
}

fn humantime_secs(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
