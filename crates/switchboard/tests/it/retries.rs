//! Retries, Retry-After, permanent failures, dead letters and replay.

use std::time::Duration;

use switchboard_core::DeliveryStatus;
use switchboard_core::config::DestinationConfig;
use switchboard_store::ReplaySelector;

use crate::support::*;

#[tokio::test]
async fn retries_after_a_server_error_then_succeeds_with_a_stable_webhook_id() {
    let receiver = Receiver::scripted(|n| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[300]))).await;
    let event = server.ingest_ok("src", r#"{"retry":true}"#).await;
    let requests = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        requests[0].header("webhook-id"),
        requests[1].header("webhook-id")
    );
    let gap = requests[1].at - requests[0].at;
    // 300 ms ± 20% jitter.
    assert!(
        gap >= Duration::from_millis(235),
        "retry waited its schedule: {gap:?}"
    );
    let delivery = server
        .wait_delivery(&event, "succeeded", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(delivery.attempts, 2);
    let attempts = server
        .store()
        .list_attempts(Some(&event), None)
        .await
        .expect("attempts");
    let outcomes: Vec<_> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.status_code))
        .collect();
    assert_eq!(
        outcomes,
        vec![(1, "retryable", Some(500)), (2, "delivered", Some(200))]
    );
    server.stop().await;
}

#[tokio::test]
async fn honours_retry_after_seconds() {
    let receiver = Receiver::scripted(|n| {
        if n == 0 {
            Reply::WithHeaders(429, vec![("retry-after", "2".into())])
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let event = server.ingest_ok("src", "{}").await;
    let requests = receiver.wait_for(2, Duration::from_secs(10)).await;
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 must hold the retry back, waited {gap:?}"
    );
    server
        .wait_delivery(&event, "succeeded", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    let attempts = server
        .store()
        .list_attempts(Some(&event), None)
        .await
        .expect("attempts");
    assert!(
        attempts[0]
            .response_headers
            .iter()
            .any(|(k, v)| k == "retry-after" && v == "2"),
        "response headers are kept per attempt"
    );
    assert_eq!(attempts[0].response_body, b"scripted");
    server.stop().await;
}

#[tokio::test]
async fn honours_retry_after_http_date() {
    let receiver = Receiver::scripted(|n| {
        if n == 0 {
            let when = std::time::SystemTime::now() + Duration::from_secs(3);
            Reply::WithHeaders(503, vec![("retry-after", httpdate_fmt(when))])
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    server.ingest_ok("src", "{}").await;
    let requests = receiver.wait_for(2, Duration::from_secs(10)).await;
    let gap = requests[1].at - requests[0].at;
    // HTTP dates have one-second resolution.
    assert!(gap >= Duration::from_millis(1900), "waited {gap:?}");
    server.stop().await;
}

fn httpdate_fmt(t: std::time::SystemTime) -> String {
    // RFC 7231 IMF-fixdate, without pulling a date crate into the tests.
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{weekday}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        months[(month - 1) as usize]
    )
}

#[tokio::test]
async fn client_errors_fail_at_once() {
    let receiver = Receiver::always(400).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50, 50, 50]))).await;
    let event = server.ingest_ok("src", "{}").await;
    let delivery = server
        .wait_delivery(&event, "failed", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.last_status, Some(400));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1, "no retry after a 400");
    server.stop().await;
}

#[tokio::test]
async fn timeouts_are_retried() {
    let receiver = Receiver::scripted(|n| {
        if n == 0 {
            Reply::Slow(Duration::from_secs(3), 200)
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let mut config = config_to(&receiver.url, schedule_ms(&[100]));
    let DestinationConfig::Http(http) = &mut config.destinations[0] else {
        panic!("an http destination")
    };
    http.timeout = Duration::from_millis(500);
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", "{}").await;
    let delivery = server
        .wait_delivery(&event, "succeeded", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(delivery.attempts, 2);
    let attempts = server
        .store()
        .list_attempts(Some(&event), None)
        .await
        .expect("attempts");
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("timed out"),
        "{:?}",
        attempts[0].error
    );
    server.stop().await;
}

#[tokio::test]
async fn connection_errors_are_retried_until_exhausted() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let server = TestServer::start(config_to(&url, schedule_ms(&[50, 50]))).await;
    let event = server.ingest_ok("src", "{}").await;
    let delivery = server
        .wait_delivery(&event, "failed", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(delivery.attempts, 3, "1 attempt + 2 retries");
    assert!(
        delivery
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("connection"),
        "{:?}",
        delivery.last_error
    );
    server.stop().await;
}

#[tokio::test]
async fn exhausted_delivery_is_dead_lettered_then_replayed_by_the_cli() {
    // Fails three times (the whole schedule), then the receiver recovers.
    let receiver = Receiver::scripted(|n| Reply::Status(if n < 3 { 503 } else { 200 })).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50, 50]))).await;
    let event = server.ingest_ok("src", r#"{"replay":1}"#).await;
    let failed = server
        .wait_delivery(&event, "dead-lettered", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
    assert_eq!(failed.attempts, 3);
    assert_eq!(failed.last_status, Some(503));

    // The CLI works on the live server's data directory.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["replay", "--delivery", &failed.id, "--data-dir"])
        .arg(server.dir.path())
        .output()
        .expect("run switchboard replay");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("queued 1 delivery"));

    let delivery = server
        .wait_delivery(&event, "succeeded after replay", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(delivery.attempts, 4);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 4);
    assert!(
        requests.iter().all(|r| r.header("webhook-id") == failed.id),
        "the webhook-id is stable across retries and replays"
    );
    server.stop().await;
}

#[tokio::test]
async fn replay_by_event_and_by_destination_since() {
    let receiver = Receiver::scripted(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let first = server.ingest_ok("src", "{}").await;
    let second = server.ingest_ok("src", "{}").await;
    for event in [&first, &second] {
        server
            .wait_delivery(event, "failed", |d| d.status == DeliveryStatus::Failed)
            .await;
    }
    let store = server.store();
    let none = store
        .replay(
            &ReplaySelector::FailedForDestination {
                destination: "dst".into(),
                since: switchboard_core::time::now_millis() + 60_000,
            },
            switchboard_core::time::now_millis(),
        )
        .await
        .expect("replay");
    assert_eq!(none, 0, "nothing failed in the future");
    let queued = store
        .replay(
            &ReplaySelector::FailedForDestination {
                destination: "dst".into(),
                since: 0,
            },
            switchboard_core::time::now_millis(),
        )
        .await
        .expect("replay");
    assert_eq!(queued, 2);
    for event in [&first, &second] {
        server
            .wait_delivery(event, "succeeded", |d| {
                d.status == DeliveryStatus::Succeeded
            })
            .await;
    }
    let again = store
        .replay(
            &ReplaySelector::Event(first.clone()),
            switchboard_core::time::now_millis(),
        )
        .await
        .expect("replay");
    assert_eq!(again, 1, "succeeded deliveries can be re-sent too");
    receiver.wait_for(5, Duration::from_secs(10)).await;
    server.stop().await;
}
