//! Rows going into and coming out of the store. These are storage types; the API and CLI map
//! them to their own representations.

use switchboard_core::DeliveryStatus;
use switchboard_core::time::UnixMillis;

/// An accepted event with the deliveries it fans out to.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// UUIDv7.
    pub id: String,
    /// Source id.
    pub source: String,
    /// Tenant, when the event was published for one.
    pub tenant: Option<String>,
    /// Event type, when the verifier or publisher knows it.
    pub event_type: Option<String>,
    /// De-duplication key, when the provider supplies one.
    pub dedup_key: Option<String>,
    /// Request headers, in order, as received.
    pub headers: Vec<(String, String)>,
    /// `content-type` of the body.
    pub content_type: Option<String>,
    /// Raw body bytes.
    pub body: Vec<u8>,
    /// When it was received.
    pub received_at: UnixMillis,
    /// Headers sent with every delivery of this event (set by publishers; empty for ingests,
    /// whose request headers are never forwarded).
    pub forward_headers: Vec<(String, String)>,
    /// One per matching route.
    pub deliveries: Vec<NewDelivery>,
}

/// A delivery created with its event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// `msg_…` id, sent as `webhook-id`.
    pub id: String,
    /// Route that produced it.
    pub route_id: String,
    /// Destination id.
    pub destination: String,
    /// FIFO key for an ordered destination (`Some("")` orders the whole destination); `None`
    /// for unordered delivery.
    pub ordering_key: Option<String>,
}

/// What became of one event handed to [`crate::Store::insert_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored with its deliveries.
    Inserted,
    /// An event with the same source and dedup key exists; nothing was stored.
    Duplicate {
        /// The id of the event stored first.
        original_id: String,
    },
}

/// A rejected ingest request, kept for debugging.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Source id.
    pub source: String,
    /// When it arrived.
    pub received_at: UnixMillis,
    /// Problem code returned (`invalid_signature`, …).
    pub code: String,
    /// Problem detail returned.
    pub detail: String,
    /// Request headers, credentials redacted.
    pub headers: Vec<(String, String)>,
    /// Body size in bytes (the body itself is not kept).
    pub body_len: u64,
}

/// What to claim.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    /// Claim deliveries due at or before this instant.
    pub now: UnixMillis,
    /// At most this many.
    pub limit: usize,
    /// Worker identity written into the lease.
    pub owner: &'a str,
    /// Lease expiry.
    pub lease_until: UnixMillis,
    /// Destinations not to claim for now.
    pub exclude: &'a [String],
    /// Claim only this destination's deliveries.
    pub destination: Option<&'a str>,
    /// Respect ordering keys: claim a delivery only when no earlier delivery of its key is
    /// pending, in flight or failed with an unreleased hold.
    pub ordered: bool,
}

/// A leased delivery with what a worker needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    /// Delivery id (`webhook-id`).
    pub id: String,
    /// Event id.
    pub event_id: String,
    /// Route id.
    pub route_id: String,
    /// Destination id.
    pub destination: String,
    /// Attempts made before this one, all runs.
    pub attempts: u32,
    /// Attempts made before this one in the current run.
    pub run_attempts: u32,
    /// Event body.
    pub body: Vec<u8>,
    /// Event content type.
    pub content_type: Option<String>,
    /// Event source id.
    pub source: String,
    /// Event tenant.
    pub tenant: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// When the event was received.
    pub received_at: UnixMillis,
    /// Headers the publisher asked to forward.
    pub forward_headers: Vec<(String, String)>,
    /// Ordering key, for ordered destinations.
    pub ordering_key: Option<String>,
    /// Whether this delivery was dead-lettered before (a success now is a recovery).
    pub exhausted_before: bool,
    /// Whether retention removed the event's body (the delivery cannot be sent).
    pub body_pruned: bool,
    /// The event's request id and trace id (derived from its id and stored headers).
    pub correlation: switchboard_core::correlation::Correlation,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Done: succeeded.
    Succeeded,
    /// Try again at this instant.
    RetryAt(UnixMillis),
    /// Give up: dead letter.
    Failed,
    /// Not sent: the route's filter did not match (the attempt row records the evaluation).
    Filtered,
}

/// One finished attempt and its consequence.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Lease holder that made the attempt.
    pub lease_owner: String,
    /// The attempt row.
    pub attempt: NewAttempt,
    /// What to do with the delivery.
    pub next: NextStep,
}

