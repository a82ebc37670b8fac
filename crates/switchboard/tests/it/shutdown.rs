//! SIGTERM: stop accepting, finish or hand back in-flight work within the grace period, exit 0.

use std::time::{Duration, Instant};

use switchboard_core::{Config, DeliveryStatus};
use switchboard_store::DeliveryFilter;

use crate::support::process::{Process, config_toml};
use crate::support::*;

async fn deliveries(dir: &std::path::Path) -> Vec<switchboard_store::DeliveryRecord> {
    let mut config = Config::default();
    config.server.data_dir = dir.to_path_buf();
    let store = switchboard_server::open_store(&config)
        .await
        .expect("open store");
    store
        .list_deliveries(&DeliveryFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("list")
}

async fn post(base: &str) {
    let response = reqwest::Client::new()
        .post(format!("{base}/in/src"))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_attempts_and_exits_zero() {
    let receiver = Receiver::scripted(|_| Reply::Slow(Duration::from_millis(1500), 200)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let process = Process::spawn(dir.path(), &config_toml(&receiver.url, ""));
    post(&process.base).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    process.terminate();
    let status = process.wait(Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    let rows = deliveries(dir.path()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].status,
        DeliveryStatus::Succeeded,
        "the attempt in flight was allowed to finish"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_attempts_that_outlive_the_grace_period() {
    let receiver = Receiver::scripted(|n| {
        if n == 0 {
            Reply::Slow(Duration::from_secs(20), 200)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = config_toml(&receiver.url, "").replace(
        "[security]",
        "[server]\nshutdown_grace = \"500ms\"\n\n[security]",
    );
    let process = Process::spawn(dir.path(), &toml);
    post(&process.base).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let started = Instant::now();
    process.terminate();
    let status = process.wait(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown respects the grace period"
    );
    let rows = deliveries(dir.path()).await;
    assert_eq!(
        rows[0].status,
        DeliveryStatus::Pending,
        "released, not lost"
    );

    let restarted = Process::spawn(dir.path(), &toml);
    receiver.wait_for(2, Duration::from_secs(10)).await;
    restarted.terminate();
    assert!(restarted.wait(Duration::from_secs(10)).success());
    let rows = deliveries(dir.path()).await;
    assert_eq!(rows[0].status, DeliveryStatus::Succeeded);
}
