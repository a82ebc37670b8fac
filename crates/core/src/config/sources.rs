//! `[[sources]]`: where events come from.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::duration;

mod schedule;
mod websocket;

pub use schedule::ScheduleSource;
pub use websocket::{WebsocketSource, message_text};
mod queue;

pub use queue::{DEFAULT_QUEUE_CONSUMER, QueueSource, QueueStart};

/// `[[sources]]`: where events come from. A `webhook` source (the default `kind`) receives
/// them at `/in/{id}`; other kinds fetch them (queues, streams, schedules) and store each one
/// before acknowledging it to whoever sent it.
///
/// In configuration the kind's settings sit beside `id` and `kind`:
///
/// ```toml
/// [[sources]]
/// id = "github"
/// verifier = { kind = "github", secrets = ["…"] }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// The source's id; webhook events arrive at `/in/{id}`.
    pub id: String,
    /// How requests are authenticated (webhook sources).
    pub verifier: VerifierConfig,
    /// Largest accepted body for this source (defaults to `server.max_body_bytes`; webhook
    /// sources).
    pub max_body_bytes: Option<usize>,
    /// Requests per second accepted from this source; excess requests get `429` (webhook
    /// sources).
    pub rate_limit: Option<RateLimit>,
    /// Where the events come from, with that kind's settings.
    pub kind: SourceKind,
    /// `false` pauses the source: a webhook source answers `503` (senders retry later), a
    /// fetching source stops fetching (its broker or API keeps what it has).
    pub enabled: bool,
}

impl SourceConfig {
    /// A webhook source with default limits.
    pub fn new(id: impl Into<String>, verifier: VerifierConfig) -> Self {
        Self {
            id: id.into(),
            verifier,
            max_body_bytes: None,
            rate_limit: None,
            kind: SourceKind::Webhook,
            enabled: true,
        }
    }

    /// Whether events arrive by `POST /in/{id}`.
    pub fn is_webhook(&self) -> bool {
        matches!(self.kind, SourceKind::Webhook)
    }
}

/// How a source's events arrive. Each fetching kind's settings live in their own module.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum SourceKind {
    /// Pushed to `POST /in/{id}` and checked by the source's verifier.
    #[default]
    Webhook,
    /// Messages of a WebSocket stream (`kind = "websocket"`).
    Websocket(WebsocketSource),
    /// An HTTP API polled on a cron schedule (`kind = "schedule"`).
    Schedule(ScheduleSource),
    /// Consumed from a broker: NATS JetStream, RabbitMQ or Redis Streams.
    Queue(Box<QueueSource>),
}

impl SourceKind {
    /// The `kind` name, as written in configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Websocket(_) => "websocket",
            Self::Schedule(_) => "schedule",
            Self::Queue(_) => "queue",
        }
    }

    /// Every kind name, for error messages.
    pub const KINDS: &'static [&'static str] = &["webhook", "queue", "websocket", "schedule"];

    /// Reads the settings of a fetching kind `name` from the keys left beside `id` and `kind`.
    /// Each kind parses its own struct (`deny_unknown_fields`), so typos are caught.
    fn from_settings(name: &str, settings: Map<String, Value>) -> Result<Self, String> {
        fn parse<T: serde::de::DeserializeOwned>(
            settings: Map<String, Value>,
        ) -> Result<T, String> {
            serde_json::from_value(Value::Object(settings)).map_err(|e| e.to_string())
        }
        match name {
            "websocket" => {
                let source: WebsocketSource = parse(settings)?;
                source.validate()?;
                return Ok(Self::Websocket(source));
            }
            "schedule" => {
                let source: ScheduleSource = parse(settings)?;
                source.validate()?;
                return Ok(Self::Schedule(source));
            }
            "queue" => {
                let queue: QueueSource = parse(settings)?;
                queue.validate()?;
                return Ok(Self::Queue(Box::new(queue)));
            }
            _ => {}
        }
        Err(format!(
            "unknown source kind `{name}`; expected one of: {}",
            Self::KINDS.join(", ")
        ))
    }

    /// The kind's settings as the keys written beside `id` and `kind`.
    fn settings(&self) -> Result<Map<String, Value>, serde_json::Error> {
        match self {
            Self::Webhook => Ok(Map::new()),
            Self::Websocket(source) => as_map(source),
            Self::Schedule(source) => as_map(source),
            Self::Queue(queue) => as_map(queue.as_ref()),
        }
    }
}

