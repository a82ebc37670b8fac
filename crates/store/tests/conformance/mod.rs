//! The store conformance suite: behaviour every [`Store`] implementation must have.
//!
//! Each case takes a fresh, empty store and talks to it only through the [`Store`] trait, so the
//! SQLite adapter and any later adapter (PostgreSQL) run exactly the same assertions. Event,
//! claim and replay times are synthetic, relative to [`T0`]; the only wall-clock dependency is
//! the "failed since" replay, because completions are stamped by the store itself.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use switchboard_core::DeliveryStatus;
use switchboard_core::time::{UnixMillis, now_millis};
use switchboard_store::{
    AttemptRecord, AuditFilter, AuditRecord, Claim, ClaimedDelivery, Completion, ConnectionRecord,
    DeliveryFilter, DeliveryRecord, EventFilter, EventRecord, HealthRecord, IdempotencyState,
    InsertOutcome, NewAttempt, NewDelivery, NewEvent, NextStep, OAuthStateRecord, Rejection,
    ReplaySelector, Store, StoreError, TokenUpdate,
};

/// A fixed instant in the past that synthetic timestamps are relative to.
pub const T0: UnixMillis = 1_700_000_000_000;

/// Lease length used when a case does not care about it.
const LEASE_MS: i64 = 60_000;

/// Larger than any listing a case makes.
const ALL: u32 = 100_000;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A delivery of a new event; the route id is derived from the destination.
pub fn new_delivery(id: &str, destination: &str) -> NewDelivery {
    NewDelivery {
        id: id.into(),
        route_id: format!("route-{destination}"),
        destination: destination.into(),
        ordering_key: None,
    }
}

/// A JSON event with one header and `(delivery id, destination)` deliveries.
pub fn new_event(
    id: &str,
    source: &str,
    received_at: UnixMillis,
    deliveries: &[(&str, &str)],
) -> NewEvent {
    NewEvent {
        id: id.into(),
        source: source.into(),
        tenant: None,
        event_type: None,
        dedup_key: None,
        headers: vec![("content-type".into(), "application/json".into())],
        content_type: Some("application/json".into()),
        body: format!("{{\"event\":\"{id}\"}}").into_bytes(),
        received_at,
        forward_headers: Vec::new(),
        deliveries: deliveries
            .iter()
            .map(|(id, destination)| new_delivery(id, destination))
            .collect(),
    }
}

/// A claim at `now` with a one-minute lease and nothing excluded.
pub fn claim_at(now: UnixMillis, limit: usize, owner: &str) -> Claim<'_> {
    Claim {
        now,
        limit,
        owner,
        lease_until: now + LEASE_MS,
        exclude: &[],
        destination: None,
        ordered: false,
    }
}

/// Runs a claim.
pub async fn claim(store: &dyn Store, claim: Claim<'_>) -> Vec<ClaimedDelivery> {
    store.claim_due(&claim).await.expect("claim_due")
}

/// The attempt a worker would record for `claimed`, with a plausible outcome for `next`.
pub fn completion(claimed: &ClaimedDelivery, owner: &str, next: NextStep) -> Completion {
    let (outcome, status_code, error) = match next {
        NextStep::Succeeded => ("delivered", Some(200), None),
        NextStep::RetryAt(_) => ("retryable", Some(503), Some("HTTP 503".to_string())),
        NextStep::Failed => ("permanent", Some(410), Some("HTTP 410".to_string())),
        NextStep::Filtered => ("filtered", None, Some("filtered out".to_string())),
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
            response_body: b"ok".to_vec(),
        },
    }
}

/// Runs completions.
async fn complete(store: &dyn Store, completions: &[Completion]) {
    store.complete(completions).await.expect("complete");
}

/// Claimed deliveries keyed by id.
fn by_id(claimed: Vec<ClaimedDelivery>) -> HashMap<String, ClaimedDelivery> {
    claimed.into_iter().map(|c| (c.id.clone(), c)).collect()
}

/// Ids of claimed deliveries, as a set (the order of a claimed batch is not specified).
fn claimed_ids(claimed: &[ClaimedDelivery]) -> BTreeSet<String> {
    claimed.iter().map(|c| c.id.clone()).collect()
}

/// A set of ids.
fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// Event listing.
async fn events(store: &dyn Store, filter: EventFilter) -> Vec<EventRecord> {
    store.list_events(&filter).await.expect("list_events")
}

/// Event ids of a listing, in order.
fn event_ids(events: &[EventRecord]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// Delivery listing.
async fn deliveries(store: &dyn Store, filter: DeliveryFilter) -> Vec<DeliveryRecord> {
    store
        .list_deliveries(&filter)
        .await
        .expect("list_deliveries")
}

/// Delivery ids of a listing, in order.
fn delivery_ids(deliveries: &[DeliveryRecord]) -> Vec<String> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

/// One delivery, which must exist.
async fn delivery(store: &dyn Store, id: &str) -> DeliveryRecord {
    let filter = DeliveryFilter {
        limit: ALL,
        ..DeliveryFilter::default()
    };
    deliveries(store, filter)
        .await
        .into_iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("delivery {id} is missing"))
}

/// Status of one delivery.
async fn status(store: &dyn Store, id: &str) -> DeliveryStatus {
    delivery(store, id).await.status
}

/// `delivery_counts` as a map, checking no status is listed twice or with a zero count.
async fn counts(store: &dyn Store) -> HashMap<DeliveryStatus, u64> {
    let list = store.delivery_counts().await.expect("delivery_counts");
    let map: HashMap<_, _> = list.iter().copied().collect();
    assert_eq!(map.len(), list.len(), "a status is listed twice: {list:?}");
    assert!(
        list.iter().all(|(_, n)| *n > 0),
        "zero counts are listed: {list:?}"
    );
    map
}

/// Expected counts.
fn counts_of(entries: &[(DeliveryStatus, u64)]) -> HashMap<DeliveryStatus, u64> {
    entries.iter().copied().collect()
}

/// Checks a stored event against what was inserted.
fn assert_event(record: &EventRecord, expected: &NewEvent, with_body: bool) {
    assert_eq!(record.id, expected.id);
    assert_eq!(record.source, expected.source, "source of {}", expected.id);
    assert_eq!(record.tenant, expected.tenant, "tenant of {}", expected.id);
    assert_eq!(
        record.event_type, expected.event_type,
        "type of {}",
        expected.id
    );
    assert_eq!(
        record.dedup_key, expected.dedup_key,
        "dedup key of {}",
        expected.id
    );
    assert_eq!(
        record.headers, expected.headers,
        "headers of {}",
        expected.id
    );
    assert_eq!(
        record.content_type, expected.content_type,
        "content type of {}",
        expected.id
    );
    assert_eq!(
        record.received_at, expected.received_at,
        "receive time of {}",
        expected.id
    );
    assert_eq!(
        record.body_len,
        expected.body.len() as u64,
        "body_len of {}",
        expected.id
    );
    if with_body {
        assert_eq!(record.body, expected.body, "body of {}", expected.id);
    } else {
        assert!(record.body.is_empty(), "listings carry no body");
    }
}

/// Checks a stored attempt against what was recorded.
fn assert_attempt(record: &AttemptRecord, expected: &NewAttempt) {
    assert_eq!(record.delivery_id, expected.delivery_id);
    assert_eq!(record.event_id, expected.event_id);
    assert_eq!(record.destination, expected.destination);
    assert_eq!(record.attempt, expected.attempt);
    assert_eq!(record.started_at, expected.started_at);
    assert_eq!(record.latency_ms, expected.latency_ms);
    assert_eq!(record.outcome, expected.outcome);
    assert_eq!(record.status_code, expected.status_code);
    assert_eq!(record.error, expected.error);
    assert_eq!(record.request_url, expected.request_url);
    assert_eq!(record.response_headers, expected.response_headers);
    assert_eq!(record.response_body, expected.response_body);
}

// ---------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------

/// `insert_events` stores events with their deliveries; `get_event` returns them exactly;
/// `list_events` is newest first, filters by source and time, and pages with `before_seq`.
pub async fn insert_and_read_events(store: &dyn Store) {
    store.insert_events(&[]).await.expect("empty batch");
    let listing = EventFilter {
        limit: 100,
        ..EventFilter::default()
    };
    assert!(events(store, listing.clone()).await.is_empty());

    let mut first = new_event(
        "evt-0",
        "github",
        T0,
        &[("dlv-0a", "alpha"), ("dlv-0b", "beta")],
    );
    first.tenant = Some("acme".into());
    first.event_type = Some("push".into());
    first.dedup_key = Some("gh-delivery-1".into());
    first.headers = [
        ("X-Zeta", "1"),
        ("content-type", "application/octet-stream"),
        ("x-alpha", "ünïcödé"),
        ("X-Zeta", "3"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    first.content_type = Some("application/octet-stream".into());
    // Not UTF-8: a lone continuation byte, an invalid two-byte sequence, a NUL.
    first.body = vec![0xff, 0xfe, 0x00, b'{', 0x80, 0xc3, 0x28, b'\n', 0x00];

    let mut empty = new_event("evt-1", "stripe", T0 + 1000, &[]);
    empty.body = Vec::new();
    empty.content_type = None;
    empty.headers = Vec::new();

    let mut batch = vec![first.clone(), empty.clone()];
    for i in 2..10 {
        let source = if i % 2 == 0 { "github" } else { "stripe" };
        let delivery = format!("dlv-{i}");
        batch.push(new_event(
            &format!("evt-{i}"),
            source,
            T0 + i * 1000,
            &[(&delivery, "alpha")],
        ));
    }
    store.insert_events(&batch).await.expect("insert_events");

    // Exact round trip, body included.
    let got = store.get_event("evt-0").await.expect("get_event");
    assert_event(&got.expect("evt-0 exists"), &first, true);
    let got = store.get_event("evt-1").await.expect("get_event");
    assert_event(&got.expect("evt-1 exists"), &empty, true);
    assert!(
        store
            .get_event("evt-nope")
            .await
            .expect("get_event")
            .is_none()
    );

    // The deliveries came with their events, pending and untried.
    let all = deliveries(
        store,
        DeliveryFilter {
            limit: ALL,
            ..DeliveryFilter::default()
        },
    )
    .await;
    assert_eq!(all.len(), 10);
    let of_first = deliveries(
        store,
        DeliveryFilter {
            event_id: Some("evt-0".into()),
            limit: ALL,
            ..DeliveryFilter::default()
        },
    )
    .await;
    let ids: BTreeSet<_> = of_first.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, set(&["dlv-0a", "dlv-0b"]));
    let d = delivery(store, "dlv-0b").await;
    assert_eq!(d.event_id, "evt-0");
    assert_eq!(d.route_id, "route-beta");
    assert_eq!(d.destination, "beta");
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.attempts, 0);
    assert_eq!(d.last_status, None);
    assert_eq!(d.last_error, None);
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, 10)])
    );

    // Newest first, no bodies, strictly decreasing cursors.
    let listed = events(store, listing.clone()).await;
    let expected: Vec<String> = (0..10).rev().map(|i| format!("evt-{i}")).collect();
    assert_eq!(event_ids(&listed), expected);
    assert!(listed.windows(2).all(|w| w[0].seq > w[1].seq));
    for record in &listed {
        let inserted = batch
            .iter()
            .find(|e| e.id == record.id)
            .expect("listed event was inserted");
        assert_event(record, inserted, false);
    }

    // Filters: source, since (inclusive), until (exclusive), and their combination.
    let github = EventFilter {
        source: Some("github".into()),
        ..listing.clone()
    };
    assert_eq!(
        event_ids(&events(store, github.clone()).await),
        ["evt-8", "evt-6", "evt-4", "evt-2", "evt-0"]
    );
    let window = EventFilter {
        since: Some(T0 + 2000),
        until: Some(T0 + 5000),
        ..listing.clone()
    };
    assert_eq!(
        event_ids(&events(store, window).await),
        ["evt-4", "evt-3", "evt-2"]
    );
    let recent_stripe = EventFilter {
        source: Some("stripe".into()),
        since: Some(T0 + 3000),
        ..listing.clone()
    };
    assert_eq!(
        event_ids(&events(store, recent_stripe).await),
        ["evt-9", "evt-7", "evt-5", "evt-3"]
    );

    // Pagination: disjoint pages that together are the full listing, in order.
    for (filter, page_size) in [(listing.clone(), 3), (github, 2)] {
        let full = event_ids(&events(store, filter.clone()).await);
        let mut paged = Vec::new();
        let mut before_seq = None;
        for _ in 0..20 {
            let page = events(
                store,
                EventFilter {
                    before_seq,
                    limit: page_size,
                    ..filter.clone()
                },
            )
            .await;
            assert!(page.len() <= page_size as usize, "page larger than limit");
            let Some(last) = page.last() else { break };
            before_seq = Some(last.seq);
            paged.extend(event_ids(&page));
        }
        assert_eq!(paged, full, "pages of {page_size} do not cover the listing");
    }
}

