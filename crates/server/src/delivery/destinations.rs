//! Destinations built from configuration: parsed URL, signing key, policy and limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::RetryPolicy;
use switchboard_core::config::{Config, DestinationConfig};
use switchboard_signatures::standard_webhooks::SigningKey;

/// A ready-to-use HTTP destination.
#[derive(Debug)]
pub struct HttpTarget {
    /// Destination id.
    pub id: String,
    /// Parsed URL.
    pub url: reqwest::Url,
    /// Standard Webhooks signing key, if a secret is configured.
    pub key: Option<SigningKey>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Extra headers.
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    /// Attempts in flight at once.
    pub max_in_flight: usize,
}

/// All destinations by id.
pub type Destinations = HashMap<String, Arc<HttpTarget>>;

/// Builds the destination table, rejecting unusable URLs, secrets and headers.
pub fn build(config: &Config) -> Result<Destinations, String> {
    let mut out = HashMap::new();
    for destination in &config.destinations {
        let DestinationConfig::Http(http) = destination;
        let url = reqwest::Url::parse(&http.url)
            .map_err(|e| format!("destination `{}`: invalid url: {e}", http.id))?;
        let key = http
            .secret
            .as_deref()
            .map(SigningKey::from_secret)
            .transpose()
            .map_err(|e| format!("destination `{}`: {e}", http.id))?;
        let mut headers = Vec::new();
        for (name, value) in &http.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("destination `{}`: invalid header name `{name}`", http.id))?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
                format!(
                    "destination `{}`: invalid value for header `{name}`",
                    http.id
                )
            })?;
            headers.push((name, value));
        }
        out.insert(
            http.id.clone(),
            Arc::new(HttpTarget {
                id: http.id.clone(),
                url,
                key,
                timeout: http.timeout,
                retry: http.retry.clone(),
                headers,
                max_in_flight: http
                    .max_in_flight
                    .unwrap_or(config.delivery.per_destination_concurrency)
                    .max(1),
            }),
        );
    }
    Ok(out)
}
