//! Subcommands, the global options and exit codes.
//!
//! Most commands talk to the `/v1` management API (`--url`, `--token`). The server URL option
//! is added to every API command programmatically (see [`command`]) so that it is accepted
//! before or after the subcommand; on `destinations create|update`, where `--url` is the
//! destination's URL, the server's is spelled `--server`.

mod audit;
mod check;
mod client;
mod connections;
mod data;
mod doctor;
mod endpoints;
mod input;
mod inspect;
mod keys;
mod live;
mod mock;
mod offline;
mod outbound;
mod output;
mod resources;
mod samples;
mod send;
mod serve;
mod sigtool;
mod syncs;
mod tokens;
mod trigger;

use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::settings::ConfigArgs;
use client::{Client, Remote};

/// Exit code of API and user errors.
pub const EXIT_ERROR: u8 = 1;
/// Exit code of `replay --delivery` when nothing was queued.
pub const EXIT_NOTHING_QUEUED: u8 = 3;
/// Exit code when the server cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 4;

/// The API URL used when neither `--url` nor `SWITCHBOARD_URL` is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Id of the server URL option.
const SERVER_URL: &str = "server_url";

/// Commands that never talk to the API (they get no `--url`).
const LOCAL_COMMANDS: [&str; 10] = [
    "serve",
    "keys",
    "check-config",
    "migrate",
    "export",
    "import",
    "trigger",
    "sign",
    "verify",
    "completions",
];

/// Switchboard: receive, route and deliver webhooks, durably.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// API token (`sb_…`), sent as `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "SWITCHBOARD_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Print JSON (the API's shapes) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: ingest, delivery workers, management API, health and metrics.
    Serve(serve::ServeArgs),
    /// Check a configuration file without starting anything (exit 1 with `file:line: why`).
    CheckConfig(check::CheckArgs),
    /// Apply pending database migrations and print the schema version.
    Migrate(data::MigrateArgs),
    /// Write all stored data to a portable JSON Lines file (for moving to another database).
    Export(data::ExportArgs),
    /// Load an export into the configured, empty store (same master key needed).
    Import(data::ImportArgs),
    /// Master keys of secrets at rest: generate, status, rotate (re-seal everything), retire.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage sources (where events come in).
    #[command(subcommand)]
    Sources(resources::SourcesCommand),
    /// Manage destinations (where events go).
    #[command(subcommand)]
    Destinations(resources::DestinationsCommand),
    /// Manage routes (source → destination).
    #[command(subcommand)]
    Routes(resources::RoutesCommand),
    /// Manage API tokens (admin scope).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Run a mock provider for integration tests: queued responses, recorded requests,
    /// rate-limit and outage scenarios.
    Mock(mock::MockArgs),
    /// Check a running instance: reachable, store, migrations, nodes, clock skew, disk, backlog.
    Doctor(doctor::DoctorArgs),
    /// The audit trail of management actions (admin scope).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Manage connections to third-party APIs (credentials, OAuth2 tokens).
    #[command(subcommand)]
    Connections(connections::ConnectionsCommand),
    /// Print the provider URL that authorizes an `oauth2` connection (open it in a browser).
    Connect(connections::ConnectArgs),
    /// Data sync jobs: list, show, start or cancel a run, read the run log.
    #[command(subcommand)]
    Syncs(syncs::SyncsCommand),
    /// Manage tenants (outbound webhooks: your customers, who own endpoints).
    #[command(subcommand)]
    Tenants(outbound::TenantsCommand),
    /// Manage a tenant's webhook endpoints (outbound); the endpoint's URL is `--endpoint-url`.
    #[command(subcommand)]
    Endpoints(endpoints::EndpointsCommand),
    /// Manage the event type catalog (with optional JSON Schemas for payloads).
    #[command(subcommand)]
    EventTypes(outbound::EventTypesCommand),
    /// Publish a message to a tenant's endpoints and print its event id.
    Publish(outbound::PublishArgs),
    /// Inspect stored events.
    #[command(subcommand)]
    Events(inspect::EventsCommand),
    /// Inspect deliveries.
    #[command(subcommand)]
    Deliveries(inspect::DeliveriesCommand),
    /// Show the attempts made for an event's (or one delivery's) deliveries.
    Attempts(inspect::AttemptsArgs),
    /// Re-queue deliveries: one, all of an event, or a destination's failures since a time.
    Replay(inspect::ReplayArgs),
    /// Post a test event to a source (`POST /in/<source>`) and print its id.
    Send(send::SendArgs),
    /// Forward a (possibly remote) Switchboard's events to a local URL as they arrive.
    Listen(live::ListenArgs),
    /// Print events and delivery outcomes as they happen, one line each.
    Tail(live::TailArgs),
    /// Print the signature headers a provider would send for a body (offline).
    Sign(sigtool::SignArgs),
    /// Check a request's signature headers the way a source's verifier does (offline).
    Verify(sigtool::VerifyArgs),
    /// Send a provider's sample event to a URL, signed as the provider signs it.
    Trigger(trigger::TriggerArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// What every command may need besides its own arguments.
#[derive(Debug)]
pub struct Ctx {
    /// `--config`, `--data-dir`.
    pub config: ConfigArgs,
    /// `--url`, `--token`.
    pub remote: Remote,
    /// `--json`.
    pub json: bool,
}

impl Ctx {
    /// A client of the API.
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(&self.remote)
    }

    /// Inspection commands read the store directly when a data directory is given and no URL.
    pub fn offline(&self) -> bool {
        self.config.data_dir.is_some() && !self.remote.explicit
    }
}

