//! The live feed: events and attempts in **commit order**, after a cursor.
//!
//! A reader (the `/v1/stream` endpoint, `switchboard listen`, the dashboard) keeps a
//! [`FeedCursor`] and asks [`crate::Store::feed_after`] for what committed after it. The promise:
//! reading page after page from any cursor yields every matching row exactly once, in an order
//! where an attempt always follows its event, even with several nodes writing to one database.
//!
//! Arrival numbers (`seq`) alone cannot keep that promise on PostgreSQL: two transactions take
//! `seq` values when they insert and may commit in the other order, so a reader that saw `seq 7`
//! may later find `seq 6` appear behind its cursor. Each row there also records the id of the
//! transaction that wrote it (`feed_xid`, migration 11), and a reader only takes rows whose
//! transaction is older than every transaction still running (the snapshot's `xmin`): that set
//! can no longer grow, so `(feed_xid, seq)` is a position that never moves backwards. SQLite has
//! one writer at a time, so `seq` is already commit order there and `xid` is always 0.
//!
//! Each backend returns a [`RawPage`] per table; [`merge`] interleaves the two into one ordered
//! page and computes the cursor after every item.

use crate::model::{AttemptRecord, EventRecord};

/// A position in one table: the writing transaction (0 on SQLite) and the arrival number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FeedPos {
    /// Transaction id of the writer (PostgreSQL `xid8`; 0 on SQLite and for rows written
    /// before migration 11).
    pub xid: u64,
    /// `seq` of the row.
    pub seq: i64,
}

impl FeedPos {
    /// The position after every row of transactions before `xid` (exclusive horizon).
    pub fn before_xid(xid: u64) -> Self {
        Self {
            xid: xid.saturating_sub(1),
            seq: i64::MAX,
        }
    }
}

/// How far a reader has read the events and the attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FeedCursor {
    /// Last event position read.
    pub events: FeedPos,
    /// Last attempt position read.
    pub attempts: FeedPos,
}

impl FeedCursor {
    /// The cursor before everything stored (read from the beginning).
    pub const BEGINNING: Self = Self {
        events: FeedPos { xid: 0, seq: 0 },
        attempts: FeedPos { xid: 0, seq: 0 },
    };

    /// The compact text form used as an SSE `id`: `e<xid>.<seq>-a<xid>.<seq>`.
    pub fn encode(&self) -> String {
        format!(
            "e{}.{}-a{}.{}",
            self.events.xid, self.events.seq, self.attempts.xid, self.attempts.seq
        )
    }

    /// Parses [`FeedCursor::encode`]'s form; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let (events, attempts) = text.trim().split_once('-')?;
        Some(Self {
            events: parse_pos(events.strip_prefix('e')?)?,
            attempts: parse_pos(attempts.strip_prefix('a')?)?,
        })
    }
}

fn parse_pos(text: &str) -> Option<FeedPos> {
    let (xid, seq) = text.split_once('.')?;
    let pos = FeedPos {
        xid: xid.parse().ok()?,
        seq: seq.parse().ok()?,
    };
    (pos.seq >= 0).then_some(pos)
}

/// What a reader wants to see.
#[derive(Debug, Clone, Default)]
pub struct FeedFilter {
    /// Only events (and attempts of events) of these sources; empty: all.
    pub sources: Vec<String>,
    /// Only events (and attempts of events) of these types; empty: all.
    pub event_types: Vec<String>,
    /// Leave out events.
    pub no_events: bool,
    /// Leave out attempts.
    pub no_attempts: bool,
    /// Load event bodies (listings leave them empty).
    pub with_body: bool,
}

/// An attempt with what a live view shows next to it.
#[derive(Debug, Clone)]
pub struct FeedAttempt {
    /// The attempt row.
    pub attempt: AttemptRecord,
    /// Source of its event.
    pub source: String,
    /// Type of its event.
    pub event_type: Option<String>,
    /// Tenant of its event.
    pub tenant: Option<String>,
    /// Route of its delivery.
    pub route_id: String,
    /// Status of its delivery when read.
    pub delivery_status: switchboard_core::DeliveryStatus,
    /// Attempts its delivery has made when read (all runs).
    pub delivery_attempts: u32,
}

/// One item of the feed.
#[derive(Debug, Clone)]
pub enum FeedEntry {
    /// An event was stored.
    Event(EventRecord),
    /// A delivery attempt was recorded.
    Attempt(FeedAttempt),
}

/// An item with the cursor that resumes right after it.
#[derive(Debug, Clone)]
pub struct FeedItem {
    /// Resume here to get the items after this one.
    pub cursor: FeedCursor,
    /// The item.
    pub entry: FeedEntry,
}

