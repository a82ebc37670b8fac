//! `kind = "teams"`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DestinationKind, default_timeout, http_url};
use crate::duration;
use crate::retry::RetryPolicy;

/// A Microsoft Teams destination (incoming webhook or Workflows URL). A delivered body that is
/// already a Teams message (`{"type": "message", …}`) or an Adaptive Card
/// (`{"type": "AdaptiveCard", …}`) is sent as such; `{"text": …}` or any other body becomes a
/// card with that text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsDestination {
    /// The destination's id.
    pub id: String,
    /// The webhook URL (it is a secret).
    pub webhook_url: String,
    /// Per-attempt timeout.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Messages per second at most.
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

impl DestinationKind for TeamsDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        http_url("webhook_url", &self.webhook_url)
    }
}
