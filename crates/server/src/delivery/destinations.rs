//! Destinations built from configuration and tenant endpoints: parsed URL, signing keys, policy
//! and limits. A tenant endpoint is a destination whose id is the endpoint id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_core::RetryPolicy;
use switchboard_core::config::{Config, DestinationConfig};
use switchboard_core::outbound::EndpointSpec;
use switchboard_core::time::UnixMillis;
use switchboard_signatures::standard_webhooks::SigningKey;

use crate::template::TemplateSet;

/// A signing key, with the instant it stops signing (rotated-out secrets).
#[derive(Debug)]
pub struct SignKey {
    /// The key.
    pub key: SigningKey,
    /// Unix ms after which it no longer signs; `None` for the current secret.
    pub expires_at: Option<UnixMillis>,
}

/// A ready-to-use HTTP destination.
#[derive(Debug)]
pub struct HttpTarget {
    /// Destination id (the endpoint id for tenant endpoints).
    pub id: String,
    /// Owning tenant, for tenant endpoints.
    pub tenant: Option<String>,
    /// Parsed URL.
    pub url: reqwest::Url,
    /// Standard Webhooks signing keys (current first); empty when unsigned.
    pub keys: Vec<SignKey>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Extra headers.
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    /// Attempts in flight at once.
    pub max_in_flight: usize,
    /// Deliveries per second at most.
    pub rate_limit: Option<f64>,
    /// FIFO per ordering key.
    pub ordered: bool,
    /// jq transform applied to the body before signing.
    pub transform: Option<switchboard_jq::Program>,
    /// Whether deliveries are sent (a disabled endpoint keeps its pending deliveries).
    pub enabled: bool,
    /// For kinds other than `http`: what sends the message.
    pub connector: Option<Arc<dyn super::connectors::Connector>>,
    /// Templates rendered per delivery (a templated URL or header, a connector's subject…).
    pub templates: Arc<TemplateSet>,
}

impl HttpTarget {
    /// Where attempts go, for attempt records (credentials never included).
    pub fn describe(&self) -> String {
        match &self.connector {
            Some(connector) => connector.describe(),
            None => self.url.to_string(),
        }
    }

    /// The keys that sign at `now`.
    pub fn signing_keys(&self, now: UnixMillis) -> Vec<SigningKey> {
        self.keys
            .iter()
            .filter(|k| k.expires_at.is_none_or(|at| at > now))
            .map(|k| k.key.clone())
            .collect()
    }
}

/// All destinations by id.
pub type Destinations = HashMap<String, Arc<HttpTarget>>;

