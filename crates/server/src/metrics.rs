//! Prometheus metrics. One recorder per process (the `metrics` facade is global); gauges that
//! describe the store (backlog) are refreshed when `/metrics` is scraped.

use std::sync::{Arc, OnceLock};

use switchboard_core::config::MetricsConfig;

use crate::statsd::StatsdRecorder;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder (Prometheus, plus StatsD when `[metrics] statsd` is set)
/// and returns the StatsD recorder to flush. The first call in a process decides: a later
/// server in the same process (tests) shares the recorders already installed.
pub fn install(config: &MetricsConfig) -> Option<Arc<StatsdRecorder>> {
    let mut statsd = None;
    HANDLE.get_or_init(|| {
        let prometheus = build_prometheus()?;
        let handle = prometheus.handle();
        let installed = match &config.statsd {
            None => metrics::set_global_recorder(prometheus).is_ok(),
            Some(_) => {
                let recorder = Arc::new(StatsdRecorder::new(&config.statsd_prefix));
                statsd = Some(recorder.clone());
                let fanout = metrics_util::layers::FanoutBuilder::default()
                    .add_recorder(prometheus)
                    .add_recorder(SharedRecorder(recorder))
                    .build();
                metrics::set_global_recorder(fanout).is_ok()
            }
        };
        if !installed {
            return None;
        }
        describe();
        Some(handle)
    });
    if statsd.is_none() && config.statsd.is_some() {
        tracing::warn!("metrics were set up earlier in this process; StatsD export is not added");
    }
    statsd
}

/// An `Arc`'d recorder, so the flush task and the fanout share one.
struct SharedRecorder(Arc<StatsdRecorder>);

impl metrics::Recorder for SharedRecorder {
    fn describe_counter(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        self.0.describe_counter(k, u, d);
    }
    fn describe_gauge(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        self.0.describe_gauge(k, u, d);
    }
    fn describe_histogram(
        &self,
        k: metrics::KeyName,
        u: Option<metrics::Unit>,
        d: metrics::SharedString,
    ) {
        self.0.describe_histogram(k, u, d);
    }
    fn register_counter(&self, k: &metrics::Key, m: &metrics::Metadata<'_>) -> metrics::Counter {
        self.0.register_counter(k, m)
    }
    fn register_gauge(&self, k: &metrics::Key, m: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.0.register_gauge(k, m)
    }
    fn register_histogram(
        &self,
        k: &metrics::Key,
        m: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        self.0.register_histogram(k, m)
    }
}

/// The Prometheus handle (`None` if another recorder was installed by the embedding program).
/// Installs the recorder without StatsD if [`install`] did not run.
pub fn handle() -> Option<&'static PrometheusHandle> {
    if HANDLE.get().is_none() {
        install(&MetricsConfig::default());
    }
    HANDLE.get().and_then(Option::as_ref)
}

fn build_prometheus() -> Option<metrics_exporter_prometheus::PrometheusRecorder> {
    {
        {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("switchboard_attempt_duration_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_duration_seconds".into()),
                        &[
                            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                            10.0, 30.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("switchboard_ingest_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .ok()?
                .build_recorder();
            Some(recorder)
        }
    }
}

fn describe() {
    metrics::describe_counter!(
        "switchboard_events_received_total",
        "Events accepted and stored, by source"
    );
    metrics::describe_counter!(
        "switchboard_ingest_rejected_total",
        "Ingest requests refused, by source and reason"
    );
    metrics::describe_counter!(
        "switchboard_attempts_total",
        "Delivery attempts, by destination and outcome"
    );
    metrics::describe_counter!(
        "switchboard_deliveries_finished_total",
        "Deliveries that reached a final state, by destination and status"
    );
    metrics::describe_histogram!(
        "switchboard_attempt_duration_seconds",
        "Delivery attempt latency, by destination"
    );
    metrics::describe_histogram!(
        "switchboard_ingest_batch_size",
        "Events per group-commit transaction"
    );
    metrics::describe_histogram!(
        "switchboard_ingest_commit_duration_seconds",
        metrics::Unit::Seconds,
        "Time of one group-commit transaction (events and their deliveries)"
    );
    metrics::describe_counter!(
        "switchboard_store_errors_total",
        "Store operations that failed, by operation (commit, claim, complete)"
    );
    metrics::describe_gauge!(
        "switchboard_deliveries",
        "Deliveries in the store by status (backlog = pending + in_flight)"
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Strings that look like metric names but are not (a header name, a tracing target).
    const NOT_METRICS: [&str; 2] = ["switchboard_delivery_id", "switchboard_server"];

    /// Every `"switchboard_…"` string literal in the server's sources.
    fn names_in_code(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                names_in_code(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read file");
                for piece in text.split("\"switchboard_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if !name.is_empty() && piece[name.len()..].starts_with('"') {
                        out.insert(format!("switchboard_{name}"));
                    }
                }
            }
        }
    }

    #[test]
    fn every_metric_is_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut in_code = BTreeSet::new();
        names_in_code(&root.join("src"), &mut in_code);
        for name in NOT_METRICS {
            in_code.remove(name);
        }
        assert!(in_code.len() > 20, "found {in_code:?}");
        let doc = std::fs::read_to_string(root.join("../../docs/metrics.md")).expect("metrics.md");
        let documented: BTreeSet<String> = doc
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .filter(|name| name.starts_with("switchboard_"))
            .map(str::to_owned)
            .collect();
        let missing: Vec<_> = in_code.difference(&documented).collect();
        assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
        let stale: Vec<_> = documented.difference(&in_code).collect();
        assert!(
            stale.is_empty(),
            "docs/metrics.md names unknown metrics: {stale:?}"
        );
    }
}
