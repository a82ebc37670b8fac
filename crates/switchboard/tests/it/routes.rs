//! Routes that think: jq filters and transforms, evaluated at delivery time; filtered events
//! stay visible; bad programs are refused when the route is saved; dry runs.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::DeliveryStatus;
use switchboard_core::config::RouteConfig;

use crate::support::{Receiver, TestServer, config_to, schedule_ms};

fn with_programs(config: &mut switchboard_core::Config, filter: &str, transform: Option<&str>) {
    let route: &mut RouteConfig = &mut config.routes[0];
    route.filter = Some(filter.into());
    route.transform = transform.map(str::to_owned);
}

/// A matching event is delivered as the transform's output (and signed as such); a
/// non-matching one is recorded as filtered, sends nothing, and is listed as unrouted.
#[tokio::test]
async fn filters_select_and_transforms_reshape() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[50]));
    with_programs(
        &mut config,
        r#".body.action == "opened""#,
        Some(r#"{text: "PR #\(.body.number) opened by \(.body.sender.login)", source: .source}"#),
    );
    let server = TestServer::start(config).await;
    let opened = server
        .ingest_ok(
            "src",
            r#"{"action":"opened","number":7,"sender":{"login":"ada"}}"#,
        )
        .await;
    let closed = server
        .ingest_ok(
            "src",
            r#"{"action":"closed","number":8,"sender":{"login":"bob"}}"#,
        )
        .await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&got[0].body).expect("json"),
        json!({"text": "PR #7 opened by ada", "source": "src"})
    );
    assert_eq!(got[0].header("content-type"), "application/json");
    server
        .wait_delivery(&opened, "delivered", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    let filtered = server
        .wait_delivery(&closed, "filtered", |d| {
            d.status == DeliveryStatus::Filtered
        })
        .await;
    let attempts = server
        .store()
        .list_attempts(None, Some(&filtered.id))
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "filtered");
    assert!(
        attempts[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("did not match")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.requests().len(),
        1,
        "nothing sent for the filtered event"
    );

    let api = server.api();
    let unrouted = api.get("/v1/events?routed=false").await;
    let ids: Vec<&str> = unrouted.ok(200)["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, vec![closed.as_str()]);

    // Dry runs: nothing is sent, the answer says what would be.
    let test = api
        .post("/v1/routes/src-dst/test", &json!({"event_id": opened}))
        .await;
    let test = test.ok(200);
    assert_eq!(test["matched"], true);
    assert_eq!(test["body"]["text"], "PR #7 opened by ada");
    assert_eq!(test["request"]["method"], "POST");
    assert_eq!(test["request"]["url"], receiver.url.as_str());
    let test = api
        .post("/v1/routes/src-dst/test", &json!({"event_id": closed}))
        .await;
    assert_eq!(test.ok(200)["matched"], false);
    assert!(test.body["request"].is_null());
    assert_eq!(receiver.requests().len(), 1);
    server.stop().await;
}

/// A filter that fails at run time fails the delivery at once with the jq error (no retries).
#[tokio::test]
async fn a_failing_filter_fails_the_delivery_without_retries() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[50, 50, 50]));
    with_programs(&mut config, r#".body.items | map(.price) | add > 10"#, None);
    let server = TestServer::start(config).await;
    let event = server.ingest_ok("src", r#"{"items": "not a list"}"#).await;
    let failed = server
        .wait_delivery(&event, "failed", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(failed.attempts, 1, "not retried");
    let error = failed.last_error.unwrap_or_default();
    assert!(error.contains("route filter failed"), "{error}");
    assert!(receiver.requests().is_empty());
    server.stop().await;
}

/// A route whose jq does not compile is refused when it is saved, with the position.
#[tokio::test]
async fn bad_programs_are_refused_with_their_position() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[50]))).await;
    let api = server.api();
    let bad = api
        .post(
            "/v1/routes",
            &json!({"id": "r2", "source": "src", "destination": "dst", "filter": ".body | frobnicate"}),
        )
        .await;
    bad.problem(422, "validation_failed");
    assert_eq!(bad.body["errors"][0]["field"], "filter");
    let detail = bad.body["detail"].as_str().expect("detail");
    assert!(detail.contains("line 1, column"), "{detail}");
    let bad = api
        .post(
            "/v1/routes",
            &json!({"id": "r3", "source": "src", "destination": "dst", "transform": "{a: "}),
        )
        .await;
    bad.problem(422, "validation_failed");
    assert_eq!(bad.body["errors"][0]["field"], "transform");
    let good = api
        .post(
            "/v1/routes",
            &json!({"id": "r4", "source": "src", "destination": "dst", "filter": ".type == null"}),
        )
        .await;
    assert_eq!(good.ok(201)["filter"], ".type == null");
    server.stop().await;
}

/// A destination's URL and headers may carry `{{ jq }}` placeholders, rendered per delivery
/// from the event; the attempt record and the dry run show the rendered request; a template
/// that fails at run time fails the delivery without retries; a bad one is refused on save.
#[tokio::test]
async fn destination_urls_and_headers_are_templated_from_the_event() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(
        &format!(
            "{}/{{{{ .body.repo | @uri }}}}/{{{{ .type // \"untyped\" }}}}",
            receiver.url
        ),
        schedule_ms(&[50]),
    );
    if let switchboard_core::config::DestinationConfig::Http(http) = &mut config.destinations[0] {
        http.headers
            .insert("x-repo-owner".into(), "{{ .body.owner.login }}".into());
        http.headers.insert("x-static".into(), "kept".into());
    }
    let server = TestServer::start(config).await;
    let event = server
        .ingest_ok("src", r#"{"repo": "acme/app", "owner": {"login": "ada"}}"#)
        .await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].path, "/hook/acme%2Fapp/untyped");
    assert_eq!(got[0].header("x-repo-owner"), "ada");
    assert_eq!(got[0].header("x-static"), "kept");
    let delivered = server
        .wait_delivery(&event, "delivered", |d| {
            d.status == DeliveryStatus::Succeeded
        })
        .await;
    let attempts = server
        .store()
        .list_attempts(None, Some(&delivered.id))
        .await
        .expect("attempts");
    assert_eq!(
        attempts[0].request_url,
        format!("{}/acme%2Fapp/untyped", receiver.url)
    );

    let api = server.api();
    let test = api
        .post("/v1/routes/src-dst/test", &json!({"event_id": event}))
        .await;
    let test = test.ok(200);
    assert_eq!(
        test["request"]["url"],
        format!("{}/acme%2Fapp/untyped", receiver.url)
    );
    assert_eq!(test["request"]["headers"]["x-repo-owner"], "ada");

    // A placeholder that errors at run time fails that delivery at once.
    let broken = server
        .ingest_ok("src", r#"{"repo": "r", "owner": "not an object"}"#)
        .await;
    let failed = server
        .wait_delivery(&broken, "failed", |d| d.status == DeliveryStatus::Failed)
        .await;
    assert_eq!(failed.attempts, 1, "not retried");
    let error = failed.last_error.unwrap_or_default();
    assert!(error.contains("template"), "{error}");

    // A placeholder that does not compile is refused when the destination is saved.
    let refused = api
        .post(
            "/v1/destinations",
            &json!({"id": "bad", "url": "https://example.com/{{ .body | }}"}),
        )
        .await;
    let detail = refused.body.to_string();
    assert!(refused.status >= 400 && refused.status < 500, "{detail}");
    assert!(detail.contains("placeholder"), "{detail}");
    server.stop().await;
}
