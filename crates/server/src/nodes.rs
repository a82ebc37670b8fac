//! [`NodeCount`]: how many nodes share the store, as this node's delivery worker last counted
//! them in its heartbeat. Budgets that are totals across nodes (destination throttles,
//! connection pacing) divide by it, reading one atomic: no store query per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The live node count, shared between the worker that sets it and the parts that read it.
/// Cloning shares the count. Always at least 1 (a node counts itself, and SQLite has one).
#[derive(Debug, Clone)]
pub struct NodeCount(Arc<AtomicU32>);

impl Default for NodeCount {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeCount {
    /// One node until the first heartbeat says otherwise.
    pub fn new() -> Self {
        Self(Arc::new(AtomicU32::new(1)))
    }

    /// The live nodes now (at least 1).
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Acquire).max(1)
    }

    /// Records what the heartbeat counted (0 is taken as 1).
    pub fn set(&self, nodes: u32) {
        self.0.store(nodes.max(1), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_count_and_it_is_never_zero() {
        let count = NodeCount::new();
        let reader = count.clone();
        assert_eq!(reader.get(), 1);
        count.set(3);
        assert_eq!(reader.get(), 3);
        count.set(0);
        assert_eq!(reader.get(), 1);
    }
}
