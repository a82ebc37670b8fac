//! The management API (`/v1`) against the real server: every resource with its success and error
//! paths, auth and scopes, pagination, idempotency, request limits, and API-created resources that
//! really deliver and survive a restart with their secrets sealed at rest.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_core::RetryPolicy;
use switchboard_core::config::{RouteConfig, SourceConfig};
use switchboard_core::time::{format_rfc3339, now_millis};
use switchboard_signatures::standard_webhooks::{self, SigningKey};

use crate::support::*;

/// A server with the usual `src → dst` config routed to `receiver`.
async fn server_with(receiver: &Receiver) -> TestServer {
    TestServer::start(config_to(&receiver.url, RetryPolicy::default())).await
}

/// The ids of a listing's items.
fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|item| item["id"].as_str().expect("id").to_owned())
        .collect()
}

/// The item of a plain listing with `id`.
fn item<'a>(items: &'a Value, id: &str) -> &'a Value {
    items
        .as_array()
        .expect("an array")
        .iter()
        .find(|item| item["id"] == id)
        .unwrap_or_else(|| panic!("`{id}` in {items}"))
}

/// Asserts a `422 validation_failed` whose `errors[]` names `field`.
fn assert_field_error(response: &ApiResponse, field: &str) {
    let problem = response.problem(422, "validation_failed");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors[] in {problem}"))
        .iter()
        .map(|e| e["field"].as_str().expect("field"))
        .collect();
    assert!(
        fields.contains(&field),
        "errors[] names `{field}`: {problem}"
    );
}

/// Posts to `/in/{source}` with extra headers.
async fn ingest_with(
    server: &TestServer,
    source: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/in/{source}", server.base))
        .header("content-type", content_type)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("ingest request")
}

/// Creates a token with `scopes` and returns its value.
async fn create_token(api: &ApiClient, name: &str, scopes: &[&str]) -> (String, String) {
    let response = api
        .post("/v1/tokens", &json!({ "name": name, "scopes": scopes }))
        .await;
    let created = response.ok(201);
    (
        created["id"].as_str().expect("token id").to_owned(),
        created["token"].as_str().expect("token value").to_owned(),
    )
}

/// Waits until every delivery of `event` on the API has `status`.
async fn wait_status(api: &ApiClient, event: &str, status: &str) -> Value {
    eventually(
        Duration::from_secs(15),
        &format!("deliveries of {event} {status}"),
        || async {
            let page = api.get(&format!("/v1/deliveries?event_id={event}")).await;
            let items = page.ok(200)["items"].clone();
            let all = items.as_array().expect("items");
            (!all.is_empty() && all.iter().all(|d| d["status"] == status)).then_some(items)
        },
    )
    .await
}

