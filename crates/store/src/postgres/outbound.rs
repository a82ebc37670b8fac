//! Outbound bookkeeping: resends, per-destination due times, ordering holds, destination
//! health and payload retention.

use std::collections::HashMap;

use sqlx::{PgPool, Row};
use switchboard_core::time::UnixMillis;

use super::writes::{CHUNK, insert_deliveries, lock_ordering_keys};
use super::{opt_text, retry_transient, text};
use crate::Result;
use crate::model::*;

pub(super) async fn add_deliveries(
    pool: &PgPool,
    event_id: &str,
    deliveries: &[NewDelivery],
    now: UnixMillis,
) -> Result<u64> {
    if deliveries.is_empty() {
        return Ok(0);
    }
    retry_transient!(
        "add_deliveries",
        add_deliveries_once(pool, event_id, deliveries, now).await
    )
}

async fn add_deliveries_once(
    pool: &PgPool,
    event_id: &str,
    deliveries: &[NewDelivery],
    now: UnixMillis,
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    // Share-locked, so that `prune_payloads` cannot remove the body under the new deliveries
    // (see `writes::replay`).
    let sendable: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM events WHERE id = $1 AND body_pruned_at IS NULL FOR KEY SHARE",
    )
    .bind(text(event_id))
    .fetch_optional(&mut *tx)
    .await?;
    if sendable.is_none() {
        return Ok(0);
    }
    lock_ordering_keys(&mut tx, deliveries.iter()).await?;
    let rows: Vec<(&str, &NewDelivery, UnixMillis)> =
        deliveries.iter().map(|d| (event_id, d, now)).collect();
    for chunk in rows.chunks(CHUNK) {
        insert_deliveries(&mut tx, chunk).await?;
    }
    tx.commit().await?;
    Ok(deliveries.len() as u64)
}

pub(super) async fn next_due_for(pool: &PgPool, destination: &str) -> Result<Option<UnixMillis>> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND destination = $1",
    )
    .bind(text(destination))
    .fetch_one(pool)
    .await?)
}

pub(super) async fn list_holds(pool: &PgPool, destination: &str) -> Result<Vec<HoldRecord>> {
    // The head of a held key is its oldest failed, unreleased delivery.
    let rows = sqlx::query(
        "SELECT f.ordering_key, f.id, f.event_id, f.updated_at, f.last_error, \
         (SELECT COUNT(*) FROM deliveries w WHERE w.destination = f.destination \
          AND w.ordering_key = f.ordering_key AND w.seq > f.seq AND w.status = 'pending') AS waiting \
         FROM deliveries f WHERE f.destination = $1 AND f.ordering_key IS NOT NULL \
         AND f.status = 'failed' AND NOT f.hold_released \
         AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.destination = f.destination \
          AND e.ordering_key = f.ordering_key AND e.seq < f.seq AND e.status = 'failed' \
          AND NOT e.hold_released) \
         ORDER BY f.seq LIMIT 1000",
    )
    .bind(text(destination))
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
    pool: &PgPool,
    destination: &str,
    ordering_key: &str,
    now: UnixMillis,
) -> Result<u64> {
    let result = retry_transient!(
        "release_hold",
        sqlx::query(
            "UPDATE deliveries SET hold_released = TRUE, updated_at = $3 WHERE destination = $1 \
             AND ordering_key = $2 AND status = 'failed' AND NOT hold_released",
        )
        .bind(text(destination))
        .bind(text(ordering_key))
        .bind(now)
        .execute(pool)
        .await
        .map_err(crate::StoreError::from)
    )?;
    Ok(result.rows_affected())
}

pub(super) async fn put_health(pool: &PgPool, records: &[HealthRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    // One statement cannot upsert a row twice; as with SQLite's multi-row upsert, the last
    // record of a destination wins.
    let mut last = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        last.insert(text(&r.destination), i);
    }
    let mut records: Vec<&HealthRecord> = records
        .iter()
        .enumerate()
        .filter(|(i, r)| last.get(&text(&r.destination)) == Some(i))
        .map(|(_, r)| r)
        .collect();
    // Rows in a fixed order, so that two nodes writing the same destinations never deadlock.
    records.sort_unstable_by(|a, b| a.destination.cmp(&b.destination));
    retry_transient!(
        "put_health",
        sqlx::query(
            "INSERT INTO destination_health (destination, state, consecutive_failures, \
             failing_since, last_failure_at, last_success_at, last_error, opened_at, updated_at) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], \
                                  $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[]) \
             ON CONFLICT (destination) DO UPDATE SET state = excluded.state, \
             consecutive_failures = excluded.consecutive_failures, \
             failing_since = excluded.failing_since, last_failure_at = excluded.last_failure_at, \
             last_success_at = excluded.last_success_at, last_error = excluded.last_error, \
             opened_at = excluded.opened_at, updated_at = excluded.updated_at",
        )
        .bind(records.iter().map(|r| text(&r.destination)).collect::<Vec<_>>())
        .bind(records.iter().map(|r| text(&r.state)).collect::<Vec<_>>())
        .bind(
            records
                .iter()
                .map(|r| i64::from(r.consecutive_failures))
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| r.failing_since).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.last_failure_at).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.last_success_at).collect::<Vec<_>>())
        .bind(
            records
                .iter()
                .map(|r| opt_text(r.last_error.as_deref()))
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| r.opened_at).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .execute(pool)
        .await
        .map_err(crate::StoreError::from)
    )?;
    Ok(())
}

