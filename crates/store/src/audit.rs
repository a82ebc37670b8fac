//! Audit trail rows, and what `switchboard doctor` reads about the database itself.

use switchboard_core::time::UnixMillis;

/// One recorded management action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Arrival order, assigned by the store (ignored when recording).
    pub seq: i64,
    /// `aud_…` id.
    pub id: String,
    /// When the action completed.
    pub at: UnixMillis,
    /// Token id of the caller (`bootstrap` for the configured admin token).
    pub actor: String,
    /// `create`, `update`, `delete`, `revoke`, `replay`, `rotate-secret`, …
    pub action: String,
    /// `destination`, `source`, `route`, `token`, `endpoint`, …
    pub resource_kind: String,
    /// The resource's id, when the action concerns one.
    pub resource_id: Option<String>,
    /// HTTP method of the request.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Response status.
    pub status: u16,
    /// The request's correlation id.
    pub request_id: Option<String>,
    /// The resource before the action (JSON, secrets redacted).
    pub before: Option<String>,
    /// The resource after the action, or the action's result (JSON, secrets redacted).
    pub after: Option<String>,
}

/// What to list from the audit trail; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this caller's actions.
    pub actor: Option<String>,
    /// Only this resource kind.
    pub resource_kind: Option<String>,
    /// Only this resource id (with `resource_kind`).
    pub resource_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only actions at or after this time.
    pub since: Option<UnixMillis>,
    /// Continue below this `seq` (cursor).
    pub before_seq: Option<i64>,
    /// Most rows to return.
    pub limit: u32,
}

/// A node that heartbeats into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node id (the delivery worker's lease owner).
    pub id: String,
    /// When it started.
    pub started_at: UnixMillis,
    /// Its last heartbeat.
    pub last_seen: UnixMillis,
}
