//! [`ConnectionClient`]: calls a provider's API through a connection, with its auth injected and
//! the connection's policies applied — a reusable library API (the proxy route is one user;
//! destinations, schedules and syncs are others).
//!
//! Per call: the token is refreshed first when it expires within the margin; the circuit must
//! be closed; pacing (GCRA, plus pauses set by `Retry-After` and exhausted rate-limit windows)
//! waits for a slot; the bulkhead bounds calls in flight. A `401` on an OAuth2 connection
//! refreshes the token once (single-flight) and repeats the call. Idempotent methods (and a
//! POST or PATCH with an `Idempotency-Key`) are retried on network errors and on the provider's
//! retryable statuses, with exponential backoff and jitter, waiting at least what `Retry-After`
//! or the reset header asks.

use crate::telemetry::Outgoing;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchboard_core::correlation::Correlation;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use switchboard_core::outcome::parse_retry_after;
use switchboard_core::providers::AuthMode;
use switchboard_core::time::now_millis;

use super::resilience::rate_state;
use super::{ConnState, ConnectionError, Connections, Snapshot, Status};
use crate::delivery::ssrf::Policy;

/// Largest provider response the client reads.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// First retry delay; doubled per retry, capped at [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A call to make.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// Method.
    pub method: Method,
    /// Path below the provider's base URL (`repos/o/r/issues`); a leading `/` is optional.
    pub path: String,
    /// Query string without `?`.
    pub query: Option<String>,
    /// Headers to forward (hop-by-hop headers and `Authorization` are dropped).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Retries of this call at most; `None` uses `connections.max_retries`. A caller with its
    /// own durable retries (the `api` destination) asks for `Some(0)`.
    pub max_retries: Option<u32>,
}

impl ApiRequest {
    /// A request without headers or body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: None,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            max_retries: None,
        }
    }
}

/// The provider's answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers (hop-by-hop headers removed).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// For an answer that is not a success (status 300 and above): the provider's error,
    /// normalised.
    pub error: Option<ProviderError>,
}

/// A provider error in one shape whatever the provider (from its file's `errors` pointers).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProviderError {
    /// Provider id.
    pub provider: String,
    /// The provider's HTTP status.
    pub status: u16,
    /// The provider's error code, when its body has one.
    pub code: Option<String>,
    /// The provider's message, when its body has one.
    pub message: Option<String>,
    /// Whether trying again later may succeed.
    pub retryable: bool,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The connection is unusable (unknown, pending, needs reauthorization, bad parameters).
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The circuit is open after repeated failures.
    #[error("the connection's circuit is open after repeated failures; retry in {0:?}")]
    CircuitOpen(Duration),
    /// Pacing or the bulkhead would make the call wait longer than its timeout.
    #[error("the connection is rate limited; retry in {0:?}")]
    RateLimited(Duration),
    /// No slot in the bulkhead within the timeout.
    #[error("too many calls in flight on this connection")]
    Busy,
    /// No answer within the timeout.
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    /// Connecting or reading failed.
    #[error("cannot reach the provider: {0}")]
    Network(String),
    /// The URL's address is refused by the SSRF policy.
    #[error("{0}")]
    Blocked(String),
    /// The provider answered with a retryable error status and retries ran out.
    #[error("the provider answered HTTP {} after {attempts} attempt(s)", error.status)]
    Provider {
        /// The normalised error.
        error: ProviderError,
        /// The provider's response.
        response: Box<ApiResponse>,
        /// Attempts made.
        attempts: u32,
    },
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and others a proxy must not forward.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a header must not cross the proxy (hop-by-hop, or named by `Connection`).
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
        || headers
            .get_all(reqwest::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

/// An IP-literal URL's address checked against the policy (names are checked by the resolver).
pub fn check_literal(policy: &Policy, url: &reqwest::Url) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    policy.check(ip).map_err(|blocked| blocked.to_string())
}

/// A reqwest error with its causes, without URLs (which may carry an API key in the query).
pub fn describe_error(error: &reqwest::Error) -> String {
    let mut text = error.without_url_ref().to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let kind = if self.is_timeout() {
            "timed out"
        } else if self.is_connect() {
            "connection failed"
        } else if self.is_body() || self.is_decode() {
            "reading the body failed"
        } else if self.is_request() {
            "request failed"
        } else {
            "HTTP error"
        };
        kind.to_owned()
    }
}

