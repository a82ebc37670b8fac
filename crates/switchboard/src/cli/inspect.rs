//! Inspection and replay: `events`, `deliveries`, `attempts`, `replay`. They use the management
//! API; with `--data-dir` (or `SWITCHBOARD_DATA_DIR`) and no `--url` they read the store directly
//! instead ([`super::offline`]), which works while the server is down. Both modes print the same
//! tables and the API's JSON.

use std::process::ExitCode;

use anyhow::bail;
use serde_json::{Value, json};
use switchboard_core::time::format_rfc3339;
use switchboard_store::ReplaySelector;

use super::client::{Client, collect_pages};
use super::input::time_or_age;
use super::offline::{DeliveryQuery, EventQuery, Offline};
use super::output::outln;
use super::output::{field, items, more_hint, print_fields, print_json, print_table};
use super::{Ctx, EXIT_NOTHING_QUEUED};

const STATUSES: [&str; 6] = [
    "pending",
    "in_flight",
    "succeeded",
    "failed",
    "cancelled",
    "filtered",
];

/// How much of a listing to fetch.
#[derive(Debug, Clone, clap::Args)]
pub struct Paging {
    /// How many (pages are followed as needed).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Everything (follows `next_cursor` to the end).
    #[arg(long, conflicts_with = "limit")]
    all: bool,
    /// Continue from a previous listing's `next_cursor`.
    #[arg(long)]
    cursor: Option<String>,
}

impl Paging {
    fn want(&self) -> Option<u32> {
        (!self.all).then_some(self.limit)
    }
}

/// `switchboard events …`
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// List events, newest first.
    List {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this event type.
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// Only events with a delivery in this status.
        #[arg(long, value_parser = STATUSES)]
        status: Option<String>,
        /// Only events received since (RFC 3339 time or an age such as `2h`).
        #[arg(long)]
        since: Option<String>,
        /// Only events received before (RFC 3339 time or an age).
        #[arg(long)]
        until: Option<String>,
        /// Only events no route delivers (no route, or every route's filter said no).
        #[arg(long)]
        unrouted: bool,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one event with its headers, body and deliveries.
    Show {
        /// Event id.
        id: String,
    },
}

/// `switchboard deliveries …`
#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// Only this status.
        #[arg(long, value_parser = STATUSES)]
        status: Option<String>,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        /// Only this event.
        #[arg(long)]
        event: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one delivery with its attempts.
    Show {
        /// Delivery id (`msg_…`).
        id: String,
    },
}

/// `switchboard attempts <event>`
#[derive(Debug, clap::Args)]
pub struct AttemptsArgs {
    /// Event id.
    #[arg(required_unless_present = "delivery")]
    event: Option<String>,
    /// Only this delivery's attempts (instead of an event's).
    #[arg(long, conflicts_with = "event")]
    delivery: Option<String>,
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
    /// Re-queue a destination's failed deliveries (all of them, or since `--since`).
    #[arg(long)]
    destination: Option<String>,
    /// With `--destination`: failed since (RFC 3339 time or an age such as `24h`).
    #[arg(long, requires = "destination")]
    since: Option<String>,
}

/// Where the answers come from.
enum Backend {
    Api(Client),
    Store(Offline),
}

impl Backend {
    async fn new(ctx: &Ctx) -> anyhow::Result<Self> {
        Ok(if ctx.offline() {
            Self::Store(Offline::open(&ctx.config).await?)
        } else {
            Self::Api(ctx.client()?)
        })
    }
}

fn push(query: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(value) = value {
        query.push((key, value));
    }
}

fn rfc3339(raw: Option<&str>) -> anyhow::Result<Option<i64>> {
    raw.map(time_or_age).transpose()
}

