//! Outbound bookkeeping: resends, per-destination due times, ordering holds, destination
//! health and payload retention.

use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use switchboard_core::time::UnixMillis;

use crate::Result;
use crate::model::*;

pub(super) async fn add_deliveries(
    pool: &SqlitePool,
    event_id: &str,
    deliveries: &[NewDelivery],
    now: UnixMillis,
) -> Result<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let sendable: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM events WHERE id = ? AND body_pruned_at IS NULL")
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?;
    if sendable.is_none() || deliveries.is_empty() {
        return Ok(0);
    }
    let rows: Vec<(&str, &NewDelivery, UnixMillis)> =
        deliveries.iter().map(|d| (event_id, d, now)).collect();
    super::writes::insert_deliveries(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(deliveries.len() as u64)
}

pub(super) async fn next_due_for(
    pool: &SqlitePool,
    destination: &str,
) -> Result<Option<UnixMillis>> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND destination = ?",
    )
    .bind(destination)
    .fetch_one(pool)
    .await?)
}

pub(super) async fn list_holds(pool: &SqlitePool, destination: &str) -> Result<Vec<HoldRecord>> {
    // The head of a held key is its oldest failed, unreleased delivery.
    let rows = sqlx::query(
        "SELECT f.ordering_key, f.id, f.event_id, f.updated_at, f.last_error, \
         (SELECT COUNT(*) FROM deliveries w WHERE w.destination = f.destination \
          AND w.ordering_key = f.ordering_key AND w.seq > f.seq AND w.status = 'pending') AS waiting \
         FROM deliveries f WHERE f.destination = ?1 AND f.ordering_key IS NOT NULL \
         AND f.status = 'failed' AND f.hold_released = 0 \
         AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination = f.destination \
          AND e.ordering_key = f.ordering_key AND e.seq < f.seq AND e.status = 'failed' \
          AND e.hold_released = 0) \
         ORDER BY f.seq LIMIT 1000",
    )
    .bind(destination)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HoldRecord {
                ordering_key: row.try_get("ordering_key")?,
                delivery_id: row.try_get("id")?,
                event_id: row.try_get("event_id")?,
                failed_at: row.try_get("updated_at")?,
                last_error: row.try_get("last_error")?,
                waiting: row.try_get::<i64, _>("waiting")? as u64,
            })
        })
        .collect()
}

pub(super) async fn release_hold(
    pool: &SqlitePool,
    destination: &str,
    ordering_key: &str,
    now: UnixMillis,
) -> Result<u64> {
    let result = sqlx::query(
        "UPDATE deliveries SET hold_released = 1, updated_at = ?3 WHERE destination = ?1 \
         AND ordering_key = ?2 AND status = 'failed' AND hold_released = 0",
    )
    .bind(destination)
    .bind(ordering_key)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn put_health(pool: &SqlitePool, records: &[HealthRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO destination_health (destination, state, consecutive_failures, failing_since, \
         last_failure_at, last_success_at, last_error, opened_at, updated_at) ",
    );
    q.push_values(records, |mut row, r| {
        row.push_bind(&r.destination)
            .push_bind(&r.state)
            .push_bind(i64::from(r.consecutive_failures))
            .push_bind(r.failing_since)
            .push_bind(r.last_failure_at)
            .push_bind(r.last_success_at)
            .push_bind(&r.last_error)
            .push_bind(r.opened_at)
            .push_bind(r.updated_at);
    });
    q.push(
        " ON CONFLICT (destination) DO UPDATE SET state = excluded.state, \
         consecutive_failures = excluded.consecutive_failures, failing_since = excluded.failing_since, \
         last_failure_at = excluded.last_failure_at, last_success_at = excluded.last_success_at, \
         last_error = excluded.last_error, opened_at = excluded.opened_at, updated_at = excluded.updated_at",
    );
    q.build().execute(pool).await?;
    Ok(())
}

pub(super) async fn list_health(pool: &SqlitePool) -> Result<Vec<HealthRecord>> {
    let rows = sqlx::query(
        "SELECT destination, state, consecutive_failures, failing_since, last_failure_at, \
         last_success_at, last_error, opened_at, updated_at FROM destination_health ORDER BY destination",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(HealthRecord {
                destination: row.try_get("destination")?,
                state: row.try_get("state")?,
                consecutive_failures: row.try_get::<i64, _>("consecutive_failures")? as u32,
                failing_since: row.try_get("failing_since")?,
                last_failure_at: row.try_get("last_failure_at")?,
                last_success_at: row.try_get("last_success_at")?,
                last_error: row.try_get("last_error")?,
                opened_at: row.try_get("opened_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}

pub(super) async fn prune_payloads(
    pool: &SqlitePool,
    cutoff: UnixMillis,
    limit: u32,
    now: UnixMillis,
) -> Result<u64> {
    let result = sqlx::query(
        "UPDATE events SET body = x'', body_pruned_at = ?3 WHERE seq IN ( \
         SELECT seq FROM events WHERE body_pruned_at IS NULL AND received_at < ?1 \
         AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id \
          AND d.status IN ('pending', 'in_flight')) \
         ORDER BY received_at LIMIT ?2)",
    )
    .bind(cutoff)
    .bind(i64::from(limit))
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn heartbeat(
    pool: &SqlitePool,
    node: &str,
    now: UnixMillis,
    ttl_ms: i64,
) -> Result<u32> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO nodes (id, started_at, last_seen) VALUES (?1, ?2, ?2) \
         ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
    )
    .bind(node)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM nodes WHERE last_seen < ?")
        .bind(now - ttl_ms.saturating_mul(10))
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE last_seen >= ?")
        .bind(now - ttl_ms)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(live.max(1) as u32)
}

pub(super) async fn leave(pool: &SqlitePool, node: &str) -> Result<()> {
    sqlx::query("DELETE FROM nodes WHERE id = ?")
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn cancel_pending(
    pool: &SqlitePool,
    destination: &str,
    now: UnixMillis,
) -> Result<u64> {
    let result = sqlx::query(
        "UPDATE deliveries SET status = 'cancelled', completed_at = ?2, updated_at = ?2 \
         WHERE destination = ?1 AND status = 'pending'",
    )
    .bind(destination)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn try_lease(
    pool: &SqlitePool,
    name: &str,
    owner: &str,
    now: UnixMillis,
    ttl_ms: i64,
) -> Result<bool> {
    // The upsert only overwrites a row we own or one that expired; either way the row then
    // names us. Otherwise it changes nothing and another owner holds the lease.
    let taken = sqlx::query(
        "INSERT INTO leases (name, owner, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
         WHERE leases.owner = excluded.owner OR leases.expires_at <= ?4",
    )
    .bind(name)
    .bind(owner)
    .bind(now.saturating_add(ttl_ms))
    .bind(now)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(taken == 1)
}

pub(super) async fn release_lease(pool: &SqlitePool, name: &str, owner: &str) -> Result<()> {
    sqlx::query("DELETE FROM leases WHERE name = ?1 AND owner = ?2")
        .bind(name)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}
