//! `[[routes]]`: which sources feed which destinations.

use serde::{Deserialize, Serialize};

/// `[[routes]]`: events from `source` go to `destination`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The route's id; defaults to `{source}-{destination}`.
    #[serde(default)]
    pub id: Option<String>,
    /// Source id.
    pub source: String,
    /// Destination id.
    pub destination: String,
    /// jq filter that must yield `true` for an event to be delivered (all events when absent).
    /// Its input is `{"body", "headers", "type", "source", "received_at"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// jq transform whose output is the delivered JSON body (the raw body when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// `false` pauses the route: events arriving meanwhile get no delivery through it (replay
    /// them later to send them).
    #[serde(
        default = "crate::config::enabled_by_default",
        skip_serializing_if = "crate::config::is_enabled"
    )]
    pub enabled: bool,
}

impl RouteConfig {
    /// The effective id.
    pub fn effective_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.source, self.destination))
    }
}
