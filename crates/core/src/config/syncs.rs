//! `[[syncs]]`: jobs that keep a table (or a stream of change events) in step with the records
//! a third-party REST API lists.
//!
//! The settings are checked here without I/O (names, numbers, the shape of the pagination); the
//! server compiles the jq programs and parses the cron expression when it builds a snapshot
//! (`switchboard_server::sync::check`), like it does for schedule sources — core stays free of
//! jaq and croner.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

use super::destinations::{is_sql_identifier, split_table_name};

/// One `[[syncs]]` job.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Unique id (letters, digits, `-`, `_`). Change events are events of a source with this
    /// id, so routes name it as their `source`.
    pub id: String,
    /// The connection (`/v1/connections`) the list endpoint is called through: its base URL,
    /// credentials, pacing, retries and circuit breaker apply.
    pub connection: String,
    /// Path (and optional query) of the list endpoint below the provider's base URL
    /// (`repos/acme/app/issues?state=all`).
    pub path: String,
    /// Extra request headers (their values are treated as secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How the endpoint pages.
    #[serde(default)]
    pub pagination: Pagination,
    /// jq, run on each page's JSON body: the records of the page (one array, or several
    /// outputs). `.` (a top-level array) by default.
    #[serde(default = "default_records")]
    pub records: String,
    /// jq, run on each record: its primary key (a string or number, never null).
    pub key: String,
    /// jq, run on each record: the shape written to the destination (an object for tables).
    /// The record unchanged when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// `full` (list everything each run; records gone from the list are deleted after a
    /// complete run) or `incremental` (list what changed since the last run's cursor).
    #[serde(default)]
    pub mode: SyncMode,
    /// Incremental settings (required with `mode = "incremental"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalConfig>,
    /// Where the records go.
    pub destination: SyncDestination,
    /// Publish each change as an event (`record.created`, `record.updated`, `record.deleted`)
    /// of the source named after this sync, for routes to deliver.
    #[serde(default)]
    pub publish_changes: bool,
    /// Cron expression (5 fields, or 6 with seconds first) on which a run starts; runs only
    /// on demand (`POST /v1/syncs/{id}/run`) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A run stops (status `paused`, resumed by the next run) after this long.
    #[serde(
        default,
        with = "duration::human_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_run_time: Option<Duration>,
    /// A run stops (status `paused`, resumed by the next run) after reading this many records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records: Option<u64>,
    /// Time allowed for one page request, retries included.
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Two-way sync with a `rest` destination: changes on either side are written to the
    /// other; records changed on both sides since the last run are resolved by `conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub two_way: Option<TwoWayConfig>,
}

/// `two_way = { conflict = "latest_wins", updated_at = ".updated_at" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoWayConfig {
    /// What wins when a record changed on both sides since the last run.
    pub conflict: ConflictPolicy,
    /// jq on a source record: when it last changed (an RFC 3339 string or a number); needed by
    /// `latest_wins` (with the destination's `updated_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Conflict policy of a two-way sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// The side whose `updated_at` is later wins (the source on a tie).
    LatestWins,
    /// The source's version wins.
    SourceWins,
    /// The destination's version wins.
    DestinationWins,
    /// Nothing is written; the conflict is parked for review (`GET /v1/syncs/{id}/conflicts`).
    Manual,
}

impl ConflictPolicy {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LatestWins => "latest_wins",
            Self::SourceWins => "source_wins",
            Self::DestinationWins => "destination_wins",
            Self::Manual => "manual",
        }
    }
}

fn default_records() -> String {
    ".".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

impl fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncConfig")
            .field("id", &self.id)
            .field("connection", &self.connection)
            .field("path", &self.path)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("pagination", &self.pagination)
            .field("records", &self.records)
            .field("key", &self.key)
            .field("mapping", &self.mapping)
            .field("mode", &self.mode)
            .field("incremental", &self.incremental)
            .field("destination", &self.destination)
            .field("publish_changes", &self.publish_changes)
            .field("schedule", &self.schedule)
            .field("max_run_time", &self.max_run_time)
            .field("max_records", &self.max_records)
            .field("two_way", &self.two_way)
            .finish()
    }
}

/// Full refresh or incremental.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Every run lists everything; deletes are detected after a complete run.
    #[default]
    Full,
    /// Every run lists what changed since the previous successful run.
    Incremental,
}

