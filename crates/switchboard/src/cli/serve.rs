//! `switchboard serve`.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::settings::{self, ConfigArgs};

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides `server.listen`).
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

pub async fn run(config_args: &ConfigArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(&args.log_format);
    let mut config = settings::load(config_args)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(token) = switchboard_server::ensure_admin_token(&config).await? {
        println!("Created an admin API token (shown only this once; store it safely):");
        println!("  {token}");
        println!("  use it as `Authorization: Bearer <token>` or SWITCHBOARD_TOKEN for the CLI");
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "Switchboard {} listening on http://{addr} (data in {})",
        env!("CARGO_PKG_VERSION"),
        config.server.data_dir.display()
    );
    for source in &config.sources {
        println!("  send events to http://{addr}/in/{}", source.id);
    }
    if config.sources.is_empty() {
        println!("  no sources configured yet: add [[sources]] to the configuration file");
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    switchboard_server::run(config, listener, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn watch_signals(shutdown: CancellationToken) {
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
