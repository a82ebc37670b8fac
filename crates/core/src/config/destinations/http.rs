//! `kind = "http"`: signed webhooks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DestinationKind, default_timeout, http_url};
use crate::duration;
use crate::retry::RetryPolicy;

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
    /// Deliveries per second at most (throttling); unlimited when absent.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Deliver in order: each delivery waits until the ones before it succeeded (or their hold
    /// was released).
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

impl DestinationKind for HttpDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        http_url("url", &self.url)
    }
}
