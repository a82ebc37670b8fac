//! Inspection and replay commands. They read the store directly (WAL lets them run beside a
//! live server); the management API will take this over.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use switchboard_core::DeliveryStatus;
use switchboard_core::time::{format_rfc3339, now_millis, parse_time_or_age};
use switchboard_store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, EventFilter, EventRecord, ReplaySelector, Store,
};

use crate::settings::{self, ConfigArgs};

/// `switchboard events …`
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// List events, newest first.
    List {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only events received since (RFC 3339 time or an age such as `2h`).
        #[arg(long)]
        since: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one event with its headers, body and deliveries.
    Show {
        /// Event id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `switchboard deliveries …`
#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// Only this status (pending, in_flight, succeeded, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Only this event.
        #[arg(long)]
        event: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `switchboard attempts <event>`
#[derive(Debug, clap::Args)]
pub struct AttemptsArgs {
    /// Event id.
    event: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `switchboard replay …`
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["delivery", "event", "destination"])))]
pub struct ReplayArgs {
    /// Re-queue one delivery.
    #[arg(long)]
    delivery: Option<String>,
    /// Re-queue every delivery of an event.
    #[arg(long)]
    event: Option<String>,
    /// Re-queue a destination's failed deliveries (with `--since`).
    #[arg(long, requires = "since")]
    destination: Option<String>,
    /// With `--destination`: failed since (RFC 3339 time or an age such as `24h`).
    #[arg(long)]
    since: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn open(args: &ConfigArgs) -> anyhow::Result<Arc<dyn Store>> {
    let config = settings::load(args)?;
    let db = config
        .server
        .data_dir
        .join(switchboard_store::sqlite::DB_FILE);
    if !db.exists() {
        bail!(
            "no database at {} (is --data-dir or --config right?)",
            db.display()
        );
    }
    switchboard_server::open_store(&config)
        .await
        .with_context(|| format!("opening {}", db.display()))
}

fn time_arg(raw: &str) -> anyhow::Result<i64> {
    parse_time_or_age(raw, now_millis())
        .with_context(|| format!("`{raw}` is neither an RFC 3339 time nor an age like `2h`"))
}

pub async fn events(args: &ConfigArgs, cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    let store = open(args).await?;
    match cmd {
        EventsCommand::List {
            source,
            since,
            limit,
            json,
        } => {
            let filter = EventFilter {
                source,
                since: since.as_deref().map(time_arg).transpose()?,
                limit: limit.clamp(1, 10_000),
                ..EventFilter::default()
            };
            let events = store.list_events(&filter).await?;
            if json {
                print_json(&Value::Array(events.iter().map(event_json).collect()));
            } else {
                print_table(
                    &["ID", "SOURCE", "RECEIVED", "BYTES", "CONTENT-TYPE"],
                    events.iter().map(|e| {
                        vec![
                            e.id.clone(),
                            e.source.clone(),
                            format_rfc3339(e.received_at),
                            e.body_len.to_string(),
                            e.content_type.clone().unwrap_or_default(),
                        ]
                    }),
                );
            }
        }
        EventsCommand::Show { id, json } => {
            let Some(event) = store.get_event(&id).await? else {
                bail!("no event {id}");
            };
            let deliveries = store
                .list_deliveries(&DeliveryFilter {
                    event_id: Some(id.clone()),
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            if json {
                let mut value = event_json(&event);
                value["body"] = json!(String::from_utf8_lossy(&event.body));
                value["deliveries"] = Value::Array(deliveries.iter().map(delivery_json).collect());
                print_json(&value);
            } else {
                println!("event     {}", event.id);
                println!("source    {}", event.source);
                println!("received  {}", format_rfc3339(event.received_at));
                println!("headers");
                for (name, value) in &event.headers {
                    println!("  {name}: {value}");
                }
                println!("body ({} bytes)", event.body.len());
                println!("{}", String::from_utf8_lossy(&event.body));
                println!();
                print_deliveries(&deliveries);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn deliveries(args: &ConfigArgs, cmd: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    let store = open(args).await?;
    let DeliveriesCommand::List {
        status,
        destination,
        event,
        limit,
        json,
    } = cmd;
    let status = status
        .map(|s| DeliveryStatus::parse(&s).with_context(|| format!("unknown status `{s}`")))
        .transpose()?;
    let filter = DeliveryFilter {
        status,
        destination,
        event_id: event,
        limit: limit.clamp(1, 10_000),
        ..Default::default()
    };
    let deliveries = store.list_deliveries(&filter).await?;
    if json {
        print_json(&Value::Array(
            deliveries.iter().map(delivery_json).collect(),
        ));
    } else {
        print_deliveries(&deliveries);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn attempts(args: &ConfigArgs, a: AttemptsArgs) -> anyhow::Result<ExitCode> {
    let store = open(args).await?;
    let attempts = store.list_attempts(Some(&a.event), None).await?;
    if a.json {
        print_json(&Value::Array(attempts.iter().map(attempt_json).collect()));
    } else if attempts.is_empty() {
        println!("no attempts for event {}", a.event);
    } else {
        print_table(
            &[
                "DELIVERY",
                "DESTINATION",
                "#",
                "STARTED",
                "OUTCOME",
                "STATUS",
                "LATENCY",
                "ERROR",
            ],
            attempts.iter().map(|a| {
                vec![
                    a.delivery_id.clone(),
                    a.destination.clone(),
                    a.attempt.to_string(),
                    format_rfc3339(a.started_at),
                    a.outcome.clone(),
                    a.status_code
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    format!("{}ms", a.latency_ms),
                    a.error.clone().unwrap_or_default(),
                ]
            }),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(args: &ConfigArgs, r: ReplayArgs) -> anyhow::Result<ExitCode> {
    let store = open(args).await?;
    let selector = match (r.delivery, r.event, r.destination) {
        (Some(id), _, _) => ReplaySelector::Delivery(id),
        (_, Some(id), _) => ReplaySelector::Event(id),
        (_, _, Some(destination)) => ReplaySelector::FailedForDestination {
            destination,
            since: time_arg(r.since.as_deref().unwrap_or("0s"))?,
        },
        _ => bail!("say what to replay: --delivery, --event or --destination"),
    };
    let queued = store.replay(&selector, now_millis()).await?;
    if r.json {
        print_json(&json!({ "queued": queued }));
    } else {
        println!(
            "queued {queued} deliver{}",
            if queued == 1 { "y" } else { "ies" }
        );
    }
    Ok(
        if queued == 0 && matches!(selector, ReplaySelector::Delivery(_)) {
            eprintln!("nothing was queued: no such delivery, or it is in flight right now");
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        },
    )
}

fn print_deliveries(deliveries: &[DeliveryRecord]) {
    print_table(
        &[
            "DELIVERY",
            "EVENT",
            "DESTINATION",
            "STATUS",
            "ATTEMPTS",
            "LAST",
            "NEXT/UPDATED",
        ],
        deliveries.iter().map(|d| {
            let when = if d.status == DeliveryStatus::Pending {
                d.next_attempt_at
            } else {
                d.updated_at
            };
            vec![
                d.id.clone(),
                d.event_id.clone(),
                d.destination.clone(),
                d.status.to_string(),
                d.attempts.to_string(),
                d.last_status
                    .map(|s| s.to_string())
                    .or_else(|| d.last_error.clone())
                    .unwrap_or_else(|| "-".into()),
                format_rfc3339(when),
            ]
        }),
    );
}

fn event_json(e: &EventRecord) -> Value {
    json!({
        "id": e.id,
        "source": e.source,
        "tenant": e.tenant,
        "type": e.event_type,
        "dedup_key": e.dedup_key,
        "content_type": e.content_type,
        "body_bytes": e.body_len,
        "received_at": format_rfc3339(e.received_at),
        "headers": e.headers,
    })
}

fn delivery_json(d: &DeliveryRecord) -> Value {
    json!({
        "id": d.id,
        "event_id": d.event_id,
        "route_id": d.route_id,
        "destination": d.destination,
        "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": format_rfc3339(d.next_attempt_at),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": format_rfc3339(d.created_at),
        "updated_at": format_rfc3339(d.updated_at),
    })
}

fn attempt_json(a: &AttemptRecord) -> Value {
    json!({
        "delivery_id": a.delivery_id,
        "event_id": a.event_id,
        "destination": a.destination,
        "attempt": a.attempt,
        "started_at": format_rfc3339(a.started_at),
        "latency_ms": a.latency_ms,
        "outcome": a.outcome,
        "status_code": a.status_code,
        "error": a.error,
        "request_url": a.request_url,
        "response_headers": a.response_headers,
        "response_body": String::from_utf8_lossy(&a.response_body),
    })
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints an aligned table; the last column is not padded.
fn print_table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    if rows.is_empty() {
        println!("(none)");
    }
    for row in rows {
        line(row);
    }
}
