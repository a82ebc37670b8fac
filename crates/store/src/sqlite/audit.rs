//! The audit trail and retention of whole events, attempts and audit entries. Each pruning
//! call is one short write transaction over at most `limit` rows, so ingest and delivery get
//! the writer back between batches.

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use switchboard_core::time::UnixMillis;

use crate::Result;
use crate::audit::{AuditFilter, AuditRecord};

/// The event has a delivery still to make, or a dead letter holding back its ordering key.
const HAS_WORK: &str = "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id \
     AND (d.status IN ('pending', 'in_flight') \
      OR (d.status = 'failed' AND d.ordering_key IS NOT NULL AND d.hold_released = 0)))";

pub(super) async fn prune_events(pool: &SqlitePool, cutoff: UnixMillis, limit: u32) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM events WHERE received_at < ?1 AND NOT {HAS_WORK} \
         ORDER BY received_at LIMIT ?2"
    )))
    .bind(cutoff)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut deleted = 0;
    for (table, column) in [
        ("attempts", "event_id"),
        ("deliveries", "event_id"),
        ("events", "id"),
    ] {
        let mut q = QueryBuilder::<Sqlite>::new(format!("DELETE FROM {table} WHERE {column} IN ("));
        let mut list = q.separated(", ");
        for id in &ids {
            list.push_bind(id);
        }
        q.push(")");
        deleted = q.build().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(deleted)
}

pub(super) async fn prune_attempts(
    pool: &SqlitePool,
    cutoff: UnixMillis,
    limit: u32,
) -> Result<u64> {
    let result = sqlx::query(
        "DELETE FROM attempts WHERE seq IN ( \
         SELECT a.seq FROM attempts a WHERE a.started_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id \
          AND d.status IN ('pending', 'in_flight')) \
         ORDER BY a.started_at LIMIT ?2)",
    )
    .bind(cutoff)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn record_audit(pool: &SqlitePool, r: &AuditRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, resource_kind, resource_id, method, path, \
         status, request_id, before_state, after_state) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&r.id)
    .bind(r.at)
    .bind(&r.actor)
    .bind(&r.action)
    .bind(&r.resource_kind)
    .bind(&r.resource_id)
    .bind(&r.method)
    .bind(&r.path)
    .bind(i64::from(r.status))
    .bind(&r.request_id)
    .bind(&r.before)
    .bind(&r.after)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn list_audit(pool: &SqlitePool, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
    let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM audit_log WHERE 1=1");
    if let Some(actor) = &f.actor {
        q.push(" AND actor = ").push_bind(actor);
    }
    if let Some(kind) = &f.resource_kind {
        q.push(" AND resource_kind = ").push_bind(kind);
    }
    if let Some(id) = &f.resource_id {
        q.push(" AND resource_id = ").push_bind(id);
    }
    if let Some(action) = &f.action {
        q.push(" AND action = ").push_bind(action);
    }
    if let Some(since) = f.since {
        q.push(" AND at >= ").push_bind(since);
    }
    if let Some(before) = f.before_seq {
        q.push(" AND seq < ").push_bind(before);
    }
    q.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(f.limit));
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(audit_from_row)
        .collect()
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        resource_kind: row.try_get("resource_kind")?,
        resource_id: row.try_get("resource_id")?,
        method: row.try_get("method")?,
        path: row.try_get("path")?,
        status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
        request_id: row.try_get("request_id")?,
        before: row.try_get("before_state")?,
        after: row.try_get("after_state")?,
    })
}

pub(super) async fn prune_audit(pool: &SqlitePool, cutoff: UnixMillis, limit: u32) -> Result<u64> {
    let result = sqlx::query(
        "DELETE FROM audit_log WHERE seq IN ( \
         SELECT seq FROM audit_log WHERE at < ?1 ORDER BY seq LIMIT ?2)",
    )
    .bind(cutoff)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn schema_version(pool: &SqlitePool) -> Result<i64> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(pool)
        .await?;
    Ok(version.unwrap_or(0))
}

pub(super) async fn list_nodes(pool: &SqlitePool) -> Result<Vec<crate::NodeRecord>> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT id, started_at, last_seen FROM nodes ORDER BY id")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, started_at, last_seen)| crate::NodeRecord {
            id,
            started_at,
            last_seen,
        })
        .collect())
}
