//! `[[destinations]]`: where events go. One file per kind beside this one; adding a kind means a
//! struct implementing [`DestinationKind`] in its own file, a variant of [`DestinationConfig`]
//! and an arm in [`DestinationConfig::as_kind`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

mod http;
mod queue;
mod slack;
mod teams;

pub use http::HttpDestination;
pub use queue::{QueueBroker, QueueDestination};
pub use slack::{SLACK_API, SlackDestination};
pub use teams::TeamsDestination;

/// `[[destinations]]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationConfig {
    /// An HTTP endpoint, signed with Standard Webhooks.
    Http(HttpDestination),
    /// A Slack channel: incoming webhook, or a bot token with `chat.postMessage`.
    Slack(SlackDestination),
    /// A Microsoft Teams channel through an incoming webhook (Adaptive Card).
    Teams(TeamsDestination),
    /// A message broker: NATS JetStream, RabbitMQ or Redis Streams.
    Queue(QueueDestination),
}

/// What every destination kind provides to the worker and to validation.
pub trait DestinationKind {
    /// The destination's id.
    fn id(&self) -> &str;
    /// Timeout, retries, limits and ordering.
    fn policy(&self) -> DeliveryPolicy<'_>;
    /// Checks the kind-specific settings (URLs, credentials) without any I/O.
    fn validate(&self) -> Result<(), String>;
}

/// The delivery policy every destination kind has.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy<'a> {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: &'a RetryPolicy,
    /// In-flight cap.
    pub max_in_flight: Option<usize>,
    /// Deliveries per second at most.
    pub rate_limit: Option<f64>,
    /// FIFO delivery.
    pub ordered: bool,
}

impl DestinationConfig {
    /// The kind's settings behind the common interface.
    pub fn as_kind(&self) -> &dyn DestinationKind {
        match self {
            Self::Http(d) => d,
            Self::Slack(d) => d,
            Self::Teams(d) => d,
            Self::Queue(d) => d,
        }
    }

    /// The destination's id.
    pub fn id(&self) -> &str {
        self.as_kind().id()
    }

    /// The `kind` name, as written in configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Slack(_) => "slack",
            Self::Teams(_) => "teams",
            Self::Queue(_) => "queue",
        }
    }

    /// Timeout, retries, limits and ordering.
    pub fn policy(&self) -> DeliveryPolicy<'_> {
        self.as_kind().policy()
    }

    /// Checks the kind-specific settings (URLs, credentials).
    pub fn validate_kind(&self) -> Result<(), String> {
        self.as_kind().validate()
    }
}

/// Checks that `url` is an `http://` or `https://` URL; `what` names the setting in the error.
pub fn http_url(what: &str, url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{what} must start with http:// or https://"))
    }
}

/// The default per-attempt timeout.
pub fn default_timeout() -> Duration {
    Duration::from_secs(15)
}