pub(super) async fn list_health(pool: &PgPool) -> Result<Vec<HealthRecord>> {
    let rows = sqlx::query(
        "SELECT destination, state, consecutive_failures, failing_since, last_failure_at, \
         last_success_at, last_error, opened_at, updated_at FROM destination_health \
         ORDER BY destination COLLATE \"C\"",
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
    pool: &PgPool,
    cutoff: UnixMillis,
    limit: u32,
    now: UnixMillis,
) -> Result<u64> {
    if limit == 0 {
        return Ok(0);
    }
    retry_transient!(
        "prune_payloads",
        prune_payloads_once(pool, cutoff, limit, now).await
    )
}

/// Two statements: the first picks and locks the events (skipping those another pruner, a
/// replay or a resend holds), the second, with a snapshot taken once the locks are held,
/// checks again that no delivery of them is pending or in flight. A replay or resend that
/// committed before the locks were granted is seen by that check; one that comes after waits
/// for this transaction and then finds the body pruned.
async fn prune_payloads_once(
    pool: &PgPool,
    cutoff: UnixMillis,
    limit: u32,
    now: UnixMillis,
) -> Result<u64> {
    const NO_WORK: &str = "NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = ev.id \
                           AND d.status IN ('pending', 'in_flight'))";
    let mut tx = pool.begin().await?;
    let picked: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT ev.seq FROM events ev WHERE ev.body_pruned_at IS NULL AND ev.received_at < $1 \
         AND {NO_WORK} ORDER BY ev.received_at LIMIT $2 FOR UPDATE OF ev SKIP LOCKED"
    )))
    .bind(cutoff)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    if picked.is_empty() {
        return Ok(0);
    }
    let result = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE events ev SET body = ''::bytea, body_pruned_at = $2 \
         WHERE ev.seq = ANY($1::bigint[]) AND {NO_WORK}"
    )))
    .bind(picked)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(result.rows_affected())
}

pub(super) async fn heartbeat(
    pool: &PgPool,
    node: &str,
    now: UnixMillis,
    ttl_ms: i64,
) -> Result<u32> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO nodes (id, started_at, last_seen) VALUES ($1, $2, $2) \
         ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen",
    )
    .bind(node)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM nodes WHERE last_seen < $1")
        .bind(now - ttl_ms.saturating_mul(10))
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nodes WHERE last_seen >= $1")
        .bind(now - ttl_ms)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(live.max(1) as u32)
}

pub(super) async fn leave(pool: &PgPool, node: &str) -> Result<()> {
    sqlx::query("DELETE FROM nodes WHERE id = $1")
        .bind(node)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn cancel_pending(
    pool: &PgPool,
    destination: &str,
    now: UnixMillis,
) -> Result<u64> {
    let result = sqlx::query(
        "UPDATE deliveries SET status = 'cancelled', completed_at = $2, updated_at = $2 \
         WHERE destination = $1 AND status = 'pending'",
    )
    .bind(destination)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn try_lease(
    pool: &PgPool,
    name: &str,
    owner: &str,
    now: UnixMillis,
    ttl_ms: i64,
) -> Result<bool> {
    // The upsert only overwrites a row we own or one that expired; either way the row then
    // names us. Otherwise it changes nothing and another owner holds the lease.
    let taken = sqlx::query(
        "INSERT INTO leases (name, owner, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
         WHERE leases.owner = excluded.owner OR leases.expires_at <= $4",
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

pub(super) async fn release_lease(pool: &PgPool, name: &str, owner: &str) -> Result<()> {
    sqlx::query("DELETE FROM leases WHERE name = $1 AND owner = $2")
        .bind(name)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(())
}
