//! `switchboard migrate`, `export` and `import`: the database the configuration selects
//! (PostgreSQL with `server.database_url` / `SWITCHBOARD_DATABASE_URL`, else SQLite under
//! `server.data_dir`), its schema, and moving all of its data to another store through a
//! portable JSON Lines file (`switchboard_store::transfer`).

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::json;
use switchboard_core::Config;
use switchboard_core::config::redact_url_password;
use switchboard_store::postgres::PgStore;
use switchboard_store::sqlite::{DB_FILE, SqliteStore};
use switchboard_store::transfer::{self, Backend, Summary, TransferError};
use switchboard_store::vault::KEY_FILE;

use super::Ctx;
use super::output::{outln, print_json};
use crate::settings;

/// Options of `migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {}

/// Options of `export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// File to write (JSON Lines; `-` for stdout). An existing file is replaced.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: PathBuf,
}

/// Options of `import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Export file to read (`-` for stdin).
    #[arg(long, short = 'i', value_name = "FILE")]
    input: PathBuf,
    /// Import even when the sealed resources do not open with this store's master key (they
    /// stay unreadable until the right key is configured).
    #[arg(long)]
    skip_key_check: bool,
}

/// The store the configuration selects, with its concrete type.
enum Opened {
    Sqlite(SqliteStore, PathBuf),
    Postgres(PgStore, String),
}

impl Opened {
    /// Opens (creating and migrating as needed) the configured store. With `must_exist`, a
    /// SQLite database that does not exist yet is an error instead of being created.
    async fn open(config: &Config, must_exist: bool) -> anyhow::Result<Self> {
        if let Some(url) = &config.server.database_url {
            let shown = redact_url_password(url);
            // The copy runs one statement at a time; a few connections are plenty.
            let store = PgStore::connect(url, config.server.database_max_connections.min(4))
                .await
                .with_context(|| format!("opening PostgreSQL at {shown}"))?;
            return Ok(Self::Postgres(store, shown));
        }
        let dir = &config.server.data_dir;
        let db = dir.join(DB_FILE);
        if must_exist && !db.exists() {
            bail!(
                "no database at {} (is --data-dir or --config right? for PostgreSQL set \
                 server.database_url or SWITCHBOARD_DATABASE_URL)",
                db.display()
            );
        }
        let store = SqliteStore::open(dir, config.storage.durability)
            .await
            .with_context(|| format!("opening {}", db.display()))?;
        Ok(Self::Sqlite(store, db))
    }

    fn backend(&self) -> Backend<'_> {
        match self {
            Self::Sqlite(store, _) => Backend::Sqlite(store),
            Self::Postgres(store, _) => Backend::Postgres(store),
        }
    }

    /// `SQLite database /path` or `PostgreSQL database postgres://…` (password redacted).
    fn describe(&self) -> String {
        match self {
            Self::Sqlite(_, path) => format!("SQLite database {}", path.display()),
            Self::Postgres(_, url) => format!("PostgreSQL database {url}"),
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(store, _) => store.close().await,
            Self::Postgres(store, _) => store.close().await,
        }
    }
}

