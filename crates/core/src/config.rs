//! The typed configuration tree (`switchboard.toml`).
//!
//! Precedence: compiled-in defaults, then the file, then `SWITCHBOARD_*` environment variables,
//! then command-line flags (applied by the binary). Unknown keys are rejected so that a typo never
//! silently falls back to a default. Every field documents itself; `docs/configuration.md` mirrors
//! these comments.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::ids::is_valid_resource_id;
use crate::retry::RetryPolicy;

/// A configuration problem, with enough context for the user to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The TOML did not parse or did not match the schema (unknown key, wrong type…).
    #[error("{0}")]
    Parse(String),
    /// The file parsed but says something impossible.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listener, storage location and request limits.
    pub server: ServerConfig,
    /// Outbound network policy.
    pub security: SecurityConfig,
    /// Durability settings of the embedded store.
    pub storage: StorageConfig,
    /// Delivery worker tuning.
    pub delivery: DeliveryConfig,
    /// Where events come from.
    pub sources: Vec<SourceConfig>,
    /// Where events go.
    pub destinations: Vec<DestinationConfig>,
    /// Which sources feed which destinations.
    pub routes: Vec<RouteConfig>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the HTTP listener binds (`SWITCHBOARD_LISTEN`, `--listen`).
    pub listen: SocketAddr,
    /// Directory holding the SQLite database (`SWITCHBOARD_DATA_DIR`, `--data-dir`).
    pub data_dir: PathBuf,
    /// Largest accepted request body in bytes; larger ingests get `413`.
    pub max_body_bytes: usize,
    /// Time allowed to read a whole request before it is answered with `408`.
    #[serde(with = "duration::human")]
    pub request_timeout: Duration,
    /// How long SIGTERM waits for in-flight work before releasing it and exiting.
    #[serde(with = "duration::human")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// `[security]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Allow deliveries to loopback, private, link-local and other non-public addresses.
    /// Off by default (SSRF protection); turn on for internal destinations.
    pub allow_private_networks: bool,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `full` fsyncs every commit (survives power loss); `normal` survives process crashes only.
    pub durability: Durability,
    /// Largest number of ingests committed together in one transaction (group commit).
    pub max_batch: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            max_batch: 512,
        }
    }
}

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync on every commit.
    Full,
    /// fsync at checkpoints only; a process crash loses nothing, a power cut may.
    Normal,
}

/// `[delivery]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts in flight at once across all destinations.
    pub concurrency: usize,
    /// Attempts in flight at once for any single destination (a destination's own
    /// `max_in_flight` overrides it). Keeps one slow destination from taking every slot.
    pub per_destination_concurrency: usize,
    /// How long a claimed delivery stays leased to a worker; an expired lease is re-queued.
    #[serde(with = "duration::human")]
    pub lease: Duration,
    /// How often the worker looks for due deliveries when nothing wakes it.
    #[serde(with = "duration::human")]
    pub poll_interval: Duration,
    /// Bytes of each response body kept with the attempt.
    pub response_excerpt_bytes: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            concurrency: 512,
            per_destination_concurrency: 128,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            response_excerpt_bytes: 4096,
        }
    }
}

/// `[[sources]]`: an ingest URL `/in/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's id; events arrive at `/in/{id}`.
    pub id: String,
    /// How requests are authenticated.
    #[serde(default)]
    pub verifier: VerifierConfig,
}

/// How a source checks incoming requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VerifierConfig {
    /// Accept every request (use only behind another authenticating layer).
    #[default]
    None,
    /// Standard Webhooks / Svix: `webhook-signature` v1 over `{id}.{timestamp}.{body}`.
    StandardWebhooks {
        /// `whsec_…` secrets; any of them may match (rotation).
        secrets: Vec<String>,
        /// Allowed clock skew in both directions.
        #[serde(with = "duration::human", default = "default_tolerance")]
        tolerance: Duration,
    },
}

fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

/// `[[destinations]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationConfig {
    /// An HTTP endpoint, signed with Standard Webhooks.
    Http(HttpDestination),
}

impl DestinationConfig {
    /// The destination's id.
    pub fn id(&self) -> &str {
        match self {
            Self::Http(h) => &h.id,
        }
    }
}

/// An HTTP destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpDestination {
    /// The destination's id.
    pub id: String,
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// `whsec_…` signing secret. Without one, requests carry `webhook-id` and
    /// `webhook-timestamp` but no `webhook-signature`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Per-attempt timeout (connect + response headers + body).
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy; defaults to Svix's schedule.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Attempts in flight at once for this destination (defaults to
    /// `delivery.per_destination_concurrency`).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

/// `[[routes]]`: events from `source` go to `destination`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's id; defaults to `{source}-{destination}`.
    #[serde(default)]
    pub id: Option<String>,
    /// Source id.
    pub source: String,
    /// Destination id.
    pub destination: String,
}

impl RouteConfig {
    /// The effective id.
    pub fn effective_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.source, self.destination))
    }
}

