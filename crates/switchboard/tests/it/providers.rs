//! Provider sources end to end: verification, duplicates, handshakes, limits, the rejection log.

use std::time::Duration;

use switchboard_core::config::{RateLimit, VerifierConfig};
use switchboard_core::{DeliveryStatus, RetryPolicy};
use switchboard_signatures::{github, slack};

use crate::support::*;

fn github_config(url: &str) -> switchboard_core::Config {
    let mut config = config_to(url, RetryPolicy::default());
    config.sources[0].verifier = VerifierConfig::Github {
        secrets: vec!["s3cret".into(), "old-s3cret".into()],
    };
    config
}

async fn post(
    server: &TestServer,
    headers: &[(&str, &str)],
    body: &'static str,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/in/src", server.base))
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.expect("send")
}

#[tokio::test]
async fn github_events_are_typed_delivered_once_and_duplicates_acknowledged() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(github_config(&receiver.url)).await;
    let body = r#"{"action":"opened","pull_request":{"number":7}}"#;
    let signature = github::sign(b"old-s3cret", body.as_bytes());
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "pull_request"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-hub-signature-256", signature.as_str()),
    ];
    let first = post(&server, &headers, body).await;
    assert_eq!(first.status(), 202);
    let id = first.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // GitHub redelivers with the same delivery id: acknowledged, not stored again.
    let again = post(&server, &headers, body).await;
    assert_eq!(again.status(), 200);
    let again: serde_json::Value = again.json().await.expect("json");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["duplicate"], true);

    server
        .wait_delivery(&id, "delivered", |d| d.status == DeliveryStatus::Succeeded)
        .await;
    let event = server
        .store()
        .get_event(&id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(event.event_type.as_deref(), Some("pull_request.opened"));
    assert_eq!(
        event.dedup_key.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 1, "the duplicate was not routed");
    server.stop().await;
}

#[tokio::test]
async fn bad_signatures_are_401_and_kept_in_the_rejection_log_without_secrets() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(github_config(&receiver.url)).await;
    let body = r#"{"action":"opened"}"#;
    let forged = github::sign(b"guess", body.as_bytes());
    let response = post(
        &server,
        &[
            ("x-hub-signature-256", forged.as_str()),
            ("authorization", "Bearer do-not-store"),
        ],
        body,
    )
    .await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: serde_json::Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "invalid_signature");
    assert!(
        !problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&github::sign(b"s3cret", body.as_bytes())),
        "the expected signature is never revealed"
    );
    let missing = post(&server, &[], body).await;
    let problem: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(problem["code"], "missing_signature");

    let log = eventually(Duration::from_secs(5), "rejections recorded", || async {
        let log = server
            .store()
            .list_rejections("src", 10)
            .await
            .expect("list");
        (log.len() == 2).then_some(log)
    })
    .await;
    assert_eq!(log[0].code, "missing_signature");
    assert_eq!(log[1].code, "invalid_signature");
    assert!(
        log[1]
            .headers
            .iter()
            .any(|(k, v)| k == "authorization" && v == "[redacted]")
    );
    assert!(receiver.requests().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn slack_url_verification_is_answered_and_not_stored() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config.sources[0].verifier = VerifierConfig::Slack {
        secrets: vec!["8f742231b10e8888abcd99yyyzzz85a5".into()],
        tolerance: Duration::from_secs(300),
    };
    let server = TestServer::start(config).await;
    let body = r#"{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        .to_string();
    let signature = slack::sign(b"8f742231b10e8888abcd99yyyzzz85a5", &ts, body.as_bytes());
    let response = post(
        &server,
        &[
            ("content-type", "application/json"),
            ("x-slack-request-timestamp", ts.as_str()),
            ("x-slack-signature", signature.as_str()),
        ],
        body,
    )
    .await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let events = server
        .store()
        .list_events(&switchboard_store::EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(events.is_empty(), "handshakes are not events");
    server.stop().await;
}

#[tokio::test]
async fn per_source_rate_limit_answers_429_with_retry_after() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config.sources[0].rate_limit = Some(RateLimit {
        per_second: 1,
        burst: Some(3),
    });
    let server = TestServer::start(config).await;
    // The burst of 3 is accepted, then requests are refused. (On a loaded machine a request may
    // take long enough for the bucket to refill one more: count instead of timing.)
    let mut accepted = 0;
    let limited = loop {
        let response = server.ingest("src", "{}").await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 202);
        accepted += 1;
        assert!(accepted <= 20, "never rate limited");
    };
    assert!(accepted >= 3, "the burst is accepted: {accepted}");
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after seconds");
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let problem: serde_json::Value = limited.json().await.expect("json");
    assert_eq!(problem["code"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(server.ingest("src", "{}").await.status(), 202, "refilled");
    server.stop().await;
}

#[tokio::test]
async fn per_source_body_limit() {
    let mut config = config_to("http://127.0.0.1:9/", RetryPolicy::default());
    config.server.max_body_bytes = 100;
    config.sources[0].max_body_bytes = Some(2000);
    config
        .sources
        .push(switchboard_core::config::SourceConfig::new(
            "small",
            VerifierConfig::None,
        ));
    let server = TestServer::start(config).await;
    assert_eq!(server.ingest("src", vec![b'x'; 2000]).await.status(), 202);
    assert_eq!(server.ingest("src", vec![b'x'; 2001]).await.status(), 413);
    assert_eq!(server.ingest("small", vec![b'x'; 100]).await.status(), 202);
    assert_eq!(server.ingest("small", vec![b'x'; 101]).await.status(), 413);
    server.stop().await;
}

#[tokio::test]
async fn api_key_in_a_custom_header_is_never_stored() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config.sources[0].verifier = VerifierConfig::ApiKey {
        keys: vec!["gitlab-token-value".into()],
        header: Some("X-Gitlab-Token".into()),
        query: None,
    };
    let server = TestServer::start(config).await;
    let response = post(
        &server,
        &[("x-gitlab-token", "gitlab-token-value")],
        r#"{"object_kind":"push"}"#,
    )
    .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let event = server
        .store()
        .get_event(&id)
        .await
        .expect("get")
        .expect("stored");
    assert!(
        event
            .headers
            .iter()
            .any(|(k, v)| k == "x-gitlab-token" && v == "[redacted]"),
        "{:?}",
        event.headers
    );
    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert!(delivered[0].headers.get("x-gitlab-token").is_none());
    server.stop().await;
}

