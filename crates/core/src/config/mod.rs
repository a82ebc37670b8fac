//! The typed configuration tree (`switchboard.toml`).
//!
//! Precedence: compiled-in defaults, then the file, then `SWITCHBOARD_*` environment variables,
//! then command-line flags (applied by the binary). Unknown keys are rejected so that a typo never
//! silently falls back to a default. Every field documents itself; `docs/configuration.md` mirrors
//! these comments.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::ids::is_valid_resource_id;

mod connections;
mod destinations;
mod observability;
mod routes;
mod sources;
mod syncs;

pub use connections::*;
pub use destinations::*;
pub use observability::*;
pub use routes::*;
pub use sources::*;
pub use syncs::*;

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
    /// How long stored data is kept.
    pub retention: RetentionConfig,
    /// Where events come from.
    pub sources: Vec<SourceConfig>,
    /// Where events go.
    pub destinations: Vec<DestinationConfig>,
    /// Which sources feed which destinations.
    pub routes: Vec<RouteConfig>,
    /// Connections to third-party APIs: provider files, OAuth2 callback, proxy policies.
    pub connections: ConnectionsConfig,
    /// The live stream (`GET /v1/stream`, `switchboard listen` and `tail`).
    pub stream: StreamConfig,
    /// Log format and level.
    pub log: LogConfig,
    /// OpenTelemetry traces over OTLP (off by default).
    pub tracing: TracingConfig,
    /// Metrics exports beyond `/metrics` (StatsD).
    pub metrics: MetricsConfig,
    /// Sync jobs: records of a third-party API kept in step with a table or change events.
    pub syncs: Vec<SyncConfig>,
}

/// `[server]`
///
/// `Debug` hides secrets: the admin token, and the password of `database_url`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
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
    /// Bootstrap admin token for the management API (`SWITCHBOARD_ADMIN_TOKEN`). When neither
    /// is set and no token exists, the first start creates one and prints it once.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Require a `read` token for `/metrics`.
    pub metrics_require_token: bool,
    /// PostgreSQL URL (`postgres://…`); when set, Switchboard stores everything there instead
    /// of the SQLite file under data_dir (`SWITCHBOARD_DATABASE_URL`).
    #[serde(default)]
    pub database_url: Option<String>,
    /// Most connections this node opens to PostgreSQL (with `database_url`).
    pub database_max_connections: u32,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("metrics_require_token", &self.metrics_require_token)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url_password),
            )
            .field("database_max_connections", &self.database_max_connections)
            .finish()
    }
}

/// Serde default of every `enabled` setting: resources are enabled unless said otherwise.
pub fn enabled_by_default() -> bool {
    true
}

/// Serde `skip_serializing_if` of every `enabled` setting: only `enabled = false` is written.
pub fn is_enabled(enabled: &bool) -> bool {
    *enabled
}

/// `url` with the password replaced by `<redacted>`: the one in the user info
/// (`postgres://user:password@host/…`) and any `password=` query parameter. Meant for logs and
/// `Debug` output; the result is not a usable URL. When in doubt (an `@` in an odd place) it
/// hides more, never less.
pub fn redact_url_password(url: &str) -> String {
    const REDACTED: &str = "<redacted>";
    let mut out = String::with_capacity(url.len());
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            rest
        }
        None => url,
    };
    // The last `@` ends the user info, so a password containing `@`, `/` or `?` stays hidden.
    let after = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match after.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}={REDACTED}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            admin_token: None,
            metrics_require_token: false,
            database_url: None,
            database_max_connections: 16,
        }
    }
}

/// `[security]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Allow deliveries to loopback, private, link-local and other non-public addresses.
    /// Off by default (SSRF protection); turn on for internal destinations. Cloud metadata
    /// services (`169.254.169.254`, `fd00:ec2::254`, …) stay refused even then, because they hand
    /// out cloud credentials: list them individually in `allow_networks` to reach them.
    pub allow_private_networks: bool,
    /// Networks deliveries may reach even though they are not public, in CIDR notation
    /// (`["10.0.0.0/8", "fd00::/8"]`; a bare address means that one address). The check applies
    /// to the address actually connected, after DNS resolution. A cloud metadata address passes
    /// only when listed as a single address (`"169.254.169.254/32"`), never through a wider
    /// network such as `169.254.0.0/16` or `fd00::/8`. Empty by default.
    #[serde(default)]
    pub allow_networks: Vec<String>,
}