/// A failure with its own exit code; its message is printed after `error: `.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// A failure exiting with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error: a [`Failure`]'s own, otherwise 1.
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    ExitCode::from(
        error
            .downcast_ref::<Failure>()
            .map_or(EXIT_ERROR, |f| f.code),
    )
}

/// The full command line definition, with the server URL option on every API command.
pub fn command() -> clap::Command {
    Cli::command()
        .arg(
            url_arg("url")
                .help("Switchboard API base URL")
                .env("SWITCHBOARD_URL")
                .default_value(DEFAULT_URL),
        )
        .mut_subcommands(|sub| {
            if LOCAL_COMMANDS.contains(&sub.get_name()) {
                sub
            } else {
                with_url(sub)
            }
        })
}

fn url_arg(long: &'static str) -> Arg {
    let arg = Arg::new(SERVER_URL)
        .long(long)
        .value_name("URL")
        .help("Switchboard API base URL [env: SWITCHBOARD_URL] [default: http://127.0.0.1:8080]");
    if long == "url" {
        arg.alias("server")
    } else {
        arg
    }
}

fn with_url(cmd: clap::Command) -> clap::Command {
    let taken = cmd.get_arguments().any(|a| a.get_long() == Some("url"));
    let arg = url_arg(if taken { "server" } else { "url" });
    cmd.arg(arg).mut_subcommands(with_url)
}

/// Parses the command line (exits with 2 on usage errors, 0 for `--help`/`--version`).
pub fn parse() -> (Cli, Remote) {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let remote = remote(&matches, cli.token.clone());
    (cli, remote)
}

