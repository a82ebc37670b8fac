//! `switchboard export`, `import` and `migrate` with the real binary: a server fills a SQLite
//! data directory, its data is exported, imported into PostgreSQL, and a server on PostgreSQL
//! with the same master key serves it (events with their deliveries, an API-created
//! destination) and keeps working.
//!
//! Needs `SWITCHBOARD_TEST_PG=postgres://user@host:port/database` and `psql` (which creates and
//! drops the test's own schema, `sb_transfer_…`). Without the variable the test reports
//! `SKIPPED …` on stderr and passes.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::pg::{Schema, master_key};
use crate::support::process::{ADMIN_TOKEN, Process, config_toml};
use crate::support::{ApiClient, Receiver, SECRET, eventually};

/// The variable naming the test server.
const ENV: &str = "SWITCHBOARD_TEST_PG";

fn pg_base(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            // Past the harness's capture, so that CI sees it.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {ENV}=postgres://… to run the export/import tests"
            );
            None
        }
    }
}

/// Runs `switchboard <args>` with `--data-dir dir` and exactly the given store variables.
fn switchboard(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SWITCHBOARD_DATABASE_URL")
        .env_remove("SWITCHBOARD_MASTER_KEY")
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run switchboard");
    eprintln!(
        "switchboard {args:?}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Waits until every delivery of the event has succeeded; returns the event.
async fn delivered(api: &ApiClient, id: &str) -> Value {
    eventually(
        Duration::from_secs(20),
        "the event's deliveries succeed",
        || {
            let (api, path) = (api.clone(), format!("/v1/events/{id}"));
            async move {
                let event = api.get(&path).await.ok(200).clone();
                let deliveries = event["deliveries"].as_array()?;
                (!deliveries.is_empty() && deliveries.iter().all(|d| d["status"] == "succeeded"))
                    .then_some(event)
            }
        },
    )
    .await
}

async fn ingest(base: &str, n: u64) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/in/src"))
        .header("content-type", "application/json")
        .body(json!({"n": n}).to_string())
        .send()
        .await
        .expect("ingest");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_data_moves_to_postgres_and_is_served_there() {
    const TEST: &str = "transfer::sqlite_data_moves_to_postgres_and_is_served_there";
    let Some(base) = pg_base(TEST) else { return };
    let schema = Schema::create(&base, "sb_transfer");
    let database = schema.url();
    let receiver = Receiver::always(200).await;
    let key = master_key();
    let toml = config_toml(&receiver.url, "");

    // 1. A server on SQLite: an API-created destination and route, a few delivered events.
    let sqlite_dir = tempfile::tempdir().expect("temp dir");
    let sqlite_node = Process::spawn_with(
        sqlite_dir.path(),
        &toml,
        "127.0.0.1:0",
        &[("SWITCHBOARD_MASTER_KEY", &key)],
    );
    let api = ApiClient::new(&sqlite_node.base, Some(ADMIN_TOKEN));
    api.post(
        "/v1/destinations",
        &json!({"id": "hooks", "url": receiver.url, "secret": SECRET, "timeout": "3s"}),
    )
    .await
    .ok(201);
    api.post(
        "/v1/routes",
        &json!({"source": "src", "destination": "hooks"}),
    )
    .await
    .ok(201);
    let mut events = Vec::new();
    for n in 0..3 {
        let id = ingest(&sqlite_node.base, n).await;
        let event = delivered(&api, &id).await;
        assert_eq!(event["deliveries"].as_array().map(Vec::len), Some(2));
        events.push(event);
    }
    sqlite_node.terminate();
    assert!(sqlite_node.wait(Duration::from_secs(20)).success());

    // 2. Export from the data directory (to a file, and to stdout).
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join("export.jsonl");
    let file_arg = file.to_str().expect("utf-8 path");
    let exported = switchboard(sqlite_dir.path(), &["export", "--output", file_arg], &[]);
    assert!(exported.status.success());
    let stderr = String::from_utf8_lossy(&exported.stderr);
    assert!(stderr.contains("master key"), "{stderr}");
    let text = std::fs::read_to_string(&file).expect("read export");
    let header: Value = serde_json::from_str(text.lines().next().expect("header")).expect("json");
    assert_eq!(header["switchboard_export"], 1);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("{\"table\":\"events\""))
            .count(),
        3
    );
    let to_stdout = switchboard(sqlite_dir.path(), &["export", "-o", "-"], &[]);
    assert!(to_stdout.status.success());
    let piped = String::from_utf8_lossy(&to_stdout.stdout);
    assert_eq!(piped.lines().count(), text.lines().count());
    assert!(
        piped
            .lines()
            .last()
            .expect("trailer")
            .contains("switchboard_export_end")
    );

    // 3. Import into PostgreSQL: refused with another master key (nothing written), then done.
    let pg_dir = tempfile::tempdir().expect("temp dir");
    let other_key = master_key();
    let refused = switchboard(
        pg_dir.path(),
        &["import", "--input", file_arg],
        &[
            ("SWITCHBOARD_DATABASE_URL", &database),
            ("SWITCHBOARD_MASTER_KEY", &other_key),
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("master key") && stderr.contains("--skip-key-check"),
        "{stderr}"
    );
    let pg_env = [
        ("SWITCHBOARD_DATABASE_URL", database.as_str()),
        ("SWITCHBOARD_MASTER_KEY", key.as_str()),
    ];
    let imported = switchboard(pg_dir.path(), &["import", "--input", file_arg], &pg_env);
    assert!(imported.status.success());
    let stdout = String::from_utf8_lossy(&imported.stdout);
    assert!(stdout.contains("PostgreSQL"), "{stdout}");
    let events_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("events "))
        .expect("events count");
    assert!(events_line.trim_end().ends_with(" 3"), "{stdout}");
    // A second import finds the store non-empty.
    let again = switchboard(pg_dir.path(), &["import", "--input", file_arg], &pg_env);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    // `migrate` reports the schema version and changes nothing.
    let migrated = switchboard(pg_dir.path(), &["migrate"], &pg_env);
    assert!(migrated.status.success());
    assert!(
        String::from_utf8_lossy(&migrated.stdout)
            .contains(&format!("schema version {}", header["schema_version"]))
    );

    // 4. A server on PostgreSQL with the same master key serves the imported data.
    let pg_node = Process::spawn_with(pg_dir.path(), &toml, "127.0.0.1:0", &pg_env);
    let api = ApiClient::new(&pg_node.base, Some(ADMIN_TOKEN));
    for before in &events {
        let id = before["id"].as_str().expect("id");
        let after = api.get(&format!("/v1/events/{id}")).await.ok(200).clone();
        assert_eq!(
            after["deliveries"], before["deliveries"],
            "deliveries of {id}"
        );
        assert_eq!(after["body"], before["body"]);
    }
    let destination = api.get("/v1/destinations/hooks").await.ok(200).clone();
    assert_eq!(destination["url"], receiver.url.as_str());
    let secret = api
        .get("/v1/destinations/hooks/secret")
        .await
        .ok(200)
        .clone();
    assert_eq!(secret["secret"], SECRET, "the sealed secret opens");
    // New events continue after the imported ones and use the imported route.
    let before = receiver.requests().len();
    let id = ingest(&pg_node.base, 99).await;
    let event = delivered(&api, &id).await;
    assert_eq!(event["deliveries"].as_array().map(Vec::len), Some(2));
    assert_eq!(receiver.requests().len(), before + 2);
    let listed = api.get("/v1/events?limit=10").await.ok(200).clone();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(4),
        "{listed}"
    );
    pg_node.terminate();
    assert!(pg_node.wait(Duration::from_secs(20)).success());
    drop(schema);
}
