//! What the sync engine keeps between pages and runs: the run log (with the checkpoint a
//! crashed or paused run resumes from), the records cache (key → content hash, last run that
//! saw it) and the incremental cursor of the last successful run.
//!
//! A page's cache rows and its run's progress are written in one transaction
//! ([`crate::Store::sync_checkpoint`]), after the destination write: a crash before it makes
//! the resumed run read the page again and write it again (upserts and deletes by key are
//! idempotent), a crash after it resumes at the next page.

use switchboard_core::time::UnixMillis;

/// Run statuses that a later run resumes instead of starting over.
pub const RESUMABLE: [&str; 2] = ["running", "paused"];

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// Pages read.
    pub pages: i64,
    /// Records read.
    pub fetched: i64,
    /// Records new to the cache (written to the destination).
    pub created: i64,
    /// Records whose content changed (written to the destination).
    pub updated: i64,
    /// Records gone from a complete full listing (deleted from the destination).
    pub deleted: i64,
    /// Records read unchanged (nothing written).
    pub unchanged: i64,
    /// Records skipped because their key or mapping failed.
    pub failed: i64,
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRunRecord {
    /// Run id (`run_…`, UUIDv7).
    pub id: String,
    /// The sync job.
    pub sync_id: String,
    /// `running`, `paused`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// `full` or `incremental`.
    pub mode: String,
    /// What started it: `schedule` or `api`.
    pub trigger: String,
    /// Started.
    pub started_at: UnixMillis,
    /// Last progress.
    pub updated_at: UnixMillis,
    /// Finished (or paused).
    pub finished_at: Option<UnixMillis>,
    /// Counters so far.
    pub counts: SyncCounts,
    /// Why it failed.
    pub error: Option<String>,
    /// The engine's resume point (JSON).
    pub checkpoint: String,
    /// A cancel was asked for; the engine stops at the next page.
    pub cancel_requested: bool,
}

/// One page's worth of progress, written in one transaction.
#[derive(Debug, Clone)]
pub struct SyncCheckpoint {
    /// The run.
    pub run_id: String,
    /// Its sync.
    pub sync_id: String,
    /// Records read in this page: `(key, content hash)`; marked as seen by the run.
    pub seen: Vec<(String, String)>,
    /// Keys deleted from the destination: removed from the cache.
    pub removed: Vec<String>,
    /// The run's counters after this page.
    pub counts: SyncCounts,
    /// The resume point after this page.
    pub checkpoint: String,
    /// When.
    pub now: UnixMillis,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct SyncFinish {
    /// The run.
    pub run_id: String,
    /// Its sync.
    pub sync_id: String,
    /// `paused`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Why it failed or stopped.
    pub error: Option<String>,
    /// The incremental cursor to keep for the next run (`Some` only on success).
    pub cursor: Option<Option<String>>,
    /// When.
    pub now: UnixMillis,
}

/// A record changed on both sides of a two-way sync, parked for review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConflict {
    /// The sync.
    pub sync_id: String,
    /// The record's key (JSON text).
    pub record_key: String,
    /// The source's version (JSON), `None` when deleted there.
    pub source: Option<String>,
    /// The destination's version (JSON), `None` when deleted there.
    pub destination: Option<String>,
    /// When it was (last) found.
    pub detected_at: UnixMillis,
}
