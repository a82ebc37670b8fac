//! Switchboard's durable store.
//!
//! [`Store`] is the one interface the server uses; [`sqlite::SqliteStore`] is the embedded
//! default, [`postgres::PgStore`] the shared database of several nodes. Every write that
//! acknowledges something to a client (an ingest, a replay) is one transaction; work is claimed
//! in bounded batches under a lease so that a backlog of any size never has to fit in memory.

pub mod audit;
pub mod connections;
pub mod feed;
pub mod model;
pub mod postgres;
pub mod rotation;
pub mod sealed;
pub mod sqlite;
pub mod syncs;
pub mod transfer;
pub mod vault;

use async_trait::async_trait;
use switchboard_core::time::UnixMillis;

pub use audit::{AuditFilter, AuditRecord, NodeRecord};
pub use connections::{ConfigUpdate, ConnectionRecord, OAuthStateRecord, TokenUpdate};
pub use feed::{FeedAttempt, FeedCursor, FeedEntry, FeedFilter, FeedItem, FeedPage, FeedPos};
pub use model::*;
pub use sealed::{SealedColumn, SealedValue};
pub use sqlite::SCHEMA_LATEST;
pub use syncs::{SyncCheckpoint, SyncConflict, SyncCounts, SyncFinish, SyncRunRecord};

