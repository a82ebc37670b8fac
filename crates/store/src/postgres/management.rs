//! Management data: sealed resources, API tokens, dashboard sign-outs, idempotency keys.
//!
//! Listings sort text with `COLLATE "C"` (byte order), as SQLite does, whatever the database's
//! default collation. Strings are stored and looked up through [`text`].

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use switchboard_core::time::UnixMillis;

use super::text;
use crate::model::{IdempotencyState, ResourceRecord, TokenRecord};
use crate::sqlite::{IDEMPOTENCY_RETENTION_MS, IDEMPOTENCY_STALE_MS};
use crate::{Result, StoreError};

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(super) async fn put_resource(
    pool: &PgPool,
    r: &ResourceRecord,
    create_only: bool,
) -> Result<()> {
    let sql = if create_only {
        "INSERT INTO resources (kind, id, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)"
    } else {
        "INSERT INTO resources (kind, id, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (kind, id) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at"
    };
    sqlx::query(sql)
        .bind(text(&r.kind))
        .bind(text(&r.id))
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

pub(super) async fn list_resources(pool: &PgPool) -> Result<Vec<ResourceRecord>> {
    let rows = sqlx::query(
        "SELECT kind, id, sealed, created_at, updated_at FROM resources \
         ORDER BY kind COLLATE \"C\", id COLLATE \"C\"",
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

pub(super) async fn delete_resource(pool: &PgPool, kind: &str, id: &str) -> Result<bool> {
    let result = sqlx::query("DELETE FROM resources WHERE kind = $1 AND id = $2")
        .bind(text(kind))
        .bind(text(id))
        .execute(pool)
        .await?;
    Ok(result.rows_affected() > 0)
}

fn token_from_row(row: &PgRow) -> Result<TokenRecord> {
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

pub(super) async fn create_token(pool: &PgPool, t: &TokenRecord) -> Result<()> {
    sqlx::query(
        "INSERT INTO tokens (id, name, hash, prefix, scopes, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(text(&t.id))
    .bind(text(&t.name))
    .bind(text(&t.hash))
    .bind(text(&t.prefix))
    .bind(text(&t.scopes.join(" ")).into_owned())
    .bind(t.created_at)
    .bind(t.revoked_at)
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

pub(super) async fn token_by_hash(pool: &PgPool, hash: &str) -> Result<Option<TokenRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"
    )))
    .bind(text(hash))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(token_from_row).transpose()
}

pub(super) async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id COLLATE \"C\""
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(token_from_row).collect()
}

pub(super) async fn revoke_token(pool: &PgPool, id: &str, now: UnixMillis) -> Result<bool> {
    let result =
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(text(id))
            .execute(pool)
            .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) async fn record_sign_out(
    pool: &PgPool,
    session_id: &str,
    expires_at: UnixMillis,
    now: UnixMillis,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Sign-outs live until the session would have expired anyway (8 hours at most), so the
    // table stays as small as the number of sessions signed out in that time.
    sqlx::query("DELETE FROM ui_sign_outs WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO ui_sign_outs (session_id, expires_at) VALUES ($1, $2) \
         ON CONFLICT (session_id) DO UPDATE \
         SET expires_at = GREATEST(ui_sign_outs.expires_at, excluded.expires_at)",
    )
    .bind(text(session_id))
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn is_signed_out(
    pool: &PgPool,
    session_id: &str,
    now: UnixMillis,
) -> Result<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM ui_sign_outs WHERE session_id = $1 AND expires_at > $2")
            .bind(text(session_id))
            .bind(now)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}

/// How often `idempotency_begin` tries again when the record it collided with disappeared
/// before it could be read (another node abandoned or expired it in between).
const BEGIN_TRIES: u32 = 3;

pub(super) async fn idempotency_begin(
    pool: &PgPool,
    scope: &str,
    key: &str,
    request_hash: &str,
    now: UnixMillis,
) -> Result<IdempotencyState> {
    // Records are kept for a day; a first request that never finished (the process died) stops
    // blocking its key after five minutes.
    sqlx::query("DELETE FROM idempotency WHERE created_at < $1")
        .bind(now - IDEMPOTENCY_RETENTION_MS)
        .execute(pool)
        .await?;
    sqlx::query(
        "DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND status IS NULL AND created_at < $3",
    )
    .bind(text(scope))
    .bind(text(key))
    .bind(now - IDEMPOTENCY_STALE_MS)
    .execute(pool)
    .await?;
    for _ in 0..BEGIN_TRIES {
        let inserted = sqlx::query(
            "INSERT INTO idempotency (scope, key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, key) DO NOTHING",
        )
        .bind(text(scope))
        .bind(text(key))
        .bind(text(request_hash))
        .bind(now)
        .execute(pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(IdempotencyState::Started);
        }
        let row = sqlx::query(
            "SELECT request_hash, status, response FROM idempotency WHERE scope = $1 AND key = $2",
        )
        .bind(text(scope))
        .bind(text(key))
        .fetch_optional(pool)
        .await?;
        let Some(row) = row else { continue };
        let request_hash: String = row.try_get("request_hash")?;
        let status: Option<i64> = row.try_get("status")?;
        return Ok(match status {
            None => IdempotencyState::InProgress { request_hash },
            Some(status) => IdempotencyState::Completed {
                request_hash,
                status: status as u16,
                response: row
                    .try_get::<Option<Vec<u8>>, _>("response")?
                    .unwrap_or_default(),
            },
        });
    }
    Err(StoreError::Database(sqlx::Error::Protocol(format!(
        "idempotency key `{key}` kept changing while being claimed"
    ))))
}

pub(super) async fn idempotency_finish(
    pool: &PgPool,
    scope: &str,
    key: &str,
    status: u16,
    response: &[u8],
) -> Result<()> {
    sqlx::query("UPDATE idempotency SET status = $1, response = $2 WHERE scope = $3 AND key = $4")
        .bind(i64::from(status))
        .bind(response)
        .bind(text(scope))
        .bind(text(key))
        .execute(pool)
        .await?;
    Ok(())
}

pub(super) async fn idempotency_abandon(pool: &PgPool, scope: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND status IS NULL")
        .bind(text(scope))
        .bind(text(key))
        .execute(pool)
        .await?;
    Ok(())
}