/// A batch that violates uniqueness fails as a whole: none of its events or deliveries are
/// stored, however far into the batch the violation is.
pub async fn failed_batch_stores_nothing(store: &dyn Store) {
    let original = new_event("evt-original", "github", T0, &[("dlv-original", "alpha")]);
    store
        .insert_events(std::slice::from_ref(&original))
        .await
        .expect("insert original");

    // Duplicates an already stored event at the end of the batch.
    let mut imposter = new_event("evt-original", "stripe", T0 + 3, &[("dlv-dup", "alpha")]);
    imposter.body = b"imposter".to_vec();
    let clean = vec![
        new_event("evt-a", "github", T0 + 1, &[("dlv-a", "alpha")]),
        new_event(
            "evt-b",
            "github",
            T0 + 2,
            &[("dlv-b1", "alpha"), ("dlv-b2", "beta")],
        ),
    ];
    let mut batch = clean.clone();
    batch.push(imposter);
    assert!(
        store.insert_events(&batch).await.is_err(),
        "duplicate of a stored event"
    );

    // Duplicates within the batch itself.
    let batch = [
        new_event("evt-c", "github", T0 + 4, &[("dlv-c1", "alpha")]),
        new_event("evt-c", "github", T0 + 5, &[("dlv-c2", "alpha")]),
    ];
    assert!(
        store.insert_events(&batch).await.is_err(),
        "duplicate within a batch"
    );

    // A duplicate delivery id: the events are fine, their deliveries are not.
    let batch = [new_event(
        "evt-d",
        "github",
        T0 + 6,
        &[("dlv-original", "beta")],
    )];
    assert!(
        store.insert_events(&batch).await.is_err(),
        "duplicate delivery id"
    );

    // A batch large enough to need several statements, with the duplicate in the last one.
    let mut big: Vec<NewEvent> = (0..2500)
        .map(|i| {
            let delivery = format!("dlv-big-{i}");
            new_event(
                &format!("evt-big-{i}"),
                "bulk",
                T0 + 10 + i,
                &[(&delivery, "alpha")],
            )
        })
        .collect();
    big.push(new_event(
        "evt-big-0",
        "bulk",
        T0 + 9999,
        &[("dlv-big-x", "alpha")],
    ));
    assert!(
        store.insert_events(&big).await.is_err(),
        "duplicate in a large batch"
    );

    // Nothing of the failed batches is visible.
    for id in [
        "evt-a",
        "evt-b",
        "evt-c",
        "evt-d",
        "evt-big-0",
        "evt-big-2499",
    ] {
        let got = store.get_event(id).await.expect("get_event");
        assert!(got.is_none(), "{id} of a failed batch was stored");
    }
    let listed = events(
        store,
        EventFilter {
            limit: ALL,
            ..EventFilter::default()
        },
    )
    .await;
    assert_eq!(event_ids(&listed), ["evt-original"]);
    let got = store.get_event("evt-original").await.expect("get_event");
    assert_event(&got.expect("original exists"), &original, true);
    let all = deliveries(
        store,
        DeliveryFilter {
            limit: ALL,
            ..DeliveryFilter::default()
        },
    )
    .await;
    assert_eq!(delivery_ids(&all), ["dlv-original"]);
    assert_eq!(all[0].destination, "alpha");
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, 1)])
    );
    assert_eq!(
        claimed_ids(&claim(store, claim_at(T0 + 100_000, 100, "w")).await),
        set(&["dlv-original"])
    );

    // The valid part of the first batch can still go in: no leftovers block it.
    store
        .insert_events(&clean)
        .await
        .expect("insert clean batch");
    assert_eq!(counts(store).await.get(&DeliveryStatus::Pending), Some(&3));
}

/// `claim_due` leases only due pending deliveries, the oldest first and at most `limit`, skips
/// excluded destinations, never hands out a delivery twice, and carries the event's payload.
pub async fn claim_due_leases_due_work(store: &dyn Store) {
    // Inserted out of time order, so arrival order and due order differ.
    let late = new_event("evt-late", "stripe", T0 + 30, &[("dlv-late", "alpha")]);
    let future = new_event(
        "evt-future",
        "github",
        T0 + 1000,
        &[("dlv-future", "alpha")],
    );
    let mid = new_event("evt-mid", "github", T0 + 10, &[("dlv-mid", "gamma")]);
    let mut early = new_event(
        "evt-early",
        "github",
        T0,
        &[("dlv-early-a", "alpha"), ("dlv-early-b", "beta")],
    );
    early.body = vec![0x00, 0x9f, 0x92, 0x96, 0xff];
    early.content_type = Some("application/cbor".into());
    store.insert_events(&[late, future]).await.expect("insert");
    store
        .insert_events(&[mid, early.clone()])
        .await
        .expect("insert");

    assert!(
        claim(store, claim_at(T0 + 100, 0, "w1")).await.is_empty(),
        "limit 0"
    );
    assert!(
        claim(store, claim_at(T0 - 1, 10, "w1")).await.is_empty(),
        "nothing due yet"
    );
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, 5)])
    );

    // The two oldest, although they arrived last.
    let first = claim(store, claim_at(T0 + 100, 2, "w1")).await;
    assert_eq!(claimed_ids(&first), set(&["dlv-early-a", "dlv-early-b"]));
    let a = by_id(first).remove("dlv-early-a").expect("claimed");
    assert_eq!(a.event_id, "evt-early");
    assert_eq!(a.route_id, "route-alpha");
    assert_eq!(a.destination, "alpha");
    assert_eq!((a.attempts, a.run_attempts), (0, 0));
    assert_eq!(a.body, early.body);
    assert_eq!(a.content_type, early.content_type);
    assert_eq!(a.source, "github");
    assert_eq!(status(store, "dlv-early-a").await, DeliveryStatus::InFlight);
    assert_eq!(status(store, "dlv-early-b").await, DeliveryStatus::InFlight);
    assert_eq!(status(store, "dlv-mid").await, DeliveryStatus::Pending);

    // `exclude` skips a destination even when it holds the oldest due delivery.
    let exclude = vec!["gamma".to_string(), "no-such-destination".to_string()];
    let next = claim(
        store,
        Claim {
            exclude: &exclude,
            ..claim_at(T0 + 100, 1, "w2")
        },
    )
    .await;
    assert_eq!(claimed_ids(&next), set(&["dlv-late"]));
    assert_eq!(next[0].source, "stripe");
    assert_eq!(next[0].body, br#"{"event":"evt-late"}"#);
    assert_eq!(next[0].content_type.as_deref(), Some("application/json"));

    // `destination` claims only that destination's due deliveries.
    let other = claim(
        store,
        Claim {
            destination: Some("no-such-destination"),
            ..claim_at(T0 + 100, 10, "w2")
        },
    )
    .await;
    assert!(other.is_empty(), "nothing due for another destination");
    let next = claim(
        store,
        Claim {
            destination: Some("gamma"),
            ..claim_at(T0 + 100, 10, "w2")
        },
    )
    .await;
    assert_eq!(claimed_ids(&next), set(&["dlv-mid"]));
    assert!(
        claim(store, claim_at(T0 + 999, 10, "w3")).await.is_empty(),
        "all due work is leased"
    );

    // Due exactly at `now`.
    let next = claim(store, claim_at(T0 + 1000, 10, "w3")).await;
    assert_eq!(claimed_ids(&next), set(&["dlv-future"]));
    assert!(
        claim(store, claim_at(T0 + 1_000_000, 10, "w3"))
            .await
            .is_empty()
    );
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::InFlight, 5)])
    );
    assert_eq!(store.next_due_at().await.expect("next_due_at"), None);
}

/// `complete` records every attempt and moves deliveries to succeeded, failed or a scheduled
/// retry; a completion from a worker that no longer holds the lease only records its attempt.
pub async fn complete_records_attempts_and_moves_deliveries(store: &dyn Store) {
    let event = new_event(
        "evt-1",
        "github",
        T0,
        &[
            ("dlv-ok", "alpha"),
            ("dlv-dead", "beta"),
            ("dlv-retry", "gamma"),
            ("dlv-stolen", "delta"),
        ],
    );
    store.insert_events(&[event]).await.expect("insert");
    let claimed = by_id(claim(store, claim_at(T0, 10, "w1")).await);
    assert_eq!(claimed.len(), 4);
    store.complete(&[]).await.expect("empty completion batch");

    let mut ok = completion(&claimed["dlv-ok"], "w1", NextStep::Succeeded);
    ok.attempt.response_headers = [("Content-Type", "text/plain"), ("x-b", "1"), ("x-a", "2")]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    ok.attempt.response_body = vec![0xff, 0x00, b'o', b'k', 0x80];
    let mut dead = completion(&claimed["dlv-dead"], "w1", NextStep::Failed);
    dead.attempt.status_code = None;
    dead.attempt.error = Some("connection refused".into());
    dead.attempt.response_headers = Vec::new();
    dead.attempt.response_body = Vec::new();
    let retry = completion(&claimed["dlv-retry"], "w1", NextStep::RetryAt(T0 + 5000));
    let stolen = completion(&claimed["dlv-stolen"], "w2", NextStep::Succeeded);
    let batch = [ok.clone(), dead.clone(), retry.clone(), stolen.clone()];
    complete(store, &batch).await;

    // Every attempt is recorded, in order, with all its fields.
    let attempts = store
        .list_attempts(Some("evt-1"), None)
        .await
        .expect("list_attempts");
    assert_eq!(attempts.len(), batch.len());
    for (record, completion) in attempts.iter().zip(&batch) {
        assert_attempt(record, &completion.attempt);
    }

    let d = delivery(store, "dlv-ok").await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 1));
    assert_eq!((d.last_status, d.last_error), (Some(200), None));
    let d = delivery(store, "dlv-dead").await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 1));
    assert_eq!(d.last_status, None);
    assert_eq!(d.last_error.as_deref(), Some("connection refused"));
    let d = delivery(store, "dlv-retry").await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Pending, 1));
    assert_eq!(d.next_attempt_at, T0 + 5000);
    assert_eq!(d.last_status, Some(503));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
    // Wrong lease owner: attempt recorded above, delivery untouched.
    let d = delivery(store, "dlv-stolen").await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::InFlight, 0));
    assert_eq!(d.last_status, None);

    // The retry comes due at its time, with the attempt counts of its history.
    assert_eq!(
        store.next_due_at().await.expect("next_due_at"),
        Some(T0 + 5000)
    );
    assert!(claim(store, claim_at(T0 + 4999, 10, "w3")).await.is_empty());
    let again = claim(store, claim_at(T0 + 5000, 10, "w3")).await;
    assert_eq!(claimed_ids(&again), set(&["dlv-retry"]));
    assert_eq!((again[0].attempts, again[0].run_attempts), (1, 1));
    let mut second = completion(&again[0], "w3", NextStep::Succeeded);
    second.attempt.started_at = T0 + 5000;
    complete(store, std::slice::from_ref(&second)).await;
    let d = delivery(store, "dlv-retry").await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Succeeded, 2));
    let attempts = store
        .list_attempts(None, Some("dlv-retry"))
        .await
        .expect("list_attempts");
    assert_eq!(attempts.len(), 2);
    assert_attempt(&attempts[0], &retry.attempt);
    assert_attempt(&attempts[1], &second.attempt);

    // A second completion of a finished delivery (no lease any more) changes nothing.
    let late = completion(&claimed["dlv-ok"], "w1", NextStep::Failed);
    complete(store, &[late]).await;
    assert_eq!(status(store, "dlv-ok").await, DeliveryStatus::Succeeded);

    // The rightful owner can still finish the delivery the stray completion did not touch.
    let rightful = completion(&claimed["dlv-stolen"], "w1", NextStep::Failed);
    complete(store, &[rightful]).await;
    let d = delivery(store, "dlv-stolen").await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 1));
    let attempts = store
        .list_attempts(None, Some("dlv-stolen"))
        .await
        .expect("list_attempts");
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        store
            .list_attempts(Some("evt-1"), None)
            .await
            .expect("list_attempts")
            .len(),
        7
    );
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Succeeded, 2), (DeliveryStatus::Failed, 2)])
    );
}

/// `release_leases` with an owner releases exactly that owner's leases; without one it releases
/// exactly the expired leases (`lease_until < now`).
pub async fn release_leases_by_owner_and_by_expiry(store: &dyn Store) {
    let events: Vec<NewEvent> = (1..=4)
        .map(|i| {
            let delivery = format!("dlv-{i}");
            new_event(
                &format!("evt-{i}"),
                "github",
                T0 + i,
                &[(&delivery, "alpha")],
            )
        })
        .collect();
    store.insert_events(&events).await.expect("insert");
    let w1 = claim(
        store,
        Claim {
            lease_until: T0 + 1000,
            ..claim_at(T0 + 10, 2, "w1")
        },
    )
    .await;
    assert_eq!(claimed_ids(&w1), set(&["dlv-1", "dlv-2"]));
    let w2 = claim(
        store,
        Claim {
            lease_until: T0 + 2000,
            ..claim_at(T0 + 10, 2, "w2")
        },
    )
    .await;
    assert_eq!(claimed_ids(&w2), set(&["dlv-3", "dlv-4"]));

    let release = |owner: Option<&'static str>, now| async move {
        store
            .release_leases(owner, now)
            .await
            .expect("release_leases")
    };
    assert_eq!(release(Some("w3"), T0 + 20).await, 0);
    assert_eq!(release(Some("w1"), T0 + 20).await, 2);
    for (id, expected) in [
        ("dlv-1", DeliveryStatus::Pending),
        ("dlv-2", DeliveryStatus::Pending),
        ("dlv-3", DeliveryStatus::InFlight),
        ("dlv-4", DeliveryStatus::InFlight),
    ] {
        assert_eq!(status(store, id).await, expected, "{id} after releasing w1");
    }
    assert_eq!(
        release(Some("w1"), T0 + 20).await,
        0,
        "nothing left to release"
    );

    // Released work is claimable again.
    let w1 = claim(
        store,
        Claim {
            lease_until: T0 + 1000,
            ..claim_at(T0 + 30, 10, "w1")
        },
    )
    .await;
    assert_eq!(claimed_ids(&w1), set(&["dlv-1", "dlv-2"]));

    // Expiry: a lease is still held at exactly `lease_until`.
    assert_eq!(release(None, T0 + 999).await, 0);
    assert_eq!(release(None, T0 + 1000).await, 0);
    assert_eq!(release(None, T0 + 1001).await, 2);
    assert_eq!(status(store, "dlv-1").await, DeliveryStatus::Pending);
    assert_eq!(status(store, "dlv-3").await, DeliveryStatus::InFlight);
    assert_eq!(release(None, T0 + 2001).await, 2);
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, 4)])
    );

    // A late completion from the old lease holder records its attempt but does not touch the
    // delivery that another worker now holds.
    let w3 = claim(store, claim_at(T0 + 3000, 10, "w3")).await;
    assert_eq!(w3.len(), 4);
    let stale = w1
        .iter()
        .find(|c| c.id == "dlv-1")
        .expect("dlv-1 was claimed by w1");
    complete(store, &[completion(stale, "w1", NextStep::Succeeded)]).await;
    let d = delivery(store, "dlv-1").await;
    assert_eq!((d.status, d.attempts), (DeliveryStatus::InFlight, 0));
    let attempts = store
        .list_attempts(None, Some("dlv-1"))
        .await
        .expect("list_attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(release(Some("w3"), T0 + 3001).await, 4);
}