/// Reads the provider's error code and message through its file's JSON pointers.
pub fn normalise(snapshot: &Snapshot, status: u16, body: &[u8], retryable: bool) -> ProviderError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let read = |pointer: &Option<String>| {
        let value = json.as_ref()?.pointer(pointer.as_deref()?)?;
        Some(match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    ProviderError {
        provider: snapshot.provider.id.clone(),
        status,
        code: read(&snapshot.provider.errors.code),
        message: read(&snapshot.provider.errors.message),
        retryable,
    }
}

/// Whether an answer with `status` may succeed when tried again later, whatever the provider:
/// `408`, `425`, `429` and `5xx` (a provider file's `retry.statuses` adds more).
pub fn retryable_answer(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

fn idempotent(request: &ApiRequest) -> bool {
    matches!(
        request.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    ) || request.headers.contains_key("idempotency-key")
}

fn backoff(retry: u32) -> Duration {
    let base = BASE_BACKOFF
        .saturating_mul(1u32 << retry.min(16))
        .min(MAX_BACKOFF);
    switchboard_core::retry::jitter(base, &mut rand::rng())
}

/// Calls providers through connections.
#[derive(Clone, Debug)]
pub struct ConnectionClient {
    connections: Arc<Connections>,
}

impl ConnectionClient {
    /// A client over the connections service.
    pub fn new(connections: Arc<Connections>) -> Self {
        Self { connections }
    }

    /// Makes `request` through connection `id`.
    /// The call carries `X-Request-Id` and `traceparent`: the caller's request id (or a new
    /// one) and the caller's trace (or a new one), with the `proxy call` span as the parent.
    ///
    /// A GET is revalidated against this node's ETag cache of the connection (a `304` is
    /// answered with the cached response, marked `x-switchboard-cache: revalidated`), and
    /// identical GETs in flight at once share one upstream call.
    pub async fn call(&self, id: &str, request: ApiRequest) -> Result<ApiResponse, CallError> {
        use tracing::Instrument as _;
        let started = Instant::now();
        let correlation = crate::telemetry::from_headers(
            &switchboard_core::ids::new_event_id(),
            &request.headers,
        );
        let span = crate::telemetry::spans::proxy_call(id, request.method.as_str(), &correlation);
        let result = self
            .call_shared(id, request, &correlation)
            .instrument(span.clone())
            .await;
        span.in_scope(|| match &result {
            Ok(response) => tracing::info!(connection = %id, status = response.status.as_u16(), attempts = response.attempts, "connection call"),
            Err(error) => tracing::info!(connection = %id, %error, "connection call failed"),
        });
        let graphql_failed = matches!(&result, Ok(r) if r.status.is_success()
            && super::cache::graphql_errors(&r.headers, &r.body));
        if graphql_failed {
            metrics::counter!("switchboard_connection_graphql_errors_total", "connection" => id.to_owned()).increment(1);
        }
        let outcome = match &result {
            Ok(_) if graphql_failed => "graphql_error",
            Ok(response) if response.status.is_success() => "success",
            Ok(response) if response.status.is_client_error() => "client_error",
            Ok(_) => "server_error",
            Err(CallError::Provider { .. }) => "provider_error",
            Err(CallError::Connection(_)) => "unusable",
            Err(_) => "failed",
        };
        metrics::counter!("switchboard_connection_calls_total", "connection" => id.to_owned(), "outcome" => outcome).increment(1);
        metrics::histogram!("switchboard_connection_call_duration_seconds", "connection" => id.to_owned())
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// GETs: coalesced with identical ones in flight, then through the ETag cache.
    async fn call_shared(
        &self,
        id: &str,
        request: ApiRequest,
        correlation: &Correlation,
    ) -> Result<ApiResponse, CallError> {
        if request.method != Method::GET || !request.body.is_empty() {
            return self.call_inner(id, request, correlation).await;
        }
        let (_, state) = self.connections.get(id).await?;
        let key = super::cache::request_key(&request);
        let shared = state
            .inflight
            .run(key.clone(), async {
                self.call_cached(id, &state, key.clone(), request, correlation)
                    .await
                    .map_err(Arc::new)
            })
            .await;
        shared.map_err(|error| clone_error(&error))
    }

    async fn call_cached(
        &self,
        id: &str,
        state: &ConnState,
        key: String,
        mut request: ApiRequest,
        correlation: &Correlation,
    ) -> Result<ApiResponse, CallError> {
        let cached = if request.headers.contains_key(reqwest::header::IF_NONE_MATCH) {
            None
        } else {
            state.responses.get(&key)
        };
        if let Some(entry) = &cached {
            request
                .headers
                .insert(reqwest::header::IF_NONE_MATCH, entry.etag.clone());
        }
        let response = self.call_inner(id, request, correlation).await?;
        match (&cached, response.status) {
            (Some(entry), StatusCode::NOT_MODIFIED) => {
                metrics::counter!("switchboard_connection_cache_hits_total", "connection" => id.to_owned()).increment(1);
                let mut answer = entry.response.clone();
                answer.attempts = response.attempts;
                answer.headers.insert(
                    "x-switchboard-cache",
                    HeaderValue::from_static("revalidated"),
                );
                Ok(answer)
            }
            (_, StatusCode::NOT_MODIFIED) => Ok(response),
            _ => {
                state.responses.store(&key, &response);
                Ok(response)
            }
        }
    }

    async fn call_inner(
        &self,
        id: &str,
        request: ApiRequest,
        correlation: &Correlation,
    ) -> Result<ApiResponse, CallError> {
        let connections = &self.connections;
        let (mut snapshot, state) = connections.get(id).await?;
        match snapshot.status {
            Status::Active => {}
            Status::Pending => {
                return Err(ConnectionError::Conflict(format!(
                    "connection `{id}` is pending: authorize it first (GET /v1/connect/{}?connection_id={id})",
                    snapshot.provider.id
                ))
                .into());
            }
            Status::NeedsReauth => {
                return Err(ConnectionError::Conflict(format!(
                    "connection `{id}` needs to be authorized again ({})",
                    snapshot
                        .last_error
                        .as_deref()
                        .unwrap_or("the provider refused its grant")
                ))
                .into());
            }
        }
        if snapshot.is_oauth()
            && snapshot.token_stale(connections.config().refresh_margin, now_millis())
        {
            snapshot = connections.refresh(id, None).await?;
        }
        let retryable_method = idempotent(&request);
        let max_retries = request
            .max_retries
            .unwrap_or(connections.config().max_retries);
        let mut refreshed = false;
        let mut retries = 0u32;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            state.circuit.admit().map_err(CallError::CircuitOpen)?;
            state
                .pacer
                .ready(state.timeout)
                .await
                .map_err(CallError::RateLimited)?;
            let permit = state
                .bulkhead
                .enter(state.timeout)
                .await
                .ok_or(CallError::Busy)?;
            let sent = self
                .send_once(&snapshot, &state, &request, correlation)
                .await;
            drop(permit);
            let response = match sent {
                Ok(response) => response,
                Err(error) => {
                    if matches!(error, CallError::Timeout(_) | CallError::Network(_)) {
                        state.circuit.failure();
                        if retryable_method && retries < max_retries {
                            retries += 1;
                            metrics::counter!("switchboard_connection_retries_total", "connection" => id.to_owned()).increment(1);
                            tokio::time::sleep(backoff(retries - 1)).await;
                            continue;
                        }
                    }
                    return Err(error);
                }
            };
            let status = response.status;
            if state.notices.observe(&request.path, &response.headers) {
                metrics::counter!("switchboard_connection_deprecated_calls_total", "connection" => id.to_owned()).increment(1);
            }
            let now = now_millis();
            let rate = rate_state(&snapshot.provider.rate_limit, &response.headers, now);
            state.pacer.observe(rate, now);
            if rate.remaining == Some(0)
                && let Some(reset) = rate.reset_at
            {
                state.pacer.pause_until(reset);
            }
            if status == StatusCode::UNAUTHORIZED && snapshot.is_oauth() && !refreshed {
                refreshed = true;
                attempts -= 1;
                snapshot = connections.refresh(id, Some(snapshot.version)).await?;
                continue;
            }
            let retry_after = response
                .headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
                .or_else(|| {
                    rate.reset_at
                        .filter(|at| *at > now)
                        .map(|at| Duration::from_millis((at - now) as u64))
                });
            if status == StatusCode::TOO_MANY_REQUESTS {
                metrics::counter!("switchboard_connection_rate_limited_total", "connection" => id.to_owned()).increment(1);
            }
            if matches!(status.as_u16(), 429 | 503)
                && let Some(wait) = retry_after
            {
                state.pacer.pause_until(now + wait.as_millis() as i64);
            }
            let retryable_status = snapshot.provider.retry.statuses.contains(&status.as_u16());
            if status.is_server_error() {
                state.circuit.failure();
            } else {
                state.circuit.success();
            }
            if !retryable_status {
                let error = (!status.is_success()).then(|| {
                    normalise(
                        &snapshot,
                        status.as_u16(),
                        &response.body,
                        retryable_answer(status.as_u16()),
                    )
                });
                return Ok(ApiResponse {
                    attempts,
                    error,
                    ..response
                });
            }
            let wait = retry_after
                .unwrap_or_else(|| backoff(retries))
                .max(backoff(retries));
            if retryable_method && retries < max_retries && wait <= state.timeout {
                retries += 1;
                metrics::counter!("switchboard_connection_retries_total", "connection" => id.to_owned()).increment(1);
                tokio::time::sleep(wait).await;
                continue;
            }
            let error = normalise(&snapshot, status.as_u16(), &response.body, true);
            return Err(CallError::Provider {
                error: error.clone(),
                response: Box::new(ApiResponse {
                    attempts,
                    error: Some(error),
                    ..response
                }),
                attempts,
            });
        }
    }

    async fn send_once(
        &self,
        snapshot: &Snapshot,
        state: &ConnState,
        request: &ApiRequest,
        correlation: &Correlation,
    ) -> Result<ApiResponse, CallError> {
        let base = snapshot
            .expand(&snapshot.provider.base_url)
            .map_err(|e| ConnectionError::Invalid(format!("base_url: {e}")))?;
        let path = request.path.trim_start_matches('/');
        let mut url = if path.is_empty() {
            base
        } else {
            format!("{}/{path}", base.trim_end_matches('/'))
        };
        let mut query: Vec<String> = request
            .query
            .iter()
            .filter(|q| !q.is_empty())
            .cloned()
            .collect();
        let mut headers = HeaderMap::new();
        for (name, value) in &snapshot.provider.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        for (name, value) in &request.headers {
            if is_hop_by_hop(name, &request.headers)
                || matches!(
                    name.as_str(),
                    "authorization" | "host" | "content-length" | "cookie"
                )
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        // The call's correlation replaces the caller's headers (same request id and trace).
        if let Some(outgoing) =
            Outgoing::new(correlation, crate::telemetry::spans::current_span_id())
        {
            outgoing.apply(&mut headers);
        }
        let credentials = &snapshot.credentials;
        let invalid = |what: &str| {
            CallError::Connection(ConnectionError::Invalid(format!(
                "connection `{}` has no {what}",
                snapshot.id
            )))
        };
        let mut basic: Option<(String, Option<String>)> = None;
        let mut bearer: Option<(HeaderName, String)> = None;
        match snapshot.auth_mode {
            AuthMode::ApiKey => {
                let key = credentials
                    .api_key
                    .as_deref()
                    .ok_or_else(|| invalid("api_key"))?;
                let spec = snapshot.provider.api_key.clone().unwrap_or_default();
                match (&spec.query, &spec.header) {
                    (Some(param), _) => query.push(
                        form_urlencoded::Serializer::new(String::new())
                            .append_pair(param, key)
                            .finish(),
                    ),
                    (None, header) => {
                        let name = header.as_deref().unwrap_or("authorization");
                        let prefix = spec.prefix.as_deref().unwrap_or(if header.is_none() {
                            "Bearer "
                        } else {
                            ""
                        });
                        let name = HeaderName::from_bytes(name.as_bytes())
                            .map_err(|_| invalid("valid api_key header name"))?;
                        bearer = Some((name, format!("{prefix}{key}")));
                    }
                }
            }
            AuthMode::Basic => {
                basic = Some((
                    credentials
                        .username
                        .clone()
                        .ok_or_else(|| invalid("username"))?,
                    credentials.password.clone(),
                ));
            }
            AuthMode::Bearer => {
                let token = credentials
                    .token
                    .as_deref()
                    .ok_or_else(|| invalid("token"))?;
                bearer = Some((reqwest::header::AUTHORIZATION, format!("Bearer {token}")));
            }
            AuthMode::Oauth2 | AuthMode::Oauth2ClientCredentials => {
                let token = snapshot
                    .tokens
                    .as_ref()
                    .map(|t| t.access_token.as_str())
                    .ok_or_else(|| invalid("access token"))?;
                let header = snapshot
                    .provider
                    .oauth2
                    .as_ref()
                    .and_then(|o| o.token_header.as_deref());
                bearer = Some(match header {
                    Some(name) => (
                        HeaderName::from_bytes(name.as_bytes())
                            .map_err(|_| invalid("valid token_header"))?,
                        token.to_owned(),
                    ),
                    None => (reqwest::header::AUTHORIZATION, format!("Bearer {token}")),
                });
            }
        }
        if !query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&query.join("&"));
        }
        let url = reqwest::Url::parse(&url)
            .map_err(|e| ConnectionError::Invalid(format!("the provider URL is not valid: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConnectionError::Invalid("the provider URL is not http(s)".into()).into());
        }
        check_literal(self.connections.policy(), &url).map_err(CallError::Blocked)?;
        let mut builder = self
            .connections
            .http()
            .request(request.method.clone(), url)
            .headers(headers)
            .timeout(state.timeout);
        if let Some((name, value)) = bearer {
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| invalid("valid credential"))?;
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        if let Some((user, password)) = basic {
            builder = builder.basic_auth(user, password);
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        let response = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                CallError::Timeout(state.timeout)
            } else {
                CallError::Network(describe_error(&e))
            }
        })?;
        let status = response.status();
        let mut headers = HeaderMap::with_capacity(response.headers().len());
        for (name, value) in response.headers() {
            if !is_hop_by_hop(name, response.headers()) && name != reqwest::header::CONTENT_LENGTH {
                headers.append(name.clone(), value.clone());
            }
        }
        let body = read_limited(response, MAX_RESPONSE_BYTES, state.timeout).await?;
        Ok(ApiResponse {
            status,
            headers,
            body,
            attempts: 1,
            error: None,
        })
    }
}

/// An equivalent of a shared call's error for each caller that waited on it.
fn clone_error(error: &CallError) -> CallError {
    match error {
        CallError::Connection(error) => CallError::Connection(match error {
            ConnectionError::NotFound(s) => ConnectionError::NotFound(s.clone()),
            ConnectionError::Conflict(s) => ConnectionError::Conflict(s.clone()),
            ConnectionError::Invalid(s) => ConnectionError::Invalid(s.clone()),
            ConnectionError::Busy(s) => ConnectionError::Busy(s.clone()),
            ConnectionError::Token(t) => ConnectionError::Token(super::oauth::TokenError {
                message: t.message.clone(),
                transient: t.transient,
            }),
            // A database error cannot be copied; its text is, as a failure worth retrying.
            ConnectionError::Store(e) => ConnectionError::Busy(format!("store: {e}")),
        }),
        CallError::CircuitOpen(wait) => CallError::CircuitOpen(*wait),
        CallError::RateLimited(wait) => CallError::RateLimited(*wait),
        CallError::Busy => CallError::Busy,
        CallError::Timeout(wait) => CallError::Timeout(*wait),
        CallError::Network(s) => CallError::Network(s.clone()),
        CallError::Blocked(s) => CallError::Blocked(s.clone()),
        CallError::Provider {
            error,
            response,
            attempts,
        } => CallError::Provider {
            error: error.clone(),
            response: response.clone(),
            attempts: *attempts,
        },
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, CallError> {
    if response
        .content_length()
        .is_some_and(|n| n as usize > limit)
    {
        return Err(CallError::Network(format!(
            "the response is larger than {limit} bytes"
        )));
    }
    let mut body = bytes::BytesMut::new();
    loop {
        let chunk = match tokio::time::timeout(timeout, response.chunk()).await {
            Err(_) => return Err(CallError::Timeout(timeout)),
            Ok(Err(e)) if e.is_timeout() => return Err(CallError::Timeout(timeout)),
            Ok(Err(e)) => return Err(CallError::Network(describe_error(&e))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if body.len() + chunk.len() > limit {
            return Err(CallError::Network(format!(
                "the response is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
