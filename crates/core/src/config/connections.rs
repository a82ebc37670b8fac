//! `[connections]`: connections to third-party APIs (provider files, the OAuth2 callback, the
//! proxy's default policies).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// `[connections]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// A directory of provider files (`*.toml`, one provider each) that add providers to the
    /// built-in catalog or replace built-in ones with the same `id`.
    #[serde(default)]
    pub providers_dir: Option<PathBuf>,
    /// The URL browsers reach this server at (`https://switchboard.example.com`), used to build
    /// the OAuth2 redirect URI `<public_url>/oauth/callback` that providers send users back to.
    /// Defaults to `http://<server.listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Where to send the browser after a successful authorization (the connection id is added
    /// as `?connection_id=…`); by default a small success page is shown.
    #[serde(default)]
    pub success_redirect: Option<String>,
    /// Refresh an OAuth2 access token this long before it expires.
    #[serde(with = "duration::human")]
    pub refresh_margin: Duration,
    /// Time allowed for one upstream call (connection and whole response).
    #[serde(with = "duration::human")]
    pub timeout: Duration,
    /// Retries of a failed idempotent call (and of a POST with an `Idempotency-Key`).
    pub max_retries: u32,
    /// Most calls in flight per connection (a bulkhead); more wait for a slot.
    pub max_concurrent: usize,
    /// Consecutive failed calls (network errors, timeouts, 5xx) that open a connection's
    /// circuit; 0 disables the breaker.
    pub circuit_failures: u32,
    /// How long an open circuit refuses calls before one probe is let through.
    #[serde(with = "duration::human")]
    pub circuit_cooldown: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            providers_dir: None,
            public_url: None,
            success_redirect: None,
            refresh_margin: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            max_retries: 3,
            max_concurrent: 64,
            circuit_failures: 10,
            circuit_cooldown: Duration::from_secs(15),
        }
    }
}

impl ConnectionsConfig {
    /// Checks values (no I/O).
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("connections.timeout must be > 0".into());
        }
        if self.max_concurrent == 0 {
            return Err("connections.max_concurrent must be > 0".into());
        }
        if self.circuit_failures > 0 && self.circuit_cooldown.is_zero() {
            return Err("connections.circuit_cooldown must be > 0".into());
        }
        for (key, url) in [
            ("public_url", &self.public_url),
            ("success_redirect", &self.success_redirect),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!("connections.{key} must be an http(s) URL"));
            }
        }
        Ok(())
    }
}