/// `replay` re-queues by delivery (not while in flight), by event (every delivery, succeeded
/// ones included) and by destination for failures since an instant; a replayed delivery starts
/// a fresh run (`run_attempts` 0) but keeps its total `attempts`.
pub async fn replay_requeues_for_a_fresh_run(store: &dyn Store) {
    let batch = [
        new_event(
            "evt-1",
            "github",
            T0,
            &[("dlv-1a", "alpha"), ("dlv-1b", "beta")],
        ),
        new_event("evt-2", "github", T0 + 1, &[("dlv-2", "alpha")]),
        new_event("evt-3", "github", T0 + 2, &[("dlv-3", "alpha")]),
        new_event("evt-4", "github", T0 + 3, &[("dlv-4", "beta")]),
        new_event("evt-5", "github", T0 + 4, &[("dlv-5", "alpha")]),
    ];
    store.insert_events(&batch).await.expect("insert");
    let c = by_id(claim(store, claim_at(T0 + 10, 10, "w1")).await);
    assert_eq!(c.len(), 6);
    complete(
        store,
        &[
            completion(&c["dlv-1a"], "w1", NextStep::Succeeded),
            completion(&c["dlv-1b"], "w1", NextStep::RetryAt(T0 + 20)),
            completion(&c["dlv-2"], "w1", NextStep::Failed),
            completion(&c["dlv-4"], "w1", NextStep::Failed),
        ],
    )
    .await;
    // dlv-1b fails on its second attempt of the run.
    let again = claim(store, claim_at(T0 + 20, 10, "w1")).await;
    assert_eq!(claimed_ids(&again), set(&["dlv-1b"]));
    complete(store, &[completion(&again[0], "w1", NextStep::Failed)]).await;
    // dlv-3 fails after `since`; dlv-2 failed before it. Completions are stamped by the store.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let since = now_millis();
    tokio::time::sleep(Duration::from_millis(50)).await;
    complete(store, &[completion(&c["dlv-3"], "w1", NextStep::Failed)]).await;
    // dlv-5 stays in flight.

    let replay_at = T0 + 100_000;
    let replay = |selector: ReplaySelector| async move {
        store.replay(&selector, replay_at).await.expect("replay")
    };

    // Not while in flight, and not what does not exist.
    assert_eq!(replay(ReplaySelector::Delivery("dlv-5".into())).await, 0);
    assert_eq!(status(store, "dlv-5").await, DeliveryStatus::InFlight);
    assert_eq!(replay(ReplaySelector::Delivery("dlv-none".into())).await, 0);
    assert_eq!(replay(ReplaySelector::Event("evt-none".into())).await, 0);

    // Failed for a destination since an instant: only alpha's failure after `since`.
    let failed_since = |destination: &str, since| ReplaySelector::FailedForDestination {
        destination: destination.into(),
        since,
    };
    assert_eq!(replay(failed_since("alpha", since)).await, 1);
    assert_eq!(status(store, "dlv-3").await, DeliveryStatus::Pending);
    assert_eq!(status(store, "dlv-2").await, DeliveryStatus::Failed);
    assert_eq!(status(store, "dlv-1a").await, DeliveryStatus::Succeeded);
    assert_eq!(status(store, "dlv-4").await, DeliveryStatus::Failed);
    // An older `since` also takes dlv-2, but still no succeeded or in-flight delivery.
    assert_eq!(replay(failed_since("alpha", 0)).await, 1);
    assert_eq!(status(store, "dlv-2").await, DeliveryStatus::Pending);
    assert_eq!(status(store, "dlv-1a").await, DeliveryStatus::Succeeded);
    assert_eq!(status(store, "dlv-5").await, DeliveryStatus::InFlight);
    assert_eq!(replay(failed_since("gamma", 0)).await, 0);

    // By event: every delivery of it, the succeeded one included.
    assert_eq!(replay(ReplaySelector::Event("evt-1".into())).await, 2);
    assert_eq!(status(store, "dlv-1a").await, DeliveryStatus::Pending);
    assert_eq!(status(store, "dlv-1b").await, DeliveryStatus::Pending);
    assert_eq!(replay(ReplaySelector::Event("evt-5".into())).await, 0);

    // By delivery.
    assert_eq!(replay(ReplaySelector::Delivery("dlv-4".into())).await, 1);

    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, 5), (DeliveryStatus::InFlight, 1)])
    );
    assert_eq!(
        store.next_due_at().await.expect("next_due_at"),
        Some(replay_at)
    );
    let d = delivery(store, "dlv-1b").await;
    assert_eq!((d.next_attempt_at, d.attempts), (replay_at, 2));

    // A fresh run: due at the replay time, run_attempts reset, attempts kept.
    assert!(
        claim(store, claim_at(replay_at - 1, 10, "w2"))
            .await
            .is_empty()
    );
    let fresh = by_id(claim(store, claim_at(replay_at, 10, "w2")).await);
    let mut got: Vec<(&str, u32, u32)> = fresh
        .values()
        .map(|c| (c.id.as_str(), c.attempts, c.run_attempts))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            ("dlv-1a", 1, 0),
            ("dlv-1b", 2, 0),
            ("dlv-2", 1, 0),
            ("dlv-3", 1, 0),
            ("dlv-4", 1, 0),
        ]
    );
}

/// `delivery_counts` and `next_due_at` follow the deliveries' states; `list_deliveries` is
/// newest first, filters by status, destination and event, and pages with `before_seq`.
pub async fn counts_due_time_and_delivery_listing(store: &dyn Store) {
    assert!(counts(store).await.is_empty());
    assert_eq!(store.next_due_at().await.expect("next_due_at"), None);
    let listing = DeliveryFilter {
        limit: ALL,
        ..DeliveryFilter::default()
    };
    assert!(deliveries(store, listing.clone()).await.is_empty());

    let batch: Vec<NewEvent> = (0..6)
        .map(|i| {
            let (a, b) = (format!("dlv-{i}-a"), format!("dlv-{i}-b"));
            new_event(
                &format!("evt-{i}"),
                "github",
                T0 + i * 100,
                &[(&a, "alpha"), (&b, "beta")],
            )
        })
        .collect();
    store.insert_events(&batch).await.expect("insert");
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, 12)])
    );
    assert_eq!(store.next_due_at().await.expect("next_due_at"), Some(T0));

    let first = by_id(claim(store, claim_at(T0, 10, "w1")).await);
    assert_eq!(first.len(), 2);
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, 10), (DeliveryStatus::InFlight, 2)])
    );
    assert_eq!(
        store.next_due_at().await.expect("next_due_at"),
        Some(T0 + 100)
    );
    complete(
        store,
        &[
            completion(&first["dlv-0-a"], "w1", NextStep::Succeeded),
            completion(&first["dlv-0-b"], "w1", NextStep::Failed),
        ],
    )
    .await;

    // A retry scheduled earlier than anything else becomes the next due time.
    let retried = claim(store, claim_at(T0 + 100, 1, "w1")).await;
    assert_eq!(retried.len(), 1);
    let retried_id = retried[0].id.clone();
    assert!(
        retried_id.starts_with("dlv-1-"),
        "oldest first: got {retried_id}"
    );
    complete(
        store,
        &[completion(&retried[0], "w1", NextStep::RetryAt(T0 - 50))],
    )
    .await;
    assert_eq!(
        store.next_due_at().await.expect("next_due_at"),
        Some(T0 - 50)
    );
    let again = claim(store, claim_at(T0 + 100, 1, "w2")).await;
    assert_eq!(
        claimed_ids(&again),
        set(&[&retried_id]),
        "the retry is the oldest due"
    );
    assert_eq!(
        store.next_due_at().await.expect("next_due_at"),
        Some(T0 + 100)
    );
    assert_eq!(
        counts(store).await,
        counts_of(&[
            (DeliveryStatus::Pending, 9),
            (DeliveryStatus::InFlight, 1),
            (DeliveryStatus::Succeeded, 1),
            (DeliveryStatus::Failed, 1),
        ])
    );

    // Newest first: reverse insertion order, strictly decreasing cursors.
    let all = deliveries(store, listing.clone()).await;
    let expected: Vec<String> = (0..6)
        .rev()
        .flat_map(|i| [format!("dlv-{i}-b"), format!("dlv-{i}-a")])
        .collect();
    assert_eq!(delivery_ids(&all), expected);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    let failed = all
        .iter()
        .find(|d| d.id == "dlv-0-b")
        .expect("dlv-0-b listed");
    assert_eq!(failed.event_id, "evt-0");
    assert_eq!(failed.route_id, "route-beta");
    assert_eq!(
        (failed.status, failed.attempts),
        (DeliveryStatus::Failed, 1)
    );
    assert_eq!(failed.last_status, Some(410));

    // Each filter returns exactly the matching part of the full listing, in the same order.
    type Matches = fn(&DeliveryRecord) -> bool;
    let filters: Vec<(DeliveryFilter, Matches)> = vec![
        (
            DeliveryFilter {
                status: Some(DeliveryStatus::Failed),
                ..listing.clone()
            },
            |d| d.status == DeliveryStatus::Failed,
        ),
        (
            DeliveryFilter {
                status: Some(DeliveryStatus::Pending),
                ..listing.clone()
            },
            |d| d.status == DeliveryStatus::Pending,
        ),
        (
            DeliveryFilter {
                status: Some(DeliveryStatus::InFlight),
                ..listing.clone()
            },
            |d| d.status == DeliveryStatus::InFlight,
        ),
        (
            DeliveryFilter {
                status: Some(DeliveryStatus::Cancelled),
                ..listing.clone()
            },
            |_| false,
        ),
        (
            DeliveryFilter {
                destination: Some("alpha".into()),
                ..listing.clone()
            },
            |d| d.destination == "alpha",
        ),
        (
            DeliveryFilter {
                event_id: Some("evt-3".into()),
                ..listing.clone()
            },
            |d| d.event_id == "evt-3",
        ),
        (
            DeliveryFilter {
                destination: Some("beta".into()),
                status: Some(DeliveryStatus::Pending),
                ..listing.clone()
            },
            |d| d.destination == "beta" && d.status == DeliveryStatus::Pending,
        ),
    ];
    for (filter, matches) in &filters {
        let expected: Vec<String> = all
            .iter()
            .filter(|d| matches(d))
            .map(|d| d.id.clone())
            .collect();
        let got = delivery_ids(&deliveries(store, filter.clone()).await);
        assert_eq!(got, expected, "filter {filter:?}");
    }
    assert_eq!(
        delivery_ids(
            &deliveries(
                store,
                DeliveryFilter {
                    status: Some(DeliveryStatus::Failed),
                    ..listing.clone()
                }
            )
            .await
        ),
        ["dlv-0-b"]
    );

    // Pagination: disjoint pages that together are the full listing, in order.
    let by_destination = DeliveryFilter {
        destination: Some("alpha".into()),
        ..listing.clone()
    };
    for (filter, page_size) in [(listing.clone(), 5), (by_destination, 4)] {
        let full = delivery_ids(&deliveries(store, filter.clone()).await);
        let mut paged = Vec::new();
        let mut before_seq = None;
        for _ in 0..20 {
            let page = deliveries(
                store,
                DeliveryFilter {
                    before_seq,
                    limit: page_size,
                    ..filter.clone()
                },
            )
            .await;
            assert!(page.len() <= page_size as usize, "page larger than limit");
            let Some(last) = page.last() else { break };
            before_seq = Some(last.seq);
            paged.extend(delivery_ids(&page));
        }
        assert_eq!(paged, full, "pages of {page_size} do not cover the listing");
    }

    // Everything claimed: nothing is due any more.
    assert_eq!(
        claim(store, claim_at(T0 + 10_000, 100, "w3")).await.len(),
        9
    );
    assert_eq!(store.next_due_at().await.expect("next_due_at"), None);
}

/// One batch of 5,000 events with 2 deliveries each, claimed 256 at a time: every delivery is
/// claimed exactly once, oldest batches first, each with its own event's body.
pub async fn large_batch_is_claimed_exactly_once(store: &dyn Store) {
    const EVENTS: i64 = 5_000;
    const BATCH: usize = 256;
    let batch: Vec<NewEvent> = (0..EVENTS)
        .map(|i| {
            let (a, b) = (format!("dlv-{i}-a"), format!("dlv-{i}-b"));
            let mut event = new_event(
                &format!("evt-{i}"),
                if i % 3 == 0 { "github" } else { "stripe" },
                T0 + i,
                &[(&a, "alpha"), (&b, "beta")],
            );
            event.body = format!("body of event {i}").into_bytes();
            event
        })
        .collect();
    store
        .insert_events(&batch)
        .await
        .expect("insert 5,000 events");
    let total = 2 * EVENTS as u64;
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::Pending, total)])
    );
    for probe in [0, EVENTS / 2, EVENTS - 1] {
        let id = format!("evt-{probe}");
        let got = store.get_event(&id).await.expect("get_event");
        assert_event(
            &got.unwrap_or_else(|| panic!("{id} is missing")),
            &batch[probe as usize],
            true,
        );
    }

    let received: HashMap<&str, UnixMillis> = batch
        .iter()
        .map(|e| (e.id.as_str(), e.received_at))
        .collect();
    let mut seen = HashSet::new();
    let mut batches = Vec::new();
    for _ in 0..1_000 {
        let claimed = claim(store, claim_at(T0 + EVENTS, BATCH, "bulk")).await;
        assert!(claimed.len() <= BATCH, "claimed {} > limit", claimed.len());
        if claimed.is_empty() {
            break;
        }
        let mut due = Vec::with_capacity(claimed.len());
        for c in &claimed {
            assert!(seen.insert(c.id.clone()), "{} claimed twice", c.id);
            let index = c.event_id.trim_start_matches("evt-");
            assert_eq!(c.body, format!("body of event {index}").into_bytes());
            assert!(
                c.id.starts_with(&format!("dlv-{index}-")),
                "{} vs {}",
                c.id,
                c.event_id
            );
            due.push(received[c.event_id.as_str()]);
        }
        let (min, max) = (due.iter().min(), due.iter().max());
        batches.push((
            claimed.len(),
            *min.expect("non-empty"),
            *max.expect("non-empty"),
        ));
    }
    assert_eq!(seen.len() as u64, total, "every delivery claimed");
    let sizes: Vec<usize> = batches.iter().map(|(n, _, _)| *n).collect();
    let full = total as usize / BATCH;
    assert!(sizes[..full].iter().all(|n| *n == BATCH), "sizes {sizes:?}");
    assert_eq!(sizes[full..], [total as usize % BATCH], "sizes {sizes:?}");
    // Oldest first: each batch is due no later than the next one.
    assert!(
        batches.windows(2).all(|w| w[0].2 <= w[1].1),
        "batches out of order"
    );
    assert_eq!(
        counts(store).await,
        counts_of(&[(DeliveryStatus::InFlight, total)])
    );
    assert_eq!(store.next_due_at().await.expect("next_due_at"), None);
}

// ---------------------------------------------------------------------------------------------
// De-duplication and the rejection log
// ---------------------------------------------------------------------------------------------

/// An event carrying a dedup key.
fn keyed(id: &str, source: &str, key: &str, delivery: &str) -> NewEvent {
    NewEvent {
        dedup_key: Some(key.into()),
        ..new_event(id, source, 1_000, &[(delivery, "d")])
    }
}