/// Errors from the store. Callers log them with context and answer `500`/`503`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or was unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored value could not be decoded.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A sealed secret could not be sealed or opened.
    #[error("vault: {0}")]
    Vault(String),
    /// A resource or key with this identity already exists.
    #[error("already exists")]
    Conflict,
    /// Creating the data directory or similar I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage interface. Implementations must make each method atomic.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores events and their deliveries in **one** transaction (group commit). An event whose
    /// `(source, dedup_key)` is already stored (or appears earlier in the same batch) is not
    /// stored and gets no deliveries; its outcome names the original. Outcomes are in input order.
    async fn insert_events(&self, events: &[NewEvent]) -> Result<Vec<InsertOutcome>>;

    /// Leases up to `limit` due deliveries (pending with `next_attempt_at <= now`), oldest
    /// first, skipping the `exclude` destinations (those already at their concurrency limit).
    async fn claim_due(&self, claim: &Claim<'_>) -> Result<Vec<ClaimedDelivery>>;

    /// [`Store::claim_due`] for several claims (normally one per destination), in one
    /// transaction where the backend allows; results are in the order of `claims`.
    async fn claim_many(&self, claims: &[Claim<'_>]) -> Result<Vec<Vec<ClaimedDelivery>>> {
        let mut out = Vec::with_capacity(claims.len());
        for claim in claims {
            out.push(self.claim_due(claim).await?);
        }
        Ok(out)
    }

    /// Records attempts and moves their deliveries on, in one transaction. A completion whose
    /// lease is no longer held by `lease_owner` still records its attempt but leaves the
    /// delivery alone (another worker owns it now).
    async fn complete(&self, completions: &[Completion]) -> Result<()>;

    /// Returns leased deliveries to `pending`: those of `owner` (graceful shutdown), or every
    /// expired lease when `owner` is `None`. Returns how many were released.
    async fn release_leases(&self, owner: Option<&str>, now: UnixMillis) -> Result<u64>;

    /// Re-queues deliveries for another full run of their retry policy. Returns how many.
    /// Deliveries whose event body was pruned are left alone (there is nothing to send).
    async fn replay(&self, selector: &ReplaySelector, now: UnixMillis) -> Result<u64>;

    /// Adds deliveries to a stored event (a resend to a destination it did not go to).
    /// Returns how many were added: 0 when the event does not exist or its body was pruned.
    async fn add_deliveries(
        &self,
        event_id: &str,
        deliveries: &[NewDelivery],
        now: UnixMillis,
    ) -> Result<u64>;

    /// Cancels the pending deliveries of a destination that was deleted. Returns how many.
    async fn cancel_pending(&self, destination: &str, now: UnixMillis) -> Result<u64>;

    /// Earliest `next_attempt_at` of a pending delivery of one destination.
    async fn next_due_for(&self, destination: &str) -> Result<Option<UnixMillis>>;

    /// Ordering keys of `destination` held back by a dead-lettered delivery, oldest first.
    async fn list_holds(&self, destination: &str) -> Result<Vec<HoldRecord>>;

    /// Releases the hold on `ordering_key`: its dead-lettered deliveries stop blocking the
    /// later ones (they stay `failed` and replayable). Returns how many were released.
    async fn release_hold(
        &self,
        destination: &str,
        ordering_key: &str,
        now: UnixMillis,
    ) -> Result<u64>;

    /// Inserts or replaces destination health records.
    async fn put_health(&self, records: &[HealthRecord]) -> Result<()>;

    /// All destination health records, by destination.
    async fn list_health(&self) -> Result<Vec<HealthRecord>>;

    /// Removes the bodies of up to `limit` events received before `cutoff` that have no
    /// pending or in-flight delivery. The events and their delivery history stay. Returns how
    /// many bodies were removed (call again while it returns `limit`).
    async fn prune_payloads(&self, cutoff: UnixMillis, limit: u32, now: UnixMillis) -> Result<u64>;

    /// Deletes up to `limit` whole events received before `cutoff`, with their deliveries and
    /// attempts, once none of their deliveries is pending, in flight or holding an ordering key
    /// (a dead letter whose hold was not released). Returns how many events were deleted (call
    /// again while it returns `limit`). Their dedup keys go with them.
    async fn prune_events(&self, cutoff: UnixMillis, limit: u32) -> Result<u64>;

    /// Deletes up to `limit` attempt records started before `cutoff` whose delivery is neither
    /// pending nor in flight. Returns how many were deleted.
    async fn prune_attempts(&self, cutoff: UnixMillis, limit: u32) -> Result<u64>;

    /// Appends one entry to the audit trail.
    async fn record_audit(&self, record: &AuditRecord) -> Result<()>;

    /// Lists audit entries, newest first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;

    /// Deletes up to `limit` audit entries recorded before `cutoff`, oldest first. Returns how
    /// many were deleted.
    async fn prune_audit(&self, cutoff: UnixMillis, limit: u32) -> Result<u64>;

    /// Lists events, newest first.
    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>>;

    /// [`Store::list_events`] with the work of a body search bounded: with
    /// [`EventFilter::body_contains`], only the newest `scan` events that the other filters let
    /// through (below `before_seq`) have their bodies examined, and [`EventSearch::scan_floor`]
    /// says where the next call continues when older ones are left. Every event is examined by
    /// some page, so paging finds matches anywhere in history. Without a body text it is
    /// [`Store::list_events`].
    async fn search_events(&self, filter: &EventFilter, scan: u32) -> Result<EventSearch>;

    /// Events received within `buckets`, counted per bucket and source by the database (an
    /// index range over `received_at`), so the counts are exact for any volume. Only non-zero
    /// counts, by bucket then source.
    async fn event_histogram(&self, buckets: &Buckets) -> Result<Vec<BucketCount>>;

    /// Attempts started within `buckets`, counted per bucket and outcome (`delivered`,
    /// `retryable`, `permanent`, `filtered`) by the database. Only non-zero counts, by bucket
    /// then outcome.
    async fn attempt_histogram(&self, buckets: &Buckets) -> Result<Vec<BucketCount>>;

    /// One event with its body, if it exists.
    async fn get_event(&self, id: &str) -> Result<Option<EventRecord>>;

    /// Lists deliveries, newest first.
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>>;

    /// One delivery, if it exists.
    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRecord>>;

    /// Attempts of an event's deliveries (or of one delivery), oldest first.
    async fn list_attempts(
        &self,
        event_id: Option<&str>,
        delivery_id: Option<&str>,
    ) -> Result<Vec<AttemptRecord>>;

    /// Number of deliveries per status (only statuses that have any).
    async fn delivery_counts(&self) -> Result<Vec<(switchboard_core::DeliveryStatus, u64)>>;

    /// Earliest `next_attempt_at` of a pending delivery, to know how long the worker may sleep.
    async fn next_due_at(&self) -> Result<Option<UnixMillis>>;

    /// Appends rejected requests, keeping only the newest `keep_per_source` per source.
    async fn record_rejections(&self, rejections: &[Rejection], keep_per_source: u32)
    -> Result<()>;

    /// The newest rejected requests of a source, newest first.
    async fn list_rejections(&self, source: &str, limit: u32) -> Result<Vec<Rejection>>;

    /// Inserts (`create_only`, failing with [`StoreError::Conflict`] if it exists) or replaces a
    /// sealed resource.
    async fn put_resource(&self, record: &ResourceRecord, create_only: bool) -> Result<()>;

    /// All sealed resources, by kind then id.
    async fn list_resources(&self) -> Result<Vec<ResourceRecord>>;

    /// Deletes a resource; returns whether it existed.
    async fn delete_resource(&self, kind: &str, id: &str) -> Result<bool>;

    /// Stores a new token.
    async fn create_token(&self, token: &TokenRecord) -> Result<()>;

    /// The token with this hash, revoked or not.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;

    /// All tokens, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;

    /// Revokes a token; returns whether an active token was revoked.
    async fn revoke_token(&self, id: &str, now: UnixMillis) -> Result<bool>;

    /// Records that the dashboard session `session_id` was signed out: it stays refused until
    /// `expires_at` (the session's own expiry, after which its cookie is refused anyway). Also
    /// deletes the entries that expired by `now`, so the table holds only live sign-outs.
    async fn record_sign_out(
        &self,
        session_id: &str,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<()>;

    /// Whether the dashboard session `session_id` was signed out (by any node) and its entry
    /// has not expired at `now`.
    async fn is_signed_out(&self, session_id: &str, now: UnixMillis) -> Result<bool>;

    /// Claims an idempotency key for a request, or reports what it holds.
    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: UnixMillis,
    ) -> Result<IdempotencyState>;

    /// Records the response for a started key.
    async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        response: &[u8],
    ) -> Result<()>;

    /// Forgets a started key (the request failed in a way worth retrying).
    async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()>;

    /// Records that `node` is alive at `now` and forgets nodes silent for more than ten times
    /// `ttl`; returns how many nodes (including this one) were seen within `ttl`.
    async fn heartbeat(&self, node: &str, now: UnixMillis, ttl_ms: i64) -> Result<u32>;

    /// Removes `node` (it is shutting down), so the others take over its share at once.
    async fn leave(&self, node: &str) -> Result<()>;

    /// Takes or renews the lease `name` for `owner` until `now + ttl_ms`; returns whether
    /// `owner` holds it afterwards. A lease held by another owner is taken only once expired,
    /// so of several nodes asking at once exactly one holds it.
    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now: UnixMillis,
        ttl_ms: i64,
    ) -> Result<bool>;

    /// Gives up the lease `name` if `owner` holds it, so another node may take it at once.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<()>;

    /// Inserts (`create_only`, failing with [`StoreError::Conflict`] if the id exists) or
    /// replaces a connection. Replacing keeps nothing of the old row (its version included).
    async fn put_connection(&self, record: &ConnectionRecord, create_only: bool) -> Result<()>;

    /// One connection, if it exists.
    async fn get_connection(&self, id: &str) -> Result<Option<ConnectionRecord>>;

    /// All connections, by id.
    async fn list_connections(&self) -> Result<Vec<ConnectionRecord>>;

    /// Deletes a connection (and its pending OAuth2 flows); returns whether it existed.
    async fn delete_connection(&self, id: &str) -> Result<bool>;

    /// Applies `update` if the connection's version is still `update.expected_version`, bumping
    /// it by one; returns whether it was applied (false: another refresh won, or it is gone).
    async fn update_connection_tokens(&self, update: &TokenUpdate) -> Result<bool>;

    /// Replaces a connection's parameters, settings, scopes and credentials if its version is
    /// still `update.expected_version`, without bumping it (a token refresh that read the same
    /// version still applies after it); returns whether it was applied.
    async fn update_connection_config(&self, update: &ConfigUpdate) -> Result<bool>;

    /// Records a pending authorization-code flow (and forgets expired ones).
    async fn put_oauth_state(&self, record: &OAuthStateRecord) -> Result<()>;

    /// Takes (deletes and returns) the flow with this state hash if it has not expired at
    /// `now`: a state is usable once.
    async fn take_oauth_state(
        &self,
        state_hash: &str,
        now: UnixMillis,
    ) -> Result<Option<OAuthStateRecord>>;

    /// Up to `limit` events and attempts committed after `after` that match `filter`, in
    /// commit order (an attempt after its event), each with the cursor that resumes after it.
    /// Reading page after page from any cursor yields every row exactly once, also while
    /// several nodes write (see [`feed`]).
    async fn feed_after(
        &self,
        after: &FeedCursor,
        filter: &FeedFilter,
        limit: u32,
    ) -> Result<FeedPage>;

    /// The cursor after everything committed so far: following from it shows what comes next.
    async fn feed_head(&self) -> Result<FeedCursor>;
    /// Up to `limit` sealed values of `column` whose row key comes after `after` (all from the
    /// start with `None`), in key order: key rotation walks them in batches.
    async fn sealed_values(
        &self,
        column: SealedColumn,
        after: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<SealedValue>>;

    /// Replaces `value` with `resealed` if the row still holds exactly `value.sealed`; `false`
    /// when the row changed or went away meanwhile.
    async fn replace_sealed(&self, value: &SealedValue, resealed: &[u8]) -> Result<bool>;
    /// The newest schema migration applied to the database.
    async fn schema_version(&self) -> Result<i64>;

    /// Nodes that heartbeat into the store (the silent ones are forgotten after a while), by id.
    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;

    /// Cheap liveness check of the database.
    async fn ping(&self) -> Result<()>;

    /// The health overview: the latest event of each of `sources`, the backlog per
    /// destination, the nodes seen since `now - node_ttl_ms` and the leases held at `now`.
    async fn overview(
        &self,
        sources: &[String],
        now: UnixMillis,
        node_ttl_ms: i64,
    ) -> Result<Overview>;
    /// Inserts a new sync run.
    async fn sync_start_run(&self, run: &SyncRunRecord) -> Result<()>;

    /// The newest run of `sync_id` that is `running` or `paused` (left by a crash or a limit),
    /// to resume.
    async fn sync_open_run(&self, sync_id: &str) -> Result<Option<SyncRunRecord>>;

    /// Marks a resumed run `running` again (clearing its finish time).
    async fn sync_resume_run(&self, run_id: &str, now: UnixMillis) -> Result<()>;

    /// The cached content hashes of those of `keys` the cache holds for `sync_id`.
    async fn sync_hashes(&self, sync_id: &str, keys: &[String]) -> Result<Vec<(String, String)>>;

    /// Writes one page's progress in one transaction: the seen records (upserted with the
    /// run as their last run), the removed keys, the run's counters and checkpoint. Returns
    /// whether a cancel of the run was asked for.
    async fn sync_checkpoint(&self, checkpoint: &SyncCheckpoint) -> Result<bool>;

    /// Up to `limit` cached keys of `sync_id` that run `run_id` did not see (deletes after a
    /// complete full listing), in key order.
    async fn sync_unseen(&self, sync_id: &str, run_id: &str, limit: u32) -> Result<Vec<String>>;

    /// Ends a run (with `cursor`, also keeps the sync's incremental cursor), in one
    /// transaction.
    async fn sync_finish_run(&self, finish: &SyncFinish) -> Result<()>;

    /// The incremental cursor kept by the last successful run of `sync_id`.
    async fn sync_cursor(&self, sync_id: &str) -> Result<Option<String>>;

    /// Runs of `sync_id`, newest first, started before `before` (a run id; `None` for the
    /// newest).
    async fn list_sync_runs(
        &self,
        sync_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SyncRunRecord>>;

    /// One run.
    async fn get_sync_run(&self, run_id: &str) -> Result<Option<SyncRunRecord>>;

    /// Asks the open run of `sync_id` to stop: a running run stops at its next page, a paused
    /// one is cancelled at once. Returns the run affected, if any.
    async fn sync_request_cancel(&self, sync_id: &str, now: UnixMillis) -> Result<Option<String>>;

    /// Parks (or refreshes) conflicts of a two-way sync, and drops the parked conflicts of
    /// `resolved` keys (they no longer differ on both sides).
    async fn sync_put_conflicts(
        &self,
        sync_id: &str,
        conflicts: &[SyncConflict],
        resolved: &[String],
    ) -> Result<()>;

    /// The parked conflict of `sync_id` for `record_key`, if there is one.
    async fn get_sync_conflict(
        &self,
        sync_id: &str,
        record_key: &str,
    ) -> Result<Option<SyncConflict>>;

    /// Resolves a parked conflict of a two-way sync: drops it and sets the records cache's
    /// agreed hash of `record_key` to `base` (`None`: forgets the key), so that the next run
    /// sees only the chosen side as changed and writes it to the other. Returns whether the
    /// conflict was parked.
    async fn sync_resolve_conflict(
        &self,
        sync_id: &str,
        record_key: &str,
        base: Option<&str>,
    ) -> Result<bool>;

    /// Parked conflicts of `sync_id`, in key order, after `after` (a key), at most `limit`.
    async fn list_sync_conflicts(
        &self,
        sync_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SyncConflict>>;
}
