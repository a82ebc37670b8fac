//! Moving all data from one store to another (SQLite → PostgreSQL and back): a portable,
//! streaming export in JSON Lines, and its import into an empty store.
//!
//! # The file
//!
//! One JSON object per line:
//!
//! 1. a header, `{"switchboard_export":1,"schema_version":N,"exported_at":"…","blob_columns":{…}}`;
//! 2. one line per row, `{"table":"events","row":{"seq":1,"id":"…",…}}`, table by table in the
//!    order of [`TABLES`], each table in primary-key order. Integers are JSON numbers, text is a
//!    JSON string, flags are `true`/`false`, a NULL is `null`, and BLOB columns (see
//!    [`Table::blob_columns`]; the header lists them too) are standard base64 strings;
//! 3. a trailer with the row count of every table, `{"switchboard_export_end":{"events":3,…}}`,
//!    so that a truncated file is recognised.
//!
//! The row copying is typed per column ([`Column`]): the explicit table list says which column
//! is an integer, text, blob or flag and which may be NULL, and both the export and the import
//! check it against the database's actual columns before reading or writing a row. Tables that
//! are not data (`schema_migrations`), only describe live processes (`nodes`, `leases`) or are
//! short-lived (`oauth_states`) are not copied.
//!
//! # Rules
//!
//! - The export reads one consistent snapshot (one read transaction) in batches, keyset-paged by
//!   primary key: a table of any size never has to fit in memory.
//! - The import requires an empty store at the export's schema version, writes in batched
//!   transactions keeping every id and `seq`, and afterwards moves PostgreSQL's identity
//!   sequences past the imported rows, so new rows continue after them.
//! - Sealed resources are copied as they are (encrypted under the source's vault key): the
//!   destination needs the same master key. [`import`] can check one sealed value before it
//!   writes anything (resources come first in the file).
//! - PostgreSQL `text` cannot hold NUL: as in the adapter, a NUL in text imported into
//!   PostgreSQL becomes U+FFFD.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::ops::RangeInclusive;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Sqlite, SqlitePool};

use crate::StoreError;
use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;

/// Version of the file format (the header's `switchboard_export`).
pub const FORMAT: u64 = 1;

/// Schema versions whose tables are exactly [`TABLES`] (plus the skipped ones). A database at
/// another version is refused rather than copied partly. (Version 11 added PostgreSQL's
/// `feed_xid`, which is [`NOT_COPIED`]; version 12 the dashboard's `ui_sign_outs`, which is
/// copied. A store opened by this build is migrated to the newest.)
pub const SCHEMA_VERSIONS: RangeInclusive<i64> = 12..=12;

/// Tables that are never copied: the migration bookkeeping (the target has its own), the
/// heartbeats of running nodes and the leases they hold (which describe processes, not data),
/// pending OAuth2 flows (ten-minute browser round trips, restarted by the user), and the sync
/// engine's operational state (run log, records cache, incremental cursors): the sync jobs
/// themselves are configuration and travel with `resources`; after an import the first run of
/// each job is a complete listing that rebuilds the cache (destination upserts are idempotent).
pub const SKIPPED_TABLES: [&str; 7] = [
    "schema_migrations",
    "nodes",
    "leases",
    "oauth_states",
    "sync_runs",
    "sync_records",
    "sync_state",
];

/// Most bytes (text and blobs) one import batch holds before it is written.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The type of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer (`INTEGER` / `BIGINT`).
    Integer,
    /// UTF-8 text.
    Text,
    /// Bytes (`BLOB` / `BYTEA`), base64 in the file.
    Blob,
    /// A flag: `INTEGER` 0/1 in SQLite, `BOOLEAN` in PostgreSQL, `true`/`false` in the file.
    Flag,
}

/// One column of a copied table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Column name (the same in both adapters).
    pub name: &'static str,
    /// Value type.
    pub kind: Kind,
    /// Whether it may be NULL.
    pub nullable: bool,
}

/// One copied table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// Table name.
    pub name: &'static str,
    /// Primary-key columns (the export's order and paging key).
    pub key: &'static [&'static str],
    /// Whether `seq` is an identity column in PostgreSQL (reset after an import).
    pub seq_identity: bool,
    /// Rows per export batch and most rows per import batch.
    pub batch: usize,
    /// Every column, in schema order.
    pub columns: &'static [Column],
}

