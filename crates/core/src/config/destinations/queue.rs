//! `kind = "queue"`: publish to a message broker (NATS JetStream, RabbitMQ, Redis Streams).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DestinationKind, default_timeout};
use crate::config::redact_url_password;
use crate::duration;
use crate::retry::RetryPolicy;

/// The message brokers queue destinations publish to and queue sources consume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueBroker {
    /// NATS JetStream (`nats://`, `tls://`).
    Nats,
    /// RabbitMQ, or any AMQP 0-9-1 broker (`amqp://`, `amqps://`).
    Rabbitmq,
    /// Redis Streams (`redis://`, `rediss://`).
    Redis,
}

impl QueueBroker {
    /// The name, as written in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nats => "nats",
            Self::Rabbitmq => "rabbitmq",
            Self::Redis => "redis",
        }
    }

    /// The URL schemes the broker's client accepts.
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            Self::Nats => &["nats", "tls"],
            Self::Rabbitmq => &["amqp", "amqps"],
            Self::Redis => &["redis", "rediss"],
        }
    }

    /// Checks that `url` has one of the broker's schemes and a host. The error never shows the
    /// URL's password.
    pub fn check_url(self, url: &str) -> Result<(), String> {
        let schemes = self.schemes();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!(
                "url `{}` must start with {}://",
                redact_url_password(url),
                schemes.join(":// or ")
            ));
        };
        if !schemes.contains(&scheme) {
            return Err(format!(
                "url `{}`: broker `{}` takes {}:// URLs",
                redact_url_password(url),
                self.name(),
                schemes.join(":// or ")
            ));
        }
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        if host.is_empty() {
            return Err(format!("url `{}` has no host", redact_url_password(url)));
        }
        Ok(())
    }
}

/// A queue destination: each delivered message (the event's body, or the route transform's
/// output) is published to the broker, and the attempt succeeds only once the broker confirmed
/// it (a JetStream `PubAck`, a RabbitMQ publisher confirm, the entry id of a Redis `XADD`).
///
/// `subject`, `exchange`, `routing_key`, `stream` and header values may contain `{{ jq }}`
/// placeholders, rendered per message.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDestination {
    /// The destination's id.
    pub id: String,
    /// `nats`, `rabbitmq` or `redis`.
    pub broker: QueueBroker,
    /// The broker's URL; a password in it is a secret (never logged nor shown by the API).
    pub url: String,
    /// NATS: the subject to publish to (a JetStream stream must capture it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// RabbitMQ: the exchange (default: the default exchange `""`, which routes by queue name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// RabbitMQ: the routing key (with the default exchange, the queue's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// Redis: the stream's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Redis: trim the stream to about this many entries on every add (`MAXLEN ~`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxlen: Option<u64>,
    /// Headers added to every message (NATS headers, AMQP headers, Redis fields).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout (connecting and waiting for the broker's confirmation).
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Publishes in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Messages per second at most.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Publish in order.
    #[serde(default)]
    pub ordered: bool,
    /// `false` pauses the destination: its deliveries are kept pending and are sent once it is
    /// enabled again.
    #[serde(
        default = "crate::config::enabled_by_default",
        skip_serializing_if = "crate::config::is_enabled"
    )]
    pub enabled: bool,
}

impl std::fmt::Debug for QueueDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueDestination")
            .field("id", &self.id)
            .field("broker", &self.broker)
            .field("url", &redact_url_password(&self.url))
            .field("subject", &self.subject)
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key)
            .field("stream", &self.stream)
            .field("maxlen", &self.maxlen)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit", &self.rate_limit)
            .field("ordered", &self.ordered)
            .finish()
    }
}

