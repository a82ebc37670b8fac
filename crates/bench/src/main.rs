//! `switchboard-bench`: measures Switchboard with the load generator in the same process.
//!
//! - `--mode ingest` (default): durable ingest throughput and latency at several concurrency
//!   levels, each against a fresh server and data directory.
//! - `--mode deliver`: delivery throughput of a pre-loaded backlog to a loopback receiver.
//! - `--mode backlog`: process memory while a large undeliverable backlog sits in the store.
//! - `--mode fanout`: outbound webhooks through the API: one tenant with `--endpoints` endpoints
//!   (100) on a loopback receiver, `--events` events (1,000) published by `--publishers` clients
//!   (16); reports publish latency and rate, deliveries/s from the first publish to the last
//!   delivery, and each delivery's lag behind its publish's `202`.
//! - `--mode hang`: `--endpoints` endpoints (1,000), `--hanging` of them (10) on a receiver that
//!   answers only after `--hang-for` (10 s); events published at `--rate` per second (20) for
//!   `--duration` (30 s), each to the endpoints of one of `--event-types` types (10); reports the
//!   healthy endpoints' delivery lag against the 1 s p99 target and what the hanging ones got.
//! - `--mode sync`: records/s of a full sync of `--events` records (100,000) from a loopback
//!   list API into a SQLite table, and a PostgreSQL table with `--postgres`; a second run over
//!   the unchanged listing measures change detection alone.
//! - `--mode queue`: for each `--broker` (NATS JetStream, RabbitMQ, Redis Streams on this
//!   machine), queue source throughput (`--events` messages (20,000) consumed, stored and
//!   acknowledged) and queue destination throughput (`--events` ingested events published and
//!   confirmed by the broker).
//!
//! Ingest and deliver modes can store in PostgreSQL (`--database-url URL` or `--postgres` for
//! `postgres://postgres@127.0.0.1:5432/test`; a fresh schema per run, dropped afterwards) with
//! `--nodes N` in-process nodes sharing it, each on its own loopback port: ingest clients are
//! spread over the nodes round robin, and every node's worker delivers.
//!
//! Server, receiver and clients share one Tokio runtime (and the machine's cores), so the figures
//! are a lower bound for a server with the machine to itself. Build with `--release`.

mod dashboard;
mod harness;
mod load;
mod modes;
mod outbound;
mod proxy;
mod queue;
mod report;
mod sync;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use switchboard_core::config::Durability;