/// Builds the destination table from configured destinations and tenant endpoints, rejecting
/// unusable URLs, secrets, headers and transforms.
pub fn build(config: &Config, endpoints: &[EndpointSpec]) -> Result<Destinations, String> {
    let mut out = HashMap::new();
    for destination in &config.destinations {
        let policy = destination.policy();
        let id = destination.id().to_owned();
        let what = format!("destination `{id}`");
        let max_in_flight = policy
            .max_in_flight
            .unwrap_or(config.delivery.per_destination_concurrency)
            .max(1);
        let target = match destination {
            DestinationConfig::Http(http) => HttpTarget {
                id: id.clone(),
                tenant: None,
                url: parse_url(&what, &static_or_placeholder(&http.url))?,
                keys: http
                    .secret
                    .as_deref()
                    .map(|s| signing_key(&what, s, None))
                    .transpose()?
                    .into_iter()
                    .collect(),
                timeout: policy.timeout,
                retry: policy.retry.clone(),
                headers: parse_headers(&what, &static_headers(&http.headers))?,
                max_in_flight,
                rate_limit: policy.rate_limit,
                ordered: policy.ordered,
                transform: None,
                enabled: policy.enabled,
                connector: None,
                templates: Arc::new(
                    http_templates(&http.url, &http.headers).map_err(|e| format!("{what}: {e}"))?,
                ),
            },
            other => {
                let connector = super::connectors::build(other)
                    .map_err(|e| format!("{what}: {e}"))?
                    .ok_or_else(|| format!("{what}: no connector for kind `{}`", other.kind()))?;
                HttpTarget {
                    id: id.clone(),
                    tenant: None,
                    // Connectors describe themselves; the URL field is not used to send.
                    url: parse_url(&what, &format!("{}:", other.kind()))?,
                    keys: Vec::new(),
                    timeout: policy.timeout,
                    retry: policy.retry.clone(),
                    headers: Vec::new(),
                    max_in_flight,
                    rate_limit: policy.rate_limit,
                    ordered: policy.ordered,
                    transform: None,
                    enabled: policy.enabled,
                    templates: Arc::new(connector.templates()),
                    connector: Some(connector),
                }
            }
        };
        out.insert(id, Arc::new(target));
    }
    for endpoint in endpoints {
        let what = format!("endpoint `{}`", endpoint.id);
        endpoint.validate().map_err(|e| format!("{what}: {e}"))?;
        if endpoint.timeout >= config.delivery.lease {
            return Err(format!(
                "{what}: timeout ({}) must be shorter than delivery.lease ({}), or a slow attempt would be claimed twice",
                humantime::format_duration(endpoint.timeout),
                humantime::format_duration(config.delivery.lease)
            ));
        }
        if out.contains_key(&endpoint.id) {
            return Err(format!(
                "{what}: a destination with this id exists; endpoint ids must be unique"
            ));
        }
        let mut keys = vec![signing_key(&what, &endpoint.secret, None)?];
        for previous in &endpoint.previous_secrets {
            keys.push(signing_key(
                &what,
                &previous.secret,
                Some(previous.expires_at),
            )?);
        }
        let transform = endpoint
            .transform
            .as_deref()
            .map(|source| {
                switchboard_jq::Program::compile(source)
                    .map_err(|e| format!("{what}: transform: {e}"))
            })
            .transpose()?;
        out.insert(
            endpoint.id.clone(),
            Arc::new(HttpTarget {
                id: endpoint.id.clone(),
                tenant: Some(endpoint.tenant.clone()),
                url: parse_url(&what, &endpoint.url)?,
                keys,
                timeout: endpoint.timeout,
                retry: endpoint.retry.clone(),
                headers: parse_headers(&what, &endpoint.headers)?,
                max_in_flight: endpoint
                    .max_in_flight
                    .unwrap_or(config.delivery.per_destination_concurrency)
                    .max(1),
                rate_limit: endpoint.rate_limit,
                ordered: endpoint.ordered,
                transform,
                enabled: endpoint.enabled,
                connector: None,
                templates: Arc::new(TemplateSet::new()),
            }),
        );
    }
    Ok(out)
}

/// The URL to parse at build time: a templated URL is checked per delivery, so only its
/// shape is checked here (the placeholders replaced by `x`).
fn static_or_placeholder(url: &str) -> String {
    match crate::template::Template::parse(url) {
        Ok(template) if template.as_static().is_none() => {
            let mut out = String::new();
            let mut rest = url;
            while let Some(open) = rest.find("{{") {
                out.push_str(&rest[..open]);
                match rest[open..].find("}}") {
                    Some(close) => {
                        out.push('x');
                        rest = &rest[open + close + 2..];
                    }
                    None => {
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            out
        }
        _ => url.to_owned(),
    }
}

/// Headers without placeholders (sent as configured).
fn static_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(_, v)| !v.contains("{{"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The templated parts of an HTTP destination: `url` and `header:<name>` entries.
fn http_templates(
    url: &str,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<TemplateSet, String> {
    let mut set = TemplateSet::new();
    if url.contains("{{") {
        set.add("url", url)?;
    }
    for (name, value) in headers.iter().filter(|(_, v)| v.contains("{{")) {
        reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header name `{name}` is invalid"))?;
        set.add(format!("header:{name}"), value)?;
    }
    Ok(set)
}

fn parse_url(what: &str, url: &str) -> Result<reqwest::Url, String> {
    reqwest::Url::parse(url).map_err(|e| format!("{what}: invalid url: {e}"))
}

fn signing_key(
    what: &str,
    secret: &str,
    expires_at: Option<UnixMillis>,
) -> Result<SignKey, String> {
    Ok(SignKey {
        key: SigningKey::from_secret(secret).map_err(|e| format!("{what}: {e}"))?,
        expires_at,
    })
}

/// Parses extra headers; names that would break signing or framing are refused.
pub fn parse_headers<'a>(
    what: &str,
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>, String> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{what}: invalid header name `{name}`"))?;
        if is_reserved_header(parsed.as_str()) {
            return Err(format!(
                "{what}: header `{name}` is set by Switchboard and cannot be overridden"
            ));
        }
        let value = reqwest::header::HeaderValue::from_str(value)
            .map_err(|_| format!("{what}: invalid value for header `{name}`"))?;
        out.push((parsed, value));
    }
    Ok(out)
}

/// Headers Switchboard owns on a delivery request.
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "webhook-id"
            | "webhook-timestamp"
            | "webhook-signature"
            | "content-length"
            | "transfer-encoding"
            | "host"
            | "connection"
    )
}
