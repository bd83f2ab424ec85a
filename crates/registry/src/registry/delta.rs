//! The recent-change queue behind `GET /apps/delta`.
//!
//! Every registration, cancellation, eviction and status or metadata change is kept for three
//! minutes as the instance (shared with the registry's snapshots) with its action type. A delta
//! lists the changes of that window, so one change shows up in several consecutive deltas: clients
//! apply them as upserts and removals by id, which is idempotent, then check the full registry's
//! hash code.
//!
//! Only the latest change of each instance (application and id) is kept: a delta lists an
//! instance in its latest state anyway, so an instance changed a thousand times in three minutes
//! costs one entry, not a thousand. The queue also holds at most `limit` instances; past that the
//! oldest changes leave early. A client that misses one then sees a hash code that is not its own
//! and fetches the whole registry, as it would after a long pause.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::{Application, Instance};

/// How long a change stays in deltas (Java's `retentionTimeInMSInDeltaQueue`).
pub(crate) const RETENTION_MS: u64 = 3 * 60 * 1000;

/// Application name and instance id.
type Key = (String, String);

/// The latest change of each recently changed instance.
#[derive(Debug, Clone)]
pub(crate) struct RecentChanges {
    /// Latest change of each instance: its sequence number, its time (monotonic ms) and the
    /// instance as changed (carrying its action type).
    latest: HashMap<Key, (u64, u64, Arc<Instance>)>,
    /// The same changes by sequence number, oldest first: what expiry and the limit drop.
    order: BTreeMap<u64, Key>,
    next: u64,
    /// Most instances kept.
    limit: usize,
}

impl RecentChanges {
    /// A queue keeping at most `limit` instances (at least one).
    pub(crate) fn new(limit: usize) -> RecentChanges {
        RecentChanges { latest: HashMap::new(), order: BTreeMap::new(), next: 0, limit: limit.max(1) }
    }

    /// Records `instance` (carrying its action type) as changed at `now` (monotonic ms), replacing
    /// its earlier change, and drops expired changes and those beyond the limit.
    pub(crate) fn push(&mut self, now: u64, instance: Arc<Instance>) {
        let key = (instance.app.clone(), instance.instance_id.clone());
        if let Some((old, _, _)) = self.latest.remove(&key) {
            self.order.remove(&old);
        }
        while let Some(entry) = self.order.first_entry() {
            let expired = self.latest.get(entry.get()).is_none_or(|(_, at, _)| at.saturating_add(RETENTION_MS) < now);
            if !expired && self.latest.len() < self.limit {
                break;
            }
            let oldest = entry.remove();
            self.latest.remove(&oldest);
        }
        let seq = self.next;
        self.next += 1;
        self.order.insert(seq, key.clone());
        self.latest.insert(key, (seq, now, instance));
    }

    /// Number of instances held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.latest.len()
    }

    /// The applications changed in the retention window up to `now`, each instance in its latest
    /// state, sorted by name and id.
    pub(crate) fn applications(&self, now: u64) -> Vec<Application> {
        let mut apps: BTreeMap<&str, Vec<Arc<Instance>>> = BTreeMap::new();
        for (_, at, instance) in self.latest.values() {
            if at.saturating_add(RETENTION_MS) >= now {
                apps.entry(instance.app.as_str()).or_default().push(Arc::clone(instance));
            }
        }
        apps.into_iter()
            .map(|(name, mut instances)| {
                instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
                Application { name: name.to_owned(), instances }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionType;

    fn change(app: &str, id: &str, action: ActionType) -> Arc<Instance> {
        let mut instance = Instance::new(app, id, "h", "1");
        instance.action_type = Some(action);
        Arc::new(instance)
    }

    #[test]
    fn later_changes_of_an_id_supersede_earlier_ones() {
        let mut changes = RecentChanges::new(100);
        changes.push(1_000, change("b", "1", ActionType::Added));
        changes.push(2_000, change("a", "2", ActionType::Added));
        changes.push(3_000, change("b", "1", ActionType::Deleted));
        let apps = changes.applications(3_000);
        assert_eq!(apps.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), vec!["A", "B"]);
        assert_eq!(apps[1].instances.len(), 1);
        assert_eq!(apps[1].instances[0].action_type, Some(ActionType::Deleted));
    }

    #[test]
    fn changes_leave_after_three_minutes() {
        let mut changes = RecentChanges::new(100);
        changes.push(1_000, change("a", "1", ActionType::Added));
        assert_eq!(changes.applications(1_000 + RETENTION_MS).len(), 1);
        assert!(changes.applications(1_001 + RETENTION_MS).is_empty());
        changes.push(2_000 + RETENTION_MS, change("a", "2", ActionType::Added));
        assert_eq!(changes.len(), 1, "pushing drops what has expired");
    }

    #[test]
    fn an_update_loop_keeps_one_entry_per_instance() {
        let mut changes = RecentChanges::new(100);
        for n in 0..10_000 {
            changes.push(n, change("a", "1", ActionType::Modified));
            changes.push(n, change("b", "1", ActionType::Modified));
        }
        assert_eq!((changes.len(), changes.order.len()), (2, 2));
        // The time kept is the latest change's: the instance stays in deltas for three minutes after it.
        assert_eq!(changes.applications(9_999 + RETENTION_MS).len(), 2);
        assert!(changes.applications(10_000 + RETENTION_MS).is_empty());
        // Instances with the same id in different applications are different instances.
        assert_eq!(changes.applications(0).iter().map(|a| a.instances.len()).sum::<usize>(), 2);
    }

    #[test]
    fn past_the_limit_the_oldest_changes_leave() {
        let mut changes = RecentChanges::new(3);
        for n in 0..5u64 {
            changes.push(n, change("a", &n.to_string(), ActionType::Added));
        }
        let ids: Vec<String> = changes.applications(5).iter().flat_map(|a| a.instances.iter().map(|i| i.instance_id.clone())).collect();
        assert_eq!(ids, vec!["2", "3", "4"]);
    }
}