/// A repeated `(source, dedup_key)` stores nothing and names the original, within one batch and
/// across batches; the same key on another source, and events without keys, are independent.
pub async fn duplicates_are_detected_per_source(store: &dyn Store) {
    let outcomes = store
        .insert_events(&[
            keyed("e1", "gh", "k1", "m1"),
            keyed("e2", "gh", "k1", "m2"),
            keyed("e3", "stripe", "k1", "m3"),
            new_event("e4", "gh", 1_000, &[("m4", "d")]),
            new_event("e5", "gh", 1_000, &[("m5", "d")]),
        ])
        .await
        .expect("insert");
    assert_eq!(
        outcomes,
        vec![
            InsertOutcome::Inserted,
            InsertOutcome::Duplicate {
                original_id: "e1".into()
            },
            InsertOutcome::Inserted,
            InsertOutcome::Inserted,
            InsertOutcome::Inserted,
        ]
    );
    let again = store
        .insert_events(&[keyed("e6", "gh", "k1", "m6"), keyed("e7", "gh", "k2", "m7")])
        .await
        .expect("insert");
    assert_eq!(
        again,
        vec![
            InsertOutcome::Duplicate {
                original_id: "e1".into()
            },
            InsertOutcome::Inserted
        ]
    );
    assert!(store.get_event("e2").await.expect("get").is_none());
    assert!(store.get_event("e6").await.expect("get").is_none());
    let ids = delivery_ids(
        &deliveries(
            store,
            DeliveryFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await,
    );
    let stored: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(
        stored,
        set(&["m1", "m3", "m4", "m5", "m7"]),
        "duplicates get no deliveries"
    );
}

/// Rejections are kept newest first and trimmed per source.
pub async fn rejections_are_bounded_per_source(store: &dyn Store) {
    let rejection = |source: &str, n: i64| Rejection {
        source: source.into(),
        received_at: n,
        code: "invalid_signature".into(),
        detail: format!("attempt {n}"),
        headers: vec![("x-hub-signature-256".into(), "sha256=00".into())],
        body_len: 10,
    };
    let first: Vec<Rejection> = (0..8).map(|n| rejection("a", n)).collect();
    store.record_rejections(&first, 5).await.expect("record");
    store
        .record_rejections(&[rejection("a", 8), rejection("b", 9)], 5)
        .await
        .expect("record");
    let kept = store.list_rejections("a", 100).await.expect("list");
    let times: Vec<i64> = kept.iter().map(|r| r.received_at).collect();
    assert_eq!(times, vec![8, 7, 6, 5, 4], "newest five, newest first");
    assert_eq!(kept[0].detail, "attempt 8");
    assert_eq!(
        kept[0].headers,
        vec![("x-hub-signature-256".to_string(), "sha256=00".to_string())]
    );
    assert_eq!(
        store.list_rejections("b", 100).await.expect("list").len(),
        1
    );
    assert_eq!(store.list_rejections("a", 2).await.expect("list").len(), 2);
}

/// Idempotency keys: first use starts, a second use sees it in progress, then the recorded
/// response; an unfinished key is taken over after five minutes; records expire after a day.
pub async fn idempotency_keys_replay_and_expire(store: &dyn Store) {
    const MIN: i64 = 60_000;
    let begin = |key: &'static str, hash: &'static str, now: i64| {
        store.idempotency_begin("scope", key, hash, now)
    };
    assert_eq!(
        begin("k1", "h1", T0).await.expect("begin"),
        IdempotencyState::Started
    );
    assert_eq!(
        begin("k1", "h1", T0 + 1).await.expect("begin"),
        IdempotencyState::InProgress {
            request_hash: "h1".into()
        }
    );
    store
        .idempotency_finish("scope", "k1", 201, b"sealed")
        .await
        .expect("finish");
    assert_eq!(
        begin("k1", "h2", T0 + 2).await.expect("begin"),
        IdempotencyState::Completed {
            request_hash: "h1".into(),
            status: 201,
            response: b"sealed".to_vec()
        }
    );
    assert_eq!(
        store
            .idempotency_begin("other-scope", "k1", "h1", T0 + 3)
            .await
            .expect("begin"),
        IdempotencyState::Started,
        "keys are per scope"
    );
    // Abandoned (e.g. a 5xx): the key is free again.
    assert_eq!(
        begin("k2", "h1", T0).await.expect("begin"),
        IdempotencyState::Started
    );
    store
        .idempotency_abandon("scope", "k2")
        .await
        .expect("abandon");
    assert_eq!(
        begin("k2", "h9", T0 + 1).await.expect("begin"),
        IdempotencyState::Started
    );
    // Left in progress by a crash: taken over after five minutes, not before.
    assert!(matches!(
        begin("k2", "h9", T0 + 5 * MIN).await.expect("begin"),
        IdempotencyState::InProgress { .. }
    ));
    assert_eq!(
        begin("k2", "h9", T0 + 5 * MIN + 2).await.expect("begin"),
        IdempotencyState::Started
    );
    // Completed records expire after a day.
    assert_eq!(
        begin("k1", "h2", T0 + 24 * 60 * MIN + 1)
            .await
            .expect("begin"),
        IdempotencyState::Started
    );
}

// ---------------------------------------------------------------------------------------------
// Outbound: ordering, resends, health, retention
// ---------------------------------------------------------------------------------------------

/// An event with one delivery to `destination` under `ordering_key`.
fn ordered_event(id: &str, delivery: &str, key: &str, at: UnixMillis) -> NewEvent {
    let mut event = new_event(id, "api", at, &[(delivery, "ordered")]);
    event.deliveries[0].ordering_key = Some(key.into());
    event
}

/// Ordered claims hand out only the head of each key; a retrying head holds back its own key
/// while other keys flow; a dead-lettered head holds its key until released; unordered claims
/// ignore keys.
pub async fn ordered_claims_respect_keys_and_holds(store: &dyn Store) {
    store
        .insert_events(&[
            ordered_event("o1", "a1", "a", T0),
            ordered_event("o2", "b1", "b", T0 + 1),
            ordered_event("o3", "a2", "a", T0 + 2),
            ordered_event("o4", "b2", "b", T0 + 3),
            ordered_event("o5", "a3", "a", T0 + 4),
        ])
        .await
        .expect("insert");
    let ordered = |now, limit, owner| Claim {
        destination: Some("ordered"),
        ordered: true,
        ..claim_at(now, limit, owner)
    };
    let first = claim(store, ordered(T0 + 10, 10, "w")).await;
    assert_eq!(claimed_ids(&first), set(&["a1", "b1"]), "heads only");
    assert!(first.iter().all(|c| c.ordering_key.is_some()));
    // While the heads are in flight nothing else of their keys is claimable.
    assert!(claim(store, ordered(T0 + 10, 10, "w")).await.is_empty());
    let first = by_id(first);
    // `a` fails and retries later; `b` succeeds.
    complete(
        store,
        &[
            completion(&first["a1"], "w", NextStep::RetryAt(T0 + 1_000)),
            completion(&first["b1"], "w", NextStep::Succeeded),
        ],
    )
    .await;
    let next = claim(store, ordered(T0 + 20, 10, "w")).await;
    assert_eq!(
        claimed_ids(&next),
        set(&["b2"]),
        "`a` is held by its retrying head"
    );
    complete(store, &[completion(&next[0], "w", NextStep::Succeeded)]).await;
    // The head's retry comes due; it fails for good and holds `a`.
    let retry = claim(store, ordered(T0 + 1_000, 10, "w")).await;
    assert_eq!(claimed_ids(&retry), set(&["a1"]));
    complete(store, &[completion(&retry[0], "w", NextStep::Failed)]).await;
    assert!(claim(store, ordered(T0 + 2_000, 10, "w")).await.is_empty());
    let holds = store.list_holds("ordered").await.expect("list_holds");
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0].ordering_key, "a");
    assert_eq!(holds[0].delivery_id, "a1");
    assert_eq!(holds[0].waiting, 2);
    assert_eq!(holds[0].last_error.as_deref(), Some("HTTP 410"));
    // Releasing lets the rest of `a` through, in order.
    let released = store
        .release_hold("ordered", "a", T0 + 2_000)
        .await
        .expect("release_hold");
    assert_eq!(released, 1);
    assert!(store.list_holds("ordered").await.expect("holds").is_empty());
    let next = claim(store, ordered(T0 + 2_000, 10, "w")).await;
    assert_eq!(claimed_ids(&next), set(&["a2"]));
    assert_eq!(
        delivery(store, "a1").await.status,
        DeliveryStatus::Failed,
        "a released delivery stays failed (and replayable)"
    );
    // Without `ordered`, keys do not matter.
    let unordered = claim(store, claim_at(T0 + 2_000, 10, "w")).await;
    assert_eq!(claimed_ids(&unordered), set(&["a3"]));
}

/// A dead-lettered delivery is marked as exhausted, which a later claim reports.
pub async fn exhausted_deliveries_are_marked(store: &dyn Store) {
    store
        .insert_events(&[new_event("e1", "s", T0, &[("m1", "d")])])
        .await
        .expect("insert");
    let first = claim(store, claim_at(T0, 1, "w")).await;
    assert!(!first[0].exhausted_before);
    complete(store, &[completion(&first[0], "w", NextStep::Failed)]).await;
    store
        .replay(&ReplaySelector::Delivery("m1".into()), T0 + 10)
        .await
        .expect("replay");
    let again = claim(store, claim_at(T0 + 10, 1, "w")).await;
    assert!(
        again[0].exhausted_before,
        "a replayed dead letter is known as such"
    );
}

/// Resends add deliveries to a stored event; the per-destination due time follows them.
pub async fn added_deliveries_and_due_times(store: &dyn Store) {
    let mut event = new_event("e1", "api", T0, &[("m1", "first")]);
    event.forward_headers = vec![("x-tenant-tag".into(), "gold".into())];
    event.tenant = Some("acme".into());
    event.event_type = Some("invoice.paid".into());
    store.insert_events(&[event]).await.expect("insert");
    assert_eq!(store.next_due_for("first").await.expect("due"), Some(T0));
    assert_eq!(store.next_due_for("second").await.expect("due"), None);
    let added = store
        .add_deliveries("e1", &[new_delivery("m2", "second")], T0 + 50)
        .await
        .expect("add_deliveries");
    assert_eq!(added, 1);
    assert_eq!(
        store
            .add_deliveries("no-such-event", &[new_delivery("m3", "second")], T0)
            .await
            .expect("add to missing event"),
        0
    );
    assert_eq!(
        store.next_due_for("second").await.expect("due"),
        Some(T0 + 50)
    );
    let claimed = claim(
        store,
        Claim {
            destination: Some("second"),
            ..claim_at(T0 + 50, 10, "w")
        },
    )
    .await;
    assert_eq!(claimed_ids(&claimed), set(&["m2"]));
    let c = &claimed[0];
    assert_eq!(
        c.forward_headers,
        vec![("x-tenant-tag".to_string(), "gold".to_string())]
    );
    assert_eq!(c.tenant.as_deref(), Some("acme"));
    assert_eq!(c.event_type.as_deref(), Some("invoice.paid"));
    assert_eq!(c.received_at, T0);
    assert_eq!(
        store.next_due_for("second").await.expect("due"),
        None,
        "in flight is not due"
    );
    // Deleting a destination cancels what still waits for it, and only that.
    store
        .add_deliveries("e1", &[new_delivery("m3", "second")], T0 + 60)
        .await
        .expect("add");
    assert_eq!(
        store
            .cancel_pending("second", T0 + 70)
            .await
            .expect("cancel"),
        1
    );
    assert_eq!(
        delivery(store, "m3").await.status,
        DeliveryStatus::Cancelled
    );
    assert_eq!(delivery(store, "m2").await.status, DeliveryStatus::InFlight);
    assert_eq!(delivery(store, "m1").await.status, DeliveryStatus::Pending);
    let stored = store.get_event("e1").await.expect("get").expect("exists");
    assert_eq!(stored.forward_headers, c.forward_headers);
}

/// Health records are upserted and listed by destination.
pub async fn health_records_round_trip(store: &dyn Store) {
    let mut record = HealthRecord {
        destination: "d1".into(),
        state: "open".into(),
        consecutive_failures: 7,
        failing_since: Some(T0),
        last_failure_at: Some(T0 + 5),
        last_success_at: None,
        last_error: Some("HTTP 503".into()),
        opened_at: Some(T0 + 5),
        updated_at: T0 + 5,
    };
    let other = HealthRecord {
        destination: "d0".into(),
        state: "closed".into(),
        consecutive_failures: 0,
        failing_since: None,
        last_failure_at: None,
        last_success_at: Some(T0),
        last_error: None,
        opened_at: None,
        updated_at: T0,
    };
    store
        .put_health(&[record.clone(), other.clone()])
        .await
        .expect("put_health");
    assert_eq!(
        store.list_health().await.expect("list"),
        vec![other.clone(), record.clone()]
    );
    record.state = "closed".into();
    record.consecutive_failures = 0;
    record.last_success_at = Some(T0 + 9);
    store.put_health(&[record.clone()]).await.expect("update");
    assert_eq!(
        store.list_health().await.expect("list"),
        vec![other, record]
    );
}

/// Retention removes old bodies only once nothing is left to send, keeps the records, and
/// replay leaves pruned events alone.
pub async fn payload_pruning_spares_pending_work(store: &dyn Store) {
    store
        .insert_events(&[
            new_event("old-done", "s", T0, &[("m1", "d")]),
            new_event("old-pending", "s", T0 + 1, &[("m2", "d")]),
            new_event("old-none", "s", T0 + 2, &[]),
            new_event("new", "s", T0 + 10_000, &[]),
        ])
        .await
        .expect("insert");
    let first = claim(
        store,
        Claim {
            now: T0,
            ..claim_at(T0, 1, "w")
        },
    )
    .await;
    assert_eq!(claimed_ids(&first), set(&["m1"]));
    complete(store, &[completion(&first[0], "w", NextStep::Succeeded)]).await;

    let cutoff = T0 + 5_000;
    assert_eq!(
        store
            .prune_payloads(cutoff, 1, T0 + 20_000)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune_payloads(cutoff, 100, T0 + 20_000)
            .await
            .expect("prune"),
        1
    );
    assert_eq!(
        store
            .prune_payloads(cutoff, 100, T0 + 20_000)
            .await
            .expect("prune"),
        0
    );
    for (id, pruned) in [
        ("old-done", true),
        ("old-none", true),
        ("old-pending", false),
        ("new", false),
    ] {
        let event = store.get_event(id).await.expect("get").expect("kept");
        assert_eq!(event.body_pruned_at.is_some(), pruned, "{id}");
        assert_eq!(event.body.is_empty(), pruned, "{id}");
    }
    assert_eq!(
        store
            .replay(&ReplaySelector::Event("old-done".into()), T0 + 30_000)
            .await
            .expect("replay"),
        0,
        "nothing to send once the body is gone"
    );
    assert_eq!(
        delivery(store, "m1").await.status,
        DeliveryStatus::Succeeded
    );
    assert_eq!(
        store
            .add_deliveries("old-done", &[new_delivery("m9", "d")], T0)
            .await
            .expect("add"),
        0
    );
}

