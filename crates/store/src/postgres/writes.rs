//! Writes: group-committed ingests, claims under lease, completions, lease release and replay.
//!
//! Batches are bound as one array per column and expanded with `UNNEST … WITH ORDINALITY`,
//! inserted in input order (so `seq` follows the batch, as with SQLite's multi-row `VALUES`).
//! Every caller-supplied string is bound through [`text`] (no NUL reaches PostgreSQL).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder, Row, Transaction};
use switchboard_core::time::UnixMillis;

use super::{opt_text, retry_transient, text};
use crate::model::*;
use crate::{Result, StoreError};

/// Rows per statement: bounds the size of one bind message (bodies included), as the SQLite
/// adapter's chunks do.
pub(super) const CHUNK: usize = 1000;

/// Headers as a JSON array of `[name, value]` pairs: the SQLite adapter's encoding, so that
/// both read back identically.
pub(super) fn headers_json(headers: &[(String, String)]) -> String {
    // Serializing strings cannot fail.
    let json = serde_json::to_string(headers).unwrap_or_else(|_| "[]".into());
    // JSON writes NUL as the escape `\u0000`, so this never copies; it keeps the rule that no
    // NUL reaches a `text` column in one place.
    match text(&json) {
        Cow::Borrowed(_) => json,
        Cow::Owned(clean) => clean,
    }
}

/// Forwarded headers as stored: `NULL` when there are none (as the SQLite adapter stores them).
fn forward_json(headers: &[(String, String)]) -> Option<String> {
    (!headers.is_empty()).then(|| headers_json(headers))
}

pub(super) async fn insert_events(
    pool: &PgPool,
    events: &[NewEvent],
) -> Result<Vec<InsertOutcome>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    retry_transient!("insert_events", insert_events_once(pool, events).await)
}

