//! Notification destinations against local stand-ins: Slack (incoming webhook and
//! `chat.postMessage`, whose `ok: false` is a failure and whose 429 + Retry-After is honoured)
//! and Microsoft Teams (Adaptive Card).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use switchboard_core::DeliveryStatus;
use switchboard_core::config::{
    DestinationConfig, RouteConfig, SlackDestination, TeamsDestination,
};

use crate::support::{Receiver, TestServer, config_to, schedule_ms};

/// A stand-in for Slack's Web API: records `chat.postMessage` calls and answers from a script.
#[derive(Clone)]
struct FakeSlack {
    base: String,
    calls: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl FakeSlack {
    async fn start(
        answer: impl Fn(usize, &Value) -> (u16, Value, Option<&'static str>) + Send + Sync + 'static,
    ) -> Self {
        let calls: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
        let recorded = calls.clone();
        let answer = Arc::new(answer);
        let app = axum::Router::new().route(
            "/api/chat.postMessage",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let recorded = recorded.clone();
                let answer = answer.clone();
                async move {
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let n = {
                        let mut calls = recorded.lock().expect("lock");
                        calls.push((headers, value.clone()));
                        calls.len() - 1
                    };
                    let (status, body, retry_after) = answer(n, &value);
                    let mut response = axum::response::IntoResponse::into_response((
                        StatusCode::from_u16(status).expect("status"),
                        axum::Json(body),
                    ));
                    if let Some(seconds) = retry_after {
                        response
                            .headers_mut()
                            .insert("retry-after", seconds.parse().expect("header"));
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/api", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base, calls }
    }

    fn calls(&self) -> Vec<(HeaderMap, Value)> {
        self.calls.lock().expect("lock").clone()
    }
}

fn route_to(
    config: &mut switchboard_core::Config,
    destination: DestinationConfig,
    transform: &str,
) {
    config.destinations = vec![destination];
    config.routes = vec![RouteConfig {
        id: Some("notify".into()),
        source: "src".into(),
        destination: "notify".into(),
        filter: None,
        transform: Some(transform.into()),
        enabled: true,
    }];
}

fn slack(
    webhook_url: Option<String>,
    api_base: Option<String>,
    retry: switchboard_core::RetryPolicy,
) -> DestinationConfig {
    let api = api_base.is_some();
    DestinationConfig::Slack(SlackDestination {
        id: "notify".into(),
        webhook_url,
        token: api.then(|| "xoxb-test-token".into()),
        channel: api.then(|| "C0DEPLOYS".into()),
        api_base,
        timeout: Duration::from_secs(5),
        retry,
        max_in_flight: None,
        rate_limit: None,
        ordered: false,
        enabled: true,
    })
}

/// An incoming webhook gets the transform's Block Kit message.
#[tokio::test]
async fn slack_incoming_webhook_gets_the_message() {
    let hook = Receiver::always(200).await;
    let mut config = config_to(&hook.url, schedule_ms(&[50]));
    route_to(
        &mut config,
        slack(Some(hook.url.clone()), None, schedule_ms(&[50])),
        r#"{text: "PR #\(.body.number) opened", blocks: [{type: "section", text: {type: "mrkdwn", text: "*\(.body.title)*"}}]}"#,
    );
    let server = TestServer::start(config).await;
    let event = server
        .ingest_ok("src", r#"{"number": 12, "title": "Add retries"}"#)
        .await;
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    let message: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(message["text"], "PR #12 opened");
    assert_eq!(message["blocks"][0]["text"]["text"], "*Add retries*");
    let delivery = server
        .wait_delivery(&event, "delivered", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivery.id))
        .await
        .expect("attempts");
    assert!(
        !attempts[0].request_url.contains("/hook"),
        "the webhook's secret path is not recorded: {}",
        attempts[0].request_url
    );
    server.stop().await;
}

/// `chat.postMessage`: the bot token and channel are sent; `ok: false` fails the delivery
/// (permanently for a bad channel); `429` with `Retry-After` is retried after the wait.
#[tokio::test]
async fn slack_api_ok_false_fails_and_rate_limits_are_honoured() {
    let fake = FakeSlack::start(|n, body| {
        if body["text"] == "to a missing channel" {
            (
                200,
                json!({"ok": false, "error": "channel_not_found"}),
                None,
            )
        } else if n == 0 {
            (429, json!({"ok": false, "error": "ratelimited"}), Some("1"))
        } else {
            (200, json!({"ok": true, "ts": "1.2"}), None)
        }
    })
    .await;
    let mut config = config_to("http://127.0.0.1:9/unused", schedule_ms(&[50, 50, 50]));
    route_to(
        &mut config,
        slack(None, Some(fake.base.clone()), schedule_ms(&[50, 50, 50])),
        r#"{text: .body.text}"#,
    );
    let server = TestServer::start(config).await;
    let limited = server.ingest_ok("src", r#"{"text": "deploy done"}"#).await;
    let delivered = server
        .wait_delivery(&limited, "delivered after the rate limit", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    assert_eq!(delivered.attempts, 2);
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    let waited = attempts[1].started_at - attempts[0].started_at;
    assert!(waited >= 900, "Retry-After: 1 was honoured ({waited} ms)");
    let calls = fake.calls();
    assert_eq!(
        calls[0]
            .0
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer xoxb-test-token")
    );
    assert_eq!(
        calls[1].1,
        json!({"text": "deploy done", "channel": "C0DEPLOYS"})
    );

    let missing = server
        .ingest_ok("src", r#"{"text": "to a missing channel"}"#)
        .await;
    let failed = server
        .wait_delivery(&missing, "failed", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(failed.attempts, 1, "a permanent Slack error is not retried");
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("channel_not_found"),
        "{:?}",
        failed.last_error
    );
    server.stop().await;
}

/// Teams receives an Adaptive Card built from the message.
#[tokio::test]
async fn teams_gets_an_adaptive_card() {
    let hook = Receiver::always(202).await;
    let mut config = config_to(&hook.url, schedule_ms(&[50]));
    route_to(
        &mut config,
        DestinationConfig::Teams(TeamsDestination {
            id: "notify".into(),
            webhook_url: hook.url.clone(),
            timeout: Duration::from_secs(5),
            retry: schedule_ms(&[50]),
            max_in_flight: None,
            rate_limit: None,
            ordered: false,
            enabled: true,
        }),
        r#"{title: "Payment failed", text: "Customer \(.body.customer) owes \(.body.amount)"}"#,
    );
    let server = TestServer::start(config).await;
    server
        .ingest_ok("src", r#"{"customer": "cus_1", "amount": 990}"#)
        .await;
    let got = hook.wait_for(1, Duration::from_secs(10)).await;
    let message: Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(message["type"], "message");
    let card = &message["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["body"][0]["text"], "Payment failed");
    assert_eq!(
        card["content"]["body"][1]["text"],
        "Customer cus_1 owes 990"
    );
    server.stop().await;
}

/// A connector's URL naming a private IP address literally (which no resolver sees) is held to
/// the network policy like a webhook URL: refused, permanently, with the reason.
#[tokio::test]
async fn connector_urls_with_private_ip_literals_are_refused() {
    let hook = Receiver::always(200).await;
    let mut config = config_to(&hook.url, schedule_ms(&[50]));
    config.security.allow_private_networks = false;
    route_to(
        &mut config,
        slack(Some(hook.url.clone()), None, schedule_ms(&[50])),
        r#"{text: "hello"}"#,
    );
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", "{}").await;
    let failed = server
        .wait_delivery(&event, "failed", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(failed.attempts, 1, "not retried");
    let error = failed.last_error.unwrap_or_default();
    assert!(error.contains("refused to connect to 127.0.0.1"), "{error}");
    assert!(hook.requests().is_empty());
    server.stop().await;
}