use crate::harness::Settings;
use crate::report::Output;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Measures Switchboard's ingest and delivery throughput in-process.",
    long_about = "Measures Switchboard's ingest and delivery throughput in-process.\n\n\
        Modes: ingest (durable ingest rate and latency), deliver (delivery rate of a pre-loaded \
        backlog), backlog (memory with a large backlog), fanout (publish API: 1 tenant, \
        --endpoints endpoints, --events events; publish latency, deliveries/s, delivery lag), \
        hang (--endpoints endpoints of which --hanging answer after --hang-for; events at \
        --rate/s for --duration; healthy endpoints' lag against the 1 s p99 target), queue \
        (per --broker: queue source and queue destination messages/s), sync (records/s of a \
        full sync), proxy (latency the connection proxy adds at --rps, and its throughput per \
        --concurrency).\n\n\
        Logs: SWITCHBOARD_LOG (or RUST_LOG), e.g. SWITCHBOARD_LOG=info; default warn."
)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Ingest)]
    pub mode: Mode,
    /// Concurrent clients (one keep-alive connection each) per ingest level, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Measured time per ingest level (default 10s); hang mode: how long to publish (30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up per ingest level, excluded from the figures.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// `storage.durability`: `full` fsyncs every group commit, `normal` only at checkpoints.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    pub durability: DurabilityArg,
    /// Ingest mode: also route every event to a loopback receiver, so delivery competes with
    /// ingest for the store and the CPU.
    #[arg(long)]
    pub with_routes: bool,
    /// Events to pre-load (deliver: 50000, backlog: 1000000) or to publish (fanout: 1000);
    /// sync mode: records the list API holds (100000).
    #[arg(long)]
    pub events: Option<u64>,
    /// Sync mode: records per page.
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// Fanout and hang modes: endpoints of the tenant (fanout: 100, hang: 1000).
    #[arg(long)]
    pub endpoints: Option<usize>,
    /// Fanout mode: concurrent publishing clients (closed loop, one connection each).
    #[arg(long, default_value_t = 16)]
    pub publishers: usize,
    /// Hang mode: how many endpoints point at the receiver that hangs.
    #[arg(long, default_value_t = 10)]
    pub hanging: usize,
    /// Hang mode: how long the hanging receiver waits before answering 200.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub hang_for: Duration,
    /// Hang mode: every endpoint's attempt timeout (must exceed --hang-for for the hanging
    /// attempts to succeed).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub hang_timeout: Duration,
    /// Hang mode: events published per second (open loop).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Hang mode: endpoint i subscribes to event type i mod K, event n has type n mod K, so each
    /// event fans out to endpoints/K endpoints (1: every event to every endpoint).
    #[arg(long, default_value_t = 10)]
    pub event_types: usize,
    /// Concurrent clients used to pre-load events (deliver and backlog modes).
    #[arg(long, default_value_t = 64)]
    pub preload_concurrency: usize,
    /// Backlog mode: how long to watch memory after the pre-load, with the worker running.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub settle: Duration,
    /// Backlog mode: why deliveries cannot complete.
    #[arg(long, value_enum, default_value_t = BacklogTarget::Refused)]
    pub backlog_target: BacklogTarget,
    /// Size of each event's JSON body in bytes.
    #[arg(long, default_value_t = 500)]
    pub body_bytes: usize,
    /// Deliver mode: pre-load GitHub's `pull_request.opened` sample (5.3 KB) instead of a
    /// synthetic body of `--body-bytes`.
    #[arg(long)]
    pub github_payload: bool,
    /// Deliver mode: the route filters (`.body.action == "opened"`) and transforms every event
    /// with jq into a Slack-style message, as a GitHub → Slack route does.
    #[arg(long)]
    pub transform: bool,
    /// Override `storage.max_batch` (events per group commit).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Override `delivery.per_destination_concurrency` (the single destination's in-flight cap).
    #[arg(long)]
    pub per_destination_concurrency: Option<usize>,
    /// Override `delivery.concurrency` (the worker's global in-flight cap, default 512).
    #[arg(long)]
    pub delivery_concurrency: Option<usize>,
    /// Directory in which temporary data directories are created (default: the system
    /// temporary directory). Must be on the disk you want to measure: on tmpfs, fsync is free.
    #[arg(long)]
    pub data_parent: Option<PathBuf>,
    /// Ingest and deliver modes: store in the PostgreSQL database at this URL instead of SQLite
    /// (a fresh schema per run, dropped afterwards; needs the `psql` client).
    #[arg(long, conflicts_with = "postgres")]
    pub database_url: Option<String>,
    /// Ingest and deliver modes: shorthand for `--database-url` with the local default
    /// `postgres://postgres@127.0.0.1:5432/test`.
    #[arg(long)]
    pub postgres: bool,
    /// Ingest and deliver modes: in-process server nodes sharing the PostgreSQL database, each
    /// with its own listener and delivery worker (more than 1 needs a database URL).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Print one JSON line per measurement on stdout (the table then goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Queue mode: the brokers to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "nats,rabbitmq,redis"
    )]
    pub broker: Vec<QueueBrokerArg>,
    /// Queue mode: the NATS server (JetStream enabled).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Queue mode: the RabbitMQ server.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// Queue mode: the Redis server.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Proxy mode: requests started per second (open loop) when measuring added latency.
    #[arg(long, default_value_t = 1000)]
    pub rps: u32,
    /// Queue mode: the queue source's `concurrency` (messages stored at once).
    #[arg(long, default_value_t = 64)]
    pub queue_concurrency: usize,
}

/// The database of `--postgres`.
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

impl Args {
    /// The PostgreSQL URL to store in, if any (`--database-url`, or `--postgres`).
    pub fn database_url(&self) -> Option<&str> {
        match (&self.database_url, self.postgres) {
            (Some(url), _) => Some(url),
            (None, true) => Some(LOCAL_POSTGRES),
            (None, false) => None,
        }
    }