impl SyncMode {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// `incremental = { cursor_field = ".updated_at", param = "updated_since" }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrementalConfig {
    /// jq, run on each record: its cursor value (a string or number that grows with every
    /// change, such as an ISO-8601 `updated_at`). The largest seen becomes the next run's
    /// starting point once a run succeeds.
    pub cursor_field: String,
    /// Query parameter that carries the starting point (`updated_since`).
    pub param: String,
}

/// How the list endpoint pages.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "style", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// The whole list in one response.
    #[default]
    None,
    /// A token in the body (read with `cursor_path`) is sent back as `cursor_param`; the list
    /// ends when the token is null, empty or absent.
    Cursor {
        /// jq on the body: the next page's token.
        cursor_path: String,
        /// Query parameter carrying the token.
        cursor_param: String,
        /// Query parameter for the page size (not sent when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_param: Option<String>,
        /// Records per page asked for.
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
    /// `offset` and `limit` parameters; the list ends with a short page.
    Offset {
        /// Query parameter for the offset.
        #[serde(default = "default_offset_param")]
        offset_param: String,
        /// Query parameter for the page size.
        #[serde(default = "default_limit_param")]
        limit_param: String,
        /// Records per page.
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
    /// A page number; the list ends with a short page.
    Page {
        /// Query parameter for the page number.
        #[serde(default = "default_page_param")]
        page_param: String,
        /// Number of the first page.
        #[serde(default = "default_first_page")]
        first_page: u64,
        /// Query parameter for the page size (not sent when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_param: Option<String>,
        /// Records per page (a shorter page ends the list).
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
    /// The `Link` response header's `rel="next"` URL (GitHub, RFC 8288); the list ends
    /// without one.
    Link {
        /// Query parameter for the page size on the first request (not sent when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit_param: Option<String>,
        /// Records per page asked for.
        #[serde(default = "default_page_size")]
        page_size: u32,
    },
}

impl Pagination {
    /// Wire name of the style.
    pub fn style(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Cursor { .. } => "cursor",
            Self::Offset { .. } => "offset",
            Self::Page { .. } => "page",
            Self::Link { .. } => "link",
        }
    }

    fn page_size(&self) -> Option<u32> {
        match self {
            Self::None => None,
            Self::Cursor { page_size, .. }
            | Self::Offset { page_size, .. }
            | Self::Page { page_size, .. }
            | Self::Link { page_size, .. } => Some(*page_size),
        }
    }
}

fn default_page_size() -> u32 {
    100
}
fn default_offset_param() -> String {
    "offset".into()
}
fn default_limit_param() -> String {
    "limit".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_first_page() -> u64 {
    1
}

/// Where a sync writes.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SyncDestination {
    /// A table in a SQLite database file (created with the declared columns if missing).
    Sqlite {
        /// The database file (created if missing).
        path: std::path::PathBuf,
        /// The table.
        table: String,
        /// Columns, in order; exactly one has `key = true`.
        columns: Vec<SyncColumn>,
    },
    /// A table in a PostgreSQL database (created with the declared columns if missing).
    Postgres {
        /// `postgres://…` URL (its password is a secret).
        url: String,
        /// The table (`name` or `schema.name`).
        table: String,
        /// Columns, in order; exactly one has `key = true`.
        columns: Vec<SyncColumn>,
    },
    /// No table: the change events are the output (`publish_changes` must be on).
    Events,
    /// A REST API through a connection: created records are `POST`ed to `path`, updated ones
    /// `PUT` to `path/{key}`, deleted ones `DELETE`d at `path/{key}`, each with the mapped
    /// record as JSON body. For a two-way sync it is also listed (`pagination`, `records`,
    /// `key`, `mapping`).
    Rest(Box<RestDestination>),
}

/// `destination = { kind = "rest", connection, path, … }`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestDestination {
    /// The connection the calls go through.
    pub connection: String,
    /// Collection path below the provider's base URL (`contacts`).
    pub path: String,
    /// How the collection pages (two-way).
    #[serde(default)]
    pub pagination: Pagination,
    /// jq selecting a page's records (two-way).
    #[serde(default = "default_records")]
    pub records: String,
    /// jq: a destination record's key, the same key space as the source's (two-way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// jq: a destination record in the source's mapped shape (two-way; unchanged when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapping: Option<String>,
    /// jq on a destination record: when it last changed (`latest_wins`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl fmt::Debug for SyncDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite {
                path,
                table,
                columns,
            } => f
                .debug_struct("Sqlite")
                .field("path", path)
                .field("table", table)
                .field("columns", columns)
                .finish(),
            Self::Postgres {
                url,
                table,
                columns,
            } => f
                .debug_struct("Postgres")
                .field("url", &super::redact_url_password(url))
                .field("table", table)
                .field("columns", columns)
                .finish(),
            Self::Events => f.write_str("Events"),
            Self::Rest(rest) => f
                .debug_struct("Rest")
                .field("connection", &rest.connection)
                .field("path", &rest.path)
                .finish(),
        }
    }
}

