//! `switchboard mock`: a mock provider for users' integration tests. Responses are queued per
//! method and path (status, headers, body, delay) through a small admin API under `/__mock/`
//! or a file; every other request is recorded and answered from its queue, and the log is
//! exported as JSON Lines. Built-in scenarios shape every answer: `rate-limited` (429 with
//! `Retry-After` and `X-RateLimit-*` past a limit per window), `flaky` (a fraction of requests
//! fail with 500 or 503, chosen by a seeded generator so a run is reproducible) and `down`
//! (every request fails).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_core::time::{format_rfc3339, now_millis};
use tokio_util::sync::CancellationToken;

/// Largest request body recorded (bigger bodies are refused with 413).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// A built-in behaviour applied to every non-admin request.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Answer `limit` requests per `window`, then 429 with `Retry-After` until it ends.
    RateLimited {
        /// Requests allowed per window.
        limit: u32,
        /// Window length.
        window: Duration,
    },
    /// Fail `fail_rate` of requests (0–1) with 500 or 503, chosen by a generator seeded with
    /// `seed`: the same seed gives the same sequence.
    Flaky {
        /// Share of requests that fail.
        fail_rate: f64,
        /// Generator seed.
        seed: u64,
    },
    /// Answer every request with `status`.
    Down {
        /// The status (500 by default).
        status: u16,
    },
}

/// One queued response.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MockResponse {
    /// Method to match (`GET`, …; `*` matches any).
    #[serde(default = "any_method")]
    pub method: String,
    /// Path to match exactly (without the query string).
    pub path: String,
    /// Status (200 by default).
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: HashMap<String, String>,
    /// Body: a string is sent as is, any other JSON value as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// Wait this long before answering (`250ms`, `2s`).
    #[serde(default)]
    pub delay: Option<String>,
    /// How many requests it answers (1 by default); `0` answers every request forever.
    #[serde(default = "one")]
    pub times: u32,
}

fn any_method() -> String {
    "*".into()
}
fn ok_status() -> u16 {
    200
}
fn one() -> u32 {
    1
}

impl MockResponse {
    /// Checks the fields that can be wrong.
    pub fn validate(&self) -> Result<(), String> {
        if StatusCode::from_u16(self.status).is_err() {
            return Err(format!("status {} is not an HTTP status", self.status));
        }
        if !self.path.starts_with('/') {
            return Err(format!("path `{}` must start with /", self.path));
        }
        if self.method != "*" && Method::from_bytes(self.method.as_bytes()).is_err() {
            return Err(format!("method `{}` is not an HTTP method", self.method));
        }
        if let Some(delay) = &self.delay {
            humantime::parse_duration(delay)
                .map_err(|e| format!("delay `{delay}`: {e} (e.g. 250ms, 2s)"))?;
        }
        for (name, value) in &self.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name `{name}`"))?;
            HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value for header `{name}`"))?;
        }
        Ok(())
    }
}

/// A recorded request.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    /// Arrival order, from 1.
    pub seq: u64,
    /// Arrival time (RFC 3339).
    pub at: String,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Headers as `[name, value]`.
    pub headers: Vec<(String, String)>,
    /// Body: text when UTF-8, base64 otherwise.
    pub body: String,
    /// `utf8` or `base64`.
    pub body_encoding: &'static str,
    /// The status the mock answered.
    pub status: u16,
}

/// Settings of a mock server.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// The built-in behaviour, if any.
    pub scenario: Option<Scenario>,
    /// Responses queued at start.
    pub responses: Vec<MockResponse>,
}

#[derive(Default)]
struct Inner {
    queues: Vec<MockResponse>,
    log: Vec<RecordedRequest>,
    seq: u64,
    window_start: i64,
    window_count: u32,
    rng: u64,
}

/// The mock's state, shared by its handlers.
pub struct Mock {
    scenario: Option<Scenario>,
    inner: Mutex<Inner>,
}

