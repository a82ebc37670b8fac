//! Which destinations may have due work, so the dispatcher only asks the store about those.
//!
//! With thousands of endpoints, one claim per destination per pass would cost thousands of
//! write transactions while almost all of them have nothing due. Instead every producer of
//! work leaves a hint: ingest and publish commits, scheduled retries, replays, lease releases.
//! A destination with no hint costs nothing; one whose due time is unknown costs one cheap
//! read. A periodic refresh marks everything unknown again, which also picks up work that
//! another node created in a shared database.

use std::collections::HashMap;
use std::sync::Mutex;

use switchboard_core::time::UnixMillis;

/// What is known about a destination's next due delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Something may be due at or after this instant.
    At(UnixMillis),
    /// Unknown: ask the store.
    Unknown,
}

/// Due-time hints by destination. Absent: nothing pending that we know of.
#[derive(Debug, Default)]
pub struct DueBook {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    hints: HashMap<String, Hint>,
    all_unknown: bool,
}

impl DueBook {
    /// A book in which every destination is unknown (the state at start).
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                hints: HashMap::new(),
                all_unknown: true,
            }),
        }
    }

    /// `destination` has work due at `at` (keeps an earlier hint).
    pub fn due_at(&self, destination: &str, at: UnixMillis) {
        let mut inner = self.lock();
        let hint = inner
            .hints
            .entry(destination.to_owned())
            .or_insert(Hint::At(at));
        if let Hint::At(current) = hint
            && at < *current
        {
            *hint = Hint::At(at);
        }
    }

    /// `destination` may have work; find out.
    pub fn unknown(&self, destination: &str) {
        self.lock()
            .hints
            .insert(destination.to_owned(), Hint::Unknown);
    }

    /// Every destination may have work (replay by filter, released leases, periodic refresh).
    pub fn all_unknown(&self) {
        self.lock().all_unknown = true;
    }

    /// Replaces a destination's hint with what the store said (`None`: nothing pending).
    pub fn set(&self, destination: &str, next: Option<UnixMillis>) {
        let mut inner = self.lock();
        match next {
            Some(at) => inner.hints.insert(destination.to_owned(), Hint::At(at)),
            None => inner.hints.remove(destination),
        };
    }

    /// The hint for each of `destinations` (taking a pending "all unknown" into account);
    /// destinations without a hint are left out.
    pub fn snapshot<'a>(
        &self,
        destinations: impl Iterator<Item = &'a String>,
    ) -> Vec<(&'a String, Hint)> {
        let mut inner = self.lock();
        let all = std::mem::take(&mut inner.all_unknown);
        destinations
            .filter_map(|d| {
                if all {
                    inner.hints.insert(d.clone(), Hint::Unknown);
                    return Some((d, Hint::Unknown));
                }
                inner.hints.get(d).map(|h| (d, *h))
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_keep_the_earliest_time_and_can_be_cleared() {
        let book = DueBook::new();
        let ids = ["a".to_string(), "b".to_string()];
        assert_eq!(
            book.snapshot(ids.iter()),
            vec![(&ids[0], Hint::Unknown), (&ids[1], Hint::Unknown)],
            "everything is unknown at start"
        );
        book.set("a", None);
        book.set("b", Some(50));
        book.due_at("b", 70);
        book.due_at("b", 20);
        assert_eq!(book.snapshot(ids.iter()), vec![(&ids[1], Hint::At(20))]);
        book.unknown("a");
        assert_eq!(
            book.snapshot(ids.iter()),
            vec![(&ids[0], Hint::Unknown), (&ids[1], Hint::At(20))]
        );
        book.all_unknown();
        assert_eq!(book.snapshot(ids.iter()).len(), 2);
    }
}
