//! The audit trail against the real server: create/update/delete of resources and tokens are
//! recorded with the caller's token id and before/after views without secrets; filters and
//! pagination of `GET /v1/audit`; the admin scope it needs.

use serde_json::{Value, json};
use switchboard_core::RetryPolicy;

use crate::support::*;

/// The audit entries matching `query`, newest first.
async fn audit(api: &ApiClient, query: &str) -> Vec<Value> {
    let page = api.get(&format!("/v1/audit?{query}")).await;
    page.ok(200)["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn management_actions_are_audited_without_secrets() {
    let receiver = Receiver::always(200).await;
    let server = TestServer::start(config_to(&receiver.url, RetryPolicy::default())).await;
    let admin = server.api();

    // A write token does the resource work, so the actor is its id, not the bootstrap's.
    let created = admin
        .post("/v1/tokens", &json!({"name": "ci", "scopes": ["write"]}))
        .await;
    let token = created.ok(201);
    let token_id = token["id"].as_str().expect("id").to_owned();
    let token_value = token["token"].as_str().expect("token").to_owned();
    let writer = admin.with_token(&token_value);

    let created = writer
        .post(
            "/v1/destinations",
            &json!({"id": "orders", "url": "https://orders.example/hook", "secret": "whsec_c2VjcmV0LW9uZS0xMjM0NTY3ODkw"}),
        )
        .await;
    created.ok(201);
    let updated = writer
        .put(
            "/v1/destinations/orders",
            &json!({"id": "orders", "url": "https://orders.example/v2", "secret": "whsec_c2VjcmV0LXR3by0xMjM0NTY3ODkw"}),
        )
        .await;
    updated.ok(200);
    let deleted = writer.delete("/v1/destinations/orders").await;
    assert_eq!(deleted.status, 204);
    let revoked = admin.delete(&format!("/v1/tokens/{token_id}")).await;
    assert_eq!(revoked.status, 204);
    // Failed requests change nothing and are not recorded.
    let refused = admin.delete("/v1/destinations/nope").await;
    assert_eq!(refused.status, 404);

    let entries = audit(&admin, "resource=destination:orders").await;
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    for entry in &entries {
        assert_eq!(entry["actor"], token_id.as_str(), "{entry}");
        assert_eq!(entry["resource_kind"], "destination");
        assert_eq!(entry["resource_id"], "orders");
        assert!(entry["request_id"].is_string());
        assert!(entry["at"].is_string());
    }
    let (delete, update, create) = (&entries[0], &entries[1], &entries[2]);
    assert!(create["before"].is_null());
    assert_eq!(create["after"]["url"], "https://orders.example/hook");
    assert_eq!(create["after"]["secret"], "********");
    assert_eq!(create["status"], 201);
    assert_eq!(update["before"]["url"], "https://orders.example/hook");
    assert_eq!(update["after"]["url"], "https://orders.example/v2");
    assert_eq!(update["method"], "PUT");
    assert_eq!(delete["before"]["url"], "https://orders.example/v2");
    assert!(delete["after"].is_null());

    // The token's creation is recorded by the bootstrap token, without its value.
    let tokens = audit(&admin, "resource=token").await;
    let actions: Vec<(&str, &str)> = tokens
        .iter()
        .map(|e| {
            (
                e["action"].as_str().expect("action"),
                e["actor"].as_str().expect("actor"),
            )
        })
        .collect();
    assert_eq!(actions, [("revoke", "bootstrap"), ("create", "bootstrap")]);
    assert_eq!(tokens[1]["resource_id"], token_id.as_str());
    assert_eq!(tokens[1]["after"]["token"], "********");

    // No secret appears anywhere in the trail.
    let everything = admin.get("/v1/audit?limit=500").await;
    for secret in [
        token_value.as_str(),
        "whsec_c2VjcmV0LW9uZS0xMjM0NTY3ODkw",
        "whsec_c2VjcmV0LXR3by0xMjM0NTY3ODkw",
    ] {
        assert!(!everything.text.contains(secret), "{secret} leaked");
    }
    let stored = server
        .store()
        .list_audit(&switchboard_store::AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("list_audit");
    assert_eq!(stored.len(), 5);
    for record in &stored {
        for text in [&record.before, &record.after].into_iter().flatten() {
            assert!(!text.contains(&token_value) && !text.contains("whsec_c2VjcmV0"));
        }
    }

    // Filters and pagination.
    assert_eq!(audit(&admin, &format!("actor={token_id}")).await.len(), 3);
    assert_eq!(audit(&admin, "action=create").await.len(), 2);
    assert_eq!(audit(&admin, "since=2100-01-01T00:00:00Z").await.len(), 0);
    let first = admin.get("/v1/audit?limit=2").await;
    let cursor = first.ok(200)["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let second = admin
        .get(&format!("/v1/audit?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second.ok(200)["items"][0]["action"], "update");
    admin
        .get("/v1/audit?resource=:x")
        .await
        .problem(422, "validation_failed");

    // Reading the trail needs the admin scope.
    let reader = admin
        .post("/v1/tokens", &json!({"name": "ro", "scopes": ["write"]}))
        .await;
    let reader = admin.with_token(reader.ok(201)["token"].as_str().expect("token"));
    assert_eq!(reader.get("/v1/audit").await.status, 403);
}
