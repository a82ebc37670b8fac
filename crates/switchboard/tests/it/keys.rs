//! `switchboard keys`: master key rotation against a running server's store (SQLite, and
//! PostgreSQL with `SWITCHBOARD_TEST_PG`), and a missing key at start when sealed secrets exist.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::Config;

use crate::support::TestServer;
use crate::support::pg::Schema;
use crate::support::process::ADMIN_TOKEN;

const API_KEY: &str = "SG.rotate-me-NEVER-IN-CLEAR-0042";

/// Runs `switchboard --json keys …` on `dir` (and PostgreSQL at `pg`).
async fn keys(dir: &Path, pg: Option<&str>, args: &[&str]) -> (i32, Value, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("--json")
        .arg("keys")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SWITCHBOARD_CONFIG")
        .env_remove("SWITCHBOARD_MASTER_KEY")
        .env_remove("SWITCHBOARD_MASTER_KEY_OLD")
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = pg {
        command.env("SWITCHBOARD_DATABASE_URL", url);
    }
    let output = command.output().await.expect("run switchboard keys");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn config(pg: Option<&str>) -> Config {
    let mut config = Config::default();
    config.server.admin_token = Some(ADMIN_TOKEN.into());
    config.server.database_url = pg.map(str::to_owned);
    config
}

fn count(usage: &Value, role: &str) -> u64 {
    usage["sealed"]
        .as_array()
        .expect("sealed")
        .iter()
        .filter(|row| row["role"] == role)
        .map(|row| row["count"].as_u64().expect("count"))
        .sum()
}

fn file_holds(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir)
        .expect("data dir")
        .flatten()
        .filter(|entry| entry.file_name() != "master.key")
        .filter_map(|entry| std::fs::read(entry.path()).ok())
        .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

/// Secrets sealed by a running server are re-sealed under a new key while it runs; the server
/// keeps reading and writing them; the old key is retired; a restart with only the new key
/// opens everything.
async fn rotate_online(pg: Option<&str>) {
    let server = TestServer::start(config(pg)).await;
    let api = server.api();
    api.post(
        "/v1/connections",
        &json!({"id": "mail", "provider": "sendgrid", "credentials": {"token": API_KEY}}),
    )
    .await
    .ok(201);
    api.post(
        "/v1/destinations",
        &json!({"id": "hook", "url": "https://hooks.example.com/in"}),
    )
    .await
    .ok(201);
    let dir = server.dir.path().to_owned();

    let (code, before, stderr) = keys(&dir, pg, &["status"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(count(&before, "current") >= 2, "{before}");
    assert_eq!(before["not_current"], 0, "{before}");
    let old_key = before["keys"][0]["id"].clone();

    let (code, rotated, stderr) = keys(&dir, pg, &["rotate", "--batch", "2"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("Added key"), "{stderr}");
    assert!(
        rotated["resealed"].as_u64().expect("resealed") >= 2,
        "{rotated}"
    );
    assert_ne!(rotated["current_key"], old_key);
    let (_, during, _) = keys(&dir, pg, &["status"]).await;
    assert_eq!(
        during["keys"].as_array().expect("keys").len(),
        2,
        "{during}"
    );
    assert_eq!(during["keys"][1]["id"], old_key);

    // The running server reads what was re-sealed under a key it did not have (its connection
    // cache expires after 2 s) and seals new secrets under the new key.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let shown = api.get("/v1/connections/mail").await;
    assert_eq!(shown.ok(200)["status"], "active");
    api.get("/v1/destinations/hook/secret").await.ok(200);
    api.post(
        "/v1/connections",
        &json!({"id": "mail2", "provider": "sendgrid", "credentials": {"token": API_KEY}}),
    )
    .await
    .ok(201);
    let (_, after, _) = keys(&dir, pg, &["status"]).await;
    assert_eq!(
        after["not_current"], 0,
        "the new secret is under the new key: {after}"
    );

    let (code, _, stderr) = keys(&dir, pg, &["retire"]).await;
    assert_eq!(code, 0, "{stderr}");
    let (_, retired, _) = keys(&dir, pg, &["status"]).await;
    assert_eq!(retired["keys"].as_array().expect("keys").len(), 1);
    assert_eq!(retired["keys"][0]["id"], rotated["current_key"]);

    let dir = server.stop().await;
    if pg.is_none() {
        assert!(!file_holds(dir.path(), API_KEY), "no secret in clear");
    }
    // Only the new key now: everything opens.
    let again = TestServer::start_in(config(pg), dir).await;
    let shown = again.api().get("/v1/connections/mail2").await;
    assert_eq!(shown.ok(200)["status"], "active");
    again
        .api()
        .get("/v1/destinations/hook/secret")
        .await
        .ok(200);
    again.stop().await;
}

#[tokio::test]
async fn keys_rotate_online_on_sqlite() {
    rotate_online(None).await;
}

#[tokio::test]
async fn keys_rotate_online_on_postgres() {
    let Some(base) = std::env::var("SWITCHBOARD_TEST_PG")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!(
            "SKIPPED keys_rotate_online_on_postgres: set SWITCHBOARD_TEST_PG=postgres://… to run it"
        );
        return;
    };
    let schema = Schema::create(&base, "keys");
    rotate_online(Some(&schema.url())).await;
    drop(schema);
}

/// Without its key file, a data directory holding sealed secrets does not start (and no new
/// key is left behind); a wrong key file does not either.
#[tokio::test]
async fn a_missing_master_key_stops_the_start() {
    let server = TestServer::start(config(None)).await;
    server
        .api()
        .post(
            "/v1/connections",
            &json!({"id": "mail", "provider": "sendgrid", "credentials": {"token": API_KEY}}),
        )
        .await
        .ok(201);
    let dir = server.stop().await;
    let key_file = dir.path().join("master.key");
    let saved = std::fs::read(&key_file).expect("key file");
    std::fs::remove_file(&key_file).expect("remove the key");

    let start = |dir: &Path| {
        let mut config = config(None);
        config.server.data_dir = dir.to_owned();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tokio::time::timeout(
                Duration::from_secs(30),
                switchboard_server::run(config, listener, Default::default()),
            )
            .await
            .expect("the start ends")
        }
    };
    let error = start(dir.path()).await.expect_err("no key").to_string();
    assert!(error.contains("no master key"), "{error}");
    assert!(error.contains("connections.credentials"), "{error}");
    assert!(!key_file.exists(), "no fresh key is left behind");

    std::fs::write(&key_file, switchboard_store::vault::generate_key()).expect("wrong key");
    let error = start(dir.path()).await.expect_err("wrong key").to_string();
    assert!(error.contains("does not open the secrets"), "{error}");

    std::fs::write(&key_file, saved).expect("restore");
    let again = TestServer::start_in(config(None), dir).await;
    again.stop().await;
}
