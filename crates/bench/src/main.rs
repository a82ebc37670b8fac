//! `switchboard-bench`: measures Switchboard with the load generator in the same process.
//!
//! - `--mode ingest` (default): durable ingest throughput and latency at several concurrency
//!   levels, each against a fresh server and data directory.
//! - `--mode deliver`: delivery throughput of a pre-loaded backlog to a loopback receiver.
//! - `--mode backlog`: process memory while a large undeliverable backlog sits in the store.
//!
//! Server, receiver and clients share one Tokio runtime (and the machine's cores), so the figures
//! are a lower bound for a server with the machine to itself. Build with `--release`.

mod harness;
mod load;
mod modes;
mod report;

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
    about = "Measures Switchboard's ingest and delivery throughput in-process."
)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Ingest)]
    pub mode: Mode,
    /// Concurrent clients (one keep-alive connection each) per ingest level, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Measured time per ingest level.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
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
    /// Events to pre-load (deliver: 50000, backlog: 1000000).
    #[arg(long)]
    pub events: Option<u64>,
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
    /// Override `storage.max_batch` (events per group commit).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Override `delivery.per_destination_concurrency` (the single destination's in-flight cap).
    #[arg(long)]
    pub per_destination_concurrency: Option<usize>,
    /// Directory in which temporary data directories are created (default: the system
    /// temporary directory). Must be on the disk you want to measure: on tmpfs, fsync is free.
    #[arg(long)]
    pub data_parent: Option<PathBuf>,
    /// Print one JSON line per measurement on stdout (the table then goes to stderr).
    #[arg(long)]
    pub json: bool,
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let args = Args::parse();
    let out = Output { json: args.json };
    let data_parent = args.data_parent.clone().unwrap_or_else(std::env::temp_dir);
    let settings = Settings {
        durability: args.durability.config(),
        max_batch: args.max_batch,
        per_destination_concurrency: args.per_destination_concurrency,
        data_parent,
    };
    header(&args, &settings, out);
    match args.mode {
        Mode::Ingest => modes::ingest(&args, &settings, out).await,
        Mode::Deliver => modes::deliver(&args, &settings, out).await,
        Mode::Backlog => modes::backlog(&args, &settings, out).await,
    }
}

fn header(args: &Args, settings: &Settings, out: Output) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let fs = harness::filesystem_of(&settings.data_parent).unwrap_or_else(|| "unknown".into());
    out.line(&format!(
        "switchboard-bench: mode {}, durability {}, body {} B, {cores} cores, data under {} ({fs}){}",
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