/// Heartbeats count the nodes seen within the ttl; silent nodes age out; leaving is immediate.
pub async fn node_heartbeats_count_live_nodes(store: &dyn Store) {
    assert_eq!(store.heartbeat("a", T0, 1_000).await.expect("hb"), 1);
    assert_eq!(store.heartbeat("b", T0 + 100, 1_000).await.expect("hb"), 2);
    assert_eq!(store.heartbeat("a", T0 + 900, 1_000).await.expect("hb"), 2);
    // `b` falls silent: after the ttl it no longer counts.
    assert_eq!(
        store.heartbeat("a", T0 + 1_500, 1_000).await.expect("hb"),
        1
    );
    assert_eq!(
        store.heartbeat("c", T0 + 1_600, 1_000).await.expect("hb"),
        2
    );
    store.leave("c").await.expect("leave");
    assert_eq!(
        store.heartbeat("a", T0 + 1_700, 1_000).await.expect("hb"),
        1
    );
    // Long-silent nodes are forgotten, and coming back is fine.
    assert_eq!(
        store.heartbeat("b", T0 + 60_000, 1_000).await.expect("hb"),
        1
    );
}

/// A lease has one holder at a time; the holder renews it; others take it once it expired or
/// was released.
pub async fn leases_have_one_holder(store: &dyn Store) {
    assert!(store.try_lease("job", "a", T0, 1_000).await.expect("lease"));
    assert!(
        !store
            .try_lease("job", "b", T0 + 10, 1_000)
            .await
            .expect("lease")
    );
    // The holder renews it, pushing the expiry out.
    assert!(
        store
            .try_lease("job", "a", T0 + 900, 1_000)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .try_lease("job", "b", T0 + 1_500, 1_000)
            .await
            .expect("lease")
    );
    // Expired: `b` takes it and `a` has lost it.
    assert!(
        store
            .try_lease("job", "b", T0 + 1_900, 1_000)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .try_lease("job", "a", T0 + 1_901, 1_000)
            .await
            .expect("lease")
    );
    // Leases are independent by name.
    assert!(
        store
            .try_lease("other", "a", T0 + 1_902, 1_000)
            .await
            .expect("lease")
    );
    // Releasing by a non-holder does nothing; by the holder frees it at once.
    store.release_lease("job", "a").await.expect("release");
    assert!(
        !store
            .try_lease("job", "c", T0 + 1_950, 1_000)
            .await
            .expect("lease")
    );
    store.release_lease("job", "b").await.expect("release");
    assert!(
        store
            .try_lease("job", "c", T0 + 1_960, 1_000)
            .await
            .expect("lease")
    );
}

/// Events no route delivers (no delivery, or every delivery filtered out) can be listed apart.
pub async fn unrouted_events_are_listed_apart(store: &dyn Store) {
    store
        .insert_events(&[
            new_event("none", "s", T0, &[]),
            new_event("sent", "s", T0 + 1, &[("m1", "d")]),
            new_event("filtered", "s", T0 + 2, &[("m2", "d")]),
        ])
        .await
        .expect("insert");
    let claimed = by_id(claim(store, claim_at(T0 + 10, 10, "w")).await);
    complete(
        store,
        &[
            completion(&claimed["m1"], "w", NextStep::Succeeded),
            completion(&claimed["m2"], "w", NextStep::Filtered),
        ],
    )
    .await;
    assert_eq!(delivery(store, "m2").await.status, DeliveryStatus::Filtered);
    let listed = |routed| EventFilter {
        routed: Some(routed),
        limit: ALL,
        ..EventFilter::default()
    };
    assert_eq!(
        event_ids(&events(store, listed(false)).await),
        vec!["filtered".to_string(), "none".to_string()]
    );
    assert_eq!(
        event_ids(&events(store, listed(true)).await),
        vec!["sent".to_string()]
    );
}

/// Several claims at once: each gets its own destination's due work, in the order given.
pub async fn claim_many_claims_per_destination(store: &dyn Store) {
    store
        .insert_events(&[
            new_event("e1", "s", T0, &[("a1", "a"), ("b1", "b")]),
            new_event("e2", "s", T0 + 1, &[("a2", "a"), ("c1", "c")]),
        ])
        .await
        .expect("insert");
    let claims = [
        Claim {
            destination: Some("b"),
            ..claim_at(T0 + 10, 5, "w")
        },
        Claim {
            destination: Some("a"),
            ..claim_at(T0 + 10, 1, "w")
        },
        Claim {
            destination: Some("none"),
            ..claim_at(T0 + 10, 5, "w")
        },
    ];
    let batches = store.claim_many(&claims).await.expect("claim_many");
    assert_eq!(batches.len(), 3);
    assert_eq!(claimed_ids(&batches[0]), set(&["b1"]));
    assert_eq!(
        claimed_ids(&batches[1]),
        set(&["a1"]),
        "limit respected, oldest first"
    );
    assert!(batches[2].is_empty());
    assert_eq!(
        batches[1][0].body, br#"{"event":"e1"}"#,
        "event fields are filled"
    );
    assert_eq!(status(store, "a2").await, DeliveryStatus::Pending);
    assert_eq!(status(store, "c1").await, DeliveryStatus::Pending);
}

/// A connection record with sealed-looking credentials and tokens.
pub fn connection(id: &str, provider: &str) -> ConnectionRecord {
    ConnectionRecord {
        id: id.into(),
        provider: provider.into(),
        auth_mode: "oauth2".into(),
        params: "{\"subdomain\":\"acme\"}".into(),
        settings: "{}".into(),
        status: "active".into(),
        scopes: "repo read:user".into(),
        credentials: Some(vec![1, 2, 3, 0, 255]),
        tokens: Some(vec![9, 8, 7]),
        expires_at: Some(T0 + 3_600_000),
        version: 1,
        last_error: None,
        created_at: T0,
        updated_at: T0,
    }
}

/// Connections: create once, read, list by id, replace, compare-and-swap token updates (one
/// winner per version; a stale version changes nothing), delete.
pub async fn connections_round_trip_and_swap_tokens(store: &dyn Store) {
    let a = connection("gh-main", "github");
    store.put_connection(&a, true).await.expect("create");
    assert!(matches!(
        store.put_connection(&a, true).await,
        Err(StoreError::Conflict)
    ));
    let mut b = connection("acme-zendesk", "zendesk");
    b.credentials = None;
    b.tokens = None;
    b.expires_at = None;
    b.status = "pending".into();
    store.put_connection(&b, true).await.expect("create b");
    assert_eq!(
        store.get_connection("gh-main").await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(store.get_connection("nope").await.expect("get"), None);
    let ids: Vec<String> = store
        .list_connections()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["acme-zendesk", "gh-main"]);

    // Two refreshes computed from version 1: the first wins, the second changes nothing.
    let update = TokenUpdate {
        id: "gh-main".into(),
        expected_version: 1,
        status: "active".into(),
        tokens: Some(vec![4, 4, 4]),
        expires_at: Some(T0 + 7_200_000),
        scopes: Some("repo".into()),
        last_error: None,
        updated_at: T0 + 10,
    };
    assert!(store.update_connection_tokens(&update).await.expect("cas"));
    let loser = TokenUpdate {
        tokens: Some(vec![5, 5, 5]),
        ..update.clone()
    };
    assert!(!store.update_connection_tokens(&loser).await.expect("cas"));
    let got = store
        .get_connection("gh-main")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.version, 2);
    assert_eq!(got.tokens, Some(vec![4, 4, 4]));
    assert_eq!(got.expires_at, Some(T0 + 7_200_000));
    assert_eq!(got.scopes, "repo");
    assert_eq!(got.updated_at, T0 + 10);
    assert_eq!(got.credentials, a.credentials, "credentials untouched");

    // A status-only update (a failed refresh) keeps the tokens, expiry and scopes.
    let failed = TokenUpdate {
        id: "gh-main".into(),
        expected_version: 2,
        status: "needs_reauth".into(),
        tokens: None,
        expires_at: None,
        scopes: None,
        last_error: Some("invalid_grant".into()),
        updated_at: T0 + 20,
    };
    assert!(store.update_connection_tokens(&failed).await.expect("cas"));
    let got = store
        .get_connection("gh-main")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(
        (
            got.version,
            got.status.as_str(),
            got.tokens,
            got.expires_at,
            got.scopes.as_str(),
            got.last_error.as_deref()
        ),
        (
            3,
            "needs_reauth",
            Some(vec![4, 4, 4]),
            Some(T0 + 7_200_000),
            "repo",
            Some("invalid_grant")
        )
    );
    let gone = TokenUpdate {
        id: "missing".into(),
        ..failed
    };
    assert!(!store.update_connection_tokens(&gone).await.expect("cas"));

    // Replacing writes the whole row.
    let mut replaced = connection("gh-main", "github");
    replaced.auth_mode = "bearer".into();
    replaced.version = 1;
    store
        .put_connection(&replaced, false)
        .await
        .expect("replace");
    assert_eq!(
        store.get_connection("gh-main").await.expect("get"),
        Some(replaced)
    );

    assert!(store.delete_connection("gh-main").await.expect("delete"));
    assert!(!store.delete_connection("gh-main").await.expect("delete"));
    assert_eq!(store.list_connections().await.expect("list").len(), 1);
}