async fn insert_events_once(pool: &PgPool, events: &[NewEvent]) -> Result<Vec<InsertOutcome>> {
    let mut tx = pool.begin().await?;
    // Ids as stored (ids never hold NUL in practice; the rule is applied all the same).
    let mut inserted = HashSet::with_capacity(events.len());
    for chunk in events.chunks(CHUNK) {
        // Only the dedup index may absorb a conflict; an id collision still fails the batch.
        // A concurrent, uncommitted insert of the same key makes this wait for its outcome.
        let rows = sqlx::query(
            "INSERT INTO events (id, source, tenant, event_type, dedup_key, headers, content_type, body, received_at, forward_headers) \
             SELECT id, source, tenant, event_type, dedup_key, headers, content_type, body, received_at, forward_headers \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::text[], $8::bytea[], $9::bigint[], $10::text[]) WITH ORDINALITY \
                  AS v(id, source, tenant, event_type, dedup_key, headers, content_type, body, received_at, forward_headers, ord) \
             ORDER BY ord \
             ON CONFLICT (source, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING RETURNING id",
        )
        .bind(chunk.iter().map(|e| text(&e.id)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| text(&e.source)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| opt_text(e.tenant.as_deref())).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| opt_text(e.event_type.as_deref())).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| opt_text(e.dedup_key.as_deref())).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| headers_json(&e.headers)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| opt_text(e.content_type.as_deref())).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.body.as_slice()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| e.received_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|e| forward_json(&e.forward_headers)).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            inserted.insert(row.try_get::<String, _>(0)?);
        }
    }
    let stored = |e: &NewEvent| inserted.contains(text(&e.id).as_ref());

    // The rest are duplicates (of a stored event or of one earlier in the batch): name the
    // original, which this transaction now sees committed or inserted.
    let duplicates: Vec<&NewEvent> = events.iter().filter(|e| !stored(e)).collect();
    let mut originals = HashMap::with_capacity(duplicates.len());
    for chunk in duplicates.chunks(CHUNK) {
        let rows = sqlx::query(
            "SELECT k.source, k.dedup_key, e.id \
             FROM UNNEST($1::text[], $2::text[]) AS k(source, dedup_key) \
             JOIN events e ON e.source = k.source AND e.dedup_key = k.dedup_key",
        )
        .bind(chunk.iter().map(|e| text(&e.source)).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|e| opt_text(e.dedup_key.as_deref()))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let key: (String, String) = (row.try_get(0)?, row.try_get(1)?);
            originals.insert(key, row.try_get::<String, _>(2)?);
        }
    }
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        if stored(event) {
            outcomes.push(InsertOutcome::Inserted);
            continue;
        }
        let original_id = event
            .dedup_key
            .as_deref()
            .and_then(|key| originals.get(&(text(&event.source).into(), text(key).into())))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "event {} was neither stored nor a duplicate of a stored event",
                    event.id
                ))
            })?;
        outcomes.push(InsertOutcome::Duplicate {
            original_id: original_id.clone(),
        });
    }

    let deliveries: Vec<(&str, &NewDelivery, UnixMillis)> = events
        .iter()
        .filter(|e| stored(e))
        .flat_map(|e| {
            e.deliveries
                .iter()
                .map(move |d| (e.id.as_str(), d, e.received_at))
        })
        .collect();
    lock_ordering_keys(&mut tx, deliveries.iter().map(|(_, d, _)| *d)).await?;
    for chunk in deliveries.chunks(CHUNK) {
        insert_deliveries(&mut tx, chunk).await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Inserts `(event id, delivery, due/created time)` rows as pending deliveries. Deliveries
/// with an ordering key need [`lock_ordering_keys`] first, in the same transaction.
pub(super) async fn insert_deliveries(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[(&str, &NewDelivery, UnixMillis)],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO deliveries (id, event_id, route_id, destination, status, next_attempt_at, created_at, updated_at, ordering_key) \
         SELECT id, event_id, route_id, destination, 'pending', at, at, at, ordering_key \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) WITH ORDINALITY \
              AS v(id, event_id, route_id, destination, at, ordering_key, ord) \
         ORDER BY ord",
    )
    .bind(rows.iter().map(|(_, d, _)| text(&d.id)).collect::<Vec<_>>())
    .bind(rows.iter().map(|(e, _, _)| text(e)).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, d, _)| text(&d.route_id)).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, d, _)| text(&d.destination)).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, _, at)| *at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, d, _)| opt_text(d.ordering_key.as_deref())).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Makes the deliveries of each ordering key among `deliveries` commit in `seq` order, across
