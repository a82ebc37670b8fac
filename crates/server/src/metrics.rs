//! Prometheus metrics. One recorder per process (the `metrics` facade is global); gauges that
//! describe the store (backlog) are refreshed when `/metrics` is scraped.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle (`None` if another recorder
/// was installed by the embedding program).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("switchboard_attempt_duration_seconds".into()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("switchboard_ingest_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
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
    metrics::describe_gauge!(
        "switchboard_deliveries",
        "Deliveries in the store by status (backlog = pending + in_flight)"
    );
}
