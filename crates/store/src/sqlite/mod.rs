//! The embedded SQLite store (WAL mode).
//!
//! SQLite allows one writer at a time, so writes go through a pool of exactly one connection
//! (no `SQLITE_BUSY` storms) and reads through a separate pool. Throughput comes from batching:
//! the server's group committer hands [`Store::insert_events`] many events per transaction, and
//! multi-row statements keep the per-row cost low. One data directory belongs to one process.

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

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use switchboard_core::config::Durability;

use crate::Result;

pub(crate) use management::{IDEMPOTENCY_RETENTION_MS, IDEMPOTENCY_STALE_MS};

/// The newest schema version this build knows (the PostgreSQL adapter has the same).
pub const SCHEMA_LATEST: i64 = migrate::LATEST;

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "switchboard.db";

/// SQLite-backed [`crate::Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    durability: Durability,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/switchboard.db` and applies pending migrations.
    pub async fn open(data_dir: &Path, durability: Durability) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let base = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32768")
            .statement_cache_capacity(256);
        let writer = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        migrate::run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .idle_timeout(None)
            .max_lifetime(None)
            // Readers scan indexes for listings and counts; a smaller page cache per reader
            // keeps the resident size flat however large the backlog grows.
            .connect_with(base.read_only(true).pragma("cache_size", "-8192"))
            .await?;
        Ok(Self {
            writer,
            reader,
            durability,
        })
    }

    /// Closes both pools, waiting for running statements.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// The write pool (one connection) and the read-only pool, for `crate::transfer`.
    pub(crate) fn pools(&self) -> (&SqlitePool, &SqlitePool) {
        (&self.writer, &self.reader)
    }
}

#[async_trait::async_trait]
impl crate::Store for SqliteStore {
    async fn insert_events(&self, events: &[crate::NewEvent]) -> Result<Vec<crate::InsertOutcome>> {
        writes::insert_events(&self.writer, events).await
    }

    async fn record_rejections(
        &self,
        rejections: &[crate::Rejection],
        keep_per_source: u32,
    ) -> Result<()> {
        writes::record_rejections(&self.writer, rejections, keep_per_source).await
    }

    async fn list_rejections(&self, source: &str, limit: u32) -> Result<Vec<crate::Rejection>> {
        reads::list_rejections(&self.reader, source, limit).await
    }

    async fn claim_due(&self, claim: &crate::Claim<'_>) -> Result<Vec<crate::ClaimedDelivery>> {
        writes::claim_due(&self.writer, &self.reader, claim, self.durability).await
    }

