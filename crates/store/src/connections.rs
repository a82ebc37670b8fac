//! Stored connections to third-party APIs and pending OAuth2 flows.
//!
//! The store never sees a secret in clear: `credentials` and `tokens` are sealed by the server's
//! vault before they get here. Token updates go through
//! [`crate::Store::update_connection_tokens`], a compare-and-swap on `version`, so that of
//! several refreshes racing (tasks or nodes) exactly one lands per version.

use switchboard_core::time::UnixMillis;

/// A connection as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// Connection id.
    pub id: String,
    /// Provider id (`github`).
    pub provider: String,
    /// Auth mode (`oauth2`, `oauth2_client_credentials`, `api_key`, `basic`, `bearer`).
    pub auth_mode: String,
    /// URL parameters as a JSON object (not secret).
    pub params: String,
    /// Per-connection overrides (pacing, timeout, concurrency) as a JSON object.
    pub settings: String,
    /// `pending`, `active` or `needs_reauth`.
    pub status: String,
    /// Space-separated scopes (granted, or requested while pending).
    pub scopes: String,
    /// Sealed JSON of the static credentials (client secret, API key, password…).
    pub credentials: Option<Vec<u8>>,
    /// Sealed JSON of the tokens (access, refresh, kept token fields).
    pub tokens: Option<Vec<u8>>,
    /// When the access token expires.
    pub expires_at: Option<UnixMillis>,
    /// Bumped by every token update.
    pub version: i64,
    /// Why the last refresh or call failed, if it did.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// A token update, applied only if the stored `version` is still `expected_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUpdate {
    /// Connection id.
    pub id: String,
    /// The version the update was computed from.
    pub expected_version: i64,
    /// New status.
    pub status: String,
    /// New sealed tokens (`None` keeps the stored ones).
    pub tokens: Option<Vec<u8>>,
    /// New expiry (written as given, `None` clears it) — only when `tokens` is set.
    pub expires_at: Option<UnixMillis>,
    /// New scopes (`None` keeps the stored ones).
    pub scopes: Option<String>,
    /// New last error (written as given).
    pub last_error: Option<String>,
    /// When.
    pub updated_at: UnixMillis,
}

/// A pending authorization-code flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthStateRecord {
    /// Hex SHA-256 of the `state` parameter (the state itself is never stored).
    pub state_hash: String,
    /// The connection the flow completes.
    pub connection_id: String,
    /// Sealed JSON: PKCE verifier and redirect URI.
    pub sealed: Vec<u8>,
    /// After this the state is refused.
    pub expires_at: UnixMillis,
    /// Started.
    pub created_at: UnixMillis,
}

/// A change of a connection's configuration ([`crate::Store::update_connection_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigUpdate {
    /// Connection id.
    pub id: String,
    /// Applied only while the row is at this version (no token update since it was read).
    pub expected_version: i64,
    /// URL parameters (JSON object).
    pub params: String,
    /// Overrides (JSON object).
    pub settings: String,
    /// Space-separated scopes.
    pub scopes: String,
    /// Sealed credentials.
    pub credentials: Option<Vec<u8>>,
    /// When.
    pub updated_at: UnixMillis,
}
