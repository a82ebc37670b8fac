//! Sync run log, records cache and incremental cursors (see [`crate::syncs`]).
//!
//! Batches of keys travel as one JSON array parameter read with `json_each`, so a page of any
//! size is one statement per table.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use switchboard_core::time::UnixMillis;

use crate::Result;
use crate::syncs::{SyncCheckpoint, SyncCounts, SyncFinish, SyncRunRecord};

const COLUMNS: &str = "id, sync_id, status, mode, trigger, started_at, updated_at, finished_at, \
                       pages, fetched, created, updated, deleted, unchanged, failed, error, \
                       checkpoint, cancel_requested";

fn from_row(row: &SqliteRow) -> Result<SyncRunRecord> {
    Ok(SyncRunRecord {
        id: row.try_get("id")?,
        sync_id: row.try_get("sync_id")?,
        status: row.try_get("status")?,
        mode: row.try_get("mode")?,
        trigger: row.try_get("trigger")?,
        started_at: row.try_get("started_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        counts: SyncCounts {
            pages: row.try_get("pages")?,
            fetched: row.try_get("fetched")?,
            created: row.try_get("created")?,
            updated: row.try_get("updated")?,
            deleted: row.try_get("deleted")?,
            unchanged: row.try_get("unchanged")?,
            failed: row.try_get("failed")?,
        },
        error: row.try_get("error")?,
        checkpoint: row.try_get("checkpoint")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
    })
}

/// `keys` as a JSON array of strings.
fn keys_json(keys: &[String]) -> String {
    serde_json::Value::from(keys.to_vec()).to_string()
}

/// `pairs` as a JSON array of two-string arrays.
fn pairs_json(pairs: &[(String, String)]) -> String {
    serde_json::Value::Array(
        pairs
            .iter()
            .map(|(a, b)| serde_json::Value::from(vec![a.clone(), b.clone()]))
            .collect(),
    )
    .to_string()
}

pub(super) async fn start_run(pool: &SqlitePool, r: &SyncRunRecord) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO sync_runs ({COLUMNS}) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )))
    .bind(&r.id)
    .bind(&r.sync_id)
    .bind(&r.status)
    .bind(&r.mode)
    .bind(&r.trigger)
    .bind(r.started_at)
    .bind(r.updated_at)
    .bind(r.finished_at)
    .bind(r.counts.pages)
    .bind(r.counts.fetched)
    .bind(r.counts.created)
    .bind(r.counts.updated)
    .bind(r.counts.deleted)
    .bind(r.counts.unchanged)
    .bind(r.counts.failed)
    .bind(&r.error)
    .bind(&r.checkpoint)
    .bind(i64::from(r.cancel_requested))
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn open_run(pool: &SqlitePool, sync_id: &str) -> Result<Option<SyncRunRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sync_runs WHERE sync_id = ? AND status IN ('running', 'paused') \
         ORDER BY id DESC LIMIT 1"
    )))
    .bind(sync_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn resume_run(pool: &SqlitePool, run_id: &str, now: UnixMillis) -> Result<()> {
    sqlx::query(
        "UPDATE sync_runs SET status = 'running', finished_at = NULL, updated_at = ? \
         WHERE id = ? AND status IN ('running', 'paused')",
    )
    .bind(now)
    .bind(run_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn hashes(
    pool: &SqlitePool,
    sync_id: &str,
    keys: &[String],
) -> Result<Vec<(String, String)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT record_key, hash FROM sync_records \
         WHERE sync_id = ? AND record_key IN (SELECT value FROM json_each(?))",
    )
    .bind(sync_id)
    .bind(keys_json(keys))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("record_key")?, r.try_get("hash")?)))
        .collect()
}

pub(super) async fn checkpoint(pool: &SqlitePool, c: &SyncCheckpoint) -> Result<bool> {
    let mut tx = pool.begin().await?;
    if !c.seen.is_empty() {
        sqlx::query(
            "INSERT INTO sync_records (sync_id, record_key, hash, seen_run) \
             SELECT ?1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), ?2 \
             FROM json_each(?3) WHERE true \
             ON CONFLICT (sync_id, record_key) DO UPDATE \
             SET hash = excluded.hash, seen_run = excluded.seen_run",
        )
        .bind(&c.sync_id)
        .bind(&c.run_id)
        .bind(pairs_json(&c.seen))
        .execute(&mut *tx)
        .await?;
    }
    if !c.removed.is_empty() {
        sqlx::query(
            "DELETE FROM sync_records \
             WHERE sync_id = ? AND record_key IN (SELECT value FROM json_each(?))",
        )
        .bind(&c.sync_id)
        .bind(keys_json(&c.removed))
        .execute(&mut *tx)
        .await?;
    }
    let n = &c.counts;
    let cancel: Option<i64> = sqlx::query_scalar(
        "UPDATE sync_runs SET pages = ?, fetched = ?, created = ?, updated = ?, deleted = ?, \
         unchanged = ?, failed = ?, checkpoint = ?, updated_at = ? \
         WHERE id = ? RETURNING cancel_requested",
    )
    .bind(n.pages)
    .bind(n.fetched)
    .bind(n.created)
    .bind(n.updated)
    .bind(n.deleted)
    .bind(n.unchanged)
    .bind(n.failed)
    .bind(&c.checkpoint)
    .bind(c.now)
    .bind(&c.run_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(cancel.unwrap_or(0) != 0)
}

pub(super) async fn unseen(
    pool: &SqlitePool,
    sync_id: &str,
    run_id: &str,
    limit: u32,
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT record_key FROM sync_records WHERE sync_id = ? AND seen_run <> ? \
         ORDER BY record_key LIMIT ?",
    )
    .bind(sync_id)
    .bind(run_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?)
}