impl Table {
    /// Names of the BLOB columns (base64 in the file).
    pub fn blob_columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns
            .iter()
            .filter(|c| c.kind == Kind::Blob)
            .map(|c| c.name)
    }
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: false,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        nullable: true,
    }
}

use Kind::{Blob, Flag, Integer as Int, Text};

/// Every copied table, in file order. Resources come first so that [`import`] can check the
/// master key before it writes a row.
pub const TABLES: &[Table] = &[
    Table {
        name: "resources",
        key: &["kind", "id"],
        seq_identity: false,
        batch: 500,
        columns: &[
            col("kind", Text),
            col("id", Text),
            col("sealed", Blob),
            col("created_at", Int),
            col("updated_at", Int),
        ],
    },
    Table {
        name: "connections",
        key: &["id"],
        seq_identity: false,
        batch: 200,
        columns: &[
            col("id", Text),
            col("provider", Text),
            col("auth_mode", Text),
            col("params", Text),
            col("settings", Text),
            col("status", Text),
            col("scopes", Text),
            opt("credentials", Blob),
            opt("tokens", Blob),
            opt("expires_at", Int),
            col("version", Int),
            opt("last_error", Text),
            col("created_at", Int),
            col("updated_at", Int),
        ],
    },
    Table {
        name: "tokens",
        key: &["id"],
        seq_identity: false,
        batch: 500,
        columns: &[
            col("id", Text),
            col("name", Text),
            col("hash", Text),
            col("prefix", Text),
            col("scopes", Text),
            col("created_at", Int),
            opt("revoked_at", Int),
            opt("last_used_at", Int),
        ],
    },
    // Signed-out dashboard sessions are copied: a session is a cookie sealed with the master
    // key, which the target shares, so without them a signed-out cookie would work again on
    // the target until it expires. Entries past their expiry are deleted by the next sign-out.
    Table {
        name: "ui_sign_outs",
        key: &["session_id"],
        seq_identity: false,
        batch: 500,
        columns: &[col("session_id", Text), col("expires_at", Int)],
    },
    Table {
        name: "idempotency",
        key: &["scope", "key"],
        seq_identity: false,
        batch: 200,
        columns: &[
            col("scope", Text),
            col("key", Text),
            col("request_hash", Text),
            opt("status", Int),
            opt("response", Blob),
            col("created_at", Int),
        ],
    },
    Table {
        name: "destination_health",
        key: &["destination"],
        seq_identity: false,
        batch: 500,
        columns: &[
            col("destination", Text),
            col("state", Text),
            col("consecutive_failures", Int),
            opt("failing_since", Int),
            opt("last_failure_at", Int),
            opt("last_success_at", Int),
            opt("last_error", Text),
            opt("opened_at", Int),
            col("updated_at", Int),
        ],
    },
    Table {
        name: "events",
        key: &["seq"],
        seq_identity: true,
        batch: 100,
        columns: &[
            col("seq", Int),
            col("id", Text),
            col("source", Text),
            opt("tenant", Text),
            opt("event_type", Text),
            opt("dedup_key", Text),
            col("headers", Text),
            opt("content_type", Text),
            col("body", Blob),
            col("received_at", Int),
            opt("forward_headers", Text),
            opt("body_pruned_at", Int),
        ],
    },
    Table {
        name: "deliveries",
        key: &["seq"],
        seq_identity: true,
        batch: 500,
        columns: &[
            col("seq", Int),
            col("id", Text),
            col("event_id", Text),
            col("route_id", Text),
            col("destination", Text),
            col("status", Text),
            col("attempts", Int),
            col("run_attempts", Int),
            col("next_attempt_at", Int),
            opt("lease_owner", Text),
            opt("lease_until", Int),
            opt("last_status", Int),
            opt("last_error", Text),
            col("created_at", Int),
            col("updated_at", Int),
            opt("completed_at", Int),
            opt("ordering_key", Text),
            col("hold_released", Flag),
            col("exhausted", Flag),
        ],
    },
    Table {
        name: "attempts",
        key: &["seq"],
        seq_identity: true,
        batch: 200,
        columns: &[
            col("seq", Int),
            col("delivery_id", Text),
            col("event_id", Text),
            col("destination", Text),
            col("attempt", Int),
            col("started_at", Int),
            col("latency_ms", Int),
            col("outcome", Text),
            opt("status_code", Int),
            opt("error", Text),
            col("request_url", Text),
            opt("response_headers", Text),
            opt("response_body", Blob),
        ],
    },
    Table {
        name: "rejections",
        key: &["seq"],
        seq_identity: true,
        batch: 500,
        columns: &[
            col("seq", Int),
            col("source", Text),
            col("received_at", Int),
            col("code", Text),
            col("detail", Text),
            col("headers", Text),
            col("body_len", Int),
        ],
    },
    Table {
        name: "audit_log",
        key: &["seq"],
        seq_identity: true,
        batch: 500,
        columns: &[
            col("seq", Int),
            col("id", Text),
            col("at", Int),
            col("actor", Text),
            col("action", Text),
            col("resource_kind", Text),
            opt("resource_id", Text),
            col("method", Text),
            col("path", Text),
            col("status", Int),
            opt("request_id", Text),
            opt("before_state", Text),
            opt("after_state", Text),
        ],
    },
];

