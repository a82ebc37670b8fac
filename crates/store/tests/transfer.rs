//! `switchboard_store::transfer`: a store filled through the [`Store`] trait, exported to a
//! file and imported into another store (SQLite → PostgreSQL, PostgreSQL → SQLite, SQLite →
//! SQLite) reads back the same through the trait, and keeps working (new rows continue after
//! the imported ones). Refusals: a non-empty target, a wrong master key, a truncated file, a
//! schema version that differs.
//!
//! The PostgreSQL cases need `SWITCHBOARD_TEST_PG=postgres://user@host:port/database`; each
//! works in a schema of its own (`sb_test_…`, created for it and dropped after it). Without the
//! variable they report `SKIPPED …` on stderr and pass.

use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufReader, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgPoolOptions;
use switchboard_core::config::Durability;
use switchboard_core::time::UnixMillis;
use switchboard_store::postgres::PgStore;
use switchboard_store::sqlite::SqliteStore;
use switchboard_store::transfer::{self, Backend, Summary, TransferError};
use switchboard_store::vault::Vault;
use switchboard_store::{
    Claim, ClaimedDelivery, Completion, ConnectionRecord, DeliveryFilter, EventFilter,
    HealthRecord, IdempotencyState, NewAttempt, NewDelivery, NewEvent, NextStep, Rejection,
    ResourceRecord, Store, TokenRecord,
};

/// The variable naming the test server.
const ENV: &str = "SWITCHBOARD_TEST_PG";

/// A fixed instant synthetic timestamps are relative to.
const T0: UnixMillis = 1_700_000_000_000;

/// Events beyond the hand-made ones, so that tables span several export batches.
const BULK_EVENTS: usize = 250;

/// Idempotency keys, so that a composite-key table spans several export batches.
const BULK_KEYS: usize = 250;

// ---------------------------------------------------------------------------------------------
// PostgreSQL schemas (as in tests/postgres.rs)
// ---------------------------------------------------------------------------------------------

fn base_url(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {ENV}=postgres://… to run the PostgreSQL transfer tests"
            );
            None
        }
    }
}

fn unique_schema() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "sb_test_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn url_for_schema(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

/// Runs `body` with the URL of a fresh, empty schema and drops the schema afterwards (also when
/// `body` panics, whose panic is then passed on). Without a test server, returns at once.
async fn in_fresh_schema<F, Fut>(test: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(base) = base_url(test) else { return };
    let schema = unique_schema();
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .expect("connect to the test database");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create the test schema");
    let outcome = tokio::spawn(body(url_for_schema(&base, &schema))).await;
    let dropped = async {
        sqlx::query("SET lock_timeout = '30s'")
            .execute(&admin)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
    };
    if let Err(error) = dropped.await {
        let _ = writeln!(std::io::stderr(), "could not drop schema {schema}: {error}");
    }
    admin.close().await;
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("test task failed: {error}"),
        }
    }
}

async fn pg(url: &str) -> PgStore {
    PgStore::connect(url, 4).await.expect("connect store")
}

async fn sqlite(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, Durability::Normal)
        .await
        .expect("open store")
}

// ---------------------------------------------------------------------------------------------
// Filling a store through the trait
// ---------------------------------------------------------------------------------------------

fn delivery(id: &str, destination: &str, ordering_key: Option<&str>) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        route_id: format!("route-{destination}"),
        destination: destination.into(),
        ordering_key: ordering_key.map(Into::into),
    }
}

fn event(id: &str, received_at: UnixMillis, deliveries: Vec<NewDelivery>) -> NewEvent {
    NewEvent {
        id: id.into(),
        source: "github".into(),
        tenant: None,
        event_type: None,
        dedup_key: None,
        headers: vec![("content-type".into(), "application/json".into())],
        content_type: Some("application/json".into()),
        body: format!("{{\"event\":\"{id}\"}}").into_bytes(),
        received_at,
        forward_headers: Vec::new(),
        deliveries,
    }
}

fn claim<'a>(now: UnixMillis, owner: &'a str, destination: &'a str, ordered: bool) -> Claim<'a> {
    Claim {
        now,
        limit: 100,
        owner,
        lease_until: now + 60_000,
        exclude: &[],
        destination: Some(destination),
        ordered,
    }
}

