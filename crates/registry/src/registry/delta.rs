//! The recent-change queue behind `GET /apps/delta`.
//!
//! Every registration, cancellation, eviction and status or metadata change is kept for three
//! minutes as a copy of the instance with its action type. A delta lists the changes of that
//! window, so one change shows up in several consecutive deltas: clients apply them as upserts
//! and removals by id, which is idempotent, then check the full registry's hash code.

use std::collections::VecDeque;

use crate::model::{Application, Instance};

/// How long a change stays in deltas (Java's `retentionTimeInMSInDeltaQueue`).
pub(crate) const RETENTION_MS: u64 = 3 * 60 * 1000;

/// Changes in the order they happened.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecentChanges {
    changes: VecDeque<(u64, Instance)>,
}

impl RecentChanges {
    /// Records `instance` (carrying its action type) as changed at `now`, dropping expired changes.
    pub(crate) fn push(&mut self, now: u64, instance: Instance) {
        while self.changes.front().is_some_and(|(at, _)| at.saturating_add(RETENTION_MS) < now) {
            self.changes.pop_front();
        }
        self.changes.push_back((now, instance));
    }

    /// The applications changed in the retention window up to `now`, each instance in its latest
    /// state only (a later change of one id supersedes earlier ones), sorted by name and id.
    pub(crate) fn applications(&self, now: u64) -> Vec<Application> {
        let mut apps: Vec<Application> = Vec::new();
        for (_, instance) in self.changes.iter().filter(|(at, _)| at.saturating_add(RETENTION_MS) >= now) {
            let app = match apps.iter_mut().position(|a| a.name == instance.app) {
                Some(i) => &mut apps[i],
                None => {
                    apps.push(Application { name: instance.app.clone(), instances: Vec::new() });
                    let last = apps.len() - 1;
                    &mut apps[last]
                }
            };
            match app.instances.iter_mut().find(|i| i.instance_id == instance.instance_id) {
                Some(slot) => *slot = instance.clone(),
                None => app.instances.push(instance.clone()),
            }
        }
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        for app in &mut apps {
            app.instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        }
        apps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActionType;

    fn change(app: &str, id: &str, action: ActionType) -> Instance {
        let mut instance = Instance::new(app, id, "h", "1");
        instance.action_type = Some(action);
        instance
    }

    #[test]
    fn later_changes_of_an_id_supersede_earlier_ones() {
        let mut changes = RecentChanges::default();
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
        let mut changes = RecentChanges::default();
        changes.push(1_000, change("a", "1", ActionType::Added));
        assert_eq!(changes.applications(1_000 + RETENTION_MS).len(), 1);
        assert!(changes.applications(1_001 + RETENTION_MS).is_empty());
        changes.push(2_000 + RETENTION_MS, change("a", "2", ActionType::Added));
        assert_eq!(changes.changes.len(), 1, "pushing drops what has expired");
    }
}