/// Longest duration a fetching kind's settings accept (timeouts, intervals): beyond it a
/// setting is a typo, and deadlines computed from it stay far from overflowing.
const MAX_SOURCE_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A kind's settings struct as the keys written beside `id` and `kind`.
fn as_map(settings: &impl Serialize) -> Result<Map<String, Value>, serde_json::Error> {
    match serde_json::to_value(settings)? {
        Value::Object(map) => Ok(map),
        _ => Err(serde::ser::Error::custom(
            "settings must serialize as a table",
        )),
    }
}

/// Refuses a jq setting given as blank text, naming it.
fn check_programs(programs: &[(&str, &Option<String>)]) -> Result<(), String> {
    for (name, program) in programs {
        if program.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(format!("{name} is empty; remove it or give a jq program"));
        }
    }
    Ok(())
}

/// A kind's `headers` for `Debug`: the names, with every value hidden (values are secrets).
fn redacted_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<&str, &str> {
    headers
        .keys()
        .map(|name| (name.as_str(), "<redacted>"))
        .collect()
}

/// Checks one of a kind's `headers`: the name an RFC 9110 token, the value free of control
/// characters (the value is a secret, so the message does not show it).
fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!("`{name}` is not a valid header name"));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "the value of header `{name}` contains a control character (such as a line break)"
        ));
    }
    Ok(())
}

impl<'de> Deserialize<'de> for SourceConfig {
    /// Reads the table key by key so that the webhook settings (`verifier`, …) are parsed in
    /// place: error paths stay precise (`verifier.kind`). A fetching kind's keys are collected
    /// and parsed by its own struct once `kind` is known.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(SourceVisitor)
    }
}

struct SourceVisitor;

impl<'de> serde::de::Visitor<'de> for SourceVisitor {
    type Value = SourceConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a source table with `id`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut access: A,
    ) -> Result<SourceConfig, A::Error> {
        use serde::de::Error;
        const WEBHOOK_KEYS: &[&str] = &[
            "id",
            "kind",
            "enabled",
            "verifier",
            "max_body_bytes",
            "rate_limit",
        ];
        let mut id: Option<String> = None;
        let mut kind: Option<String> = None;
        let mut verifier: Option<VerifierConfig> = None;
        let mut max_body_bytes: Option<usize> = None;
        let mut rate_limit: Option<RateLimit> = None;
        let mut enabled = true;
        let mut webhook_keys = false;
        let mut rest = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match key.as_str() {
                "id" => id = Some(access.next_value()?),
                "kind" => kind = Some(access.next_value()?),
                "enabled" => enabled = access.next_value()?,
                "verifier" => {
                    verifier = Some(access.next_value()?);
                    webhook_keys = true;
                }
                "max_body_bytes" => {
                    max_body_bytes = access.next_value()?;
                    webhook_keys = true;
                }
                "rate_limit" => {
                    rate_limit = access.next_value()?;
                    webhook_keys = true;
                }
                _ => {
                    let value: Value = access.next_value()?;
                    rest.insert(key, value);
                }
            }
        }
        let id = id.ok_or_else(|| A::Error::missing_field("id"))?;
        let kind = kind.unwrap_or_else(|| "webhook".to_owned());
        if kind == "webhook" {
            if let Some(key) = rest.keys().next() {
                return Err(A::Error::unknown_field(key, WEBHOOK_KEYS));
            }
            return Ok(SourceConfig {
                id,
                verifier: verifier.unwrap_or_default(),
                max_body_bytes,
                rate_limit,
                kind: SourceKind::Webhook,
                enabled,
            });
        }
        if webhook_keys {
            return Err(A::Error::custom(format!(
                "source `{id}`: verifier, max_body_bytes and rate_limit apply to webhook sources only"
            )));
        }
        let kind = SourceKind::from_settings(&kind, rest)
            .map_err(|e| A::Error::custom(format!("source `{id}`: {e}")))?;
        Ok(SourceConfig {
            id,
            verifier: VerifierConfig::None,
            max_body_bytes: None,
            rate_limit: None,
            kind,
            enabled,
        })
    }
}