fn completion(claimed: &ClaimedDelivery, owner: &str, next: NextStep) -> Completion {
    let (outcome, status_code, error) = match next {
        NextStep::Succeeded => ("delivered", Some(200), None),
        NextStep::RetryAt(_) => ("retryable", Some(503), Some("HTTP 503".to_string())),
        NextStep::Failed => ("permanent", Some(410), Some("HTTP 410".to_string())),
        NextStep::Filtered => ("filtered", None, None),
    };
    Completion {
        lease_owner: owner.into(),
        next,
        attempt: NewAttempt {
            delivery_id: claimed.id.clone(),
            event_id: claimed.event_id.clone(),
            destination: claimed.destination.clone(),
            attempt: claimed.attempts + 1,
            run_attempt: claimed.run_attempts + 1,
            started_at: T0 + 7,
            latency_ms: 42,
            outcome,
            status_code,
            error,
            request_url: format!("https://{}.example/hook", claimed.destination),
            response_headers: vec![("server".into(), "test".into())],
            // Not valid UTF-8: blobs must round-trip as bytes.
            response_body: vec![0, 159, 146, 150, b'o', b'k', 255],
        },
    }
}

/// The master key the test resources are sealed with.
fn vault() -> Vault {
    Vault::from_key(&[7; 32]).expect("vault")
}