pub(super) async fn finish_run(pool: &SqlitePool, f: &SyncFinish) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE sync_runs SET status = ?, error = ?, finished_at = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&f.status)
    .bind(&f.error)
    .bind(f.now)
    .bind(f.now)
    .bind(&f.run_id)
    .execute(&mut *tx)
    .await?;
    if let Some(cursor) = &f.cursor {
        sqlx::query(
            "INSERT INTO sync_state (sync_id, cursor, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (sync_id) DO UPDATE SET cursor = excluded.cursor, \
             updated_at = excluded.updated_at",
        )
        .bind(&f.sync_id)
        .bind(cursor)
        .bind(f.now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn cursor(pool: &SqlitePool, sync_id: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar::<_, Option<String>>("SELECT cursor FROM sync_state WHERE sync_id = ?")
            .bind(sync_id)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

pub(super) async fn list_runs(
    pool: &SqlitePool,
    sync_id: &str,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<SyncRunRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sync_runs WHERE sync_id = ? AND (? IS NULL OR id < ?) \
         ORDER BY id DESC LIMIT ?"
    )))
    .bind(sync_id)
    .bind(before)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn get_run(pool: &SqlitePool, run_id: &str) -> Result<Option<SyncRunRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sync_runs WHERE id = ?"
    )))
    .bind(run_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn request_cancel(
    pool: &SqlitePool,
    sync_id: &str,
    now: UnixMillis,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "UPDATE sync_runs SET cancel_requested = 1, updated_at = ?1, \
         status = CASE status WHEN 'paused' THEN 'cancelled' ELSE status END, \
         finished_at = CASE status WHEN 'paused' THEN ?1 ELSE finished_at END \
         WHERE sync_id = ?2 AND status IN ('running', 'paused') RETURNING id",
    )
    .bind(now)
    .bind(sync_id)
    .fetch_optional(pool)
    .await?)
}

pub(super) async fn put_conflicts(
    pool: &SqlitePool,
    sync_id: &str,
    conflicts: &[crate::SyncConflict],
    resolved: &[String],
) -> Result<()> {
    let mut tx = pool.begin().await?;
    for c in conflicts {
        sqlx::query("INSERT INTO sync_conflicts (sync_id, record_key, source, destination, detected_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (sync_id, record_key) DO UPDATE SET source = excluded.source, destination = excluded.destination, detected_at = excluded.detected_at")
            .bind(&c.sync_id)
            .bind(&c.record_key)
            .bind(&c.source)
            .bind(&c.destination)
            .bind(c.detected_at)
            .execute(&mut *tx)
            .await?;
    }
    if !resolved.is_empty() {
        sqlx::query("DELETE FROM sync_conflicts WHERE sync_id = ? AND record_key IN (SELECT value FROM json_each(?))")
            .bind(sync_id)
            .bind(keys_json(resolved))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn get_conflict(
    pool: &SqlitePool,
    sync_id: &str,
    record_key: &str,
) -> Result<Option<crate::SyncConflict>> {
    let row = sqlx::query("SELECT sync_id, record_key, source, destination, detected_at FROM sync_conflicts WHERE sync_id = ? AND record_key = ?")
        .bind(sync_id)
        .bind(record_key)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(conflict_from_row).transpose()
}

pub(super) async fn resolve_conflict(
    pool: &SqlitePool,
    sync_id: &str,
    record_key: &str,
    base: Option<&str>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let parked = sqlx::query("DELETE FROM sync_conflicts WHERE sync_id = ? AND record_key = ?")
        .bind(sync_id)
        .bind(record_key)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if !parked {
        return Ok(false);
    }
    match base {
        Some(hash) => {
            sqlx::query("INSERT INTO sync_records (sync_id, record_key, hash, seen_run) VALUES (?, ?, ?, 'resolved') ON CONFLICT (sync_id, record_key) DO UPDATE SET hash = excluded.hash")
                .bind(sync_id)
                .bind(record_key)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        None => {
            sqlx::query("DELETE FROM sync_records WHERE sync_id = ? AND record_key = ?")
                .bind(sync_id)
                .bind(record_key)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}

fn conflict_from_row(row: &SqliteRow) -> Result<crate::SyncConflict> {
    Ok(crate::SyncConflict {
        sync_id: row.try_get("sync_id")?,
        record_key: row.try_get("record_key")?,
        source: row.try_get("source")?,
        destination: row.try_get("destination")?,
        detected_at: row.try_get("detected_at")?,
    })
}

pub(super) async fn list_conflicts(
    pool: &SqlitePool,
    sync_id: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<crate::SyncConflict>> {
    let rows = sqlx::query("SELECT sync_id, record_key, source, destination, detected_at FROM sync_conflicts WHERE sync_id = ? AND (? IS NULL OR record_key > ?) ORDER BY record_key LIMIT ?")
    .bind(sync_id)
    .bind(after)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(conflict_from_row).collect()
}