#[tokio::test]
async fn slack_slash_commands_are_stored_and_acknowledged_with_an_empty_200() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config.sources[0].verifier = VerifierConfig::Slack {
        secrets: vec!["slack-signing-secret".into()],
        tolerance: Duration::from_secs(300),
    };
    let server = TestServer::start(config).await;
    let body = "command=%2Fdeploy&text=prod&user_id=U1&trigger_id=T1";
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        .to_string();
    let signature = slack::sign(b"slack-signing-secret", &ts, body.as_bytes());
    let response = post(
        &server,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-slack-request-timestamp", ts.as_str()),
            ("x-slack-signature", signature.as_str()),
        ],
        body,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.expect("body").is_empty());
    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].body.as_ref(), body.as_bytes());
    let events = server
        .store()
        .list_events(&switchboard_store::EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        events[0].event_type.as_deref(),
        Some("slash_command/deploy")
    );
    server.stop().await;
}

#[tokio::test]
async fn rejected_requests_are_listed_through_the_api() {
    let receiver = Receiver::always(200).await;
    let mut config = github_config(&receiver.url);
    config.server.admin_token = Some("rejections-admin-token".into());
    let server = TestServer::start(config).await;
    let forged = github::sign(b"guess", b"{}");
    let response = post(&server, &[("x-hub-signature-256", forged.as_str())], "{}").await;
    assert_eq!(response.status(), 401);
    let client = reqwest::Client::new();
    let listed: serde_json::Value =
        eventually(Duration::from_secs(5), "rejection listed", || async {
            let value: serde_json::Value = client
                .get(format!("{}/v1/sources/src/rejections", server.base))
                .bearer_auth("rejections-admin-token")
                .send()
                .await
                .expect("send")
                .json()
                .await
                .expect("json");
            (value.as_array().is_some_and(|a| !a.is_empty())).then_some(value)
        })
        .await;
    assert_eq!(listed[0]["code"], "invalid_signature");
    assert_eq!(listed[0]["body_bytes"], 2);
    let missing = client
        .get(format!("{}/v1/sources/nope/rejections", server.base))
        .bearer_auth("rejections-admin-token")
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
    server.stop().await;
}
