//! `kind = "postgres"`: rows in the user's own PostgreSQL database.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DestinationKind, default_timeout};
use crate::duration;
use crate::retry::RetryPolicy;

/// What an insert does when a row with the same key exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// A plain `INSERT`: a duplicate key fails the delivery (unique violation, permanent).
    Error,
    /// `ON CONFLICT … DO NOTHING`: the existing row is kept.
    Ignore,
    /// `ON CONFLICT (conflict) DO UPDATE SET …`: the existing row is updated (upsert).
    Update,
}

/// A PostgreSQL destination. The delivered body (usually a route transform's output) must be a
/// JSON object; its keys are the columns of one row written into `table` by one statement.
/// PostgreSQL converts each JSON value to its column's type (`json_populate_record`).
///
/// `Debug` hides the password of `url`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresDestination {
    /// The destination's id.
    pub id: String,
    /// Connection URL, `postgres://user:password@host:5432/database?sslmode=require` (the
    /// password is a secret).
    pub url: String,
    /// The table, `name` or `schema.name` (letters, digits and `_`; case-sensitive as written).
    pub table: String,
    /// Key columns of the upsert (`ON CONFLICT (…)`); they need a unique index or constraint.
    #[serde(default)]
    pub conflict: Vec<String>,
    /// `error`, `ignore` or `update`; default `update` when `conflict` is set, else `error`.
    #[serde(default)]
    pub on_conflict: Option<OnConflict>,
    /// Only these keys of the body are written (others are ignored); default: every key.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Connections in this destination's pool (default 2).
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
    /// Per-attempt timeout (also the statement timeout).
    #[serde(with = "duration::human", default = "default_timeout")]
    pub timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Attempts in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Rows per second at most.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Write in order.
    #[serde(default)]
    pub ordered: bool,
    /// `false` pauses the destination: its deliveries are kept pending and are sent once it is
    /// enabled again.
    #[serde(
        default = "crate::config::enabled_by_default",
        skip_serializing_if = "crate::config::is_enabled"
    )]
    pub enabled: bool,
}

fn default_pool_size() -> u32 {
    2
}

impl std::fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDestination")
            .field("id", &self.id)
            .field("url", &crate::config::redact_url_password(&self.url))
            .field("table", &self.table)
            .field("conflict", &self.conflict)
            .field("on_conflict", &self.on_conflict)
            .field("columns", &self.columns)
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit", &self.rate_limit)
            .field("ordered", &self.ordered)
            .finish()
    }
}

impl PostgresDestination {
    /// What a conflict does: `on_conflict`, or its default.
    pub fn conflict_action(&self) -> OnConflict {
        self.on_conflict.unwrap_or(if self.conflict.is_empty() {
            OnConflict::Error
        } else {
            OnConflict::Update
        })
    }
}

/// Whether `name` is a column or table name the destinations accept: ASCII letters, digits
/// and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit). Such a name is
/// always quoted when it is used, so it is matched case-sensitively.
pub fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Splits `table` into its optional schema and its name, each a valid identifier.
pub fn split_table_name(table: &str) -> Result<(Option<&str>, &str), String> {
    let parts: Vec<&str> = table.split('.').collect();
    let invalid = || {
        format!(
            "table `{table}` is not a valid name: use `name` or `schema.name`, each made of \
             letters, digits and `_` (not starting with a digit, at most 63 bytes)"
        )
    };
    match parts.as_slice() {
        [name] if is_sql_identifier(name) => Ok((None, name)),
        [schema, name] if is_sql_identifier(schema) && is_sql_identifier(name) => {
            Ok((Some(schema), name))
        }
        _ => Err(invalid()),
    }
}

fn check_columns(what: &str, names: &[String]) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if !is_sql_identifier(name) {
            return Err(format!(
                "{what}: `{name}` is not a valid column name (letters, digits and `_`, not \
                 starting with a digit, at most 63 bytes)"
            ));
        }
        if names[..i].contains(name) {
            return Err(format!("{what}: `{name}` is listed twice"));
        }
    }
    Ok(())
}

impl DestinationKind for PostgresDestination {
    common_destination_fields!();

    fn validate(&self) -> Result<(), String> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err("url must start with postgres:// or postgresql://".into());
        }
        split_table_name(&self.table)?;
        check_columns("conflict", &self.conflict)?;
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                return Err("columns: list at least one column, or leave it out".into());
            }
            check_columns("columns", columns)?;
            if let Some(key) = self.conflict.iter().find(|k| !columns.contains(k)) {
                return Err(format!(
                    "conflict column `{key}` is not in `columns`, so it would never be written"
                ));
            }
        }
        if self.conflict_action() == OnConflict::Update && self.conflict.is_empty() {
            return Err(
                "on_conflict = \"update\" needs `conflict`: the key columns of the upsert".into(),
            );
        }
        if !(1..=100).contains(&self.pool_size) {
            return Err("pool_size must be between 1 and 100".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination() -> PostgresDestination {
        PostgresDestination {
            id: "rows".into(),
            url: "postgres://app:hunter2@db.internal/app".into(),
            table: "public.orders".into(),
            conflict: vec!["id".into()],
            on_conflict: None,
            columns: None,
            pool_size: 2,
            timeout: default_timeout(),
            retry: RetryPolicy::default(),
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            enabled: true,
        }
    }

    #[test]
    fn identifiers_are_strict() {
        for good in ["id", "_x", "orderId", "a1_b2", &"x".repeat(63)] {
            assert!(is_sql_identifier(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "é",
            &"x".repeat(64),
        ] {
            assert!(!is_sql_identifier(bad), "{bad}");
        }
        assert_eq!(split_table_name("t"), Ok((None, "t")));
        assert_eq!(split_table_name("s.t"), Ok((Some("s"), "t")));
        for bad in ["a.b.c", ".t", "s.", "s.t;", "\"t\""] {
            assert!(split_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(destination().validate(), Ok(()));
        assert_eq!(destination().conflict_action(), OnConflict::Update);
        let mut d = destination();
        d.conflict.clear();
        assert_eq!(d.conflict_action(), OnConflict::Error);
        d.on_conflict = Some(OnConflict::Update);
        assert!(
            d.validate()
                .expect_err("no keys")
                .contains("needs `conflict`")
        );
        let mut d = destination();
        d.table = "orders; drop table x".into();
        assert!(
            d.validate()
                .expect_err("bad table")
                .contains("not a valid name")
        );
        let mut d = destination();
        d.columns = Some(vec!["total".into()]);
        assert!(d.validate().expect_err("key missing").contains("`id`"));
        let mut d = destination();
        d.url = "mysql://x".into();
        assert!(d.validate().is_err());
        let mut d = destination();
        d.conflict = vec!["id".into(), "id".into()];
        assert!(d.validate().expect_err("twice").contains("twice"));
    }

    #[test]
    fn debug_hides_the_password() {
        let shown = format!("{:?}", destination());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
    }
}