impl Mock {
    /// A mock with `config`.
    pub fn new(config: MockConfig) -> Arc<Self> {
        let rng = match &config.scenario {
            Some(Scenario::Flaky { seed, .. }) => *seed,
            _ => 0,
        };
        Arc::new(Self {
            scenario: config.scenario,
            inner: Mutex::new(Inner {
                queues: config.responses,
                rng,
                ..Inner::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half-written in a way that
        // matters to a test double: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The recorded requests, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().log.clone()
    }
}

/// SplitMix64: a tiny, well-known generator, so a seed gives the same run on every platform
/// and version (unlike a library's default generator).
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What the scenario says about the request, before any queued response.
enum Verdict {
    Pass(Vec<(&'static str, String)>),
    Answer(Response),
}

fn judge(mock: &Mock, inner: &mut Inner) -> Verdict {
    match &mock.scenario {
        None => Verdict::Pass(Vec::new()),
        Some(Scenario::Down { status }) => Verdict::Answer(
            (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"error": "the provider is down (mock scenario `down`)"})),
            )
                .into_response(),
        ),
        Some(Scenario::Flaky { fail_rate, .. }) => {
            let draw = next_unit(&mut inner.rng);
            if draw < *fail_rate {
                let status = if next_unit(&mut inner.rng) < 0.5 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                Verdict::Answer(
                    (
                        status,
                        axum::Json(json!({"error": "transient failure (mock scenario `flaky`)"})),
                    )
                        .into_response(),
                )
            } else {
                Verdict::Pass(Vec::new())
            }
        }
        Some(Scenario::RateLimited { limit, window }) => {
            let now = now_millis();
            let window_ms = (window.as_millis() as i64).max(1);
            if now - inner.window_start >= window_ms {
                inner.window_start = now - (now % window_ms);
                inner.window_count = 0;
            }
            let reset_ms = inner.window_start + window_ms;
            let mut headers = vec![
                ("x-ratelimit-limit", limit.to_string()),
                (
                    "x-ratelimit-reset",
                    (reset_ms.max(0) as u64).div_ceil(1000).to_string(),
                ),
            ];
            if inner.window_count >= *limit {
                let retry_after = ((reset_ms - now).max(1) as u64).div_ceil(1000);
                headers.push(("x-ratelimit-remaining", "0".into()));
                headers.push(("retry-after", retry_after.to_string()));
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(
                        json!({"error": "rate limit exceeded (mock scenario `rate-limited`)"}),
                    ),
                )
                    .into_response();
                add_headers(response.headers_mut(), &headers);
                Verdict::Answer(response)
            } else {
                inner.window_count += 1;
                headers.push((
                    "x-ratelimit-remaining",
                    (limit - inner.window_count).to_string(),
                ));
                Verdict::Pass(headers)
            }
        }
    }
}

fn add_headers(map: &mut HeaderMap, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(*name, value);
        }
    }
}

/// Takes the first queued response for `method` and `path` (keeping it when it repeats).
fn take(inner: &mut Inner, method: &Method, path: &str) -> Option<MockResponse> {
    let index = inner
        .queues
        .iter()
        .position(|r| r.path == path && (r.method == "*" || r.method == method.as_str()))?;
    let entry = &mut inner.queues[index];
    match entry.times {
        0 => Some(entry.clone()),
        1 => Some(inner.queues.remove(index)),
        _ => {
            entry.times -= 1;
            Some(entry.clone())
        }
    }
}

