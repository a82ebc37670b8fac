//! `kill -9` at any moment loses nothing acknowledged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::process::{Process, config_toml};
use crate::support::*;

fn marker(body: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("n")?
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_is_delivered_after_kill_9() {
    // A slightly slow receiver keeps deliveries in flight when the process dies.
    let receiver = Receiver::scripted(|_| Reply::Slow(Duration::from_millis(20), 200)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = config_toml(&receiver.url, "");
    let process = Process::spawn(dir.path(), &toml);

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let client = reqwest::Client::new();
    let mut load = Vec::new();
    for worker in 0..16u64 {
        let (client, base, acked) = (client.clone(), process.base.clone(), acked.clone());
        load.push(tokio::spawn(async move {
            for i in 0.. {
                let n = worker * 1_000_000 + i;
                let sent = client
                    .post(format!("{base}/in/src"))
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(200)))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 202 => {
                        acked.lock().expect("lock").insert(n);
                    }
                    Ok(response) => panic!("unexpected status {}", response.status()),
                    // The process was killed: stop this client.
                    Err(_) => break,
                }
            }
        }));
    }
    // Let load and deliveries overlap, then kill without warning.
    eventually(
        Duration::from_secs(20),
        "some acknowledged events",
        || async { (acked.lock().expect("lock").len() >= 500).then_some(()) },
    )
    .await;
    process.kill_hard();
    for task in load {
        task.await.expect("load task");
    }
    let acked: HashSet<u64> = acked.lock().expect("lock").clone();
    let delivered_before: usize = receiver.requests().len();
    assert!(
        delivered_before < acked.len() + 200,
        "the kill should interrupt delivery"
    );

    // Restart on the same data directory: everything acknowledged arrives.
    let restarted = Process::spawn(dir.path(), &toml);
    let missing = eventually(
        Duration::from_secs(60),
        "all acked events delivered",
        || async {
            let seen: HashSet<u64> = receiver
                .requests()
                .iter()
                .filter_map(|r| marker(&r.body))
                .collect();
            let missing = acked.difference(&seen).count();
            (missing == 0).then_some(missing)
        },
    )
    .await;
    assert_eq!(missing, 0);
    let total = receiver.requests().len();
    eprintln!(
        "acked {} events; {} requests received ({} extra: duplicates or committed-but-unacknowledged)",
        acked.len(),
        total,
        total.saturating_sub(acked.len())
    );
    restarted.terminate();
    assert!(restarted.wait(Duration::from_secs(20)).success());
}
