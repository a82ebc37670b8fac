//! PostgreSQL: the delivered JSON object becomes one row of a table in the user's database, in
//! one statement per delivery:
//!
//! ```sql
//! INSERT INTO "schema"."table" ("id", "total")
//! SELECT "id", "total" FROM json_populate_record(NULL::"schema"."table", $1::json)
//! ON CONFLICT ("id") DO UPDATE SET "total" = EXCLUDED."total"
//! ```
//!
//! The parameter is the body's own JSON text (values never re-encoded).
//!
//! `json_populate_record` takes the column types from the table's row type, so PostgreSQL
//! converts each JSON value with the column type's own input rules (text into `timestamptz`,
//! numbers into `numeric`, objects into `jsonb`, arrays into arrays…) and a value that does not
//! fit fails with the database's message. Nothing needs to know the table's types in advance
//! (`jsonb_to_record` would need a column definition list, so a catalog lookup and a type
//! mapping here). Names are checked ([`is_sql_identifier`]) and always quoted; values are only
//! ever bound as the one JSON parameter.
//!
//! Errors: connection failures, timeouts, serialization failures and deadlocks are retried;
//! data, constraint and schema errors (SQLSTATE classes 22, 23, 42) and authentication errors
//! are permanent, with PostgreSQL's message.
//!
//! The pool (`pool_size` connections) is created on the first delivery and reconnects on its
//! own. The database is the operator's configuration, like the store's; the SSRF policy for
//! webhook URLs does not apply to it.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPool, PgPoolOptions};
use switchboard_core::AttemptOutcome;
use switchboard_core::config::{
    OnConflict, PostgresDestination, is_sql_identifier, split_table_name,
};

use super::{Attempt, Connector};
use crate::delivery::sender::AttemptReport;

/// A configured PostgreSQL destination.
pub struct Postgres {
    options: PgConnectOptions,
    pool_size: u32,
    timeout: Duration,
    pool: OnceLock<PgPool>,
    /// The quoted table name, `"schema"."table"`.
    table: String,
    conflict: Vec<String>,
    action: OnConflict,
    columns: Option<Vec<String>>,
    describe: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `PgConnectOptions` would show the password.
        f.debug_struct("Postgres")
            .field("to", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Drop for Postgres {
    /// A configuration change builds a new connector: end the old pool's sessions politely
    /// (running statements finish first) instead of dropping their sockets.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { pool.close().await });
        }
    }
}