#[tokio::test]
async fn sources_destinations_and_routes_crud() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let api = server.api();

    // Config resources are listed as such.
    let sources = api.get("/v1/sources").await;
    let src = item(sources.ok(200), "src");
    assert_eq!(src["managed_by"], "config");
    assert_eq!(src["ingest_path"], "/in/src");
    assert!(src["created_at"].is_null());

    // Create a source: 201, redacted secrets, timestamps.
    let created = api
        .post(
            "/v1/sources",
            &json!({"id": "shop", "verifier": {"kind": "github", "secrets": ["gh-secret-1"]}}),
        )
        .await;
    let shop = created.ok(201);
    assert_eq!(shop["managed_by"], "api");
    assert_eq!(shop["ingest_path"], "/in/shop");
    assert_eq!(shop["verifier"]["kind"], "github");
    assert_eq!(shop["verifier"]["secrets"], json!(["********"]));
    assert!(!created.text.contains("gh-secret-1"), "secret never shown");
    assert!(shop["created_at"].is_string() && shop["updated_at"].is_string());
    let fetched = api.get("/v1/sources/shop").await;
    assert_eq!(fetched.ok(200), shop);
    let listed = api.get("/v1/sources").await;
    assert_eq!(item(listed.ok(200), "shop")["managed_by"], "api");
    assert_eq!(ids(listed.ok(200)).len(), 2);

    // Replace it.
    let replaced = api
        .put(
            "/v1/sources/shop",
            &json!({"id": "shop", "max_body_bytes": 1000, "rate_limit": {"per_second": 5}}),
        )
        .await;
    let shop = replaced.ok(200);
    assert_eq!(shop["verifier"]["kind"], "none");
    assert_eq!(shop["max_body_bytes"], 1000);
    assert_eq!(shop["rate_limit"]["per_second"], 5);
    assert_eq!(api.get("/v1/sources/shop").await.ok(200), shop);

    // Conflicts and unknown ids.
    api.post("/v1/sources", &json!({"id": "shop"}))
        .await
        .problem(409, "already_exists");
    api.put("/v1/sources/nope", &json!({"id": "nope"}))
        .await
        .problem(404, "not_found");
    assert_field_error(
        &api.put("/v1/sources/shop", &json!({"id": "other"})).await,
        "id",
    );
    api.get("/v1/sources/nope").await.problem(404, "not_found");
    api.delete("/v1/sources/nope")
        .await
        .problem(404, "not_found");

    // Destinations: the secret is redacted, revealed on request, kept on replace.
    let created = api
        .post(
            "/v1/destinations",
            &json!({"id": "hooks", "url": receiver.url, "secret": SECRET, "timeout": "3s",
                    "retry": {"schedule": ["1s", "5s"]}, "headers": {"x-team": "billing"},
                    "max_in_flight": 4}),
        )
        .await;
    let hooks = created.ok(201);
    assert_eq!(hooks["managed_by"], "api");
    assert_eq!(hooks["kind"], "http");
    assert_eq!(hooks["url"], receiver.url.as_str());
    assert_eq!(hooks["secret"], "********");
    assert!(!created.text.contains(SECRET), "secret never shown");
    assert_eq!(hooks["timeout"], "3s");
    assert_eq!(hooks["retry"], json!({"schedule": ["1s", "5s"]}));
    assert_eq!(hooks["headers"], json!({"x-team": "billing"}));
    assert_eq!(hooks["max_in_flight"], 4);
    let fetched = api.get("/v1/destinations/hooks").await;
    assert_eq!(fetched.ok(200), hooks);
    assert!(!fetched.text.contains(SECRET));
    let secret = api.get("/v1/destinations/hooks/secret").await;
    assert_eq!(secret.ok(200)["secret"], SECRET);
    let replaced = api
        .put(
            "/v1/destinations/hooks",
            &json!({"id": "hooks", "url": format!("{}?v=2", receiver.url)}),
        )
        .await;
    assert_eq!(
        replaced.ok(200)["timeout"],
        "15s",
        "replace resets defaults"
    );
    let secret = api.get("/v1/destinations/hooks/secret").await;
    assert_eq!(secret.ok(200)["secret"], SECRET, "absent secret is kept");
    // Without a secret, one is generated.
    let generated = api
        .post(
            "/v1/destinations",
            &json!({"id": "gen", "url": receiver.url}),
        )
        .await;
    assert_eq!(generated.ok(201)["secret"], "********");
    let secret = api.get("/v1/destinations/gen/secret").await;
    let secret = secret.ok(200)["secret"].as_str().expect("secret");
    assert!(secret.starts_with("whsec_"), "{secret}");
    SigningKey::from_secret(secret).expect("a usable secret");
    // The config destination's secret is revealed too; its listing says who manages it.
    let secret = api.get("/v1/destinations/dst/secret").await;
    assert_eq!(secret.ok(200)["secret"], SECRET);
    let listed = api.get("/v1/destinations").await;
    assert_eq!(item(listed.ok(200), "dst")["managed_by"], "config");
    assert_eq!(item(listed.ok(200), "hooks")["managed_by"], "api");
    api.post(
        "/v1/destinations",
        &json!({"id": "hooks", "url": receiver.url}),
    )
    .await
    .problem(409, "already_exists");
    api.get("/v1/destinations/nope")
        .await
        .problem(404, "not_found");
    api.get("/v1/destinations/nope/secret")
        .await
        .problem(404, "not_found");
    api.put(
        "/v1/destinations/nope",
        &json!({"id": "nope", "url": receiver.url}),
    )
    .await
    .problem(404, "not_found");

    // Routes: default id, replace, conflicts.
    let created = api
        .post(
            "/v1/routes",
            &json!({"source": "shop", "destination": "hooks"}),
        )
        .await;
    let route = created.ok(201);
    assert_eq!(route["id"], "shop-hooks");
    assert_eq!(route["managed_by"], "api");
    assert_eq!(route["source"], "shop");
    assert_eq!(route["destination"], "hooks");
    assert_eq!(api.get("/v1/routes/shop-hooks").await.ok(200), route);
    let named = api
        .post(
            "/v1/routes",
            &json!({"id": "extra", "source": "src", "destination": "hooks"}),
        )
        .await;
    assert_eq!(named.ok(201)["id"], "extra");
    let replaced = api
        .put(
            "/v1/routes/extra",
            &json!({"source": "src", "destination": "gen"}),
        )
        .await;
    assert_eq!(replaced.ok(200)["destination"], "gen");
    let listed = api.get("/v1/routes").await;
    assert_eq!(item(listed.ok(200), "src-dst")["managed_by"], "config");
    assert_eq!(
        ids(listed.ok(200)).into_iter().collect::<BTreeSet<_>>(),
        ["extra", "shop-hooks", "src-dst"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    api.post(
        "/v1/routes",
        &json!({"source": "shop", "destination": "hooks"}),
    )
    .await
    .problem(409, "already_exists");
    assert_field_error(
        &api.put(
            "/v1/routes/extra",
            &json!({"id": "other", "source": "src", "destination": "gen"}),
        )
        .await,
        "id",
    );
    api.get("/v1/routes/nope").await.problem(404, "not_found");
    api.put(
        "/v1/routes/nope",
        &json!({"source": "src", "destination": "gen"}),
    )
    .await
    .problem(404, "not_found");

    // Resources in use cannot be deleted.
    let in_use = api.delete("/v1/destinations/hooks").await;
    let problem = in_use.problem(409, "in_use");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("shop-hooks")),
        "names the route: {problem}"
    );
    api.delete("/v1/sources/shop").await.problem(409, "in_use");
    api.delete("/v1/destinations/gen")
        .await
        .problem(409, "in_use");

    // Config resources are read-only.
    for response in [
        api.post("/v1/sources", &json!({"id": "src"})).await,
        api.put("/v1/sources/src", &json!({"id": "src"})).await,
        api.delete("/v1/sources/src").await,
        api.post(
            "/v1/destinations",
            &json!({"id": "dst", "url": receiver.url}),
        )
        .await,
        api.put(
            "/v1/destinations/dst",
            &json!({"id": "dst", "url": receiver.url}),
        )
        .await,
        api.delete("/v1/destinations/dst").await,
        api.post(
            "/v1/routes",
            &json!({"source": "src", "destination": "dst"}),
        )
        .await,
        api.put(
            "/v1/routes/src-dst",
            &json!({"source": "src", "destination": "dst"}),
        )
        .await,
        api.delete("/v1/routes/src-dst").await,
    ] {
        let problem = response.problem(409, "managed_by_config");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("configuration file")),
            "explains why: {problem}"
        );
    }

    // Delete in dependency order: 204, then 404.
    for path in [
        "/v1/routes/shop-hooks",
        "/v1/routes/extra",
        "/v1/destinations/hooks",
        "/v1/destinations/gen",
        "/v1/sources/shop",
    ] {
        let deleted = api.delete(path).await;
        assert_eq!(deleted.status, 204, "DELETE {path}: {}", deleted.text);
        assert!(deleted.text.is_empty());
        api.get(path).await.problem(404, "not_found");
        api.delete(path).await.problem(404, "not_found");
    }
    assert_eq!(ids(api.get("/v1/sources").await.ok(200)), ["src"]);
    assert_eq!(ids(api.get("/v1/destinations").await.ok(200)), ["dst"]);
    assert_eq!(ids(api.get("/v1/routes").await.ok(200)), ["src-dst"]);
    server.stop().await;
}