/// An attempt to record.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// Delivery id.
    pub delivery_id: String,
    /// Event id.
    pub event_id: String,
    /// Destination id.
    pub destination: String,
    /// 1-based attempt number across runs.
    pub attempt: u32,
    /// 1-based attempt number in the current run.
    pub run_attempt: u32,
    /// When the request started.
    pub started_at: UnixMillis,
    /// Time to the response (or the error).
    pub latency_ms: u64,
    /// `delivered`, `retryable`, `permanent` or `filtered`.
    pub outcome: &'static str,
    /// HTTP status, when a response arrived.
    pub status_code: Option<u16>,
    /// Transport or policy error, when there was no usable response.
    pub error: Option<String>,
    /// URL requested.
    pub request_url: String,
    /// Response headers.
    pub response_headers: Vec<(String, String)>,
    /// Bounded excerpt of the response body.
    pub response_body: Vec<u8>,
}

/// Which deliveries to replay.
#[derive(Debug, Clone)]
pub enum ReplaySelector {
    /// One delivery by id.
    Delivery(String),
    /// Every delivery of one event.
    Event(String),
    /// Every failed delivery of a destination updated at or after `since`.
    FailedForDestination {
        /// Destination id.
        destination: String,
        /// Lower bound on the time the delivery failed.
        since: UnixMillis,
    },
}

/// A stored event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Arrival sequence number (cursor).
    pub seq: i64,
    /// Event id.
    pub id: String,
    /// Source id.
    pub source: String,
    /// Tenant.
    pub tenant: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// De-duplication key.
    pub dedup_key: Option<String>,
    /// Headers as received.
    pub headers: Vec<(String, String)>,
    /// Content type.
    pub content_type: Option<String>,
    /// Raw body (empty in listings, which carry `body_len` only).
    pub body: Vec<u8>,
    /// Body size in bytes.
    pub body_len: u64,
    /// Receive time.
    pub received_at: UnixMillis,
    /// Headers forwarded with every delivery (published events).
    pub forward_headers: Vec<(String, String)>,
    /// When retention removed the body, if it did.
    pub body_pruned_at: Option<UnixMillis>,
}

/// Event listing filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this source.
    pub source: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only events with at least one delivery in this status.
    pub delivery_status: Option<DeliveryStatus>,
    /// `Some(false)`: only events no route delivers (no delivery, or all filtered out);
    /// `Some(true)`: only events with at least one delivery that was not filtered out.
    pub routed: Option<bool>,
    /// Only events received at or after.
    pub since: Option<UnixMillis>,
    /// Only events received before.
    pub until: Option<UnixMillis>,
    /// Only events with `seq` below this (pagination cursor).
    pub before_seq: Option<i64>,
    /// Only events whose raw body contains these bytes (exact, case-sensitive; matched by the
    /// database, so bodies never leave it). Ignored when empty. [`crate::Store::list_events`]
    /// examines every event the other filters let through; [`crate::Store::search_events`]
    /// bounds that work.
    pub body_contains: Option<String>,
    /// Page size.
    pub limit: u32,
}

impl EventFilter {
    /// The body text to look for, when there is one (an empty text matches everything and is
    /// no filter).
    pub fn body_needle(&self) -> Option<&[u8]> {
        self.body_contains
            .as_deref()
            .filter(|text| !text.is_empty())
            .map(str::as_bytes)
    }
}

/// One page of a bounded body search ([`crate::Store::search_events`]).
#[derive(Debug, Clone, Default)]
pub struct EventSearch {
    /// Matching events, newest first, at most the filter's `limit`.
    pub events: Vec<EventRecord>,
    /// Set when the search stopped at its scan bound with older events left unexamined: the
    /// `seq` of the oldest event it examined. When `events` is not full, the next page is the
    /// search again with `before_seq` set to it. `None` when the search reached the oldest
    /// event the other filters let through (or had no body text to look for).
    pub scan_floor: Option<i64>,
}

impl EventSearch {
    /// Splits a search asked for `page + 1` rows into the page (at most `page` rows, newest
    /// first) and the `before_seq` of the next one: below the page's last row when more rows
    /// matched, below the scan floor when the scan bound ended the search, `None` at the end.
    pub fn into_page(mut self, page: u32) -> (Vec<EventRecord>, Option<i64>) {
        let page = page as usize;
        if self.events.len() > page {
            self.events.truncate(page);
            let next = self.events.last().map(|e| e.seq);
            (self.events, next)
        } else {
            (self.events, self.scan_floor)
        }
    }
}

/// Equal time buckets over a period, for counting rows per bucket in the database: bucket `i`
/// holds the instants `[start + i * width_ms, start + (i + 1) * width_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// Start of the first bucket (unix ms).
    pub start: UnixMillis,
    /// Width of every bucket in milliseconds (a width below 1 counts nothing).
    pub width_ms: i64,
    /// Number of buckets.
    pub count: u32,
}

impl Buckets {
    /// The end of the last bucket (exclusive).
    pub fn end(&self) -> UnixMillis {
        self.start
            .saturating_add(self.width_ms.saturating_mul(i64::from(self.count)))
    }

    /// Whether the buckets cover anything.
    pub fn is_empty(&self) -> bool {
        self.width_ms < 1 || self.count == 0
    }
}