    async fn claim_many(
        &self,
        claims: &[crate::Claim<'_>],
    ) -> Result<Vec<Vec<crate::ClaimedDelivery>>> {
        writes::claim_many(&self.writer, &self.reader, claims, self.durability).await
    }

    async fn complete(&self, completions: &[crate::Completion]) -> Result<()> {
        writes::complete(&self.writer, completions).await
    }

    async fn release_leases(
        &self,
        owner: Option<&str>,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        writes::release_leases(&self.writer, owner, now).await
    }

    async fn replay(
        &self,
        selector: &crate::ReplaySelector,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        writes::replay(&self.writer, selector, now).await
    }

    async fn add_deliveries(
        &self,
        event_id: &str,
        deliveries: &[crate::NewDelivery],
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::add_deliveries(&self.writer, event_id, deliveries, now).await
    }

    async fn next_due_for(
        &self,
        destination: &str,
    ) -> Result<Option<switchboard_core::time::UnixMillis>> {
        outbound::next_due_for(&self.reader, destination).await
    }

    async fn list_holds(&self, destination: &str) -> Result<Vec<crate::HoldRecord>> {
        outbound::list_holds(&self.reader, destination).await
    }

    async fn release_hold(
        &self,
        destination: &str,
        ordering_key: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::release_hold(&self.writer, destination, ordering_key, now).await
    }

    async fn put_health(&self, records: &[crate::HealthRecord]) -> Result<()> {
        outbound::put_health(&self.writer, records).await
    }

    async fn list_health(&self) -> Result<Vec<crate::HealthRecord>> {
        outbound::list_health(&self.reader).await
    }

    async fn prune_payloads(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::prune_payloads(&self.writer, cutoff, limit, now).await
    }

    async fn schema_version(&self) -> Result<i64> {
        audit::schema_version(&self.reader).await
    }

    async fn list_nodes(&self) -> Result<Vec<crate::NodeRecord>> {
        audit::list_nodes(&self.reader).await
    }

    async fn prune_events(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
    ) -> Result<u64> {
        audit::prune_events(&self.writer, cutoff, limit).await
    }

    async fn prune_attempts(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
    ) -> Result<u64> {
        audit::prune_attempts(&self.writer, cutoff, limit).await
    }

    async fn record_audit(&self, record: &crate::AuditRecord) -> Result<()> {
        audit::record_audit(&self.writer, record).await
    }

    async fn list_audit(&self, filter: &crate::AuditFilter) -> Result<Vec<crate::AuditRecord>> {
        audit::list_audit(&self.reader, filter).await
    }

    async fn prune_audit(
        &self,
        cutoff: switchboard_core::time::UnixMillis,
        limit: u32,
    ) -> Result<u64> {
        audit::prune_audit(&self.writer, cutoff, limit).await
    }

    async fn list_events(&self, filter: &crate::EventFilter) -> Result<Vec<crate::EventRecord>> {
        reads::list_events(&self.reader, filter).await
    }

    async fn search_events(
        &self,
        filter: &crate::EventFilter,
        scan: u32,
    ) -> Result<crate::EventSearch> {
        reads::search_events(&self.reader, filter, scan).await
    }

    async fn event_histogram(&self, buckets: &crate::Buckets) -> Result<Vec<crate::BucketCount>> {
        reads::event_histogram(&self.reader, buckets).await
    }

    async fn attempt_histogram(&self, buckets: &crate::Buckets) -> Result<Vec<crate::BucketCount>> {
        reads::attempt_histogram(&self.reader, buckets).await
    }

    async fn get_event(&self, id: &str) -> Result<Option<crate::EventRecord>> {
        reads::get_event(&self.reader, id).await
    }

    async fn list_deliveries(
        &self,
        filter: &crate::DeliveryFilter,
    ) -> Result<Vec<crate::DeliveryRecord>> {
        reads::list_deliveries(&self.reader, filter).await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<crate::DeliveryRecord>> {
        reads::get_delivery(&self.reader, id).await
    }

    async fn list_attempts(
        &self,
        event_id: Option<&str>,
        delivery_id: Option<&str>,
    ) -> Result<Vec<crate::AttemptRecord>> {
        reads::list_attempts(&self.reader, event_id, delivery_id).await
    }

    async fn delivery_counts(&self) -> Result<Vec<(switchboard_core::DeliveryStatus, u64)>> {
        reads::delivery_counts(&self.reader).await
    }

    async fn next_due_at(&self) -> Result<Option<switchboard_core::time::UnixMillis>> {
        reads::next_due_at(&self.reader).await
    }

    async fn put_resource(&self, record: &crate::ResourceRecord, create_only: bool) -> Result<()> {
        management::put_resource(&self.writer, record, create_only).await
    }

    async fn list_resources(&self) -> Result<Vec<crate::ResourceRecord>> {
        management::list_resources(&self.reader).await
    }

    async fn delete_resource(&self, kind: &str, id: &str) -> Result<bool> {
        management::delete_resource(&self.writer, kind, id).await
    }

    async fn create_token(&self, token: &crate::TokenRecord) -> Result<()> {
        management::create_token(&self.writer, token).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<crate::TokenRecord>> {
        management::token_by_hash(&self.reader, hash).await
    }

    async fn list_tokens(&self) -> Result<Vec<crate::TokenRecord>> {
        management::list_tokens(&self.reader).await
    }

    async fn revoke_token(
        &self,
        id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<bool> {
        management::revoke_token(&self.writer, id, now).await
    }

    async fn record_sign_out(
        &self,
        session_id: &str,
        expires_at: switchboard_core::time::UnixMillis,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<()> {
        management::record_sign_out(&self.writer, session_id, expires_at, now).await
    }

    async fn is_signed_out(
        &self,
        session_id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<bool> {
        management::is_signed_out(&self.reader, session_id, now).await
    }

    async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<crate::IdempotencyState> {
        management::idempotency_begin(&self.writer, scope, key, request_hash, now).await
    }

    async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        response: &[u8],
    ) -> Result<()> {
        management::idempotency_finish(&self.writer, scope, key, status, response).await
    }

    async fn idempotency_abandon(&self, scope: &str, key: &str) -> Result<()> {
        management::idempotency_abandon(&self.writer, scope, key).await
    }

    async fn cancel_pending(
        &self,
        destination: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<u64> {
        outbound::cancel_pending(&self.writer, destination, now).await
    }

    async fn heartbeat(
        &self,
        node: &str,
        now: switchboard_core::time::UnixMillis,
        ttl_ms: i64,
    ) -> Result<u32> {
        outbound::heartbeat(&self.writer, node, now, ttl_ms).await
    }

    async fn leave(&self, node: &str) -> Result<()> {
        outbound::leave(&self.writer, node).await
    }

    async fn try_lease(
        &self,
        name: &str,
        owner: &str,
        now: switchboard_core::time::UnixMillis,
        ttl_ms: i64,
    ) -> Result<bool> {
        outbound::try_lease(&self.writer, name, owner, now, ttl_ms).await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        outbound::release_lease(&self.writer, name, owner).await
    }

    async fn put_connection(
        &self,
        record: &crate::ConnectionRecord,
        create_only: bool,
    ) -> Result<()> {
        connections::put(&self.writer, record, create_only).await
    }

    async fn get_connection(&self, id: &str) -> Result<Option<crate::ConnectionRecord>> {
        connections::get(&self.writer, id).await
    }

    async fn list_connections(&self) -> Result<Vec<crate::ConnectionRecord>> {
        connections::list(&self.reader).await
    }

    async fn delete_connection(&self, id: &str) -> Result<bool> {
        connections::delete(&self.writer, id).await
    }

    async fn update_connection_tokens(&self, update: &crate::TokenUpdate) -> Result<bool> {
        connections::update_tokens(&self.writer, update).await
    }

    async fn update_connection_config(&self, update: &crate::ConfigUpdate) -> Result<bool> {
        let done = sqlx::query("UPDATE connections SET params = ?1, settings = ?2, scopes = ?3, credentials = ?4, updated_at = ?5 WHERE id = ?6 AND version = ?7")
            .bind(&update.params)
            .bind(&update.settings)
            .bind(&update.scopes)
            .bind(&update.credentials)
            .bind(update.updated_at)
            .bind(&update.id)
            .bind(update.expected_version)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_oauth_state(&self, record: &crate::OAuthStateRecord) -> Result<()> {
        connections::put_state(&self.writer, record).await
    }

    async fn take_oauth_state(
        &self,
        state_hash: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<Option<crate::OAuthStateRecord>> {
        connections::take_state(&self.writer, state_hash, now).await
    }

    async fn feed_after(
        &self,
        after: &crate::FeedCursor,
        filter: &crate::FeedFilter,
        limit: u32,
    ) -> Result<crate::FeedPage> {
        feed::after(&self.reader, after, filter, limit).await
    }

    async fn feed_head(&self) -> Result<crate::FeedCursor> {
        feed::head(&self.reader).await
    }

    async fn overview(
        &self,
        sources: &[String],
        now: switchboard_core::time::UnixMillis,
        node_ttl_ms: i64,
    ) -> Result<crate::Overview> {
        overview::overview(&self.reader, sources, now, node_ttl_ms).await
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
        let sql = crate::sealed::select_sql(column, after.is_some(), false);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for part in after.unwrap_or_default() {
            query = query.bind(part.clone());
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.writer).await?;
        rows.iter()
            .map(|row: &sqlx::sqlite::SqliteRow| {
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
        let sql = crate::sealed::update_sql(value.column, false);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(resealed.to_vec());
        for part in &value.key {
            query = query.bind(part.clone());
        }
        let done = query
            .bind(value.sealed.clone())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
    async fn sync_start_run(&self, run: &crate::SyncRunRecord) -> Result<()> {
        syncs::start_run(&self.writer, run).await
    }

    async fn sync_open_run(&self, sync_id: &str) -> Result<Option<crate::SyncRunRecord>> {
        syncs::open_run(&self.writer, sync_id).await
    }

    async fn sync_resume_run(
        &self,
        run_id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<()> {
        syncs::resume_run(&self.writer, run_id, now).await
    }

    async fn sync_hashes(&self, sync_id: &str, keys: &[String]) -> Result<Vec<(String, String)>> {
        syncs::hashes(&self.reader, sync_id, keys).await
    }

    async fn sync_checkpoint(&self, checkpoint: &crate::SyncCheckpoint) -> Result<bool> {
        syncs::checkpoint(&self.writer, checkpoint).await
    }

    async fn sync_unseen(&self, sync_id: &str, run_id: &str, limit: u32) -> Result<Vec<String>> {
        syncs::unseen(&self.reader, sync_id, run_id, limit).await
    }

    async fn sync_finish_run(&self, finish: &crate::SyncFinish) -> Result<()> {
        syncs::finish_run(&self.writer, finish).await
    }

    async fn sync_cursor(&self, sync_id: &str) -> Result<Option<String>> {
        syncs::cursor(&self.writer, sync_id).await
    }

    async fn list_sync_runs(
        &self,
        sync_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<crate::SyncRunRecord>> {
        syncs::list_runs(&self.reader, sync_id, before, limit).await
    }

    async fn get_sync_run(&self, run_id: &str) -> Result<Option<crate::SyncRunRecord>> {
        syncs::get_run(&self.reader, run_id).await
    }

    async fn sync_request_cancel(
        &self,
        sync_id: &str,
        now: switchboard_core::time::UnixMillis,
    ) -> Result<Option<String>> {
        syncs::request_cancel(&self.writer, sync_id, now).await
    }
    async fn sync_put_conflicts(
        &self,
        sync_id: &str,
        conflicts: &[crate::SyncConflict],
        resolved: &[String],
    ) -> Result<()> {
        syncs::put_conflicts(&self.writer, sync_id, conflicts, resolved).await
    }

    async fn get_sync_conflict(
        &self,
        sync_id: &str,
        record_key: &str,
    ) -> Result<Option<crate::SyncConflict>> {
        syncs::get_conflict(&self.reader, sync_id, record_key).await
    }

    async fn sync_resolve_conflict(
        &self,
        sync_id: &str,
        record_key: &str,
        base: Option<&str>,
    ) -> Result<bool> {
        syncs::resolve_conflict(&self.writer, sync_id, record_key, base).await
    }

    async fn list_sync_conflicts(
        &self,
        sync_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<crate::SyncConflict>> {
        syncs::list_conflicts(&self.reader, sync_id, after, limit).await
    }
}