/// The table named `name`, if it is copied.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// A store to export from or import into.
#[derive(Debug, Clone, Copy)]
pub enum Backend<'a> {
    /// The embedded SQLite store.
    Sqlite(&'a SqliteStore),
    /// The shared PostgreSQL store.
    Postgres(&'a PgStore),
}

/// Why an export or import failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the file failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A line of the file is not what the format says.
    #[error("line {line}: {message}")]
    Format {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The database (or file) is at a schema version this build does not know how to copy.
    #[error(
        "schema version {0} is not one this build can export or import (it knows {min} to {max}); \
         use the Switchboard version that wrote the data",
        min = SCHEMA_VERSIONS.start(),
        max = SCHEMA_VERSIONS.end()
    )]
    UnknownSchema(i64),
    /// The file's schema version differs from the target database's.
    #[error(
        "the export has schema version {file} but the target database is at {target}: \
         export and import with the same Switchboard version"
    )]
    SchemaMismatch {
        /// Version recorded in the file.
        file: i64,
        /// Version of the target.
        target: i64,
    },
    /// A table's columns differ from the expected ones.
    #[error("table {table} does not have the expected columns: {detail}")]
    Columns {
        /// The table.
        table: &'static str,
        /// Missing and unexpected columns.
        detail: String,
    },
    /// The target already holds data.
    #[error(
        "the target database is not empty (table {0} has rows): import only into a new, empty \
         store (a fresh data directory, or an empty PostgreSQL database or schema)"
    )]
    NotEmpty(&'static str),
    /// The sealed resources do not open with the target's master key.
    #[error("{0}")]
    KeyCheck(String),
    /// The file ended before its trailer, or its counts disagree with the rows read.
    #[error("the export file is incomplete or damaged: {0}")]
    Incomplete(String),
}

impl From<sqlx::Error> for TransferError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}

type Result<T, E = TransferError> = std::result::Result<T, E>;

/// What an export wrote or an import read: the schema version and rows per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Schema version of the data.
    pub schema_version: i64,
    /// Rows per table, in [`TABLES`] order.
    pub tables: Vec<(&'static str, u64)>,
}

impl Summary {
    fn new(schema_version: i64) -> Self {
        Self {
            schema_version,
            tables: TABLES.iter().map(|t| (t.name, 0)).collect(),
        }
    }

    /// Rows of one table.
    pub fn count(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| *name == table)
            .map_or(0, |(_, n)| *n)
    }

    /// Rows of all tables.
    pub fn total(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }

    fn add(&mut self, table: &str, rows: u64) {
        if let Some((_, n)) = self.tables.iter_mut().find(|(name, _)| *name == table) {
            *n += rows;
        }
    }
}

/// Checks a sealed value against the target's vault key: `Err(message)` when it does not open.
pub type SealedCheck<'a> = &'a (dyn Fn(&[u8]) -> std::result::Result<(), String> + Sync);

/// The schema version of a store (the newest applied migration; 0 for an empty database).
pub async fn schema_version(store: Backend<'_>) -> Result<i64> {
    const SQL: &str = "SELECT MAX(version) FROM schema_migrations";
    let version: Option<i64> = match store {
        Backend::Sqlite(s) => sqlx::query_scalar(SQL).fetch_one(s.pools().1).await?,
        Backend::Postgres(s) => sqlx::query_scalar(SQL).fetch_one(s.pool()).await?,
    };
    Ok(version.unwrap_or(0))
}

