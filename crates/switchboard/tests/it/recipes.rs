//! The recipes in `docs/recipes/` work as written: every TOML block parses, validates and starts
//! a real server (jq programs, templates and schedules compiled as `serve` compiles them), and
//! the GitHub → review workflow → Slack recipe turns GitHub's own pull request payload into the
//! requests it promises.

use std::path::{Path, PathBuf};

use serde_json::json;
use switchboard_core::Config;
use switchboard_core::config::DestinationConfig;

use crate::support::{TestServer, process};

fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/recipes")
}

/// The ```toml blocks of a Markdown page.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A recipe's configuration made safe to start here: loopback listener (the test server picks
/// its own), the test's admin token, and nothing sent outside this machine.
fn startable(mut config: Config) -> Config {
    config.server.admin_token = Some(process::ADMIN_TOKEN.into());
    config.server.database_url = None;
    for destination in &mut config.destinations {
        if let DestinationConfig::Slack(slack) = destination {
            // A closed local port: deliveries fail and retry instead of reaching slack.com.
            slack.api_base = Some("http://127.0.0.1:9/api".into());
        }
    }
    config
}

fn recipe_pages() -> Vec<(String, String)> {
    let mut pages: Vec<(String, String)> = std::fs::read_dir(recipes_dir())
        .expect("docs/recipes exists")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "md").then_some(path)
        })
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read_to_string(&path).expect("read recipe"))
        })
        .collect();
    pages.sort();
    pages
}

#[tokio::test]
async fn every_recipe_configuration_starts_a_server() {
    let pages = recipe_pages();
    assert!(pages.len() >= 2, "the recipes are found: {pages:?}");
    let mut checked = 0;
    for (name, text) in pages {
        // A block is a whole configuration, or the next step of the page's configuration (it
        // then loads together with the blocks before it).
        let mut so_far = String::new();
        for (n, block) in toml_blocks(&text).into_iter().enumerate() {
            let alone = Config::from_toml(&block).and_then(|c| c.validate().map(|()| c));
            let config = match alone {
                Ok(config) => config,
                Err(alone) => {
                    let combined = format!("{so_far}\n{block}");
                    let config = Config::from_toml(&combined).unwrap_or_else(|e| {
                        panic!("{name}, TOML block {n}: {alone}\n(with the blocks before it: {e})")
                    });
                    config.validate().unwrap_or_else(|e| {
                        panic!("{name}, TOML block {n}: {alone}\n(with the blocks before it: {e})")
                    });
                    config
                }
            };
            so_far.push('\n');
            so_far.push_str(&block);
            let config = startable(config);
            switchboard_server::runtime::check(&config)
                .unwrap_or_else(|e| panic!("{name}, TOML block {n}: {e}"));
            let server = TestServer::start(config).await;
            let listed = server.api().get("/v1/sources").await;
            assert_eq!(listed.status, 200, "{name}: {}", listed.body);
            server.stop().await;
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[tokio::test]
async fn the_github_recipe_builds_the_review_request_and_the_slack_message() {
    let page =
        std::fs::read_to_string(recipes_dir().join("github-pull-request-review-to-slack.md"))
            .expect("recipe");
    let block = toml_blocks(&page).remove(0);
    let config = startable(Config::from_toml(&block).expect("recipe parses"));
    let secret = "replace-with-your-webhook-secret";
    let server = TestServer::start(config).await;

    let sample = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/github/pull_request.opened.json"),
    )
    .expect("sample");
    let response = reqwest::Client::new()
        .post(format!("{}/in/github", server.base))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header(
            "x-hub-signature-256",
            switchboard_signatures::github::sign(secret.as_bytes(), &sample),
        )
        .body(sample.clone())
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202);
    let event: serde_json::Value = response.json().await.expect("json");
    let event_id = event["id"].as_str().expect("id");

    let api = server.api();
    let review = api
        .post(
            "/v1/routes/pr-review/test",
            &json!({ "event_id": event_id }),
        )
        .await;
    let review = review.ok(200);
    assert_eq!(review["matched"], true);
    assert_eq!(review["body"]["number"], 42);
    assert_eq!(review["body"]["repository"], "octo-org/hello-world");
    assert_eq!(
        review["request"]["url"],
        "http://review.internal:8080/reviews/octo-org%2Fhello-world"
    );
    assert_eq!(review["request"]["headers"]["x-pull-request"], "42");
    assert!(review["request"]["headers"]["webhook-signature"].is_string());

    let slack = api
        .post("/v1/routes/pr-slack/test", &json!({ "event_id": event_id }))
        .await;
    let slack = slack.ok(200);
    assert_eq!(slack["matched"], true, "{slack}");
    let text = slack["body"]["text"].as_str().expect("text");
    assert!(
        text.starts_with("New pull request in octo-org/hello-world: #42"),
        "{text}"
    );
    assert_eq!(slack["body"]["blocks"][0]["type"], "section");

    // A draft is left alone by both routes.
    let mut draft: serde_json::Value = serde_json::from_slice(&sample).expect("sample json");
    draft["pull_request"]["draft"] = json!(true);
    let draft = serde_json::to_vec(&draft).expect("json");
    let response = reqwest::Client::new()
        .post(format!("{}/in/github", server.base))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-000000000001")
        .header(
            "x-hub-signature-256",
            switchboard_signatures::github::sign(secret.as_bytes(), &draft),
        )
        .body(draft)
        .send()
        .await
        .expect("ingest");
    let event: serde_json::Value = response.json().await.expect("json");
    let test = api
        .post(
            "/v1/routes/pr-slack/test",
            &json!({ "event_id": event["id"] }),
        )
        .await;
    assert_eq!(test.ok(200)["matched"], false);
    server.stop().await;
}