/// OAuth2 states are taken once, refused once expired, and go with their connection.
pub async fn oauth_states_are_single_use(store: &dyn Store) {
    store
        .put_connection(&connection("c1", "github"), true)
        .await
        .expect("create");
    let state = |hash: &str, expires_at| OAuthStateRecord {
        state_hash: hash.into(),
        connection_id: "c1".into(),
        sealed: vec![0, 1, 2],
        expires_at,
        created_at: T0,
    };
    store
        .put_oauth_state(&state("s1", T0 + 600_000))
        .await
        .expect("put");
    store
        .put_oauth_state(&state("s2", T0 + 1_000))
        .await
        .expect("put");
    store
        .put_oauth_state(&state("s3", T0 + 600_000))
        .await
        .expect("put");
    assert!(matches!(
        store.put_oauth_state(&state("s1", T0 + 600_000)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.take_oauth_state("s1", T0 + 10).await.expect("take"),
        Some(state("s1", T0 + 600_000))
    );
    assert_eq!(
        store.take_oauth_state("s1", T0 + 11).await.expect("take"),
        None,
        "single use"
    );
    assert_eq!(
        store
            .take_oauth_state("s2", T0 + 1_000)
            .await
            .expect("take"),
        None,
        "expired"
    );
    assert_eq!(
        store.take_oauth_state("unknown", T0).await.expect("take"),
        None
    );
    // Deleting the connection forgets its pending flows.
    assert!(store.delete_connection("c1").await.expect("delete"));
    assert_eq!(store.take_oauth_state("s3", T0).await.expect("take"), None);
}

// ---------------------------------------------------------------------------------------------
// Live feed
// ---------------------------------------------------------------------------------------------

/// A feed item as a short label: `e:<event id>` or `a:<event id>/<attempt>`.
fn feed_label(item: &switchboard_store::FeedItem) -> String {
    match &item.entry {
        switchboard_store::FeedEntry::Event(e) => format!("e:{}", e.id),
        switchboard_store::FeedEntry::Attempt(a) => {
            format!("a:{}/{}", a.attempt.event_id, a.attempt.attempt)
        }
    }
}

/// Reads the feed to its end in pages of `limit`, returning the labels and the final cursor.
async fn read_feed(
    store: &dyn Store,
    mut cursor: switchboard_store::FeedCursor,
    filter: &switchboard_store::FeedFilter,
    limit: u32,
) -> (Vec<String>, switchboard_store::FeedCursor) {
    let mut labels = Vec::new();
    for _ in 0..1000 {
        let page = store
            .feed_after(&cursor, filter, limit)
            .await
            .expect("feed_after");
        labels.extend(page.items.iter().map(feed_label));
        if page.items.is_empty() {
            return (labels, page.cursor);
        }
        cursor = page.cursor;
    }
    panic!("the feed never ended");
}

/// `labels` holds each of `expected` exactly once, events in commit order, attempts in commit
/// order, and every attempt after its event. (How the two kinds interleave may differ by
/// backend and page: SQLite has no order across tables, PostgreSQL orders by transaction.)
fn assert_feed_order(labels: &[String], expected: &[&str]) {
    let mut sorted: Vec<&str> = labels.iter().map(String::as_str).collect();
    sorted.sort();
    let mut want = expected.to_vec();
    want.sort();
    assert_eq!(sorted, want, "each item exactly once: {labels:?}");
    let kind = |prefix: &str, list: &mut dyn Iterator<Item = &str>| -> Vec<String> {
        list.filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        kind("e:", &mut labels.iter().map(String::as_str)),
        kind("e:", &mut expected.iter().copied()),
        "events in commit order: {labels:?}"
    );
    assert_eq!(
        kind("a:", &mut labels.iter().map(String::as_str)),
        kind("a:", &mut expected.iter().copied()),
        "attempts in commit order: {labels:?}"
    );
    for (i, label) in labels.iter().enumerate() {
        if let Some(rest) = label.strip_prefix("a:") {
            let event = format!("e:{}", rest.split('/').next().unwrap_or_default());
            assert!(
                labels[..i].contains(&event),
                "{label} comes after its event: {labels:?}"
            );
        }
    }
}

/// Waits until the feed from the beginning holds `count` items. On PostgreSQL a committed row
/// shows once every older transaction of the server has ended (other tests' included).
async fn feed_settled(store: &dyn Store, count: usize) {
    let all = switchboard_store::FeedFilter::default();
    for _ in 0..400 {
        let (labels, _) =
            read_feed(store, switchboard_store::FeedCursor::BEGINNING, &all, 1000).await;
        if labels.len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the feed never showed {count} items");
}

/// Events and attempts come in commit order, attempts after their events; every page size and
/// every resume point gives the same sequence, with no repeat; filters apply to both kinds, and
/// the head cursor shows only what comes later.
pub async fn feed_follows_commit_order(store: &dyn Store) {
    use switchboard_store::{FeedCursor, FeedEntry, FeedFilter};
    let mut first = new_event(
        "01J0000000000000000000FE01",
        "github",
        T0,
        &[("fd-1", "hook")],
    );
    first.event_type = Some("push".into());
    let mut second = new_event("01J0000000000000000000FE02", "stripe", T0 + 1, &[]);
    second.event_type = Some("charge.succeeded".into());
    store.insert_events(&[first, second]).await.expect("insert");
    let claimed = claim(store, claim_at(T0 + 10, 10, "w")).await;
    assert_eq!(claimed.len(), 1);
    complete(
        store,
        &[completion(&claimed[0], "w", NextStep::RetryAt(T0 + 20))],
    )
    .await;
    let claimed = claim(store, claim_at(T0 + 30, 10, "w")).await;
    complete(store, &[completion(&claimed[0], "w", NextStep::Succeeded)]).await;
    let mut third = new_event("01J0000000000000000000FE03", "github", T0 + 40, &[]);
    third.event_type = Some("issues".into());
    store.insert_events(&[third]).await.expect("insert");
    feed_settled(store, 5).await;

    let all = FeedFilter::default();
    let (labels, end) = read_feed(store, FeedCursor::BEGINNING, &all, 100).await;
    let expected = [
        "e:01J0000000000000000000FE01",
        "e:01J0000000000000000000FE02",
        "a:01J0000000000000000000FE01/1",
        "a:01J0000000000000000000FE01/2",
        "e:01J0000000000000000000FE03",
    ];
    assert_feed_order(&labels, &expected);
    // Every page size walks the same items in a valid order.
    for limit in [1, 2, 3] {
        let (labels, _) = read_feed(store, FeedCursor::BEGINNING, &all, limit).await;
        assert_feed_order(&labels, &expected);
    }
    // Resuming from any item's cursor gives exactly what follows it: no repeat, no gap.
    let page = store
        .feed_after(&FeedCursor::BEGINNING, &all, 100)
        .await
        .expect("feed_after");
    for (i, item) in page.items.iter().enumerate() {
        let resumed = FeedCursor::parse(&item.cursor.encode()).expect("cursor text");
        let (rest, _) = read_feed(store, resumed, &all, 2).await;
        let mut whole = labels[..=i].to_vec();
        whole.extend(rest);
        assert_feed_order(&whole, &expected);
    }
    // Nothing after the end, and the head is at the end.
    assert!(read_feed(store, end, &all, 10).await.0.is_empty());
    let head = store.feed_head().await.expect("feed_head");
    assert!(read_feed(store, head, &all, 10).await.0.is_empty());

    // Attempt details, and bodies only when asked for.
    let with_body = FeedFilter {
        with_body: true,
        ..FeedFilter::default()
    };
    let page = store
        .feed_after(&FeedCursor::BEGINNING, &with_body, 100)
        .await
        .expect("feed_after");
    match &page.items[0].entry {
        FeedEntry::Event(e) => {
            assert_eq!(e.body, b"{\"event\":\"01J0000000000000000000FE01\"}");
            assert_eq!(e.event_type.as_deref(), Some("push"));
        }
        FeedEntry::Attempt(_) => panic!("an event comes first"),
    }
    let second_attempt = page
        .items
        .iter()
        .find(|i| feed_label(i) == "a:01J0000000000000000000FE01/2")
        .expect("second attempt");
    match &second_attempt.entry {
        FeedEntry::Attempt(a) => {
            assert_eq!(a.source, "github");
            assert_eq!(a.event_type.as_deref(), Some("push"));
            assert_eq!(a.route_id, "route-hook");
            assert_eq!(a.attempt.outcome, "delivered");
            assert_eq!(a.delivery_status, DeliveryStatus::Succeeded);
            assert_eq!(a.delivery_attempts, 2);
        }
        FeedEntry::Event(_) => panic!("an attempt"),
    }
    let page = store
        .feed_after(&FeedCursor::BEGINNING, &all, 100)
        .await
        .expect("feed_after");
    match &page.items[0].entry {
        FeedEntry::Event(e) => assert!(e.body.is_empty()),
        FeedEntry::Attempt(_) => panic!("an event comes first"),
    }

    // Filters: by source (events and the attempts of its events), by type, by kind.
    let github = FeedFilter {
        sources: vec!["github".into()],
        ..FeedFilter::default()
    };
    let (labels, _) = read_feed(store, FeedCursor::BEGINNING, &github, 1).await;
    assert_feed_order(
        &labels,
        &[
            "e:01J0000000000000000000FE01",
            "a:01J0000000000000000000FE01/1",
            "a:01J0000000000000000000FE01/2",
            "e:01J0000000000000000000FE03",
        ],
    );
    let charges = FeedFilter {
        event_types: vec!["charge.succeeded".into(), "issues".into()],
        ..FeedFilter::default()
    };
    let (labels, _) = read_feed(store, FeedCursor::BEGINNING, &charges, 100).await;
    assert_eq!(
        labels,
        [
            "e:01J0000000000000000000FE02",
            "e:01J0000000000000000000FE03"
        ]
    );
    let outcomes = FeedFilter {
        no_events: true,
        ..FeedFilter::default()
    };
    let (labels, _) = read_feed(store, FeedCursor::BEGINNING, &outcomes, 100).await;
    assert_eq!(
        labels,
        [
            "a:01J0000000000000000000FE01/1",
            "a:01J0000000000000000000FE01/2"
        ]
    );
    // A filtered reader's cursor moves past what it skipped: from it, only newer rows come.
    let (_, filtered_end) = read_feed(store, FeedCursor::BEGINNING, &charges, 100).await;
    let fourth = new_event("01J0000000000000000000FE04", "stripe", T0 + 50, &[]);
    store.insert_events(&[fourth]).await.expect("insert");
    feed_settled(store, 6).await;
    let stripe = FeedFilter {
        sources: vec!["stripe".into()],
        ..FeedFilter::default()
    };
    let (labels, _) = read_feed(store, filtered_end, &stripe, 100).await;
    assert_eq!(labels, ["e:01J0000000000000000000FE04"]);
    let (labels, _) = read_feed(store, head, &all, 100).await;
    assert_eq!(labels, ["e:01J0000000000000000000FE04"]);
}

/// The health overview reads the latest event per source, the backlog per destination, live
/// nodes and held leases.
pub async fn overview_reports_sources_backlog_nodes_and_leases(store: &dyn Store) {
    let empty = store
        .overview(&["a".into()], T0, 1_000)
        .await
        .expect("overview");
    assert_eq!(empty, switchboard_store::Overview::default());
    let first = new_event("ov-1", "a", T0 + 1, &[("d-1", "dst-r1")]);
    let second = new_event("ov-2", "a", T0 + 2, &[("d-2", "dst-r1"), ("d-3", "dst-r2")]);
    let other = new_event("ov-3", "b", T0 + 3, &[]);
    store
        .insert_events(&[first, second, other])
        .await
        .expect("insert");
    let mut claim = claim_at(T0 + 10, 1, "n1");
    claim.destination = Some("dst-r1");
    let claimed = store.claim_due(&claim).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    store.heartbeat("n1", T0, 1_000).await.expect("hb");
    store.heartbeat("n0", T0 - 5_000, 1_000).await.expect("hb");
    assert!(
        store
            .try_lease("job", "n1", T0, 1_000)
            .await
            .expect("lease")
    );
    assert!(
        store
            .try_lease("gone", "n1", T0 - 5_000, 1_000)
            .await
            .expect("lease")
    );
    let overview = store
        .overview(&["a".into(), "b".into(), "none".into()], T0 + 20, 1_000)
        .await
        .expect("overview");
    assert_eq!(
        overview.last_event_at,
        vec![("a".into(), T0 + 2), ("b".into(), T0 + 3)]
    );
    assert_eq!(
        overview.backlog,
        vec![("dst-r1".into(), 1, 1), ("dst-r2".into(), 1, 0)]
    );
    assert_eq!(
        overview
            .nodes
            .iter()
            .map(|n| n.id.as_str())
            .collect::<Vec<_>>(),
        ["n1"]
    );
    assert_eq!(overview.leases.len(), 1);
    assert_eq!(overview.leases[0].name, "job");
    assert_eq!(overview.leases[0].owner, "n1");
    assert_eq!(overview.leases[0].expires_at, T0 + 1_000);
}

/// A claimed delivery carries its event's correlation, derived from the stored headers.
pub async fn claimed_deliveries_carry_the_events_correlation(store: &dyn Store) {
    let event_id = "01937d6e-8f1c-7a2b-9c3d-4e5f60718293";
    let mut with_id = new_event(event_id, "a", T0, &[("d-c1", "dst")]);
    with_id
        .headers
        .push(("X-Request-Id".into(), "req-7".into()));
    let plain = new_event("plain-event", "a", T0, &[("d-c2", "dst")]);
    store
        .insert_events(&[with_id, plain])
        .await
        .expect("insert");
    let mut claimed = store
        .claim_due(&claim_at(T0 + 1, 10, "w"))
        .await
        .expect("claim");
    claimed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].correlation.request_id, "req-7");
    assert_eq!(
        claimed[0].correlation.trace_id,
        "01937d6e8f1c7a2b9c3d4e5f60718293"
    );
    assert_eq!(claimed[1].correlation.request_id, "plain-event");
    assert_eq!(claimed[1].correlation.trace_id.len(), 32);
}

/// Sealed columns for key rotation: every column is listed in key order in batches (rows
/// without a value skipped), and a value is replaced only while the row still holds the bytes
/// that were read.
pub async fn sealed_values_are_listed_and_swapped(store: &dyn Store) {
    use switchboard_store::{ResourceRecord, SealedColumn};

    for (kind, id) in [("source", "b"), ("destination", "a"), ("source", "a")] {
        store
            .put_resource(
                &ResourceRecord {
                    kind: kind.into(),
                    id: id.into(),
                    sealed: format!("{kind}/{id}").into_bytes(),
                    created_at: T0,
                    updated_at: T0,
                },
                true,
            )
            .await
            .expect("resource");
    }
    let mut pending = connection("c2", "github");
    pending.tokens = None;
    store.put_connection(&pending, true).await.expect("c2");
    store
        .put_connection(&connection("c1", "github"), true)
        .await
        .expect("c1");
    store
        .put_oauth_state(&OAuthStateRecord {
            state_hash: "h1".into(),
            connection_id: "c2".into(),
            sealed: vec![4, 4],
            expires_at: T0 + 600_000,
            created_at: T0,
        })
        .await
        .expect("state");
    store
        .idempotency_begin("tok:POST:/v1/sources", "k1", "hash", T0)
        .await
        .expect("begin");
    store
        .idempotency_begin("tok:POST:/v1/sources", "k2", "hash", T0)
        .await
        .expect("begin");
    store
        .idempotency_finish("tok:POST:/v1/sources", "k1", 201, b"sealed-response")
        .await
        .expect("finish");

    // Resources in two batches of two, then one.
    let first = store
        .sealed_values(SealedColumn::Resources, None, 2)
        .await
        .expect("first batch");
    let keys: Vec<Vec<String>> = first.iter().map(|v| v.key.clone()).collect();
    assert_eq!(
        keys,
        vec![
            vec!["destination".to_owned(), "a".to_owned()],
            vec!["source".to_owned(), "a".to_owned()]
        ]
    );
    let cursor = first.last().map(|v| v.key.clone()).expect("cursor");
    let second = store
        .sealed_values(SealedColumn::Resources, Some(&cursor), 2)
        .await
        .expect("second batch");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].sealed, b"source/b");
    let last = second[0].key.clone();
    assert!(
        store
            .sealed_values(SealedColumn::Resources, Some(&last), 2)
            .await
            .expect("end")
            .is_empty()
    );

    let count = |column| async move {
        store
            .sealed_values(column, None, 100)
            .await
            .expect("list")
            .len()
    };
    assert_eq!(count(SealedColumn::ConnectionCredentials).await, 2);
    assert_eq!(
        count(SealedColumn::ConnectionTokens).await,
        1,
        "NULL skipped"
    );
    assert_eq!(count(SealedColumn::OAuthStates).await, 1);
    assert_eq!(
        count(SealedColumn::Idempotency).await,
        1,
        "in progress skipped"
    );

    // Compare-and-swap.
    let value = &second[0];
    assert!(
        store
            .replace_sealed(value, b"resealed")
            .await
            .expect("swap")
    );
    assert!(
        !store.replace_sealed(value, b"again").await.expect("stale"),
        "the row no longer holds the bytes read"
    );
    let now: Vec<Vec<u8>> = store
        .list_resources()
        .await
        .expect("resources")
        .into_iter()
        .filter(|r| r.kind == "source" && r.id == "b")
        .map(|r| r.sealed)
        .collect();
    assert_eq!(now, [b"resealed".to_vec()]);
    for column in SealedColumn::ALL {
        for value in store.sealed_values(column, None, 100).await.expect("list") {
            let mut swapped = value.sealed.clone();
            swapped.push(0);
            assert!(
                store.replace_sealed(&value, &swapped).await.expect("swap"),
                "{value:?}"
            );
        }
    }
    let tokens = store
        .get_connection("c1")
        .await
        .expect("read")
        .expect("c1")
        .tokens;
    assert_eq!(tokens, Some(vec![9, 8, 7, 0]));
    match store
        .idempotency_begin("tok:POST:/v1/sources", "k1", "hash", T0)
        .await
        .expect("replay")
    {
        IdempotencyState::Completed { response, .. } => {
            assert_eq!(response, b"sealed-response\0")
        }
        other => panic!("expected the stored response, got {other:?}"),
    }
}

/// Configuration updates apply only at the version read, and do not bump it: a token update
/// that read the same version still applies afterwards.
pub async fn connection_config_updates_keep_token_swaps_valid(store: &dyn Store) {
    use switchboard_store::ConfigUpdate;
    store
        .put_connection(&connection("c1", "github"), true)
        .await
        .expect("create");
    let update = ConfigUpdate {
        id: "c1".into(),
        expected_version: 1,
        params: "{\"subdomain\":\"other\"}".into(),
        settings: "{\"burst\":3}".into(),
        scopes: "repo".into(),
        credentials: Some(vec![5, 5]),
        updated_at: T0 + 10,
    };
    assert!(
        store
            .update_connection_config(&update)
            .await
            .expect("update")
    );
    let row = store.get_connection("c1").await.expect("read").expect("c1");
    assert_eq!(row.params, "{\"subdomain\":\"other\"}");
    assert_eq!(row.settings, "{\"burst\":3}");
    assert_eq!(row.scopes, "repo");
    assert_eq!(row.credentials, Some(vec![5, 5]));
    assert_eq!(row.tokens, Some(vec![9, 8, 7]), "tokens untouched");
    assert_eq!(row.version, 1, "not bumped");
    let refresh = TokenUpdate {
        id: "c1".into(),
        expected_version: 1,
        status: "active".into(),
        tokens: Some(vec![1]),
        expires_at: Some(T0 + 1),
        scopes: None,
        last_error: None,
        updated_at: T0 + 20,
    };
    assert!(
        store
            .update_connection_tokens(&refresh)
            .await
            .expect("refresh")
    );
    assert!(
        !store
            .update_connection_config(&update)
            .await
            .expect("stale"),
        "a token update happened since version 1 was read"
    );
    let row = store.get_connection("c1").await.expect("read").expect("c1");
    assert_eq!(row.tokens, Some(vec![1]));
    assert!(
        !store
            .update_connection_config(&ConfigUpdate {
                id: "gone".into(),
                ..update
            })
            .await
            .expect("missing")
    );
}

