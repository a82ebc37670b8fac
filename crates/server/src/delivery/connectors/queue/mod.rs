//! `kind = "queue"`: publishes each delivered message to a broker and succeeds only once the
//! broker confirmed it: a JetStream `PubAck` (NATS), a publisher confirm `basic.ack` without a
//! `basic.return` (RabbitMQ, published `mandatory`), the entry id of an `XADD` (Redis).
//!
//! Connections are opened on first use and kept in the connector (rebuilt with it when the
//! configuration changes); a failed or lost connection is dropped and reopened by the next
//! attempt. Connection problems, refusals and missing confirmations are retryable; only a
//! message that can never be published (too large, a template that renders an unusable
//! subject or key) fails permanently.
//!
//! Every message carries the delivery id (stable across retries) as its broker message id —
//! `Nats-Msg-Id` (JetStream de-duplicates on it), the AMQP `message_id` property, a
//! `message-id` field in Redis — so consumers can drop a re-publish after a lost confirmation.

mod nats;
mod rabbitmq;
mod redis;

use std::time::Instant;

use async_trait::async_trait;
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{QueueBroker, QueueDestination, redact_url_password};

use super::{Attempt, Connector};
use crate::delivery::sender::AttemptReport;
use crate::template::{Rendered, TemplateSet};

/// Template name prefix of the configured headers.
const HEADER: &str = "header:";

/// A configured queue destination.
pub struct Queue {
    broker: QueueBroker,
    describe: String,
    templates: TemplateSet,
    publisher: Publisher,
    /// The URL's password, scrubbed from every error text.
    password: Option<String>,
}

enum Publisher {
    Nats(nats::Publisher),
    Rabbitmq(rabbitmq::Publisher),
    Redis(redis::Publisher),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("to", &self.describe).finish()
    }
}

/// One message to publish.
pub(crate) struct Outgoing<'a> {
    /// The delivery id, used as the broker message id.
    pub id: &'a str,
    /// The body.
    pub body: &'a [u8],
    /// Its media type.
    pub content_type: Option<&'a str>,
    /// Forwarded and configured headers, in that order.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The rendered templates (`subject`, `exchange`, `routing_key`, `stream`).
    pub rendered: &'a Rendered,
}

/// Why a publish failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Worth trying again (connection, refusal, no confirmation).
    Retryable(String),
    /// This message can never be published.
    Permanent(String),
}

impl Queue {
    /// Checks the settings and templates; connects on the first delivery.
    pub fn new(config: &QueueDestination) -> Result<Self, String> {
        let mut templates = TemplateSet::new();
        let target = match config.broker {
            QueueBroker::Nats => {
                let subject = config.subject.as_deref().unwrap_or_default();
                templates.add("subject", subject)?;
                format!("subject {subject}")
            }
            QueueBroker::Rabbitmq => {
                let exchange = config.exchange.as_deref().unwrap_or_default();
                let routing_key = config.routing_key.as_deref().unwrap_or_default();
                templates.add("exchange", exchange)?;
                templates.add("routing_key", routing_key)?;
                format!("exchange `{exchange}` routing key `{routing_key}`")
            }
            QueueBroker::Redis => {
                let stream = config.stream.as_deref().unwrap_or_default();
                templates.add("stream", stream)?;
                format!("stream {stream}")
            }
        };
        for (name, value) in &config.headers {
            templates.add(format!("{HEADER}{name}"), value)?;
        }
        let publisher = match config.broker {
            QueueBroker::Nats => Publisher::Nats(nats::Publisher::new(&config.url)),
            QueueBroker::Rabbitmq => Publisher::Rabbitmq(rabbitmq::Publisher::new(&config.url)),
            QueueBroker::Redis => {
                Publisher::Redis(redis::Publisher::new(&config.url, config.maxlen)?)
            }
        };
        Ok(Self {
            broker: config.broker,
            describe: format!(
                "{} {} {target}",
                config.broker.name(),
                redact_url_password(&config.url)
            ),
            templates,
            publisher,
            password: url_password(&config.url),
        })
    }

    async fn publish(
        &self,
        message: &Outgoing<'_>,
        timeout: std::time::Duration,
    ) -> Result<String, Failure> {
        match &self.publisher {
            Publisher::Nats(p) => p.publish(message, timeout).await,
            Publisher::Rabbitmq(p) => p.publish(message).await,
            Publisher::Redis(p) => p.publish(message, timeout).await,
        }
    }
}

