//! The live feed on SQLite: one writer at a time means `seq` is commit order, so a position is
//! `(0, seq)`. Attempts are bounded first: every attempt up to that bound belongs to an event
//! committed before the events' bound is read, so a page never shows an attempt before its event.

use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Row, Sqlite, SqlitePool};
use switchboard_core::DeliveryStatus;

use super::reads::{EVENT_COLUMNS, event_from_row, parse_headers};
use crate::feed::{
    FeedAttempt, FeedCursor, FeedFilter, FeedPage, FeedPos, RawPage, RawTable, merge,
};
use crate::model::AttemptRecord;
use crate::{Result, StoreError};

fn pos(seq: i64) -> FeedPos {
    FeedPos { xid: 0, seq }
}

async fn max_seq(pool: &SqlitePool, table: &str) -> Result<i64> {
    let max: Option<i64> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT MAX(seq) FROM {table}")))
            .fetch_one(pool)
            .await?;
    Ok(max.unwrap_or(0))
}

fn push_filter(q: &mut QueryBuilder<Sqlite>, filter: &FeedFilter, events: &str) {
    if !filter.sources.is_empty() {
        q.push(format!(" AND {events}.source IN ("));
        let mut list = q.separated(", ");
        for source in &filter.sources {
            list.push_bind(source.clone());
        }
        q.push(")");
    }
    if !filter.event_types.is_empty() {
        q.push(format!(" AND {events}.event_type IN ("));
        let mut list = q.separated(", ");
        for event_type in &filter.event_types {
            list.push_bind(event_type.clone());
        }
        q.push(")");
    }
}

pub(super) async fn head(pool: &SqlitePool) -> Result<FeedCursor> {
    let attempts = max_seq(pool, "attempts").await?;
    let events = max_seq(pool, "events").await?;
    Ok(FeedCursor {
        events: pos(events),
        attempts: pos(attempts),
    })
}

pub(super) async fn after(
    pool: &SqlitePool,
    after: &FeedCursor,
    filter: &FeedFilter,
    limit: u32,
) -> Result<FeedPage> {
    let limit = limit.max(1) as usize;
    let fetch = limit as i64 + 1;
    let attempts = if filter.no_attempts {
        RawTable {
            rows: Vec::new(),
            end: after.attempts,
        }
    } else {
        let head = max_seq(pool, "attempts").await?;
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT a.seq AS seq, a.delivery_id, a.event_id, a.destination, a.attempt, a.started_at, \
             a.latency_ms, a.outcome, a.status_code, a.error, a.request_url, a.response_headers, \
             a.response_body, e.source, e.event_type, e.tenant, d.route_id, d.status AS delivery_status, \
             d.attempts AS delivery_attempts \
             FROM attempts a JOIN events e ON e.id = a.event_id JOIN deliveries d ON d.id = a.delivery_id \
             WHERE a.seq > ",
        );
        q.push_bind(after.attempts.seq)
            .push(" AND a.seq <= ")
            .push_bind(head);
        push_filter(&mut q, filter, "e");
        q.push(" ORDER BY a.seq LIMIT ").push_bind(fetch);
        let rows = q.build().fetch_all(pool).await?;
        RawTable {
            rows: rows
                .iter()
                .map(|row| Ok((pos(row.try_get("seq")?), attempt_from_row(row)?)))
                .collect::<Result<_>>()?,
            end: pos(head).max(after.attempts),
        }
    };
    let events = if filter.no_events {
        RawTable {
            rows: Vec::new(),
            end: after.events,
        }
    } else {
        let head = max_seq(pool, "events").await?;
        let body = if filter.with_body { ", body" } else { "" };
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {EVENT_COLUMNS}{body} FROM events WHERE seq > "
        ));
        q.push_bind(after.events.seq)
            .push(" AND seq <= ")
            .push_bind(head);
        push_filter(&mut q, filter, "events");
        q.push(" ORDER BY seq LIMIT ").push_bind(fetch);
        let rows = q.build().fetch_all(pool).await?;
        RawTable {
            rows: rows
                .iter()
                .map(|row| {
                    Ok((
                        pos(row.try_get("seq")?),
                        event_from_row(row, filter.with_body)?,
                    ))
                })
                .collect::<Result<_>>()?,
            end: pos(head).max(after.events),
        }
    };
    Ok(merge(*after, RawPage { events, attempts }, limit))
}

fn attempt_from_row(row: &SqliteRow) -> Result<FeedAttempt> {
    let status: String = row.try_get("delivery_status")?;
    Ok(FeedAttempt {
        attempt: AttemptRecord {
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
        },
        source: row.try_get("source")?,
        event_type: row.try_get("event_type")?,
        tenant: row.try_get("tenant")?,
        route_id: row.try_get("route_id")?,
        delivery_status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status `{status}`")))?,
        delivery_attempts: row.try_get::<i64, _>("delivery_attempts")? as u32,
    })
}
