//! Outbound webhooks as a product: tenants (our users' customers), their endpoints, and the
//! event-type catalog. These specs are what the management API stores (sealed) and what the
//! runtime builds endpoints from; the rules for which endpoint receives which message live here
//! so they are written once and unit-tested.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::ids::is_valid_resource_id;
use crate::retry::RetryPolicy;
use crate::time::UnixMillis;

/// The built-in source of operational events (`endpoint.disabled`, `delivery.exhausted`, …).
/// Routes may use it like any source; it has no ingest URL.
pub const OPERATIONS_SOURCE: &str = "switchboard";

/// The built-in source of events published for tenants through the API.
pub const PUBLISH_SOURCE: &str = "api";

/// The route id recorded on deliveries created by publishing to a tenant.
pub const PUBLISH_ROUTE: &str = "publish";

/// Whether `id` names a built-in source (not usable as a configured source id).
pub fn is_builtin_source(id: &str) -> bool {
    id == OPERATIONS_SOURCE || id == PUBLISH_SOURCE
}

/// Default grace period during which a rotated-out secret still signs.
pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A tenant: one of our user's customers, owning endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// Tenant id (letters, digits, `-`, `_`; chosen by the user, e.g. their customer id).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free-form labels.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A secret that still signs until `expires_at` (after a rotation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiringSecret {
    /// `whsec_…`
    pub secret: String,
    /// Unix ms after which it no longer signs.
    pub expires_at: UnixMillis,
}

/// An endpoint: a tenant's URL that receives the tenant's messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// `ep_…`, unique across tenants (it is also the endpoint's destination id).
    pub id: String,
    /// Owning tenant.
    pub tenant: String,
    /// Where to POST.
    pub url: String,
    /// Human description.
    #[serde(default)]
    pub description: String,
    /// Event types it receives; empty means all.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Channels it listens on; empty means every message regardless of channel.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Whether it receives messages.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Why it was disabled, when Switchboard disabled it.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deliveries per second at most.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Current signing secret (`whsec_…`).
    pub secret: String,
    /// Rotated-out secrets that still sign during their grace period.
    #[serde(default)]
    pub previous_secrets: Vec<ExpiringSecret>,
    /// FIFO delivery per ordering key (or per endpoint when messages carry no key).
    #[serde(default)]
    pub ordered: bool,
    /// jq transform applied to each message before it is signed and sent.
    #[serde(default)]
    pub transform: Option<String>,
    /// Per-attempt timeout.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

impl EndpointSpec {
    /// Whether a message of `event_type` on `channels` goes to this endpoint (enabled or not).
    pub fn subscribes(&self, event_type: &str, channels: &[String]) -> bool {
        let type_ok =
            self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type);
        let channel_ok =
            self.channels.is_empty() || channels.iter().any(|c| self.channels.contains(c));
        type_ok && channel_ok
    }

    /// The secrets that sign at `now`: the current one, then unexpired previous ones.
    pub fn signing_secrets(&self, now: UnixMillis) -> impl Iterator<Item = &str> {
        std::iter::once(self.secret.as_str()).chain(
            self.previous_secrets
                .iter()
                .filter(move |s| s.expires_at > now)
                .map(|s| s.secret.as_str()),
        )
    }

    /// Checks what can be checked without I/O (the URL's shape, limits, names).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err("url must start with http:// or https://".into());
        }
        if !self.secret.starts_with("whsec_") {
            return Err("secret must be a `whsec_…` Standard Webhooks secret".into());
        }
        if let Some(rate) = self.rate_limit
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err("rate_limit must be a positive number of deliveries per second".into());
        }
        if self.timeout.is_zero() {
            return Err("timeout must be > 0".into());
        }
        if self.max_in_flight == Some(0) {
            return Err("max_in_flight must be ≥ 1".into());
        }
        for name in self.event_types.iter().chain(&self.channels) {
            if name.is_empty() || name.len() > 128 {
                return Err("event types and channels must be 1-128 characters".into());
            }
        }
        self.retry.validate()
    }
}

/// An entry of the event-type catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTypeSpec {
    /// Name, e.g. `invoice.paid`.
    pub name: String,
    /// What it means.
    #[serde(default)]
    pub description: String,
    /// JSON Schema that published payloads must satisfy.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
}

/// Whether `name` is acceptable as an event type: 1-128 characters of letters, digits and
/// `. _ - :`.
pub fn is_valid_event_type(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Whether `id` is acceptable as a tenant id.
pub fn is_valid_tenant_id(id: &str) -> bool {
    is_valid_resource_id(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(types: &[&str], channels: &[&str]) -> EndpointSpec {
        EndpointSpec {
            id: "ep_1".into(),
            tenant: "acme".into(),
            url: "https://example.com/hook".into(),
            description: String::new(),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            channels: channels.iter().map(|s| s.to_string()).collect(),
            enabled: true,
            disabled_reason: None,
            headers: BTreeMap::new(),
            rate_limit: None,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            previous_secrets: vec![],
            ordered: false,
            transform: None,
            timeout: default_timeout(),
            retry: RetryPolicy::default(),
            max_in_flight: None,
        }
    }

    #[test]
    fn subscription_rules() {
        let all = endpoint(&[], &[]);
        assert!(all.subscribes("invoice.paid", &[]));
        assert!(all.subscribes("invoice.paid", &["eu".into()]));
        let typed = endpoint(&["invoice.paid"], &[]);
        assert!(typed.subscribes("invoice.paid", &[]));
        assert!(!typed.subscribes("invoice.created", &[]));
        let channel = endpoint(&[], &["eu"]);
        assert!(channel.subscribes("x", &["us".into(), "eu".into()]));
        assert!(!channel.subscribes("x", &["us".into()]));
        assert!(
            !channel.subscribes("x", &[]),
            "a channel endpoint needs a matching channel"
        );
    }

    #[test]
    fn signing_secrets_drop_expired_ones() {
        let mut e = endpoint(&[], &[]);
        e.previous_secrets = vec![
            ExpiringSecret {
                secret: "whsec_old".into(),
                expires_at: 1_000,
            },
            ExpiringSecret {
                secret: "whsec_older".into(),
                expires_at: 500,
            },
        ];
        let at = |now| {
            e.signing_secrets(now)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            at(400),
            vec![e.secret.clone(), "whsec_old".into(), "whsec_older".into()]
        );
        assert_eq!(at(800), vec![e.secret.clone(), "whsec_old".into()]);
        assert_eq!(at(1_000), vec![e.secret.clone()]);
    }

    #[test]
    fn validation() {
        assert!(endpoint(&[], &[]).validate().is_ok());
        let mut e = endpoint(&[], &[]);
        e.url = "ftp://x".into();
        assert!(e.validate().is_err());
        let mut e = endpoint(&[], &[]);
        e.rate_limit = Some(0.0);
        assert!(e.validate().is_err());
        assert!(is_valid_event_type("invoice.paid"));
        assert!(!is_valid_event_type("invoice paid"));
    }
}