#[async_trait]
impl Connector for Queue {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn templates(&self) -> TemplateSet {
        self.templates.clone()
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let started = Instant::now();
        let prepared = attempt.message;
        let mut headers: Vec<(&str, &str)> = prepared
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        headers.extend(prepared.rendered.with_prefix(HEADER));
        let message = Outgoing {
            id: attempt.delivery_id,
            body: &prepared.body,
            content_type: prepared.content_type.as_deref(),
            headers,
            rendered: &prepared.rendered,
        };
        let result = tokio::time::timeout(attempt.timeout, self.publish(&message, attempt.timeout))
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Retryable(format!(
                    "no confirmation from {} within {}",
                    self.broker.name(),
                    humantime::format_duration(attempt.timeout)
                )))
            });
        let (outcome, error, excerpt) = match result {
            Ok(confirmation) => (AttemptOutcome::Delivered, None, confirmation.into_bytes()),
            Err(Failure::Retryable(error)) => (
                AttemptOutcome::Retryable { retry_after: None },
                Some(scrub(error, self.password.as_deref())),
                Vec::new(),
            ),
            Err(Failure::Permanent(error)) => (
                AttemptOutcome::Permanent,
                Some(scrub(error, self.password.as_deref())),
                Vec::new(),
            ),
        };
        AttemptReport {
            outcome,
            status: None,
            error,
            headers: Vec::new(),
            body_excerpt: excerpt,
            latency: started.elapsed(),
        }
    }
}

/// The password of a broker URL, raw and percent-decoded, if it has one.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let password = parsed.password()?;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `text` with every occurrence of `password` (as written and percent-decoded) replaced, in
/// case a client library's error quotes the URL.
pub(crate) fn scrub(text: String, password: Option<&str>) -> String {
    let Some(password) = password else {
        return text;
    };
    let mut text = text.replace(password, "<redacted>");
    let decoded = url::form_urlencoded::parse(format!("p={password}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned());
    if let Some(decoded) = decoded
        && !decoded.is_empty()
    {
        text = text.replace(&decoded, "<redacted>");
    }
    text
}

/// The rendered value of template `name`, refused (permanently: the same message renders the
/// same way next time) when empty or longer than `max` bytes.
pub(crate) fn rendered<'a>(
    rendered: &'a Rendered,
    name: &str,
    allow_empty: bool,
    max: usize,
) -> Result<&'a str, Failure> {
    let value = rendered.get(name).unwrap_or_default();
    if value.is_empty() && !allow_empty {
        return Err(Failure::Permanent(format!("the {name} rendered empty")));
    }
    if value.len() > max {
        return Err(Failure::Permanent(format!(
            "the {name} rendered longer than {max} bytes"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_scrubbed_in_both_spellings() {
        let password = url_password("amqp://app:p%40ss@host/%2f");
        assert_eq!(password.as_deref(), Some("p%40ss"));
        let text = scrub(
            "failed amqp://app:p%40ss@host and p@ss".into(),
            password.as_deref(),
        );
        assert_eq!(text, "failed amqp://app:<redacted>@host and <redacted>");
        assert_eq!(url_password("redis://127.0.0.1:6379"), None);
    }

    #[test]
    fn templates_and_descriptions_hide_credentials() {
        let config: QueueDestination = serde_json::from_value(serde_json::json!({
            "id": "q", "broker": "rabbitmq", "url": "amqp://guest:hunter2@127.0.0.1:5672/%2f",
            "exchange": "events", "routing_key": "orders.{{ .type }}",
            "headers": {"event-type": "{{ .type }}"},
        }))
        .expect("valid");
        let queue = Queue::new(&config).expect("builds");
        assert!(
            !queue.describe().contains("hunter2"),
            "{}",
            queue.describe()
        );
        assert!(
            queue
                .describe()
                .contains("routing key `orders.{{ .type }}`")
        );
        let rendered = queue
            .templates()
            .render(&serde_json::json!({"type": "created"}))
            .expect("renders");
        assert_eq!(rendered.get("routing_key"), Some("orders.created"));
        assert_eq!(
            rendered.with_prefix(HEADER).collect::<Vec<_>>(),
            vec![("event-type", "created")]
        );
        let bad: QueueDestination = serde_json::from_value(serde_json::json!({
            "id": "q", "broker": "nats", "url": "nats://h", "subject": "a.{{ .type ",
        }))
        .expect("valid");
        let error = Queue::new(&bad).expect_err("refused");
        assert!(error.starts_with("subject: unclosed"), "{error}");
    }
}