impl Serialize for SourceConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut map = Map::new();
        map.insert("id".into(), Value::String(self.id.clone()));
        if !self.enabled {
            map.insert("enabled".into(), Value::Bool(false));
        }
        if self.is_webhook() {
            let verifier = serde_json::to_value(&self.verifier).map_err(S::Error::custom)?;
            map.insert("verifier".into(), verifier);
            if let Some(max) = self.max_body_bytes {
                map.insert("max_body_bytes".into(), max.into());
            }
            if let Some(limit) = self.rate_limit {
                let limit = serde_json::to_value(limit).map_err(S::Error::custom)?;
                map.insert("rate_limit".into(), limit);
            }
        } else {
            map.insert("kind".into(), Value::String(self.kind.name().into()));
            map.extend(self.kind.settings().map_err(S::Error::custom)?);
        }
        map.serialize(serializer)
    }
}

/// A token-bucket rate limit: `per_second` sustained, bursts up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (≥ 1).
    pub per_second: u32,
    /// Largest burst (≥ 1; defaults to `per_second`).
    #[serde(default)]
    pub burst: Option<u32>,
}

/// How a source checks incoming requests. One variant per provider; each provider's runtime part
/// lives in `crates/server/src/verifiers/<provider>.rs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum VerifierConfig {
    /// Accept every request (use only behind another authenticating layer).
    #[default]
    None,
    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body.
    Github {
        /// Webhook secrets; any may match (rotation).
        secrets: Vec<String>,
    },
    /// Stripe: `Stripe-Signature: t=…,v1=…` over `{t}.{body}`; the key is the whole `whsec_…`.
    Stripe {
        /// Endpoint signing secrets (`whsec_…`).
        secrets: Vec<String>,
        /// How old a timestamp may be (Stripe does not reject future timestamps).
        #[serde(with = "duration::human", default = "default_tolerance")]
        tolerance: Duration,
    },
    /// Slack: `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Slack {
        /// Signing secrets.
        secrets: Vec<String>,
        /// Allowed clock skew in both directions.
        #[serde(with = "duration::human", default = "default_tolerance")]
        tolerance: Duration,
    },
    /// Shopify: `X-Shopify-Hmac-Sha256: <base64>` over the raw body.
    Shopify {
        /// App client secrets.
        secrets: Vec<String>,
    },
    /// Twilio: `X-Twilio-Signature` over the public URL and sorted form parameters (or the
    /// `bodySHA256` query parameter for JSON bodies).
    Twilio {
        /// Auth tokens.
        secrets: Vec<String>,
        /// The URL Twilio calls, as Twilio sees it (scheme, host, port, path). Needed behind
        /// proxies; without it the URL is rebuilt from `X-Forwarded-Proto`/`Host`.
        #[serde(default)]
        public_url: Option<String>,
    },
    /// SendGrid signed Event Webhook: ECDSA P-256 over `{timestamp}{body}`.
    Sendgrid {
        /// The verification key from SendGrid's mail settings (base64 DER).
        public_key: String,
        /// Optional replay window (SendGrid documents none).
        #[serde(with = "duration::human_opt", default)]
        tolerance: Option<Duration>,
    },
    /// Standard Webhooks / Svix: `webhook-signature` v1 over `{id}.{timestamp}.{body}`.
    StandardWebhooks {
        /// `whsec_…` secrets; any of them may match (rotation).
        secrets: Vec<String>,
        /// Allowed clock skew in both directions.
        #[serde(with = "duration::human", default = "default_tolerance")]
        tolerance: Duration,
    },
    /// Any HMAC scheme, described by configuration.
    Hmac(HmacVerifierConfig),
    /// HTTP Basic authentication.
    Basic {
        /// Expected user name.
        username: String,
        /// Accepted passwords (rotation).
        passwords: Vec<String>,
    },
    /// A static key in a header or a query parameter.
    ApiKey {
        /// Accepted keys (rotation).
        keys: Vec<String>,
        /// Header carrying the key (default `x-api-key` when `query` is not set).
        #[serde(default)]
        header: Option<String>,
        /// Query parameter carrying the key.
        #[serde(default)]
        query: Option<String>,
    },
}