/// How many rows of one key fell into one bucket ([`crate::Store::event_histogram`],
/// [`crate::Store::attempt_histogram`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BucketCount {
    /// 0-based bucket index.
    pub bucket: u32,
    /// What the rows were grouped by: the source of events, the outcome of attempts.
    pub key: String,
    /// Rows counted (never 0: empty buckets are not listed).
    pub count: u64,
}

/// A stored delivery.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    /// Sequence number (cursor).
    pub seq: i64,
    /// Delivery id.
    pub id: String,
    /// Event id.
    pub event_id: String,
    /// Route id.
    pub route_id: String,
    /// Destination id.
    pub destination: String,
    /// Status.
    pub status: DeliveryStatus,
    /// Attempts made, all runs.
    pub attempts: u32,
    /// Next attempt time (meaningful while pending).
    pub next_attempt_at: UnixMillis,
    /// Last HTTP status.
    pub last_status: Option<u16>,
    /// Last error.
    pub last_error: Option<String>,
    /// Created.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
    /// Ordering key (ordered destinations).
    pub ordering_key: Option<String>,
}

/// Delivery listing filter.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this destination.
    pub destination: Option<String>,
    /// Only this event.
    pub event_id: Option<String>,
    /// Only `seq` below this (pagination cursor).
    pub before_seq: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// A stored attempt.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Delivery id.
    pub delivery_id: String,
    /// Event id.
    pub event_id: String,
    /// Destination id.
    pub destination: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start time.
    pub started_at: UnixMillis,
    /// Latency.
    pub latency_ms: u64,
    /// `delivered`, `retryable` or `permanent`.
    pub outcome: String,
    /// HTTP status.
    pub status_code: Option<u16>,
    /// Error text.
    pub error: Option<String>,
    /// URL requested.
    pub request_url: String,
    /// Response headers.
    pub response_headers: Vec<(String, String)>,
    /// Response body excerpt.
    pub response_body: Vec<u8>,
}

/// A resource created through the management API; its spec is sealed by the server's vault.
#[derive(Debug, Clone)]
pub struct ResourceRecord {
    /// `source`, `destination` or `route`.
    pub kind: String,
    /// Resource id.
    pub id: String,
    /// `nonce || ciphertext` of the JSON spec.
    pub sealed: Vec<u8>,
    /// Created.
    pub created_at: UnixMillis,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// An API token (the token itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// `tok_…`
    pub id: String,
    /// Human name.
    pub name: String,
    /// Hex SHA-256 of the full token.
    pub hash: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Created.
    pub created_at: UnixMillis,
    /// Revoked, if it was.
    pub revoked_at: Option<UnixMillis>,
}

/// The state of an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// First use: recorded as in progress; the caller must finish or abandon it.
    Started,
    /// Another request with this key has not finished yet.
    InProgress {
        /// Its request hash.
        request_hash: String,
    },
    /// A response is recorded.
    Completed {
        /// Hash of the request that produced it.
        request_hash: String,
        /// Its status.
        status: u16,
        /// Its body.
        response: Vec<u8>,
    },
}

/// Circuit and failure bookkeeping of one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRecord {
    /// Destination id.
    pub destination: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// First failure after the last success.
    pub failing_since: Option<UnixMillis>,
    /// Last failed attempt.
    pub last_failure_at: Option<UnixMillis>,
    /// Last successful attempt.
    pub last_success_at: Option<UnixMillis>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// When the circuit last opened.
    pub opened_at: Option<UnixMillis>,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// An ordering key held back by a dead-lettered delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    /// The ordering key (`""` when the destination is ordered as a whole).
    pub ordering_key: String,
    /// The failed delivery at the head of the key.
    pub delivery_id: String,
    /// Its event.
    pub event_id: String,
    /// When it failed.
    pub failed_at: UnixMillis,
    /// Its last error.
    pub last_error: Option<String>,
    /// Deliveries of the key waiting behind it.
    pub waiting: u64,
}

/// What `GET /v1/health` reads from the store in one go (cheap indexed queries only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    /// Latest event time per asked source (absent: no event stored).
    pub last_event_at: Vec<(String, UnixMillis)>,
    /// Deliveries waiting per destination: `(destination, pending, in_flight)`.
    pub backlog: Vec<(String, u64, u64)>,
    /// Nodes seen within the ttl, by id.
    pub nodes: Vec<NodeRecord>,
    /// Named leases not yet expired, by name.
    pub leases: Vec<LeaseRecord>,
}

/// A node sharing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Node id.
    pub id: String,
    /// When it started.
    pub started_at: UnixMillis,
    /// Its last heartbeat.
    pub last_seen: UnixMillis,
}

/// A held named lease (a schedule, a stream, a token refresh…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Lease name.
    pub name: String,
    /// Holding node.
    pub owner: String,
    /// When it lapses unless renewed.
    pub expires_at: UnixMillis,
}
