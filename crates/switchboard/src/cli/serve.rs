//! `switchboard serve`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use switchboard_core::config::LogFormat;
use tokio_util::sync::CancellationToken;

use crate::settings::{self, ConfigArgs};

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides `server.listen`).
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Log format (overrides `log.format`): `pretty` (or `text`) or `json`.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_parser = ["pretty", "text", "json"])]
    log_format: Option<String>,
}

pub async fn run(config_args: &ConfigArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = settings::load(config_args)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let format = args.log_format.as_deref().and_then(LogFormat::parse);
    let filter = ["SWITCHBOARD_LOG", "RUST_LOG"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()));
    let telemetry =
        switchboard_server::telemetry::init(&config.log, &config.tracing, format, filter)?;
    // A server keeps running when its stdout goes away, so these lines ignore write errors
    // (a closed pipe must not panic or stop it).
    let say = |line: String| {
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    if let Some(token) = switchboard_server::ensure_admin_token(&config).await? {
        say("Created an admin API token (shown only this once; store it safely):".into());
        say(format!("  {token}"));
        say("  use it as `Authorization: Bearer <token>` or SWITCHBOARD_TOKEN for the CLI".into());
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let storage = match &config.server.database_url {
        Some(url) => format!(
            "PostgreSQL at {}",
            switchboard_core::config::redact_url_password(url)
        ),
        None => format!("data in {}", config.server.data_dir.display()),
    };
    say(format!(
        "Switchboard {} listening on http://{addr} ({storage})",
        env!("CARGO_PKG_VERSION"),
    ));
    for source in &config.sources {
        if source.is_webhook() {
            say(format!("  send events to http://{addr}/in/{}", source.id));
        } else {
            say(format!("  {} source `{}`", source.kind.name(), source.id));
        }
    }
    if config.sources.is_empty() {
        say("  no sources configured yet: add [[sources]] to the configuration file".into());
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    let result = switchboard_server::run(config, listener, shutdown).await;
    telemetry.shutdown().await;
    result?;
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn watch_signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
