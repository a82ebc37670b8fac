//! `kind = "queue"`: consume a broker's queue or stream (NATS JetStream, RabbitMQ, Redis
//! Streams) and store every message as an event before acknowledging it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{QueueBroker, redact_url_password};
use crate::duration;

/// Where a new consumer (NATS) or consumer group (Redis) starts reading. An existing one goes
/// on from where it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueStart {
    /// Every message the stream holds.
    #[default]
    Earliest,
    /// Only messages added after the consumer was created.
    Latest,
}

/// A queue source. Every node consumes (competing consumers); each message is acknowledged to
/// the broker only after its event is stored, and a broker message id becomes the event's
/// de-duplication key, so a redelivery after a crash is stored once.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSource {
    /// `nats`, `rabbitmq` or `redis`.
    pub broker: QueueBroker,
    /// The broker's URL; a password in it is a secret (never logged nor shown by the API).
    pub url: String,
    /// NATS: the JetStream stream to consume. Redis: the stream's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// NATS: only messages whose subject matches this filter (`orders.>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// NATS: the durable consumer's name, shared by every node (default `switchboard`).
    /// Redis: this node's consumer name in the group (default: host name and process id; leave
    /// it unset when several nodes share the configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// RabbitMQ: the queue to consume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// RabbitMQ: unacknowledged messages the broker sends ahead (`basic.qos`; default:
    /// `concurrency`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<u16>,
    /// Redis: the consumer group, shared by every node (default `switchboard`; created if
    /// missing, with the stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Redis: the entry field holding the body (default `body`); the other fields become
    /// headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_field: Option<String>,
    /// NATS and Redis: where a new consumer or group starts (`earliest`, the default, or
    /// `latest`).
    #[serde(default)]
    pub start: QueueStart,
    /// How long a message may stay unacknowledged before it goes to another consumer: NATS
    /// `AckWait`; Redis: pending entries idle this long are claimed from their (dead) consumer
    /// with `XAUTOCLAIM`. RabbitMQ redelivers when the connection drops.
    #[serde(with = "duration::human", default = "default_ack_wait")]
    pub ack_wait: Duration,
    /// The header (NATS, AMQP) or field (Redis) whose value is the event type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_header: Option<String>,
    /// NATS: the subject, RabbitMQ: the routing key is the event type (when `type_header` does
    /// not give one). RabbitMQ's `type` property is used before it when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub type_from_subject: bool,
    /// Messages being stored at once on each node.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

fn default_ack_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_concurrency() -> usize {
    64
}

/// The default NATS durable consumer and Redis consumer group name.
pub const DEFAULT_QUEUE_CONSUMER: &str = "switchboard";

