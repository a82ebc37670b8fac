//! `switchboard tokens list|create|revoke`: API tokens (admin scope). A token's value is shown
//! once, when it is created.

use std::process::ExitCode;

use serde_json::json;

use super::Ctx;
use super::output::outln;
use super::output::{field, items, print_json, print_table};

/// `switchboard tokens …`
#[derive(Debug, clap::Subcommand)]
pub enum TokensCommand {
    /// List tokens (without their values).
    List,
    /// Create a token and print its value (shown only this once).
    Create {
        /// What the token is for (1–100 characters).
        #[arg(long)]
        name: String,
        /// Scope: read (inspect), write (also change resources and replay), admin (also
        /// tokens). Repeatable; the highest one counts.
        #[arg(long = "scope", value_name = "SCOPE", required = true,
              value_parser = ["read", "write", "admin"])]
        scopes: Vec<String>,
    },
    /// Revoke a token.
    Revoke {
        /// Token id (`tok_…`).
        id: String,
    },
}

/// Runs a `tokens` subcommand.
pub async fn run(ctx: &Ctx, cmd: TokensCommand) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        TokensCommand::List => {
            let tokens = client.get(&["tokens"], &[]).await?;
            if ctx.json {
                print_json(&tokens);
            } else {
                print_table(
                    &["ID", "NAME", "PREFIX", "SCOPES", "CREATED", "REVOKED"],
                    items(&tokens).iter().map(|t| {
                        let scopes: Vec<&str> = items(&t["scopes"])
                            .iter()
                            .filter_map(|s| s.as_str())
                            .collect();
                        vec![
                            field(t, "id"),
                            field(t, "name"),
                            format!("{}…", field(t, "prefix")),
                            scopes.join(","),
                            field(t, "created_at"),
                            field(t, "revoked_at"),
                        ]
                    }),
                );
            }
        }
        TokensCommand::Create { name, scopes } => {
            let created = client
                .post(&["tokens"], &json!({ "name": name, "scopes": scopes }))
                .await?;
            if ctx.json {
                print_json(&created);
            } else {
                outln!(
                    "created token {} ({}, scope {})",
                    field(&created, "id"),
                    field(&created, "name"),
                    scopes.join(",")
                );
                outln!("{}", field(&created, "token"));
                eprintln!("this value is shown only once: store it now");
            }
        }
        TokensCommand::Revoke { id } => {
            client.delete(&["tokens", &id]).await?;
            if ctx.json {
                print_json(&json!({ "id": id, "revoked": true }));
            } else {
                outln!("revoked token {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