/// Puts one of everything into `store`.
async fn fill(store: &dyn Store) {
    let mut first = event(
        "evt-1",
        T0,
        vec![
            delivery("dlv-1a", "alpha", None),
            delivery("dlv-1b", "beta", None),
        ],
    );
    first.tenant = Some("acme".into());
    first.event_type = Some("push".into());
    first.dedup_key = Some("gh-123".into());
    first.headers.push(("x-github-event".into(), "push".into()));
    first.body = vec![0, 1, 2, 254, 255, b'{', b'}'];
    first.content_type = Some("application/octet-stream".into());
    first.forward_headers = vec![("x-forward".into(), "yes".into())];
    let second = event("evt-2", T0 + 1, vec![delivery("dlv-2a", "alpha", None)]);
    let ordered: Vec<NewEvent> = (1..=3)
        .map(|i| {
            event(
                &format!("evt-o{i}"),
                T0 + 1 + i,
                vec![delivery(&format!("dlv-o{i}"), "ordered", Some("key"))],
            )
        })
        .collect();
    // Old, without deliveries: its body is pruned below.
    let old = event("evt-old", T0 - 100_000, Vec::new());
    let mut batch = vec![first, second, old];
    batch.extend(ordered);
    store.insert_events(&batch).await.expect("insert events");
    let bulk: Vec<NewEvent> = (0..BULK_EVENTS)
        .map(|i| {
            event(
                &format!("evt-bulk-{i:04}"),
                T0 + 10 + i as i64,
                vec![
                    delivery(&format!("dlv-bulk-{i:04}-a"), "bulk-a", None),
                    delivery(&format!("dlv-bulk-{i:04}-b"), "bulk-b", None),
                ],
            )
        })
        .collect();
    store
        .insert_events(&bulk)
        .await
        .expect("insert bulk events");

    // alpha: dlv-1a succeeds, dlv-2a fails for good; beta: dlv-1b retries later.
    let now = T0 + 1_000;
    let alpha = store
        .claim_due(&claim(now, "w1", "alpha", false))
        .await
        .expect("claim alpha");
    assert_eq!(alpha.len(), 2);
    let beta = store
        .claim_due(&claim(now, "w1", "beta", false))
        .await
        .expect("claim beta");
    assert_eq!(beta.len(), 1);
    let mut completions = Vec::new();
    for c in &alpha {
        let next = if c.id == "dlv-1a" {
            NextStep::Succeeded
        } else {
            NextStep::Failed
        };
        completions.push(completion(c, "w1", next));
    }
    completions.push(completion(&beta[0], "w1", NextStep::RetryAt(T0 + 50_000)));
    store.complete(&completions).await.expect("complete");
    // ordered: the head fails for good and holds the key; the other two wait.
    let head = store
        .claim_due(&claim(now, "w1", "ordered", true))
        .await
        .expect("claim ordered");
    assert_eq!(head.len(), 1);
    store
        .complete(&[completion(&head[0], "w1", NextStep::Failed)])
        .await
        .expect("complete ordered");
    // bulk-a: one delivery left in flight under a lease.
    let leased = store
        .claim_due(&Claim {
            limit: 1,
            ..claim(now, "w2", "bulk-a", false)
        })
        .await
        .expect("claim bulk");
    assert_eq!(leased.len(), 1);

    assert_eq!(
        store
            .prune_payloads(T0 - 1, 10, T0 + 2_000)
            .await
            .expect("prune"),
        1
    );

    for (id, revoked) in [("tok_a", false), ("tok_b", true)] {
        store
            .create_token(&TokenRecord {
                id: id.into(),
                name: format!("token {id}"),
                hash: format!("{id:0>64}"),
                prefix: format!("sb_{id}"),
                scopes: vec!["read".into(), "write".into()],
                created_at: T0,
                revoked_at: None,
            })
            .await
            .expect("create token");
        if revoked {
            assert!(store.revoke_token(id, T0 + 5).await.expect("revoke"));
        }
    }
    let vault = vault();
    for (kind, id) in [
        ("destination", "hooks"),
        ("source", "shop"),
        ("route", "r1"),
    ] {
        let spec = format!("{{\"kind\":\"{kind}\",\"id\":\"{id}\"}}");
        store
            .put_resource(
                &ResourceRecord {
                    kind: kind.into(),
                    id: id.into(),
                    sealed: vault.seal(spec.as_bytes()).expect("seal"),
                    created_at: T0,
                    updated_at: T0 + 1,
                },
                true,
            )
            .await
            .expect("put resource");
    }
    for (id, tokens) in [("gh", true), ("pending", false)] {
        store
            .put_connection(
                &ConnectionRecord {
                    id: id.into(),
                    provider: "github".into(),
                    auth_mode: "oauth2".into(),
                    params: "{}".into(),
                    settings: "{}".into(),
                    status: if tokens { "active" } else { "pending" }.into(),
                    scopes: "repo".into(),
                    credentials: Some(vault.seal(b"{\"client_secret\":\"s\"}").expect("seal")),
                    tokens: tokens.then(|| vault.seal(b"{\"access_token\":\"t\"}").expect("seal")),
                    expires_at: tokens.then_some(T0 + 3_600_000),
                    version: 3,
                    last_error: None,
                    created_at: T0,
                    updated_at: T0 + 2,
                },
                true,
            )
            .await
            .expect("put connection");
    }
    store
        .record_rejections(
            &[Rejection {
                source: "github".into(),
                received_at: T0,
                code: "invalid_signature".into(),
                detail: "signature mismatch".into(),
                headers: vec![("x-hub-signature-256".into(), "sha256=…".into())],
                body_len: 12,
            }],
            100,
        )
        .await
        .expect("record rejection");
    for i in 0..BULK_KEYS {
        let scope = format!("tok_a POST /v1/scope-{}", i % 2);
        let key = format!("key-{i:04}");
        let state = store
            .idempotency_begin(&scope, &key, "hash", T0)
            .await
            .expect("idempotency begin");
        assert_eq!(state, IdempotencyState::Started);
        // Every third key stays in progress (status and response NULL).
        if i % 3 != 0 {
            store
                .idempotency_finish(&scope, &key, 201, &[0xde, 0xad, i as u8])
                .await
                .expect("idempotency finish");
        }
    }
    store
        .put_health(&[HealthRecord {
            destination: "alpha".into(),
            state: "open".into(),
            consecutive_failures: 3,
            failing_since: Some(T0),
            last_failure_at: Some(T0 + 1),
            last_success_at: None,
            last_error: Some("HTTP 410".into()),
            opened_at: Some(T0 + 1),
            updated_at: T0 + 2,
        }])
        .await
        .expect("put health");
    // Two signed-out dashboard sessions; the first one's entry outlives the test's clock.
    store
        .record_sign_out("sess-live", i64::MAX, T0)
        .await
        .expect("record sign-out");
    store
        .record_sign_out("sess-short", T0 + 60_000, T0)
        .await
        .expect("record sign-out");
    // A node heartbeat: never exported.
    store
        .heartbeat("node-1", T0, 10_000)
        .await
        .expect("heartbeat");
}

