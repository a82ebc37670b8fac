//! Connections and pending OAuth2 flows.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use switchboard_core::time::UnixMillis;

use crate::connections::{ConnectionRecord, OAuthStateRecord, TokenUpdate};
use crate::{Result, StoreError};

const COLUMNS: &str = "id, provider, auth_mode, params, settings, status, scopes, credentials, tokens, \
                       expires_at, version, last_error, created_at, updated_at";

fn from_row(row: &SqliteRow) -> Result<ConnectionRecord> {
    Ok(ConnectionRecord {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        auth_mode: row.try_get("auth_mode")?,
        params: row.try_get("params")?,
        settings: row.try_get("settings")?,
        status: row.try_get("status")?,
        scopes: row.try_get("scopes")?,
        credentials: row.try_get("credentials")?,
        tokens: row.try_get("tokens")?,
        expires_at: row.try_get("expires_at")?,
        version: row.try_get("version")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(super) async fn put(pool: &SqlitePool, r: &ConnectionRecord, create_only: bool) -> Result<()> {
    let verb = if create_only {
        "INSERT"
    } else {
        "INSERT OR REPLACE"
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "{verb} INTO connections ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )))
    .bind(&r.id)
    .bind(&r.provider)
    .bind(&r.auth_mode)
    .bind(&r.params)
    .bind(&r.settings)
    .bind(&r.status)
    .bind(&r.scopes)
    .bind(&r.credentials)
    .bind(&r.tokens)
    .bind(r.expires_at)
    .bind(r.version)
    .bind(&r.last_error)
    .bind(r.created_at)
    .bind(r.updated_at)
    .execute(pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => e.into(),
    })?;
    Ok(())
}

pub(super) async fn get(pool: &SqlitePool, id: &str) -> Result<Option<ConnectionRecord>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM connections WHERE id = ?"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(pool: &SqlitePool) -> Result<Vec<ConnectionRecord>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM connections ORDER BY id"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

pub(super) async fn delete(pool: &SqlitePool, id: &str) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("DELETE FROM oauth_states WHERE connection_id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let deleted = sqlx::query("DELETE FROM connections WHERE id = ?")
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted > 0)
}

pub(super) async fn update_tokens(pool: &SqlitePool, u: &TokenUpdate) -> Result<bool> {
    let set_tokens = u.tokens.is_some();
    let updated = sqlx::query(
        "UPDATE connections SET status = ?1, \
            tokens = CASE WHEN ?2 THEN ?3 ELSE tokens END, \
            expires_at = CASE WHEN ?2 THEN ?4 ELSE expires_at END, \
            scopes = COALESCE(?5, scopes), last_error = ?6, updated_at = ?7, \
            version = version + 1 \
         WHERE id = ?8 AND version = ?9",
    )
    .bind(&u.status)
    .bind(set_tokens)
    .bind(&u.tokens)
    .bind(u.expires_at)
    .bind(&u.scopes)
    .bind(&u.last_error)
    .bind(u.updated_at)
    .bind(&u.id)
    .bind(u.expected_version)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub(super) async fn put_state(pool: &SqlitePool, r: &OAuthStateRecord) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query("DELETE FROM oauth_states WHERE expires_at <= ?")
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO oauth_states (state_hash, connection_id, sealed, expires_at, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&r.state_hash)
    .bind(&r.connection_id)
    .bind(&r.sealed)
    .bind(r.expires_at)
    .bind(r.created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        _ => e.into(),
    })?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn take_state(
    pool: &SqlitePool,
    state_hash: &str,
    now: UnixMillis,
) -> Result<Option<OAuthStateRecord>> {
    let row = sqlx::query(
        "DELETE FROM oauth_states WHERE state_hash = ? \
         RETURNING state_hash, connection_id, sealed, expires_at, created_at",
    )
    .bind(state_hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let record = OAuthStateRecord {
        state_hash: row.try_get("state_hash")?,
        connection_id: row.try_get("connection_id")?,
        sealed: row.try_get("sealed")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
    };
    Ok((record.expires_at > now).then_some(record))
}
