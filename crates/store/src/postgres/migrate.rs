//! Versioned schema migrations, embedded in the binary and applied at start.
//!
//! The SQLite runner's rules (files apply in version order, each in its own transaction, each
//! version recorded once in `schema_migrations`, a database newer than the build is refused),
//! plus one for several nodes: the whole run holds a session advisory lock, so nodes starting
//! together take turns and every migration is applied exactly once. Version numbers are the
//! SQLite ones, so both adapters report the same schema version.

use sqlx::PgPool;
use sqlx::pool::PoolConnection;
use sqlx::postgres::Postgres;

use crate::Result;

/// `(version, name, sql)` in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "spine",
        include_str!("../../migrations/postgres/0001_spine.sql"),
    ),
    (
        2,
        "inbound",
        include_str!("../../migrations/postgres/0002_inbound.sql"),
    ),
    (
        3,
        "management",
        include_str!("../../migrations/postgres/0003_management.sql"),
    ),
    (
        4,
        "claim_by_destination",
        include_str!("../../migrations/postgres/0004_claim_by_destination.sql"),
    ),
    (
        5,
        "outbound",
        include_str!("../../migrations/postgres/0005_outbound.sql"),
    ),
    (
        6,
        "nodes",
        include_str!("../../migrations/postgres/0006_nodes.sql"),
    ),
    (
        7,
        "leases",
        include_str!("../../migrations/postgres/0007_leases.sql"),
    ),
    (
        8,
        "connections",
        include_str!("../../migrations/postgres/0008_connections.sql"),
    ),
    (
        9,
        "syncs",
        include_str!("../../migrations/postgres/0009_syncs.sql"),
    ),
    (
        10,
        "audit",
        include_str!("../../migrations/postgres/0010_audit.sql"),
    ),
    (
        11,
        "feed",
        include_str!("../../migrations/postgres/0011_feed.sql"),
    ),
    (
        12,
        "dashboard",
        include_str!("../../migrations/postgres/0012_dashboard.sql"),
    ),
];

/// The newest schema version this build knows (the same as the SQLite adapter's).
pub const LATEST: i64 = 12;

/// Key of the advisory lock held while migrating ("SWBDMIGR"). Database-wide: nodes using
/// different schemas of one database also take turns, which costs nothing worth avoiding.
const LOCK_KEY: i64 = 0x5357_4244_4d49_4752;

pub(super) async fn run(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let result = apply(&mut conn).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *conn)
        .await;
    if let Err(error) = unlocked {
        // A session lock lives as long as its connection: end the session rather than return a
        // connection that may still hold it.
        tracing::warn!(%error, "could not release the migration lock; closing its connection");
        let _ = conn.close().await;
        result?;
        return Err(error.into());
    }
    result
}

async fn apply(conn: &mut PoolConnection<Postgres>) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut **conn)
    .await?;
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut **conn)
        .await?;
    let current = current.unwrap_or(0);
    if current > LATEST {
        return Err(crate::StoreError::Corrupt(format!(
            "database schema version {current} is newer than this build ({LATEST}); upgrade Switchboard"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(name)
        .bind(switchboard_core::time::now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied migration");
    }
    Ok(())
}