impl Config {
    /// Parses TOML text. The error message points at the offending key.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// Applies `SWITCHBOARD_*` overrides from `vars` (normally `std::env::vars()`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (key, value) in vars {
            let bad = |what: &str| ConfigError::Invalid(format!("{key}={value}: {what}"));
            match key.as_str() {
                "SWITCHBOARD_LISTEN" => {
                    self.server.listen = value.parse().map_err(|_| bad("not an address"))?
                }
                "SWITCHBOARD_DATA_DIR" => self.server.data_dir = PathBuf::from(&value),
                "SWITCHBOARD_MAX_BODY_BYTES" => {
                    self.server.max_body_bytes = value.parse().map_err(|_| bad("not a number"))?
                }
                "SWITCHBOARD_ALLOW_PRIVATE_NETWORKS" => {
                    self.security.allow_private_networks =
                        parse_bool(&value).ok_or_else(|| bad("expected true or false"))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks cross-references and values. Call after all overrides are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.server.max_body_bytes == 0 {
            return invalid("server.max_body_bytes must be > 0".into());
        }
        if self.delivery.concurrency == 0 || self.delivery.per_destination_concurrency == 0 {
            return invalid("delivery concurrency limits must be > 0".into());
        }
        if self.storage.max_batch == 0 {
            return invalid("storage.max_batch must be > 0".into());
        }
        let mut sources = HashSet::new();
        for source in &self.sources {
            check_id("source", &source.id)?;
            if !sources.insert(source.id.as_str()) {
                return invalid(format!("source `{}` is defined twice", source.id));
            }
            if let VerifierConfig::StandardWebhooks { secrets, .. } = &source.verifier
                && secrets.is_empty()
            {
                return invalid(format!(
                    "source `{}`: verifier needs at least one secret",
                    source.id
                ));
            }
        }
        let mut destinations = HashSet::new();
        for destination in &self.destinations {
            check_id("destination", destination.id())?;
            if !destinations.insert(destination.id()) {
                return invalid(format!(
                    "destination `{}` is defined twice",
                    destination.id()
                ));
            }
            let DestinationConfig::Http(http) = destination;
            if !(http.url.starts_with("http://") || http.url.starts_with("https://")) {
                return invalid(format!(
                    "destination `{}`: url must start with http:// or https://",
                    http.id
                ));
            }
            if http.timeout.is_zero() {
                return invalid(format!("destination `{}`: timeout must be > 0", http.id));
            }
            if http.timeout >= self.delivery.lease {
                return invalid(format!(
                    "destination `{}`: timeout ({}) must be shorter than delivery.lease ({}), \
                     or a slow attempt would be claimed twice",
                    http.id,
                    humantime::format_duration(http.timeout),
                    humantime::format_duration(self.delivery.lease)
                ));
            }
            http.retry
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("destination `{}`: {e}", http.id)))?;
        }
        let mut routes = HashSet::new();
        for route in &self.routes {
            let id = route.effective_id();
            check_id("route", &id)?;
            if !routes.insert(id.clone()) {
                return invalid(format!("route `{id}` is defined twice"));
            }
            if !sources.contains(route.source.as_str()) {
                return invalid(format!("route `{id}`: unknown source `{}`", route.source));
            }
            if !destinations.contains(route.destination.as_str()) {
                return invalid(format!(
                    "route `{id}`: unknown destination `{}`",
                    route.destination
                ));
            }
        }
        Ok(())
    }
}

fn check_id(kind: &str, id: &str) -> Result<(), ConfigError> {
    if is_valid_resource_id(id) {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{kind} id `{id}` must be 1-64 characters of letters, digits, `-` or `_`"
        )))
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"
max_body_bytes = 1048576

[security]
allow_private_networks = false

[[sources]]
id = "orders"
verifier = { kind = "none" }

[[destinations]]
id = "billing"
kind = "http"
url = "http://127.0.0.1:9000/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
timeout = "15s"
retry = { schedule = ["5s", "5m"] }

[[routes]]
source = "orders"
destination = "billing"
"#;

    #[test]
    fn the_documented_interface_parses() {
        let config = Config::from_toml(EXAMPLE).expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.sources[0].verifier, VerifierConfig::None);
        let DestinationConfig::Http(http) = &config.destinations[0];
        assert_eq!(http.timeout, Duration::from_secs(15));
        assert_eq!(http.retry.max_attempts(), 3);
        assert_eq!(config.routes[0].effective_id(), "orders-billing");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::from_toml("[server]\nlisten_addr = \"1.2.3.4:5\"\n").expect_err("typo");
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let err = Config::from_toml(
            "[[destinations]]\nid='a'\nkind='http'\nurl='http://x'\nurl_typo=1\n",
        )
        .expect_err("typo");
        assert!(err.to_string().contains("url_typo"), "{err}");
    }

    #[test]
    fn dangling_routes_are_rejected() {
        let mut config = Config::from_toml(EXAMPLE).expect("parses");
        config.routes[0].destination = "nowhere".into();
        let err = config.validate().expect_err("dangling");
        assert!(err.to_string().contains("nowhere"));
    }

    #[test]
    fn timeouts_must_fit_in_the_lease() {
        let mut config = Config::from_toml(EXAMPLE).expect("parses");
        config.delivery.lease = Duration::from_secs(10);
        let err = config.validate().expect_err("timeout 15s > lease 10s");
        assert!(err.to_string().contains("delivery.lease"), "{err}");
    }

    #[test]
    fn env_overrides() {
        let mut config = Config::default();
        config
            .apply_env([
                ("SWITCHBOARD_LISTEN".to_string(), "0.0.0.0:9".to_string()),
                (
                    "SWITCHBOARD_ALLOW_PRIVATE_NETWORKS".to_string(),
                    "true".to_string(),
                ),
                ("HOME".to_string(), "/root".to_string()),
            ])
            .expect("valid");
        assert_eq!(config.server.listen.port(), 9);
        assert!(config.security.allow_private_networks);
        assert!(
            config
                .apply_env([("SWITCHBOARD_LISTEN".to_string(), "nope".to_string())])
                .is_err()
        );
    }
}