#[tokio::test]
async fn invalid_bodies_are_422_with_the_field_named() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let api = server.api();
    let url = receiver.url.as_str();

    let cases: Vec<(&str, Value, &str)> = vec![
        // Unknown and missing fields, wrong types.
        ("/v1/sources", json!({"id": "a", "nmae": 1}), "nmae"),
        ("/v1/sources", json!({"verifier": {"kind": "none"}}), "id"),
        ("/v1/sources", json!({"id": 5}), "id"),
        ("/v1/sources", json!({"id": "bad id"}), "id"),
        // Verifiers.
        (
            "/v1/sources",
            json!({"id": "a", "verifier": {"kind": "nope"}}),
            "verifier.kind",
        ),
        (
            "/v1/sources",
            json!({"id": "a", "verifier": {"kind": "github"}}),
            "verifier.secrets",
        ),
        (
            "/v1/sources",
            json!({"id": "a", "verifier": {"kind": "github", "secrets": []}}),
            "verifier",
        ),
        (
            "/v1/sources",
            json!({"id": "a", "max_body_bytes": 0}),
            "max_body_bytes",
        ),
        (
            "/v1/sources",
            json!({"id": "a", "rate_limit": {"per_second": 0}}),
            "rate_limit",
        ),
        // Destinations.
        (
            "/v1/destinations",
            json!({"id": "d", "url": "ftp://example.com/"}),
            "url",
        ),
        (
            "/v1/destinations",
            json!({"id": "d", "url": "http://"}),
            "url",
        ),
        ("/v1/destinations", json!({"id": "d"}), "url"),
        (
            "/v1/destinations",
            json!({"id": "d", "url": url, "timeout": "soon"}),
            "timeout",
        ),
        (
            "/v1/destinations",
            json!({"id": "d", "url": url, "retry": {"sometimes": 1}}),
            "retry",
        ),
        (
            "/v1/destinations",
            json!({"id": "d", "url": url, "kind": "smtp"}),
            "kind",
        ),
        (
            "/v1/destinations",
            json!({"id": "d", "url": url, "headers": {"bad header": "x"}}),
            "headers",
        ),
        (
            "/v1/destinations",
            json!({"id": "d", "url": url, "unknown": true}),
            "unknown",
        ),
        // Routes.
        (
            "/v1/routes",
            json!({"source": "nope", "destination": "dst"}),
            "source",
        ),
        (
            "/v1/routes",
            json!({"source": "src", "destination": "nope"}),
            "destination",
        ),
        ("/v1/routes", json!({"source": "src"}), "destination"),
        // Tokens.
        (
            "/v1/tokens",
            json!({"name": " ", "scopes": ["read"]}),
            "name",
        ),
        ("/v1/tokens", json!({"name": "ci", "scopes": []}), "scopes"),
        (
            "/v1/tokens",
            json!({"name": "ci", "scopes": ["root"]}),
            "scopes[0]",
        ),
        // Replay.
        ("/v1/replay", json!({}), "delivery_id"),
        (
            "/v1/replay",
            json!({"delivery_id": "a", "event_id": "b"}),
            "delivery_id",
        ),
        (
            "/v1/replay",
            json!({"destination": "dst", "status": "succeeded"}),
            "status",
        ),
        (
            "/v1/replay",
            json!({"destination": "dst", "since": "yesterday-ish"}),
            "since",
        ),
        (
            "/v1/replay",
            json!({"event_id": "e", "since": "2026-01-01T00:00:00Z"}),
            "status",
        ),
    ];
    for (path, body, field) in cases {
        let response = api.post(path, &body).await;
        assert_eq!(
            response.status, 422,
            "POST {path} {body}: {}",
            response.text
        );
        assert_field_error(&response, field);
    }
    // Nothing was created by the refused requests.
    assert_eq!(ids(api.get("/v1/sources").await.ok(200)), ["src"]);
    assert_eq!(ids(api.get("/v1/destinations").await.ok(200)), ["dst"]);
    assert_eq!(ids(api.get("/v1/routes").await.ok(200)), ["src-dst"]);

    // Query strings are checked the same way.
    for (query, field) in [
        ("/v1/events?bogus=1", "bogus"),
        ("/v1/events?status=lost", "status"),
        ("/v1/events?since=tuesday", "since"),
        ("/v1/events?until=2026-13-01T00:00:00Z", "until"),
        ("/v1/events?limit=many", "limit"),
        ("/v1/deliveries?status=lost", "status"),
        ("/v1/deliveries?colour=red", "colour"),
        ("/v1/attempts", "event_id"),
    ] {
        assert_field_error(&api.get(query).await, field);
    }
    server.stop().await;
}

