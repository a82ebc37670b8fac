//! Management data: sealed resources, API tokens, dashboard sign-outs, idempotency keys.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use switchboard_core::time::UnixMillis;

use crate::model::{IdempotencyState, ResourceRecord, TokenRecord};
use crate::{Result, StoreError};

/// How long idempotency records are kept.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// How long an unfinished first request may hold its key.
pub const IDEMPOTENCY_STALE_MS: i64 = 5 * 60 * 1000;

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(super) async fn put_resource(
    pool: &SqlitePool,
    r: &ResourceRecord,
    create_only: bool,
) -> Result<()> {
    let sql = if create_only {
        "INSERT INTO resources (kind, id, sealed, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
    } else {
        "INSERT INTO resources (kind, id, sealed, created_at, updated_at) VALUES (?, ?, ?, ?, ?) \
         ON CONFLICT (kind, id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at"
    };
    sqlx::query(sql)
        .bind(&r.kind)
        .bind(&r.id)
        .bind(&r.sealed)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict
            } else {
                e.into()
            }
        })?;
    Ok(())
}

pub(super) async fn list_resources(pool: &SqlitePool) -> Result<Vec<ResourceRecord>> {
    let rows = sqlx::query(
        "SELECT kind, id, sealed, created_at, updated_at FROM resources ORDER BY kind, id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ResourceRecord {
                kind: row.try_get("kind")?,
                id: row.try_get("id")?,
                sealed: row.try_get("sealed")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}

pub(super) async fn delete_resource(pool: &SqlitePool, kind: &str, id: &str) -> Result<bool> {
    let result = sqlx::query("DELETE FROM resources WHERE kind = ? AND id = ?")
        .bind(kind)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(result.rows_affected() > 0)
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord> {
    let scopes: String = row.try_get("scopes")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        hash: row.try_get("hash")?,
        prefix: row.try_get("prefix")?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, hash, prefix, scopes, created_at, revoked_at";

pub(super) async fn create_token(pool: &SqlitePool, t: &TokenRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO tokens (id, name, hash, prefix, scopes, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.hash)
    .bind(&t.prefix)
    .bind(t.scopes.join(" "))
    .bind(t.created_at)
    .bind(t.revoked_at)
    .execute(pool)
    .await
    .map_err(|e| if is_unique_violation(&e) { StoreError::Conflict } else { e.into() })?;
    Ok(())
}

pub(super) async fn token_by_hash(pool: &SqlitePool, hash: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?"
    )))
    .bind(hash)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(token_from_row).transpose()
}

pub(super) async fn list_tokens(pool: &SqlitePool) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(token_from_row).collect()
}

pub(super) async fn revoke_token(pool: &SqlitePool, id: &str, now: UnixMillis) -> Result<bool> {
    let result =
        sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(pool)
            .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) async fn record_sign_out(
    pool: &SqlitePool,
    session_id: &str,
    expires_at: UnixMillis,
    now: UnixMillis,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Sign-outs live until the session would have expired anyway (8 hours at most), so the
    // table stays as small as the number of sessions signed out in that time.
    sqlx::query("DELETE FROM ui_sign_outs WHERE expires_at <= ?")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO ui_sign_outs (session_id, expires_at) VALUES (?, ?) \
         ON CONFLICT (session_id) DO UPDATE SET expires_at = MAX(expires_at, excluded.expires_at)",
    )
    .bind(session_id)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn is_signed_out(
    pool: &SqlitePool,
    session_id: &str,
    now: UnixMillis,
) -> Result<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM ui_sign_outs WHERE session_id = ? AND expires_at > ?")
            .bind(session_id)
            .bind(now)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

pub(super) async fn idempotency_begin(
    pool: &SqlitePool,
    scope: &str,
    key: &str,
    request_hash: &str,
    now: UnixMillis,
) -> Result<IdempotencyState> {
    // Records are kept for a day; a first request that never finished (the process died) stops
    // blocking its key after five minutes.
    sqlx::query("DELETE FROM idempotency WHERE created_at < ?")
        .bind(now - IDEMPOTENCY_RETENTION_MS)
        .execute(pool)
        .await?;
    sqlx::query(
        "DELETE FROM idempotency WHERE scope = ? AND key = ? AND status IS NULL AND created_at < ?",
    )
    .bind(scope)
    .bind(key)
    .bind(now - IDEMPOTENCY_STALE_MS)
    .execute(pool)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency (scope, key, request_hash, created_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(now)
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(IdempotencyState::Started);
    }
    let row = sqlx::query(
        "SELECT request_hash, status, response FROM idempotency WHERE scope = ? AND key = ?",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(pool)
    .await?;
    let request_hash: String = row.try_get("request_hash")?;
    let status: Option<i64> = row.try_get("status")?;
    Ok(match status {
        None => IdempotencyState::InProgress { request_hash },
        Some(status) => IdempotencyState::Completed {
            request_hash,
            status: status as u16,
            response: row
                .try_get::<Option<Vec<u8>>, _>("response")?
                .unwrap_or_default(),
        },
    })
}

pub(super) async fn idempotency_finish(
    pool: &SqlitePool,
    scope: &str,
    key: &str,
    status: u16,
    response: &[u8],
) -> Result<()> {
    sqlx::query("UPDATE idempotency SET status = ?, response = ? WHERE scope = ? AND key = ?")
        .bind(i64::from(status))
        .bind(response)
        .bind(scope)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn idempotency_abandon(pool: &SqlitePool, scope: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency WHERE scope = ? AND key = ? AND status IS NULL")
        .bind(scope)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
