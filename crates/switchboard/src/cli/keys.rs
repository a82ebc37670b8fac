//! `switchboard keys generate|status|rotate|retire`: the master keys that seal secrets at rest
//! (`switchboard_store::vault`). These commands work on the configured store directly (the
//! SQLite file under `server.data_dir`, or PostgreSQL), also while servers run on it: every
//! value is re-sealed with a compare-and-swap, and servers open values under any key of their
//! ring (one over a key file re-reads it when it changes).

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::json;
use switchboard_core::Config;
use switchboard_store::rotation::{self, Usage};
use switchboard_store::vault::{self, KEY_ENV, KEY_FILE, OLD_KEYS_ENV, SealedBy, Vault};

use super::Ctx;
use super::output::{outln, print_json, print_table};
use crate::settings;

/// `switchboard keys …`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Print a fresh random master key (base64), e.g. for SWITCHBOARD_MASTER_KEY.
    Generate,
    /// Show the keyring and how many stored secrets are sealed under each key.
    Status,
    /// Re-seal every stored secret under a new master key. With a key file, a fresh key is
    /// put first in it (the old ones stay, to open); with SWITCHBOARD_MASTER_KEY, the secrets
    /// are re-sealed under that key (keep the previous one in SWITCHBOARD_MASTER_KEY_OLD).
    Rotate {
        /// Rows read and re-sealed per batch.
        #[arg(long, default_value_t = 500)]
        batch: u32,
        /// Do not add a new key to the key file: only re-seal what is not under the current key.
        #[arg(long)]
        reseal_only: bool,
    },
    /// Drop the old keys from the key file, once no stored secret needs them.
    Retire,
}

/// Runs a `keys` subcommand.
pub async fn run(ctx: &Ctx, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    if let KeysCommand::Generate = cmd {
        outln!("{}", vault::generate_key());
        return Ok(ExitCode::SUCCESS);
    }
    let config = settings::load(&ctx.config)?;
    let from_env = std::env::var_os(KEY_ENV).is_some();
    let key_file = config.server.data_dir.join(KEY_FILE);
    if !from_env && !key_file.exists() {
        bail!(
            "no master key: neither {KEY_ENV} nor {} exists (a server creates the key file on \
             its first start)",
            key_file.display()
        );
    }
    let store = switchboard_server::open_store(&config)
        .await
        .context("opening the store")?;
    match cmd {
        KeysCommand::Generate => Ok(ExitCode::SUCCESS),
        KeysCommand::Status => {
            let vault = open(&config)?;
            let usage = rotation::usage(&*store, 500).await?;
            show(ctx, &vault, &usage);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate { batch, reseal_only } => {
            if !from_env && !reseal_only {
                let id = vault::prepend_new_key(&config.server.data_dir)
                    .with_context(|| format!("adding a key to {}", key_file.display()))?;
                eprintln!(
                    "Added key {id} to {} as the current key; the previous keys stay to open \
                     what is not re-sealed yet.",
                    key_file.display()
                );
            } else if from_env && !reseal_only {
                eprintln!(
                    "Keys come from {KEY_ENV}: re-sealing under it. (To rotate, set {KEY_ENV} \
                     to a new key from `switchboard keys generate` and the previous one in \
                     {OLD_KEYS_ENV}, on the servers first, then here.)"
                );
            }
            let vault = open(&config)?;
            let mut total = rotation::Resealed::default();
            // A value a server rewrote during a pass is left as written; another pass
            // re-seals it if that server still sealed it under an old key.
            for _ in 0..3 {
                let pass = rotation::reseal_all(&*store, &vault, batch)
                    .await
                    .context("re-sealing")?;
                total.resealed += pass.resealed;
                total.changed += pass.changed;
                total.current = pass.current;
                if pass.changed == 0 {
                    break;
                }
            }
            let usage = rotation::usage(&*store, batch).await?;
            let left = not_current(&vault, &usage);
            if ctx.json {
                print_json(&json!({
                    "current_key": vault.current_id().to_string(),
                    "resealed": total.resealed,
                    "changed_meanwhile": total.changed,
                    "not_current": left,
                }));
            } else {
                outln!(
                    "Re-sealed {} secrets under key {} ({} were already; {} changed meanwhile).",
                    total.resealed,
                    vault.current_id(),
                    total.current,
                    total.changed
                );
                if left == 0 {
                    outln!(
                        "Every stored secret is under the current key: `switchboard keys retire` (or dropping {OLD_KEYS_ENV}) retires the old keys."
                    );
                } else {
                    outln!(
                        "{left} secrets are still under other keys (written by a server that had not picked up the new key yet): run `switchboard keys rotate --reseal-only` again."
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Retire => {
            let vault = open(&config)?;
            let usage = rotation::usage(&*store, 500).await?;
            let left = not_current(&vault, &usage);
            if left > 0 {
                bail!(
                    "{left} stored secrets are not under the current key {}: run `switchboard \
                     keys rotate --reseal-only` first",
                    vault.current_id()
                );
            }
            if from_env {
                outln!(
                    "Every stored secret is under {KEY_ENV}'s key: remove {OLD_KEYS_ENV} from the servers' environment."
                );
                return Ok(ExitCode::SUCCESS);
            }
            let dropped = vault::retire_old_keys(&config.server.data_dir)?;
            outln!(
                "Removed {dropped} old keys from {}; it holds only key {}.",
                key_file.display(),
                vault.current_id()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn open(config: &Config) -> anyhow::Result<Vault> {
    switchboard_server::open_vault(config).context("opening the master key")
}

/// Stored values not under the current key.
fn not_current(vault: &Vault, usage: &Usage) -> u64 {
    let current = SealedBy::Key(vault.current_id());
    usage
        .iter()
        .filter(|((_, by), _)| *by != current)
        .map(|(_, n)| n)
        .sum()
}

fn show(ctx: &Ctx, vault: &Vault, usage: &Usage) {
    let ring = vault.key_ids();
    let role = |by: &SealedBy| match by {
        SealedBy::Key(id) if Some(id) == ring.first() => "current",
        SealedBy::Key(id) if ring.contains(id) => "old",
        SealedBy::Key(_) => "not in keyring",
        SealedBy::Legacy => "legacy (re-seal with rotate)",
    };
    if ctx.json {
        print_json(&json!({
            "keys": ring.iter().enumerate().map(|(i, id)| json!({
                "id": id.to_string(),
                "role": if i == 0 { "current" } else { "old" },
            })).collect::<Vec<_>>(),
            "sealed": usage.iter().map(|((column, by), n)| json!({
                "column": column.name(),
                "key": match by { SealedBy::Key(id) => id.to_string(), SealedBy::Legacy => "legacy".into() },
                "role": role(by),
                "count": n,
            })).collect::<Vec<_>>(),
            "not_current": not_current(vault, usage),
        }));
        return;
    }
    outln!(
        "Keyring ({}):",
        vault
            .key_file()
            .map_or_else(|| KEY_ENV.to_owned(), |p| p.display().to_string())
    );
    print_table(
        &["KEY", "ROLE"],
        ring.iter().enumerate().map(|(i, id)| {
            vec![
                id.to_string(),
                if i == 0 { "current" } else { "old" }.to_owned(),
            ]
        }),
    );
    outln!();
    print_table(
        &["COLUMN", "KEY", "ROLE", "SECRETS"],
        usage.iter().map(|((column, by), n)| {
            vec![
                column.name().to_owned(),
                by.to_string(),
                role(by).to_owned(),
                n.to_string(),
            ]
        }),
    );
    outln!(
        "{} secrets are not under the current key.",
        not_current(vault, usage)
    );
}
