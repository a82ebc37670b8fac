//! Reads: listings, single records, counts. They use the read-only pool and never block writes.

use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqlitePool};
use switchboard_core::DeliveryStatus;
use switchboard_core::time::UnixMillis;

use crate::model::*;
use crate::{Result, StoreError};

pub(super) fn parse_headers(raw: Option<String>) -> Result<Vec<(String, String)>> {
    match raw {
        None => Ok(Vec::new()),
        Some(raw) => serde_json::from_str(&raw)
            .map_err(|e| StoreError::Corrupt(format!("headers column: {e}"))),
    }
}

pub(super) fn event_from_row(row: &SqliteRow, with_body: bool) -> Result<EventRecord> {
    Ok(EventRecord {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        tenant: row.try_get("tenant")?,
        event_type: row.try_get("event_type")?,
        dedup_key: row.try_get("dedup_key")?,
        headers: parse_headers(row.try_get("headers")?)?,
        content_type: row.try_get("content_type")?,
        body: if with_body {
            row.try_get("body")?
        } else {
            Vec::new()
        },
        body_len: row.try_get::<i64, _>("body_len")? as u64,
        received_at: row.try_get("received_at")?,
        forward_headers: parse_headers(row.try_get("forward_headers")?)?,
        body_pruned_at: row.try_get("body_pruned_at")?,
    })
}

pub(super) const EVENT_COLUMNS: &str = "seq, id, source, tenant, event_type, dedup_key, headers, content_type, length(body) AS body_len, received_at, forward_headers, body_pruned_at";

/// Appends the conditions of `f` other than the body text (and the page size).
fn push_filters(q: &mut QueryBuilder<Sqlite>, f: &EventFilter) {
    if let Some(source) = &f.source {
        q.push(" AND source = ").push_bind(source);
    }
    if let Some(event_type) = &f.event_type {
        q.push(" AND event_type = ").push_bind(event_type);
    }
    if let Some(status) = f.delivery_status {
        q.push(
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status = ",
        )
        .push_bind(status.as_str())
        .push(")");
    }
    if let Some(routed) = f.routed {
        q.push(if routed {
            " AND EXISTS"
        } else {
            " AND NOT EXISTS"
        })
        .push(
            " (SELECT 1 FROM deliveries d WHERE d.event_id = events.id AND d.status <> 'filtered')",
        );
    }
    if let Some(since) = f.since {
        q.push(" AND received_at >= ").push_bind(since);
    }
    if let Some(until) = f.until {
        q.push(" AND received_at < ").push_bind(until);
    }
    if let Some(before) = f.before_seq {
        q.push(" AND seq < ").push_bind(before);
    }
}

/// Events matching `f` (the body text included: `instr` on the BLOB compares bytes), newest
/// first, not below `floor`.
async fn select_events(
    pool: &SqlitePool,
    f: &EventFilter,
    floor: Option<i64>,
) -> Result<Vec<EventRecord>> {
    let mut q =
        QueryBuilder::<Sqlite>::new(format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1=1"));
    push_filters(&mut q, f);
    if let Some(floor) = floor {
        q.push(" AND seq >= ").push_bind(floor);
    }
    if let Some(needle) = f.body_needle() {
        q.push(" AND instr(body, ").push_bind(needle).push(") > 0");
    }
    q.push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(f.limit));
    q.build()
        .fetch_all(pool)
        .await?
        .iter()
        .map(|row| event_from_row(row, false))
        .collect()
}

pub(super) async fn list_events(pool: &SqlitePool, f: &EventFilter) -> Result<Vec<EventRecord>> {
    select_events(pool, f, None).await
}

pub(super) async fn search_events(
    pool: &SqlitePool,
    f: &EventFilter,
    scan: u32,
) -> Result<EventSearch> {
    if f.body_needle().is_none() {
        return Ok(EventSearch {
            events: select_events(pool, f, None).await?,
            scan_floor: None,
        });
    }
    // The scan window: the `scan` newest events the other filters let through (an index walk
    // along `seq`, no body read). Its oldest row is the floor; a row below it means more is
    // left for the next page.
    let mut q = QueryBuilder::<Sqlite>::new("SELECT seq FROM events WHERE 1=1");
    push_filters(&mut q, f);
    q.push(" ORDER BY seq DESC LIMIT 2 OFFSET ")
        .push_bind(i64::from(scan.max(1) - 1));
    let edge: Vec<i64> = q.build_query_scalar::<i64>().fetch_all(pool).await?;
    let floor = (edge.len() == 2).then(|| edge[0]);
    Ok(EventSearch {
        events: select_events(pool, f, floor).await?,
        scan_floor: floor,
    })
}

/// Counts rows of `table` whose `at` column falls into `b`, per bucket and `key` column.
async fn histogram(
    pool: &SqlitePool,
    table: &str,
    at: &str,
    key: &str,
    b: &Buckets,
) -> Result<Vec<BucketCount>> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT ({at} - ?1) / ?2 AS bucket, {key} AS key, COUNT(*) AS n FROM {table} \
         WHERE {at} >= ?1 AND {at} < ?3 GROUP BY bucket, key ORDER BY bucket, key"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(b.start)
        .bind(b.width_ms)
        .bind(b.end())
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(BucketCount {
                bucket: row.try_get::<i64, _>("bucket")? as u32,
                key: row.try_get("key")?,
                count: row.try_get::<i64, _>("n")? as u64,
            })
        })
        .collect()
}