/// Everything the trait can read back, as text (the records are compared by their `Debug`).
async fn snapshot(store: &dyn Store) -> String {
    let mut out = String::new();
    let events = store
        .list_events(&EventFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("list events");
    assert_eq!(events.len(), 6 + BULK_EVENTS);
    for e in &events {
        let full = store
            .get_event(&e.id)
            .await
            .expect("get event")
            .expect("event exists");
        writeln!(out, "{full:?}").expect("write");
        let attempts = store
            .list_attempts(Some(&e.id), None)
            .await
            .expect("list attempts");
        writeln!(out, "{attempts:?}").expect("write");
    }
    let deliveries = store
        .list_deliveries(&DeliveryFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("list deliveries");
    assert_eq!(deliveries.len(), 6 + 2 * BULK_EVENTS);
    for d in &deliveries {
        let one = store
            .get_delivery(&d.id)
            .await
            .expect("get delivery")
            .expect("delivery exists");
        writeln!(out, "{one:?}").expect("write");
    }
    // In no particular order.
    let mut counts: Vec<String> = store
        .delivery_counts()
        .await
        .expect("counts")
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    counts.sort();
    writeln!(out, "counts {counts:?}").expect("write");
    writeln!(
        out,
        "due {:?} / {:?}",
        store.next_due_at().await.expect("next due"),
        store.next_due_for("beta").await.expect("next due for")
    )
    .expect("write");
    let holds = store.list_holds("ordered").await.expect("holds");
    assert_eq!(holds.len(), 1, "the ordered key is held");
    writeln!(out, "holds {holds:?}").expect("write");
    let tokens = store.list_tokens().await.expect("tokens");
    assert_eq!(tokens.len(), 2);
    writeln!(out, "tokens {tokens:?}").expect("write");
    writeln!(
        out,
        "by hash {:?}",
        store.token_by_hash(&format!("{:0>64}", "tok_a")).await
    )
    .expect("write");
    let resources = store.list_resources().await.expect("resources");
    assert_eq!(resources.len(), 3);
    for r in &resources {
        let spec = vault()
            .open_sealed(&r.sealed)
            .expect("sealed resources open");
        writeln!(out, "{r:?} {}", String::from_utf8_lossy(&spec)).expect("write");
    }
    let connections = store.list_connections().await.expect("connections");
    assert_eq!(connections.len(), 2);
    for c in &connections {
        let open = |sealed: &Option<Vec<u8>>| {
            sealed.as_ref().map(|s| {
                String::from_utf8_lossy(&vault().open_sealed(s).expect("sealed connection opens"))
                    .into_owned()
            })
        };
        writeln!(
            out,
            "{c:?} {:?} {:?}",
            open(&c.credentials),
            open(&c.tokens)
        )
        .expect("write");
    }
    writeln!(
        out,
        "health {:?}",
        store.list_health().await.expect("health")
    )
    .expect("write");
    writeln!(
        out,
        "rejections {:?}",
        store
            .list_rejections("github", 100)
            .await
            .expect("rejections")
    )
    .expect("write");
    for session in ["sess-live", "sess-short", "sess-never"] {
        writeln!(
            out,
            "signed out {session} {:?}",
            store
                .is_signed_out(session, T0 + 1)
                .await
                .expect("is signed out")
        )
        .expect("write");
    }
    assert!(
        store
            .is_signed_out("sess-live", T0 + 1)
            .await
            .expect("is signed out")
    );
    for i in [0, 1, 2, BULK_KEYS - 1] {
        let scope = format!("tok_a POST /v1/scope-{}", i % 2);
        let state = store
            .idempotency_begin(&scope, &format!("key-{i:04}"), "hash", T0 + 1)
            .await
            .expect("idempotency");
        assert_ne!(state, IdempotencyState::Started, "key {i} was imported");
        writeln!(out, "idempotency {i} {state:?}").expect("write");
    }
    out
}

/// Compares two snapshots line by line, showing the first difference.
fn assert_same(actual: &str, expected: &str) {
    for (i, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
        assert_eq!(a, e, "snapshot line {}", i + 1);
    }
    assert_eq!(actual.lines().count(), expected.lines().count());
}

/// After an import: new rows get ids after the imported ones, in every table with a `seq`.
async fn keeps_working(store: &dyn Store) {
    let max_event_seq = store
        .list_events(&EventFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list")[0]
        .seq;
    let max_delivery_seq = store
        .list_deliveries(&DeliveryFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list")[0]
        .seq;
    store
        .insert_events(&[event(
            "evt-new",
            T0 + 100_000,
            vec![delivery("dlv-new", "fresh", None)],
        )])
        .await
        .expect("insert after import");
    let new = store
        .get_event("evt-new")
        .await
        .expect("get")
        .expect("stored");
    assert!(new.seq > max_event_seq, "{} > {max_event_seq}", new.seq);
    let new_delivery = store
        .get_delivery("dlv-new")
        .await
        .expect("get")
        .expect("stored");
    assert!(new_delivery.seq > max_delivery_seq);
    // Attempts and rejections get fresh keys too (a reused one would fail the insert).
    let claimed = store
        .claim_due(&claim(T0 + 100_000, "w3", "fresh", false))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    store
        .complete(&[completion(&claimed[0], "w3", NextStep::Succeeded)])
        .await
        .expect("complete after import");
    store
        .record_rejections(
            &[Rejection {
                source: "github".into(),
                received_at: T0 + 100_000,
                code: "invalid_signature".into(),
                detail: "again".into(),
                headers: Vec::new(),
                body_len: 1,
            }],
            100,
        )
        .await
        .expect("record rejection after import");
    assert_eq!(
        store
            .list_rejections("github", 10)
            .await
            .expect("rejections")
            .len(),
        2
    );
}

fn expected_counts(summary: &Summary) {
    assert_eq!(summary.count("events"), 6 + BULK_EVENTS as u64);
    assert_eq!(summary.count("deliveries"), 6 + 2 * BULK_EVENTS as u64);
    assert_eq!(summary.count("attempts"), 4);
    assert_eq!(summary.count("resources"), 3);
    assert_eq!(summary.count("tokens"), 2);
    assert_eq!(summary.count("connections"), 2);
    assert_eq!(summary.count("rejections"), 1);
    assert_eq!(summary.count("idempotency"), BULK_KEYS as u64);
    assert_eq!(summary.count("destination_health"), 1);
    assert_eq!(summary.count("ui_sign_outs"), 2);
}

async fn export_to(from: Backend<'_>, path: &Path) -> Summary {
    let file = std::fs::File::create(path).expect("create export file");
    let summary = transfer::export(from, std::io::BufWriter::new(file))
        .await
        .expect("export");
    expected_counts(&summary);
    summary
}

async fn import_from(
    into: Backend<'_>,
    path: &Path,
    key: Option<&Vault>,
) -> Result<Summary, TransferError> {
    let file = std::fs::File::open(path).expect("open export file");
    let check = |sealed: &[u8]| match key {
        Some(vault) => vault
            .open_sealed(sealed)
            .map(drop)
            .map_err(|e| e.to_string()),
        None => Ok(()),
    };
    transfer::import(into, BufReader::new(file), Some(&check)).await
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_to_postgres_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = sqlite(&dir.path().join("source")).await;
    fill(&source).await;
    let expected = snapshot(&source).await;
    let file = dir.path().join("export.jsonl");
    let exported = export_to(Backend::Sqlite(&source), &file).await;
    source.close().await;

    in_fresh_schema("sqlite_to_postgres_keeps_everything", |url| async move {
        let target = pg(&url).await;
        let imported = import_from(Backend::Postgres(&target), &file, Some(&vault()))
            .await
            .expect("import");
        assert_eq!(imported, exported);
        assert_same(&snapshot(&target).await, &expected);
        keeps_working(&target).await;

        // Importing again (now that the store has rows) is refused.
        let again = import_from(Backend::Postgres(&target), &file, None).await;
        assert!(
            matches!(again, Err(TransferError::NotEmpty(_))),
            "{again:?}"
        );
        target.close().await;
        drop(dir);
    })
    .await;
}

#[tokio::test]
async fn postgres_to_sqlite_keeps_everything() {
    in_fresh_schema("postgres_to_sqlite_keeps_everything", |url| async move {
        let source = pg(&url).await;
        fill(&source).await;
        let expected = snapshot(&source).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("export.jsonl");
        let exported = export_to(Backend::Postgres(&source), &file).await;
        source.close().await;

        let target = sqlite(&dir.path().join("target")).await;
        let imported = import_from(Backend::Sqlite(&target), &file, Some(&vault()))
            .await
            .expect("import");
        assert_eq!(imported, exported);
        assert_same(&snapshot(&target).await, &expected);
        keeps_working(&target).await;
        target.close().await;
    })
    .await;
}

/// Needs no PostgreSQL: the file format itself, and SQLite → SQLite.
#[tokio::test]
async fn sqlite_to_sqlite_keeps_everything_and_the_file_is_portable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = sqlite(&dir.path().join("source")).await;
    fill(&source).await;
    let expected = snapshot(&source).await;
    let file = dir.path().join("export.jsonl");
    let exported = export_to(Backend::Sqlite(&source), &file).await;
    source.close().await;

    let text = std::fs::read_to_string(&file).expect("read export");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len() as u64, exported.total() + 2);
    let header = &lines[0];
    assert_eq!(header["switchboard_export"], 1);
    assert_eq!(header["schema_version"], exported.schema_version);
    assert!(header["exported_at"].is_string());
    assert_eq!(
        header["blob_columns"]["events"],
        serde_json::json!(["body"])
    );
    let trailer = &lines[lines.len() - 1];
    assert_eq!(
        trailer["switchboard_export_end"]["events"],
        exported.count("events")
    );
    let rows = &lines[1..lines.len() - 1];
    assert!(
        rows.iter()
            .all(|l| l["table"] != "nodes" && l["table"] != "schema_migrations")
    );
    // Resources come first (the key check happens before anything is written).
    assert_eq!(rows[0]["table"], "resources");
    let first = rows
        .iter()
        .find(|l| l["table"] == "events" && l["row"]["id"] == "evt-1")
        .expect("evt-1 is exported");
    assert_eq!(first["row"]["body"], "AAEC/v97fQ==", "blobs are base64");
    assert_eq!(first["row"]["tenant"], "acme");
    assert!(first["row"]["body_pruned_at"].is_null());
    let held = rows
        .iter()
        .find(|l| l["table"] == "deliveries" && l["row"]["id"] == "dlv-o1")
        .expect("dlv-o1 is exported");
    assert_eq!(held["row"]["hold_released"], false, "flags are booleans");
    assert_eq!(held["row"]["exhausted"], true);
    // Primary-key order within a table.
    let seqs: Vec<i64> = rows
        .iter()
        .filter(|l| l["table"] == "events")
        .map(|l| l["row"]["seq"].as_i64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    let target = sqlite(&dir.path().join("target")).await;
    let imported = import_from(Backend::Sqlite(&target), &file, Some(&vault()))
        .await
        .expect("import");
    assert_eq!(imported, exported);
    assert_same(&snapshot(&target).await, &expected);
    keeps_working(&target).await;
    target.close().await;
}

#[tokio::test]
async fn import_into_a_non_empty_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = sqlite(&dir.path().join("source")).await;
    fill(&source).await;
    let file = dir.path().join("export.jsonl");
    export_to(Backend::Sqlite(&source), &file).await;
    source.close().await;

    let target = sqlite(&dir.path().join("target")).await;
    target
        .insert_events(&[event("evt-there", T0, Vec::new())])
        .await
        .expect("insert");
    let refused = import_from(Backend::Sqlite(&target), &file, None).await;
    match refused {
        Err(TransferError::NotEmpty(table)) => assert_eq!(table, "events"),
        other => panic!("expected NotEmpty, got {other:?}"),
    }
    assert_eq!(target.list_tokens().await.expect("tokens").len(), 0);
    target.close().await;

    in_fresh_schema(
        "import_into_a_non_empty_store_is_refused",
        |url| async move {
            let target = pg(&url).await;
            target
                .put_health(&[HealthRecord {
                    destination: "x".into(),
                    state: "closed".into(),
                    consecutive_failures: 0,
                    failing_since: None,
                    last_failure_at: None,
                    last_success_at: None,
                    last_error: None,
                    opened_at: None,
                    updated_at: T0,
                }])
                .await
                .expect("put health");
            let refused = import_from(Backend::Postgres(&target), &file, None).await;
            match refused {
                Err(TransferError::NotEmpty(table)) => assert_eq!(table, "destination_health"),
                other => panic!("expected NotEmpty, got {other:?}"),
            }
            target.close().await;
            drop(dir);
        },
    )
    .await;
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = sqlite(&dir.path().join("source")).await;
    fill(&source).await;
    let file = dir.path().join("export.jsonl");
    export_to(Backend::Sqlite(&source), &file).await;
    source.close().await;

    let target = sqlite(&dir.path().join("target")).await;
    let other = Vault::from_key(&[8; 32]).expect("vault");
    let refused = import_from(Backend::Sqlite(&target), &file, Some(&other)).await;
    match refused {
        Err(TransferError::KeyCheck(message)) => {
            assert!(message.contains("master key"), "{message}");
        }
        other => panic!("expected KeyCheck, got {other:?}"),
    }
    // Nothing was written: the same import with the right key goes through.
    import_from(Backend::Sqlite(&target), &file, Some(&vault()))
        .await
        .expect("import with the right key");
    target.close().await;
}

#[tokio::test]
async fn damaged_files_and_other_schema_versions_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = sqlite(&dir.path().join("source")).await;
    fill(&source).await;
    let file = dir.path().join("export.jsonl");
    let exported = export_to(Backend::Sqlite(&source), &file).await;
    source.close().await;
    let text = std::fs::read_to_string(&file).expect("read export");
    let lines: Vec<&str> = text.lines().collect();

    let attempt = |name: &str, content: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write variant");
        let target_dir = dir.path().join(format!("target-{name}"));
        async move {
            let target = sqlite(&target_dir).await;
            let result = import_from(Backend::Sqlite(&target), &path, None).await;
            target.close().await;
            result
        }
    };

    // Truncated: the trailer is missing.
    let truncated = lines[..lines.len() - 10].join("\n");
    match attempt("truncated", truncated).await {
        Err(TransferError::Incomplete(message)) => assert!(message.contains("trailer")),
        other => panic!("expected Incomplete, got {other:?}"),
    }
    // Another schema version (the target is at this build's).
    let newer = text.replacen(
        &format!("\"schema_version\":{}", exported.schema_version),
        &format!("\"schema_version\":{}", exported.schema_version - 1),
        1,
    );
    assert_ne!(newer, text);
    let older = exported.schema_version - 1;
    match attempt("older", newer).await {
        Err(TransferError::SchemaMismatch { file, target }) => {
            assert_eq!((file, target), (older, exported.schema_version));
        }
        // An older version this build cannot read at all.
        Err(TransferError::UnknownSchema(version))
            if !transfer::SCHEMA_VERSIONS.contains(&older) =>
        {
            assert_eq!(version, older);
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    let unknown = text.replacen(
        &format!("\"schema_version\":{}", exported.schema_version),
        "\"schema_version\":99",
        1,
    );
    match attempt("unknown", unknown).await {
        Err(TransferError::UnknownSchema(99)) => {}
        other => panic!("expected UnknownSchema, got {other:?}"),
    }
    // A row with a value of the wrong type names its line and column.
    let mut bad: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    bad[1] = bad[1].replacen("\"created_at\":", "\"created_at\":\"soon\",\"x\":", 1);
    match attempt("bad-row", bad.join("\n")).await {
        Err(error @ TransferError::Format { line: 2, .. }) => {
            assert!(error.to_string().contains("created_at"), "{error}");
        }
        other => panic!("expected Format at line 2, got {other:?}"),
    }
    match attempt("not-an-export", "{\"hello\":1}\n".into()).await {
        Err(TransferError::Format { line: 1, .. }) => {}
        other => panic!("expected Format, got {other:?}"),
    }
}