/// `"name"`: the name quoted as an identifier (names are checked first; doubling `"` keeps even
/// an unchecked name inert).
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Postgres {
    /// Checks and keeps the settings; no I/O (the pool connects on first use).
    pub fn new(config: &PostgresDestination) -> Result<Self, String> {
        let (schema, name) = split_table_name(&config.table)?;
        let password = url::Url::parse(&config.url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned));
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| {
                // Never echo a password, whatever the parser put in its message.
                let mut text = e.to_string();
                if let Some(password) = password.as_deref().filter(|p| !p.is_empty()) {
                    text = text.replace(password, "<redacted>");
                }
                format!("url is not a valid PostgreSQL URL: {text}")
            })?
            .application_name("switchboard")
            .options([(
                "statement_timeout",
                config.timeout.as_millis().max(1).to_string(),
            )]);
        let table = match schema {
            Some(schema) => format!("{}.{}", quote(schema), quote(name)),
            None => quote(name),
        };
        let describe = format!(
            "postgres {}:{}/{} table {}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(""),
            config.table
        );
        Ok(Self {
            options,
            pool_size: config.pool_size.max(1),
            timeout: config.timeout,
            pool: OnceLock::new(),
            table,
            conflict: config.conflict.clone(),
            action: config.conflict_action(),
            columns: config.columns.clone(),
            describe,
        })
    }

    fn pool(&self) -> &PgPool {
        self.pool.get_or_init(|| {
            PgPoolOptions::new()
                .max_connections(self.pool_size)
                .min_connections(0)
                // Leaves a fifth of the attempt to find out why no connection came.
                .acquire_timeout(self.timeout.mul_f32(0.8))
                .idle_timeout(Duration::from_secs(300))
                .connect_lazy_with(self.options.clone())
        })
    }

    /// The pool gave no connection in time, and hides why (it retries connection errors until
    /// its deadline): one direct connection attempt, within `budget`, tells a database that is
    /// down or refuses the credentials from a pool that was merely busy.
    async fn why_no_connection(&self, budget: Duration) -> (AttemptOutcome, String) {
        use sqlx::Connection as _;
        let retry = AttemptOutcome::Retryable { retry_after: None };
        let budget = budget.clamp(Duration::from_millis(200), Duration::from_secs(2));
        match tokio::time::timeout(budget, sqlx::PgConnection::connect_with(&self.options)).await
        {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                (
                    retry,
                    format!(
                        "postgres: all {} connections of the pool stayed busy for the timeout;                          raise pool_size or lower max_in_flight",
                        self.pool_size
                    ),
                )
            }
            Ok(Err(error)) => {
                let (outcome, text) = classify(&error);
                (outcome, format!("{text} (while connecting)"))
            }
            Err(_) => (
                retry,
                "postgres: no connection within the timeout (connecting hangs: the host is                  unreachable or overloaded)"
                    .into(),
            ),
        }
    }

    /// The statement and its one parameter: the row as JSON text, made of the body's keys
    /// (within `columns`) with their values exactly as delivered (never re-encoded, so a number
    /// keeps every digit for a `numeric` column).
    fn statement(&self, body: &[u8]) -> Result<(String, String), String> {
        let value: Box<RawValue> = serde_json::from_slice(body).map_err(|e| {
            format!(
                "the postgres destination writes a JSON object and the delivered body is not JSON \
                 ({e}); shape it with a route transform"
            )
        })?;
        if !value.get().starts_with('{') {
            return Err(format!(
                "the postgres destination writes a JSON object (one row) and the delivered body \
                 is {}; shape it with a route transform, e.g. `{{id: .body.id, total: .body.total}}`",
                kind_of(value.get())
            ));
        }
        let object: BTreeMap<String, Box<RawValue>> = serde_json::from_str(value.get())
            .map_err(|e| format!("the delivered body is not a JSON object: {e}"))?;
        let row: BTreeMap<String, Box<RawValue>> = match &self.columns {
            Some(allowed) => object
                .into_iter()
                .filter(|(key, _)| allowed.contains(key))
                .collect(),
            None => object,
        };
        if let Some(bad) = row.keys().find(|key| !is_sql_identifier(key)) {
            return Err(format!(
                "key `{bad}` of the body is not a valid column name (letters, digits and `_`, \
                 not starting with a digit, at most 63 bytes); rename it in a route transform \
                 or leave it out with `columns`"
            ));
        }
        if row.is_empty() {
            return Err(match &self.columns {
                Some(_) => {
                    "the body has none of the keys listed in `columns`: no column to write".into()
                }
                None => "the body is an empty object: no column to write".into(),
            });
        }
        if let Some(key) = self.conflict.iter().find(|key| !row.contains_key(*key)) {
            return Err(format!(
                "the body has no `{key}`, a conflict key column; every row needs its key"
            ));
        }
        let names: Vec<String> = row.keys().map(|k| quote(k)).collect();
        let list = names.join(", ");
        let mut sql = format!(
            "INSERT INTO {table} ({list}) SELECT {list} FROM json_populate_record(NULL::{table}, $1::json)",
            table = self.table,
        );
        let keys = self
            .conflict
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ");
        let target = if keys.is_empty() {
            String::new()
        } else {
            format!(" ({keys})")
        };
        let updates: Vec<String> = row
            .keys()
            .filter(|k| !self.conflict.contains(k))
            .map(|k| format!("{name} = EXCLUDED.{name}", name = quote(k)))
            .collect();
        match self.action {
            OnConflict::Error => {}
            OnConflict::Ignore => sql.push_str(&format!(" ON CONFLICT{target} DO NOTHING")),
            // Only key columns: there is nothing to update, and the row is there already.
            OnConflict::Update if updates.is_empty() => {
                sql.push_str(&format!(" ON CONFLICT{target} DO NOTHING"))
            }
            OnConflict::Update => sql.push_str(&format!(
                " ON CONFLICT{target} DO UPDATE SET {}",
                updates.join(", ")
            )),
        }
        Ok((sql, row_json(&row)))
    }
}

