//! The store conformance suite run against [`PgStore`], plus PostgreSQL-specific checks: several
//! nodes migrating, claiming and de-duplicating against one database at once, and schema
//! versioning.
//!
//! The tests need a PostgreSQL server: `SWITCHBOARD_TEST_PG=postgres://user@host:port/database`.
//! Each test works in a schema of its own (`sb_test_…`, created for it and dropped after it), so
//! tests run in parallel and leave nothing behind. Without the variable every test reports
//! `SKIPPED …` on stderr and passes.

mod conformance;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use switchboard_core::DeliveryStatus;
use switchboard_store::postgres::PgStore;
use switchboard_store::{InsertOutcome, NewEvent, Store, StoreError};

/// The variable naming the test server.
const ENV: &str = "SWITCHBOARD_TEST_PG";

/// Connections per store: more than one, so that a store's own statements can overlap.
const POOL: u32 = 4;

/// The test server's URL, or `None` after reporting the test as skipped.
fn base_url(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            // Straight to the process's stderr, past the test harness's capture, so that the
            // skip is visible in a plain `cargo test` run.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: set {ENV}=postgres://… to run the PostgreSQL store tests"
            );
            None
        }
    }
}

/// A schema name no other test (of this or another process) uses.
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

/// `base` with the schema as the connections' `search_path`.
fn url_for_schema(base: &str, schema: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-csearch_path%3D{schema}")
}

/// A direct pool on the schema, for looking under the store.
async fn raw_pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect to the test database")
}

/// A store on the schema of `url`.
async fn connect(url: &str) -> PgStore {
    PgStore::connect(url, POOL).await.expect("connect store")
}

/// Runs `body` with the URL of a fresh, empty schema, and drops the schema afterwards, also
/// when `body` panics (the panic is then passed on). Returns without running `body` when no
/// test server is configured.
async fn in_fresh_schema<F, Fut>(test: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(base) = base_url(test) else { return };
    let schema = unique_schema();
    let admin = raw_pool(&base).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create the test schema");
    let outcome = tokio::spawn(body(url_for_schema(&base, &schema))).await;
    // A panicking body may leave a connection idle in a transaction for a moment: wait for its
    // locks, but not forever.
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

/// One `#[tokio::test]` per conformance case, each on a store in a fresh schema.
macro_rules! conformance_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                in_fresh_schema(stringify!($case), |url| async move {
                    let store = connect(&url).await;
                    conformance::$case(&store).await;
                    store.close().await;
                })
                .await;
            }
        )*
    };
}

conformance_tests!(
    insert_and_read_events,
    failed_batch_stores_nothing,
    claim_due_leases_due_work,
    complete_records_attempts_and_moves_deliveries,
    release_leases_by_owner_and_by_expiry,
    replay_requeues_for_a_fresh_run,
    counts_due_time_and_delivery_listing,
    large_batch_is_claimed_exactly_once,
    duplicates_are_detected_per_source,
    rejections_are_bounded_per_source,
    idempotency_keys_replay_and_expire,
    ordered_claims_respect_keys_and_holds,
    exhausted_deliveries_are_marked,
    added_deliveries_and_due_times,
    health_records_round_trip,
    payload_pruning_spares_pending_work,
    node_heartbeats_count_live_nodes,
    unrouted_events_are_listed_apart,
    claim_many_claims_per_destination,
    leases_have_one_holder,
    connections_round_trip_and_swap_tokens,
    oauth_states_are_single_use,
    feed_follows_commit_order,
    overview_reports_sources_backlog_nodes_and_leases,
    claimed_deliveries_carry_the_events_correlation,
    sealed_values_are_listed_and_swapped,
    connection_config_updates_keep_token_swaps_valid,
    sync_runs_checkpoints_and_the_records_cache,
    audit_entries_filter_page_and_prune,
    retention_prunes_exactly_what_is_due,
    schema_version_and_nodes_are_reported,
    body_search_finds_matches_anywhere_in_history,
    histograms_count_rows_per_bucket,
    sign_outs_hold_until_expiry_and_are_pruned,
    parked_conflicts_resolve_into_the_records_cache,
);