impl DestinationKind for QueueDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        self.broker.check_url(&self.url)?;
        let broker = self.broker.name();
        let refuse = |key: &str, set: bool| -> Result<(), String> {
            if set {
                Err(format!("`{key}` is not a setting of broker `{broker}`"))
            } else {
                Ok(())
            }
        };
        match self.broker {
            QueueBroker::Nats => {
                refuse("exchange", self.exchange.is_some())?;
                refuse("routing_key", self.routing_key.is_some())?;
                refuse("stream", self.stream.is_some())?;
                refuse("maxlen", self.maxlen.is_some())?;
                match self.subject.as_deref() {
                    Some(subject) if !subject.trim().is_empty() => {
                        if subject.chars().any(char::is_whitespace) && !subject.contains("{{") {
                            return Err(format!("subject `{subject}` contains whitespace"));
                        }
                    }
                    _ => return Err("broker `nats` needs a `subject` to publish to".into()),
                }
            }
            QueueBroker::Rabbitmq => {
                refuse("subject", self.subject.is_some())?;
                refuse("stream", self.stream.is_some())?;
                refuse("maxlen", self.maxlen.is_some())?;
                let exchange = self.exchange.as_deref().unwrap_or("");
                let routing_key = self.routing_key.as_deref().unwrap_or("");
                if exchange.is_empty() && routing_key.is_empty() {
                    return Err(
                        "broker `rabbitmq` needs an `exchange`, or a `routing_key` naming \
                                the queue (the default exchange routes by queue name)"
                            .into(),
                    );
                }
            }
            QueueBroker::Redis => {
                refuse("subject", self.subject.is_some())?;
                refuse("exchange", self.exchange.is_some())?;
                refuse("routing_key", self.routing_key.is_some())?;
                if self.stream.as_deref().is_none_or(|s| s.is_empty()) {
                    return Err("broker `redis` needs a `stream` (the key to XADD to)".into());
                }
                if self.maxlen == Some(0) {
                    return Err("maxlen must be > 0".into());
                }
            }
        }
        for name in self.headers.keys() {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b':' && b != b'"')
            {
                return Err(format!("header name `{name}` is not a valid header name"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn error(toml: &str) -> String {
        Config::from_toml(toml)
            .and_then(|c| c.validate().map(|_| c))
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn each_broker_takes_its_own_settings() {
        let config = Config::from_toml(
            r#"
[[destinations]]
id = "n"
kind = "queue"
broker = "nats"
url = "nats://127.0.0.1:4222"
subject = "orders.{{ .type }}"
headers = { "x-tenant" = "acme" }

[[destinations]]
id = "r"
kind = "queue"
broker = "rabbitmq"
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
exchange = "events"
routing_key = "orders.created"

[[destinations]]
id = "s"
kind = "queue"
broker = "redis"
url = "redis://127.0.0.1:6379"
stream = "orders"
maxlen = 1000
"#,
        )
        .expect("valid");
        config.validate().expect("valid");
        let debug = format!("{:?}", config.destinations[1]);
        assert!(!debug.contains("guest:guest"), "{debug}");
    }

    #[test]
    fn mistakes_are_named() {
        let base = "[[destinations]]\nid = 'q'\nkind = 'queue'\n";
        let e = error(&format!("{base}broker = 'nats'\nurl = 'nats://h:4222'\n"));
        assert!(e.contains("needs a `subject`"), "{e}");
        let e = error(&format!(
            "{base}broker = 'nats'\nurl = 'amqp://h'\nsubject = 'a'\n"
        ));
        assert!(e.contains("takes nats:// or tls:// URLs"), "{e}");
        let e = error(&format!(
            "{base}broker = 'redis'\nurl = 'redis://u:hunter2@h'\nstream = 's'\nexchange = 'x'\n"
        ));
        assert!(
            e.contains("`exchange` is not a setting of broker `redis`"),
            "{e}"
        );
        let e = error(&format!("{base}broker = 'rabbitmq'\nurl = 'amqp://h'\n"));
        assert!(e.contains("needs an `exchange`"), "{e}");
        let e = error(&format!(
            "{base}broker = 'kafka'\nurl = 'kafka://h'\nstream = 's'\n"
        ));
        assert!(e.contains("kafka"), "{e}");
        let e = error(&format!(
            "{base}broker = 'redis'\nurl = 'redis://:pw@'\nstream = 's'\n"
        ));
        assert!(e.contains("no host") && !e.contains("pw"), "{e}");
    }
}
