//! The health overview: a few indexed reads on the read-only pool.

use sqlx::{PgPool, Row};
use switchboard_core::time::UnixMillis;

use crate::Result;
use crate::model::{LeaseRecord, NodeRecord, Overview};

pub(super) async fn overview(
    pool: &PgPool,
    sources: &[String],
    now: UnixMillis,
    node_ttl_ms: i64,
) -> Result<Overview> {
    let mut out = Overview::default();
    // One index probe per source (`events_source_seq`): the newest row of the source.
    for source in sources {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT received_at FROM events WHERE source = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(source)
        .fetch_optional(pool)
        .await?;
        if let Some(at) = last {
            out.last_event_at.push((source.clone(), at));
        }
    }
    let rows = sqlx::query(
        "SELECT destination, \
                COUNT(*) FILTER (WHERE status = 'pending') AS pending, \
                COUNT(*) FILTER (WHERE status = 'in_flight') AS in_flight \
         FROM deliveries WHERE status IN ('pending', 'in_flight') \
         GROUP BY destination ORDER BY destination",
    )
    .fetch_all(pool)
    .await?;
    for row in rows {
        out.backlog.push((
            row.try_get("destination")?,
            row.try_get::<i64, _>("pending")? as u64,
            row.try_get::<i64, _>("in_flight")? as u64,
        ));
    }
    let rows = sqlx::query(
        "SELECT id, started_at, last_seen FROM nodes WHERE last_seen >= $1 ORDER BY id",
    )
    .bind(now - node_ttl_ms)
    .fetch_all(pool)
    .await?;
    for row in rows {
        out.nodes.push(NodeRecord {
            id: row.try_get("id")?,
            started_at: row.try_get("started_at")?,
            last_seen: row.try_get("last_seen")?,
        });
    }
    let rows = sqlx::query(
        "SELECT name, owner, expires_at FROM leases WHERE expires_at > $1 ORDER BY name",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    for row in rows {
        out.leases.push(LeaseRecord {
            name: row.try_get("name")?,
            owner: row.try_get("owner")?,
            expires_at: row.try_get("expires_at")?,
        });
    }
    Ok(out)
}
