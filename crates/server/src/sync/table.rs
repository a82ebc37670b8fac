//! Destination tables: a table in a SQLite file or a PostgreSQL database, created from the
//! declared columns when missing, written a page at a time.
//!
//! A page is one statement per kind of change: the rows travel as one JSON array parameter
//! (`json_each` in SQLite, `json_populate_recordset` in PostgreSQL, which casts each value with
//! the column type's own input rules), upserted by the key column; deletes likewise. Names are
//! checked identifiers and always quoted; values are only ever bound. Upserts and deletes by
//! key are idempotent, which is what lets a resumed run write a page a second time.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use switchboard_core::config::{SyncColumn, SyncDestination, split_table_name};

/// Why a destination write failed.
#[derive(Debug, thiserror::Error)]
#[error("destination table: {0}")]
pub struct TableError(String);

impl From<sqlx::Error> for TableError {
    fn from(error: sqlx::Error) -> Self {
        Self(error.to_string())
    }
}

/// An open destination table.
pub enum Table {
    /// A SQLite table.
    Sqlite {
        /// The database.
        pool: SqlitePool,
        /// Quoted table name.
        table: String,
        /// Declared columns.
        columns: Vec<SyncColumn>,
    },
    /// A PostgreSQL table.
    Postgres {
        /// The database.
        pool: PgPool,
        /// Quoted table name.
        table: String,
        /// Declared columns.
        columns: Vec<SyncColumn>,
    },
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

impl Table {
    /// Opens the destination (creating the table when missing); `None` for `events`.
    pub async fn open(destination: &SyncDestination) -> Result<Option<Self>, TableError> {
        match destination {
            SyncDestination::Events | SyncDestination::Rest(_) => Ok(None),
            SyncDestination::Sqlite {
                path,
                table,
                columns,
            } => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        TableError(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30));
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options)
                    .await?;
                let table = quote(table);
                let definition: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let key = if c.key { " PRIMARY KEY NOT NULL" } else { "" };
                        format!("{} {}{key}", quote(&c.name), c.column_type.sqlite())
                    })
                    .collect();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({})",
                    definition.join(", ")
                )))
                .execute(&pool)
                .await?;
                Ok(Some(Self::Sqlite {
                    pool,
                    table,
                    columns: columns.clone(),
                }))
            }
            SyncDestination::Postgres {
                url,
                table,
                columns,
            } => {
                let options = PgConnectOptions::from_str(url).map_err(|e| {
                    TableError(format!(
                        "destination.url: {}",
                        e.to_string().replace(url, "<url>")
                    ))
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?;
                let (schema, name) = split_table_name(table).map_err(TableError)?;
                let table = match schema {
                    Some(schema) => format!("{}.{}", quote(schema), quote(name)),
                    None => quote(name),
                };
                let definition: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let key = if c.key { " PRIMARY KEY" } else { "" };
                        format!("{} {}{key}", quote(&c.name), c.column_type.postgres())
                    })
                    .collect();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE TABLE IF NOT EXISTS {table} ({})",
                    definition.join(", ")
                )))
                .execute(&pool)
                .await?;
                Ok(Some(Self::Postgres {
                    pool,
                    table,
                    columns: columns.clone(),
                }))
            }
        }
    }

    fn key(&self) -> &SyncColumn {
        let columns = match self {
            Self::Sqlite { columns, .. } | Self::Postgres { columns, .. } => columns,
        };
        // Validation guarantees exactly one key column.
        columns.iter().find(|c| c.key).unwrap_or(&columns[0])
    }

    /// Inserts or updates `rows` (objects with the declared columns; others are ignored), by
    /// the key column.
    pub async fn upsert(&self, rows: &[Map<String, Value>]) -> Result<(), TableError> {
        if rows.is_empty() {
            return Ok(());
        }
        let key = quote(&self.key().name);
        let array = Value::Array(rows.iter().cloned().map(Value::Object).collect()).to_string();
        match self {
            Self::Sqlite {
                pool,
                table,
                columns,
            } => {
                let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
                // `->` keeps JSON text (for json columns), `->>` gives SQL values.
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        let arrow = if c.column_type == switchboard_core::config::ColumnType::Json {
                            "->"
                        } else {
                            "->>"
                        };
                        format!("value {arrow} '$.{}'", c.name)
                    })
                    .collect();
                let updates: Vec<String> = columns
                    .iter()
                    .filter(|c| !c.key)
                    .map(|c| format!("{0} = excluded.{0}", quote(&c.name)))
                    .collect();
                let action = if updates.is_empty() {
                    "NOTHING".to_owned()
                } else {
                    format!("UPDATE SET {}", updates.join(", "))
                };
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} ({}) SELECT {} FROM json_each(?1) WHERE true \
                     ON CONFLICT ({key}) DO {action}",
                    names.join(", "),
                    values.join(", ")
                )))
                .bind(array)
                .execute(pool)
                .await?;
            }
            Self::Postgres {
                pool,
                table,
                columns,
            } => {
                let names: Vec<String> = columns.iter().map(|c| quote(&c.name)).collect();
                let updates: Vec<String> = columns
                    .iter()
                    .filter(|c| !c.key)
                    .map(|c| format!("{0} = EXCLUDED.{0}", quote(&c.name)))
                    .collect();
                let action = if updates.is_empty() {
                    "NOTHING".to_owned()
                } else {
                    format!("UPDATE SET {}", updates.join(", "))
                };
                let names = names.join(", ");
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} ({names}) SELECT {names} \
                     FROM json_populate_recordset(NULL::{table}, $1::json) \
                     ON CONFLICT ({key}) DO {action}"
                )))
                .bind(array)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Deletes the rows whose key column holds one of `keys` (JSON values).
    pub async fn delete(&self, keys: &[Value]) -> Result<(), TableError> {
        if keys.is_empty() {
            return Ok(());
        }
        let key_name = self.key().name.clone();
        let key = quote(&key_name);
        match self {
            Self::Sqlite { pool, table, .. } => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE {key} IN (SELECT value FROM json_each(?1))"
                )))
                .bind(Value::Array(keys.to_vec()).to_string())
                .execute(pool)
                .await?;
            }
            Self::Postgres { pool, table, .. } => {
                let rows: Vec<Value> = keys
                    .iter()
                    .map(|k| {
                        let mut row = Map::new();
                        row.insert(key_name.clone(), k.clone());
                        Value::Object(row)
                    })
                    .collect();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE {key} IN \
                     (SELECT {key} FROM json_populate_recordset(NULL::{table}, $1::json))"
                )))
                .bind(Value::Array(rows).to_string())
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Closes the connections.
    pub async fn close(self) {
        match self {
            Self::Sqlite { pool, .. } => pool.close().await,
            Self::Postgres { pool, .. } => pool.close().await,
        }
    }
}
