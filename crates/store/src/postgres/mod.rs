//! The PostgreSQL store, for several Switchboard nodes sharing one database.
//!
//! Behaviour is the SQLite adapter's, statement for statement where the dialects allow; the
//! same conformance suite runs against both. What differs is what several writers need:
//!
//! - claims lock their rows with `FOR UPDATE SKIP LOCKED`, so nodes claiming at once never hand
//!   out a delivery twice and never wait for each other;
//! - ingests use `INSERT … ON CONFLICT DO NOTHING`, which waits for a concurrent insert of the
//!   same dedup key to commit or roll back, so a duplicate is detected across nodes too;
//! - multi-statement write transactions that PostgreSQL aborts as a deadlock or serialization
//!   victim are retried a few times (the whole transaction rolled back first);
//! - migrations run under a session advisory lock, so nodes starting together apply each one
//!   exactly once;
//! - ordered claims stay ordered across nodes: deliveries of one ordering key are committed in
//!   `seq` order (see `writes::insert_deliveries`), and a claim skips what other nodes are
//!   claiming (see `writes::claim_due`);
//! - payload pruning and the writes that need a body (replay, resend) lock the event row, so
//!   a body is never removed under a delivery that was just made pending again.
//!
//! Batches are bound as arrays (`UNNEST`), one statement per chunk whatever its size.
//!
//! PostgreSQL `text` cannot hold NUL (U+0000), which SQLite stores happily; see `text`.

mod audit;
mod connections;
mod feed;
mod management;
mod migrate;
mod outbound;
mod overview;
mod reads;
mod syncs;
mod writes;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{Result, StoreError};

/// PostgreSQL-backed [`crate::Store`].
///
/// One pool serves reads and writes; PostgreSQL has no single-writer limit. Cloning is cheap
/// and shares the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`, every parameter
    /// sqlx's [`PgConnectOptions`] understands, e.g. `sslmode=require`) with a pool of at most
    /// `max_connections` (at least 1), and applies pending migrations.
    ///
    /// The tables live in the connection's current schema (normally `public`; another one can
    /// be chosen with `options=-csearch_path%3Dname`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("switchboard");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        if let Err(error) = migrate::run(&pool).await {
            pool.close().await;
            return Err(error);
        }
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for running statements.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool, for `crate::transfer`.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Whether PostgreSQL aborted a transaction only because of other transactions (deadlock
/// victim, serialization failure): running it again is safe and likely to succeed.
fn is_transient(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01" | "40001"))
        }
        _ => false,
    }
}

