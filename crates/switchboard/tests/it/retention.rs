//! Retention end to end: the background pruner deletes delivered events with their history and
//! old audit entries, and keeps an event whose delivery is still pending.

use std::time::Duration;

use serde_json::json;
use switchboard_core::DeliveryStatus;
use switchboard_core::RetryPolicy;
use switchboard_core::config::{RouteConfig, SourceConfig};

use crate::support::*;

#[tokio::test]
async fn pruner_removes_exactly_what_retention_says() {
    let ok = Receiver::always(200).await;
    let down = Receiver::always(503).await;
    let mut config = config_to(&ok.url, RetryPolicy::default());
    // `slow` goes to a destination that fails and retries in a minute: its event has work.
    config
        .sources
        .push(SourceConfig::new("slow", Default::default()));
    config
        .destinations
        .push(http_destination("stuck", &down.url, schedule_ms(&[60_000])));
    config.routes.push(RouteConfig {
        id: None,
        source: "slow".into(),
        destination: "stuck".into(),
        filter: None,
        transform: None,
        enabled: true,
    });
    config.retention.events = Some(Duration::from_secs(1));
    config.retention.attempts = Some(Duration::from_secs(1));
    config.retention.audit = Some(Duration::from_secs(1));
    config.retention.interval = Duration::from_millis(200);
    let server = TestServer::start(config).await;

    let done = server.ingest_ok("src", r#"{"n":1}"#).await;
    let waiting = server.ingest_ok("slow", r#"{"n":2}"#).await;
    server
        .wait_delivery(&done, "delivered", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    server
        .wait_delivery(&waiting, "first attempt failed", |d| {
            d.status == DeliveryStatus::Pending && d.attempts == 1
        })
        .await;
    server
        .api()
        .post(
            "/v1/destinations",
            &json!({"id": "later", "url": "https://later.example/hook"}),
        )
        .await
        .ok(201);

    eventually(
        Duration::from_secs(20),
        "the delivered event and the audit entry pruned",
        || async {
            let event_gone = server
                .store()
                .get_event(&done)
                .await
                .expect("get")
                .is_none();
            let audit_gone = server
                .store()
                .list_audit(&switchboard_store::AuditFilter {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("audit")
                .is_empty();
            (event_gone && audit_gone).then_some(())
        },
    )
    .await;
    assert!(
        server.deliveries_of(&done).await.is_empty(),
        "deliveries go"
    );
    assert!(
        server
            .store()
            .list_attempts(Some(&done), None)
            .await
            .expect("attempts")
            .is_empty(),
        "attempts go"
    );
    // The event with a pending delivery keeps everything, its attempt record included.
    let kept = server.store().get_event(&waiting).await.expect("get");
    assert!(kept.is_some_and(|e| !e.body.is_empty()));
    assert_eq!(
        server
            .store()
            .list_attempts(Some(&waiting), None)
            .await
            .expect("attempts")
            .len(),
        1
    );
    let metrics = server.api().get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("switchboard_pruned_total{kind=\"events\"}"),
        "{}",
        metrics.text
    );
}