/// Writes every row of `from` to `out` as JSON Lines (see the module documentation), from one
/// consistent snapshot, and returns the counts. `out` should be buffered; it is flushed.
pub async fn export<W: Write + Send>(from: Backend<'_>, mut out: W) -> Result<Summary> {
    let version = schema_version(from).await?;
    if !SCHEMA_VERSIONS.contains(&version) {
        return Err(TransferError::UnknownSchema(version));
    }
    check_columns(from).await?;
    write_header(&mut out, version)?;
    let mut summary = Summary::new(version);
    match from {
        Backend::Sqlite(s) => sqlite::export(s.pools().1, &mut out, &mut summary).await?,
        Backend::Postgres(s) => postgres::export(s.pool(), &mut out, &mut summary).await?,
    }
    write_trailer(&mut out, &summary)?;
    out.flush()?;
    Ok(summary)
}

/// Reads an export from `input` into the empty store `into`, which must be at the export's
/// schema version, and returns the counts.
///
/// With `check_sealed`, the first sealed resource is passed to it before anything is written,
/// and the import stops with [`TransferError::KeyCheck`] when it does not open. Rows are
/// written in batches, each its own transaction: an import that fails part-way leaves the rows
/// written so far, and the store must be emptied (recreated) before importing again.
pub async fn import<R: BufRead + Send>(
    into: Backend<'_>,
    input: R,
    check_sealed: Option<SealedCheck<'_>>,
) -> Result<Summary> {
    let target = schema_version(into).await?;
    if !SCHEMA_VERSIONS.contains(&target) {
        return Err(TransferError::UnknownSchema(target));
    }
    check_columns(into).await?;
    let mut reader = Reader::new(input);
    let file_version = reader.header()?;
    if !SCHEMA_VERSIONS.contains(&file_version) {
        return Err(TransferError::UnknownSchema(file_version));
    }
    if file_version != target {
        return Err(TransferError::SchemaMismatch {
            file: file_version,
            target,
        });
    }
    for table in TABLES {
        let has_rows = match into {
            Backend::Sqlite(s) => sqlite::has_rows(s.pools().0, table).await?,
            Backend::Postgres(s) => postgres::has_rows(s.pool(), table).await?,
        };
        if has_rows {
            return Err(TransferError::NotEmpty(table.name));
        }
    }

    let mut summary = Summary::new(target);
    let mut batch = Batch::default();
    let mut key_checked = check_sealed.is_none();
    let mut trailer = None;
    let read = async {
        while let Some(line) = reader.next_line()? {
            let (table, row) = match line {
                Line::Row(table, row) => (table, row),
                Line::Skipped => continue,
                Line::End(counts) => {
                    trailer = Some(counts);
                    if reader.next_line()?.is_some() {
                        return Err(reader.error("a line follows the trailer"));
                    }
                    break;
                }
            };
            // The first sealed value (a resource's spec, else a connection's credentials or
            // tokens) proves the key; both tables come before anything else.
            if !key_checked && matches!(table.name, "resources" | "connections") {
                let sealed = table
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| matches!(c.name, "sealed" | "credentials" | "tokens"))
                    .find_map(|(i, _)| match row.get(i) {
                        Some(Value::Blob(sealed)) => Some(sealed),
                        _ => None,
                    });
                if let (Some(check), Some(sealed)) = (check_sealed, sealed) {
                    check(sealed).map_err(TransferError::KeyCheck)?;
                    key_checked = true;
                }
            }
            if batch.table.is_some_and(|t| t.name != table.name) || batch.full() {
                flush(into, &mut batch, &mut summary).await?;
            }
            batch.push(table, row);
        }
        flush(into, &mut batch, &mut summary).await
    };
    let result = read.await;
    // Whatever was written, new rows must continue after it.
    let reset = match into {
        Backend::Postgres(s) => postgres::reset_sequences(s.pool()).await,
        Backend::Sqlite(_) => Ok(()),
    };
    result?;
    reset?;
    let Some(expected) = trailer else {
        return Err(TransferError::Incomplete(
            "it ends without its trailer line (truncated?); the rows before the end were imported"
                .into(),
        ));
    };
    for (name, count) in &summary.tables {
        let listed = expected.get(*name).copied().unwrap_or(0);
        if listed != *count {
            return Err(TransferError::Incomplete(format!(
                "the trailer lists {listed} rows of {name} but {count} were read"
            )));
        }
    }
    Ok(summary)
}

