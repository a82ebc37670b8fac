//! `switchboard syncs list|show|run|runs|cancel|conflicts`: data sync jobs, their run log and
//! the conflicts of two-way syncs, through the API.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use super::output::outln;
use super::output::{field, items, print_fields, print_json, print_table};
use super::{Ctx, Failure};

/// `switchboard syncs …`
#[derive(Debug, clap::Subcommand)]
pub enum SyncsCommand {
    /// List sync jobs with their newest run.
    List,
    /// Show one sync job (settings with secrets redacted, newest run).
    Show {
        /// Sync id.
        id: String,
    },
    /// Start a run now (or resume a paused or interrupted one).
    Run {
        /// Sync id.
        id: String,
        /// Wait for the run to end and exit non-zero unless it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// The run log, newest first.
    Runs {
        /// Sync id.
        id: String,
        /// Most runs to show (1–500).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Ask the run in progress to stop after its current page.
    Cancel {
        /// Sync id.
        id: String,
    },
    /// Conflicts of a two-way sync parked for review (`conflict = "manual"`).
    Conflicts {
        /// Sync id.
        id: String,
        /// Most conflicts to show (1–500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Resolve a parked conflict: the chosen side's version is written to the other by the
    /// next run (started now unless `--no-run`).
    Resolve {
        /// Sync id.
        id: String,
        /// The conflict's key as `syncs conflicts` shows it (JSON: `42`, `"abc"`).
        #[arg(long)]
        key: String,
        /// `source` or `destination`: the side that wins.
        #[arg(long, value_parser = ["source", "destination"])]
        take: String,
        /// Do not start a run now (the next scheduled or manual run applies it).
        #[arg(long)]
        no_run: bool,
    },
}

fn run_row(run: &Value) -> Vec<String> {
    vec![
        field(run, "id"),
        field(run, "status"),
        field(run, "trigger"),
        field(run, "started_at"),
        field(run, "pages"),
        field(run, "created"),
        field(run, "updated"),
        field(run, "deleted"),
        field(run, "failed"),
        field(run, "error"),
    ]
}

const RUN_HEADERS: [&str; 10] = [
    "RUN", "STATUS", "TRIGGER", "STARTED", "PAGES", "CREATED", "UPDATED", "DELETED", "FAILED",
    "ERROR",
];

/// Runs a `syncs` subcommand.
pub async fn run(ctx: &Ctx, cmd: SyncsCommand) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        SyncsCommand::List => {
            let list = client.get(&["syncs"], &[]).await?;
            if ctx.json {
                print_json(&list);
            } else {
                let rows = list.as_array().cloned().unwrap_or_default();
                print_table(
                    &[
                        "ID",
                        "MODE",
                        "DESTINATION",
                        "SCHEDULE",
                        "LAST RUN",
                        "STATUS",
                        "FINISHED",
                    ],
                    rows.iter().map(|s| {
                        vec![
                            field(s, "id"),
                            field(s, "mode"),
                            field(s, "destination"),
                            field(s, "schedule"),
                            field(&s["last_run"], "id"),
                            field(&s["last_run"], "status"),
                            field(&s["last_run"], "finished_at"),
                        ]
                    }),
                );
            }
        }
        SyncsCommand::Show { id } => {
            let sync = client.get(&["syncs", &id], &[]).await?;
            if ctx.json {
                print_json(&sync);
            } else {
                print_fields(&sync, &["settings", "last_run"]);
                outln!("settings: {}", sync["settings"]);
                if sync["last_run"].is_object() {
                    print_table(&RUN_HEADERS, std::iter::once(run_row(&sync["last_run"])));
                }
            }
        }
        SyncsCommand::Run { id, wait } => {
            let started = client.post(&["syncs", &id, "run"], &json!({})).await?;
            let run_id = field(&started, "id");
            if !wait {
                if ctx.json {
                    print_json(&started);
                } else {
                    outln!("started run {run_id} of sync {id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let ended = loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let runs = client
                    .get(&["syncs", &id, "runs"], &[("limit", "20".into())])
                    .await?;
                let Some(run) = items(&runs).iter().find(|r| field(r, "id") == run_id) else {
                    continue;
                };
                if run["status"] != "running" {
                    break run.clone();
                }
            };
            if ctx.json {
                print_json(&ended);
            } else {
                print_table(&RUN_HEADERS, std::iter::once(run_row(&ended)));
            }
            if ended["status"] != "succeeded" {
                return Err(Failure::new(
                    1,
                    format!("run {run_id} ended {}", field(&ended, "status")),
                )
                .into());
            }
        }
        SyncsCommand::Runs { id, limit } => {
            let page = client
                .get(&["syncs", &id, "runs"], &[("limit", limit.to_string())])
                .await?;
            if ctx.json {
                print_json(&page);
            } else {
                print_table(&RUN_HEADERS, items(&page).iter().map(run_row));
                if page["next_cursor"].is_string() {
                    eprintln!("more runs: use a larger --limit");
                }
            }
        }
        SyncsCommand::Conflicts { id, limit } => {
            let page = client
                .get(
                    &["syncs", &id, "conflicts"],
                    &[("limit", limit.to_string())],
                )
                .await?;
            if ctx.json {
                print_json(&page);
            } else {
                print_table(
                    &["KEY", "SOURCE", "DESTINATION", "DETECTED"],
                    items(&page).iter().map(|c| {
                        vec![
                            c["key"].to_string(),
                            c["source"].to_string(),
                            c["destination"].to_string(),
                            field(c, "detected_at"),
                        ]
                    }),
                );
                if page["next_cursor"].is_string() {
                    eprintln!("more conflicts: use a larger --limit");
                }
            }
        }
        SyncsCommand::Resolve {
            id,
            key,
            take,
            no_run,
        } => {
            // A key is JSON (`42`, `"abc"`); a bare word is taken as a string.
            let key: serde_json::Value =
                serde_json::from_str(&key).unwrap_or(serde_json::Value::String(key));
            let resolved = client
                .post(
                    &["syncs", &id, "conflicts", "resolve"],
                    &json!({ "key": key, "take": take, "run": !no_run }),
                )
                .await?;
            if ctx.json {
                print_json(&resolved);
            } else {
                outln!("resolved {key} of sync {id}: the {take}'s version wins");
                if let Some(run) = resolved["run"]["id"].as_str() {
                    outln!("run {run} started to apply it");
                }
            }
        }
        SyncsCommand::Cancel { id } => {
            let run = client.post(&["syncs", &id, "cancel"], &json!({})).await?;
            if ctx.json {
                print_json(&run);
            } else {
                outln!(
                    "asked run {} of sync {id} to stop (status {})",
                    field(&run, "id"),
                    field(&run, "status")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