/// The generic HMAC verifier (`kind = "hmac"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacVerifierConfig {
    /// Secrets; any may match.
    pub secrets: Vec<String>,
    /// `sha1`, `sha256` (default) or `sha512`.
    #[serde(default = "default_hmac_algorithm")]
    pub algorithm: String,
    /// `hex` (default) or `base64`.
    #[serde(default = "default_hmac_encoding")]
    pub encoding: String,
    /// Header carrying the signature.
    pub header: String,
    /// Prefix before the encoded MAC in the header (e.g. `sha256=`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// What is signed: a template with `{body}` and optionally `{timestamp}` and `{id}`.
    #[serde(default = "default_signed_content")]
    pub signed_content: String,
    /// Header carrying the timestamp (unix seconds) used in `{timestamp}`.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// Allowed skew for the timestamp (default 5m when a timestamp header is set).
    #[serde(with = "duration::human_opt", default)]
    pub tolerance: Option<Duration>,
    /// Header carrying a unique delivery id: used in `{id}` and for de-duplication.
    #[serde(default)]
    pub id_header: Option<String>,
    /// Header carrying the event type.
    #[serde(default)]
    pub event_type_header: Option<String>,
}

fn default_hmac_algorithm() -> String {
    "sha256".into()
}

fn default_hmac_encoding() -> String {
    "hex".into()
}

fn default_signed_content() -> String {
    "{body}".into()
}

impl VerifierConfig {
    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Github { .. } => "github",
            Self::Stripe { .. } => "stripe",
            Self::Slack { .. } => "slack",
            Self::Shopify { .. } => "shopify",
            Self::Twilio { .. } => "twilio",
            Self::Sendgrid { .. } => "sendgrid",
            Self::StandardWebhooks { .. } => "standard-webhooks",
            Self::Hmac(_) => "hmac",
            Self::Basic { .. } => "basic",
            Self::ApiKey { .. } => "api-key",
        }
    }

    /// Checks what can be checked without building the verifier.
    pub fn validate(&self) -> Result<(), String> {
        let secrets = match self {
            Self::Github { secrets }
            | Self::Stripe { secrets, .. }
            | Self::Slack { secrets, .. }
            | Self::Shopify { secrets }
            | Self::Twilio { secrets, .. }
            | Self::StandardWebhooks { secrets, .. } => Some(secrets),
            Self::Hmac(h) => Some(&h.secrets),
            Self::Basic { passwords, .. } => Some(passwords),
            Self::ApiKey { keys, .. } => Some(keys),
            Self::None | Self::Sendgrid { .. } => None,
        };
        if let Some(secrets) = secrets {
            if secrets.is_empty() {
                return Err(format!(
                    "verifier `{}` needs at least one secret",
                    self.kind()
                ));
            }
            if secrets.iter().any(String::is_empty) {
                return Err(format!("verifier `{}` has an empty secret", self.kind()));
            }
        }
        if let Self::Twilio {
            public_url: Some(url),
            ..
        } = self
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err("twilio public_url must start with http:// or https://".into());
        }
        if let Self::ApiKey {
            header: Some(_),
            query: Some(_),
            ..
        } = self
        {
            return Err("api-key verifier takes `header` or `query`, not both".into());
        }
        Ok(())
    }
}

fn default_tolerance() -> Duration {
    Duration::from_secs(300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn a_source_without_kind_is_a_webhook_and_round_trips() {
        let config = Config::from_toml(
            "[[sources]]\nid = \"gh\"\nmax_body_bytes = 10\nverifier = { kind = \"github\", secrets = [\"s\"] }\n",
        )
        .expect("valid");
        let source = &config.sources[0];
        assert!(source.is_webhook());
        assert_eq!(source.max_body_bytes, Some(10));
        let json = serde_json::to_value(source).expect("valid");
        assert!(json.get("kind").is_none(), "webhook is the default: {json}");
        let back: SourceConfig = serde_json::from_value(json).expect("valid");
        assert_eq!(&back, source);
    }

    #[test]
    fn unknown_kinds_and_keys_are_named() {
        let error = Config::from_toml("[[sources]]\nid = \"q\"\nkind = \"carrier-pigeon\"\n")
            .expect_err("must be refused")
            .to_string();
        assert!(
            error.contains("unknown source kind `carrier-pigeon`"),
            "{error}"
        );
        let error = Config::from_toml("[[sources]]\nid = \"gh\"\nverifer = {}\n")
            .expect_err("must be refused")
            .to_string();
        assert!(error.contains("unknown field `verifer`"), "{error}");
    }
}
