//! The live feed on PostgreSQL. Rows carry the id of the transaction that wrote them
//! (`feed_xid`, defaulting to `pg_current_xact_id()`); a page takes only rows of transactions
//! older than the oldest one still running (`pg_snapshot_xmin`), a set that can no longer grow,
//! ordered by `(feed_xid, seq)`. A transaction that commits later has a larger id than that
//! horizon, so it lands after every position already handed out, whichever node wrote it.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};
use switchboard_core::DeliveryStatus;

use super::reads::{EVENT_COLUMNS, event_from_row, parse_headers};
use super::text;
use crate::feed::{
    FeedAttempt, FeedCursor, FeedFilter, FeedPage, FeedPos, RawPage, RawTable, merge,
};
use crate::model::AttemptRecord;
use crate::{Result, StoreError};

/// The oldest transaction id still running (or the next one): everything below is final.
async fn horizon(pool: &PgPool) -> Result<u64> {
    let xmin: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await?;
    xmin.parse()
        .map_err(|_| StoreError::Corrupt(format!("snapshot xmin `{xmin}`")))
}

fn pos_from_row(row: &PgRow) -> Result<FeedPos> {
    let xid: String = row.try_get("feed_xid")?;
    Ok(FeedPos {
        xid: xid
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("feed_xid `{xid}`")))?,
        seq: row.try_get("seq")?,
    })
}

fn push_filter(q: &mut QueryBuilder<Postgres>, filter: &FeedFilter, events: &str) {
    if !filter.sources.is_empty() {
        let sources: Vec<String> = filter
            .sources
            .iter()
            .map(|s| text(s).into_owned())
            .collect();
        q.push(format!(" AND {events}.source = ANY("))
            .push_bind(sources)
            .push(")");
    }
    if !filter.event_types.is_empty() {
        let types: Vec<String> = filter
            .event_types
            .iter()
            .map(|s| text(s).into_owned())
            .collect();
        q.push(format!(" AND {events}.event_type = ANY("))
            .push_bind(types)
            .push(")");
    }
}

/// `(t.feed_xid, t.seq) > after AND t.feed_xid < horizon`.
fn push_window(q: &mut QueryBuilder<Postgres>, table: &str, after: FeedPos, horizon: u64) {
    q.push(format!("({table}.feed_xid, {table}.seq) > ("))
        .push_bind(after.xid.to_string())
        .push("::xid8, ")
        .push_bind(after.seq)
        .push(format!(") AND {table}.feed_xid < "))
        .push_bind(horizon.to_string())
        .push("::xid8");
}

pub(super) async fn head(pool: &PgPool) -> Result<FeedCursor> {
    let end = FeedPos::before_xid(horizon(pool).await?);
    Ok(FeedCursor {
        events: end,
        attempts: end,
    })
}

pub(super) async fn after(
    pool: &PgPool,
    after: &FeedCursor,
    filter: &FeedFilter,
    limit: u32,
) -> Result<FeedPage> {
    let limit = limit.max(1) as usize;
    let fetch = limit as i64 + 1;
    let horizon = horizon(pool).await?;
    let end = FeedPos::before_xid(horizon);
    let attempts = if filter.no_attempts {
        RawTable {
            rows: Vec::new(),
            end: after.attempts,
        }
    } else {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT a.feed_xid::text AS feed_xid, a.seq AS seq, a.delivery_id, a.event_id, \
             a.destination, a.attempt, a.started_at, a.latency_ms, a.outcome, a.status_code, \
             a.error, a.request_url, a.response_headers, a.response_body, e.source, e.event_type, \
             e.tenant, d.route_id, d.status AS delivery_status, d.attempts AS delivery_attempts \
             FROM attempts a JOIN events e ON e.id = a.event_id JOIN deliveries d ON d.id = a.delivery_id \
             WHERE ",
        );
        push_window(&mut q, "a", after.attempts, horizon);
        push_filter(&mut q, filter, "e");
        q.push(" ORDER BY a.feed_xid, a.seq LIMIT ")
            .push_bind(fetch);
        let rows = q.build().fetch_all(pool).await?;
        RawTable {
            rows: rows
                .iter()
                .map(|row| Ok((pos_from_row(row)?, attempt_from_row(row)?)))
                .collect::<Result<_>>()?,
            end: end.max(after.attempts),
        }
    };
    let events = if filter.no_events {
        RawTable {
            rows: Vec::new(),
            end: after.events,
        }
    } else {
        let body = if filter.with_body { ", body" } else { "" };
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT events.feed_xid::text AS feed_xid, {EVENT_COLUMNS}{body} FROM events WHERE "
        ));
        push_window(&mut q, "events", after.events, horizon);
        push_filter(&mut q, filter, "events");
        q.push(" ORDER BY events.feed_xid, events.seq LIMIT ")
            .push_bind(fetch);
        let rows = q.build().fetch_all(pool).await?;
        RawTable {
            rows: rows
                .iter()
                .map(|row| Ok((pos_from_row(row)?, event_from_row(row, filter.with_body)?)))
                .collect::<Result<_>>()?,
            end: end.max(after.events),
        }
    };
    Ok(merge(*after, RawPage { events, attempts }, limit))
}

fn attempt_from_row(row: &PgRow) -> Result<FeedAttempt> {
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
