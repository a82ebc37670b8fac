//! Data sync end to end: the real server, a connection to the local REST stand-in
//! (`support::records_api`: each pagination style, rate-limit headers, injected `500`s), and
//! real destination tables — a SQLite file, and PostgreSQL when `SWITCHBOARD_TEST_PG` is set.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::Config;

use crate::support::pg::Schema;
use crate::support::process::{ADMIN_TOKEN, Process};
use crate::support::records_api::{API_KEY, Item, RecordsApi};
use crate::support::{ApiClient, TestServer, eventually};

const PATIENCE: Duration = Duration::from_secs(120);

/// A server that knows the stand-in's provider, with a connection `rec` to it.
async fn server(
    api: &RecordsApi,
    tune: impl FnOnce(&mut Config),
) -> (TestServer, tempfile::TempDir) {
    let providers = tempfile::tempdir().expect("providers dir");
    std::fs::write(providers.path().join("records.toml"), api.provider()).expect("provider");
    let mut config = Config::default();
    config.security.allow_private_networks = true;
    config.server.admin_token = Some(ADMIN_TOKEN.into());
    config.connections.providers_dir = Some(providers.path().to_owned());
    config.connections.max_retries = 4;
    tune(&mut config);
    let server = TestServer::start(config).await;
    connect(&server.api()).await;
    (server, providers)
}

async fn connect(api: &ApiClient) {
    api.post(
        "/v1/connections",
        &json!({"id": "rec", "provider": "records", "credentials": {"api_key": API_KEY}}),
    )
    .await
    .ok(201);
}

/// `(records jq, pagination)` of a style.
fn style(name: &str, page_size: u32) -> (&'static str, Value) {
    match name {
        "cursor" => (
            ".data",
            json!({"style": "cursor", "cursor_path": ".next_cursor", "cursor_param": "cursor",
                   "limit_param": "limit", "page_size": page_size}),
        ),
        "offset" => (".data", json!({"style": "offset", "page_size": page_size})),
        "page" => (
            ".",
            json!({"style": "page", "limit_param": "per_page", "page_size": page_size}),
        ),
        "link" => (
            ".",
            json!({"style": "link", "limit_param": "per_page", "page_size": page_size}),
        ),
        other => panic!("no style {other}"),
    }
}

fn columns() -> Value {
    json!([
        {"name": "id", "type": "integer", "key": true},
        {"name": "title", "type": "text"},
        {"name": "rev", "type": "integer"},
    ])
}

/// A full sync of style `name` into `destination`.
fn spec(id: &str, name: &str, page_size: u32, destination: Value) -> Value {
    let (records, pagination) = style(name, page_size);
    json!({
        "id": id,
        "connection": "rec",
        "path": format!("{name}/items"),
        "pagination": pagination,
        "records": records,
        "key": ".id",
        "mapping": "{id, title, rev}",
        "destination": destination,
    })
}

fn sqlite_destination(path: &Path) -> Value {
    json!({"kind": "sqlite", "path": path, "table": "items", "columns": columns()})
}

/// Starts a run and waits until it ends; returns the run.
async fn run_to_end(api: &ApiClient, id: &str) -> Value {
    let started = api.post(&format!("/v1/syncs/{id}/run"), &json!({})).await;
    let run_id = started.ok(202)["id"].as_str().expect("run id").to_owned();
    wait_run(api, id, &run_id).await
}

/// Waits until run `run_id` of `id` is no longer running.
async fn wait_run(api: &ApiClient, id: &str, run_id: &str) -> Value {
    eventually(PATIENCE, &format!("run {run_id} to end"), || async {
        let runs = api.get(&format!("/v1/syncs/{id}/runs")).await;
        let run = runs.ok(200)["items"]
            .as_array()?
            .iter()
            .find(|r| r["id"] == run_id)?
            .clone();
        (run["status"] != "running").then_some(run)
    })
    .await
}

async fn sqlite_rows(path: &Path) -> Vec<Item> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("open destination");
    let rows: Vec<(i64, String, i64)> =
        sqlx::query_as("SELECT id, title, rev FROM items ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("read destination");
    pool.close().await;
    rows.into_iter()
        .map(|(id, title, rev)| Item {
            id: id as u64,
            title,
            rev: rev as u64,
        })
        .collect()
}

