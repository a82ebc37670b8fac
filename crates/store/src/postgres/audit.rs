//! The audit trail and retention of whole events, attempts and audit entries. Each pruning
//! call is one short transaction over at most `limit` rows; rows another node is pruning (or a
//! replay or resend holds) are skipped, not waited for.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use switchboard_core::time::UnixMillis;

use super::retry_transient;
use crate::Result;
use crate::audit::{AuditFilter, AuditRecord};

/// The event has a delivery still to make, or a dead letter holding back its ordering key.
const HAS_WORK: &str = "EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = ev.id \
     AND (d.status IN ('pending', 'in_flight') \
      OR (d.status = 'failed' AND d.ordering_key IS NOT NULL AND NOT d.hold_released)))";

pub(super) async fn prune_events(pool: &PgPool, cutoff: UnixMillis, limit: u32) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    retry_transient!("prune_events", prune_events_once(pool, cutoff, limit).await)
}

/// As `prune_payloads`: the first statement picks and locks the events (replays and resends
/// share-lock an event's row), the second checks again, with a snapshot taken once the locks
/// are held, that no work appeared, and deletes the events with their history.
async fn prune_events_once(pool: &PgPool, cutoff: UnixMillis, limit: u32) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let picked: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT ev.seq FROM events ev WHERE ev.received_at < $1 AND NOT {HAS_WORK} \
         ORDER BY ev.received_at LIMIT $2 FOR UPDATE OF ev SKIP LOCKED"
    )))
    .bind(cutoff)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    if picked.is_empty() {
        return Ok(0);
    }
    let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT ev.id FROM events ev WHERE ev.seq = ANY($1::bigint[]) AND NOT {HAS_WORK}"
    )))
    .bind(&picked)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM attempts WHERE event_id = ANY($1::text[])")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM deliveries WHERE event_id = ANY($1::text[])")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM events WHERE id = ANY($1::text[])")
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}

pub(super) async fn prune_attempts(pool: &PgPool, cutoff: UnixMillis, limit: u32) -> Result<u64> {
    let result = sqlx::query(
        "DELETE FROM attempts WHERE seq = ANY(ARRAY( \
         SELECT a.seq FROM attempts a WHERE a.started_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id = a.delivery_id \
          AND d.status IN ('pending', 'in_flight')) \
         ORDER BY a.started_at LIMIT $2))",
    )
    .bind(cutoff)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn record_audit(pool: &PgPool, r: &AuditRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, action, resource_kind, resource_id, method, path, \
         status, request_id, before_state, after_state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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

pub(super) async fn list_audit(pool: &PgPool, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM audit_log WHERE TRUE");
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

fn audit_from_row(row: &PgRow) -> Result<AuditRecord> {
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

pub(super) async fn prune_audit(pool: &PgPool, cutoff: UnixMillis, limit: u32) -> Result<u64> {
    let result = sqlx::query(
        "DELETE FROM audit_log WHERE seq = ANY(ARRAY( \
         SELECT seq FROM audit_log WHERE at < $1 ORDER BY seq LIMIT $2))",
    )
    .bind(cutoff)
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn schema_version(pool: &PgPool) -> Result<i64> {
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(pool)
        .await?;
    Ok(version.unwrap_or(0))
}

pub(super) async fn list_nodes(pool: &PgPool) -> Result<Vec<crate::NodeRecord>> {
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
