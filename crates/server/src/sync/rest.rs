//! A REST API as a sync destination (and, in a two-way sync, as a source to write back to):
//! create is `POST {path}`, update `PUT {path}/{key}`, delete `DELETE {path}/{key}`, each with
//! the mapped record as JSON body, through a connection (credentials, pacing, retries, breaker).
//! Every call carries an `Idempotency-Key` (`run:key:change`), so a call repeated after a crash
//! or a retry can be recognised by the API; a `404` on delete means already gone.

use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::connections::client::{ApiRequest, CallError, ConnectionClient};

/// Writes in flight at once.
const WRITES_IN_FLIGHT: usize = 8;

/// One write.
#[derive(Debug, Clone)]
pub struct Write {
    /// `created`, `updated` or `deleted`.
    pub change: &'static str,
    /// The record's key.
    pub key: Value,
    /// The body (absent for deletes).
    pub record: Option<Value>,
}

/// A collection of a REST API reached through a connection.
pub struct Collection<'a> {
    /// The call client.
    pub client: &'a ConnectionClient,
    /// The connection.
    pub connection: &'a str,
    /// Collection path below the base URL.
    pub path: &'a str,
    /// Time allowed per call (retries included).
    pub timeout: std::time::Duration,
}

/// A key as a path segment: a string as it is, a number as its digits, percent-encoded.
fn segment(key: &Value) -> String {
    let text = match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Collection<'_> {
    /// Makes `writes` (a few at a time); the first failure is returned after all finished.
    pub async fn apply(&self, run: &str, writes: Vec<Write>) -> Result<(), String> {
        let mut results = futures::stream::iter(writes.into_iter().map(|w| self.one(run, w)))
            .buffer_unordered(WRITES_IN_FLIGHT);
        let mut first = None;
        while let Some(result) = results.next().await {
            if let Err(error) = result {
                first.get_or_insert(error);
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn one(&self, run: &str, write: Write) -> Result<(), String> {
        let base = self.path.trim_end_matches('/');
        let (method, path) = match write.change {
            "created" => (reqwest::Method::POST, base.to_owned()),
            "updated" => (
                reqwest::Method::PUT,
                format!("{base}/{}", segment(&write.key)),
            ),
            _ => (
                reqwest::Method::DELETE,
                format!("{base}/{}", segment(&write.key)),
            ),
        };
        let mut request = ApiRequest::new(method.clone(), path);
        let idempotency = format!("{run}:{}:{}", write.key, write.change);
        if let Ok(value) = HeaderValue::from_str(&idempotency) {
            request.headers.insert("idempotency-key", value);
        }
        if let Some(record) = &write.record {
            request
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            request.body = record.to_string().into_bytes().into();
        }
        let call = self.client.call(self.connection, request);
        let response = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Err(format!("{method} of {} timed out", write.key)),
            Ok(Err(CallError::Provider { error, .. })) => {
                return Err(format!(
                    "{method} of {} answered HTTP {}",
                    write.key, error.status
                ));
            }
            Ok(Err(error)) => return Err(format!("{method} of {}: {error}", write.key)),
            Ok(Ok(response)) => response,
        };
        let status = response.status.as_u16();
        if response.status.is_success() || (write.change == "deleted" && status == 404) {
            Ok(())
        } else {
            Err(format!("{method} of {} answered HTTP {status}", write.key))
        }
    }
}