pub(super) async fn event_histogram(pool: &SqlitePool, b: &Buckets) -> Result<Vec<BucketCount>> {
    histogram(pool, "events", "received_at", "source", b).await
}

pub(super) async fn attempt_histogram(pool: &SqlitePool, b: &Buckets) -> Result<Vec<BucketCount>> {
    histogram(pool, "attempts", "started_at", "outcome", b).await
}

pub(super) async fn get_event(pool: &SqlitePool, id: &str) -> Result<Option<EventRecord>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS}, body FROM events WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| event_from_row(&row, true)).transpose()
}

fn delivery_from_row(row: &SqliteRow) -> Result<DeliveryRecord> {
    let status: String = row.try_get("status")?;
    Ok(DeliveryRecord {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        route_id: row.try_get("route_id")?,
        destination: row.try_get("destination")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status `{status}`")))?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status: row
            .try_get::<Option<i64>, _>("last_status")?
            .map(|s| s as u16),
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        ordering_key: row.try_get("ordering_key")?,
    })
}

pub(super) async fn list_deliveries(
    pool: &SqlitePool,
    f: &DeliveryFilter,
) -> Result<Vec<DeliveryRecord>> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT seq, id, event_id, route_id, destination, status, attempts, next_attempt_at, \
         last_status, last_error, created_at, updated_at, ordering_key FROM deliveries WHERE 1=1",
    );
    if let Some(status) = f.status {
        q.push(" AND status = ").push_bind(status.as_str());
    }
    if let Some(destination) = &f.destination {
        q.push(" AND destination = ").push_bind(destination);
    }
    if let Some(event_id) = &f.event_id {
        q.push(" AND event_id = ").push_bind(event_id);
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
        .map(delivery_from_row)
        .collect()
}

pub(super) async fn get_delivery(pool: &SqlitePool, id: &str) -> Result<Option<DeliveryRecord>> {
    let row = sqlx::query(
        "SELECT seq, id, event_id, route_id, destination, status, attempts, next_attempt_at, \
         last_status, last_error, created_at, updated_at, ordering_key FROM deliveries WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(delivery_from_row).transpose()
}

pub(super) async fn list_attempts(
    pool: &SqlitePool,
    event_id: Option<&str>,
    delivery_id: Option<&str>,
) -> Result<Vec<AttemptRecord>> {
    let mut q = QueryBuilder::<Sqlite>::new(
        "SELECT delivery_id, event_id, destination, attempt, started_at, latency_ms, outcome, \
         status_code, error, request_url, response_headers, response_body FROM attempts WHERE 1=1",
    );
    if let Some(event_id) = event_id {
        q.push(" AND event_id = ").push_bind(event_id);
    }
    if let Some(delivery_id) = delivery_id {
        q.push(" AND delivery_id = ").push_bind(delivery_id);
    }
    q.push(" ORDER BY seq LIMIT 10000");
    let rows = q.build().fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(AttemptRecord {
                delivery_id: row.try_get("delivery_id")?,
                event_id: row.try_get("event_id")?,
                destination: row.try_get("destination")?,
                attempt: row.try_get::<i64, _>("attempt")? as u32,
                started_at: row.try_get("started_at")?,
                latency_ms: row.try_get::<i64, _>("latency_ms")? as u64,
                outcome: row.try_get("outcome")?,
                status_code: row
                    .try_get::<Option<i64>, _>("status_code")?
                    .map(|s| s as u16),
                error: row.try_get("error")?,
                request_url: row.try_get("request_url")?,
                response_headers: parse_headers(row.try_get("response_headers")?)?,
                response_body: row
                    .try_get::<Option<Vec<u8>>, _>("response_body")?
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub(super) async fn delivery_counts(pool: &SqlitePool) -> Result<Vec<(DeliveryStatus, u64)>> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM deliveries GROUP BY status")
        .fetch_all(pool)
        .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in rows {
        let status: String = row.try_get("status")?;
        let n: i64 = row.try_get("n")?;
        let status = DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status `{status}`")))?;
        counts.push((status, n as u64));
    }
    Ok(counts)
}

pub(super) async fn next_due_at(pool: &SqlitePool) -> Result<Option<UnixMillis>> {
    Ok(
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'")
            .fetch_one(pool)
            .await?,
    )
}

pub(super) async fn list_rejections(
    pool: &SqlitePool,
    source: &str,
    limit: u32,
) -> Result<Vec<Rejection>> {
    let rows = sqlx::query(
        "SELECT source, received_at, code, detail, headers, body_len FROM rejections \
         WHERE source = ? ORDER BY seq DESC LIMIT ?",
    )
    .bind(source)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Rejection {
                source: row.try_get("source")?,
                received_at: row.try_get("received_at")?,
                code: row.try_get("code")?,
                detail: row.try_get("detail")?,
                headers: parse_headers(row.try_get("headers")?)?,
                body_len: row.try_get::<i64, _>("body_len")? as u64,
            })
        })
        .collect()
}