fn counts(run: &Value) -> [i64; 4] {
    ["created", "updated", "deleted", "failed"].map(|k| run[k].as_i64().expect("count"))
}

/// Each pagination style, through 500s the connection retries and rate-limit pauses: a full run
/// writes exactly the source's records; after edits, deletes and additions a second full run
/// writes exactly the new set, counting each change once.
#[tokio::test]
async fn each_pagination_style_syncs_exactly_the_source_into_sqlite() {
    let api = RecordsApi::start(1234, 7).await;
    let (server, _providers) = server(&api, |_| {}).await;
    let client = server.api();
    let tables = tempfile::tempdir().expect("tables dir");
    for name in ["cursor", "offset", "page", "link"] {
        let path = tables.path().join(format!("{name}.db"));
        let id = format!("items-{name}");
        client
            .post(
                "/v1/syncs",
                &spec(&id, name, 100, sqlite_destination(&path)),
            )
            .await
            .ok(201);
        let run = run_to_end(&client, &id).await;
        assert_eq!(run["status"], "succeeded", "{name}: {run}");
        assert_eq!(counts(&run), [1234, 0, 0, 0], "{name}: {run}");
        assert_eq!(run["pages"].as_i64(), Some(13), "{name}: {run}");
        assert_eq!(sqlite_rows(&path).await, api.items(), "{name}");
    }
    assert!(api.failed() > 0, "the stand-in injected failures");

    // Edits, deletes and additions propagate; unchanged records are not rewritten.
    api.update(1..=10);
    api.delete(20..=25);
    let added = api.add(3);
    for name in ["cursor", "offset", "page", "link"] {
        let path = tables.path().join(format!("{name}.db"));
        let run = run_to_end(&client, &format!("items-{name}")).await;
        assert_eq!(run["status"], "succeeded", "{name}: {run}");
        assert_eq!(counts(&run), [3, 10, 6, 0], "{name}: {run}");
        assert_eq!(
            run["unchanged"].as_i64(),
            Some(1234 - 10 - 6),
            "{name}: {run}"
        );
        let rows = sqlite_rows(&path).await;
        assert_eq!(rows, api.items(), "{name}");
        assert!(rows.iter().any(|r| r.id == added[0]));
        assert!(!rows.iter().any(|r| r.id == 20));
    }
    let sync = client.get("/v1/syncs/items-cursor").await;
    assert_eq!(sync.ok(200)["last_run"]["deleted"], 6);
    server.stop().await;
}

/// Incremental mode sends the cursor of the last successful run, reads only what changed,
/// and publishes each change as an event of the sync's source (routable like any event).
#[tokio::test]
async fn incremental_runs_read_only_changes_and_publish_them() {
    let api = RecordsApi::start(500, 0).await;
    let (server, _providers) = server(&api, |_| {}).await;
    let client = server.api();
    let tables = tempfile::tempdir().expect("tables dir");
    let path = tables.path().join("inc.db");
    let mut body = spec("inc", "cursor", 100, sqlite_destination(&path));
    body["mode"] = json!("incremental");
    body["incremental"] = json!({"cursor_field": ".rev", "param": "since"});
    body["publish_changes"] = json!(true);
    client.post("/v1/syncs", &body).await.ok(201);
    let run = run_to_end(&client, "inc").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(counts(&run), [500, 0, 0, 0]);
    assert!(api.queries().iter().all(|q| !q.contains("since=")));

    let high = api.items().iter().map(|i| i.rev).max().expect("records");
    api.update([3, 4, 5, 6, 7]);
    api.add(2);
    let run = run_to_end(&client, "inc").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(counts(&run), [2, 5, 0, 0], "{run}");
    assert_eq!(
        run["fetched"].as_i64(),
        Some(7),
        "only the changes are listed: {run}"
    );
    assert!(
        api.queries()
            .last()
            .is_some_and(|q| q.contains(&format!("since={high}&"))),
        "{:?}",
        api.queries().last()
    );
    assert_eq!(sqlite_rows(&path).await, api.items());

    let created = client
        .get("/v1/events?source=inc&type=record.created&limit=500")
        .await;
    assert_eq!(created.ok(200)["items"].as_array().map(Vec::len), Some(500));
    let updated = client
        .get("/v1/events?source=inc&type=record.updated")
        .await;
    let updated = updated.ok(200)["items"].as_array().expect("items").clone();
    assert_eq!(updated.len(), 5);
    server.stop().await;
}

