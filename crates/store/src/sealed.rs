//! The columns that hold sealed values, for key rotation: listing them in batches and
//! replacing one value with its re-sealed form (a compare-and-swap on the old bytes, so a value
//! the running server rewrote meanwhile is left alone and picked up by the next pass).

/// A column of sealed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedColumn {
    /// `resources.sealed`: API-created sources, destinations, routes, tenants, endpoints…
    Resources,
    /// `connections.credentials`.
    ConnectionCredentials,
    /// `connections.tokens`.
    ConnectionTokens,
    /// `oauth_states.sealed`: pending authorization-code flows.
    OAuthStates,
    /// `idempotency.response`: replayed responses.
    Idempotency,
}

impl SealedColumn {
    /// Every sealed column.
    pub const ALL: [SealedColumn; 5] = [
        Self::Resources,
        Self::ConnectionCredentials,
        Self::ConnectionTokens,
        Self::OAuthStates,
        Self::Idempotency,
    ];

    /// `table.column`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resources => "resources.sealed",
            Self::ConnectionCredentials => "connections.credentials",
            Self::ConnectionTokens => "connections.tokens",
            Self::OAuthStates => "oauth_states.sealed",
            Self::Idempotency => "idempotency.response",
        }
    }

    /// Table, column and primary key columns (one or two).
    pub(crate) fn layout(self) -> (&'static str, &'static str, &'static [&'static str]) {
        match self {
            Self::Resources => ("resources", "sealed", &["kind", "id"]),
            Self::ConnectionCredentials => ("connections", "credentials", &["id"]),
            Self::ConnectionTokens => ("connections", "tokens", &["id"]),
            Self::OAuthStates => ("oauth_states", "sealed", &["state_hash"]),
            Self::Idempotency => ("idempotency", "response", &["scope", "key"]),
        }
    }
}

/// One stored sealed value.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue {
    /// Where it is.
    pub column: SealedColumn,
    /// Its row's primary key (one or two parts); also the listing cursor.
    pub key: Vec<String>,
    /// The sealed bytes.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedValue")
            .field("column", &self.column)
            .field("key", &self.key)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

/// The `SELECT` of a batch after `after` (`?` placeholders; PostgreSQL numbers them).
pub(crate) fn select_sql(column: SealedColumn, after: bool, numbered: bool) -> String {
    let (table, col, keys) = column.layout();
    let mut n = 0;
    let mut param = || {
        n += 1;
        if numbered {
            format!("${n}")
        } else {
            "?".into()
        }
    };
    let key_list = keys.join(", ");
    let mut sql =
        format!("SELECT {key_list}, {col} AS sealed FROM {table} WHERE {col} IS NOT NULL");
    if after {
        let params: Vec<String> = keys.iter().map(|_| param()).collect();
        sql.push_str(&format!(" AND ({key_list}) > ({})", params.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY {key_list} LIMIT {}", param()));
    sql
}

/// The compare-and-swap `UPDATE` of one value: new bytes, key parts, old bytes.
pub(crate) fn update_sql(column: SealedColumn, numbered: bool) -> String {
    let (table, col, keys) = column.layout();
    let mut n = 0;
    let mut param = || {
        n += 1;
        if numbered {
            format!("${n}")
        } else {
            "?".into()
        }
    };
    let set = format!("{col} = {}", param());
    let conditions: Vec<String> = keys.iter().map(|k| format!("{k} = {}", param())).collect();
    format!(
        "UPDATE {table} SET {set} WHERE {} AND {col} = {}",
        conditions.join(" AND "),
        param()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements() {
        assert_eq!(
            select_sql(SealedColumn::Resources, true, true),
            "SELECT kind, id, sealed AS sealed FROM resources WHERE sealed IS NOT NULL AND (kind, id) > ($1, $2) ORDER BY kind, id LIMIT $3"
        );
        assert_eq!(
            select_sql(SealedColumn::ConnectionTokens, false, false),
            "SELECT id, tokens AS sealed FROM connections WHERE tokens IS NOT NULL ORDER BY id LIMIT ?"
        );
        assert_eq!(
            update_sql(SealedColumn::Idempotency, true),
            "UPDATE idempotency SET response = $1 WHERE scope = $2 AND key = $3 AND response = $4"
        );
    }
}