#[tokio::test]
async fn api_resources_deliver_and_survive_a_restart_sealed_at_rest() {
    const API_KEY: &str = "ingest-key-7c1f9e2b5d";
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let config = server.config.clone();
    let api = server.api();

    api.post(
        "/v1/sources",
        &json!({"id": "shop", "verifier": {"kind": "api-key", "keys": [API_KEY]}}),
    )
    .await
    .ok(201);
    api.post(
        "/v1/destinations",
        &json!({"id": "hooks", "url": receiver.url, "retry": {"schedule": ["100ms"]}}),
    )
    .await
    .ok(201);
    api.post(
        "/v1/routes",
        &json!({"source": "shop", "destination": "hooks"}),
    )
    .await
    .ok(201);
    let secret = api.get("/v1/destinations/hooks/secret").await;
    let secret = secret.ok(200)["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let key = SigningKey::from_secret(&secret).expect("key");

    // The source verifies with its key and the event reaches the destination, signed.
    let refused = ingest_with(&server, "shop", &[], "application/json", "{}").await;
    assert_eq!(refused.status(), 401, "the api-key verifier is active");
    let body = r#"{"order":1}"#;
    let accepted = ingest_with(
        &server,
        "shop",
        &[("x-api-key", API_KEY)],
        "application/json",
        body,
    )
    .await;
    assert_eq!(accepted.status(), 202);
    let requests = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_signed(&requests[0], body, &key);

    let dir = server.stop().await;
    // Sealed at rest: neither secret appears in any file of the data directory (the database,
    // its WAL and shared memory); only the master key file holds key material. The event body,
    // stored as is, is found: the scan does see the data.
    let contains = |bytes: &[u8], needle: &str| {
        bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
    };
    let mut body_found = false;
    for entry in std::fs::read_dir(dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "master.key") || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read data file");
        body_found |= contains(&bytes, body);
        for needle in [secret.as_str(), API_KEY] {
            assert!(
                !contains(&bytes, needle),
                "{} contains the secret `{needle}` in clear",
                path.display()
            );
        }
    }
    assert!(body_found, "the event body is in the data directory");

    // After a restart the resources are back, with working secrets.
    let server = TestServer::start_in(config, dir).await;
    let api = server.api();
    let shop = api.get("/v1/sources/shop").await;
    assert_eq!(shop.ok(200)["managed_by"], "api");
    assert_eq!(shop.ok(200)["verifier"]["keys"], json!(["********"]));
    let route = api.get("/v1/routes/shop-hooks").await;
    assert_eq!(route.ok(200)["destination"], "hooks");
    let revealed = api.get("/v1/destinations/hooks/secret").await;
    assert_eq!(revealed.ok(200)["secret"], secret.as_str());
    let refused = ingest_with(
        &server,
        "shop",
        &[("x-api-key", "wrong")],
        "text/plain",
        "x",
    )
    .await;
    assert_eq!(refused.status(), 401);
    let body = r#"{"order":2}"#;
    let accepted = ingest_with(
        &server,
        "shop",
        &[("x-api-key", API_KEY)],
        "application/json",
        body,
    )
    .await;
    assert_eq!(accepted.status(), 202);
    let requests = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_signed(&requests[1], body, &key);
    server.stop().await;
}

/// The request carries `body` and a valid Standard Webhooks signature with `key`.
fn assert_signed(request: &receiver::Recorded, body: &str, key: &SigningKey) {
    assert_eq!(request.body.as_ref(), body.as_bytes());
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("ts");
    let headers = standard_webhooks::Headers {
        id: Some(request.header("webhook-id")),
        timestamp: Some(request.header("webhook-timestamp")),
        signature: Some(request.header("webhook-signature")),
    };
    standard_webhooks::verify(
        std::slice::from_ref(key),
        headers,
        &request.body,
        timestamp,
        300,
    )
    .expect("signature verifies with the revealed secret");
}