/// `switchboard events …`
pub async fn events(ctx: &Ctx, cmd: EventsCommand) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(ctx).await?;
    match cmd {
        EventsCommand::List {
            source,
            event_type,
            status,
            since,
            until,
            unrouted,
            paging,
        } => {
            let query = EventQuery {
                source,
                event_type,
                status,
                since: rfc3339(since.as_deref())?,
                until: rfc3339(until.as_deref())?,
                routed: unrouted.then_some(false),
            };
            let page = match &backend {
                Backend::Api(client) => {
                    let mut q = Vec::new();
                    push(&mut q, "source", query.source.clone());
                    push(&mut q, "type", query.event_type.clone());
                    push(&mut q, "status", query.status.clone());
                    push(&mut q, "since", query.since.map(format_rfc3339));
                    push(&mut q, "until", query.until.map(format_rfc3339));
                    push(&mut q, "routed", query.routed.map(|r| r.to_string()));
                    client
                        .list(&["events"], &q, paging.want(), paging.cursor.clone())
                        .await?
                }
                Backend::Store(store) => {
                    collect_pages(paging.want(), paging.cursor.clone(), |limit, cursor| {
                        store.events_page(&query, limit, cursor)
                    })
                    .await?
                }
            };
            if ctx.json {
                print_json(&page);
            } else {
                print_events(&page);
                more_hint(&page);
            }
        }
        EventsCommand::Show { id } => {
            let event = match &backend {
                Backend::Api(client) => client.get(&["events", &id], &[]).await?,
                Backend::Store(store) => store.event(&id).await?,
            };
            if ctx.json {
                print_json(&event);
            } else {
                print_event(&event);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchboard deliveries …`
pub async fn deliveries(ctx: &Ctx, cmd: DeliveriesCommand) -> anyhow::Result<ExitCode> {
    let backend = Backend::new(ctx).await?;
    match cmd {
        DeliveriesCommand::List {
            status,
            destination,
            event,
            paging,
        } => {
            let query = DeliveryQuery {
                status,
                destination,
                event_id: event,
            };
            let page = match &backend {
                Backend::Api(client) => {
                    let mut q = Vec::new();
                    push(&mut q, "status", query.status.clone());
                    push(&mut q, "destination", query.destination.clone());
                    push(&mut q, "event_id", query.event_id.clone());
                    client
                        .list(&["deliveries"], &q, paging.want(), paging.cursor.clone())
                        .await?
                }
                Backend::Store(store) => {
                    collect_pages(paging.want(), paging.cursor.clone(), |limit, cursor| {
                        store.deliveries_page(&query, limit, cursor)
                    })
                    .await?
                }
            };
            if ctx.json {
                print_json(&page);
            } else {
                print_deliveries(items(&page));
                more_hint(&page);
            }
        }
        DeliveriesCommand::Show { id } => {
            let delivery = match &backend {
                Backend::Api(client) => client.get(&["deliveries", &id], &[]).await?,
                Backend::Store(store) => store.delivery(&id).await?,
            };
            if ctx.json {
                print_json(&delivery);
            } else {
                print_fields(&delivery, &["attempt_log"]);
                outln!();
                print_attempts(items(&delivery["attempt_log"]));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchboard attempts`
pub async fn attempts(ctx: &Ctx, args: AttemptsArgs) -> anyhow::Result<ExitCode> {
    let attempts = match Backend::new(ctx).await? {
        Backend::Api(client) => {
            let mut q = Vec::new();
            push(&mut q, "event_id", args.event.clone());
            push(&mut q, "delivery_id", args.delivery.clone());
            client.get(&["attempts"], &q).await?
        }
        Backend::Store(store) => {
            store
                .attempts(args.event.as_deref(), args.delivery.as_deref())
                .await?
        }
    };
    if ctx.json {
        print_json(&attempts);
    } else if items(&attempts).is_empty() {
        match (&args.event, &args.delivery) {
            (Some(event), _) => outln!("no attempts for event {event}"),
            (_, Some(delivery)) => outln!("no attempts for delivery {delivery}"),
            _ => outln!("no attempts"),
        }
    } else {
        print_attempts(items(&attempts));
    }
    Ok(ExitCode::SUCCESS)
}

/// `switchboard replay`
pub async fn replay(ctx: &Ctx, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let since = rfc3339(args.since.as_deref())?;
    let one = args.delivery.is_some();
    let queued = match Backend::new(ctx).await? {
        Backend::Api(client) => {
            let body = match (&args.delivery, &args.event, &args.destination) {
                (Some(id), _, _) => json!({ "delivery_id": id }),
                (_, Some(id), _) => json!({ "event_id": id }),
                (_, _, Some(destination)) => {
                    let mut body = json!({ "destination": destination, "status": "failed" });
                    if let Some(since) = since {
                        body["since"] = json!(format_rfc3339(since));
                    }
                    body
                }
                _ => bail!("say what to replay: --delivery, --event or --destination"),
            };
            let answer = client.post(&["replay"], &body).await?;
            answer["queued"].as_u64().unwrap_or(0)
        }
        Backend::Store(store) => {
            let selector = match (args.delivery, args.event, args.destination) {
                (Some(id), _, _) => ReplaySelector::Delivery(id),
                (_, Some(id), _) => ReplaySelector::Event(id),
                (_, _, Some(destination)) => ReplaySelector::FailedForDestination {
                    destination,
                    since: since.unwrap_or(0),
                },
                _ => bail!("say what to replay: --delivery, --event or --destination"),
            };
            store.replay(&selector).await?
        }
    };
    if ctx.json {
        print_json(&json!({ "queued": queued }));
    } else {
        outln!(
            "queued {queued} deliver{}",
            if queued == 1 { "y" } else { "ies" }
        );
    }
    Ok(if queued == 0 && one {
        eprintln!("nothing was queued: no such delivery, or it is in flight right now");
        ExitCode::from(EXIT_NOTHING_QUEUED)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_events(page: &Value) {
    print_table(
        &["ID", "SOURCE", "TYPE", "RECEIVED", "BYTES", "CONTENT-TYPE"],
        items(page).iter().map(|e| {
            vec![
                field(e, "id"),
                field(e, "source"),
                field(e, "type"),
                field(e, "received_at"),
                field(e, "body_bytes"),
                e["content_type"].as_str().unwrap_or_default().to_owned(),
            ]
        }),
    );
}

fn print_event(event: &Value) {
    outln!("event     {}", field(event, "id"));
    outln!("source    {}", field(event, "source"));
    outln!("type      {}", field(event, "type"));
    outln!("received  {}", field(event, "received_at"));
    outln!("headers");
    for header in items(&event["headers"]) {
        outln!("  {}: {}", field(header, "name"), field(header, "value"));
    }
    let encoding = if event["body_encoding"] == "base64" {
        ", base64"
    } else {
        ""
    };
    outln!("body ({} bytes{encoding})", field(event, "body_bytes"));
    outln!("{}", event["body"].as_str().unwrap_or_default());
    outln!();
    print_table(
        &["DELIVERY", "DESTINATION", "STATUS", "ATTEMPTS"],
        items(&event["deliveries"]).iter().map(|d| {
            vec![
                field(d, "id"),
                field(d, "destination"),
                field(d, "status"),
                field(d, "attempts"),
            ]
        }),
    );
}

fn print_deliveries(deliveries: &[Value]) {
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
            let when = if d["status"] == "pending" {
                field(d, "next_attempt_at")
            } else {
                field(d, "updated_at")
            };
            let last = if d["last_status"].is_null() {
                field(d, "last_error")
            } else {
                field(d, "last_status")
            };
            vec![
                field(d, "id"),
                field(d, "event_id"),
                field(d, "destination"),
                field(d, "status"),
                field(d, "attempts"),
                last,
                when,
            ]
        }),
    );
}

fn print_attempts(attempts: &[Value]) {
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
                field(a, "delivery_id"),
                field(a, "destination"),
                field(a, "attempt"),
                field(a, "started_at"),
                field(a, "outcome"),
                field(a, "status_code"),
                format!("{}ms", field(a, "latency_ms")),
                a["error"].as_str().unwrap_or_default().to_owned(),
            ]
        }),
    );
}