impl SecurityConfig {
    /// Checks that every `allow_networks` entry is a valid CIDR.
    pub fn validate(&self) -> Result<(), String> {
        for network in &self.allow_networks {
            Self::parse_network(network)?;
        }
        Ok(())
    }

    /// Parses one `allow_networks` entry (`"10.0.0.0/8"`, `"fd00::/8"`, or a bare address) into
    /// its network address and prefix length. Host bits after the prefix must be zero.
    pub fn parse_network(network: &str) -> Result<(std::net::IpAddr, u8), String> {
        let invalid = |why: String| {
            Err(format!(
                "security.allow_networks: `{network}` is not a valid CIDR network ({why}); \
                 expected e.g. \"10.0.0.0/8\" or \"fd00::/8\""
            ))
        };
        let (address, prefix) = match network.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (network, None),
        };
        let Ok(address) = address.parse::<std::net::IpAddr>() else {
            return invalid(format!("`{address}` is not an IP address"));
        };
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u8>() {
                    Ok(p) if p <= max => p,
                    _ => return invalid(format!("prefix length must be 0 to {max}")),
                }
            }
            Some(_) => return invalid(format!("prefix length must be 0 to {max}")),
        };
        let bits = match address {
            std::net::IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            std::net::IpAddr::V6(v6) => u128::from(v6),
        };
        let host_bits = bits.checked_shl(u32::from(prefix)).unwrap_or(0);
        if host_bits != 0 {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            let base = match address {
                std::net::IpAddr::V4(_) => {
                    std::net::IpAddr::from(std::net::Ipv4Addr::from(((bits & mask) >> 96) as u32))
                }
                std::net::IpAddr::V6(_) => {
                    std::net::IpAddr::from(std::net::Ipv6Addr::from(bits & mask))
                }
            };
            return invalid(format!(
                "bits after the prefix are set; did you mean `{base}/{prefix}`?"
            ));
        }
        Ok((address, prefix))
    }
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
    /// Circuit breaker applied to every destination and endpoint.
    pub circuit: CircuitConfig,
    /// A tenant endpoint that has failed for this long without a single success is disabled
    /// (and an `endpoint.disabled` operational event is published).
    #[serde(with = "duration::human")]
    pub disable_after: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            concurrency: 512,
            per_destination_concurrency: 128,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            response_excerpt_bytes: 4096,
            circuit: CircuitConfig::default(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// `[delivery.circuit]`: stop sending to a destination that keeps failing, probe it after a
/// cooldown, resume once it answers again. Deliveries wait (pending) while the circuit is open;
/// they do not use up their retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive failed attempts that open the circuit (0 turns the breaker off).
    pub failure_threshold: u32,
    /// How long an open circuit waits before letting one probe attempt through.
    #[serde(with = "duration::human")]
    pub cooldown: Duration,
    /// Consecutive successful probes that close the circuit again.
    pub success_threshold: u32,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            success_threshold: 2,
        }
    }
}

/// `[stream]`: the live stream of events and delivery outcomes (`GET /v1/stream`, and the
/// dashboard's `GET /ui/live`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Most streams open at once on this node; one more is answered `429`.
    pub max_streams: usize,
    /// Items a stream holds for a slow client before it stops reading the store for it
    /// (back-pressure: the client resumes where it is, nothing is dropped).
    pub buffer: usize,
    /// How often a stream looks for rows written by other nodes. Rows this node commits wake
    /// streams at once.
    #[serde(with = "duration::human")]
    pub poll_interval: Duration,
    /// Idle time after which a stream sends a keep-alive comment, so proxies keep it open.
    #[serde(with = "duration::human")]
    pub keep_alive: Duration,
    /// How often an open stream checks again that its caller may still read it (the API token
    /// of `GET /v1/stream` not revoked, the dashboard session not signed out, expired or its
    /// token revoked); the stream ends at the first check that fails.
    #[serde(with = "duration::human")]
    pub auth_recheck: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_streams: 64,
            buffer: 256,
            poll_interval: Duration::from_secs(1),
            keep_alive: Duration::from_secs(15),
            auth_recheck: Duration::from_secs(30),
        }
    }
}