/// `(version, name, applied_at)` rows of `schema_migrations`.
async fn migrations(url: &str) -> Vec<(i64, String, i64)> {
    let pool = raw_pool(url).await;
    let rows =
        sqlx::query_as("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .expect("read schema_migrations");
    pool.close().await;
    rows
}

/// The migration files of one adapter, by name.
fn migration_files(adapter: &str) -> Vec<String> {
    let dir = format!("{}/migrations/{adapter}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|entry| {
            let entry = entry.expect("directory entry");
            entry.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Both adapters have the same migrations, by version and name, so both report the same
/// schema version. (Needs no database.)
#[test]
fn migration_versions_match_sqlite() {
    let postgres = migration_files("postgres");
    assert_eq!(postgres, migration_files("sqlite"));
    assert!(!postgres.is_empty());
}

/// Four nodes starting together on an empty schema: all start, and every migration is applied
/// exactly once; a later start applies nothing again.
#[tokio::test]
async fn migrations_apply_once_when_nodes_start_together() {
    in_fresh_schema(
        "migrations_apply_once_when_nodes_start_together",
        |url| async move {
            let starts: Vec<_> = (0..4)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move { PgStore::connect(&url, 2).await })
                })
                .collect();
            let mut stores = Vec::new();
            for start in starts {
                stores.push(start.await.expect("start task").expect("concurrent start"));
            }

            let applied = migrations(&url).await;
            let versions: Vec<i64> = applied.iter().map(|(version, _, _)| *version).collect();
            // The versions the files carry (numbers may skip one reserved by another change).
            let expected: Vec<i64> = migration_files("postgres")
                .iter()
                .map(|name| name[..4].parse().expect("NNNN_name.sql"))
                .collect();
            assert_eq!(versions, expected, "{applied:?}");
            assert_eq!(applied[0].1, "spine");

            // Every node works on the one schema.
            for (i, store) in stores.iter().enumerate() {
                let id = format!("evt-{i}");
                let event = conformance::new_event(&id, "github", conformance::T0, &[]);
                store.insert_events(&[event]).await.expect("insert");
            }
            let listed = stores[0]
                .list_events(&switchboard_store::EventFilter {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("list_events");
            assert_eq!(listed.len(), 4);
            for store in &stores {
                store.close().await;
            }

            tokio::time::sleep(Duration::from_millis(5)).await;
            let again = connect(&url).await;
            assert_eq!(migrations(&url).await, applied, "migrations re-ran");
            again.close().await;
        },
    )
    .await;
}

/// Two nodes (two pools), two workers each, claiming the same 1,000 due deliveries at once:
/// every delivery is claimed exactly once, and its lease names the worker that got it.
#[tokio::test]
async fn two_nodes_claim_each_delivery_exactly_once() {
    in_fresh_schema(
        "two_nodes_claim_each_delivery_exactly_once",
        |url| async move {
            use conformance::{T0, claim_at, new_event};
            const EVENTS: i64 = 500;
            let node_a = connect(&url).await;
            let node_b = connect(&url).await;
            let batch: Vec<NewEvent> = (0..EVENTS)
                .map(|i| {
                    let (a, b) = (format!("dlv-{i}-a"), format!("dlv-{i}-b"));
                    new_event(
                        &format!("evt-{i}"),
                        "github",
                        T0 + i,
                        &[(&a, "alpha"), (&b, "beta")],
                    )
                })
                .collect();
            node_a.insert_events(&batch).await.expect("insert");

            let mut workers = Vec::new();
            for (node, store) in [("a", &node_a), ("b", &node_b)] {
                for worker in 0..2 {
                    let store = store.clone();
                    let owner = format!("node-{node}-{worker}");
                    workers.push(tokio::spawn(async move {
                        let mut got = Vec::new();
                        loop {
                            let claim = claim_at(T0 + EVENTS, 7, &owner);
                            let claimed = store.claim_due(&claim).await.expect("claim_due");
                            if claimed.is_empty() {
                                break;
                            }
                            for c in claimed {
                                let index = c.event_id.trim_start_matches("evt-");
                                assert_eq!(
                                    c.body,
                                    format!("{{\"event\":\"evt-{index}\"}}").as_bytes()
                                );
                                got.push(c.id);
                            }
                        }
                        (owner, got)
                    }));
                }
            }
            let mut claimed_by: HashMap<String, String> = HashMap::new();
            let mut per_worker = BTreeMap::new();
            for worker in workers {
                let (owner, got) = worker.await.expect("worker");
                per_worker.insert(owner.clone(), got.len());
                for id in got {
                    if let Some(other) = claimed_by.insert(id.clone(), owner.clone()) {
                        panic!("{id} claimed by {other} and {owner}");
                    }
                }
            }
            assert_eq!(claimed_by.len(), 2 * EVENTS as usize, "{per_worker:?}");

            // The stored leases agree with who got what: no claim overwrote another.
            let pool = raw_pool(&url).await;
            let leases: Vec<(String, Option<String>, String)> =
                sqlx::query_as("SELECT id, lease_owner, status FROM deliveries")
                    .fetch_all(&pool)
                    .await
                    .expect("read leases");
            pool.close().await;
            assert_eq!(leases.len(), claimed_by.len());
            for (id, owner, status) in leases {
                assert_eq!(status, "in_flight", "{id}");
                assert_eq!(owner.as_ref(), claimed_by.get(&id), "lease owner of {id}");
            }
            let counts = node_b.delivery_counts().await.expect("delivery_counts");
            assert_eq!(counts, [(DeliveryStatus::InFlight, 2 * EVENTS as u64)]);
            node_a.close().await;
            node_b.close().await;
        },
    )
    .await;
}

/// Two nodes ingesting batches of the same dedup keys at the same moment, in opposite orders
/// (so that their transactions wait for each other, and PostgreSQL may abort one as a deadlock
/// victim): each key is stored exactly once, and every duplicate names the event that was
/// stored.
#[tokio::test]
async fn two_nodes_ingesting_the_same_keys_store_each_once() {
    in_fresh_schema(
        "two_nodes_ingesting_the_same_keys_store_each_once",
        |url| async move {
            const KEYS: usize = 2000;
            const BATCH: usize = 500;
            let event = |node: &str, key: usize| NewEvent {
                dedup_key: Some(format!("key-{key}")),
                ..conformance::new_event(
                    &format!("evt-{node}-{key}"),
                    "github",
                    conformance::T0,
                    &[(&format!("dlv-{node}-{key}"), "alpha")],
                )
            };
            let together = std::sync::Arc::new(tokio::sync::Barrier::new(2));
            let mut nodes = Vec::new();
            for (node, reverse) in [("a", false), ("b", true)] {
                let store = connect(&url).await;
                let together = together.clone();
                let keys: Vec<usize> = (0..KEYS).collect();
                let rounds: Vec<Vec<usize>> = keys
                    .chunks(BATCH)
                    .map(|chunk| {
                        let mut chunk = chunk.to_vec();
                        if reverse {
                            chunk.reverse();
                        }
                        chunk
                    })
                    .collect();
                nodes.push(tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    for round in rounds {
                        let batch: Vec<NewEvent> = round.iter().map(|k| event(node, *k)).collect();
                        together.wait().await;
                        let result = store.insert_events(&batch).await.expect("insert_events");
                        outcomes.extend(round.into_iter().zip(result));
                    }
                    store.close().await;
                    (node, outcomes)
                }));
            }
            let mut stored: HashMap<usize, String> = HashMap::new();
            let mut duplicates = Vec::new();
            for node in nodes {
                let (node, outcomes) = node.await.expect("node");
                for (key, outcome) in outcomes {
                    match outcome {
                        InsertOutcome::Inserted => {
                            let id = format!("evt-{node}-{key}");
                            if let Some(other) = stored.insert(key, id.clone()) {
                                panic!("key-{key} stored twice: {other} and {id}");
                            }
                        }
                        InsertOutcome::Duplicate { original_id } => {
                            duplicates.push((key, original_id))
                        }
                    }
                }
            }
            assert_eq!(stored.len(), KEYS, "every key stored once");
            assert_eq!(duplicates.len(), KEYS, "every key rejected once");
            for (key, original) in duplicates {
                assert_eq!(Some(&original), stored.get(&key), "original of key-{key}");
            }
            let store = connect(&url).await;
            let deliveries = store
                .list_deliveries(&switchboard_store::DeliveryFilter {
                    limit: 10 * KEYS as u32,
                    ..Default::default()
                })
                .await
                .expect("list_deliveries");
            assert_eq!(deliveries.len(), KEYS, "duplicates get no deliveries");
            store.close().await;
        },
    )
    .await;
}

