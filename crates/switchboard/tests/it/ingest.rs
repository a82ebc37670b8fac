//! The ingest endpoint's contract: 202 with an id after a durable commit, problem+json errors.

use std::time::Duration;

use switchboard_core::RetryPolicy;
use switchboard_store::EventFilter;

use crate::support::*;

async fn problem(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    (status, response.json().await.expect("problem json"))
}

#[tokio::test]
async fn accepted_events_are_stored_with_raw_body_and_headers() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, RetryPolicy::default())).await;
    let raw: &'static [u8] = b"\x00\xffnot json at all\r\n";
    let response = reqwest::Client::new()
        .post(format!("{}/in/src", server.base))
        .header("content-type", "application/octet-stream")
        .header("authorization", "Bearer secret-token")
        .header("x-custom", "kept")
        .body(raw)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 202);
    let id = response.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let event = server
        .store()
        .get_event(&id)
        .await
        .expect("read")
        .expect("event stored before the 202");
    assert_eq!(event.body, raw);
    assert_eq!(event.source, "src");
    assert_eq!(
        event.content_type.as_deref(),
        Some("application/octet-stream")
    );
    let header = |name: &str| {
        event
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-custom"), Some("kept"));
    assert_eq!(
        header("authorization"),
        Some("[redacted]"),
        "secrets are never stored"
    );
    assert_eq!(server.deliveries_of(&id).await.len(), 1);
    let delivered = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].body.as_ref(), raw);
    server.stop().await;
}

#[tokio::test]
async fn unknown_source_is_404_problem() {
    let server = TestServer::start(config_to("http://127.0.0.1:9/", RetryPolicy::default())).await;
    let (status, body) = problem(server.ingest("nope", "{}").await).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "unknown_source");
    assert_eq!(body["status"], 404);
    assert!(body["detail"].as_str().expect("detail").contains("nope"));
    server.stop().await;
}

#[tokio::test]
async fn oversized_body_is_413_problem_and_not_stored() {
    let mut config = config_to("http://127.0.0.1:9/", RetryPolicy::default());
    config.server.max_body_bytes = 1024;
    let server = TestServer::start(config).await;
    let (status, body) = problem(server.ingest("src", vec![b'x'; 1025]).await).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large");
    let ok = server.ingest("src", vec![b'x'; 1024]).await;
    assert_eq!(ok.status(), 202, "exactly the limit is fine");
    let events = server
        .store()
        .list_events(&EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(events.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems() {
    let server = TestServer::start(config_to("http://127.0.0.1:9/", RetryPolicy::default())).await;
    let client = reqwest::Client::new();
    let (status, body) = problem(
        client
            .get(format!("{}/nowhere", server.base))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = problem(
        client
            .get(format!("{}/in/src", server.base))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    server.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, RetryPolicy::default())).await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/readyz"] {
        let response = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200, "{path}");
    }
    let event = server.ingest_ok("src", "{}").await;
    server
        .wait_delivery(&event, "succeeded", |d| {
            d.status == switchboard_core::DeliveryStatus::Succeeded
        })
        .await;
    let text = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    for needle in [
        "switchboard_events_received_total{source=\"src\"}",
        "switchboard_attempts_total{destination=\"dst\",outcome=\"delivered\"}",
        "switchboard_attempt_duration_seconds_bucket{destination=\"dst\"",
        "switchboard_deliveries{status=\"pending\"}",
        "switchboard_ingest_batch_size",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn signed_sources_reject_bad_signatures() {
    use switchboard_core::config::VerifierConfig;
    use switchboard_signatures::standard_webhooks::SigningKey;

    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config.sources[0].verifier = VerifierConfig::StandardWebhooks {
        secrets: vec![SECRET.into()],
        tolerance: Duration::from_secs(300),
    };
    let server = TestServer::start(config).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let body = r#"{"ok":true}"#;
    let signature =
        SigningKey::from_secret(SECRET)
            .expect("key")
            .sign("msg_1", now, body.as_bytes());
    let send = |sig: String, body: &'static str| {
        reqwest::Client::new()
            .post(format!("{}/in/src", server.base))
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(
        send(signature.clone(), body).await.expect("send").status(),
        202
    );
    let (status, problem_body) =
        problem(send(signature, r#"{"ok":false}"#).await.expect("send")).await;
    assert_eq!(status, 401);
    assert_eq!(problem_body["code"], "invalid_signature");
    server.stop().await;
}
