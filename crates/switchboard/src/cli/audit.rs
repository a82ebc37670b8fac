//! `switchboard audit list`: the audit trail of management actions (admin scope), newest
//! first, with the API's filters.

use std::process::ExitCode;

use switchboard_core::time::format_rfc3339;

use super::Ctx;
use super::input::time_or_age;
use super::output::{field, items, more_hint, print_json, print_table};

/// `switchboard audit …`
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List recorded management actions, newest first.
    List {
        /// Only this caller (a token id, or `bootstrap` for the configured admin token).
        #[arg(long)]
        actor: Option<String>,
        /// Only this resource: a kind (`destination`) or kind and id (`destination:orders`).
        #[arg(long)]
        resource: Option<String>,
        /// Only this action (`create`, `update`, `delete`, `revoke`, `replay`, …).
        #[arg(long)]
        action: Option<String>,
        /// Only actions since (RFC 3339 time or an age such as `2h`).
        #[arg(long)]
        since: Option<String>,
        /// How many (pages are followed as needed).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Everything (follows `next_cursor` to the end).
        #[arg(long, conflicts_with = "limit")]
        all: bool,
        /// Continue from a previous listing's `next_cursor`.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// Runs an `audit` subcommand.
pub async fn run(ctx: &Ctx, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    let AuditCommand::List {
        actor,
        resource,
        action,
        since,
        limit,
        all,
        cursor,
    } = cmd;
    let mut query: Vec<(&str, String)> = Vec::new();
    for (name, value) in [("actor", actor), ("resource", resource), ("action", action)] {
        if let Some(value) = value {
            query.push((name, value));
        }
    }
    if let Some(since) = since {
        query.push(("since", format_rfc3339(time_or_age(&since)?)));
    }
    let page = client
        .list(&["audit"], &query, (!all).then_some(limit), cursor)
        .await?;
    if ctx.json {
        print_json(&page);
    } else {
        print_table(
            &["AT", "ACTOR", "ACTION", "RESOURCE", "STATUS", "REQUEST ID"],
            items(&page).iter().map(|entry| {
                let resource = match entry["resource_id"].as_str() {
                    Some(id) => format!("{}:{id}", field(entry, "resource_kind")),
                    None => field(entry, "resource_kind"),
                };
                vec![
                    field(entry, "at"),
                    field(entry, "actor"),
                    field(entry, "action"),
                    resource,
                    entry["status"]
                        .as_u64()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    field(entry, "request_id"),
                ]
            }),
        );
        more_hint(&page);
    }
    Ok(ExitCode::SUCCESS)
}