/// The server URL: the innermost one given on the command line, else the top level's (from the
/// command line, `SWITCHBOARD_URL` or the default).
fn remote(matches: &ArgMatches, token: Option<String>) -> Remote {
    let at = |m: &ArgMatches| {
        let value = m.try_get_one::<String>(SERVER_URL).ok().flatten()?.clone();
        Some((value, m.value_source(SERVER_URL)?))
    };
    let (mut url, source) = at(matches).unwrap_or((DEFAULT_URL.into(), ValueSource::DefaultValue));
    let mut explicit = matches!(source, ValueSource::CommandLine | ValueSource::EnvVariable);
    let mut current = matches;
    while let Some((_, sub)) = current.subcommand() {
        if let Some((value, ValueSource::CommandLine)) = at(sub) {
            url = value;
            explicit = true;
        }
        current = sub;
    }
    Remote {
        url,
        explicit,
        token,
    }
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli, remote: Remote) -> anyhow::Result<ExitCode> {
    let ctx = Ctx {
        config: cli.config,
        remote,
        json: cli.json,
    };
    match cli.command {
        Command::Serve(args) => serve::run(&ctx.config, args).await,
        Command::CheckConfig(args) => check::run(args).await,
        Command::Migrate(args) => data::migrate(&ctx, args).await,
        Command::Export(args) => data::export(&ctx, args).await,
        Command::Import(args) => data::import(&ctx, args).await,
        Command::Keys(cmd) => keys::run(&ctx, cmd).await,
        Command::Sources(cmd) => resources::sources(&ctx, cmd).await,
        Command::Destinations(cmd) => resources::destinations(&ctx, cmd).await,
        Command::Routes(cmd) => resources::routes(&ctx, cmd).await,
        Command::Tokens(cmd) => tokens::run(&ctx, cmd).await,
        Command::Audit(cmd) => audit::run(&ctx, cmd).await,
        Command::Doctor(args) => doctor::run(&ctx, args).await,
        Command::Mock(args) => mock::run(args).await,
        Command::Connections(cmd) => connections::run(&ctx, cmd).await,
        Command::Connect(args) => connections::connect(&ctx, args).await,
        Command::Syncs(cmd) => syncs::run(&ctx, cmd).await,
        Command::Tenants(cmd) => outbound::tenants(&ctx, cmd).await,
        Command::Endpoints(cmd) => endpoints::run(&ctx, cmd).await,
        Command::EventTypes(cmd) => outbound::event_types(&ctx, cmd).await,
        Command::Publish(args) => outbound::publish(&ctx, args).await,
        Command::Events(cmd) => inspect::events(&ctx, cmd).await,
        Command::Deliveries(cmd) => inspect::deliveries(&ctx, cmd).await,
        Command::Attempts(args) => inspect::attempts(&ctx, args).await,
        Command::Replay(args) => inspect::replay(&ctx, args).await,
        Command::Send(args) => send::run(&ctx, args).await,
        Command::Listen(args) => live::listen(&ctx, args).await,
        Command::Tail(args) => live::tail(&ctx, args).await,
        Command::Sign(args) => sigtool::sign(&ctx, args),
        Command::Verify(args) => sigtool::verify(&ctx, args),
        Command::Trigger(args) => trigger::run(args).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "switchboard", &mut script);
            output::write_out(format_args!("{}", String::from_utf8_lossy(&script)));
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_from(args: &[&str]) -> (Cli, Remote) {
        let matches = command()
            .try_get_matches_from(args)
            .expect("valid command line");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        let remote = remote(&matches, cli.token.clone());
        (cli, remote)
    }

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn server_url_is_accepted_before_or_after_the_subcommand() {
        let (_, remote) = parse_from(&["switchboard", "events", "list"]);
        assert!(!remote.explicit);
        let (_, remote) = parse_from(&["switchboard", "--url", "http://a:1", "events", "list"]);
        assert_eq!((remote.url.as_str(), remote.explicit), ("http://a:1", true));
        let (_, remote) = parse_from(&[
            "switchboard",
            "--url",
            "http://a:1",
            "events",
            "list",
            "--url",
            "http://b:2",
        ]);
        assert_eq!(remote.url, "http://b:2");
    }

    #[test]
    fn destinations_take_their_own_url_and_the_server_as_server() {
        let (cli, remote) = parse_from(&[
            "switchboard",
            "destinations",
            "create",
            "d",
            "--url",
            "https://example.com/hook",
            "--server",
            "http://api:9",
        ]);
        assert_eq!(remote.url, "http://api:9");
        let Command::Destinations(resources::DestinationsCommand::Create { fields, .. }) =
            cli.command
        else {
            panic!("parsed as destinations create");
        };
        assert_eq!(fields.url.as_deref(), Some("https://example.com/hook"));
    }
}
