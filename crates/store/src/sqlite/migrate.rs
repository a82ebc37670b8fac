//! Versioned schema migrations, embedded in the binary and applied at start.
//!
//! A deliberately small runner instead of sqlx's `migrate!` macro: it keeps proc-macro builds of
//! the SQLite driver out of compile times, and the rules are simple: files apply in version
//! order, each in its own transaction, and each version is recorded once.

use sqlx::SqlitePool;

use crate::Result;

/// `(version, name, sql)` in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "spine",
        include_str!("../../migrations/sqlite/0001_spine.sql"),
    ),
    (
        2,
        "inbound",
        include_str!("../../migrations/sqlite/0002_inbound.sql"),
    ),
    (
        3,
        "management",
        include_str!("../../migrations/sqlite/0003_management.sql"),
    ),
    (
        4,
        "claim_by_destination",
        include_str!("../../migrations/sqlite/0004_claim_by_destination.sql"),
    ),
    (
        5,
        "outbound",
        include_str!("../../migrations/sqlite/0005_outbound.sql"),
    ),
    (
        6,
        "nodes",
        include_str!("../../migrations/sqlite/0006_nodes.sql"),
    ),
    (
        7,
        "leases",
        include_str!("../../migrations/sqlite/0007_leases.sql"),
    ),
    (
        8,
        "connections",
        include_str!("../../migrations/sqlite/0008_connections.sql"),
    ),
    (
        9,
        "syncs",
        include_str!("../../migrations/sqlite/0009_syncs.sql"),
    ),
    (
        10,
        "audit",
        include_str!("../../migrations/sqlite/0010_audit.sql"),
    ),
    (
        11,
        "feed",
        include_str!("../../migrations/sqlite/0011_feed.sql"),
    ),
    (
        12,
        "dashboard",
        include_str!("../../migrations/sqlite/0012_dashboard.sql"),
    ),
];

/// The newest schema version this build knows.
pub const LATEST: i64 = 12;

pub(super) async fn run(pool: &SqlitePool) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(pool)
        .await?;
    let current = current.unwrap_or(0);
    if current > LATEST {
        return Err(crate::StoreError::Corrupt(format!(
            "database schema version {current} is newer than this build ({LATEST}); upgrade Switchboard"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > current) {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
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