// ---------------------------------------------------------------------------------------------
// Syncs
// ---------------------------------------------------------------------------------------------

fn sync_run(id: &str, sync_id: &str, started_at: UnixMillis) -> switchboard_store::SyncRunRecord {
    switchboard_store::SyncRunRecord {
        id: id.into(),
        sync_id: sync_id.into(),
        status: "running".into(),
        mode: "full".into(),
        trigger: "api".into(),
        started_at,
        updated_at: started_at,
        finished_at: None,
        counts: switchboard_store::SyncCounts::default(),
        error: None,
        checkpoint: "{}".into(),
        cancel_requested: false,
    }
}

/// The sync engine's state: a checkpoint writes the seen records, removes keys and records
/// progress in one go; unseen keys are what a run did not see; a finished run is no longer
/// open and keeps the cursor; a cancel stops a running run at its next checkpoint and ends a
/// paused one at once; runs list newest first with a `before` cursor.
pub async fn sync_runs_checkpoints_and_the_records_cache(store: &dyn Store) {
    use switchboard_store::{SyncCheckpoint, SyncCounts, SyncFinish};
    assert_eq!(store.sync_open_run("s").await.expect("open"), None);
    store
        .sync_start_run(&sync_run("run_01", "s", T0))
        .await
        .expect("start");
    assert_eq!(store.sync_open_run("other").await.expect("open"), None);
    let open = store
        .sync_open_run("s")
        .await
        .expect("open")
        .expect("a run");
    assert_eq!(open.id, "run_01");

    let seen: Vec<(String, String)> = (0..1500)
        .map(|i| (format!("\"k{i:05}\""), format!("h{i}")))
        .collect();
    let counts = SyncCounts {
        pages: 1,
        fetched: 1500,
        created: 1500,
        ..SyncCounts::default()
    };
    let cancel = store
        .sync_checkpoint(&SyncCheckpoint {
            run_id: "run_01".into(),
            sync_id: "s".into(),
            seen: seen.clone(),
            removed: Vec::new(),
            counts,
            checkpoint: "{\"page\":2}".into(),
            now: T0 + 1,
        })
        .await
        .expect("checkpoint");
    assert!(!cancel);
    let run = store
        .get_sync_run("run_01")
        .await
        .expect("get")
        .expect("run");
    assert_eq!(run.counts, counts);
    assert_eq!(run.checkpoint, "{\"page\":2}");
    assert_eq!(run.updated_at, T0 + 1);
    let keys: Vec<String> = vec!["\"k00001\"".into(), "\"k01499\"".into(), "\"nope\"".into()];
    let mut hashes = store.sync_hashes("s", &keys).await.expect("hashes");
    hashes.sort();
    assert_eq!(
        hashes,
        vec![
            ("\"k00001\"".to_owned(), "h1".to_owned()),
            ("\"k01499\"".to_owned(), "h1499".to_owned())
        ]
    );
    assert!(
        store
            .sync_hashes("other", &keys)
            .await
            .expect("hashes")
            .is_empty()
    );
    assert!(
        store
            .sync_unseen("s", "run_01", 10)
            .await
            .expect("unseen")
            .is_empty()
    );
    store
        .sync_finish_run(&SyncFinish {
            run_id: "run_01".into(),
            sync_id: "s".into(),
            status: "succeeded".into(),
            error: None,
            cursor: Some(Some("2024-01-01".into())),
            now: T0 + 2,
        })
        .await
        .expect("finish");
    assert_eq!(store.sync_open_run("s").await.expect("open"), None);
    assert_eq!(
        store.sync_cursor("s").await.expect("cursor").as_deref(),
        Some("2024-01-01")
    );

    // A second run sees all but 3 keys and changes one hash: the 3 are unseen, in key order.
    store
        .sync_start_run(&sync_run("run_02", "s", T0 + 10))
        .await
        .expect("start");
    let mut again: Vec<(String, String)> = seen[3..].to_vec();
    again[0].1 = "changed".into();
    store
        .sync_checkpoint(&SyncCheckpoint {
            run_id: "run_02".into(),
            sync_id: "s".into(),
            seen: again,
            removed: Vec::new(),
            counts: SyncCounts::default(),
            checkpoint: "{}".into(),
            now: T0 + 11,
        })
        .await
        .expect("checkpoint");
    let unseen = store.sync_unseen("s", "run_02", 2).await.expect("unseen");
    assert_eq!(
        unseen,
        vec!["\"k00000\"".to_owned(), "\"k00001\"".to_owned()]
    );
    assert_eq!(
        store
            .sync_hashes("s", &["\"k00003\"".into()])
            .await
            .expect("hashes"),
        vec![("\"k00003\"".to_owned(), "changed".to_owned())]
    );
    let removed = store.sync_unseen("s", "run_02", 100).await.expect("unseen");
    assert_eq!(removed.len(), 3);
    store
        .sync_checkpoint(&SyncCheckpoint {
            run_id: "run_02".into(),
            sync_id: "s".into(),
            seen: Vec::new(),
            removed,
            counts: SyncCounts {
                deleted: 3,
                ..SyncCounts::default()
            },
            checkpoint: "{}".into(),
            now: T0 + 12,
        })
        .await
        .expect("checkpoint");
    assert!(
        store
            .sync_unseen("s", "run_02", 100)
            .await
            .expect("unseen")
            .is_empty()
    );
    // A cancel of a running run is seen by its next checkpoint.
    assert_eq!(
        store
            .sync_request_cancel("s", T0 + 13)
            .await
            .expect("cancel")
            .as_deref(),
        Some("run_02")
    );
    let cancel = store
        .sync_checkpoint(&SyncCheckpoint {
            run_id: "run_02".into(),
            sync_id: "s".into(),
            seen: Vec::new(),
            removed: Vec::new(),
            counts: SyncCounts::default(),
            checkpoint: "{}".into(),
            now: T0 + 14,
        })
        .await
        .expect("checkpoint");
    assert!(cancel);
    store
        .sync_finish_run(&SyncFinish {
            run_id: "run_02".into(),
            sync_id: "s".into(),
            status: "paused".into(),
            error: Some("max_records reached".into()),
            cursor: None,
            now: T0 + 15,
        })
        .await
        .expect("pause");
    // Paused is open (resumable); a cancel ends it at once.
    assert_eq!(
        store.sync_open_run("s").await.expect("open").map(|r| r.id),
        Some("run_02".into())
    );
    store
        .sync_resume_run("run_02", T0 + 16)
        .await
        .expect("resume");
    let resumed = store
        .get_sync_run("run_02")
        .await
        .expect("get")
        .expect("run");
    assert_eq!(
        (resumed.status.as_str(), resumed.finished_at),
        ("running", None)
    );
    store
        .sync_finish_run(&SyncFinish {
            run_id: "run_02".into(),
            sync_id: "s".into(),
            status: "paused".into(),
            error: None,
            cursor: None,
            now: T0 + 17,
        })
        .await
        .expect("pause");
    assert_eq!(
        store
            .sync_request_cancel("s", T0 + 18)
            .await
            .expect("cancel")
            .as_deref(),
        Some("run_02")
    );
    let cancelled = store
        .get_sync_run("run_02")
        .await
        .expect("get")
        .expect("run");
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(cancelled.finished_at, Some(T0 + 18));
    assert_eq!(
        store
            .sync_request_cancel("s", T0 + 19)
            .await
            .expect("cancel"),
        None
    );
    // The cursor of the first run is kept (the second never succeeded).
    assert_eq!(
        store.sync_cursor("s").await.expect("cursor").as_deref(),
        Some("2024-01-01")
    );

    let runs = store.list_sync_runs("s", None, 10).await.expect("runs");
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["run_02", "run_01"]);
    let older = store
        .list_sync_runs("s", Some("run_02"), 10)
        .await
        .expect("runs");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, "run_01");
    assert!(
        store
            .list_sync_runs("other", None, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// Audit trail and retention
// ---------------------------------------------------------------------------------------------

/// An audit entry of `actor` doing `action` on `kind`/`id` at `at`.
fn audit_entry(n: u32, actor: &str, action: &str, kind: &str, id: &str, at: i64) -> AuditRecord {
    AuditRecord {
        seq: 0,
        id: format!("aud_{n}"),
        at,
        actor: actor.into(),
        action: action.into(),
        resource_kind: kind.into(),
        resource_id: Some(id.into()),
        method: "PUT".into(),
        path: format!("/v1/{kind}s/{id}"),
        status: 200,
        request_id: Some(format!("req-{n}")),
        before: (action != "create").then(|| format!("{{\"id\":\"{id}\",\"v\":{n}}}")),
        after: (action != "delete").then(|| format!("{{\"id\":\"{id}\",\"v\":{}}}", n + 1)),
    }
}

/// Audit entries round-trip, filter by actor, resource, action and time, page newest first,
/// and are pruned by age.
pub async fn audit_entries_filter_page_and_prune(store: &dyn Store) {
    let entries = [
        audit_entry(1, "tok_a", "create", "destination", "d1", T0),
        audit_entry(2, "tok_a", "update", "destination", "d1", T0 + 10),
        audit_entry(3, "tok_b", "create", "source", "s1", T0 + 20),
        audit_entry(4, "bootstrap", "delete", "destination", "d1", T0 + 30),
        audit_entry(5, "tok_b", "revoke", "token", "tok_a", T0 + 40),
    ];
    for entry in &entries {
        store.record_audit(entry).await.expect("record_audit");
    }
    let list = |filter: AuditFilter| async move {
        store
            .list_audit(&AuditFilter {
                limit: if filter.limit == 0 { ALL } else { filter.limit },
                ..filter
            })
            .await
            .expect("list_audit")
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(AuditFilter::default()).await,
        ["aud_5", "aud_4", "aud_3", "aud_2", "aud_1"]
    );
    let all = store
        .list_audit(&AuditFilter {
            limit: ALL,
            ..AuditFilter::default()
        })
        .await
        .expect("list");
    let stored = all.iter().find(|r| r.id == "aud_2").expect("aud_2");
    assert_eq!(
        AuditRecord {
            seq: 0,
            ..stored.clone()
        },
        entries[1],
        "every field round-trips"
    );
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(
        list(AuditFilter {
            actor: Some("tok_b".into()),
            ..AuditFilter::default()
        })
        .await,
        ["aud_5", "aud_3"]
    );
    assert_eq!(
        list(AuditFilter {
            resource_kind: Some("destination".into()),
            resource_id: Some("d1".into()),
            ..AuditFilter::default()
        })
        .await,
        ["aud_4", "aud_2", "aud_1"]
    );
    assert_eq!(
        list(AuditFilter {
            action: Some("create".into()),
            since: Some(T0 + 5),
            ..AuditFilter::default()
        })
        .await,
        ["aud_3"]
    );
    // Paging: two at a time, continuing below the last seq.
    let first = store
        .list_audit(&AuditFilter {
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .expect("page");
    assert_eq!(first.len(), 2);
    assert_eq!(
        list(AuditFilter {
            before_seq: Some(first[1].seq),
            limit: 2,
            ..AuditFilter::default()
        })
        .await,
        ["aud_3", "aud_2"]
    );
    // Pruning goes by age, oldest first, in batches.
    assert_eq!(store.prune_audit(T0 + 25, 2).await.expect("prune"), 2);
    assert_eq!(store.prune_audit(T0 + 25, 2).await.expect("prune"), 1);
    assert_eq!(store.prune_audit(T0 + 25, 2).await.expect("prune"), 0);
    assert_eq!(list(AuditFilter::default()).await, ["aud_5", "aud_4"]);
}

/// Retention of whole events spares events with work left (pending, in flight, or a dead
/// letter holding its ordering key), takes deliveries, attempts and dedup keys with the
/// event, and attempt retention spares running deliveries.
pub async fn retention_prunes_exactly_what_is_due(store: &dyn Store) {
    let mut held = new_event("old-held", "s", T0 + 3, &[("m3", "ordered")]);
    held.deliveries[0].ordering_key = Some("k".into());
    let mut keyed = new_event("old-none", "s", T0 + 2, &[]);
    keyed.dedup_key = Some("dk".into());
    store
        .insert_events(&[
            new_event("old-done", "s", T0, &[("m1", "d")]),
            keyed,
            held,
            new_event("new", "s", T0 + 10_000, &[("m4", "d")]),
            new_event("new-retrying", "s", T0 + 10_001, &[("m5", "d")]),
        ])
        .await
        .expect("insert");
    let claimed = by_id(
        claim(
            store,
            Claim {
                destination: Some("d"),
                ..claim_at(T0 + 20_000, 10, "w")
            },
        )
        .await,
    );
    let ordered = claim(
        store,
        Claim {
            destination: Some("ordered"),
            ordered: true,
            ..claim_at(T0 + 20_000, 10, "w")
        },
    )
    .await;
    assert_eq!(claimed_ids(&ordered), set(&["m3"]));
    complete(
        store,
        &[
            completion(&claimed["m1"], "w", NextStep::Succeeded),
            completion(&claimed["m4"], "w", NextStep::Succeeded),
            completion(&claimed["m5"], "w", NextStep::RetryAt(T0 + 99_000)),
            completion(&ordered[0], "w", NextStep::Failed),
        ],
    )
    .await;
    // Inserted after the claims, so that it stays pending.
    store
        .insert_events(&[new_event("old-pending", "s", T0 + 1, &[("m2", "d")])])
        .await
        .expect("insert");

    let cutoff = T0 + 5_000;
    assert_eq!(store.prune_events(cutoff, 1).await.expect("prune"), 1);
    assert_eq!(store.prune_events(cutoff, 100).await.expect("prune"), 1);
    assert_eq!(store.prune_events(cutoff, 100).await.expect("prune"), 0);
    for (id, kept) in [
        ("old-done", false),
        ("old-none", false),
        ("old-pending", true),
        ("old-held", true),
        ("new", true),
    ] {
        assert_eq!(
            store.get_event(id).await.expect("get").is_some(),
            kept,
            "{id}"
        );
    }
    assert!(store.get_delivery("m1").await.expect("get").is_none());
    assert!(
        store
            .list_attempts(Some("old-done"), None)
            .await
            .expect("attempts")
            .is_empty()
    );
    // The dedup key went with its event.
    let mut again = new_event("old-none-again", "s", T0 + 30_000, &[]);
    again.dedup_key = Some("dk".into());
    assert_eq!(
        store.insert_events(&[again]).await.expect("insert"),
        [InsertOutcome::Inserted]
    );
    // Releasing the hold makes the dead letter's event prunable.
    store
        .release_hold("ordered", "k", T0 + 30_000)
        .await
        .expect("release");
    assert_eq!(store.prune_events(cutoff, 100).await.expect("prune"), 1);
    assert!(store.get_event("old-held").await.expect("get").is_none());

    // Attempts (all started at T0 + 7): the finished delivery's go, the retrying one's stay.
    assert_eq!(store.prune_attempts(cutoff, 100).await.expect("prune"), 1);
    assert_eq!(store.prune_attempts(cutoff, 100).await.expect("prune"), 0);
    assert!(
        store
            .list_attempts(None, Some("m4"))
            .await
            .expect("attempts")
            .is_empty()
    );
    assert_eq!(
        store
            .list_attempts(None, Some("m5"))
            .await
            .expect("attempts")
            .len(),
        1
    );
    assert_eq!(
        delivery(store, "m4").await.status,
        DeliveryStatus::Succeeded,
        "the delivery stays"
    );
}

/// The schema version and the heartbeating nodes are readable (for `switchboard doctor`).
pub async fn schema_version_and_nodes_are_reported(store: &dyn Store) {
    assert!(store.schema_version().await.expect("schema_version") >= 10);
    assert!(store.list_nodes().await.expect("list_nodes").is_empty());
    store.heartbeat("b", T0, 1_000).await.expect("hb");
    store.heartbeat("a", T0 + 5, 1_000).await.expect("hb");
    store.heartbeat("a", T0 + 50, 1_000).await.expect("hb");
    let nodes = store.list_nodes().await.expect("list_nodes");
    let seen: Vec<(&str, i64, i64)> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.started_at, n.last_seen))
        .collect();
    assert_eq!(seen, [("a", T0 + 5, T0 + 50), ("b", T0, T0)]);
}

/// Inserts events in batches of 500 (one transaction each).
async fn insert_in_batches(store: &dyn Store, events: Vec<NewEvent>) {
    for chunk in events.chunks(500) {
        store.insert_events(chunk).await.expect("insert");
    }
}

/// Body text search runs in the database: a match anywhere in history is found, bytes compare
/// exactly (no case folding, no wildcards, binary bodies too) together with the other filters,
/// and a bounded search pages through every event with its scan floor.
pub async fn body_search_finds_matches_anywhere_in_history(store: &dyn Store) {
    let mut batch = Vec::new();
    let mut needle = new_event("evt-needle", "github", T0, &[("dlv-needle", "alpha")]);
    needle.body = br#"{"order":{"id":"needle-42"}}"#.to_vec();
    batch.push(needle);
    let mut binary = new_event("evt-binary", "stripe", T0 + 1, &[]);
    binary.body = [&[0xff, 0x00][..], b"needle-42", &[0xfe]].concat();
    batch.push(binary);
    // 600 newer events without it: more than any "newest N" scan of the past would read.
    for i in 0..600 {
        batch.push(new_event(
            &format!("evt-{i:04}"),
            "github",
            T0 + 10 + i,
            &[],
        ));
    }
    let mut percent = new_event("evt-percent", "stripe", T0 + 700, &[]);
    percent.body = b"100% off_sale".to_vec();
    batch.push(percent);
    insert_in_batches(store, batch).await;

    let text = |text: &str| EventFilter {
        body_contains: Some(text.into()),
        limit: ALL,
        ..EventFilter::default()
    };
    let found = |filter: EventFilter| async move { event_ids(&events(store, filter).await) };
    assert_eq!(found(text("needle-42")).await, ["evt-binary", "evt-needle"]);
    assert_eq!(
        found(EventFilter {
            source: Some("github".into()),
            ..text("needle-42")
        })
        .await,
        ["evt-needle"]
    );
    assert_eq!(
        found(EventFilter {
            delivery_status: Some(DeliveryStatus::Pending),
            ..text("needle")
        })
        .await,
        ["evt-needle"]
    );
    assert!(found(text("NEEDLE-42")).await.is_empty(), "case-sensitive");
    assert_eq!(found(text("0% o")).await, ["evt-percent"]);
    assert_eq!(found(text("f_s")).await, ["evt-percent"]);
    assert!(
        found(text("%")).await == ["evt-percent"],
        "no LIKE wildcards"
    );
    assert!(
        found(text("_")).await == ["evt-percent"],
        "no LIKE wildcards"
    );
    assert!(found(text("needle-43")).await.is_empty());
    assert_eq!(
        found(text("")).await.len(),
        603,
        "an empty text is no filter"
    );

    // Unbounded enough, one call finds both and says nothing is left.
    let search = store
        .search_events(
            &EventFilter {
                limit: 10,
                ..text("needle-42")
            },
            10_000,
        )
        .await
        .expect("search");
    assert_eq!(event_ids(&search.events), ["evt-binary", "evt-needle"]);
    assert_eq!(search.scan_floor, None);

    // Bounded to 100 bodies per call: the first call finds nothing among the newest 100 but
    // says where to go on; following the floors reaches both matches, and every call stays
    // within its window.
    let mut before = None;
    let mut seen = Vec::new();
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls <= 20, "the search ends");
        let filter = EventFilter {
            before_seq: before,
            limit: 3,
            ..text("needle-42")
        };
        let search = store.search_events(&filter, 100).await.expect("search");
        if calls == 1 {
            assert!(search.events.is_empty(), "{:?}", event_ids(&search.events));
            assert!(search.scan_floor.is_some());
        }
        let (page, next) = search.into_page(2);
        seen.extend(event_ids(&page));
        match next {
            Some(seq) => before = Some(seq),
            None => break,
        }
    }
    assert_eq!(seen, ["evt-binary", "evt-needle"]);
    assert!(calls >= 6, "603 events in windows of 100: {calls} calls");

    // A full page pages by its last row; the window reaching the oldest row leaves no floor.
    let filter = EventFilter {
        limit: 2,
        ..text("needle-42")
    };
    let (page, next) = store
        .search_events(&filter, 10_000)
        .await
        .expect("search")
        .into_page(1);
    assert_eq!(event_ids(&page), ["evt-binary"]);
    let (page, next) = store
        .search_events(
            &EventFilter {
                before_seq: next,
                ..filter.clone()
            },
            10_000,
        )
        .await
        .expect("search")
        .into_page(1);
    assert_eq!(
        (event_ids(&page), next),
        (vec!["evt-needle".to_owned()], None)
    );
    let stripe = EventFilter {
        source: Some("stripe".into()),
        ..text("e")
    };
    let stripe = |scan| store.search_events(&stripe, scan);
    let two = stripe(2).await.expect("search");
    assert_eq!(event_ids(&two.events), ["evt-percent", "evt-binary"]);
    assert_eq!(two.scan_floor, None, "the window held every stripe event");
    let one = stripe(1).await.expect("search");
    assert_eq!(event_ids(&one.events), ["evt-percent"]);
    assert_eq!(one.scan_floor, Some(one.events[0].seq));

    // Without a text, a search is the listing.
    let plain = EventFilter {
        source: Some("stripe".into()),
        limit: ALL,
        ..EventFilter::default()
    };
    let search = store.search_events(&plain, 1).await.expect("search");
    assert_eq!(event_ids(&search.events), ["evt-percent", "evt-binary"]);
    assert_eq!(search.scan_floor, None);
}