impl std::fmt::Debug for QueueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSource")
            .field("broker", &self.broker)
            .field("url", &redact_url_password(&self.url))
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("consumer", &self.consumer)
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("group", &self.group)
            .field("body_field", &self.body_field)
            .field("start", &self.start)
            .field("ack_wait", &self.ack_wait)
            .field("type_header", &self.type_header)
            .field("type_from_subject", &self.type_from_subject)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl QueueSource {
    /// Checks the settings against the broker, without I/O.
    pub fn validate(&self) -> Result<(), String> {
        self.broker.check_url(&self.url)?;
        let broker = self.broker.name();
        let refuse = |key: &str, set: bool| -> Result<(), String> {
            if set {
                Err(format!("`{key}` is not a setting of broker `{broker}`"))
            } else {
                Ok(())
            }
        };
        let named = |key: &str, value: Option<&str>| -> Result<(), String> {
            match value {
                Some("") => Err(format!("`{key}` must not be empty")),
                _ => Ok(()),
            }
        };
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err("concurrency must be between 1 and 10000".into());
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Err("ack_wait must be at least 1s".into());
        }
        named("type_header", self.type_header.as_deref())?;
        named("consumer", self.consumer.as_deref())?;
        match self.broker {
            QueueBroker::Nats => {
                refuse("queue", self.queue.is_some())?;
                refuse("prefetch", self.prefetch.is_some())?;
                refuse("group", self.group.is_some())?;
                refuse("body_field", self.body_field.is_some())?;
                let Some(stream) = self.stream.as_deref().filter(|s| !s.is_empty()) else {
                    return Err("broker `nats` needs the `stream` to consume".into());
                };
                for (key, name) in [
                    ("stream", Some(stream)),
                    ("consumer", self.consumer.as_deref()),
                ] {
                    if let Some(name) = name
                        && name.contains(|c: char| c.is_whitespace() || ".*>/\\".contains(c))
                    {
                        return Err(format!(
                            "{key} `{name}` may not contain whitespace, `.`, `*`, `>`, `/` or `\\`"
                        ));
                    }
                }
                named("subject", self.subject.as_deref())?;
            }
            QueueBroker::Rabbitmq => {
                refuse("stream", self.stream.is_some())?;
                refuse("subject", self.subject.is_some())?;
                refuse("consumer", self.consumer.is_some())?;
                refuse("group", self.group.is_some())?;
                refuse("body_field", self.body_field.is_some())?;
                refuse("start", self.start != QueueStart::Earliest)?;
                if self.queue.as_deref().is_none_or(str::is_empty) {
                    return Err("broker `rabbitmq` needs the `queue` to consume".into());
                }
                if self.prefetch == Some(0) {
                    return Err("prefetch must be > 0".into());
                }
            }
            QueueBroker::Redis => {
                refuse("subject", self.subject.is_some())?;
                refuse("queue", self.queue.is_some())?;
                refuse("prefetch", self.prefetch.is_some())?;
                refuse("type_from_subject", self.type_from_subject)?;
                if self.stream.as_deref().is_none_or(str::is_empty) {
                    return Err("broker `redis` needs the `stream` (key) to consume".into());
                }
                named("group", self.group.as_deref())?;
                named("body_field", self.body_field.as_deref())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::config::SourceKind;

    #[test]
    fn queue_sources_parse_validate_and_round_trip() {
        let config = Config::from_toml(
            r#"
[[sources]]
id = "orders-in"
kind = "queue"
broker = "nats"
url = "nats://app:s3cret@127.0.0.1:4222"
stream = "ORDERS"
subject = "orders.>"
type_from_subject = true

[[sources]]
id = "rabbit-in"
kind = "queue"
broker = "rabbitmq"
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
queue = "inbound"
prefetch = 100

[[sources]]
id = "redis-in"
kind = "queue"
broker = "redis"
url = "redis://127.0.0.1:6379"
stream = "inbound"
group = "switchboard"
ack_wait = "1m"
start = "latest"
"#,
        )
        .expect("valid");
        config.validate().expect("valid");
        for source in &config.sources {
            let SourceKind::Queue(queue) = &source.kind else {
                panic!("a queue source: {source:?}");
            };
            assert!(!format!("{queue:?}").contains("s3cret"));
            let json = serde_json::to_value(source).expect("serializes");
            assert_eq!(json["kind"], "queue");
            let back: crate::config::SourceConfig =
                serde_json::from_value(json).expect("round trips");
            assert_eq!(&back, source);
        }
    }

    #[test]
    fn settings_of_another_broker_are_refused() {
        let cases = [
            ("broker = 'nats'\nurl = 'nats://h'\n", "needs the `stream`"),
            (
                "broker = 'nats'\nurl = 'nats://h'\nstream = 'S'\nqueue = 'q'\n",
                "`queue` is not a setting of broker `nats`",
            ),
            (
                "broker = 'nats'\nurl = 'nats://h'\nstream = 'a.b'\n",
                "may not contain",
            ),
            (
                "broker = 'rabbitmq'\nurl = 'amqp://h'\nstream = 's'\nqueue = 'q'\n",
                "`stream` is not a setting of broker `rabbitmq`",
            ),
            (
                "broker = 'redis'\nurl = 'redis://h'\nstream = 's'\ntype_from_subject = true\n",
                "`type_from_subject` is not a setting",
            ),
            (
                "broker = 'redis'\nurl = 'amqp://h'\nstream = 's'\n",
                "takes redis:// or rediss:// URLs",
            ),
            (
                "broker = 'redis'\nurl = 'redis://h'\nstream = 's'\nconcurrency = 0\n",
                "concurrency",
            ),
            (
                "broker = 'redis'\nurl = 'redis://h'\nstream = 's'\nstreem = 'x'\n",
                "streem",
            ),
        ];
        for (settings, expected) in cases {
            let toml = format!("[[sources]]\nid = 'q'\nkind = 'queue'\n{settings}");
            let error = Config::from_toml(&toml)
                .and_then(|c| c.validate().map(|_| c))
                .expect_err("must be refused")
                .to_string();
            assert!(
                error.contains(expected) && error.contains("source `q`"),
                "{settings}: {error}"
            );
        }
    }
}
