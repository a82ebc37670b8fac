//! `[[destinations]]`: where events go. One file per kind beside this one; adding a kind means a
//! struct implementing [`DestinationKind`] in its own file, a variant of [`DestinationConfig`]
//! and an arm in [`DestinationConfig::as_kind`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// The `id` and `policy` of a [`DestinationKind`] whose struct has the common fields (`id`,
/// `timeout`, `retry`, `max_in_flight`, `rate_limit`, `ordered`, `enabled`): every kind so far.
macro_rules! common_destination_fields {
    () => {
        fn id(&self) -> &str {
            &self.id
        }

        fn policy(&self) -> $crate::config::DeliveryPolicy<'_> {
            $crate::config::DeliveryPolicy {
                timeout: self.timeout,
                retry: &self.retry,
                max_in_flight: self.max_in_flight,
                rate_limit: self.rate_limit,
                ordered: self.ordered,
                enabled: self.enabled,
            }
        }
    };
}

mod api;
mod email;
mod http;
mod postgres;
mod queue;
mod s3;
mod slack;
mod sms;
mod teams;

pub use api::{API_METHODS, ApiDestination};
pub use email::{EmailDestination, EmailProvider, SENDGRID_API, SmtpTls, is_loopback_host};
pub use http::HttpDestination;
pub use postgres::{OnConflict, PostgresDestination, is_sql_identifier, split_table_name};
pub use queue::{QueueBroker, QueueDestination};
pub use s3::{S3_DEFAULT_KEY, S3_UPLOAD_MARGIN, S3Destination, S3Format, is_bucket_name};
pub use slack::{SLACK_API, SlackDestination};
pub use sms::{SmsDestination, SmsProvider, TWILIO_API};
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
    /// Rows in a PostgreSQL table (insert or upsert).
    Postgres(PostgresDestination),
    /// Objects in an S3-compatible store (one per event, or gzip JSON Lines batches).
    S3(S3Destination),
    /// E-mail through SMTP or SendGrid.
    Email(EmailDestination),
    /// Text messages through Twilio.
    Sms(SmsDestination),
    /// A message broker: NATS JetStream, RabbitMQ or Redis Streams.
    Queue(QueueDestination),
    /// A call to a provider's API through a connection.
    Api(ApiDestination),
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
    /// Whether deliveries are sent (a disabled destination keeps them pending).
    pub enabled: bool,
}

impl DestinationConfig {
    /// The kind's settings behind the common interface.
    pub fn as_kind(&self) -> &dyn DestinationKind {
        match self {
            Self::Http(d) => d,
            Self::Slack(d) => d,
            Self::Teams(d) => d,
            Self::Postgres(d) => d,
            Self::S3(d) => d,
            Self::Email(d) => d,
            Self::Sms(d) => d,
            Self::Queue(d) => d,
            Self::Api(d) => d,
        }
    }

    /// The destination's id.
    pub fn id(&self) -> &str {
        self.as_kind().id()
    }

    /// The `kind` name, as written in configuration.
    pub fn kind(&self) -> &'static str {
        // Keep `KINDS` in step.
        match self {
            Self::Http(_) => "http",
            Self::Slack(_) => "slack",
            Self::Teams(_) => "teams",
            Self::Postgres(_) => "postgres",
            Self::S3(_) => "s3",
            Self::Email(_) => "email",
            Self::Sms(_) => "sms",
            Self::Queue(_) => "queue",
            Self::Api(_) => "api",
        }
    }

    /// Every `kind` name.
    pub const KINDS: &'static [&'static str] = &[
        "http", "slack", "teams", "postgres", "s3", "email", "sms", "queue", "api",
    ];

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every listed kind name is a variant, and every variant's name is listed.
    #[test]
    fn kinds_are_listed() {
        for kind in DestinationConfig::KINDS {
            if let Err(error) = serde_json::from_value::<DestinationConfig>(
                serde_json::json!({"kind": kind, "id": "x"}),
            ) {
                let error = error.to_string();
                assert!(!error.contains("unknown variant"), "{kind}: {error}");
            }
        }
        let error = serde_json::from_value::<DestinationConfig>(serde_json::json!({"kind": "?"}))
            .expect_err("unknown")
            .to_string();
        let expected = error
            .split("expected one of ")
            .nth(1)
            .expect("serde lists the variants");
        for kind in DestinationConfig::KINDS {
            assert!(
                expected.contains(&format!("`{kind}`")),
                "{kind} in {expected}"
            );
        }
        assert_eq!(
            expected.matches('`').count() / 2,
            DestinationConfig::KINDS.len(),
            "a variant is missing from KINDS: {expected}"
        );
    }
}
