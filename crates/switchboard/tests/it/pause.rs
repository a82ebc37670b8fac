//! Pausing and editing resources through the API: `enabled` on sources, destinations and routes
//! (what a pause holds and what it refuses), and `PATCH` as a JSON merge patch that keeps
//! secrets shown redacted.

use std::time::Duration;

use serde_json::json;
use switchboard_core::DeliveryStatus;
use switchboard_signatures::github;

use crate::support::*;

/// A signed GitHub delivery to `/in/{source}`.
async fn github_post(server: &TestServer, source: &str, secret: &[u8], body: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/in/{source}", server.base))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", uuid_like())
        .header("x-hub-signature-256", github::sign(secret, body.as_bytes()))
        .body(body.to_owned())
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

fn uuid_like() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    now ^ (u128::from(n) << 64)
}

#[tokio::test]
async fn a_disabled_webhook_source_answers_503_and_patches_keep_its_secret() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let api = server.api();
    api.post(
        "/v1/sources",
        &json!({"id": "gh", "verifier": {"kind": "github", "secrets": ["first-s3cret"]}}),
    )
    .await
    .ok(201);
    api.post("/v1/routes", &json!({"source": "gh", "destination": "dst"}))
        .await
        .ok(201);
    assert_eq!(github_post(&server, "gh", b"first-s3cret", "{}").await, 202);

    let paused = api
        .patch("/v1/sources/gh", &json!({"enabled": false}))
        .await;
    let body = paused.ok(200);
    assert_eq!(body["enabled"], false);
    assert_eq!(body["verifier"]["secrets"], json!(["********"]));
    let refused = reqwest::Client::new()
        .post(format!("{}/in/gh", server.base))
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "300");
    let problem: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(problem["code"], "source_disabled");
    // Nothing was stored while paused.
    let events = api.get("/v1/events?source=gh").await;
    assert_eq!(events.ok(200)["items"].as_array().map(Vec::len), Some(1));

    // A patch of another field keeps the secret; so does a PUT of the redacted view.
    let patched = api
        .patch(
            "/v1/sources/gh",
            &json!({"enabled": true, "max_body_bytes": 4096}),
        )
        .await;
    assert_eq!(patched.ok(200)["max_body_bytes"], 4096);
    assert_eq!(github_post(&server, "gh", b"first-s3cret", "{}").await, 202);
    let view = api.get("/v1/sources/gh").await.ok(200).clone();
    api.put(
        "/v1/sources/gh",
        &json!({"id": "gh", "verifier": view["verifier"], "max_body_bytes": 4096}),
    )
    .await
    .ok(200);
    assert_eq!(github_post(&server, "gh", b"first-s3cret", "{}").await, 202);
    // Rotation by patch: the new secret first, the old one kept by its marker.
    api.patch(
        "/v1/sources/gh",
        &json!({"verifier": {"secrets": ["second-s3cret", "********"]}}),
    )
    .await
    .ok(200);
    assert_eq!(
        github_post(&server, "gh", b"second-s3cret", "{}").await,
        202
    );
    assert_eq!(github_post(&server, "gh", b"first-s3cret", "{}").await, 202);
    assert_eq!(github_post(&server, "gh", b"wrong", "{}").await, 401);
    // The body limit set by the patch applies.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    assert_eq!(
        github_post(&server, "gh", b"second-s3cret", &big).await,
        413
    );

    // Bad patches are problems naming the field; unknown ids are 404; config sources are
    // read-only here.
    api.patch("/v1/sources/gh", &json!({"max_body_bytes": "lots"}))
        .await
        .problem(422, "validation_failed");
    api.patch("/v1/sources/gh", &json!({"colour": "red"}))
        .await
        .problem(422, "validation_failed");
    api.patch("/v1/sources/gh", &json!([1]))
        .await
        .problem(422, "validation_failed");
    api.patch("/v1/sources/nope", &json!({"enabled": false}))
        .await
        .problem(404, "not_found");
    api.patch("/v1/sources/src", &json!({"enabled": false}))
        .await
        .problem(409, "managed_by_config");
    server.stop().await;
}