/// Columns a backend fills in by itself and an import must not carry over: PostgreSQL's
/// `feed_xid` (the live feed's commit order, see `crate::feed`) names a transaction of the
/// database that wrote the row; imported rows get the importing transaction's.
const NOT_COPIED: &[&str] = &["feed_xid"];

/// Checks that every copied table exists with exactly the expected columns.
async fn check_columns(store: Backend<'_>) -> Result<()> {
    for table in TABLES {
        let actual = match store {
            Backend::Sqlite(s) => sqlite::columns(s.pools().1, table).await?,
            Backend::Postgres(s) => postgres::columns(s.pool(), table).await?,
        };
        if actual.is_empty() {
            return Err(TransferError::Columns {
                table: table.name,
                detail: "the table does not exist".into(),
            });
        }
        let missing: Vec<&str> = table
            .columns
            .iter()
            .map(|c| c.name)
            .filter(|name| !actual.iter().any(|a| a == name))
            .collect();
        let unexpected: Vec<&str> = actual
            .iter()
            .map(String::as_str)
            .filter(|a| !table.columns.iter().any(|c| c.name == *a))
            .filter(|a| !NOT_COPIED.contains(a))
            .collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(TransferError::Columns {
                table: table.name,
                detail: format!(
                    "missing [{}], unexpected [{}]",
                    missing.join(", "),
                    unexpected.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// One column value, typed by its [`Column`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
    Flag(bool),
}

impl Value {
    /// Approximate size, for bounding import batches.
    fn size(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Blob(b) => b.len(),
            _ => 8,
        }
    }
}

/// A value read from a database, or an error naming the column when a NOT NULL column is NULL.
fn required<T>(
    table: &Table,
    column: &Column,
    value: Option<T>,
    wrap: fn(T) -> Value,
) -> Result<Value> {
    match value {
        Some(v) => Ok(wrap(v)),
        None if column.nullable => Ok(Value::Null),
        None => Err(StoreError::Corrupt(format!("{}.{} is NULL", table.name, column.name)).into()),
    }
}

fn io_error(error: serde_json::Error) -> TransferError {
    TransferError::Io(std::io::Error::other(error))
}

fn write_header(out: &mut impl Write, version: i64) -> Result<()> {
    let blobs: serde_json::Map<String, serde_json::Value> = TABLES
        .iter()
        .filter(|t| t.blob_columns().next().is_some())
        .map(|t| (t.name.to_string(), t.blob_columns().collect()))
        .collect();
    let exported_at = switchboard_core::time::format_rfc3339(switchboard_core::time::now_millis());
    // Written by hand so that the format marker comes first.
    writeln!(
        out,
        "{{\"switchboard_export\":{FORMAT},\"schema_version\":{version},\"exported_at\":{},\"blob_columns\":{}}}",
        serde_json::Value::from(exported_at),
        serde_json::Value::from(blobs)
    )?;
    Ok(())
}

fn write_trailer(out: &mut impl Write, summary: &Summary) -> Result<()> {
    let counts: serde_json::Map<String, serde_json::Value> = summary
        .tables
        .iter()
        .map(|(name, n)| (name.to_string(), (*n).into()))
        .collect();
    serde_json::to_writer(
        &mut *out,
        &serde_json::json!({ "switchboard_export_end": counts }),
    )
    .map_err(io_error)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Writes one row line; the columns keep their schema order.
fn write_row(out: &mut impl Write, line: &mut Vec<u8>, table: &Table, row: &[Value]) -> Result<()> {
    line.clear();
    line.extend_from_slice(b"{\"table\":\"");
    line.extend_from_slice(table.name.as_bytes());
    line.extend_from_slice(b"\",\"row\":{");
    for (i, (column, value)) in table.columns.iter().zip(row).enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'"');
        line.extend_from_slice(column.name.as_bytes());
        line.extend_from_slice(b"\":");
        match value {
            Value::Null => line.extend_from_slice(b"null"),
            Value::Int(n) => line.extend_from_slice(n.to_string().as_bytes()),
            Value::Flag(b) => line.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Text(s) => serde_json::to_writer(&mut *line, s).map_err(io_error)?,
            Value::Blob(b) => {
                line.push(b'"');
                line.extend_from_slice(STANDARD.encode(b).as_bytes());
                line.push(b'"');
            }
        }
    }
    line.extend_from_slice(b"}}\n");
    out.write_all(line)?;
    Ok(())
}

/// A parsed line of the file.
enum Line {
    Row(&'static Table, Vec<Value>),
    /// A row of a table that is never copied.
    Skipped,
    End(BTreeMap<String, u64>),
}

/// Reads the file line by line.
struct Reader<R> {
    input: R,
    buffer: String,
    line: u64,
}

impl<R: BufRead> Reader<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            buffer: String::new(),
            line: 0,
        }
    }

    fn error(&self, message: impl Into<String>) -> TransferError {
        TransferError::Format {
            line: self.line,
            message: message.into(),
        }
    }

    /// The next non-blank line as JSON, or `None` at the end.
    fn next_json(&mut self) -> Result<Option<serde_json::Value>> {
        loop {
            self.buffer.clear();
            if self.input.read_line(&mut self.buffer)? == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buffer.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&self.buffer)
                .map(Some)
                .map_err(|e| self.error(format!("not JSON: {e}")));
        }
    }

    /// Reads the header; returns the schema version.
    fn header(&mut self) -> Result<i64> {
        let Some(header) = self.next_json()? else {
            return Err(TransferError::Incomplete("the file is empty".into()));
        };
        match header.get("switchboard_export").and_then(|v| v.as_u64()) {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(self.error(format!(
                    "export format {other} is not supported by this build (it reads {FORMAT})"
                )));
            }
            None => return Err(self.error("not a Switchboard export (no header line)")),
        }
        header
            .get("schema_version")
            .and_then(|v| v.as_i64())
            .ok_or_else(|| self.error("the header has no schema_version"))
    }

    fn next_line(&mut self) -> Result<Option<Line>> {
        let Some(json) = self.next_json()? else {
            return Ok(None);
        };
        let serde_json::Value::Object(mut object) = json else {
            return Err(self.error("expected a JSON object"));
        };
        if let Some(end) = object.remove("switchboard_export_end") {
            let serde_json::Value::Object(counts) = end else {
                return Err(self.error("the trailer's counts are not an object"));
            };
            let mut parsed = BTreeMap::new();
            for (name, count) in counts {
                let count = count.as_u64().ok_or_else(|| {
                    self.error(format!("the trailer's count of {name} is not a number"))
                })?;
                parsed.insert(name, count);
            }
            return Ok(Some(Line::End(parsed)));
        }
        let name = match object.remove("table") {
            Some(serde_json::Value::String(name)) => name,
            _ => return Err(self.error("expected {\"table\": …, \"row\": {…}}")),
        };
        let Some(table) = table(&name) else {
            if SKIPPED_TABLES.contains(&name.as_str()) {
                return Ok(Some(Line::Skipped));
            }
            return Err(self.error(format!("unknown table {name:?}")));
        };
        let Some(serde_json::Value::Object(mut row)) = object.remove("row") else {
            return Err(self.error("expected {\"table\": …, \"row\": {…}}"));
        };
        let mut values = Vec::with_capacity(table.columns.len());
        for column in table.columns {
            let value = row.remove(column.name).ok_or_else(|| {
                self.error(format!("{}: column {} is missing", table.name, column.name))
            })?;
            values.push(self.value(table, column, value)?);
        }
        if let Some(extra) = row.keys().next() {
            return Err(self.error(format!("{}: unknown column {extra:?}", table.name)));
        }
        Ok(Some(Line::Row(table, values)))
    }

    fn value(&self, table: &Table, column: &Column, json: serde_json::Value) -> Result<Value> {
        use serde_json::Value as J;
        let wrong =
            |what: &str| self.error(format!("{}.{}: expected {what}", table.name, column.name));
        Ok(match (column.kind, json) {
            (_, J::Null) if column.nullable => Value::Null,
            (_, J::Null) => return Err(wrong("a value (the column is NOT NULL)")),
            (Kind::Integer, J::Number(n)) => {
                Value::Int(n.as_i64().ok_or_else(|| wrong("a 64-bit integer"))?)
            }
            (Kind::Integer, _) => return Err(wrong("an integer")),
            (Kind::Text, J::String(s)) => Value::Text(s),
            (Kind::Text, _) => return Err(wrong("a string")),
            (Kind::Blob, J::String(s)) => {
                Value::Blob(STANDARD.decode(s).map_err(|_| wrong("base64"))?)
            }
            (Kind::Blob, _) => return Err(wrong("a base64 string")),
            (Kind::Flag, J::Bool(b)) => Value::Flag(b),
            (Kind::Flag, _) => return Err(wrong("true or false")),
        })
    }
}