/// `switchboard migrate`: applies pending migrations and prints the schema version.
pub async fn migrate(ctx: &Ctx, _args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load(&ctx.config)?;
    let store = Opened::open(&config, false).await?;
    let version = transfer::schema_version(store.backend()).await;
    let described = store.describe();
    store.close().await;
    let version = version?;
    if ctx.json {
        print_json(&json!({ "database": described, "schema_version": version }));
    } else {
        outln!("{described} is at schema version {version}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchboard export`.
pub async fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load(&ctx.config)?;
    let store = Opened::open(&config, true).await?;
    let to_stdout = is_dash(&args.output);
    let result = if to_stdout {
        let out = BufWriter::with_capacity(1 << 16, std::io::stdout());
        transfer::export(store.backend(), out).await
    } else {
        match std::fs::File::create(&args.output) {
            Ok(file) => {
                transfer::export(store.backend(), BufWriter::with_capacity(1 << 16, file)).await
            }
            Err(error) => {
                store.close().await;
                return Err(error)
                    .with_context(|| format!("cannot create {}", args.output.display()));
            }
        }
    };
    let described = store.describe();
    store.close().await;
    let summary = result.with_context(|| format!("exporting {described}"))?;
    // The summary goes to stderr: stdout may be the export itself.
    let target = if to_stdout {
        "stdout".to_string()
    } else {
        args.output.display().to_string()
    };
    eprintln!(
        "Exported {} rows of {described} (schema version {}) to {target}:",
        summary.total(),
        summary.schema_version
    );
    eprint!("{}", counts_table(&summary));
    let sealed = summary.count("resources");
    if sealed > 0 {
        eprintln!(
            "The {sealed} API-created resources are copied sealed (encrypted with this \
             installation's master key): the importing side needs the same key, as \
             SWITCHBOARD_MASTER_KEY or by copying {} into its data directory.",
            key_location(&config)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchboard import`.
pub async fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let config = settings::load(&ctx.config)?;
    let from_stdin = is_dash(&args.input);
    let file = if from_stdin {
        None
    } else {
        Some(
            std::fs::File::open(&args.input)
                .with_context(|| format!("cannot open {}", args.input.display()))?,
        )
    };
    let vault = if args.skip_key_check {
        None
    } else {
        Some(target_vault(&config)?)
    };
    let check = |sealed: &[u8]| -> Result<(), String> {
        match &vault {
            Some(Ok(vault)) => vault.open_sealed(sealed).map(drop).map_err(|_| {
                format!(
                    "the export's sealed resources do not open with this store's master key \
                     ({}): configure the master key of the installation that exported them \
                     (SWITCHBOARD_MASTER_KEY, or its master.key in {}), or pass \
                     --skip-key-check to import them anyway (they stay unreadable until the \
                     right key is configured); nothing was imported",
                    key_location(&config),
                    config.server.data_dir.display()
                )
            }),
            Some(Err(missing)) => Err(missing.clone()),
            None => Ok(()),
        }
    };
    let store = Opened::open(&config, false).await?;
    let check_sealed: Option<transfer::SealedCheck<'_>> = (!args.skip_key_check).then_some(&check);
    let result = match file {
        Some(file) => {
            let input = BufReader::with_capacity(1 << 16, file);
            transfer::import(store.backend(), input, check_sealed).await
        }
        None => {
            let input = BufReader::with_capacity(1 << 16, std::io::stdin());
            transfer::import(store.backend(), input, check_sealed).await
        }
    };
    let described = store.describe();
    store.close().await;
    let summary = match result {
        Ok(summary) => summary,
        Err(error) => {
            let partial = matches!(
                error,
                TransferError::Store(_)
                    | TransferError::Io(_)
                    | TransferError::Format { .. }
                    | TransferError::Incomplete(_)
            );
            let error = anyhow::Error::new(error).context(format!("importing into {described}"));
            if partial {
                return Err(error.context(
                    "the import stopped; rows written before the failure stay in the target: \
                     empty it (a new data directory, or drop and recreate the PostgreSQL \
                     database or schema) before importing again",
                ));
            }
            return Err(error);
        }
    };
    if ctx.json {
        let tables: serde_json::Map<String, serde_json::Value> = summary
            .tables
            .iter()
            .map(|(name, n)| (name.to_string(), (*n).into()))
            .collect();
        print_json(&json!({
            "database": described,
            "schema_version": summary.schema_version,
            "tables": tables,
        }));
    } else {
        outln!(
            "Imported {} rows into {described} (schema version {}):",
            summary.total(),
            summary.schema_version
        );
        outln!("{}", counts_table(&summary).trim_end());
    }
    Ok(ExitCode::SUCCESS)
}

/// The target's vault, or why there is none: without `SWITCHBOARD_MASTER_KEY` and without a
/// key file, opening the vault would create a fresh key that cannot open anything exported,
/// so the check fails instead (and no key file is created).
fn target_vault(
    config: &Config,
) -> anyhow::Result<Result<switchboard_store::vault::Vault, String>> {
    let from_env = std::env::var_os("SWITCHBOARD_MASTER_KEY").is_some();
    let file = config.server.data_dir.join(KEY_FILE);
    if !from_env && !file.exists() {
        return Ok(Err(format!(
            "the export holds sealed resources but this store has no master key (neither \
             SWITCHBOARD_MASTER_KEY nor {}): configure the master key of the installation that \
             exported them, or pass --skip-key-check; nothing was imported",
            file.display()
        )));
    }
    Ok(Ok(
        switchboard_server::open_vault(config).context("opening the master key")?
    ))
}

/// Where the master key of `config` comes from, for messages.
fn key_location(config: &Config) -> String {
    if std::env::var_os("SWITCHBOARD_MASTER_KEY").is_some() {
        "SWITCHBOARD_MASTER_KEY".into()
    } else {
        config.server.data_dir.join(KEY_FILE).display().to_string()
    }
}

/// `  table  rows` lines.
fn counts_table(summary: &Summary) -> String {
    let width = summary
        .tables
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    summary
        .tables
        .iter()
        .map(|(name, n)| format!("  {name:<width$}  {n}\n"))
        .collect()
}

/// Whether `path` names stdin/stdout.
fn is_dash(path: &Path) -> bool {
    path.as_os_str() == "-"
}