#[tokio::test]
async fn a_disabled_destination_holds_its_deliveries_until_enabled() {
    let receiver = Receiver::always(200).await;
    let held = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let api = server.api();
    let created = api
        .post(
            "/v1/destinations",
            &json!({"id": "held", "url": held.url, "headers": {"x-team": "billing"}}),
        )
        .await;
    created.ok(201);
    api.post(
        "/v1/routes",
        &json!({"source": "src", "destination": "held"}),
    )
    .await
    .ok(201);
    let paused = api
        .patch("/v1/destinations/held", &json!({"enabled": false}))
        .await;
    assert_eq!(paused.ok(200)["enabled"], false);

    let mut events = Vec::new();
    for n in 0..3 {
        events.push(server.ingest_ok("src", format!(r#"{{"n":{n}}}"#)).await);
    }
    // The other destination gets them at once; the paused one gets nothing meanwhile.
    receiver.wait_for(3, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        held.requests().is_empty(),
        "a paused destination sends nothing"
    );
    for event in &events {
        let pending = server
            .deliveries_of(event)
            .await
            .into_iter()
            .filter(|d| d.destination == "held")
            .all(|d| d.status == DeliveryStatus::Pending);
        assert!(pending, "held deliveries stay pending");
    }

    // Enabled again (with a patch that also changes its timeout), the held deliveries go out,
    // signed with the secret it had.
    let secret = api.get("/v1/destinations/held/secret").await;
    let secret = secret.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let resumed = api
        .patch(
            "/v1/destinations/held",
            &json!({"enabled": true, "timeout": "3s", "secret": "********"}),
        )
        .await;
    let body = resumed.ok(200);
    assert_eq!(
        (body["enabled"].clone(), body["timeout"].clone()),
        (json!(true), json!("3s"))
    );
    assert_eq!(body["headers"], json!({"x-team": "billing"}));
    let requests = held.wait_for(3, Duration::from_secs(15)).await;
    let key =
        switchboard_signatures::standard_webhooks::SigningKey::from_secret(&secret).expect("whsec");
    for request in &requests {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let id = header("webhook-id");
        let timestamp: i64 = header("webhook-timestamp").parse().expect("timestamp");
        let expected = key.sign(&id, timestamp, &request.body);
        assert!(
            header("webhook-signature").contains(&expected),
            "signed with the kept secret"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_disabled_route_creates_no_deliveries_and_patches_merge() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let api = server.api();
    let other = Receiver::always(200).await;
    api.post(
        "/v1/destinations",
        &json!({"id": "other", "url": other.url}),
    )
    .await
    .ok(201);
    api.post(
        "/v1/routes",
        &json!({"id": "copy", "source": "src", "destination": "other", "filter": ".body.n > 0"}),
    )
    .await
    .ok(201);
    let paused = api
        .patch("/v1/routes/copy", &json!({"enabled": false}))
        .await;
    let body = paused.ok(200);
    assert_eq!(body["enabled"], false);
    assert_eq!(body["filter"], ".body.n > 0", "untouched fields stay");
    let during = server.ingest_ok("src", r#"{"n":1}"#).await;
    let routes: Vec<String> = server
        .deliveries_of(&during)
        .await
        .into_iter()
        .map(|d| d.route_id)
        .collect();
    assert_eq!(routes, ["src-dst"], "no delivery through a paused route");

    // `null` removes the filter (RFC 7396); enabled again, the route delivers.
    let resumed = api
        .patch("/v1/routes/copy", &json!({"enabled": true, "filter": null}))
        .await;
    assert!(resumed.ok(200)["filter"].is_null());
    let after = server.ingest_ok("src", r#"{"n":0}"#).await;
    let mut routes: Vec<String> = server
        .deliveries_of(&after)
        .await
        .into_iter()
        .map(|d| d.route_id)
        .collect();
    routes.sort();
    assert_eq!(routes, ["copy", "src-dst"]);
    other.wait_for(1, Duration::from_secs(15)).await;
    api.patch("/v1/routes/copy", &json!({"source": 5}))
        .await
        .problem(422, "validation_failed");
    api.patch("/v1/routes/src-dst", &json!({"enabled": false}))
        .await
        .problem(409, "managed_by_config");
    server.stop().await;
}

#[tokio::test]
async fn resources_disabled_in_the_configuration_file_start_paused() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, schedule_ms(&[]));
    let text = r#"
[[sources]]
id = "paused-in"
enabled = false

[[destinations]]
id = "paused-out"
kind = "http"
url = "http://127.0.0.1:9/never"
enabled = false

[[routes]]
source = "src"
destination = "paused-out"
"#;
    let extra = switchboard_core::Config::from_toml(text).expect("config parses");
    config.sources.extend(extra.sources);
    config.destinations.extend(extra.destinations);
    config.routes.extend(extra.routes);
    let server = TestServer::start(config).await;
    let api = server.api();
    assert_eq!(
        api.get("/v1/sources/paused-in").await.ok(200)["enabled"],
        false
    );
    assert_eq!(
        api.get("/v1/destinations/paused-out").await.ok(200)["enabled"],
        false
    );
    assert_eq!(server.ingest("paused-in", "{}").await.status(), 503);
    let event = server.ingest_ok("src", "{}").await;
    receiver.wait_for(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held = server
        .deliveries_of(&event)
        .await
        .into_iter()
        .find(|d| d.destination == "paused-out")
        .expect("a delivery is created and held");
    assert_eq!(held.status, DeliveryStatus::Pending);
    assert_eq!(held.attempts, 0);
    server.stop().await;
}