/// A paused run (max_records) is continued by the next run; a cancelled run ends without
/// deleting anything.
#[tokio::test]
async fn limits_pause_and_cancel_stops_without_deleting() {
    let api = RecordsApi::start(1000, 0).await;
    let (server, _providers) = server(&api, |_| {}).await;
    let client = server.api();
    let tables = tempfile::tempdir().expect("tables dir");
    let path = tables.path().join("lim.db");
    let mut body = spec("lim", "offset", 100, sqlite_destination(&path));
    body["max_records"] = json!(300);
    client.post("/v1/syncs", &body).await.ok(201);
    let first = run_to_end(&client, "lim").await;
    assert_eq!(first["status"], "paused", "{first}");
    assert_eq!(first["fetched"].as_i64(), Some(300));
    let mut run = first.clone();
    for _ in 0..3 {
        run = run_to_end(&client, "lim").await;
        assert_eq!(run["id"], first["id"], "the paused run is continued");
    }
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["created"].as_i64(), Some(1000));
    assert_eq!(sqlite_rows(&path).await, api.items());

    // A slow listing, cancelled mid-way after a delete at the source: nothing is deleted.
    api.delete([1]);
    api.set_delay(Duration::from_millis(200));
    let started = client.post("/v1/syncs/lim/run", &json!({})).await;
    let run_id = started.ok(202)["id"].as_str().expect("id").to_owned();
    assert_ne!(run_id, first["id"].as_str().expect("id"));
    client
        .post("/v1/syncs/lim/run", &json!({}))
        .await
        .problem(409, "sync_running");
    client
        .post("/v1/syncs/lim/cancel", &json!({}))
        .await
        .ok(202);
    let cancelled = wait_run(&client, "lim", &run_id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["deleted"].as_i64(), Some(0));
    assert_eq!(
        sqlite_rows(&path).await.len(),
        1000,
        "a cancelled run never deletes"
    );
    client
        .post("/v1/syncs/lim/cancel", &json!({}))
        .await
        .problem(409, "no_run");
    client
        .post("/v1/syncs/nope/run", &json!({}))
        .await
        .problem(404, "not_found");
    server.stop().await;
}

/// 100,000 records: a full sync into SQLite, and into PostgreSQL when `SWITCHBOARD_TEST_PG` is
/// set, holds exactly the source's records; an incremental follow-up picks up the changes.
#[tokio::test]
async fn a_hundred_thousand_records_into_sqlite_and_postgres() {
    let api = RecordsApi::start(100_000, 13).await;
    let (server, _providers) = server(&api, |_| {}).await;
    let client = server.api();
    let tables = tempfile::tempdir().expect("tables dir");
    let path = tables.path().join("big.db");
    client
        .post(
            "/v1/syncs",
            &spec("big", "cursor", 1000, sqlite_destination(&path)),
        )
        .await
        .ok(201);
    let run = run_to_end(&client, "big").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(counts(&run), [100_000, 0, 0, 0]);
    assert_eq!(sqlite_rows(&path).await, api.items());

    let Ok(pg) = std::env::var("SWITCHBOARD_TEST_PG") else {
        eprintln!(
            "SKIPPED a_hundred_thousand_records_into_sqlite_and_postgres (PostgreSQL part): set SWITCHBOARD_TEST_PG"
        );
        server.stop().await;
        return;
    };
    let schema = Schema::create(&pg, "sync_big");
    let table = format!("{}.items", schema_name(&schema));
    let mut body = spec(
        "big-pg",
        "cursor",
        1000,
        json!({"kind": "postgres", "url": pg, "table": table, "columns": columns()}),
    );
    body["mode"] = json!("incremental");
    body["incremental"] = json!({"cursor_field": ".rev", "param": "since"});
    client.post("/v1/syncs", &body).await.ok(201);
    let run = run_to_end(&client, "big-pg").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(counts(&run), [100_000, 0, 0, 0]);
    assert_eq!(pg_rows(&pg, &table).await, api.items());
    api.update(50_000..=50_099);
    api.add(10);
    let run = run_to_end(&client, "big-pg").await;
    assert_eq!(counts(&run), [10, 100, 0, 0], "{run}");
    assert_eq!(pg_rows(&pg, &table).await, api.items());
    server.stop().await;
}