/// `[retention]`: how long stored data is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Event bodies older than this are removed once nothing is left to deliver; the event
    /// and its delivery history stay. `"off"` keeps bodies forever.
    #[serde(with = "duration::human_or_off")]
    pub payloads: Option<Duration>,
    /// Whole events older than this are deleted, with their deliveries, attempts and dedup
    /// keys, once none of their deliveries is pending, in flight or holding an ordering key
    /// (a dead letter whose hold was not released). `"off"` (the default) keeps them.
    #[serde(with = "duration::human_or_off")]
    pub events: Option<Duration>,
    /// Attempt records older than this are deleted once their delivery is neither pending nor
    /// in flight; the delivery keeps its status, attempt count and last error. `"off"` (the
    /// default) keeps them.
    #[serde(with = "duration::human_or_off")]
    pub attempts: Option<Duration>,
    /// Audit entries older than this are deleted. `"off"` keeps them forever.
    #[serde(with = "duration::human_or_off")]
    pub audit: Option<Duration>,
    /// How often the pruner runs.
    #[serde(with = "duration::human")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            payloads: Some(Duration::from_secs(30 * 24 * 3600)),
            events: None,
            attempts: None,
            audit: Some(Duration::from_secs(365 * 24 * 3600)),
            interval: Duration::from_secs(3600),
        }
    }
}