impl SyncDestination {
    /// Wire name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
            Self::Events => "events",
            Self::Rest(_) => "rest",
        }
    }

    /// The declared columns (empty for `events` and `rest`).
    pub fn columns(&self) -> &[SyncColumn] {
        match self {
            Self::Sqlite { columns, .. } | Self::Postgres { columns, .. } => columns,
            Self::Events | Self::Rest(_) => &[],
        }
    }

    /// The key column, when the destination is a table.
    pub fn key_column(&self) -> Option<&SyncColumn> {
        self.columns().iter().find(|c| c.key)
    }
}

/// One column of a destination table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncColumn {
    /// Column name (letters, digits, `_`); the mapped record's field of the same name fills
    /// it.
    pub name: String,
    /// Value type.
    #[serde(rename = "type", default)]
    pub column_type: ColumnType,
    /// The primary key: upserts and deletes go by this column. Filled from the record's key
    /// when the mapping leaves it out.
    #[serde(default)]
    pub key: bool,
}

/// A column's type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Text (`TEXT` / `text`).
    #[default]
    Text,
    /// 64-bit integer (`INTEGER` / `bigint`).
    Integer,
    /// Floating point (`REAL` / `double precision`).
    Real,
    /// Boolean (`INTEGER` 0/1 / `boolean`).
    Boolean,
    /// Any JSON value (`TEXT` holding JSON / `jsonb`).
    Json,
    /// A point in time (`TEXT` ISO-8601 / `timestamptz`).
    Timestamp,
}

impl ColumnType {
    /// The SQLite column type.
    pub fn sqlite(self) -> &'static str {
        match self {
            Self::Text | Self::Json | Self::Timestamp => "TEXT",
            Self::Integer | Self::Boolean => "INTEGER",
            Self::Real => "REAL",
        }
    }

    /// The PostgreSQL column type.
    pub fn postgres(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Integer => "bigint",
            Self::Real => "double precision",
            Self::Boolean => "boolean",
            Self::Json => "jsonb",
            Self::Timestamp => "timestamptz",
        }
    }
}

impl SyncConfig {
    /// Checks what can be checked without I/O or the jq/cron engines.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.id;
        let bad = |what: String| Err(format!("sync `{id}`: {what}"));
        if self.connection.trim().is_empty() {
            return bad("connection must name a connection".into());
        }
        if self.path.trim().is_empty() {
            return bad("path must not be empty".into());
        }
        if self.path.contains("://") {
            return bad("path is a path below the connection's base URL, not a full URL".into());
        }
        for (what, program) in [("records", &self.records), ("key", &self.key)] {
            if program.trim().is_empty() {
                return bad(format!("{what} must be a jq program"));
            }
        }
        if let Some(size) = self.pagination.page_size()
            && !(1..=10_000).contains(&size)
        {
            return bad("pagination.page_size must be between 1 and 10000".into());
        }
        match (&self.mode, &self.incremental) {
            (SyncMode::Incremental, None) => {
                return bad(
                    "mode = \"incremental\" needs incremental = { cursor_field, param }".into(),
                );
            }
            (_, Some(inc)) if inc.cursor_field.trim().is_empty() || inc.param.is_empty() => {
                return bad("incremental.cursor_field and incremental.param are required".into());
            }
            _ => {}
        }
        if self.max_records == Some(0) {
            return bad("max_records must be ≥ 1".into());
        }
        if self.max_run_time.is_some_and(|d| d.is_zero()) || self.timeout.is_zero() {
            return bad("max_run_time and timeout must be > 0".into());
        }
        if let Some(two_way) = &self.two_way {
            let SyncDestination::Rest(rest) = &self.destination else {
                return bad("two_way needs destination kind \"rest\"".into());
            };
            if self.mode != SyncMode::Full {
                return bad("two_way syncs list both sides fully: use mode = \"full\"".into());
            }
            if rest.key.is_none() {
                return bad(
                    "two_way needs destination.key (jq: a destination record's key)".into(),
                );
            }
            if two_way.conflict == ConflictPolicy::LatestWins
                && (two_way.updated_at.is_none() || rest.updated_at.is_none())
            {
                return bad(
                    "conflict = \"latest_wins\" needs two_way.updated_at and destination.updated_at"
                        .into(),
                );
            }
        }
        match &self.destination {
            SyncDestination::Rest(rest) => {
                if rest.connection.trim().is_empty() || rest.path.trim().is_empty() {
                    return bad("destination.connection and destination.path are required".into());
                }
                if rest.path.contains("://") {
                    return bad("destination.path is a path below the connection's base URL".into());
                }
            }
            SyncDestination::Events => {
                if !self.publish_changes {
                    return bad(
                        "destination kind \"events\" writes nothing: set publish_changes = true"
                            .into(),
                    );
                }
            }
            SyncDestination::Sqlite { table, columns, .. } => {
                if !is_sql_identifier(table) {
                    return bad(format!("table `{table}` is not a valid name"));
                }
                if let Err(e) = check_columns(columns) {
                    return bad(e);
                }
            }
            SyncDestination::Postgres {
                url,
                table,
                columns,
                ..
            } => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return bad("destination.url must be a postgres:// URL".into());
                }
                if let Err(e) = split_table_name(table) {
                    return bad(e);
                }
                if let Err(e) = check_columns(columns) {
                    return bad(e);
                }
            }
        }
        Ok(())
    }
}