#[tokio::test]
async fn events_filters_and_detail() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config
        .sources
        .push(SourceConfig::new("other", Default::default()));
    config.routes.push(RouteConfig {
        id: None,
        source: "other".into(),
        destination: "dst".into(),
        filter: None,
        transform: None,
        enabled: true,
    });
    let server = TestServer::start(config).await;
    let api = server.api();

    // Distinct receive times (milliseconds) keep the time filters unambiguous.
    let gap = || tokio::time::sleep(Duration::from_millis(5));
    let text_body = r#"{"msg":"héllo ✓"}"#;
    let first = ingest_with(
        &server,
        "src",
        &[("x-event-type", "order.created"), ("x-trace", "t-1")],
        "application/json",
        text_body,
    )
    .await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("json");
    let first = first["id"].as_str().expect("id").to_owned();
    gap().await;
    let second = ingest_with(
        &server,
        "other",
        &[("x-event-type", "order.paid")],
        "application/json",
        "{}",
    )
    .await;
    let second: Value = second.json().await.expect("json");
    let second = second["id"].as_str().expect("id").to_owned();
    gap().await;
    let binary: Vec<u8> = vec![0xff, 0x00, 0xfe, 0x80, b'a'];
    let third = ingest_with(
        &server,
        "src",
        &[("x-event-type", "order.created")],
        "application/octet-stream",
        binary.clone(),
    )
    .await;
    let third: Value = third.json().await.expect("json");
    let third = third["id"].as_str().expect("id").to_owned();
    for event in [&first, &second, &third] {
        wait_status(&api, event, "succeeded").await;
    }

    let list = |query: &'static str| {
        let api = api.clone();
        async move {
            let page = api.get(&format!("/v1/events{query}")).await;
            ids(&page.ok(200)["items"])
        }
    };
    assert_eq!(
        list("").await,
        [third.as_str(), second.as_str(), first.as_str()],
        "newest first"
    );
    assert_eq!(list("?source=src").await, [third.as_str(), first.as_str()]);
    assert_eq!(list("?source=other").await, [second.as_str()]);
    assert_eq!(list("?source=nope").await, Vec::<String>::new());
    assert_eq!(
        list("?type=order.created").await,
        [third.as_str(), first.as_str()]
    );
    assert_eq!(list("?type=order.paid").await, [second.as_str()]);
    assert_eq!(
        list("?status=succeeded").await,
        [third.as_str(), second.as_str(), first.as_str()]
    );
    assert_eq!(list("?status=failed").await, Vec::<String>::new());
    assert_eq!(
        list("?source=src&type=order.created&status=succeeded").await,
        [third.as_str(), first.as_str()]
    );

    // Time range: `since` is inclusive, `until` exclusive.
    let detail = api.get(&format!("/v1/events/{second}")).await;
    let second_at = detail.ok(200)["received_at"]
        .as_str()
        .expect("received_at")
        .to_owned();
    let since = api.get(&format!("/v1/events?since={second_at}")).await;
    assert_eq!(
        ids(&since.ok(200)["items"]),
        [third.as_str(), second.as_str()]
    );
    let until = api.get(&format!("/v1/events?until={second_at}")).await;
    assert_eq!(ids(&until.ok(200)["items"]), [first.as_str()]);
    let window = api
        .get(&format!(
            "/v1/events?since={second_at}&until={}",
            format_rfc3339(now_millis() + 60_000)
        ))
        .await;
    assert_eq!(
        ids(&window.ok(200)["items"]),
        [third.as_str(), second.as_str()]
    );
    let summary = api.get("/v1/events?source=other").await;
    let summary = &summary.ok(200)["items"][0];
    assert_eq!(summary["source"], "other");
    assert_eq!(summary["type"], "order.paid");
    assert_eq!(summary["body_bytes"], 2);
    assert_eq!(summary["content_type"], "application/json");

    // A UTF-8 event: text body, headers, deliveries.
    let detail = api.get(&format!("/v1/events/{first}")).await;
    let event = detail.ok(200);
    assert_eq!(event["id"], first.as_str());
    assert_eq!(event["source"], "src");
    assert_eq!(event["type"], "order.created");
    assert!(
        event["received_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert_eq!(event["body"], text_body);
    assert_eq!(event["body_encoding"], "utf8");
    assert_eq!(event["body_bytes"], text_body.len());
    let headers = event["headers"].as_array().expect("headers");
    assert!(
        headers
            .iter()
            .any(|h| h["name"] == "x-trace" && h["value"] == "t-1"),
        "{headers:?}"
    );
    let deliveries = event["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["destination"], "dst");
    assert_eq!(deliveries[0]["status"], "succeeded");
    assert_eq!(deliveries[0]["attempts"], 1);
    assert!(
        deliveries[0]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("msg_"))
    );

    // A binary event: base64.
    let detail = api.get(&format!("/v1/events/{third}")).await;
    let event = detail.ok(200);
    assert_eq!(event["body_encoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(event["body"].as_str().expect("body"))
        .expect("base64");
    assert_eq!(decoded, binary);
    assert_eq!(event["content_type"], "application/octet-stream");

    api.get("/v1/events/nope").await.problem(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn deliveries_attempts_and_replay() {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let receiver = Receiver::scripted(move |_| {
        Reply::Status(if flag.load(Ordering::SeqCst) {
            200
        } else {
            500
        })
    })
    .await;
    // One attempt per run: a 500 fails the delivery at once.
    let server = TestServer::start(config_to(&receiver.url, schedule_ms(&[]))).await;
    let api = server.api();
    let mut events = Vec::new();
    for n in 0..3 {
        events.push(server.ingest_ok("src", format!(r#"{{"n":{n}}}"#)).await);
    }
    let mut deliveries = Vec::new();
    for event in &events {
        let items = wait_status(&api, event, "failed").await;
        deliveries.push(items[0]["id"].as_str().expect("id").to_owned());
    }

    // Listing and filters.
    let page = api.get("/v1/deliveries").await;
    let items = &page.ok(200)["items"];
    assert_eq!(
        ids(items),
        deliveries.iter().rev().cloned().collect::<Vec<_>>()
    );
    let first = &items[2];
    assert_eq!(first["event_id"], events[0].as_str());
    assert_eq!(first["destination"], "dst");
    assert_eq!(first["route_id"], "src-dst");
    assert_eq!(first["status"], "failed");
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["last_status"], 500);
    assert!(first["next_attempt_at"].is_string());
    let filtered = |query: String| {
        let api = api.clone();
        async move {
            let page = api.get(&format!("/v1/deliveries?{query}")).await;
            ids(&page.ok(200)["items"])
        }
    };
    assert_eq!(
        filtered(format!("event_id={}", events[1])).await,
        [deliveries[1].as_str()]
    );
    assert_eq!(filtered("status=failed".into()).await.len(), 3);
    assert_eq!(filtered("status=succeeded".into()).await.len(), 0);
    assert_eq!(filtered("destination=dst".into()).await.len(), 3);
    assert_eq!(filtered("destination=nope".into()).await.len(), 0);
    assert_eq!(
        filtered(format!(
            "event_id={}&status=failed&destination=dst",
            events[2]
        ))
        .await,
        [deliveries[2].as_str()]
    );

    // One delivery with its attempt log; attempts by delivery and by event.
    let detail = api.get(&format!("/v1/deliveries/{}", deliveries[0])).await;
    let detail = detail.ok(200);
    assert_eq!(detail["id"], deliveries[0].as_str());
    assert_eq!(detail["status"], "failed");
    let log = detail["attempt_log"].as_array().expect("attempt_log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["status_code"], 500);
    assert_eq!(log[0]["delivery_id"], deliveries[0].as_str());
    assert_eq!(log[0]["request_url"], receiver.url.as_str());
    assert!(log[0]["outcome"].is_string() && log[0]["started_at"].is_string());
    let attempts = api
        .get(&format!("/v1/attempts?delivery_id={}", deliveries[0]))
        .await;
    assert_eq!(attempts.ok(200).as_array().expect("array").len(), 1);
    let attempts = api
        .get(&format!("/v1/attempts?event_id={}", events[1]))
        .await;
    let attempts = attempts.ok(200).as_array().expect("array").clone();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["delivery_id"], deliveries[1].as_str());
    let none = api.get("/v1/attempts?event_id=nope").await;
    assert_eq!(none.ok(200), &json!([]));
    api.get("/v1/deliveries/nope")
        .await
        .problem(404, "not_found");

    // Replay in its three forms, each actually re-delivered with the same webhook-id.
    healthy.store(true, Ordering::SeqCst);
    let queued = api
        .post("/v1/replay", &json!({"delivery_id": deliveries[0]}))
        .await;
    assert_eq!(queued.ok(200), &json!({"queued": 1}));
    wait_status(&api, &events[0], "succeeded").await;
    let queued = api
        .post("/v1/replay", &json!({"event_id": events[1]}))
        .await;
    assert_eq!(queued.ok(200), &json!({"queued": 1}));
    wait_status(&api, &events[1], "succeeded").await;
    let since = format_rfc3339(now_millis() - 60_000);
    let queued = api
        .post(
            "/v1/replay",
            &json!({"destination": "dst", "status": "failed", "since": since}),
        )
        .await;
    assert_eq!(queued.ok(200), &json!({"queued": 1}));
    wait_status(&api, &events[2], "succeeded").await;
    let webhook_ids: BTreeSet<String> = receiver
        .requests()
        .iter()
        .filter(|r| r.header("webhook-id").starts_with("msg_"))
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        webhook_ids,
        deliveries.iter().cloned().collect(),
        "replays keep the webhook-id"
    );
    assert_eq!(receiver.requests().len(), 6, "3 failures, 3 replays");
    let detail = api.get(&format!("/v1/deliveries/{}", deliveries[0])).await;
    let detail = detail.ok(200);
    assert_eq!(detail["attempts"], 2);
    let log = detail["attempt_log"].as_array().expect("attempt_log");
    assert_eq!(
        log.iter()
            .map(|a| a["status_code"].clone())
            .collect::<Vec<_>>(),
        [json!(500), json!(200)]
    );
    assert_eq!(log[1]["attempt"], 2);

    // Nothing left to replay.
    let queued = api.post("/v1/replay", &json!({"destination": "dst"})).await;
    assert_eq!(queued.ok(200), &json!({"queued": 0}));
    let queued = api
        .post("/v1/replay", &json!({"delivery_id": "msg_nope"}))
        .await;
    assert_eq!(queued.ok(200), &json!({"queued": 0}));
    server.stop().await;
}

#[tokio::test]
async fn pagination_is_stable_and_complete() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let api = server.api();
    let mut events = Vec::new();
    for n in 0..7 {
        events.push(server.ingest_ok("src", format!(r#"{{"n":{n}}}"#)).await);
    }
    let newest_first: Vec<String> = events.iter().rev().cloned().collect();

    // The deliveries listing also holds the late arrival of the events pass.
    for (collection, expected_len) in [("events", 7), ("deliveries", 8)] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/{collection}?limit=3&cursor={c}"),
                None => format!("/v1/{collection}?limit=3"),
            };
            let page = api.get(&path).await;
            let body = page.ok(200);
            let items = ids(&body["items"]);
            assert!(items.len() <= 3, "{path}: at most limit items");
            seen.extend(items);
            pages += 1;
            if pages == 1 {
                // An arrival after the first page never shifts the later pages.
                server.ingest_ok("src", "{\"late\":true}").await;
            }
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{collection}: 3 + 3 + 1");
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "{collection}: pages are disjoint");
        assert_eq!(
            seen.len(),
            expected_len,
            "{collection}: pages cover everything"
        );
        if collection == "events" {
            assert_eq!(seen, newest_first, "newest first");
        }
    }
    // A last page that is exactly full has no next_cursor beyond it.
    let all = api.get("/v1/events?limit=500").await;
    let all = all.ok(200);
    assert!(
        all.get("next_cursor").is_some_and(Value::is_null),
        "the last page says next_cursor: null"
    );
    assert_eq!(ids(&all["items"]).len(), 9);
    let one = api.get("/v1/events?limit=1").await;
    assert_eq!(ids(&one.ok(200)["items"]).len(), 1);
    assert!(one.ok(200)["next_cursor"].is_string());

    for query in [
        "/v1/events?limit=0",
        "/v1/events?limit=501",
        "/v1/events?limit=-1",
        "/v1/deliveries?limit=0",
        "/v1/deliveries?limit=501",
    ] {
        assert_field_error(&api.get(query).await, "limit");
    }
    for query in [
        "/v1/events?cursor=garbage",
        "/v1/events?cursor=czpub3Q",
        "/v1/deliveries?cursor=%21%21",
    ] {
        assert_field_error(&api.get(query).await, "cursor");
    }
    server.stop().await;
}

#[tokio::test]
async fn tokens_scopes_and_authentication() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let admin = server.api();

    // No token, a malformed header, an unknown token: 401 with a Bearer challenge.
    let anonymous = admin.anonymous();
    for response in [
        anonymous.get("/v1/sources").await,
        anonymous.post("/v1/sources", &json!({"id": "x"})).await,
        anonymous
            .send(
                anonymous
                    .request(Method::GET, "/v1/events")
                    .header("authorization", "Basic dXNlcjpwYXNz"),
            )
            .await,
        admin.with_token("sb_unknown").get("/v1/sources").await,
    ] {
        response.problem(401, "unauthorized");
        assert_eq!(response.header("www-authenticate"), "Bearer");
    }

    // Create tokens: the value is shown once, with the `sb_` prefix.
    let created = admin
        .post("/v1/tokens", &json!({"name": "reader", "scopes": ["read"]}))
        .await;
    let reader = created.ok(201).clone();
    let read_token = reader["token"].as_str().expect("token").to_owned();
    assert!(
        read_token.starts_with("sb_") && read_token.len() > 40,
        "{read_token}"
    );
    assert!(
        reader["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("tok_"))
    );
    assert_eq!(reader["name"], "reader");
    assert_eq!(reader["scopes"], json!(["read"]));
    assert_eq!(reader["prefix"], &read_token[..10]);
    assert!(reader["revoked_at"].is_null() && reader["created_at"].is_string());
    let (write_id, write_token) = create_token(&admin, "writer", &["write"]).await;
    let (_, admin_token) = create_token(&admin, "second admin", &["admin"]).await;
    let reader_api = admin.with_token(&read_token);
    let writer_api = admin.with_token(&write_token);
    let admin2_api = admin.with_token(&admin_token);

    // read: inspect only.
    reader_api.get("/v1/sources").await.ok(200);
    reader_api.get("/v1/events").await.ok(200);
    reader_api.get("/v1/deliveries").await.ok(200);
    reader_api.get("/v1/destinations/dst").await.ok(200);
    for response in [
        reader_api.post("/v1/sources", &json!({"id": "x"})).await,
        reader_api.put("/v1/sources/x", &json!({"id": "x"})).await,
        reader_api.delete("/v1/routes/src-dst").await,
        reader_api
            .post("/v1/replay", &json!({"destination": "dst"}))
            .await,
        reader_api.get("/v1/destinations/dst/secret").await,
        reader_api.get("/v1/tokens").await,
    ] {
        let problem = response.problem(403, "forbidden");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("`read`")),
            "{problem}"
        );
    }

    // write: change resources, replay, reveal secrets; no tokens.
    writer_api
        .post("/v1/sources", &json!({"id": "by-writer"}))
        .await
        .ok(201);
    writer_api
        .post("/v1/replay", &json!({"destination": "dst"}))
        .await
        .ok(200);
    writer_api.get("/v1/destinations/dst/secret").await.ok(200);
    for response in [
        writer_api.get("/v1/tokens").await,
        writer_api
            .post("/v1/tokens", &json!({"name": "x", "scopes": ["admin"]}))
            .await,
        writer_api.delete(&format!("/v1/tokens/{write_id}")).await,
    ] {
        response.problem(403, "forbidden");
    }

    // admin (created or bootstrap): tokens. The listing never shows token values.
    let listed = admin2_api.get("/v1/tokens").await;
    let tokens = listed.ok(200).as_array().expect("array").clone();
    assert_eq!(tokens.len(), 3);
    assert!(tokens.iter().all(|t| t.get("token").is_none()));
    for value in [&read_token, &write_token, &admin_token] {
        assert!(!listed.text.contains(value.as_str()), "token values hidden");
    }
    assert_eq!(
        tokens
            .iter()
            .map(|t| t["name"].as_str().expect("name"))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["reader", "writer", "second admin"])
    );

    // Revoke: 204, then the token is refused; a second revoke is 404.
    let reader_id = reader["id"].as_str().expect("id");
    let revoked = admin.delete(&format!("/v1/tokens/{reader_id}")).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let refused = reader_api.get("/v1/sources").await;
    let problem = refused.problem(401, "unauthorized");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("revoked")),
        "{problem}"
    );
    assert_eq!(refused.header("www-authenticate"), "Bearer");
    admin
        .delete(&format!("/v1/tokens/{reader_id}"))
        .await
        .problem(404, "not_found");
    admin
        .delete("/v1/tokens/tok_nope")
        .await
        .problem(404, "not_found");
    let listed = admin.get("/v1/tokens").await;
    let revoked = item(listed.ok(200), reader_id);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    writer_api.get("/v1/sources").await.ok(200);

    // Ingest and health need no token.
    assert_eq!(server.ingest("src", "{}").await.status(), 202);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = reqwest::get(format!("{}{path}", server.base))
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let receiver = Receiver::always(200).await;
    let mut config = config_to(&receiver.url, RetryPolicy::default());
    config.server.metrics_require_token = true;
    let server = TestServer::start(config).await;
    let admin = server.api();
    let (_, read_token) = create_token(&admin, "prometheus", &["read"]).await;

    let anonymous = admin.anonymous().get("/metrics").await;
    anonymous.problem(401, "unauthorized");
    admin
        .with_token("sb_unknown")
        .get("/metrics")
        .await
        .problem(401, "unauthorized");
    for api in [admin.clone(), admin.with_token(&read_token)] {
        let metrics = api.get("/metrics").await;
        assert_eq!(metrics.status, 200, "{}", metrics.text);
        assert!(metrics.header("content-type").starts_with("text/plain"));
        assert!(metrics.text.contains("switchboard_"), "{}", metrics.text);
    }
    // Health stays open.
    let health = admin.anonymous().get("/healthz").await;
    assert_eq!(health.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let api = server.api();
    let post = |path: &'static str, key: &'static str, body: Value| {
        let api = api.clone();
        async move {
            api.send(
                api.request(Method::POST, path)
                    .header("idempotency-key", key)
                    .json(&body),
            )
            .await
        }
    };

    let first = post("/v1/sources", "key-1", json!({"id": "idem"})).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.header("idempotent-replayed"), "");
    let again = post("/v1/sources", "key-1", json!({"id": "idem"})).await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, first.body, "the same response");
    assert!(again.header("content-type").starts_with("application/json"));
    let sources = api.get("/v1/sources").await;
    assert_eq!(
        ids(sources.ok(200))
            .iter()
            .filter(|id| *id == "idem")
            .count(),
        1,
        "created once"
    );
    // Same key, different body: 422.
    post("/v1/sources", "key-1", json!({"id": "idem2"}))
        .await
        .problem(422, "idempotency_key_reused");
    // Another key is another request: the source exists now.
    post("/v1/sources", "key-2", json!({"id": "idem"}))
        .await
        .problem(409, "already_exists");
    // A refused first request is recorded and replayed as well.
    let again = post("/v1/sources", "key-2", json!({"id": "idem"})).await;
    again.problem(409, "already_exists");
    assert_eq!(again.header("idempotent-replayed"), "true");

    // Tokens: one token, the same value returned again.
    let token = post(
        "/v1/tokens",
        "key-3",
        json!({"name": "once", "scopes": ["read"]}),
    )
    .await;
    let replayed = post(
        "/v1/tokens",
        "key-3",
        json!({"name": "once", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(token.status, 201);
    assert_eq!(replayed.header("idempotent-replayed"), "true");
    assert_eq!(replayed.body["token"], token.body["token"]);
    let tokens = api.get("/v1/tokens").await;
    assert_eq!(tokens.ok(200).as_array().expect("array").len(), 1);

    // Keys are per caller: another token may use the same key for its own request.
    let other = api.with_token(token.body["token"].as_str().expect("token"));
    let (_, writer) = create_token(&api, "writer", &["write"]).await;
    let writer = api.with_token(&writer);
    let own = writer
        .send(
            writer
                .request(Method::POST, "/v1/sources")
                .header("idempotency-key", "key-1")
                .json(&json!({"id": "writers"})),
        )
        .await;
    assert_eq!(own.status, 201, "{}", own.text);
    assert_eq!(own.header("idempotent-replayed"), "");
    other.get("/v1/sources").await.ok(200);

    // Malformed keys.
    let long = "k".repeat(256);
    let response = api
        .send(
            api.request(Method::POST, "/v1/sources")
                .header("idempotency-key", long.as_str())
                .json(&json!({"id": "long"})),
        )
        .await;
    response.problem(400, "bad_request");
    let token_value = token.body["token"].as_str().expect("token").to_owned();
    let dir = server.stop().await;
    // The recorded response holds the new token's value; it is sealed, never stored in clear.
    for entry in std::fs::read_dir(dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read data file");
        assert!(
            !bytes
                .windows(token_value.len())
                .any(|w| w == token_value.as_bytes()),
            "token value found in clear in {}",
            path.display()
        );
    }
}

#[tokio::test]
async fn request_limits_and_unknown_routes() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let api = server.api();
    let raw =
        |method: Method, path: &'static str, content_type: Option<&'static str>, body: Vec<u8>| {
            let api = api.clone();
            async move {
                let mut request = api.request(method, path).body(body);
                if let Some(content_type) = content_type {
                    request = request.header("content-type", content_type);
                }
                api.send(request).await
            }
        };
    let json_type = Some("application/json");

    // Over 256 KiB: 413, also with an Idempotency-Key.
    let big = format!(
        r#"{{"id":"big","verifier":{{"kind":"api-key","keys":["{}"]}}}}"#,
        "k".repeat(300 * 1024)
    );
    raw(
        Method::POST,
        "/v1/sources",
        json_type,
        big.clone().into_bytes(),
    )
    .await
    .problem(413, "payload_too_large");
    let with_key = api
        .send(
            api.request(Method::POST, "/v1/sources")
                .header("content-type", "application/json")
                .header("idempotency-key", "big-1")
                .body(big),
        )
        .await;
    with_key.problem(413, "payload_too_large");
    // Just under the limit is fine as far as size goes.
    let under = format!(
        r#"{{"id":"under","verifier":{{"kind":"api-key","keys":["{}"]}}}}"#,
        "k".repeat(250 * 1024)
    );
    raw(Method::POST, "/v1/sources", json_type, under.into_bytes())
        .await
        .ok(201);

    // JSON nested 40 deep: 400; 32 deep is within the limit (and then a shape error).
    let deep = |depth: usize| {
        format!(
            r#"{{"id":"deep","verifier":{}{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
        .into_bytes()
    };
    raw(Method::POST, "/v1/sources", json_type, deep(40))
        .await
        .problem(400, "bad_request");
    raw(Method::POST, "/v1/sources", json_type, deep(32))
        .await
        .problem(422, "validation_failed");

    // Wrong or missing content type: 415. Malformed JSON: 400.
    raw(
        Method::POST,
        "/v1/sources",
        Some("text/plain"),
        br#"{"id":"t"}"#.to_vec(),
    )
    .await
    .problem(415, "unsupported_media_type");
    raw(
        Method::PUT,
        "/v1/sources/x",
        None,
        br#"{"id":"x"}"#.to_vec(),
    )
    .await
    .problem(415, "unsupported_media_type");
    raw(
        Method::POST,
        "/v1/replay",
        json_type,
        b"{\"event_id\":".to_vec(),
    )
    .await
    .problem(400, "bad_request");
    raw(Method::POST, "/v1/tokens", json_type, Vec::new())
        .await
        .problem(400, "bad_request");

    // Unknown paths and methods are problems too.
    api.get("/v1/nope").await.problem(404, "not_found");
    raw(Method::PATCH, "/v1/events", json_type, b"{}".to_vec())
        .await
        .problem(405, "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn openapi_document_is_served() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let document = server.api().get("/v1/openapi.json").await;
    let document = document.ok(200);
    assert_eq!(
        document,
        &serde_json::to_value(switchboard_server::api::openapi()).expect("document")
    );
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    server.stop().await;
}

/// Destinations of any kind through the API: settings in, settings shown redacted, a redacted
/// view sent back keeps the credentials, and deliveries use them.
#[tokio::test]
async fn destinations_of_other_kinds_through_settings() {
    let receiver = Receiver::always(200).await;
    let server = server_with(&receiver).await;
    let api = server.api();
    let created = api
        .post(
            "/v1/destinations",
            &json!({"id": "team", "kind": "slack", "settings": {
                "token": "xoxb-secret-1", "channel": "C1", "api_base": receiver.url}}),
        )
        .await;
    let body = created.ok(201);
    assert_eq!(body["kind"], "slack");
    assert_eq!(body["settings"]["channel"], "C1");
    assert_eq!(body["settings"]["token"], "********");
    assert!(body["secret"].is_null() || body["secret"] == "********");
    assert!(!created.text.contains("xoxb-secret-1"));

    // Send the redacted view back unchanged (plus a new channel): the token stays.
    let mut settings = body["settings"].clone();
    settings["channel"] = json!("C2");
    let replaced = api
        .put(
            "/v1/destinations/team",
            &json!({"id": "team", "kind": "slack", "settings": settings}),
        )
        .await;
    assert_eq!(replaced.ok(200)["settings"]["channel"], "C2");
    api.post(
        "/v1/routes",
        &json!({"id": "to-team", "source": "src", "destination": "team"}),
    )
    .await
    .ok(201);
    server.ingest_ok("src", r#"{"text": "hello"}"#).await;
    // The configured `dst` gets the event too; find Slack's call among the two.
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let slack = got
        .iter()
        .find(|r| r.path == "/hook/chat.postMessage")
        .expect("a chat.postMessage call");
    assert_eq!(slack.header("authorization"), "Bearer xoxb-secret-1");
    let sent: Value = serde_json::from_slice(&slack.body).expect("json");
    assert_eq!(sent["channel"], "C2");

    // What is refused, with the field named.
    let refused = api
        .post("/v1/destinations", &json!({"id": "x", "kind": "slack"}))
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    let refused = api.post("/v1/destinations", &json!({"id": "x"})).await;
    assert_eq!(
        refused.problem(422, "validation_failed")["errors"][0]["field"],
        "url"
    );
    let refused = api
        .post(
            "/v1/destinations",
            &json!({"id": "x", "kind": "teams", "url": "https://example.com"}),
        )
        .await;
    assert_eq!(
        refused.problem(422, "validation_failed")["errors"][0]["field"],
        "url"
    );
    server.stop().await;
}
