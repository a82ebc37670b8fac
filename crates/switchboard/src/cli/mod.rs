//! Subcommands.

mod inspect;
mod samples;
mod serve;
mod trigger;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::settings::ConfigArgs;

/// Switchboard: receive, route and deliver webhooks, durably.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: ingest, delivery workers, health and metrics.
    Serve(serve::ServeArgs),
    /// Inspect stored events.
    #[command(subcommand)]
    Events(inspect::EventsCommand),
    /// Inspect deliveries.
    #[command(subcommand)]
    Deliveries(inspect::DeliveriesCommand),
    /// Show the attempts made for an event's deliveries.
    Attempts(inspect::AttemptsArgs),
    /// Re-queue deliveries: one, all of an event, or a destination's failures since a time.
    Replay(inspect::ReplayArgs),
    /// Send a provider's sample event to a URL, signed as the provider signs it.
    Trigger(trigger::TriggerArgs),
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.config, args).await,
        Command::Events(cmd) => inspect::events(&cli.config, cmd).await,
        Command::Deliveries(cmd) => inspect::deliveries(&cli.config, cmd).await,
        Command::Attempts(args) => inspect::attempts(&cli.config, args).await,
        Command::Replay(args) => inspect::replay(&cli.config, args).await,
        Command::Trigger(args) => trigger::run(args).await,
    }
}