fn check_columns(columns: &[SyncColumn]) -> Result<(), String> {
    if columns.is_empty() {
        return Err("destination.columns must declare at least the key column".into());
    }
    let mut names = std::collections::HashSet::new();
    for column in columns {
        if !is_sql_identifier(&column.name) {
            return Err(format!("column `{}` is not a valid name", column.name));
        }
        if !names.insert(column.name.to_ascii_lowercase()) {
            return Err(format!("column `{}` is declared twice", column.name));
        }
    }
    match columns.iter().filter(|c| c.key).count() {
        1 => Ok(()),
        n => Err(format!("exactly one column must have key = true ({n} do)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SyncConfig, String> {
        let config: SyncConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    const BASE: &str = r#"
id = "issues"
connection = "github"
path = "repos/acme/app/issues"
key = ".id"
"#;

    #[test]
    fn a_full_table_sync_parses() {
        let config = parse(&format!(
            "{BASE}pagination = {{ style = 'link', page_size = 50 }}\n\
             destination = {{ kind = 'sqlite', path = 'x.db', table = 'issues', columns = [\
             {{ name = 'id', type = 'integer', key = true }}, {{ name = 'title' }}] }}\n"
        ))
        .expect("valid");
        assert_eq!(config.mode, SyncMode::Full);
        assert_eq!(config.pagination.style(), "link");
        assert_eq!(
            config.destination.key_column().map(|c| c.name.as_str()),
            Some("id")
        );
        assert_eq!(config.records, ".");
    }

    #[test]
    fn mistakes_are_named() {
        let table = "destination = { kind = 'sqlite', path = 'x.db', table = 't', columns = [{ name = 'id' }] }\n";
        let error = parse(&format!("{BASE}{table}")).expect_err("no key column");
        assert!(error.contains("key = true"), "{error}");
        let error = parse(&format!("{BASE}mode = 'incremental'\ndestination = {{ kind = 'events' }}\npublish_changes = true\n"))
            .expect_err("incremental without cursor");
        assert!(error.contains("incremental"), "{error}");
        let error = parse(&format!("{BASE}destination = {{ kind = 'events' }}\n"))
            .expect_err("events without publishing");
        assert!(error.contains("publish_changes"), "{error}");
        let error = parse(&format!(
            "{BASE}destination = {{ kind = 'events' }}\npublish_changes = true\ntypo = 1\n"
        ))
        .expect_err("unknown key");
        assert!(error.contains("typo"), "{error}");
        let error = parse(&format!(
            "{BASE}pagination = {{ style = 'offset', page_size = 0 }}\ndestination = {{ kind = 'events' }}\npublish_changes = true\n"
        ))
        .expect_err("page size");
        assert!(error.contains("page_size"), "{error}");
    }

    #[test]
    fn debug_hides_the_database_password() {
        let config = parse(&format!(
            "{BASE}destination = {{ kind = 'postgres', url = 'postgres://u:hunter2@db/x', table = 'public.t', columns = [{{ name = 'id', key = true }}] }}\n"
        ))
        .expect("valid");
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
