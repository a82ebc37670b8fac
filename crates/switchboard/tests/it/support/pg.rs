//! PostgreSQL helpers for the tests that need a database of their own: `psql`, a schema per
//! test (dropped with it), and a shared master key for several nodes.

use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;

/// Runs SQL statements in one `psql` session.
pub fn psql(url: &str, statements: &[&str]) -> Result<(), String> {
    let mut command = std::process::Command::new("psql");
    command.arg(url).args(["-X", "-q", "-v", "ON_ERROR_STOP=1"]);
    for statement in statements {
        command.arg("-c").arg(statement);
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run psql (the PostgreSQL tests need it): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// A schema of its own for one test, dropped when this value is.
pub struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// Creates `<prefix>_<pid>_<n>_<nanos>` in the database at `base`.
    pub fn create(base: &str, prefix: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "{prefix}_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        psql(base, &[&format!("CREATE SCHEMA {name}")]).expect("create the test schema");
        Self {
            base: base.to_owned(),
            name,
        }
    }

    /// The URL the nodes use: the schema as their `search_path`.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Servers using it are gone by now (declare them after the schema); a killed node's
        // sessions may still be ending: wait for their locks, but not forever.
        let drop = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if let Err(error) = psql(&self.base, &["SET lock_timeout = '30s'", &drop]) {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop schema {}: {error}",
                self.name
            );
        }
    }
}

/// A fresh `SWITCHBOARD_MASTER_KEY` (base64 of 32 random bytes), shared by all nodes.
pub fn master_key() -> String {
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}