    fn check_store_options(&self) -> anyhow::Result<()> {
        let multi = self.database_url().is_some() || self.nodes != 1;
        if multi
            && !matches!(
                self.mode,
                Mode::Ingest | Mode::Deliver | Mode::Sync | Mode::Dashboard
            )
        {
            anyhow::bail!(
                "--database-url, --postgres and --nodes apply to ingest, deliver and sync only"
            );
        }
        if self.mode == Mode::Sync && self.nodes != 1 {
            anyhow::bail!("sync mode runs one node (--postgres adds a PostgreSQL destination)");
        }
        if self.nodes == 0 {
            anyhow::bail!("--nodes must be at least 1");
        }
        if self.nodes > 1 && self.database_url().is_none() {
            anyhow::bail!("--nodes above 1 needs a shared database: --database-url or --postgres");
        }
        Ok(())
    }
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Durable ingest throughput and latency.
    Ingest,
    /// Delivery throughput of a pre-loaded backlog.
    Deliver,
    /// Memory with a large backlog.
    Backlog,
    /// Outbound fan-out through the publish API.
    Fanout,
    /// Outbound delivery lag of healthy endpoints while some endpoints hang.
    Hang,
    /// Queue source and queue destination throughput per broker.
    Queue,
    /// Records per second of a full data sync into SQLite (and PostgreSQL).
    Sync,
    /// Latency the connection proxy adds at `--rps`, and its throughput per `--concurrency`.
    Proxy,
    /// The dashboard's store queries (chart counts, body search) over `--events` stored events.
    Dashboard,
}

/// `--broker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueBrokerArg {
    /// NATS JetStream.
    Nats,
    /// RabbitMQ.
    Rabbitmq,
    /// Redis Streams.
    Redis,
}

impl QueueBrokerArg {
    /// The broker's name in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Self::Nats => "nats",
            Self::Rabbitmq => "rabbitmq",
            Self::Redis => "redis",
        }
    }
}

impl Args {
    /// The URL of `broker`.
    pub fn broker_url(&self, broker: QueueBrokerArg) -> String {
        match broker {
            QueueBrokerArg::Nats => self.nats_url.clone(),
            QueueBrokerArg::Rabbitmq => self.amqp_url.clone(),
            QueueBrokerArg::Redis => self.redis_url.clone(),
        }
    }
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync per group commit.
    Full,
    /// fsync at checkpoints.
    Normal,
}

impl DurabilityArg {
    /// The configuration value.
    pub fn config(self) -> Durability {
        match self {
            Self::Full => Durability::Full,
            Self::Normal => Durability::Normal,
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }
}

/// `--backlog-target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BacklogTarget {
    /// Destination `http://127.0.0.1:9/`: every attempt is refused at once and retried in an
    /// hour, so the backlog becomes pending rows scheduled in the future.
    Refused,
    /// A receiver that never answers: the destination's in-flight cap fills up and the rest of
    /// the backlog stays due in the store.
    Gated,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let args = Args::parse();
    args.check_store_options()?;
    let out = Output { json: args.json };
    let data_parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    let settings = Settings {
        durability: args.durability.config(),
        max_batch: args.max_batch,
        per_destination_concurrency: args.per_destination_concurrency,
        concurrency: args.delivery_concurrency,
        data_parent,
    };
    header(&args, &settings, out);
    match args.mode {
        Mode::Ingest => modes::ingest(&args, &settings, out).await,
        Mode::Deliver => modes::deliver(&args, &settings, out).await,
        Mode::Backlog => modes::backlog(&args, &settings, out).await,
        Mode::Fanout => outbound::fanout(&args, &settings, out).await,
        Mode::Hang => outbound::hang(&args, &settings, out).await,
        Mode::Queue => queue::queue(&args, &settings, out).await,
        Mode::Sync => sync::sync(&args, &settings, out).await,
        Mode::Proxy => proxy::proxy(&args, &settings, out).await,
        Mode::Dashboard => dashboard::dashboard(&args, &settings, out).await,
    }
}

fn header(args: &Args, settings: &Settings, out: Output) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fs = harness::filesystem_of(&settings.data_parent).unwrap_or_else(|| "unknown".into());
    // Other work on the machine competes for the same cores: say how much there was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    out.line(&format!(
        "switchboard-bench: mode {}, durability {}, body {} B, {cores} cores (load average \
         {load}), data under {} ({fs}){}",
        format!("{:?}", args.mode).to_lowercase(),
        args.durability.name(),
        args.body_bytes,
        settings.data_parent.display(),
        if cfg!(debug_assertions) {
            " — DEBUG BUILD, figures are meaningless"
        } else {
            ""
        },
    ));
    if fs == "tmpfs" || fs == "ramfs" {
        out.line("warning: the data directory is in memory; fsync costs nothing there");
    }
}