/// A caller-supplied string as PostgreSQL `text` will take it: every NUL (U+0000), which
/// `text` cannot hold, replaced by U+FFFD (the replacement character); other strings pass
/// through without a copy.
///
/// Binding a NUL fails the whole statement, and with it a group-committed batch of unrelated
/// events, so every string the adapter stores goes through here (ids, event types, dedup and
/// ordering keys, tenants, errors, header JSON, …), and so does every string it looks up, so
/// that what was stored is found again (a key with NUL and the same key with U+FFFD in its
/// place are therefore one key). Header lists are JSON, whose encoder already writes NUL as
/// the escape `\u0000`: they round-trip unchanged, as with SQLite.
fn text(value: &str) -> Cow<'_, str> {
    if value.contains('\0') {
        Cow::Owned(value.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// [`text`] for an optional string.
fn opt_text(value: Option<&str>) -> Option<Cow<'_, str>> {
    value.map(text)
}

/// How many times a transaction aborted by [`is_transient`] is run again.
const TRANSIENT_RETRIES: u32 = 4;

/// Evaluates `$attempt` (an awaited `Result`), again while it fails with a transient error.
macro_rules! retry_transient {
    ($what:literal, $attempt:expr) => {{
        let mut retries = 0;
        loop {
            match $attempt {
                Err(error) if super::is_transient(&error) && retries < super::TRANSIENT_RETRIES => {
                    retries += 1;
                    tracing::debug!(%error, retries, concat!("retrying ", $what));
                }
                result => break result,
            }
        }
    }};
}
use retry_transient;

#[async_trait::async_trait]
impl crate::Store for PgStore {
    async fn insert_events(&self, events: &[crate::NewEvent]) -> Result<Vec<crate::InsertOutcome>> {
        writes::insert_events(&self.pool, events).await
    }

    async fn record_rejections(
        &self,
        rejections: &[crate::Rejection],
        keep_per_source: u32,
    ) -> Result<()> {
        writes::record_rejections(&self.pool, rejections, keep_per_source).await
    }

    async fn list_rejections(&self, source: &str, limit: u32) -> Result<Vec<crate::Rejection>> {
        reads::list_rejections(&self.pool, source, limit).await
    }

    async fn claim_due(&self, claim: &crate::Claim<'_>) -> Result<Vec<crate::ClaimedDelivery>> {
        writes::claim_due(&self.pool, claim).await
    }

    async fn complete(&self, completions: &[crate::Completion]) -> Result<()> {
        writes::complete(&self.pool, completions).await
    }

    async fn release_leases(
        &self,
        owner: Option<&str>,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        writes::release_leases(&self.pool, owner, now).await
    }

    async fn replay(
        &self,
        selector: &crate::ReplaySelector,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        writes::replay(&self.pool, selector, now).await
    }

    async fn add_deliveries(
        &self,
        event_id: &str,
        deliveries: &[crate::NewDelivery],
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::add_deliveries(&self.pool, event_id, deliveries, now).await
    }

    async fn next_due_for(
        &self,
        destination: &str,
    ) -> Result<Option<switchboard_core::time::UnixMillis>> {
        outbound::next_due_for(&self.pool, destination).await
    }

    async fn list_holds(&self, destination: &str) -> Result<Vec<crate::HoldRecord>> {
        outbound::list_holds(&self.pool, destination).await
    }

    async fn release_hold(
        &self,
        destination: &str,
        ordering_key: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::release_hold(&self.pool, destination, ordering_key, now).await
    }

    async fn put_health(&self, records: &[crate::HealthRecord]) -> Result<()> {
        outbound::put_health(&self.pool, records).await
    }

    async fn list_health(&self) -> Result<Vec<crate::HealthRecord>> {
        outbound::list_health(&self.pool).await
    }

    async fn prune_payloads(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::prune_payloads(&self.pool, cutoff, limit, now).await
    }

    async fn schema_version(&self) -> Result<i64> {
        audit::schema_version(&self.pool).await
    }

    async fn list_nodes(&self) -> Result<Vec<crate::NodeRecord>> {
        audit::list_nodes(&self.pool).await
    }

    async fn prune_events(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
    ) -> Result<u64> {
        audit::prune_events(&self.pool, cutoff, limit).await
    }

    async fn prune_attempts(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
    ) -> Result<u64> {
        audit::prune_attempts(&self.pool, cutoff, limit).await
    }

    async fn record_audit(&self, record: &crate::AuditRecord) -> Result<()> {
        audit::record_audit(&self.pool, record).await
    }

    async fn list_audit(&self, filter: &crate::AuditFilter) -> Result<Vec<crate::AuditRecord>> {
        audit::list_audit(&self.pool, filter).await
    }

    async fn prune_audit(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
    ) -> Result<u64> {
        audit::prune_audit(&self.pool, cutoff, limit).await
    }

    async fn list_events(&self, filter: &crate::EventFilter) -> Result<Vec<crate::EventRecord>> {
        reads::list_events(&self.pool, filter).await
    }

    async fn search_events(
        &self,
        filter: &crate::EventFilter,
        scan: u32,
    ) -> Result<crate::EventSearch> {
        reads::search_events(&self.pool, filter, scan).await
    }

    async fn event_histogram(&self, buckets: &crate::Buckets) -> Result<Vec<crate::BucketCount>> {
        reads::event_histogram(&self.pool, buckets).await
    }

    async fn attempt_histogram(&self, buckets: &crate::Buckets) -> Result<Vec<crate::BucketCount>> {
        reads::attempt_histogram(&self.pool, buckets).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<crate::EventRecord>> {
        reads::get_event(&self.pool, id).await
    }

    async fn list_deliveries(
        &self,
        filter: &crate::DeliveryFilter,
    ) -> Result<Vec<crate::DeliveryRecord>> {
        reads::list_deliveries(&self.pool, filter).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<crate::DeliveryRecord>> {
        reads::get_delivery(&self.pool, id).await
    }

    async fn list_attempts(
        &self,
        event_id: Option<&str>,
        delivery_id: Option<&str>,
    ) -> Result<Vec<crate::AttemptRecord>> {
        reads::list_attempts(&self.pool, event_id, delivery_id).await
    }

    async fn delivery_counts(&self) -> Result<Vec<(switchboard_core::DeliveryStatus, u64)>> {
        reads::delivery_counts(&self.pool).await
    }

    async fn next_due_at(&self) -> Result<Option<switchboard_core::time::UnixMillis>> {
        reads::next_due_at(&self.pool).await
    }

    async fn put_resource(&self, record: &crate::ResourceRecord, create_only: bool) -> Result<()> {
        management::put_resource(&self.pool, record, create_only).await
    }

    async fn list_resources(&self) -> Result<Vec<crate::ResourceRecord>> {
        management::list_resources(&self.pool).await
    }

    async fn delete_resource(&self, kind: &str, id: &str) -> Result<bool> {
        management::delete_resource(&self.pool, kind, id).await
    }

    async fn create_token(&self, token: &crate::TokenRecord) -> Result<()> {
        management::create_token(&self.pool, token).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<crate::TokenRecord>> {
        management::token_by_hash(&self.pool, hash).await
    }

    async fn list_tokens(&self) -> Result<Vec<crate::TokenRecord>> {
        management::list_tokens(&self.pool).await
    }

    async fn revoke_token(
        &self,
        id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<bool> {
        management::revoke_token(&self.pool, id, now).await
    }

    async fn record_sign_out(
        &self,
        session_id: &str,
        expires_at: switchboard_core::time::UnixMillis,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<()> {
        management::record_sign_out(&self.pool, session_id, expires_at, now).await
    }

    async fn is_signed_out(
        &self,
        session_id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<bool> {
        management::is_signed_out(&self.pool, session_id, now).await
    }

    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<crate::IdempotencyState> {
        management::idempotency_begin(&self.pool, scope, key, request_hash, now).await
    }

    async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        response: &[u8],
    ) -> Result<()> {
        management::idempotency_finish(&self.pool, scope, key, status, response).await
    }

    async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()> {
        management::idempotency_abandon(&self.pool, scope, key).await
    }

    async fn cancel_pending(
        &self,
        destination: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::cancel_pending(&self.pool, destination, now).await
    }

    async fn heartbeat(
        &self,
        node: &str,
        now: switchboard_core::time::UnixMillis,
        ttl_ms: i64,
    ) -> Result<u32> {
        outbound::heartbeat(&self.pool, node, now, ttl_ms).await
    }

    async fn leave(&self, node: &str) -> Result<()> {
        outbound::leave(&self.pool, node).await
    }

    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now: switchboard_core::time::UnixMillis,
        ttl_ms: i64,
    ) -> Result<bool> {
        outbound::try_lease(&self.pool, name, owner, now, ttl_ms).await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        outbound::release_lease(&self.pool, name, owner).await
    }

    async fn put_connection(
        &self,
        record: &crate::ConnectionRecord,
        create_only: bool,
    ) -> Result<()> {
        connections::put(&self.pool, record, create_only).await
    }

    async fn get_connection(&self, id: &str) -> Result<Option<crate::ConnectionRecord>> {
        connections::get(&self.pool, id).await
    }

    async fn list_connections(&self) -> Result<Vec<crate::ConnectionRecord>> {
        connections::list(&self.pool).await
    }

    async fn delete_connection(&self, id: &str) -> Result<bool> {
        connections::delete(&self.pool, id).await
    }

    async fn update_connection_tokens(&self, update: &crate::TokenUpdate) -> Result<bool> {
        connections::update_tokens(&self.pool, update).await
    }

    async fn update_connection_config(&self, update: &crate::ConfigUpdate) -> Result<bool> {
        let done = sqlx::query("UPDATE connections SET params = $1, settings = $2, scopes = $3, credentials = $4, updated_at = $5 WHERE id = $6 AND version = $7")
            .bind(&update.params)
            .bind(&update.settings)
            .bind(&update.scopes)
            .bind(&update.credentials)
            .bind(update.updated_at)
            .bind(&update.id)
            .bind(update.expected_version)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_oauth_state(&self, record: &crate::OAuthStateRecord) -> Result<()> {
        connections::put_state(&self.pool, record).await
    }

    async fn take_oauth_state(
        &self,
        state_hash: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<Option<crate::OAuthStateRecord>> {
        connections::take_state(&self.pool, state_hash, now).await
    }

    async fn feed_after(
        &self,
        after: &crate::FeedCursor,
        filter: &crate::FeedFilter,
        limit: u32,
    ) -> Result<crate::FeedPage> {
        feed::after(&self.pool, after, filter, limit).await
    }

    async fn feed_head(&self) -> Result<crate::FeedCursor> {
        feed::head(&self.pool).await
    }

    async fn overview(
        &self,
        sources: &[String],
        now: switchboard_core::time::UnixMillis,
        node_ttl_ms: i64,
    ) -> Result<crate::Overview> {
        overview::overview(&self.pool, sources, now, node_ttl_ms).await
    }

    async fn sealed_values(
        &self,
        column: crate::SealedColumn,
        after: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<crate::SealedValue>> {
        use sqlx::Row as _;
        let (_, _, keys) = column.layout();
        if after.is_some_and(|a| a.len() != keys.len()) {
            return Err(crate::StoreError::Corrupt(format!(
                "a cursor of {} needs {} key parts",
                column.name(),
                keys.len()
            )));
        }
        let sql = crate::sealed::select_sql(column, after.is_some(), true);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for part in after.unwrap_or_default() {
            query = query.bind(part.clone());
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row: &sqlx::postgres::PgRow| {
                let key = (0..keys.len())
                    .map(|i| row.try_get::<String, _>(i))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                Ok(crate::SealedValue {
                    column,
                    key,
                    sealed: row.try_get("sealed")?,
                })
            })
            .collect()
    }

    async fn replace_sealed(&self, value: &crate::SealedValue, resealed: &[u8]) -> Result<bool> {
        let sql = crate::sealed::update_sql(value.column, true);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(resealed.to_vec());
        for part in &value.key {
            query = query.bind(part.clone());
        }
        let done = query.bind(value.sealed.clone()).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
    async fn sync_start_run(&self, run: &crate::SyncRunRecord) -> Result<()> {
        syncs::start_run(&self.pool, run).await
    }

    async fn sync_open_run(&self, sync_id: &str) -> Result<Option<crate::SyncRunRecord>> {
        syncs::open_run(&self.pool, sync_id).await
    }

    async fn sync_resume_run(
        &self,
        run_id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<()> {
        syncs::resume_run(&self.pool, run_id, now).await
    }

    async fn sync_hashes(&self, sync_id: &str, keys: &[String]) -> Result<Vec<(String, String)>> {
        syncs::hashes(&self.pool, sync_id, keys).await
    }

    async fn sync_checkpoint(&self, checkpoint: &crate::SyncCheckpoint) -> Result<bool> {
        syncs::checkpoint(&self.pool, checkpoint).await
    }

    async fn sync_unseen(&self, sync_id: &str, run_id: &str, limit: u32) -> Result<Vec<String>> {
        syncs::unseen(&self.pool, sync_id, run_id, limit).await
    }

    async fn sync_finish_run(&self, finish: &crate::SyncFinish) -> Result<()> {
        syncs::finish_run(&self.pool, finish).await
    }

    async fn sync_cursor(&self, sync_id: &str) -> Result<Option<String>> {
        syncs::cursor(&self.pool, sync_id).await
    }

    async fn list_sync_runs(
        &self,
        sync_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<crate::SyncRunRecord>> {
        syncs::list_runs(&self.pool, sync_id, before, limit).await
    }

    async fn get_sync_run(&self, run_id: &str) -> Result<Option<crate::SyncRunRecord>> {
        syncs::get_run(&self.pool, run_id).await
    }

    async fn sync_request_cancel(
        &self,
        sync_id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<Option<String>> {
        syncs::request_cancel(&self.pool, sync_id, now).await
    }
    async fn sync_put_conflicts(
        &self,
        sync_id: &str,
        conflicts: &[crate::SyncConflict],
        resolved: &[String],
    ) -> Result<()> {
        syncs::put_conflicts(&self.pool, sync_id, conflicts, resolved).await
    }

    async fn get_sync_conflict(
        &self,
        sync_id: &str,
        record_key: &str,
    ) -> Result<Option<crate::SyncConflict>> {
        syncs::get_conflict(&self.pool, sync_id, record_key).await
    }

    async fn sync_resolve_conflict(
        &self,
        sync_id: &str,
        record_key: &str,
        base: Option<&str>,
    ) -> Result<bool> {
        syncs::resolve_conflict(&self.pool, sync_id, record_key, base).await
    }

    async fn list_sync_conflicts(
        &self,
        sync_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<crate::SyncConflict>> {
        syncs::list_conflicts(&self.pool, sync_id, after, limit).await
    }
}