/// The overview's charts: events per bucket and source, attempts per bucket and outcome,
/// counted by the database with bucket bounds inclusive at the start and exclusive at the end,
/// exact beyond any row cap.
pub async fn histograms_count_rows_per_bucket(store: &dyn Store) {
    use switchboard_store::{BucketCount, Buckets};
    let buckets = Buckets {
        start: T0,
        width_ms: 1_000,
        count: 3,
    };
    let count = |bucket: u32, key: &str, count: u64| BucketCount {
        bucket,
        key: key.into(),
        count,
    };
    let mut batch = vec![
        new_event("h-before", "github", T0 - 1, &[]),
        new_event("h-0a", "github", T0, &[]),
        new_event("h-0b", "github", T0 + 999, &[]),
        new_event("h-0c", "stripe", T0 + 999, &[]),
        new_event("h-2", "stripe", T0 + 2_999, &[]),
        new_event("h-end", "github", T0 + 3_000, &[]),
    ];
    // More events in bucket 1 than the dashboard ever read as rows.
    for i in 0..10_500 {
        batch.push(new_event(
            &format!("h-1-{i:05}"),
            "shopify",
            T0 + 1_000 + i % 1_000,
            &[],
        ));
    }
    insert_in_batches(store, batch).await;
    assert_eq!(
        store.event_histogram(&buckets).await.expect("histogram"),
        [
            count(0, "github", 2),
            count(0, "stripe", 1),
            count(1, "shopify", 10_500),
            count(2, "stripe", 1),
        ]
    );
    let empty = Buckets {
        width_ms: 0,
        ..buckets
    };
    assert!(
        store
            .event_histogram(&empty)
            .await
            .expect("histogram")
            .is_empty()
    );

    // Attempts of deliveries of older events (outside the event buckets), started at chosen
    // times.
    let a0 = T0 + 100_000;
    let attempts = Buckets {
        start: a0,
        width_ms: 1_000,
        count: 3,
    };
    let deliveries: Vec<(String, String)> = (1..=6)
        .map(|i| (format!("ha-{i}"), "alpha".to_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = deliveries
        .iter()
        .map(|(id, d)| (id.as_str(), d.as_str()))
        .collect();
    store
        .insert_events(&[new_event("h-attempts", "github", T0 - 10_000, &pairs)])
        .await
        .expect("insert");
    let claimed = by_id(claim(store, claim_at(T0, 10, "w")).await);
    let at = |id: &str, next: NextStep, started_at: UnixMillis| {
        let mut c = completion(&claimed[id], "w", next);
        c.attempt.started_at = started_at;
        c
    };
    complete(
        store,
        &[
            at("ha-1", NextStep::Succeeded, a0 + 10),
            at("ha-2", NextStep::RetryAt(T0 + 1), a0 + 20),
            at("ha-3", NextStep::Failed, a0 + 2_500),
            at("ha-4", NextStep::Filtered, a0 + 2_600),
            at("ha-5", NextStep::Succeeded, a0 + 3_000),
            at("ha-6", NextStep::Succeeded, a0 - 1),
        ],
    )
    .await;
    let again = claim(store, claim_at(T0 + 2, 10, "w")).await;
    assert_eq!(claimed_ids(&again), set(&["ha-2"]));
    let mut retry = completion(&again[0], "w", NextStep::Succeeded);
    retry.attempt.started_at = a0 + 1_500;
    complete(store, &[retry]).await;
    assert_eq!(
        store.attempt_histogram(&attempts).await.expect("histogram"),
        [
            count(0, "delivered", 1),
            count(0, "retryable", 1),
            count(1, "delivered", 1),
            count(2, "filtered", 1),
            count(2, "permanent", 1),
        ]
    );
}

/// Dashboard sign-outs are kept in the store until the session's expiry (for every node and
/// across restarts), and expired entries are deleted by later sign-outs.
pub async fn sign_outs_hold_until_expiry_and_are_pruned(store: &dyn Store) {
    let signed_out = |sid: &'static str, now: UnixMillis| async move {
        store.is_signed_out(sid, now).await.expect("is_signed_out")
    };
    assert!(!signed_out("s1", T0).await);
    store
        .record_sign_out("s1", T0 + 1_000, T0)
        .await
        .expect("record");
    assert!(signed_out("s1", T0).await);
    assert!(signed_out("s1", T0 + 999).await);
    assert!(
        !signed_out("s1", T0 + 1_000).await,
        "expired with the session"
    );
    assert!(!signed_out("s2", T0).await);
    // Signing out again never shortens the entry.
    store
        .record_sign_out("s1", T0 + 500, T0)
        .await
        .expect("record again");
    assert!(signed_out("s1", T0 + 800).await);
    // A later sign-out deletes the entries that expired by then.
    store
        .record_sign_out("s2", T0 + 10_000, T0 + 2_000)
        .await
        .expect("record");
    assert!(!signed_out("s1", T0).await, "the expired entry was deleted");
    assert!(signed_out("s2", T0 + 2_000).await);
}

pub async fn parked_conflicts_resolve_into_the_records_cache(store: &dyn Store) {
    let conflict = |key: &str| switchboard_store::SyncConflict {
        sync_id: "two".into(),
        record_key: key.into(),
        source: Some(r#"{"id":1,"title":"a"}"#.into()),
        destination: Some(r#"{"id":1,"title":"b"}"#.into()),
        detected_at: T0,
    };
    store
        .sync_put_conflicts("two", &[conflict("1"), conflict("2")], &[])
        .await
        .expect("park");
    let found = store
        .get_sync_conflict("two", "1")
        .await
        .expect("get")
        .expect("parked");
    assert_eq!(
        found.destination.as_deref(),
        Some(r#"{"id":1,"title":"b"}"#)
    );
    assert!(
        store
            .get_sync_conflict("two", "9")
            .await
            .expect("get")
            .is_none()
    );
    // A chosen side: the conflict goes, the cache holds the loser's hash.
    assert!(
        store
            .sync_resolve_conflict("two", "1", Some("hash-of-b"))
            .await
            .expect("resolve")
    );
    assert_eq!(
        store
            .sync_hashes("two", &["1".into()])
            .await
            .expect("hashes"),
        [("1".to_owned(), "hash-of-b".to_owned())]
    );
    // A deleted loser: the key is forgotten.
    assert!(
        store
            .sync_resolve_conflict("two", "2", None)
            .await
            .expect("resolve")
    );
    assert!(
        store
            .sync_hashes("two", &["2".into()])
            .await
            .expect("hashes")
            .is_empty()
    );
    let left = store
        .list_sync_conflicts("two", None, 10)
        .await
        .expect("list");
    assert!(left.is_empty(), "{left:?}");
    // Nothing parked: nothing changes.
    assert!(
        !store
            .sync_resolve_conflict("two", "1", Some("other"))
            .await
            .expect("resolve")
    );
    assert_eq!(
        store
            .sync_hashes("two", &["1".into()])
            .await
            .expect("hashes"),
        [("1".to_owned(), "hash-of-b".to_owned())]
    );
}