/// nodes: call before inserting them, in the inserting transaction.
///
/// An ordered claim hands out a delivery when no earlier one (lower `seq`) of its key is left,
/// as far as its snapshot shows. `seq` is drawn at insert, though, and two nodes' transactions
/// may commit in either order: without this, a claim could see (and send) a key's later
/// delivery while an earlier one, drawn first, is still uncommitted. So each transaction takes
/// a transaction-scoped advisory lock per `(destination, ordering key)` it adds to, held until
/// it ends: transactions adding to one key draw their `seq`s and commit one after the other,
/// and every snapshot sees a prefix of each key. The locks are taken in one statement, in
/// sorted order, so two batches never deadlock over them; unordered deliveries take none.
/// Different keys sharing a lock (a hash collision) only wait for each other.
pub(super) async fn lock_ordering_keys(
    tx: &mut Transaction<'_, Postgres>,
    deliveries: impl Iterator<Item = &NewDelivery>,
) -> Result<()> {
    let mut locks: Vec<i64> = deliveries
        .filter_map(|d| {
            let key = d.ordering_key.as_deref()?;
            Some(ordering_lock(&text(&d.destination), &text(key)))
        })
        .collect();
    if locks.is_empty() {
        return Ok(());
    }
    locks.sort_unstable();
    locks.dedup();
    // `UNNEST` yields (and the select list locks) in array order.
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM UNNEST($1::bigint[]) AS v(k)")
        .bind(locks)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The advisory lock key of one ordering key: 64-bit FNV-1a of the stored destination and key.
/// It must be the same on every node and build, hence no `std` hasher.
fn ordering_lock(destination: &str, key: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    // 0xff never occurs in UTF-8: the separator keeps ("ab", "c") apart from ("a", "bc").
    let bytes = destination.bytes().chain([0xff]).chain(key.bytes());
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash as i64
}

pub(super) async fn record_rejections(
    pool: &PgPool,
    rejections: &[Rejection],
    keep_per_source: u32,
) -> Result<()> {
    if rejections.is_empty() {
        return Ok(());
    }
    retry_transient!(
        "record_rejections",
        record_rejections_once(pool, rejections, keep_per_source).await
    )
}

async fn record_rejections_once(
    pool: &PgPool,
    rejections: &[Rejection],
    keep_per_source: u32,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    for chunk in rejections.chunks(CHUNK) {
        sqlx::query(
            "INSERT INTO rejections (source, received_at, code, detail, headers, body_len) \
             SELECT source, received_at, code, detail, headers, body_len \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
                  WITH ORDINALITY AS v(source, received_at, code, detail, headers, body_len, ord) \
             ORDER BY ord",
        )
        .bind(chunk.iter().map(|r| text(&r.source)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.received_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| text(&r.code)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| text(&r.detail)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| headers_json(&r.headers)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|r| r.body_len as i64).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    let mut sources: Vec<Cow<'_, str>> = rejections.iter().map(|r| text(&r.source)).collect();
    sources.sort_unstable();
    sources.dedup();
    for source in sources {
        sqlx::query(
            "DELETE FROM rejections WHERE source = $1 AND seq <= \
             (SELECT seq FROM rejections WHERE source = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
        )
        .bind(&source)
        .bind(i64::from(keep_per_source))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn claim_due(pool: &PgPool, claim: &Claim<'_>) -> Result<Vec<ClaimedDelivery>> {
    if claim.limit == 0 {
        return Ok(Vec::new());
    }
    // Rows another node is claiming right now are skipped, not waited for; a row claimed and
    // committed since this statement's snapshot is re-checked against `status` and dropped.
    let mut q = QueryBuilder::<Postgres>::new(
        "WITH due AS (SELECT c.seq FROM deliveries c WHERE c.status = 'pending' AND c.next_attempt_at <= ",
    );
    q.push_bind(claim.now);
    if let Some(destination) = claim.destination {
        q.push(" AND c.destination = ").push_bind(text(destination));
    }
    if claim.ordered {
        // Only the head of each ordering key: nothing earlier of the same key may still be
        // waiting, in flight, or dead-lettered with its hold in place (the SQLite condition).
        //
        // With several nodes: `NOT EXISTS` judges by this statement's snapshot, i.e. by
        // committed state. A head that another node is claiming right now is skipped (it is
        // locked), but it is still `pending` in this snapshot, so the deliveries behind it are
        // excluded too; once that claim commits the head is `in_flight`, which excludes them
        // as well. An earlier delivery goes from "done" back to blocking only by replay (then
        // SQLite would hand out both as well), and a newly inserted one always has a higher
        // `seq` than what is committed of its key (`lock_ordering_keys`), so a snapshot never
        // shows a key's later delivery without the earlier ones.
        q.push(
            " AND (c.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM deliveries e \
             WHERE e.destination = c.destination AND e.ordering_key = c.ordering_key \
             AND e.seq < c.seq AND (e.status IN ('pending', 'in_flight') \
             OR (e.status = 'failed' AND NOT e.hold_released))))",
        );
    }
    if !claim.exclude.is_empty() {
        let exclude: Vec<Cow<'_, str>> = claim.exclude.iter().map(|d| text(d)).collect();
        q.push(" AND c.destination <> ALL(")
            .push_bind(exclude)
            .push(")");
    }
    q.push(if claim.ordered {
        " ORDER BY c.seq LIMIT "
    } else {
        " ORDER BY c.next_attempt_at, c.seq LIMIT "
    })
    .push_bind(i64::try_from(claim.limit).unwrap_or(i64::MAX))
    .push(
        " FOR UPDATE OF c SKIP LOCKED) UPDATE deliveries d SET status = 'in_flight', lease_owner = ",
    )
    .push_bind(text(claim.owner))
    .push(", lease_until = ")
    .push_bind(claim.lease_until)
    .push(", updated_at = ")
    .push_bind(claim.now)
    .push(
        " FROM due WHERE d.seq = due.seq RETURNING d.seq, d.next_attempt_at, d.id, \
         d.event_id, d.route_id, d.destination, d.attempts, d.run_attempts, d.ordering_key, \
         d.exhausted",
    );
    let rows = q.build().fetch_all(pool).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        let order = if claim.ordered {
            (0, seq)
        } else {
            (row.try_get::<i64, _>("next_attempt_at")?, seq)
        };
        claimed.push((
            order,
            ClaimedDelivery {
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
                exhausted_before: row.try_get("exhausted")?,
                body_pruned: false,
                correlation: placeholder_correlation(),
            },
        ));
    }
    // `RETURNING` has no order of its own: hand the batch out in claim order.
    claimed.sort_unstable_by_key(|(order, _)| *order);
    let mut claimed: Vec<ClaimedDelivery> = claimed.into_iter().map(|(_, c)| c).collect();

    let mut event_ids: Vec<&str> = claimed.iter().map(|c| c.event_id.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let mut events = HashMap::with_capacity(event_ids.len());
    for chunk in event_ids.chunks(CHUNK) {
        let rows = sqlx::query(
            "SELECT id, source, tenant, event_type, received_at, forward_headers, headers, \
             body_pruned_at, content_type, body FROM events WHERE id = ANY($1::text[])",
        )
        .bind(chunk)
        .fetch_all(pool)
        .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            let event = ClaimedEvent {
                source: row.try_get("source")?,
                tenant: row.try_get("tenant")?,
                event_type: row.try_get("event_type")?,
                received_at: row.try_get("received_at")?,
                forward_headers: super::reads::parse_headers(row.try_get("forward_headers")?)?,
                body_pruned: row.try_get::<Option<i64>, _>("body_pruned_at")?.is_some(),
                content_type: row.try_get("content_type")?,
                body: row.try_get("body")?,
                correlation: switchboard_core::correlation::Correlation::derive(
                    &id,
                    &super::reads::parse_headers(row.try_get("headers")?)?,
                ),
            };
            events.insert(id, event);
        }
    }
    for delivery in &mut claimed {
        let event = events.get(&delivery.event_id).ok_or_else(|| {
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
    Ok(claimed)
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

pub(super) async fn complete(pool: &PgPool, completions: &[Completion]) -> Result<()> {
    if completions.is_empty() {
        return Ok(());
    }
    retry_transient!("complete", complete_once(pool, completions).await)
}

async fn complete_once(pool: &PgPool, completions: &[Completion]) -> Result<()> {
    let now = switchboard_core::time::now_millis();
    let mut tx = pool.begin().await?;
    for chunk in completions.chunks(CHUNK) {
        let attempts: Vec<&NewAttempt> = chunk.iter().map(|c| &c.attempt).collect();
        sqlx::query(
            "INSERT INTO attempts (delivery_id, event_id, destination, attempt, started_at, latency_ms, \
             outcome, status_code, error, request_url, response_headers, response_body) \
             SELECT delivery_id, event_id, destination, attempt, started_at, latency_ms, outcome, \
             status_code, error, request_url, response_headers, response_body \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], \
                         $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::bytea[]) \
                  WITH ORDINALITY AS v(delivery_id, event_id, destination, attempt, started_at, \
                  latency_ms, outcome, status_code, error, request_url, response_headers, \
                  response_body, ord) \
             ORDER BY ord",
        )
        .bind(attempts.iter().map(|a| text(&a.delivery_id)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| text(&a.event_id)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| text(&a.destination)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| i64::from(a.attempt)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.started_at).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.latency_ms as i64).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| text(a.outcome)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.status_code.map(i64::from)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| opt_text(a.error.as_deref())).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| text(&a.request_url)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| headers_json(&a.response_headers)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.response_body.as_slice()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;

        let steps: Vec<(&str, UnixMillis, Option<UnixMillis>)> = chunk
            .iter()
            .map(|c| match c.next {
                NextStep::Succeeded => ("succeeded", now, Some(now)),
                NextStep::Failed => ("failed", now, Some(now)),
                NextStep::Filtered => ("filtered", now, Some(now)),
                NextStep::RetryAt(at) => ("pending", at, None),
            })
            .collect();
        sqlx::query(
            "UPDATE deliveries SET status = v.status, attempts = v.attempts, \
             run_attempts = v.run_attempts, next_attempt_at = v.next_at, \
             last_status = v.last_status, last_error = v.last_error, \
             completed_at = v.completed_at, lease_owner = NULL, lease_until = NULL, \
             exhausted = (deliveries.exhausted OR v.status = 'failed'), updated_at = $10 \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], \
                         $7::bigint[], $8::text[], $9::bigint[]) \
                  AS v(id, owner, status, attempts, run_attempts, next_at, last_status, last_error, completed_at) \
             WHERE deliveries.id = v.id AND deliveries.status = 'in_flight' \
             AND deliveries.lease_owner = v.owner",
        )
        .bind(attempts.iter().map(|a| text(&a.delivery_id)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|c| text(&c.lease_owner)).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| i64::from(a.attempt)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| i64::from(a.run_attempt)).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| a.status_code.map(i64::from)).collect::<Vec<_>>())
        .bind(attempts.iter().map(|a| opt_text(a.error.as_deref())).collect::<Vec<_>>())
        .bind(steps.iter().map(|s| s.2).collect::<Vec<_>>())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn release_leases(
    pool: &PgPool,
    owner: Option<&str>,
    now: UnixMillis,
) -> Result<u64> {
    let result = match owner {
        Some(owner) => retry_transient!(
            "release_leases",
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = $1 \
                 WHERE status = 'in_flight' AND lease_owner = $2",
            )
            .bind(now)
            .bind(text(owner))
            .execute(pool)
            .await
            .map_err(StoreError::from)
        )?,
        None => retry_transient!(
            "release_leases",
            sqlx::query(
                "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = $1 \
                 WHERE status = 'in_flight' AND lease_until < $1",
            )
            .bind(now)
            .execute(pool)
            .await
            .map_err(StoreError::from)
        )?,
    };
    Ok(result.rows_affected())
}

pub(super) async fn replay(
    pool: &PgPool,
    selector: &ReplaySelector,
    now: UnixMillis,
) -> Result<u64> {
    // Only deliveries whose event still has its body (there is nothing to send otherwise).
    // The event row is share-locked: a concurrent `prune_payloads` (which locks it for update
    // and re-checks for pending work after) either waits for this replay and then spares the
    // event, or has pruned it already, and this sees so once the lock is granted.
    const SET: &str = "UPDATE deliveries SET status = 'pending', run_attempts = 0, \
                       next_attempt_at = $1, completed_at = NULL, updated_at = $1 WHERE \
                       EXISTS (SELECT 1 FROM events ev WHERE ev.id = deliveries.event_id \
                       AND ev.body_pruned_at IS NULL FOR KEY SHARE) AND ";
    let result = match selector {
        ReplaySelector::Delivery(id) => retry_transient!(
            "replay",
            sqlx::query(AssertSqlSafe(format!(
                "{SET} id = $2 AND status <> 'in_flight'"
            )))
            .bind(now)
            .bind(text(id))
            .execute(pool)
            .await
            .map_err(StoreError::from)
        )?,
        ReplaySelector::Event(id) => retry_transient!(
            "replay",
            sqlx::query(AssertSqlSafe(format!(
                "{SET} event_id = $2 AND status <> 'in_flight'"
            )))
            .bind(now)
            .bind(text(id))
            .execute(pool)
            .await
            .map_err(StoreError::from)
        )?,
        ReplaySelector::FailedForDestination { destination, since } => retry_transient!(
            "replay",
            sqlx::query(AssertSqlSafe(format!(
                "{SET} destination = $2 AND status = 'failed' AND updated_at >= $3"
            )))
            .bind(now)
            .bind(text(destination))
            .bind(since)
            .execute(pool)
            .await
            .map_err(StoreError::from)
        )?,
    };
    Ok(result.rows_affected())
}