fn build(queued: &MockResponse) -> Response {
    let status = StatusCode::from_u16(queued.status).unwrap_or(StatusCode::OK);
    let mut response = match &queued.body {
        None => status.into_response(),
        Some(Value::String(text)) => (status, text.clone()).into_response(),
        Some(value) => (status, axum::Json(value.clone())).into_response(),
    };
    for (name, value) in &queued.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn handle(State(mock): State<Arc<Mock>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let path = parts.uri.path().to_owned();
    let (mut response, delay) = {
        let mut inner = mock.lock();
        match judge(&mock, &mut inner) {
            Verdict::Answer(response) => (response, None),
            Verdict::Pass(headers) => {
                let (mut response, delay) = match take(&mut inner, &parts.method, &path) {
                    Some(queued) => (
                        build(&queued),
                        queued
                            .delay
                            .as_deref()
                            .and_then(|d| humantime::parse_duration(d).ok()),
                    ),
                    None if mock.scenario.is_some() => {
                        (axum::Json(json!({"ok": true})).into_response(), None)
                    }
                    None => (
                        (
                            StatusCode::NOT_FOUND,
                            axum::Json(json!({
                                "error": format!("no response queued for {} {path}", parts.method)
                            })),
                        )
                            .into_response(),
                        None,
                    ),
                };
                add_headers(response.headers_mut(), &headers);
                (response, delay)
            }
        }
    };
    {
        let mut inner = mock.lock();
        inner.seq += 1;
        let (body, body_encoding) = match std::str::from_utf8(&bytes) {
            Ok(text) => (text.to_owned(), "utf8"),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(&bytes),
                "base64",
            ),
        };
        let record = RecordedRequest {
            seq: inner.seq,
            at: format_rfc3339(now_millis()),
            method: parts.method.to_string(),
            path,
            query: parts.uri.query().map(str::to_owned),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect(),
            body,
            body_encoding,
            status: response.status().as_u16(),
        };
        inner.log.push(record);
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    response
        .headers_mut()
        .insert("x-mock", HeaderValue::from_static("switchboard"));
    response
}

async fn queue(State(mock): State<Arc<Mock>>, body: Bytes) -> Response {
    let parsed: Result<Vec<MockResponse>, String> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
            .collect(),
        Ok(value) => serde_json::from_value(value)
            .map(|r| vec![r])
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let responses = match parsed.and_then(|rs| {
        rs.iter().try_for_each(MockResponse::validate)?;
        Ok(rs)
    }) {
        Ok(responses) => responses,
        Err(error) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({"error": error})),
            )
                .into_response();
        }
    };
    let queued = responses.len();
    mock.lock().queues.extend(responses);
    (StatusCode::CREATED, axum::Json(json!({"queued": queued}))).into_response()
}

async fn list_queued(State(mock): State<Arc<Mock>>) -> Response {
    axum::Json(mock.lock().queues.clone()).into_response()
}

async fn requests(State(mock): State<Arc<Mock>>) -> Response {
    axum::Json(mock.requests()).into_response()
}

async fn requests_jsonl(State(mock): State<Arc<Mock>>) -> Response {
    let mut text = String::new();
    for record in mock.requests() {
        if let Ok(line) = serde_json::to_string(&record) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    ([("content-type", "application/x-ndjson")], text).into_response()
}

async fn clear_requests(State(mock): State<Arc<Mock>>) -> StatusCode {
    mock.lock().log.clear();
    StatusCode::NO_CONTENT
}

async fn reset(State(mock): State<Arc<Mock>>) -> StatusCode {
    let mut inner = mock.lock();
    inner.queues.clear();
    inner.log.clear();
    StatusCode::NO_CONTENT
}

/// The mock's router: the admin API under `/__mock/`, everything else recorded and answered.
pub fn router(mock: Arc<Mock>) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route("/__mock/responses", post(queue).get(list_queued))
        .route("/__mock/requests", get(requests).delete(clear_requests))
        .route("/__mock/requests.jsonl", get(requests_jsonl))
        .route("/__mock/reset", post(reset))
        .fallback(handle)
        .with_state(mock)
}

/// Serves `mock` on `listener` until `shutdown`.
pub async fn serve(
    mock: Arc<Mock>,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(mock))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_reproducible_and_uniform_enough() {
        let (mut a, mut b) = (7u64, 7u64);
        let first: Vec<f64> = (0..100).map(|_| next_unit(&mut a)).collect();
        let second: Vec<f64> = (0..100).map(|_| next_unit(&mut b)).collect();
        assert_eq!(first, second);
        assert!(first.iter().all(|x| (0.0..1.0).contains(x)));
        let below_half = first.iter().filter(|x| **x < 0.5).count();
        assert!((30..=70).contains(&below_half), "{below_half}");
    }

    #[test]
    fn queued_responses_are_validated() {
        let bad = MockResponse {
            method: "GET".into(),
            path: "no-slash".into(),
            status: 200,
            headers: HashMap::new(),
            body: None,
            delay: None,
            times: 1,
        };
        assert!(bad.validate().is_err());
        let bad_delay = MockResponse {
            path: "/x".into(),
            delay: Some("soon".into()),
            ..bad.clone()
        };
        assert!(
            bad_delay
                .validate()
                .expect_err("bad delay")
                .contains("delay")
        );
        let fine = MockResponse {
            path: "/x".into(),
            ..bad
        };
        assert!(fine.validate().is_ok());
    }
}