/// A database migrated by a newer build is refused, not used.
#[tokio::test]
async fn refuses_a_schema_newer_than_the_build() {
    in_fresh_schema("refuses_a_schema_newer_than_the_build", |url| async move {
        connect(&url).await.close().await;
        let pool = raw_pool(&url).await;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
        )
        .execute(&pool)
        .await
        .expect("record a future migration");
        pool.close().await;

        match PgStore::connect(&url, POOL).await {
            Err(StoreError::Corrupt(message)) => assert!(message.contains("99"), "{message}"),
            Err(other) => panic!("unexpected error: {other}"),
            Ok(_) => panic!("opened a database with a newer schema"),
        }
    })
    .await;
}

/// Two nodes (two pools), two workers each, working off a backlog of one ordered destination
/// with several keys while both nodes keep ingesting into the same keys (their commits delayed
/// at random): no two deliveries of a key are ever in flight at once, and each key's
/// deliveries succeed in the order they were stored (`seq`), retries included.
#[tokio::test]
async fn two_nodes_never_claim_two_deliveries_of_a_key_at_once() {
    in_fresh_schema(
        "two_nodes_never_claim_two_deliveries_of_a_key_at_once",
        |url| async move {
            use std::sync::Arc;
            use std::sync::atomic::{AtomicBool, AtomicUsize};

            use conformance::{T0, claim_at, completion, new_event};
            use switchboard_store::{Claim, DeliveryFilter, NextStep};

            const KEYS: usize = 6;
            /// Events per key, per ingesting node and in the backlog.
            const PER_KEY: usize = 10;
            const TOTAL: usize = 3 * KEYS * PER_KEY;
            /// Claim time: everything inserted, and every retry, is due.
            const NOW: i64 = T0 + 1_000_000;

            // Event `n` of node `node` goes to key `n % KEYS`; ids name node and position.
            let event = |node: &str, n: usize| {
                let id = format!("{node}-{n:03}");
                let mut event = new_event(
                    &format!("evt-{id}"),
                    "api",
                    T0 + n as i64,
                    &[(&format!("dlv-{id}"), "ordered")],
                );
                event.deliveries[0].ordering_key = Some(format!("key-{}", n % KEYS));
                event
            };
            let nodes = [connect(&url).await, connect(&url).await];
            // Widen the window between an ingest drawing its deliveries' `seq` and committing
            // them, by a random few milliseconds, so that the nodes' ingests would commit out
            // of `seq` order if nothing kept a key's deliveries in order.
            let pool = raw_pool(&url).await;
            sqlx::raw_sql(
                "CREATE FUNCTION delay_insert() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN PERFORM pg_sleep(random() * 0.05); RETURN NULL; END $$; \
                 CREATE TRIGGER delay_insert AFTER INSERT ON deliveries \
                 FOR EACH STATEMENT EXECUTE FUNCTION delay_insert();",
            )
            .execute(&pool)
            .await
            .expect("create the delaying trigger");
            pool.close().await;

            // A backlog for the workers to contend over from the start...
            let backlog: Vec<NewEvent> = (0..KEYS * PER_KEY).map(|n| event("pre", n)).collect();
            nodes[0]
                .insert_events(&backlog)
                .await
                .expect("insert backlog");
            // ... and each node ingests more in small batches while the workers run, both
            // nodes at the same moment.
            let together = Arc::new(tokio::sync::Barrier::new(2));
            let mut ingesters = Vec::new();
            for (node, store) in ["a", "b"].into_iter().zip(&nodes) {
                let store = store.clone();
                let together = together.clone();
                let batches: Vec<Vec<NewEvent>> = (0..KEYS * PER_KEY)
                    .map(|n| event(node, n))
                    .collect::<Vec<_>>()
                    .chunks(KEYS + 1)
                    .map(<[NewEvent]>::to_vec)
                    .collect();
                ingesters.push(tokio::spawn(async move {
                    for batch in batches {
                        together.wait().await;
                        store.insert_events(&batch).await.expect("insert_events");
                        // Slower than the workers: keys run dry, and fresh deliveries are
                        // claimable as soon as they are visible.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }));
            }

            // Key -> delivery a worker holds; the order deliveries succeeded in.
            let in_flight = Arc::new(std::sync::Mutex::new(HashMap::<String, String>::new()));
            let succeeded = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
            let done = Arc::new(AtomicUsize::new(0));
            let violation = Arc::new(AtomicBool::new(false));
            let mut workers = Vec::new();
            for (node, store) in ["a", "b"].into_iter().zip(&nodes) {
                for worker in 0..2 {
                    let store = store.clone();
                    let owner = format!("node-{node}-{worker}");
                    let (in_flight, succeeded) = (in_flight.clone(), succeeded.clone());
                    let (done, violation) = (done.clone(), violation.clone());
                    workers.push(tokio::spawn(async move {
                        let mut round = 0u64;
                        while done.load(Ordering::SeqCst) < TOTAL
                            && !violation.load(Ordering::SeqCst)
                        {
                            round += 1;
                            let claim = Claim {
                                destination: Some("ordered"),
                                ordered: true,
                                ..claim_at(NOW, 3, &owner)
                            };
                            let claimed = store.claim_due(&claim).await.expect("claim_due");
                            if claimed.is_empty() {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                                continue;
                            }
                            for c in &claimed {
                                let key = c.ordering_key.clone().expect("ordering key");
                                let held = in_flight
                                    .lock()
                                    .expect("in-flight map")
                                    .insert(key.clone(), c.id.clone());
                                if let Some(other) = held {
                                    violation.store(true, Ordering::SeqCst);
                                    panic!("{key}: {} claimed while {other} is in flight", c.id);
                                }
                            }
                            // Hold the leases for a moment, as a send would.
                            tokio::time::sleep(Duration::from_millis(round % 3)).await;
                            let mut completions = Vec::new();
                            for c in &claimed {
                                let key = c.ordering_key.clone().expect("ordering key");
                                // Some first attempts fail and retry at once: the key waits.
                                let retry = c.attempts == 0 && c.id.ends_with('3');
                                let next = if retry {
                                    NextStep::RetryAt(T0)
                                } else {
                                    NextStep::Succeeded
                                };
                                // Out of the map before the completion commits: the next
                                // delivery of the key is claimable only after that.
                                in_flight.lock().expect("in-flight map").remove(&key);
                                if !retry {
                                    succeeded
                                        .lock()
                                        .expect("success log")
                                        .push((key, c.id.clone()));
                                }
                                completions.push(completion(c, &owner, next));
                            }
                            store.complete(&completions).await.expect("complete");
                            let finished = completions
                                .iter()
                                .filter(|c| c.next == NextStep::Succeeded)
                                .count();
                            done.fetch_add(finished, Ordering::SeqCst);
                        }
                    }));
                }
            }
            let all = async {
                for ingester in ingesters {
                    ingester.await.expect("ingester");
                }
                for worker in workers {
                    worker.await.expect("worker");
                }
            };
            tokio::time::timeout(Duration::from_secs(120), all)
                .await
                .expect("the workers finish");
            assert!(!violation.load(Ordering::SeqCst));

            // Per key, deliveries succeeded in `seq` order.
            let stored = nodes[0]
                .list_deliveries(&DeliveryFilter {
                    limit: 10 * TOTAL as u32,
                    ..Default::default()
                })
                .await
                .expect("list_deliveries");
            assert_eq!(stored.len(), TOTAL);
            assert!(stored.iter().all(|d| d.status == DeliveryStatus::Succeeded));
            let seq: HashMap<&str, i64> = stored.iter().map(|d| (d.id.as_str(), d.seq)).collect();
            let succeeded = succeeded.lock().expect("success log").clone();
            assert_eq!(succeeded.len(), TOTAL);
            let mut per_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
            for (key, id) in &succeeded {
                per_key.entry(key).or_default().push(seq[id.as_str()]);
            }
            assert_eq!(per_key.len(), KEYS);
            for (key, seqs) in per_key {
                assert!(
                    seqs.windows(2).all(|w| w[0] < w[1]),
                    "{key} succeeded out of order: {seqs:?}"
                );
            }
            for node in &nodes {
                node.close().await;
            }
        },
    )
    .await;
}

/// PostgreSQL `text` cannot hold NUL: the adapter stores U+FFFD in its place instead of failing
/// the whole batch, finds such values again (dedup, filters), and keeps header lists (JSON,
/// which escapes NUL) exactly as given.
#[tokio::test]
async fn nul_characters_do_not_fail_a_batch() {
    in_fresh_schema("nul_characters_do_not_fail_a_batch", |url| async move {
        use conformance::{T0, claim_at, completion, new_event};
        use switchboard_store::{EventFilter, HealthRecord, NextStep, Rejection};

        let store = connect(&url).await;
        let mut event = new_event("evt-nul", "github", T0, &[("dlv-nul", "alpha")]);
        event.dedup_key = Some("key\0one".into());
        event.event_type = Some("push\0".into());
        event.tenant = Some("\0acme".into());
        event.headers.push(("x-nul".into(), "a\0b".into()));
        event.forward_headers = vec![("x-forward".into(), "c\0d".into())];
        event.deliveries[0].ordering_key = Some("order\0key".into());
        let plain = new_event("evt-plain", "github", T0 + 1, &[("dlv-plain", "alpha")]);
        let outcomes = store
            .insert_events(&[event.clone(), plain])
            .await
            .expect("a batch with NUL characters is stored");
        assert_eq!(outcomes, [InsertOutcome::Inserted, InsertOutcome::Inserted]);

        let stored = store
            .get_event("evt-nul")
            .await
            .expect("get_event")
            .expect("stored");
        assert_eq!(stored.dedup_key.as_deref(), Some("key\u{FFFD}one"));
        assert_eq!(stored.event_type.as_deref(), Some("push\u{FFFD}"));
        assert_eq!(stored.tenant.as_deref(), Some("\u{FFFD}acme"));
        assert_eq!(stored.headers, event.headers, "JSON keeps NUL as an escape");
        assert_eq!(stored.forward_headers, event.forward_headers);
        let delivery = store
            .get_delivery("dlv-nul")
            .await
            .expect("get_delivery")
            .expect("stored");
        assert_eq!(delivery.ordering_key.as_deref(), Some("order\u{FFFD}key"));

        // The same key again, in either spelling, is a duplicate of the stored event.
        for (id, key) in [("evt-again", "key\0one"), ("evt-again2", "key\u{FFFD}one")] {
            let again = NewEvent {
                dedup_key: Some(key.into()),
                ..new_event(id, "github", T0 + 2, &[])
            };
            assert_eq!(
                store.insert_events(&[again]).await.expect("insert"),
                [InsertOutcome::Duplicate {
                    original_id: "evt-nul".into()
                }]
            );
        }
        // Filters with NUL find what was stored.
        let listed = store
            .list_events(&EventFilter {
                event_type: Some("push\0".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list_events");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "evt-nul");

        // Errors, rejections and health records with NUL are stored too.
        let claimed = store
            .claim_due(&claim_at(T0 + 1, 10, "w"))
            .await
            .expect("claim_due");
        assert_eq!(claimed.len(), 2);
        let mut completions: Vec<_> = claimed
            .iter()
            .map(|c| completion(c, "w", NextStep::Failed))
            .collect();
        completions[0].attempt.error = Some("bad\0gateway".into());
        completions[1].attempt.error = Some("bad\0gateway".into());
        store.complete(&completions).await.expect("complete");
        let failed = store
            .get_delivery("dlv-nul")
            .await
            .expect("get_delivery")
            .expect("stored");
        assert_eq!(failed.last_error.as_deref(), Some("bad\u{FFFD}gateway"));
        let attempts = store
            .list_attempts(Some("evt-nul"), None)
            .await
            .expect("list_attempts");
        assert_eq!(attempts[0].error.as_deref(), Some("bad\u{FFFD}gateway"));

        store
            .record_rejections(
                &[Rejection {
                    source: "github".into(),
                    received_at: T0,
                    code: "invalid_signature".into(),
                    detail: "nul\0here".into(),
                    headers: vec![("x-nul".into(), "\0".into())],
                    body_len: 3,
                }],
                10,
            )
            .await
            .expect("record_rejections");
        let rejections = store
            .list_rejections("github", 10)
            .await
            .expect("list_rejections");
        assert_eq!(rejections[0].detail, "nul\u{FFFD}here");
        assert_eq!(
            rejections[0].headers,
            [("x-nul".to_string(), "\0".to_string())]
        );

        let health = HealthRecord {
            destination: "alpha".into(),
            state: "open".into(),
            consecutive_failures: 1,
            failing_since: Some(T0),
            last_failure_at: Some(T0),
            last_success_at: None,
            last_error: Some("reset\0".into()),
            opened_at: Some(T0),
            updated_at: T0,
        };
        store.put_health(&[health]).await.expect("put_health");
        let listed = store.list_health().await.expect("list_health");
        assert_eq!(listed[0].last_error.as_deref(), Some("reset\u{FFFD}"));
        store.close().await;
    })
    .await;
}

/// Two transactions commit in the other order than they took `seq`: the feed shows neither
/// while the older one is open (a reader trusting `seq` would pass the older row by for good),
/// then both, each once.
#[tokio::test]
async fn feed_waits_for_older_transactions() {
    in_fresh_schema("feed_waits_for_older_transactions", |url| async move {
        use switchboard_store::{FeedCursor, FeedEntry, FeedFilter};
        let store = connect(&url).await;
        // Run the migrations, then write around the store as two nodes would.
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("pool");
        let insert = "INSERT INTO events (id, source, headers, body, received_at) \
                      VALUES ($1, 'github', '[]', '\\x7b7d'::bytea, 0)";
        let mut slow = pool.begin().await.expect("begin");
        sqlx::query(insert)
            .bind("evt-slow")
            .execute(&mut *slow)
            .await
            .expect("insert slow");
        let mut fast = pool.begin().await.expect("begin");
        sqlx::query(insert)
            .bind("evt-fast")
            .execute(&mut *fast)
            .await
            .expect("insert fast");
        fast.commit().await.expect("commit fast");

        let all = FeedFilter::default();
        let page = store
            .feed_after(&FeedCursor::BEGINNING, &all, 10)
            .await
            .expect("feed");
        assert!(page.items.is_empty(), "nothing while the older one is open");
        let cursor = page.cursor;

        slow.commit().await.expect("commit slow");
        let mut seen = Vec::new();
        let mut cursor = cursor;
        for _ in 0..400 {
            let page = store.feed_after(&cursor, &all, 10).await.expect("feed");
            for item in &page.items {
                if let FeedEntry::Event(e) = &item.entry {
                    seen.push(e.id.clone());
                }
            }
            cursor = page.cursor;
            if seen.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(seen, ["evt-slow", "evt-fast"]);
        let page = store.feed_after(&cursor, &all, 10).await.expect("feed");
        assert!(page.items.is_empty(), "nothing twice");
        pool.close().await;
        store.close().await;
    })
    .await;
}