fn schema_name(schema: &Schema) -> String {
    let url = schema.url();
    url.rsplit("search_path%3D")
        .next()
        .expect("schema in url")
        .to_owned()
}

async fn pg_rows(url: &str, table: &str) -> Vec<Item> {
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, title, rev FROM {table} ORDER BY id"
    )))
    .fetch_all(&pool)
    .await
    .expect("read destination");
    pool.close().await;
    rows.into_iter()
        .map(|(id, title, rev)| Item {
            id: id as u64,
            title,
            rev: rev as u64,
        })
        .collect()
}

/// `kill -9` in the middle of a run, then a restart: the interrupted run resumes from its last
/// checkpoint by itself and ends with exactly the source's records, and exactly one
/// `record.created` event per record.
#[tokio::test]
async fn kill_9_mid_run_then_restart_resumes_without_duplicates_or_loss() {
    let api = RecordsApi::start(20_000, 0).await;
    api.set_delay(Duration::from_millis(15));
    let dir = tempfile::tempdir().expect("data dir");
    let providers = dir.path().join("providers");
    std::fs::create_dir_all(&providers).expect("providers dir");
    std::fs::write(providers.join("records.toml"), api.provider()).expect("provider");
    let table = dir.path().join("crash.db");
    let config = format!(
        r#"
[security]
allow_private_networks = true

[connections]
providers_dir = "{}"

[[syncs]]
id = "crash"
connection = "rec"
path = "cursor/items"
pagination = {{ style = "cursor", cursor_path = ".next_cursor", cursor_param = "cursor", limit_param = "limit", page_size = 100 }}
records = ".data"
key = ".id"
mapping = "{{id, title, rev}}"
publish_changes = true
destination = {{ kind = "sqlite", path = "{}", table = "items", columns = [
  {{ name = "id", type = "integer", key = true }}, {{ name = "title" }}, {{ name = "rev", type = "integer" }} ] }}
"#,
        providers.display(),
        table.display()
    );
    let first = Process::spawn(dir.path(), &config);
    let client = ApiClient::new(&first.base, Some(ADMIN_TOKEN));
    connect(&client).await;
    let started = client.post("/v1/syncs/crash/run", &json!({})).await;
    let run_id = started.ok(202)["id"].as_str().expect("id").to_owned();
    eventually(PATIENCE, "the run to be half-way", || async {
        let runs = client.get("/v1/syncs/crash/runs").await;
        let pages = runs.ok(200)["items"][0]["pages"].as_i64()?;
        (pages >= 60).then_some(())
    })
    .await;
    first.kill_hard();

    let second = Process::spawn(dir.path(), &config);
    let client = ApiClient::new(&second.base, Some(ADMIN_TOKEN));
    let run = wait_run(&client, "crash", &run_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let runs = client.get("/v1/syncs/crash/runs").await;
    assert_eq!(
        runs.ok(200)["items"].as_array().map(Vec::len),
        Some(1),
        "the interrupted run was resumed, not restarted"
    );
    assert_eq!(run["created"].as_i64(), Some(20_000), "{run}");
    assert_eq!(sqlite_rows(&table).await, api.items());
    // One created event per record, however often a page was written.
    let mut events = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/events?source=crash&type=record.created&limit=500".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = client.get(&path).await;
        let page = page.ok(200);
        events += page["items"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(events, 20_000);
    second.terminate();
    second.wait(Duration::from_secs(30));
}

/// Runs the CLI against `server` with the admin token.
async fn cli(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .env_remove("SWITCHBOARD_DATA_DIR")
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_URL", &server.base)
        .env("SWITCHBOARD_TOKEN", ADMIN_TOKEN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run switchboard");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `switchboard syncs list|show|run --wait|runs|cancel` through the API.
#[tokio::test]
async fn the_cli_runs_syncs_and_reads_the_run_log() {
    let api = RecordsApi::start(250, 0).await;
    let (server, _providers) = server(&api, |_| {}).await;
    let tables = tempfile::tempdir().expect("tables dir");
    let path = tables.path().join("cli.db");
    server
        .api()
        .post(
            "/v1/syncs",
            &spec("cli", "page", 100, sqlite_destination(&path)),
        )
        .await
        .ok(201);
    let (code, out, err) = cli(&server, &["syncs", "run", "cli", "--wait"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("succeeded"), "{out}");
    let (code, out, err) = cli(&server, &["syncs", "list"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("ID") && out.contains("cli") && out.contains("sqlite"),
        "{out}"
    );
    let (code, out, _) = cli(&server, &["--json", "syncs", "runs", "cli"]).await;
    assert_eq!(code, 0);
    let runs: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(runs["items"][0]["created"], 250, "{runs}");
    let (code, out, _) = cli(&server, &["syncs", "show", "cli"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("managed_by") && out.contains("succeeded"),
        "{out}"
    );
    let (code, _, err) = cli(&server, &["syncs", "cancel", "cli"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no run in progress"), "{err}");
    let (code, _, err) = cli(&server, &["syncs", "show", "nope"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no sync `nope`"), "{err}");
    assert_eq!(sqlite_rows(&path).await, api.items());
    server.stop().await;
}

/// A cron schedule starts runs by itself; a failing run (the list endpoint answers 404)
/// records its error, never deletes, and publishes the operational event `sync.failed`.
#[tokio::test]
async fn scheduled_runs_start_and_failures_are_reported() {
    let api = RecordsApi::start(50, 0).await;
    let (server, _providers) = server(&api, |_| {}).await;
    let client = server.api();
    let tables = tempfile::tempdir().expect("tables dir");
    let path = tables.path().join("cron.db");
    let mut body = spec("cron", "offset", 100, sqlite_destination(&path));
    body["schedule"] = json!("* * * * * *");
    client.post("/v1/syncs", &body).await.ok(201);
    let run = eventually(PATIENCE, "a scheduled run to succeed", || async {
        let runs = client.get("/v1/syncs/cron/runs").await;
        runs.ok(200)["items"]
            .as_array()?
            .iter()
            .find(|r| r["trigger"] == "schedule" && r["status"] == "succeeded")
            .cloned()
    })
    .await;
    assert_eq!(run["created"].as_i64(), Some(50), "{run}");
    assert_eq!(sqlite_rows(&path).await, api.items());

    let mut broken = spec("broken", "offset", 100, sqlite_destination(&path));
    broken["path"] = json!("missing/items");
    client.post("/v1/syncs", &broken).await.ok(201);
    let run = run_to_end(&client, "broken").await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"].as_str().is_some_and(|e| e.contains("404")),
        "{run}"
    );
    assert_eq!(
        sqlite_rows(&path).await.len(),
        50,
        "a failed run deletes nothing"
    );
    eventually(PATIENCE, "the sync.failed event", || async {
        let events = client
            .get("/v1/events?source=switchboard&type=sync.failed")
            .await;
        (events.ok(200)["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    // The health document shows the failed sync and is degraded by it.
    let health = client.get("/v1/health").await;
    let health = health.ok(200);
    let broken = health["syncs"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "broken"))
        .unwrap_or_else(|| panic!("broken in {health}"));
    assert_eq!(broken["status"], "failed", "{health}");
    assert!(
        broken["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("404"))
    );
    assert_eq!(health["status"], "degraded", "{health}");
    server.stop().await;
}

/// Two-way sync between two REST APIs under each conflict policy: changes on either side reach
/// the other, a write we made is not read back as a change (a second run writes nothing), and a
/// record changed on both sides goes the policy's way — or is parked for review (`manual`).
#[tokio::test]
async fn two_way_sync_under_each_conflict_policy() {
    for policy in ["source_wins", "destination_wins", "latest_wins", "manual"] {
        let a = RecordsApi::start(20, 0).await;
        let b = RecordsApi::start(0, 0).await;
        let providers = tempfile::tempdir().expect("providers");
        std::fs::write(
            providers.path().join("a.toml"),
            a.provider().replace("\"records\"", "\"side-a\""),
        )
        .expect("a");
        std::fs::write(
            providers.path().join("b.toml"),
            b.provider().replace("\"records\"", "\"side-b\""),
        )
        .expect("b");
        let mut config = Config::default();
        config.security.allow_private_networks = true;
        config.server.admin_token = Some(ADMIN_TOKEN.into());
        config.connections.providers_dir = Some(providers.path().to_owned());
        let server = TestServer::start(config).await;
        let client = server.api();
        for (id, provider) in [("a", "side-a"), ("b", "side-b")] {
            client
                .post(
                    "/v1/connections",
                    &json!({"id": id, "provider": provider, "credentials": {"api_key": API_KEY}}),
                )
                .await
                .ok(201);
        }
        client
            .post(
                "/v1/syncs",
                &json!({
                    "id": "both", "connection": "a", "path": "page/items",
                    "pagination": {"style": "page", "limit_param": "per_page", "page_size": 7},
                    "key": ".id", "mapping": "{id, title}",
                    "destination": {"kind": "rest", "connection": "b", "path": "page/items",
                        "pagination": {"style": "page", "limit_param": "per_page", "page_size": 7},
                        "key": ".id", "mapping": "{id, title}", "updated_at": ".rev"},
                    "two_way": {"conflict": policy, "updated_at": ".rev"},
                }),
            )
            .await
            .ok(201);
        let run = run_to_end(&client, "both").await;
        assert_eq!(run["status"], "succeeded", "{policy}: {run}");
        assert_eq!(counts(&run), [20, 0, 0, 0], "{policy}: {run}");
        assert_eq!(b.titles(), a.titles(), "{policy}");
        // Loop prevention: what we wrote reads back as unchanged.
        let run = run_to_end(&client, "both").await;
        assert_eq!(counts(&run), [0, 0, 0, 0], "{policy}: {run}");
        assert_eq!(run["unchanged"].as_i64(), Some(20), "{policy}: {run}");

        // One-sided changes go across both ways.
        a.retitle(1, "edited in A");
        b.retitle(2, "edited in B");
        a.delete([3]);
        b.put(100, "new in B");
        let run = run_to_end(&client, "both").await;
        assert_eq!(counts(&run), [1, 2, 1, 0], "{policy}: {run}");
        assert_eq!(b.titles(), a.titles(), "{policy}");
        assert!(a.titles().contains(&(100, "new in B".into())), "{policy}");
        assert!(b.titles().contains(&(1, "edited in A".into())), "{policy}");

        // Both sides changed record 5; B changed it last.
        a.retitle(5, "A's version");
        b.retitle(5, "B's version");
        let run = run_to_end(&client, "both").await;
        assert_eq!(run["status"], "succeeded", "{policy}: {run}");
        let title = |api: &RecordsApi| {
            api.titles()
                .into_iter()
                .find(|(id, _)| *id == 5)
                .map(|(_, t)| t)
                .expect("record 5")
        };
        let conflicts = client.get("/v1/syncs/both/conflicts").await;
        let parked = conflicts.ok(200)["items"]
            .as_array()
            .expect("items")
            .clone();
        match policy {
            "source_wins" => assert_eq!(
                (title(&a), title(&b)),
                ("A's version".into(), "A's version".into())
            ),
            "destination_wins" | "latest_wins" => {
                assert_eq!(
                    (title(&a), title(&b)),
                    ("B's version".into(), "B's version".into())
                )
            }
            _ => {
                assert_eq!(
                    (title(&a), title(&b)),
                    ("A's version".into(), "B's version".into())
                );
                assert_eq!(parked.len(), 1, "{parked:?}");
                assert_eq!(parked[0]["key"], 5);
                assert_eq!(parked[0]["source"]["title"], "A's version");
                assert_eq!(parked[0]["destination"]["title"], "B's version");
                let (code, out, err) = cli(&server, &["syncs", "conflicts", "both"]).await;
                assert_eq!(code, 0, "{err}");
                assert!(
                    out.starts_with("KEY") && out.contains("B's version"),
                    "{out}"
                );
                // Edited to agree, the conflict clears.
                a.retitle(5, "B's version");
                let run = run_to_end(&client, "both").await;
                assert_eq!(counts(&run), [0, 0, 0, 0], "{run}");
                let conflicts = client.get("/v1/syncs/both/conflicts").await;
                assert_eq!(conflicts.ok(200)["items"].as_array().map(Vec::len), Some(0));

                // Resolved by choosing a side: the next run writes the winner to the other.
                a.retitle(6, "A wins");
                b.retitle(6, "B loses");
                a.retitle(7, "A loses");
                b.retitle(7, "B wins");
                run_to_end(&client, "both").await;
                let conflicts = client.get("/v1/syncs/both/conflicts").await;
                assert_eq!(conflicts.ok(200)["items"].as_array().map(Vec::len), Some(2));
                client
                    .post(
                        "/v1/syncs/both/conflicts/resolve",
                        &json!({"key": 9999, "take": "source"}),
                    )
                    .await
                    .problem(404, "not_found");
                let resolved = client
                    .post(
                        "/v1/syncs/both/conflicts/resolve",
                        &json!({"key": 6, "take": "source"}),
                    )
                    .await;
                let run_id = resolved.ok(200)["run"]["id"]
                    .as_str()
                    .expect("a run applies it")
                    .to_owned();
                let run = wait_run(&client, "both", &run_id).await;
                assert_eq!(counts(&run), [0, 1, 0, 0], "{run}");
                let title_of = |api: &RecordsApi, id: u64| {
                    api.titles()
                        .into_iter()
                        .find(|(i, _)| *i == id)
                        .map(|(_, t)| t)
                        .expect("record")
                };
                assert_eq!(
                    (title_of(&a, 6), title_of(&b, 6)),
                    ("A wins".into(), "A wins".into())
                );
                let (code, out, err) = cli(
                    &server,
                    &[
                        "syncs",
                        "resolve",
                        "both",
                        "--key",
                        "7",
                        "--take",
                        "destination",
                        "--no-run",
                    ],
                )
                .await;
                assert_eq!(code, 0, "{err}");
                assert!(out.contains("destination's version wins"), "{out}");
                let run = run_to_end(&client, "both").await;
                assert_eq!(counts(&run), [0, 1, 0, 0], "{run}");
                assert_eq!(
                    (title_of(&a, 7), title_of(&b, 7)),
                    ("B wins".into(), "B wins".into())
                );
                let conflicts = client.get("/v1/syncs/both/conflicts").await;
                assert_eq!(conflicts.ok(200)["items"].as_array().map(Vec::len), Some(0));
                // And from the dashboard's sync page.
                a.retitle(8, "A8");
                b.retitle(8, "B8");
                run_to_end(&client, "both").await;
                let browser = crate::ui::Browser::signed_in(&server.base, ADMIN_TOKEN).await;
                let page = browser.page("/ui/syncs/both").await;
                assert!(
                    page.contains("Conflicts parked for review")
                        && page.contains("Keep destination"),
                    "{page}"
                );
                let csrf = browser.csrf().await;
                let resolved = browser
                    .post(
                        "/ui/syncs/both/resolve",
                        &[("csrf", &csrf), ("key", "8"), ("take", "destination")],
                    )
                    .await;
                assert_eq!(resolved.status(), 303);
                eventually(PATIENCE, "record 8 written back to A", || async {
                    (title_of(&a, 8) == "B8").then_some(())
                })
                .await;
                let newest = client.get("/v1/syncs/both/runs?limit=1").await;
                let newest = newest.ok(200)["items"][0]["id"]
                    .as_str()
                    .expect("run")
                    .to_owned();
                wait_run(&client, "both", &newest).await;
                // Settled: nothing more to write.
                let run = run_to_end(&client, "both").await;
                assert_eq!(counts(&run), [0, 0, 0, 0], "{run}");
            }
        }
        if policy != "manual" {
            assert!(parked.is_empty(), "{policy}: {parked:?}");
            let run = run_to_end(&client, "both").await;
            assert_eq!(counts(&run), [0, 0, 0, 0], "{policy}: settled: {run}");
        }
        server.stop().await;
    }
}

/// A REST API as destination: created records are POSTed, changed ones PUT, vanished ones
/// DELETEd, through the destination's connection.
#[tokio::test]
async fn a_rest_api_destination_gets_creates_updates_and_deletes() {
    let a = RecordsApi::start(30, 5).await;
    let b = RecordsApi::start(0, 0).await;
    let providers = tempfile::tempdir().expect("providers");
    std::fs::write(
        providers.path().join("a.toml"),
        a.provider().replace("\"records\"", "\"side-a\""),
    )
    .expect("a");
    std::fs::write(
        providers.path().join("b.toml"),
        b.provider().replace("\"records\"", "\"side-b\""),
    )
    .expect("b");
    let mut config = Config::default();
    config.security.allow_private_networks = true;
    config.server.admin_token = Some(ADMIN_TOKEN.into());
    config.connections.providers_dir = Some(providers.path().to_owned());
    let server = TestServer::start(config).await;
    let client = server.api();
    for (id, provider) in [("a", "side-a"), ("b", "side-b")] {
        client
            .post(
                "/v1/connections",
                &json!({"id": id, "provider": provider, "credentials": {"api_key": API_KEY}}),
            )
            .await
            .ok(201);
    }
    client
        .post(
            "/v1/syncs",
            &json!({
                "id": "push", "connection": "a", "path": "offset/items",
                "pagination": {"style": "offset", "page_size": 8}, "records": ".data",
                "key": ".id", "mapping": "{id, title}",
                "destination": {"kind": "rest", "connection": "b", "path": "offset/items"},
            }),
        )
        .await
        .ok(201);
    let run = run_to_end(&client, "push").await;
    assert_eq!(counts(&run), [30, 0, 0, 0], "{run}");
    assert_eq!(b.titles(), a.titles());
    a.retitle(4, "changed");
    a.delete([7, 8]);
    let run = run_to_end(&client, "push").await;
    assert_eq!(counts(&run), [0, 1, 2, 0], "{run}");
    assert_eq!(b.titles(), a.titles());
    server.stop().await;
}

/// The dashboard lists sync jobs with their newest run, starts one with "Run now" and shows its
/// history; a read token sees the page without the button.
#[tokio::test]
async fn the_dashboard_lists_syncs_runs_them_and_shows_their_history() {
    let api = RecordsApi::start(30, 0).await;
    let (server, _providers) = server(&api, |_| {}).await;
    let client = server.api();
    let tables = tempfile::tempdir().expect("tables dir");
    let path = tables.path().join("ui.db");
    client
        .post(
            "/v1/syncs",
            &spec("ui-sync", "offset", 10, sqlite_destination(&path)),
        )
        .await
        .ok(201);
    let browser = crate::ui::Browser::signed_in(&server.base, ADMIN_TOKEN).await;
    let list = browser.page("/ui/syncs").await;
    assert!(
        list.contains("ui-sync") && list.contains("never run"),
        "{list}"
    );
    assert!(list.contains("Run now"), "{list}");
    let csrf = browser.csrf().await;
    let started = browser
        .post("/ui/syncs/ui-sync/run", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(started.status(), reqwest::StatusCode::SEE_OTHER);
    eventually(PATIENCE, "the run to succeed", || async {
        let runs = client.get("/v1/syncs/ui-sync/runs").await;
        (runs.ok(200)["items"][0]["status"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(sqlite_rows(&path).await, api.items());
    let detail = browser.page("/ui/syncs/ui-sync").await;
    assert!(detail.contains("succeeded"), "{detail}");
    assert!(detail.contains("30 created"), "{detail}");
    // Without the session's CSRF token nothing starts.
    let refused = browser
        .post("/ui/syncs/ui-sync/run", &[("csrf", "wrong")])
        .await;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    server.stop().await;
}