/// Rows of one table waiting to be written.
#[derive(Default)]
struct Batch {
    table: Option<&'static Table>,
    rows: Vec<Vec<Value>>,
    bytes: usize,
}

impl Batch {
    fn full(&self) -> bool {
        self.table
            .is_some_and(|t| self.rows.len() >= t.batch || self.bytes >= BATCH_BYTES)
    }

    fn push(&mut self, table: &'static Table, row: Vec<Value>) {
        self.table = Some(table);
        self.bytes += row.iter().map(Value::size).sum::<usize>();
        self.rows.push(row);
    }
}

async fn flush(into: Backend<'_>, batch: &mut Batch, summary: &mut Summary) -> Result<()> {
    let Some(table) = batch.table else {
        return Ok(());
    };
    if batch.rows.is_empty() {
        return Ok(());
    }
    let rows = std::mem::take(&mut batch.rows);
    batch.bytes = 0;
    let count = rows.len() as u64;
    match into {
        Backend::Sqlite(s) => sqlite::insert(s.pools().0, table, rows).await?,
        Backend::Postgres(s) => postgres::insert(s.pool(), table, rows).await?,
    }
    summary.add(table.name, count);
    Ok(())
}

/// The table's column list, in schema order.
fn column_list(table: &Table) -> String {
    let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    columns.join(", ")
}

