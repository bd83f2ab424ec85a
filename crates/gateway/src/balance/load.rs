//! What the picker knows about one instance of one service: the sessions open on it through this
//! gateway, and whether it is ejected.
//!
//! The count is an atomic the [`Lease`] of each session raises when the instance is picked and lowers
//! when the session ends, so `least-sessions` reads it instead of scanning the session table.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::ejection::Ejection;

/// The balancing state of one instance, kept across route table updates by instance id.
#[derive(Debug)]
pub(super) struct InstanceLoad {
    /// The instance's id within its service.
    pub(super) id: Arc<str>,
    /// Sessions (and HTTP requests awaiting their response head) open on the instance.
    open: AtomicUsize,
    /// Passive health.
    pub(super) ejection: Ejection,
}

impl InstanceLoad {
    pub(super) fn new(id: Arc<str>) -> InstanceLoad {
        InstanceLoad { id, open: AtomicUsize::new(0), ejection: Ejection::default() }
    }

    /// Sessions open on the instance right now.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Counts one more session until the returned lease is dropped.
    pub(super) fn lease(self: &Arc<Self>) -> Lease {
        self.open.fetch_add(1, Ordering::Relaxed);
        Lease { load: Arc::clone(self) }
    }
}

/// One session counted on its instance: held for as long as the session is open, and dropped when
/// it ends (or when opening it failed).
#[derive(Debug)]
pub struct Lease {
    load: Arc<InstanceLoad>,
}

impl Lease {
    /// The instance the session is counted on.
    pub(super) fn load(&self) -> &InstanceLoad {
        &self.load
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.load.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_count_open_sessions() {
        let load = Arc::new(InstanceLoad::new("a".into()));
        let first = load.lease();
        let second = load.lease();
        assert_eq!(load.open(), 2);
        drop(first);
        assert_eq!(load.open(), 1);
        drop(second);
        assert_eq!(load.open(), 0);
    }
}
