//! `kind = "api"`: one call to a provider's API through a connection per attempt, e.g. a comment
//! on a GitHub pull request when a CI webhook arrives.
//!
//! The call goes through [`ConnectionClient`] with the connection's policies (auth injected,
//! token refreshed ahead of expiry and once on a `401`, pacing, bulkhead, circuit breaker), but
//! with no retries of its own: the delivery's durable retry schedule owns them, so each try is
//! an attempt record. The delivery id goes along as `Idempotency-Key`, so providers that honour
//! it (Stripe and others) apply a retried call once.
//!
//! Answers: `2xx` is delivered. `408`, `425`, `429`, `5xx` and the provider file's
//! `retry.statuses` are retried, after `Retry-After` when given; any other status fails for good.
//! The attempt's error is the provider's error normalised to
//! `{"provider", "status", "code", "message", "retryable"}` (JSON).

use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use switchboard_core::AttemptOutcome;
use switchboard_core::config::ApiDestination;
use switchboard_core::outcome::parse_retry_after;

use super::{Attempt, Connector};
use crate::connections::ConnectionError;
use crate::connections::client::{
    ApiRequest, ApiResponse, CallError, ConnectionClient, ProviderError, retryable_answer,
};
use crate::delivery::sender::{AttemptReport, Prepared};
use crate::template::TemplateSet;

/// Most response bytes kept with an attempt.
const EXCERPT: usize = 64 * 1024;

/// A configured `api` destination.
#[derive(Debug)]
pub struct Api {
    connection: String,
    method: Method,
    path: String,
    templates: TemplateSet,
}

/// A call ready to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Path below the provider's base URL.
    pub path: String,
    /// Query string (without `?`), if any parameter rendered non-empty.
    pub query: Option<String>,
    /// Headers.
    pub headers: Vec<(String, String)>,
}

impl Api {
    /// Checks the settings and compiles the templates.
    pub fn new(config: &ApiDestination) -> Result<Self, String> {
        let method = Method::from_bytes(config.method.as_bytes())
            .map_err(|_| format!("method `{}` is invalid", config.method))?;
        let mut templates = TemplateSet::new();
        templates.add("path", &config.path)?;
        for (name, value) in &config.query {
            templates.add(format!("query:{name}"), value)?;
        }
        for (name, value) in &config.headers {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name `{name}` is invalid"))?;
            templates.add(format!("header:{name}"), value)?;
        }
        Ok(Self {
            connection: config.connection.clone(),
            method,
            path: config.path.clone(),
            templates,
        })
    }

    /// The call for a prepared message (its templates rendered).
    pub fn compose(&self, message: &Prepared) -> Result<Call, String> {
        let path = message.rendered.get("path").unwrap_or_default().trim();
        check_path(path)?;
        let mut query = form_urlencoded::Serializer::new(String::new());
        let mut any = false;
        for (name, value) in message.rendered.with_prefix("query:") {
            if !value.is_empty() {
                query.append_pair(name, value);
                any = true;
            }
        }
        let headers = message
            .rendered
            .with_prefix("header:")
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        Ok(Call {
            path: path.to_owned(),
            query: any.then(|| query.finish()),
            headers,
        })
    }

    fn request(
        &self,
        call: Call,
        delivery_id: &str,
        message: &Prepared,
    ) -> Result<ApiRequest, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &call.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header name `{name}` is invalid"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("header `{name}` rendered a value that is not allowed"))?;
            headers.insert(name, value);
        }
        if !headers.contains_key("idempotency-key")
            && let Ok(value) = HeaderValue::from_str(delivery_id)
        {
            headers.insert("idempotency-key", value);
        }
        let body = if matches!(self.method, Method::GET | Method::DELETE) {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&message.body)
        };
        if !body.is_empty() && !headers.contains_key(CONTENT_TYPE) {
            let kind = message
                .content_type
                .as_deref()
                .unwrap_or("application/json");
            if let Ok(value) = HeaderValue::from_str(kind) {
                headers.insert(CONTENT_TYPE, value);
            }
        }
        Ok(ApiRequest {
            method: self.method.clone(),
            path: call.path,
            query: call.query,
            headers,
            body,
            max_retries: Some(0),
        })
    }
}

