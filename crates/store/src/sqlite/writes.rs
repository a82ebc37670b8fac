//! Writes: group-committed ingests, claims under lease, completions, lease release and replay.
//!
//! Batches become multi-row statements, chunked to stay under SQLite's bound-parameter limit.

use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqlitePool};
use switchboard_core::time::UnixMillis;

use crate::model::*;
use crate::{Result, StoreError};

/// Rows per multi-row statement: 13 parameters × 1000 stays well under SQLite's 32766 limit.
const CHUNK: usize = 1000;

pub(super) fn headers_json(headers: &[(String, String)]) -> String {
    // Serializing strings cannot fail.
    serde_json::to_string(headers).unwrap_or_else(|_| "[]".into())
}

pub(super) async fn insert_events(
    pool: &SqlitePool,
    events: &[NewEvent],
) -> Result<Vec<InsertOutcome>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut inserted = std::collections::HashSet::with_capacity(events.len());
    for chunk in events.chunks(CHUNK) {
        let headers: Vec<(String, Option<String>)> = chunk
            .iter()
            .map(|e| {
                let forward =
                    (!e.forward_headers.is_empty()).then(|| headers_json(&e.forward_headers));
                (headers_json(&e.headers), forward)
            })
            .collect();
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, source, tenant, event_type, dedup_key, headers, content_type, body, received_at, forward_headers) ",
        );
        q.push_values(chunk.iter().zip(&headers), |mut row, (e, (h, f))| {
            row.push_bind(&e.id)
                .push_bind(&e.source)
                .push_bind(&e.tenant)
                .push_bind(&e.event_type)
                .push_bind(&e.dedup_key)
                .push_bind(h)
                .push_bind(&e.content_type)
                .push_bind(&e.body)
                .push_bind(e.received_at)
                .push_bind(f);
        });
        // Only the dedup index may absorb a conflict; an id collision still fails the batch.
        q.push(
            " ON CONFLICT (source, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id",
        );
        for row in q.build().fetch_all(&mut *tx).await? {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        if inserted.contains(&event.id) {
            outcomes.push(InsertOutcome::Inserted);
            continue;
        }
        let original_id: String =
            sqlx::query_scalar("SELECT id FROM events WHERE source = ? AND dedup_key = ?")
                .bind(&event.source)
                .bind(&event.dedup_key)
                .fetch_one(&mut *tx)
                .await?;
        outcomes.push(InsertOutcome::Duplicate { original_id });
    }
    let deliveries: Vec<(&NewEvent, &NewDelivery)> = events
        .iter()
        .filter(|e| inserted.contains(&e.id))
        .flat_map(|e| e.deliveries.iter().map(move |d| (e, d)))
        .collect();
    for chunk in deliveries.chunks(CHUNK) {
        let rows: Vec<(&str, &NewDelivery, UnixMillis)> = chunk
            .iter()
            .map(|(e, d)| (e.id.as_str(), *d, e.received_at))
            .collect();
        insert_deliveries(&mut tx, &rows).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Inserts `(event id, delivery, due/created time)` rows as pending deliveries.
pub(super) async fn insert_deliveries(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    rows: &[(&str, &NewDelivery, UnixMillis)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO deliveries (id, event_id, route_id, destination, status, next_attempt_at, created_at, updated_at, ordering_key) ",
    );
    q.push_values(rows, |mut row, (event_id, d, at)| {
        row.push_bind(&d.id)
            .push_bind(*event_id)
            .push_bind(&d.route_id)
            .push_bind(&d.destination)
            .push_bind("pending")
            .push_bind(*at)
            .push_bind(*at)
            .push_bind(*at)
            .push_bind(&d.ordering_key);
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}

pub(super) async fn record_rejections(
    pool: &SqlitePool,
    rejections: &[Rejection],
    keep_per_source: u32,
) -> Result<()> {
    if rejections.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let headers: Vec<String> = rejections
        .iter()
        .map(|r| headers_json(&r.headers))
        .collect();
    for (chunk, headers) in rejections.chunks(CHUNK).zip(headers.chunks(CHUNK)) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO rejections (source, received_at, code, detail, headers, body_len) ",
        );
        q.push_values(chunk.iter().zip(headers), |mut row, (r, h)| {
            row.push_bind(&r.source)
                .push_bind(r.received_at)
                .push_bind(&r.code)
                .push_bind(&r.detail)
                .push_bind(h)
                .push_bind(r.body_len as i64);
        });
        q.build().execute(&mut *tx).await?;
    }
    let mut sources: Vec<&str> = rejections.iter().map(|r| r.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    for source in sources {
        sqlx::query(
            "DELETE FROM rejections WHERE source = ?1 AND seq <= \
             (SELECT seq FROM rejections WHERE source = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        )
        .bind(source)
        .bind(i64::from(keep_per_source))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Builds the claim statement of one destination (or all).
fn claim_query(claim: &Claim<'_>) -> QueryBuilder<Sqlite> {
    let mut q =
        QueryBuilder::<Sqlite>::new("UPDATE deliveries SET status = 'in_flight', lease_owner = ");
    q.push_bind(claim.owner)
        .push(", lease_until = ")
        .push_bind(claim.lease_until)
        .push(", updated_at = ")
        .push_bind(claim.now)
        .push(
            " WHERE seq IN (SELECT seq FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ",
        )
        .push_bind(claim.now);
    if let Some(destination) = claim.destination {
        q.push(" AND destination = ").push_bind(destination);
    }
    if claim.ordered {
        // Only the head of each ordering key: nothing earlier of the same key may still be
        // waiting, in flight, or dead-lettered with its hold in place.
        q.push(
            " AND (ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e \
             WHERE e.destination = deliveries.destination AND e.ordering_key = deliveries.ordering_key \
             AND e.seq < deliveries.seq AND (e.status IN ('pending', 'in_flight') \
             OR (e.status = 'failed' AND e.hold_released = 0))))",
        );
    }
    if !claim.exclude.is_empty() {
        q.push(" AND destination NOT IN (");
        let mut list = q.separated(", ");
        for destination in claim.exclude {
            list.push_bind(destination);
        }
        list.push_unseparated(")");
    }
    q.push(if claim.ordered {
        " ORDER BY seq LIMIT "
    } else {
        " ORDER BY next_attempt_at LIMIT "
    })
    .push_bind(claim.limit as i64)
    .push(
        ") RETURNING id, event_id, route_id, destination, attempts, run_attempts, ordering_key, exhausted",
    );
    q
}

/// Turns `RETURNING` rows into claimed deliveries (event fields still empty).
fn claimed_from_rows(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<ClaimedDelivery>> {
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        claimed.push(ClaimedDelivery {
            id: row.try_get("id")?,
            event_id: row.try_get("event_id")?,
            route_id: row.try_get("route_id")?,
            destination: row.try_get("destination")?,
            attempts: row.try_get::<i64, _>("attempts")? as u32,
            run_attempts: row.try_get::<i64, _>("run_attempts")? as u32,
            body: Vec::new(),
            content_type: None,
            source: String::new(),
            tenant: None,
            event_type: None,
            received_at: 0,
            forward_headers: Vec::new(),
            ordering_key: row.try_get("ordering_key")?,
            exhausted_before: row.try_get::<i64, _>("exhausted")? != 0,
            body_pruned: false,
            correlation: placeholder_correlation(),
        });
    }
    Ok(claimed)
}

pub(super) async fn claim_due(
    writer: &SqlitePool,
    reader: &SqlitePool,
    claim: &Claim<'_>,
    durability: switchboard_core::config::Durability,
) -> Result<Vec<ClaimedDelivery>> {
    let mut all = claim_many(writer, reader, std::slice::from_ref(claim), durability).await?;
    Ok(all.pop().unwrap_or_default())
}

/// Claims for several destinations in one transaction, then reads their events in one go.
pub(super) async fn claim_many(
    writer: &SqlitePool,
    reader: &SqlitePool,
    claims: &[Claim<'_>],
    durability: switchboard_core::config::Durability,
) -> Result<Vec<Vec<ClaimedDelivery>>> {
    if claims.iter().all(|c| c.limit == 0) {
        return Ok(claims.iter().map(|_| Vec::new()).collect());
    }
    // Claims need not survive a power loss: a lost lease only means the delivery is pending
    // again, which at-least-once allows. So they commit without an fsync (WAL, synchronous
    // NORMAL); the next durable commit syncs the log, claims included, in order.
    let mut conn = writer.acquire().await?;
    let relax = durability == switchboard_core::config::Durability::Full;
    if relax {
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
    }
    let result = claim_in_transaction(&mut conn, claims).await;
    if relax
        && let Err(error) = sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
    {
        // Never hand a relaxed connection back: the pool opens a fresh (FULL) one.
        conn.close_on_drop();
        return Err(error.into());
    }
    drop(conn);
    let mut batches = result?;
    let mut claimed: Vec<&mut ClaimedDelivery> = batches.iter_mut().flatten().collect();
    fill_events(reader, &mut claimed).await?;
    Ok(batches)
}

async fn claim_in_transaction(
    conn: &mut sqlx::SqliteConnection,
    claims: &[Claim<'_>],
) -> Result<Vec<Vec<ClaimedDelivery>>> {
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await?;
    let mut batches = Vec::with_capacity(claims.len());
    for claim in claims {
        if claim.limit == 0 {
            batches.push(Vec::new());
            continue;
        }
        let mut query = claim_query(claim);
        let rows = query.build().fetch_all(&mut *tx).await?;
        batches.push(claimed_from_rows(&rows)?);
    }
    tx.commit().await?;
    Ok(batches)
}

/// Fills the event fields (body, source, type, …) of claimed deliveries.
async fn fill_events(reader: &SqlitePool, claimed: &mut [&mut ClaimedDelivery]) -> Result<()> {
    if claimed.is_empty() {
        return Ok(());
    }
    let mut event_ids: Vec<String> = claimed.iter().map(|c| c.event_id.clone()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let mut bodies = std::collections::HashMap::with_capacity(event_ids.len());
    for chunk in event_ids.chunks(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, source, tenant, event_type, received_at, forward_headers, headers, body_pruned_at, content_type, body FROM events WHERE id IN (",
        );
        let mut list = q.separated(", ");
        for id in chunk {
            list.push_bind(id.as_str());
        }
        list.push_unseparated(")");
        for row in q.build().fetch_all(reader).await? {
            let id: String = row.try_get("id")?;
            let forward: Option<String> = row.try_get("forward_headers")?;
            let event = ClaimedEvent {
                source: row.try_get("source")?,
                tenant: row.try_get("tenant")?,
                event_type: row.try_get("event_type")?,
                received_at: row.try_get("received_at")?,
                forward_headers: super::reads::parse_headers(forward)?,
                body_pruned: row.try_get::<Option<i64>, _>("body_pruned_at")?.is_some(),
                content_type: row.try_get("content_type")?,
                body: row.try_get("body")?,
                correlation: switchboard_core::correlation::Correlation::derive(
                    &id,
                    &super::reads::parse_headers(row.try_get("headers")?)?,
                ),
            };
            bodies.insert(id, event);
        }
    }
    for delivery in claimed.iter_mut() {
        let event = bodies.get(&delivery.event_id).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "delivery {} refers to missing event {}",
                delivery.id, delivery.event_id
            ))
        })?;
        delivery.source.clone_from(&event.source);
        delivery.tenant.clone_from(&event.tenant);
        delivery.event_type.clone_from(&event.event_type);
        delivery.received_at = event.received_at;
        delivery.forward_headers.clone_from(&event.forward_headers);
        delivery.body_pruned = event.body_pruned;
        delivery.content_type.clone_from(&event.content_type);
        delivery.body.clone_from(&event.body);
        delivery.correlation.clone_from(&event.correlation);
    }
    Ok(())
}

/// The event fields a claimed delivery carries.
struct ClaimedEvent {
    source: String,
    tenant: Option<String>,
    event_type: Option<String>,
    received_at: UnixMillis,
    forward_headers: Vec<(String, String)>,
    body_pruned: bool,
    content_type: Option<String>,
    body: Vec<u8>,
    correlation: switchboard_core::correlation::Correlation,
}

/// The correlation of a claimed row until its event is read (`fill` replaces it).
fn placeholder_correlation() -> switchboard_core::correlation::Correlation {
    switchboard_core::correlation::Correlation::derive("", &[])
}

pub(super) async fn complete(pool: &SqlitePool, completions: &[Completion]) -> Result<()> {
    if completions.is_empty() {
        return Ok(());
    }
    let now = switchboard_core::time::now_millis();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in completions.chunks(CHUNK) {
        let headers: Vec<String> = chunk
            .iter()
            .map(|c| headers_json(&c.attempt.response_headers))
            .collect();
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO attempts (delivery_id, event_id, destination, attempt, started_at, latency_ms, outcome, status_code, error, request_url, response_headers, response_body) ",
        );
        q.push_values(chunk.iter().zip(&headers), |mut row, (c, h)| {
            let a = &c.attempt;
            row.push_bind(&a.delivery_id)
                .push_bind(&a.event_id)
                .push_bind(&a.destination)
                .push_bind(a.attempt as i64)
                .push_bind(a.started_at)
                .push_bind(a.latency_ms as i64)
                .push_bind(a.outcome)
                .push_bind(a.status_code.map(i64::from))
                .push_bind(&a.error)
                .push_bind(&a.request_url)
                .push_bind(h)
                .push_bind(&a.response_body);
        });
        q.build().execute(&mut *tx).await?;

        let mut q = QueryBuilder::<Sqlite>::new(
            "WITH v(id, owner, status, attempts, run_attempts, next_at, last_status, last_error, completed_at) AS (",
        );
        q.push_values(chunk, |mut row, c| {
            let a = &c.attempt;
            let (status, next_at, completed_at) = match c.next {
                NextStep::Succeeded => ("succeeded", now, Some(now)),
                NextStep::Failed => ("failed", now, Some(now)),
                NextStep::Filtered => ("filtered", now, Some(now)),
                NextStep::RetryAt(at) => ("pending", at, None),
            };
            row.push_bind(&a.delivery_id)
                .push_bind(&c.lease_owner)
                .push_bind(status)
                .push_bind(a.attempt as i64)
                .push_bind(a.run_attempt as i64)
                .push_bind(next_at)
                .push_bind(a.status_code.map(i64::from))
                .push_bind(&a.error)
                .push_bind(completed_at);
        });
        q.push(
            ") UPDATE deliveries SET status = v.status, attempts = v.attempts, \
             run_attempts = v.run_attempts, next_attempt_at = v.next_at, \
             last_status = v.last_status, last_error = v.last_error, \
             completed_at = v.completed_at, lease_owner = NULL, lease_until = NULL, \
             exhausted = (exhausted OR v.status = 'failed'), updated_at = ",
        )
        .push_bind(now)
        .push(
            " FROM v WHERE deliveries.id = v.id AND deliveries.status = 'in_flight' \
             AND deliveries.lease_owner = v.owner",
        );
        q.build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn release_leases(
    pool: &SqlitePool,
    owner: Option<&str>,
    now: UnixMillis,
) -> Result<u64> {
    let result = match owner {
        Some(owner) => {
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = ?1 \
                 WHERE status = 'in_flight' AND lease_owner = ?2",
            )
            .bind(now)
            .bind(owner)
            .execute(pool)
            .await?
        }
        None => {
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = ?1 \
                 WHERE status = 'in_flight' AND lease_until < ?1",
            )
            .bind(now)
            .execute(pool)
            .await?
        }
    };
    Ok(result.rows_affected())
}

pub(super) async fn replay(
    pool: &SqlitePool,
    selector: &ReplaySelector,
    now: UnixMillis,
) -> Result<u64> {
    const SET: &str = "UPDATE deliveries SET status = 'pending', run_attempts = 0, \
                       next_attempt_at = ?1, completed_at = NULL, updated_at = ?1 WHERE \
                       NOT EXISTS (SELECT 1 FROM events ev WHERE ev.id = deliveries.event_id \
                       AND ev.body_pruned_at IS NOT NULL) AND ";
    let result = match selector {
        ReplaySelector::Delivery(id) => {
            sqlx::query(AssertSqlSafe(format!(
                "{SET} id = ?2 AND status <> 'in_flight'"
            )))
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
        }
        ReplaySelector::Event(id) => {
            sqlx::query(AssertSqlSafe(format!(
                "{SET} event_id = ?2 AND status <> 'in_flight'"
            )))
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?
        }
        ReplaySelector::FailedForDestination { destination, since } => {
            sqlx::query(AssertSqlSafe(format!(
                "{SET} destination = ?2 AND status = 'failed' AND updated_at >= ?3"
            )))
            .bind(now)
            .bind(destination)
            .bind(since)
            .execute(pool)
            .await?
        }
    };
    Ok(result.rows_affected())
}