impl RetentionConfig {
    /// Whether anything is pruned at all.
    pub fn prunes_anything(&self) -> bool {
        self.payloads.is_some()
            || self.events.is_some()
            || self.attempts.is_some()
            || self.audit.is_some()
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
                "SWITCHBOARD_DATABASE_URL" if !value.is_empty() => {
                    self.server.database_url = Some(value)
                }
                "SWITCHBOARD_ADMIN_TOKEN" if !value.is_empty() => {
                    self.server.admin_token = Some(value)
                }
                "SWITCHBOARD_MAX_BODY_BYTES" => {
                    self.server.max_body_bytes = value.parse().map_err(|_| bad("not a number"))?
                }
                "SWITCHBOARD_LOG_FORMAT" if !value.is_empty() => {
                    self.log.format =
                        LogFormat::parse(&value).ok_or_else(|| bad("expected pretty or json"))?
                }
                "SWITCHBOARD_OTLP_ENDPOINT" if !value.is_empty() => {
                    self.tracing.endpoint = Some(value)
                }
                "SWITCHBOARD_OTLP_PROTOCOL" if !value.is_empty() => {
                    self.tracing.protocol = OtlpProtocol::parse(&value)
                        .ok_or_else(|| bad("expected http/protobuf or grpc"))?
                }
                "SWITCHBOARD_STATSD" if !value.is_empty() => self.metrics.statsd = Some(value),
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
        if self.stream.buffer == 0 || self.stream.poll_interval.is_zero() {
            return invalid("stream.buffer and stream.poll_interval must be > 0".into());
        }
        if self.stream.keep_alive.is_zero() {
            return invalid("stream.keep_alive must be > 0".into());
        }
        if self.stream.auth_recheck.is_zero() {
            return invalid("stream.auth_recheck must be > 0".into());
        }
        self.tracing.validate().map_err(ConfigError::Invalid)?;
        self.metrics.validate().map_err(ConfigError::Invalid)?;
        if self.delivery.concurrency == 0 || self.delivery.per_destination_concurrency == 0 {
            return invalid("delivery concurrency limits must be > 0".into());
        }
        if let Some(token) = &self.server.admin_token
            && token.len() < 16
        {
            return invalid("server.admin_token must be at least 16 characters".into());
        }
        if self.storage.max_batch == 0 {
            return invalid("storage.max_batch must be > 0".into());
        }
        self.security.validate().map_err(ConfigError::Invalid)?;
        self.connections.validate().map_err(ConfigError::Invalid)?;
        if self.delivery.circuit.failure_threshold > 0
            && (self.delivery.circuit.success_threshold == 0
                || self.delivery.circuit.cooldown.is_zero())
        {
            return invalid("delivery.circuit: success_threshold and cooldown must be > 0".into());
        }
        if self.server.database_max_connections == 0 {
            return invalid("server.database_max_connections must be > 0".into());
        }
        if self.retention.interval.is_zero() {
            return invalid("retention.interval must be > 0".into());
        }
        if let Some(url) = &self.server.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return invalid(format!(
                "server.database_url must be a postgres:// URL, not `{}`",
                redact_url_password(url)
            ));
        }
        let mut sources = HashSet::new();
        sources.insert(crate::outbound::OPERATIONS_SOURCE);
        sources.insert(crate::outbound::PUBLISH_SOURCE);
        for source in &self.sources {
            check_id("source", &source.id)?;
            if crate::outbound::is_builtin_source(&source.id) {
                return invalid(format!(
                    "source id `{}` is reserved for Switchboard's built-in source",
                    source.id
                ));
            }
            if !sources.insert(source.id.as_str()) {
                return invalid(format!("source `{}` is defined twice", source.id));
            }
            if source.max_body_bytes == Some(0) {
                return invalid(format!(
                    "source `{}`: max_body_bytes must be > 0",
                    source.id
                ));
            }
            if let Some(limit) = source.rate_limit
                && (limit.per_second == 0 || limit.burst == Some(0))
            {
                return invalid(format!(
                    "source `{}`: rate_limit values must be ≥ 1",
                    source.id
                ));
            }
            source
                .verifier
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("source `{}`: {e}", source.id)))?;
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
            let id = destination.id();
            destination
                .validate_kind()
                .map_err(|e| ConfigError::Invalid(format!("destination `{id}`: {e}")))?;
            let policy = destination.policy();
            if policy.timeout.is_zero() {
                return invalid(format!("destination `{id}`: timeout must be > 0"));
            }
            if policy.timeout >= self.delivery.lease {
                return invalid(format!(
                    "destination `{id}`: timeout ({}) must be shorter than delivery.lease ({}), \
                     or a slow attempt would be claimed twice",
                    humantime::format_duration(policy.timeout),
                    humantime::format_duration(self.delivery.lease)
                ));
            }
            policy
                .retry
                .validate()
                .map_err(|e| ConfigError::Invalid(format!("destination `{id}`: {e}")))?;
            if let Some(rate) = policy.rate_limit
                && !(rate.is_finite() && rate > 0.0)
            {
                return invalid(format!(
                    "destination `{id}`: rate_limit must be a positive number of deliveries per second"
                ));
            }
        }
        // A sync's change events are events of a source named after it.
        for sync in &self.syncs {
            check_id("sync", &sync.id)?;
            if crate::outbound::is_builtin_source(&sync.id) {
                return invalid(format!(
                    "sync id `{}` is reserved for Switchboard's built-in source",
                    sync.id
                ));
            }
            if !sources.insert(sync.id.as_str()) {
                return invalid(format!(
                    "sync `{}`: the id is already used by a source or another sync (its change \
                     events are events of a source with the sync's id)",
                    sync.id
                ));
            }
            sync.validate().map_err(ConfigError::Invalid)?;
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
        let DestinationConfig::Http(http) = &config.destinations[0] else {
            panic!("an http destination")
        };
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
    fn every_verifier_kind_of_the_interface_parses() {
        let config = Config::from_toml(
            r#"
[[sources]]
id = "gh"
verifier = { kind = "github", secrets = ["s3cret", "old-s3cret"] }
[[sources]]
id = "pay"
verifier = { kind = "stripe", secrets = ["whsec_x"], tolerance = "5m" }
[[sources]]
id = "tw"
verifier = { kind = "twilio", secrets = ["auth-token"], public_url = "https://hooks.example.com/in/tw" }
[[sources]]
id = "sg"
verifier = { kind = "sendgrid", public_key = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE" }
[[sources]]
id = "custom"
verifier = { kind = "hmac", secrets = ["k"], algorithm = "sha256", encoding = "hex", header = "X-Signature", prefix = "sha256=", signed_content = "{timestamp}.{body}", timestamp_header = "X-Timestamp", tolerance = "5m" }
[[sources]]
id = "sl"
verifier = { kind = "slack", secrets = ["x"] }
[[sources]]
id = "sh"
verifier = { kind = "shopify", secrets = ["x"] }
[[sources]]
id = "sw"
verifier = { kind = "standard-webhooks", secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
[[sources]]
id = "b"
verifier = { kind = "basic", username = "u", passwords = ["p"] }
[[sources]]
id = "k"
verifier = { kind = "api-key", keys = ["k1"], query = "key" }
[[sources]]
id = "n"
verifier = { kind = "none" }
"#,
        )
        .expect("parses");
        config.validate().expect("valid");
        let kinds: Vec<_> = config.sources.iter().map(|s| s.verifier.kind()).collect();
        assert_eq!(
            kinds,
            [
                "github",
                "stripe",
                "twilio",
                "sendgrid",
                "hmac",
                "slack",
                "shopify",
                "standard-webhooks",
                "basic",
                "api-key",
                "none"
            ]
        );
        let err = Config::from_toml(
            "[[sources]]\nid = 'g'\nverifier = { kind = 'github', secrets = ['x'], secret = 'typo' }\n",
        )
        .expect_err("unknown verifier key");
        assert!(err.to_string().contains("secret"), "{err}");
        let empty = Config::from_toml(
            "[[sources]]\nid = 'g'\nverifier = { kind = 'github', secrets = [] }\n",
        )
        .expect("parses");
        assert!(empty.validate().is_err());
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

    #[test]
    fn database_url_from_file_and_env() {
        let config = Config::from_toml(EXAMPLE).expect("parses");
        assert_eq!(config.server.database_url, None);
        assert_eq!(config.server.database_max_connections, 16);
        let mut config = Config::from_toml(
            "[server]\ndatabase_url = 'postgres://sb@db/sb'\ndatabase_max_connections = 4\n",
        )
        .expect("parses");
        config.validate().expect("valid");
        assert_eq!(config.server.database_max_connections, 4);
        config
            .apply_env([(
                "SWITCHBOARD_DATABASE_URL".to_string(),
                "postgres://other@db2/sb".to_string(),
            )])
            .expect("valid");
        assert_eq!(
            config.server.database_url.as_deref(),
            Some("postgres://other@db2/sb")
        );
        config.server.database_url = Some("mysql://x".into());
        assert!(config.validate().is_err());
        config.server.database_url = None;
        config.server.database_max_connections = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn debug_output_hides_the_database_password() {
        let mut config = Config::default();
        config.server.database_url =
            Some("postgres://sb:s3cr%40t@db.internal:5432/sb?sslmode=require&password=p4ss".into());
        config.server.admin_token = Some("admin-token-value-0123".into());
        let debug = format!("{config:?}");
        for secret in ["s3cr", "p4ss", "admin-token-value"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("db.internal:5432/sb"), "{debug}");
        for (url, redacted) in [
            ("postgres://db/sb", "postgres://db/sb"),
            ("postgres://sb@db/sb", "postgres://sb@db/sb"),
            (
                "postgres://sb:a@b/c?d@db/sb?x=1",
                "postgres://sb:<redacted>@db/sb?x=1",
            ),
            (
                "postgresql://u:p@h/d?PASSWORD=q&sslmode=disable",
                "postgresql://u:<redacted>@h/d?PASSWORD=<redacted>&sslmode=disable",
            ),
        ] {
            assert_eq!(redact_url_password(url), redacted);
        }
    }
}