/// What a JSON text (trimmed, as `RawValue` keeps it) is, for messages.
fn kind_of(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'{') => "an object",
        _ => "a number",
    }
}

/// `{"key":<raw value>,…}`.
fn row_json(row: &BTreeMap<String, Box<RawValue>>) -> String {
    let mut out = String::from("{");
    for (i, (key, value)) in row.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // A key is a checked identifier: it needs no escaping, but encode it properly anyway.
        out.push_str(&Value::from(key.as_str()).to_string());
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    out
}

fn report(
    outcome: AttemptOutcome,
    error: Option<String>,
    excerpt: Vec<u8>,
    started: Instant,
) -> AttemptReport {
    AttemptReport {
        outcome,
        status: None,
        error,
        headers: Vec::new(),
        body_excerpt: excerpt,
        latency: started.elapsed(),
    }
}

/// Whether a SQLSTATE is worth retrying: connection problems (08), transaction rollbacks
/// such as serialization failures and deadlocks (40), insufficient resources (53), operator
/// intervention such as a shutdown or a cancelled statement (57), lock timeouts and objects in
/// use (55), system and internal errors (58, XX). Data (22), integrity (23), syntax and schema
/// (42), authorization (28), unknown database (3D) and the rest are permanent.
fn retryable_sqlstate(code: &str) -> bool {
    matches!(
        code.get(..2),
        Some("08" | "40" | "53" | "55" | "57" | "58" | "XX")
    )
}

/// Classifies a failed statement.
fn classify(error: &sqlx::Error) -> (AttemptOutcome, String) {
    let retry = AttemptOutcome::Retryable { retry_after: None };
    match error {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let mut text = format!(
                "postgres refused the row: {} (SQLSTATE {code})",
                db.message()
            );
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!("; {detail}"));
                }
                if let Some(hint) = pg.hint() {
                    text.push_str(&format!("; hint: {hint}"));
                }
            }
            let outcome = if retryable_sqlstate(&code) {
                retry
            } else {
                AttemptOutcome::Permanent
            };
            (outcome, text)
        }
        sqlx::Error::Configuration(e) => (
            AttemptOutcome::Permanent,
            format!("postgres connection settings: {e}"),
        ),
        sqlx::Error::PoolTimedOut => (
            retry,
            "postgres: no connection available within the timeout (the database is down, \
             unreachable or busy)"
                .into(),
        ),
        other => (retry, format!("postgres: {other}")),
    }
}