/// Positions of the key columns in the table's column list.
fn key_positions(table: &Table) -> Vec<usize> {
    table
        .key
        .iter()
        .filter_map(|k| table.columns.iter().position(|c| c.name == *k))
        .collect()
}

/// Generates the per-backend half: reading batches, inserting batches, columns, emptiness.
macro_rules! backend {
    ($db:ty, $pool:ty) => {
        /// Builds the select of one batch: the rows after `last` (the previous batch's last
        /// row) in key order.
        fn select(table: &Table, last: Option<&[Value]>) -> QueryBuilder<$db> {
            let mut q = QueryBuilder::<$db>::new(format!(
                "SELECT {} FROM {}",
                super::column_list(table),
                table.name
            ));
            if let Some(last) = last {
                q.push(" WHERE (");
                q.push(table.key.join(", "));
                q.push(") > (");
                let mut values = q.separated(", ");
                for position in super::key_positions(table) {
                    // Key columns are integers or text (see `TABLES`).
                    match &last[position] {
                        Value::Int(n) => {
                            values.push_bind(*n);
                        }
                        Value::Text(s) => {
                            values.push_bind(s.clone());
                        }
                        other => debug_assert!(false, "key value {other:?}"),
                    }
                }
                q.push(")");
            }
            q.push(" ORDER BY ");
            q.push(table.key.join(", "));
            q.push(" LIMIT ");
            q.push(table.batch.to_string());
            q
        }

        pub(super) async fn has_rows(pool: &$pool, table: &Table) -> Result<bool> {
            let sql = format!("SELECT 1 FROM {} LIMIT 1", table.name);
            let row: Option<i32> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_optional(pool)
                .await?;
            Ok(row.is_some())
        }

        pub(super) async fn export<W: std::io::Write + Send>(
            pool: &$pool,
            out: &mut W,
            summary: &mut Summary,
        ) -> Result<()> {
            let mut tx = pool.begin().await?;
            begin_snapshot(&mut tx).await?;
            let mut line = Vec::new();
            for table in TABLES {
                let mut last: Option<Vec<Value>> = None;
                loop {
                    let rows = select(table, last.as_deref())
                        .build()
                        .fetch_all(&mut *tx)
                        .await?;
                    let fetched = rows.len();
                    let mut decoded = None;
                    for row in &rows {
                        let values = decode(table, row)?;
                        super::write_row(out, &mut line, table, &values)?;
                        decoded = Some(values);
                    }
                    summary.add(table.name, fetched as u64);
                    if fetched < table.batch {
                        break;
                    }
                    last = decoded;
                }
            }
            tx.rollback().await?;
            Ok(())
        }
    };
}

mod sqlite {
    //! The SQLite half.

    use super::*;
    use sqlx::sqlite::SqliteRow;

    backend!(Sqlite, SqlitePool);

