//! `kind = "slack"`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DestinationKind, default_timeout, http_url};
use crate::duration;
use crate::retry::RetryPolicy;

/// Slack's Web API.
pub const SLACK_API: &str = "https://slack.com/api";

/// A Slack destination. The delivered body (usually a route transform's output) is the
/// message: `{"text": …}` or Block Kit `{"blocks": […]}`; a body that is not JSON is sent as
/// `{"text": <body>}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackDestination {
    /// The destination's id.
    pub id: String,
    /// Incoming-webhook URL (`https://hooks.slack.com/services/…`; it is a secret).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Bot token (`xoxb-…`) for `chat.postMessage`, with `channel`.
    #[serde(default)]
    pub token: Option<String>,
    /// Channel id or name for `chat.postMessage` (a `channel` in the body wins).
    #[serde(default)]
    pub channel: Option<String>,
    /// Web API base URL (default `https://slack.com/api`).
    #[serde(default)]
    pub api_base: Option<String>,
    /// Per-attempt timeout.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Messages per second at most (Slack allows about one per second per channel).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Post in order.
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

impl DestinationKind for SlackDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        match (&self.webhook_url, &self.token, &self.channel) {
            (Some(url), None, None) => http_url("webhook_url", url),
            (None, Some(token), Some(channel)) if !token.is_empty() && !channel.is_empty() => {
                http_url("api_base", self.api_base.as_deref().unwrap_or(SLACK_API))
            }
            _ => Err(
                "slack needs either webhook_url, or token and channel (chat.postMessage)".into(),
            ),
        }
    }
}