#[async_trait]
impl Connector for Postgres {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn deliver(&self, attempt: Attempt<'_>) -> AttemptReport {
        let started = Instant::now();
        let (sql, row) = match self.statement(&attempt.message.body) {
            Ok(statement) => statement,
            Err(error) => {
                return report(AttemptOutcome::Permanent, Some(error), Vec::new(), started);
            }
        };
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(row);
        match tokio::time::timeout(attempt.timeout, query.execute(self.pool())).await {
            Ok(Ok(done)) => report(
                AttemptOutcome::Delivered,
                None,
                format!("rows affected: {}", done.rows_affected()).into_bytes(),
                started,
            ),
            Ok(Err(sqlx::Error::PoolTimedOut)) => {
                let budget = attempt.timeout.saturating_sub(started.elapsed());
                let (outcome, text) = self.why_no_connection(budget).await;
                report(outcome, Some(text), Vec::new(), started)
            }
            Ok(Err(error)) => {
                let (outcome, text) = classify(&error);
                report(outcome, Some(text), Vec::new(), started)
            }
            Err(_) => report(
                AttemptOutcome::Retryable { retry_after: None },
                Some(format!(
                    "postgres: timed out after {}",
                    humantime::format_duration(attempt.timeout)
                )),
                Vec::new(),
                started,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PostgresDestination {
        PostgresDestination {
            id: "rows".into(),
            url: "postgres://app:s3cret@db.internal:5433/shop".into(),
            table: "sales.orders".into(),
            conflict: vec!["id".into()],
            on_conflict: None,
            columns: None,
            pool_size: 2,
            timeout: Duration::from_secs(5),
            retry: Default::default(),
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            enabled: true,
        }
    }

    #[test]
    fn upserts_update_every_column_but_the_key() {
        let pg = Postgres::new(&config()).expect("valid");
        let (sql, row) = pg
            .statement(br#"{"id": 7, "note": null, "total": "9.50"}"#)
            .expect("statement");
        assert_eq!(
            sql,
            "INSERT INTO \"sales\".\"orders\" (\"id\", \"note\", \"total\") SELECT \"id\", \
             \"note\", \"total\" FROM json_populate_record(NULL::\"sales\".\"orders\", $1::json) \
             ON CONFLICT (\"id\") DO UPDATE SET \"note\" = EXCLUDED.\"note\", \"total\" = \
             EXCLUDED.\"total\""
        );
        assert_eq!(row, r#"{"id":7,"note":null,"total":"9.50"}"#);
        assert_eq!(
            pg.describe(),
            "postgres db.internal:5433/shop table sales.orders"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
    }

    #[test]
    fn plain_inserts_ignores_and_allow_lists() {
        let mut c = config();
        c.conflict.clear();
        let pg = Postgres::new(&c).expect("valid");
        let (sql, _) = pg.statement(br#"{"a": 1}"#).expect("statement");
        assert!(sql.ends_with("$1::json)"), "{sql}");

        c.on_conflict = Some(OnConflict::Ignore);
        let pg = Postgres::new(&c).expect("valid");
        let (sql, _) = pg.statement(br#"{"a": 1}"#).expect("statement");
        assert!(sql.ends_with(" ON CONFLICT DO NOTHING"), "{sql}");

        let mut c = config();
        c.columns = Some(vec!["id".into(), "total".into()]);
        let pg = Postgres::new(&c).expect("valid");
        let (sql, row) = pg
            .statement(br#"{"id": 1, "total": 2, "bad-key": 3, "extra": 4}"#)
            .expect("statement");
        assert_eq!(row, r#"{"id":1,"total":2}"#);
        assert!(!sql.contains("extra"), "{sql}");
        let (sql, _) = pg.statement(br#"{"id": 1}"#).expect("statement");
        assert!(sql.ends_with("ON CONFLICT (\"id\") DO NOTHING"), "{sql}");
    }

    #[test]
    fn values_are_passed_exactly_as_delivered() {
        let pg = Postgres::new(&config()).expect("valid");
        let (_, row) = pg
            .statement(
                br#"{ "id" : 123456789012345678901234567890,
                      "total": 0.1000000000000000055511151231257827,
                      "tags": [ "a", {"b": "\u00e9\n"} ] }"#,
            )
            .expect("statement");
        assert_eq!(
            row,
            r#"{"id":123456789012345678901234567890,"tags":[ "a", {"b": "\u00e9\n"} ],"total":0.1000000000000000055511151231257827}"#
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        let pg = Postgres::new(&config()).expect("valid");
        let error = pg.statement(b"[1, 2]").expect_err("array");
        assert!(error.contains("is an array"), "{error}");
        let error = pg.statement(b"not json").expect_err("text");
        assert!(error.contains("not JSON"), "{error}");
        let error = pg
            .statement(br#"{"id": 1, "x\"; drop table t; --": 1}"#)
            .expect_err("bad key");
        assert!(error.contains("not a valid column name"), "{error}");
        let error = pg.statement(br#"{"total": 1}"#).expect_err("no key");
        assert!(error.contains("conflict key"), "{error}");
        let error = pg.statement(b"{}").expect_err("empty");
        assert!(error.contains("empty object"), "{error}");
    }

    #[test]
    fn sqlstates_are_classified() {
        for code in [
            "40001", "40P01", "08006", "53300", "57P01", "55P03", "XX000",
        ] {
            assert!(retryable_sqlstate(code), "{code}");
        }
        for code in ["22P02", "23505", "42P01", "42703", "28P01", "3D000", ""] {
            assert!(!retryable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn url_errors_do_not_echo_the_password() {
        let mut c = config();
        c.url = "postgres://app:s3cret@db.internal/shop?unknown_option=1".into();
        if let Err(error) = Postgres::new(&c) {
            assert!(!error.contains("s3cret"), "{error}");
        }
    }
}