    /// A read transaction: SQLite (WAL) reads one snapshot from its first statement on.
    async fn begin_snapshot(_tx: &mut sqlx::Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    fn decode(table: &Table, row: &SqliteRow) -> Result<Vec<Value>> {
        table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c.kind {
                Kind::Integer => required(table, c, row.try_get::<Option<i64>, _>(i)?, Value::Int),
                Kind::Text => required(table, c, row.try_get::<Option<String>, _>(i)?, Value::Text),
                Kind::Blob => {
                    required(table, c, row.try_get::<Option<Vec<u8>>, _>(i)?, Value::Blob)
                }
                Kind::Flag => {
                    let flag = row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0);
                    required(table, c, flag, Value::Flag)
                }
            })
            .collect()
    }

    pub(super) async fn columns(pool: &SqlitePool, table: &Table) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
                .bind(table.name)
                .fetch_all(pool)
                .await?,
        )
    }

    pub(super) async fn insert(
        pool: &SqlitePool,
        table: &Table,
        rows: Vec<Vec<Value>>,
    ) -> Result<()> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "INSERT INTO {} ({}) ",
            table.name,
            column_list(table)
        ));
        q.push_values(rows, |mut b, row| {
            for (column, value) in table.columns.iter().zip(row) {
                match value {
                    Value::Null => match column.kind {
                        Kind::Integer | Kind::Flag => b.push_bind(None::<i64>),
                        Kind::Text => b.push_bind(None::<String>),
                        Kind::Blob => b.push_bind(None::<Vec<u8>>),
                    },
                    Value::Int(n) => b.push_bind(n),
                    Value::Text(s) => b.push_bind(s),
                    Value::Blob(bytes) => b.push_bind(bytes),
                    Value::Flag(flag) => b.push_bind(i64::from(flag)),
                };
            }
        });
        let mut tx = pool.begin().await?;
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}

mod postgres {
    //! The PostgreSQL half.

    use super::*;
    use sqlx::postgres::PgRow;

    backend!(Postgres, PgPool);

    /// One snapshot for the whole export, read-only.
    async fn begin_snapshot(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    fn decode(table: &Table, row: &PgRow) -> Result<Vec<Value>> {
        table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| match c.kind {
                Kind::Integer => required(table, c, row.try_get::<Option<i64>, _>(i)?, Value::Int),
                Kind::Text => required(table, c, row.try_get::<Option<String>, _>(i)?, Value::Text),
                Kind::Blob => {
                    required(table, c, row.try_get::<Option<Vec<u8>>, _>(i)?, Value::Blob)
                }
                Kind::Flag => required(table, c, row.try_get::<Option<bool>, _>(i)?, Value::Flag),
            })
            .collect()
    }

    pub(super) async fn columns(pool: &PgPool, table: &Table) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table.name)
        .fetch_all(pool)
        .await?)
    }

    /// PostgreSQL `text` cannot hold NUL; the adapter stores U+FFFD in its place (see
    /// `postgres::text`), and so does the import.
    fn text(value: String) -> String {
        if value.contains('\0') {
            value.replace('\0', "\u{FFFD}")
        } else {
            value
        }
    }

    pub(super) async fn insert(pool: &PgPool, table: &Table, rows: Vec<Vec<Value>>) -> Result<()> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO {} ({}) {}",
            table.name,
            column_list(table),
            if table.seq_identity {
                "OVERRIDING SYSTEM VALUE "
            } else {
                ""
            }
        ));
        q.push_values(rows, |mut b, row| {
            for (column, value) in table.columns.iter().zip(row) {
                match value {
                    Value::Null => match column.kind {
                        Kind::Integer => b.push_bind(None::<i64>),
                        Kind::Flag => b.push_bind(None::<bool>),
                        Kind::Text => b.push_bind(None::<String>),
                        Kind::Blob => b.push_bind(None::<Vec<u8>>),
                    },
                    Value::Int(n) => b.push_bind(n),
                    Value::Text(s) => b.push_bind(text(s)),
                    Value::Blob(bytes) => b.push_bind(bytes),
                    Value::Flag(flag) => b.push_bind(flag),
                };
            }
        });
        let mut tx = pool.begin().await?;
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves every `seq` identity past the largest imported value.
    pub(super) async fn reset_sequences(pool: &PgPool) -> Result<()> {
        for table in TABLES.iter().filter(|t| t.seq_identity) {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'seq'), \
                 COALESCE((SELECT MAX(seq) FROM {0}), 0) + 1, false)",
                table.name
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?;
        }
        Ok(())
    }
}