/// A page of the feed.
#[derive(Debug, Clone, Default)]
pub struct FeedPage {
    /// Items in commit order.
    pub items: Vec<FeedItem>,
    /// Where the next page starts. It may be past the last item: rows the filter left out are
    /// skipped for good.
    pub cursor: FeedCursor,
}

/// What a backend read from one table: rows after the cursor in position order, at most
/// `limit + 1` of them (the extra row only tells that more exist), and how far the read covered
/// when it was not cut short.
#[derive(Debug, Clone)]
pub struct RawTable<T> {
    /// Rows in position order.
    pub rows: Vec<(FeedPos, T)>,
    /// The position every row read (or skipped by the filter) is at or before, when `rows`
    /// holds no more than `limit`.
    pub end: FeedPos,
}

/// Both tables as a backend read them, before [`merge`].
#[derive(Debug, Clone)]
pub struct RawPage {
    /// Events after the cursor.
    pub events: RawTable<EventRecord>,
    /// Attempts after the cursor.
    pub attempts: RawTable<FeedAttempt>,
}

/// A row being merged: its sort key, position, table (0 events, 1 attempts) and the entry.
type Merged = ((u64, u8, i64), FeedPos, u8, FeedEntry);

/// Interleaves the two tables into commit order, at most `limit` items.
///
/// Order is `(xid, table, seq)` with events before attempts: on SQLite (xid 0) all events of the
/// page come before its attempts, which is safe because every attempt read has its event
/// committed earlier (backends read attempts' bounds first). When a table was cut short, nothing
/// after its last row may be emitted from the other table (the missing rows could come first).
pub fn merge(after: FeedCursor, raw: RawPage, limit: usize) -> FeedPage {
    let limit = limit.max(1);
    let RawPage {
        mut events,
        mut attempts,
    } = raw;
    let events_cut = events.rows.len() > limit;
    let attempts_cut = attempts.rows.len() > limit;
    events.rows.truncate(limit);
    attempts.rows.truncate(limit);
    // The merge key of the last row of a table that was cut: nothing beyond it is certain.
    let key = |pos: FeedPos, table: u8| (pos.xid, table, pos.seq);
    let mut bound: Option<(u64, u8, i64)> = None;
    if events_cut && let Some((pos, _)) = events.rows.last() {
        bound = Some(key(*pos, 0));
    }
    if attempts_cut && let Some((pos, _)) = attempts.rows.last() {
        let k = key(*pos, 1);
        bound = Some(bound.map_or(k, |b| b.min(k)));
    }
    let mut merged: Vec<Merged> = Vec::with_capacity(events.rows.len() + attempts.rows.len());
    merged.extend(
        events
            .rows
            .into_iter()
            .map(|(pos, e)| (key(pos, 0), pos, 0, FeedEntry::Event(e))),
    );
    merged.extend(
        attempts
            .rows
            .into_iter()
            .map(|(pos, a)| (key(pos, 1), pos, 1, FeedEntry::Attempt(a))),
    );
    merged.sort_by_key(|(k, ..)| *k);
    if let Some(bound) = bound {
        merged.retain(|(k, ..)| *k <= bound);
    }
    let truncated = merged.len() > limit;
    merged.truncate(limit);
    let mut cursor = after;
    let mut items = Vec::with_capacity(merged.len());
    for (_, pos, table, entry) in merged {
        if table == 0 {
            cursor.events = pos;
        } else {
            cursor.attempts = pos;
        }
        items.push(FeedItem { cursor, entry });
    }
    // A table read completely (not cut, nothing dropped by the bound or the limit) advances
    // to the end of what was read, past rows the filter skipped.
    if bound.is_none() && !truncated {
        cursor.events = cursor.events.max(events.end);
        cursor.attempts = cursor.attempts.max(attempts.end);
    }
    FeedPage { items, cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> EventRecord {
        EventRecord {
            seq: 0,
            id: id.into(),
            source: "s".into(),
            tenant: None,
            event_type: None,
            dedup_key: None,
            headers: Vec::new(),
            content_type: None,
            body: Vec::new(),
            body_len: 0,
            received_at: 0,
            forward_headers: Vec::new(),
            body_pruned_at: None,
        }
    }

    fn attempt(event_id: &str) -> FeedAttempt {
        FeedAttempt {
            attempt: AttemptRecord {
                delivery_id: "d".into(),
                event_id: event_id.into(),
                destination: "x".into(),
                attempt: 1,
                started_at: 0,
                latency_ms: 0,
                outcome: "delivered".into(),
                status_code: Some(200),
                error: None,
                request_url: "http://x".into(),
                response_headers: Vec::new(),
                response_body: Vec::new(),
            },
            source: "s".into(),
            event_type: None,
            tenant: None,
            route_id: "r".into(),
            delivery_status: switchboard_core::DeliveryStatus::Succeeded,
            delivery_attempts: 1,
        }
    }

    fn pos(xid: u64, seq: i64) -> FeedPos {
        FeedPos { xid, seq }
    }

    fn ids(page: &FeedPage) -> Vec<String> {
        page.items
            .iter()
            .map(|i| match &i.entry {
                FeedEntry::Event(e) => format!("e:{}", e.id),
                FeedEntry::Attempt(a) => format!("a:{}", a.attempt.event_id),
            })
            .collect()
    }

    #[test]
    fn cursor_text_round_trips_and_rejects_garbage() {
        let c = FeedCursor {
            events: pos(7, 12),
            attempts: pos(0, 3),
        };
        assert_eq!(c.encode(), "e7.12-a0.3");
        assert_eq!(FeedCursor::parse(&c.encode()), Some(c));
        for bad in [
            "",
            "12",
            "e1.2",
            "e1.2-x1.2",
            "e1.-1-a0.0",
            "ex.1-a0.0",
            "e1.2-a0.-3",
        ] {
            assert_eq!(FeedCursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sqlite_pages_put_events_first_and_advance_past_filtered_rows() {
        let raw = RawPage {
            events: RawTable {
                rows: vec![(pos(0, 4), event("e4")), (pos(0, 6), event("e6"))],
                end: pos(0, 9),
            },
            attempts: RawTable {
                rows: vec![(pos(0, 2), attempt("e4"))],
                end: pos(0, 5),
            },
        };
        let page = merge(FeedCursor::BEGINNING, raw, 10);
        assert_eq!(ids(&page), ["e:e4", "e:e6", "a:e4"]);
        assert_eq!(page.items[1].cursor.events, pos(0, 6));
        assert_eq!(page.items[1].cursor.attempts, pos(0, 0));
        assert_eq!(page.items[2].cursor.attempts, pos(0, 2));
        assert_eq!(page.cursor.events, pos(0, 9));
        assert_eq!(page.cursor.attempts, pos(0, 5));
    }

    #[test]
    fn a_cut_table_holds_back_what_could_follow_its_missing_rows() {
        // Two events fit; a third exists. The attempt (SQLite: after all events) must wait.
        let raw = RawPage {
            events: RawTable {
                rows: vec![
                    (pos(0, 1), event("e1")),
                    (pos(0, 2), event("e2")),
                    (pos(0, 3), event("e3")),
                ],
                end: pos(0, 3),
            },
            attempts: RawTable {
                rows: vec![(pos(0, 1), attempt("e1"))],
                end: pos(0, 1),
            },
        };
        let page = merge(FeedCursor::BEGINNING, raw, 2);
        assert_eq!(ids(&page), ["e:e1", "e:e2"]);
        assert_eq!(page.cursor.events, pos(0, 2));
        assert_eq!(page.cursor.attempts, pos(0, 0));
    }

    #[test]
    fn postgres_pages_interleave_by_transaction() {
        let raw = RawPage {
            events: RawTable {
                rows: vec![(pos(10, 2), event("e2")), (pos(12, 1), event("e1"))],
                end: FeedPos::before_xid(20),
            },
            attempts: RawTable {
                rows: vec![(pos(11, 5), attempt("e2"))],
                end: FeedPos::before_xid(20),
            },
        };
        let after = FeedCursor::BEGINNING;
        let page = merge(after, raw, 10);
        assert_eq!(ids(&page), ["e:e2", "a:e2", "e:e1"]);
        assert_eq!(page.cursor.events, pos(19, i64::MAX));
        // Limited to two: the second event stays for the next page, and so does the horizon.
        let raw = RawPage {
            events: RawTable {
                rows: vec![(pos(10, 2), event("e2")), (pos(12, 1), event("e1"))],
                end: FeedPos::before_xid(20),
            },
            attempts: RawTable {
                rows: vec![(pos(11, 5), attempt("e2"))],
                end: FeedPos::before_xid(20),
            },
        };
        let page = merge(after, raw, 2);
        assert_eq!(ids(&page), ["e:e2", "a:e2"]);
        assert_eq!(page.cursor.events, pos(10, 2));
        assert_eq!(page.cursor.attempts, pos(11, 5));
    }
}
