//! Observability plumbing shared by every role: the process's log subscriber (`[log]`: pretty
//! or JSON lines), OpenTelemetry traces over OTLP (`[tracing]`, off by default), the
//! correlation of events (request id and W3C trace id, see [`switchboard_core::correlation`])
//! with the headers that carry it downstream, and the span helpers the roles call.

pub mod activity;
pub mod correlation;
mod otlp;
pub mod spans;

use switchboard_core::config::{LogConfig, LogFormat, TracingConfig};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use correlation::{Outgoing, from_headers};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter (`[log] level` or `SWITCHBOARD_LOG`) does not parse.
    #[error("log level `{filter}`: {error}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// The parser's complaint.
        error: String,
    },
    /// The OTLP exporter could not be built (bad endpoint…).
    #[error("tracing: {0}")]
    Exporter(String),
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes the spans still queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still queued and stops the exporter. Call at the end of `serve`.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The processor's flush blocks until its task on the runtime answers: wait for it
            // from the blocking pool, never from a runtime worker.
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(error) = provider.shutdown() {
                    tracing::warn!(%error, "could not flush the last spans");
                }
            })
            .await;
        }
    }
}

/// Installs the process's subscriber: log lines on stderr in `format` (else `log.format`)
/// filtered by `filter` (else `log.level`), and, when `tracing.endpoint` is set, an
/// OpenTelemetry layer exporting Switchboard's spans over OTLP (whatever the log level).
/// Must be called inside the tokio runtime (the exporter runs on it). A second call (tests)
/// keeps the first subscriber.
pub fn init(
    log: &LogConfig,
    tracing_config: &TracingConfig,
    format: Option<LogFormat>,
    filter: Option<String>,
) -> Result<Telemetry, TelemetryError> {
    let directives = filter.unwrap_or_else(|| log.level.clone());
    let env_filter = EnvFilter::try_new(&directives).map_err(|error| TelemetryError::Filter {
        filter: directives.clone(),
        error: error.to_string(),
    })?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format.unwrap_or(log.format) {
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(env_filter)
            .boxed(),
        LogFormat::Pretty => fmt.with_filter(env_filter).boxed(),
    };
    let (otel, provider) = match &tracing_config.endpoint {
        None => (None, None),
        Some(endpoint) => {
            let (layer, provider) = otlp::layer(endpoint, tracing_config)?;
            (Some(layer), Some(provider))
        }
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}
