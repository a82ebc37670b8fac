//! `switchboard mock`: a mock provider server for integration tests (see `docs/mock.md`). The
//! server itself is `switchboard_server::mock`; this is its command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use switchboard_server::mock::{Mock, MockConfig, MockResponse, Scenario};
use tokio_util::sync::CancellationToken;

/// `switchboard mock`
#[derive(Debug, clap::Args)]
pub struct MockArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:9900")]
    listen: SocketAddr,
    /// A JSON file with responses to queue at start: an array of
    /// `{"method", "path", "status", "headers", "body", "delay", "times"}`.
    #[arg(long, value_name = "FILE")]
    responses: Option<PathBuf>,
    /// A built-in behaviour for every request.
    #[arg(long, value_parser = ["rate-limited", "flaky", "down"])]
    scenario: Option<String>,
    /// rate-limited: requests allowed per window.
    #[arg(long, default_value_t = 10)]
    limit: u32,
    /// rate-limited: the window (`1s`, `1m`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// flaky: share of requests that fail with 500 or 503 (0–1).
    #[arg(long, default_value_t = 0.3)]
    fail_rate: f64,
    /// flaky: generator seed (the same seed fails the same requests).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// down: the status every request gets.
    #[arg(long, default_value_t = 500)]
    down_status: u16,
    /// Write the recorded requests as JSON Lines to this file when the mock stops.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

/// Builds the mock's settings from the arguments.
fn settings(args: &MockArgs) -> anyhow::Result<MockConfig> {
    let scenario = match args.scenario.as_deref() {
        None => None,
        Some("rate-limited") => {
            if args.limit == 0 || args.window.is_zero() {
                bail!("--limit and --window must be > 0");
            }
            Some(Scenario::RateLimited {
                limit: args.limit,
                window: args.window,
            })
        }
        Some("flaky") => {
            if !(0.0..=1.0).contains(&args.fail_rate) {
                bail!("--fail-rate must be between 0 and 1");
            }
            Some(Scenario::Flaky {
                fail_rate: args.fail_rate,
                seed: args.seed,
            })
        }
        Some("down") => {
            if !(100..=599).contains(&args.down_status) {
                bail!("--down-status must be an HTTP status");
            }
            Some(Scenario::Down {
                status: args.down_status,
            })
        }
        Some(other) => bail!("unknown scenario `{other}`"),
    };
    let responses = match &args.responses {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let responses: Vec<MockResponse> = serde_json::from_str(&text).with_context(|| {
                format!("{}: expected a JSON array of responses", path.display())
            })?;
            for (i, response) in responses.iter().enumerate() {
                response
                    .validate()
                    .map_err(|e| anyhow::anyhow!("{}: response {i}: {e}", path.display()))?;
            }
            responses
        }
    };
    Ok(MockConfig {
        scenario,
        responses,
    })
}

/// Runs the mock until Ctrl-C or SIGTERM.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    let config = settings(&args)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mock = Mock::new(config);
    super::output::outln!(
        "Switchboard mock listening on http://{addr} (admin API under /__mock/; scenario: {})",
        args.scenario.as_deref().unwrap_or("none")
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(super::serve::watch_signals(shutdown.clone()));
    switchboard_server::mock::serve(mock.clone(), listener, shutdown).await?;
    if let Some(path) = &args.log {
        let mut text = String::new();
        for record in mock.requests() {
            text.push_str(&serde_json::to_string(&record)?);
            text.push('\n');
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