/// Refuses a rendered path that could leave the provider's base path or carries a query or
/// fragment of its own (values belong in `query`; escape with `@uri`).
fn check_path(path: &str) -> Result<(), String> {
    if path.contains("://") {
        return Err(format!(
            "path `{path}` is not relative to the provider's base URL"
        ));
    }
    if path.contains(['?', '#']) || path.chars().any(char::is_control) || path.contains(' ') {
        return Err(format!(
            "path `{path}` has a `?`, `#`, space or control character: put parameters in `query` and escape values with `@uri`"
        ));
    }
    if path
        .split('/')
        .any(|segment| matches!(segment, "." | "..") || segment.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err(format!("path `{path}` has a `.` or `..` segment"));
    }
    Ok(())
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

/// The attempt report of a provider's answer.
fn answered(
    response: &ApiResponse,
    error: Option<&ProviderError>,
    started: Instant,
) -> AttemptReport {
    let status = response.status.as_u16();
    let retry_after = response
        .headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let outcome = if response.status.is_success() {
        AttemptOutcome::Delivered
    } else if error.map_or(retryable_answer(status), |e| e.retryable) {
        AttemptOutcome::Retryable { retry_after }
    } else {
        AttemptOutcome::Permanent
    };
    let error = match (&outcome, error) {
        (AttemptOutcome::Delivered, _) => None,
        (_, Some(error)) => {
            Some(serde_json::to_string(error).unwrap_or_else(|_| format!("HTTP {status}")))
        }
        (_, None) => Some(format!("HTTP {status}")),
    };
    AttemptReport {
        outcome,
        status: Some(status),
        error,
        headers: response
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body_excerpt: response.body[..response.body.len().min(EXCERPT)].to_vec(),
        latency: started.elapsed(),
    }
}

/// How a call that got no usable answer is scheduled.
fn classify(error: &CallError) -> AttemptOutcome {
    let retry = |retry_after: Option<Duration>| AttemptOutcome::Retryable { retry_after };
    match error {
        CallError::CircuitOpen(wait) | CallError::RateLimited(wait) => retry(Some(*wait)),
        CallError::Busy | CallError::Timeout(_) | CallError::Network(_) => retry(None),
        CallError::Blocked(_) => AttemptOutcome::Permanent,
        CallError::Provider { .. } => retry(None),
        CallError::Connection(error) => match error {
            // Nothing configured to call through, or a connection that cannot work as set up.
            ConnectionError::NotFound(_) | ConnectionError::Invalid(_) => AttemptOutcome::Permanent,
            // Pending or in need of reauthorization: connecting (again) lets a later try
            // succeed, within the retry schedule.
            ConnectionError::Conflict(_)
            | ConnectionError::Token(_)
            | ConnectionError::Store(_)
            | ConnectionError::Busy(_) => retry(None),
        },
    }
}

#[async_trait]
impl Connector for Api {
    fn describe(&self) -> String {
        format!(
            "api {} {} {}",
            self.connection,
            self.method,
            self.path.trim_start_matches('/')
        )
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let started = Instant::now();
        let Some(client) = attempt.connections else {
            return failure(
                AttemptOutcome::Permanent,
                "connections are not available in this process".into(),
                started,
            );
        };
        let request = match self
            .compose(attempt.message)
            .and_then(|call| self.request(call, attempt.delivery_id, attempt.message))
        {
            Ok(request) => request,
            Err(error) => return failure(AttemptOutcome::Permanent, error, started),
        };
        call(client, &self.connection, request, attempt.timeout, started).await
    }

    fn templates(&self) -> TemplateSet {
        self.templates.clone()
    }
}

async fn call(
    client: &ConnectionClient,
    connection: &str,
    request: ApiRequest,
    timeout: Duration,
    started: Instant,
) -> AttemptReport {
    match tokio::time::timeout(timeout, client.call(connection, request)).await {
        Err(_) => failure(
            AttemptOutcome::Retryable { retry_after: None },
            format!(
                "no answer within the attempt's {:.1}s",
                timeout.as_secs_f64()
            ),
            started,
        ),
        Ok(Ok(response)) => answered(&response, response.error.as_ref(), started),
        Ok(Err(CallError::Provider {
            error, response, ..
        })) => answered(&response, Some(&error), started),
        Ok(Err(error)) => failure(classify(&error), error.to_string(), started),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api(extra: &str) -> Api {
        let config: ApiDestination =
            toml::from_str(&format!("id = \"a\"\nconnection = \"gh\"\n{extra}")).expect("valid");
        Api::new(&config).expect("valid")
    }

    fn prepared(api: &Api, body: &[u8], event: serde_json::Value) -> Prepared {
        Prepared {
            body: body.to_vec(),
            content_type: None,
            headers: Vec::new(),
            rendered: api
                .templates()
                .render(&json!({ "body": event }))
                .expect("renders"),
        }
    }

    #[test]
    fn calls_come_from_the_templates() {
        let api = api(
            r#"path = "/repos/{{ .body.repo }}/issues/{{ .body.number }}/comments"
            query = { page = "{{ .body.page }}", empty = "{{ .body.none }}" }
            headers = { "x-github-api-version" = "2022-11-28", "x-event" = "{{ .body.kind }}" }"#,
        );
        assert_eq!(
            api.describe(),
            "api gh POST repos/{{ .body.repo }}/issues/{{ .body.number }}/comments"
        );
        let message = prepared(
            &api,
            br#"{"body": "hi"}"#,
            json!({"repo": "o/r", "number": 7, "page": 2, "kind": "ci"}),
        );
        let call = api.compose(&message).expect("composes");
        assert_eq!(call.path, "/repos/o/r/issues/7/comments");
        assert_eq!(call.query.as_deref(), Some("page=2"));
        let request = api.request(call, "msg_1", &message).expect("request");
        assert_eq!(request.headers["x-event"], "ci");
        assert_eq!(request.headers["x-github-api-version"], "2022-11-28");
        assert_eq!(request.headers["idempotency-key"], "msg_1");
        assert_eq!(request.headers[CONTENT_TYPE], "application/json");
        assert_eq!(request.max_retries, Some(0));
        assert_eq!(&request.body[..], br#"{"body": "hi"}"#);
    }

    #[test]
    fn gets_carry_no_body() {
        let api = api("method = \"GET\"\npath = \"user\"");
        let message = prepared(&api, b"{}", json!({}));
        let call = api.compose(&message).expect("composes");
        let request = api.request(call, "msg_1", &message).expect("request");
        assert!(request.body.is_empty());
        assert!(!request.headers.contains_key(CONTENT_TYPE));
    }

    #[test]
    fn paths_that_escape_are_refused() {
        let api = api(r#"path = "repos/{{ .body.repo }}/issues""#);
        for repo in ["../../admin", "o/r?x=1", "o/r#f", "o/ r", "https://evil"] {
            let message = prepared(&api, b"{}", json!({ "repo": repo }));
            assert!(api.compose(&message).is_err(), "{repo}");
        }
        let message = prepared(&api, b"{}", json!({ "repo": "o/r.x" }));
        assert!(api.compose(&message).is_ok());
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            classify(&CallError::CircuitOpen(Duration::from_secs(3))),
            AttemptOutcome::Retryable {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify(&CallError::Connection(ConnectionError::NotFound(
                "x".into()
            ))),
            AttemptOutcome::Permanent
        );
        assert_eq!(
            classify(&CallError::Connection(ConnectionError::Conflict(
                "needs reauth".into()
            ))),
            AttemptOutcome::Retryable { retry_after: None }
        );
        assert_eq!(
            classify(&CallError::Blocked("private".into())),
            AttemptOutcome::Permanent
        );
    }
}
