//! Successful delivery: bytes, headers and signatures as receivers rely on them.

use std::time::Duration;

use switchboard_core::DeliveryStatus;
use switchboard_core::config::{DestinationConfig, RouteConfig};
use switchboard_signatures::standard_webhooks::{self, SigningKey};

use crate::support::*;

#[tokio::test]
async fn delivers_original_bytes_signed_with_standard_webhooks() {
    let receiver = Receiver::always(204).await;
    let server = TestServer::start(config_to(&receiver.url, RetryPolicy::default())).await;
    let body = "{\"note\":\"héllo ✓ 日本\",\"n\":  1}\n";
    let event = server.ingest_ok("src", body).await;

    let requests = receiver.wait_for(1, Duration::from_secs(10)).await;
    let request = &requests[0];
    assert_eq!(
        request.body.as_ref(),
        body.as_bytes(),
        "body bytes unchanged"
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert!(
        request.header("user-agent").starts_with("Switchboard/"),
        "user-agent names Switchboard: {}",
        request.header("user-agent")
    );
    let delivery = server
        .wait_delivery(&event, "delivery succeeded", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(request.header("webhook-id"), delivery.id);
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.last_status, Some(204));

    let key = SigningKey::from_secret(SECRET).expect("secret");
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("ts");
    let headers = standard_webhooks::Headers {
        id: Some(request.header("webhook-id")),
        timestamp: Some(request.header("webhook-timestamp")),
        signature: Some(request.header("webhook-signature")),
    };
    standard_webhooks::verify(&[key], headers, &request.body, timestamp, 300)
        .expect("signature verifies");
    assert!(request.header("webhook-signature").starts_with("v1,"));

    let attempts = server
        .store()
        .list_attempts(Some(&event), None)
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(204));
    assert_eq!(attempts[0].outcome, "delivered");
    server.stop().await;
}

/// The official Standard Webhooks Python SDK verifies what we send. Runs when the SDK is
/// importable; CI installs it and sets `SWITCHBOARD_REQUIRE_PY_SDK=1`, which turns a skip into
/// a failure.
#[tokio::test]
async fn official_python_sdk_verifies_our_signature() {
    let has_sdk = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_sdk {
        assert!(
            std::env::var_os("SWITCHBOARD_REQUIRE_PY_SDK").is_none(),
            "SWITCHBOARD_REQUIRE_PY_SDK is set but the standardwebhooks Python package is missing"
        );
        eprintln!(
            "SKIPPED official_python_sdk_verifies_our_signature: pip install standardwebhooks"
        );
        return;
    }
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, RetryPolicy::default())).await;
    let body = r#"{"id":"evt_123","type":"test.event","data":{"amount":1000}}"#;
    server.ingest_ok("src", body).await;
    let request = receiver
        .wait_for(1, Duration::from_secs(10))
        .await
        .remove(0);
    let input = serde_json::json!({
        "secret": SECRET,
        "body": String::from_utf8(request.body.to_vec()).expect("utf8"),
        "headers": {
            "webhook-id": request.header("webhook-id"),
            "webhook-timestamp": request.header("webhook-timestamp"),
            "webhook-signature": request.header("webhook-signature"),
        }
    });
    let script = "import json,sys\nfrom standardwebhooks.webhooks import Webhook\n\
                  d=json.load(sys.stdin)\nWebhook(d['secret']).verify(d['body'], d['headers'])\nprint('ok')";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write");
    }
    let output = child.wait_with_output().expect("python output");
    assert!(
        output.status.success(),
        "SDK rejected our signature: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}

#[tokio::test]
async fn fans_out_to_every_route_with_distinct_webhook_ids() {
    let a = Receiver::always(200).await;
    let b = Receiver::always(200).await;
    let mut config = config_to(&a.url, RetryPolicy::default());
    config
        .destinations
        .push(http_destination("second", &b.url, RetryPolicy::default()));
    config.routes.push(RouteConfig {
        id: None,
        source: "src".into(),
        destination: "second".into(),
        filter: None,
        transform: None,
        enabled: true,
    });
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", "{}").await;
    let ra = a.wait_for(1, Duration::from_secs(10)).await;
    let rb = b.wait_for(1, Duration::from_secs(10)).await;
    assert_ne!(ra[0].header("webhook-id"), rb[0].header("webhook-id"));
    assert_eq!(server.deliveries_of(&event).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn slow_destination_does_not_delay_another() {
    let slow = Receiver::scripted(|_| Reply::Slow(Duration::from_secs(3), 200)).await;
    let fast = Receiver::always(200).await;
    let mut config = config_to(&slow.url, RetryPolicy::default());
    let DestinationConfig::Http(http) = &mut config.destinations[0] else {
        panic!("an http destination")
    };
    http.max_in_flight = Some(2);
    config
        .destinations
        .push(http_destination("fast", &fast.url, RetryPolicy::default()));
    config.routes.push(RouteConfig {
        id: None,
        source: "src".into(),
        destination: "fast".into(),
        filter: None,
        transform: None,
        enabled: true,
    });
    config.delivery.concurrency = 8;
    let server = TestServer::start(config).await;
    for _ in 0..20 {
        server.ingest_ok("src", "{}").await;
    }
    // All 20 fast deliveries arrive while the slow receiver is still on its first pair.
    fast.wait_for(20, Duration::from_secs(2)).await;
    assert!(
        slow.requests().len() <= 2,
        "slow destination exceeded its in-flight cap: {}",
        slow.requests().len()
    );
    server.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config.security.allow_private_networks = false;
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", "{}").await;
    let delivery = server
        .wait_delivery(&event, "delivery refused", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
    let error = delivery.last_error.unwrap_or_default();
    assert!(
        error.contains("not public") && error.contains("allow_private_networks"),
        "clear SSRF error, got `{error}`"
    );
    assert_eq!(delivery.attempts, 1, "policy refusals are not retried");
    assert!(receiver.requests().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn hostnames_resolving_to_private_addresses_are_refused() {
    let receiver = Receiver::always(200).await;
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let mut config = config_to(&url, RetryPolicy::default());
    config.security.allow_private_networks = false;
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", "{}").await;
    let delivery = server
        .wait_delivery(&event, "delivery refused", |d| {
            d.status == DeliveryStatus::Failed
        })
        .await;
    assert!(
        delivery
            .last_error
            .unwrap_or_default()
            .contains("not public"),
        "DNS answers are checked too"
    );
    assert!(receiver.requests().is_empty());
    server.stop().await;
}

use switchboard_core::RetryPolicy;
