//! Sources that fetch their events instead of receiving them at `/in/{id}`: queue consumers,
//! stream connections, schedules.
//!
//! Each kind has a file here holding a task that runs until its [`Context::stop`] token is
//! cancelled, reconnecting on its own when its peer goes away. It hands every message to the
//! [`Emitter`] and acknowledges the message to whoever sent it only after `emit` returned: by
//! then the event and its deliveries are committed, so a crash between the two redelivers the
//! message (at least once) instead of losing it.
//!
//! The [`supervisor`] runs one task per configured fetching source, restarts it when its settings
//! change (API edits, or another node's edits picked up from a shared database) and stops it when
//! the source is deleted or the server shuts down. Kinds that must run once across nodes (a
//! schedule, a stream connection) run on whichever node holds the source's lease in the store;
//! queue consumers run on every node and share the queue.

mod common;
pub mod queue;
pub mod schedule;
pub mod supervisor;
pub mod websocket;

use std::sync::Arc;

use switchboard_core::config::SourceKind;
use switchboard_core::ids::new_event_id;
use switchboard_core::time::now_millis;
use switchboard_store::{InsertOutcome, NewEvent, Store};
use tokio_util::sync::CancellationToken;

use crate::ingest::commit::{CommitError, Committer};
use crate::runtime::Registry;

/// A message a fetching source received, before it becomes an event.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Event type, when the message says (a subject, a header, a jq-selected field).
    pub event_type: Option<String>,
    /// De-duplication key: a second message with the same key is stored once.
    pub dedup_key: Option<String>,
    /// Metadata kept with the event (message headers, subject, delivery info).
    pub headers: Vec<(String, String)>,
    /// Media type of the body.
    pub content_type: Option<String>,
    /// The message body.
    pub body: Vec<u8>,
}

/// What became of an emitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Emitted {
    /// Stored as a new event with this id.
    Stored(String),
    /// Already stored under this id (same de-duplication key).
    Duplicate(String),
}

impl Emitted {
    /// The event id either way.
    pub fn id(&self) -> &str {
        match self {
            Self::Stored(id) | Self::Duplicate(id) => id,
        }
    }
}

/// Stores a source's messages as events, routed by the live routes of the source.
#[derive(Clone)]
pub struct Emitter {
    source: String,
    registry: Arc<Registry>,
    committer: Committer,
}

impl Emitter {
    /// An emitter for `source`.
    pub fn new(source: impl Into<String>, registry: Arc<Registry>, committer: Committer) -> Self {
        Self {
            source: source.into(),
            registry,
            committer,
        }
    }

    /// The source id.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Stores `message` with one delivery per route of the source, in the same group commit as
    /// webhook ingests. Returns once the event is durable: only then may the caller
    /// acknowledge the message. An error means nothing was stored.
    pub async fn emit(&self, message: Message) -> Result<Emitted, CommitError> {
        let runtime = self.registry.current();
        let event = NewEvent {
            id: new_event_id(),
            source: self.source.clone(),
            tenant: None,
            event_type: message.event_type,
            dedup_key: message.dedup_key,
            headers: message.headers,
            content_type: message.content_type,
            body: message.body,
            received_at: now_millis(),
            forward_headers: Vec::new(),
            deliveries: runtime.new_deliveries(&self.source),
        };
        let id = event.id.clone();
        Ok(match self.committer.commit(event).await? {
            InsertOutcome::Inserted => Emitted::Stored(id),
            InsertOutcome::Duplicate { original_id } => Emitted::Duplicate(original_id),
        })
    }
}

/// What a fetching source's task gets.
#[derive(Clone)]
pub struct Context {
    /// Where its messages go.
    pub emitter: Emitter,
    /// Cancelled when the task must end (source changed or deleted, shutdown, lease lost).
    pub stop: CancellationToken,
    /// The shared outbound HTTP client (SSRF-guarded, no redirects).
    pub client: reqwest::Client,
    /// Calls through named connections (auth, pacing, retries done for the caller).
    pub connections: crate::connections::client::ConnectionClient,
    /// The store (for checkpoints kept between runs).
    pub store: Arc<dyn Store>,
}

/// Where a fetching kind runs when several nodes share a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On every node at once (competing consumers of one queue).
    EveryNode,
    /// On one node at a time: the holder of the source's lease.
    OneNode,
}

/// Where `kind` runs; `None` for webhook sources, which have no task.
pub fn placement(kind: &SourceKind) -> Option<Placement> {
    match kind {
        SourceKind::Webhook => None,
        SourceKind::Websocket(_) | SourceKind::Schedule(_) => Some(Placement::OneNode),
        SourceKind::Queue(_) => Some(Placement::EveryNode),
    }
}

/// Checks what parsing the configuration could not (jq programs compile, a cron expression
/// parses, …); runs whenever the registry builds a snapshot, so a bad setting is refused when
/// the configuration loads or the API call is made.
pub fn check(source: &switchboard_core::config::SourceConfig) -> Result<(), String> {
    match &source.kind {
        // A queue source's settings are fully checked when they are parsed.
        SourceKind::Webhook | SourceKind::Queue(_) => Ok(()),
        SourceKind::Websocket(settings) => websocket::check(settings),
        SourceKind::Schedule(settings) => schedule::check(settings),
    }
    .map_err(|e| format!("source `{}`: {e}", source.id))
}

/// The task of a fetching source. It returns only once `context.stop` is cancelled (a task that
/// returns earlier is restarted by the supervisor after a pause).
pub fn task(
    kind: &SourceKind,
    context: Context,
) -> Option<futures::future::BoxFuture<'static, ()>> {
    match kind {
        SourceKind::Webhook => None,
        SourceKind::Websocket(settings) => {
            Some(Box::pin(websocket::run(settings.clone(), context)))
        }
        SourceKind::Schedule(settings) => Some(Box::pin(schedule::run(settings.clone(), context))),
        SourceKind::Queue(config) => Some(queue::task(config.as_ref().clone(), context)),
    }
}
