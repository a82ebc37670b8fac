//! The store conformance suite run against [`SqliteStore`], plus SQLite-specific checks:
//! reopening a data directory and schema versioning.

mod conformance;

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use switchboard_core::config::Durability;
use switchboard_store::sqlite::{DB_FILE, SqliteStore};
use switchboard_store::{NextStep, Store, StoreError};

/// A fresh store in its own temporary directory (dropped, and deleted, with the directory).
async fn fresh_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path(), Durability::Full)
        .await
        .expect("open store");
    (dir, store)
}

/// One `#[tokio::test]` per conformance case, each on a fresh store.
macro_rules! conformance_tests {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_dir, store) = fresh_store().await;
                conformance::$case(&store).await;
                store.close().await;
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

/// A direct connection to the database file, for looking at the migration bookkeeping.
async fn raw_pool(dir: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new().filename(dir.join(DB_FILE));
    SqlitePool::connect_with(options)
        .await
        .expect("open database file")
}

/// `(version, name, applied_at)` rows of `schema_migrations`.
async fn migrations(dir: &Path) -> Vec<(i64, String, i64)> {
    let pool = raw_pool(dir).await;
    let rows =
        sqlx::query_as("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .expect("read schema_migrations");
    pool.close().await;
    rows
}

#[tokio::test]
async fn reopen_keeps_data_and_does_not_rerun_migrations() {
    use conformance::{T0, claim, claim_at, completion, new_event};

    let (dir, store) = fresh_store().await;
    let event = new_event(
        "evt-1",
        "github",
        T0,
        &[("dlv-a", "alpha"), ("dlv-b", "beta")],
    );
    store
        .insert_events(std::slice::from_ref(&event))
        .await
        .expect("insert");
    let claimed = claim(&store, claim_at(T0, 1, "w1")).await;
    assert_eq!(claimed.len(), 1);
    store
        .complete(&[completion(&claimed[0], "w1", NextStep::Succeeded)])
        .await
        .expect("complete");
    let done = claimed[0].id.clone();
    store.close().await;
    drop(store);

    // Every known migration applied once, in version order (the list grows with the schema).
    let applied = migrations(dir.path()).await;
    let versions: Vec<i64> = applied.iter().map(|(version, _, _)| *version).collect();
    // The versions the files carry (numbers may skip one reserved by another change).
    let dir_name = format!("{}/migrations/sqlite", env!("CARGO_MANIFEST_DIR"));
    let mut expected: Vec<i64> = std::fs::read_dir(&dir_name)
        .expect("migrations directory")
        .map(|entry| {
            let name = entry.expect("entry").file_name();
            name.to_string_lossy()[..4].parse().expect("NNNN_name.sql")
        })
        .collect();
    expected.sort();
    assert_eq!(versions, expected, "{applied:?}");
    assert_eq!(applied[0].1, "spine");
    // Make a re-applied migration visible even if it kept the same timestamp.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let store = SqliteStore::open(dir.path(), Durability::Normal)
        .await
        .expect("reopen store");
    assert_eq!(migrations(dir.path()).await, applied, "migrations re-ran");

    let got = store.get_event("evt-1").await.expect("get_event");
    let got = got.expect("event survives reopening");
    assert_eq!((got.body, got.headers), (event.body, event.headers));
    let attempts = store
        .list_attempts(Some("evt-1"), None)
        .await
        .expect("list_attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].delivery_id, done);
    let counts = store.delivery_counts().await.expect("delivery_counts");
    let mut counts: Vec<_> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    counts.sort_unstable();
    assert_eq!(counts, [("pending", 1), ("succeeded", 1)]);

    // Still fully usable.
    let remaining = claim(&store, claim_at(T0, 10, "w2")).await;
    assert_eq!(remaining.len(), 1);
    assert_ne!(remaining[0].id, done);
    store
        .insert_events(&[new_event("evt-2", "github", T0 + 1, &[])])
        .await
        .expect("insert after reopening");
    store.close().await;
}

#[tokio::test]
async fn refuses_a_schema_newer_than_the_build() {
    let (dir, store) = fresh_store().await;
    store.close().await;
    drop(store);
    let pool = raw_pool(dir.path()).await;
    sqlx::query(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 0)",
    )
    .execute(&pool)
    .await
    .expect("record a future migration");
    pool.close().await;

    match SqliteStore::open(dir.path(), Durability::Full).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains("99"), "{message}"),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("opened a database with a newer schema"),
    }
}
