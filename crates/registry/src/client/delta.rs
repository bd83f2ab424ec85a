//! Applying a delta (`GET /apps/delta`) to the client's copy of the registry.
//!
//! A delta lists the instances changed in the server's recent window, each with its action type.
//! The same change shows up in several consecutive deltas, so applying one is idempotent: ADDED and
//! MODIFIED replace the instance by (application, id), DELETED removes it, and an application left
//! without instances is dropped. Whether the result matches the server is for the caller to check,
//! by comparing [`Applications::compute_hash_code`] with the delta's `apps__hashcode`.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::{ActionType, Application, Applications, Instance};

/// The instances of `apps` by application name, then instance id.
type Index = BTreeMap<String, BTreeMap<String, Arc<Instance>>>;

fn index(apps: &Applications) -> Index {
    let mut index = Index::new();
    for app in &apps.applications {
        let instances = index.entry(app.name.to_ascii_uppercase()).or_default();
        for instance in &app.instances {
            instances.insert(instance.id().to_owned(), Arc::clone(instance));
        }
    }
    index
}

fn applications(index: Index, versions_delta: u64) -> Applications {
    let applications: Vec<Application> = index
        .into_iter()
        .filter(|(_, instances)| !instances.is_empty())
        .map(|(name, instances)| Application { name, instances: instances.into_values().collect() })
        .collect();
    let mut apps = Applications { versions_delta, apps_hashcode: String::new(), applications };
    apps.apps_hashcode = apps.compute_hash_code();
    apps
}

/// `apps` sorted as the embedded registry sorts its snapshots (applications by name, instances by
/// id), with its hash code computed locally: the form every snapshot the client publishes has.
pub fn normalize(apps: &Applications) -> Applications {
    applications(index(apps), apps.versions_delta)
}

/// `local` with `delta` applied. The result carries the delta's `versions__delta` and the hash code
/// of its own instances (not the delta's, which the caller compares it with).
///
/// Instances without an action type are skipped, as Java's client skips them; the hash code check
/// then decides whether a full fetch is needed.
pub fn apply_delta(local: &Applications, delta: &Applications) -> Applications {
    let mut index = index(local);
    for app in &delta.applications {
        for instance in &app.instances {
            // The instance's own `app` names it; the enclosing element is only a fallback.
            let name = if instance.app.is_empty() { app.name.to_ascii_uppercase() } else { instance.app.to_ascii_uppercase() };
            match instance.action_type {
                Some(ActionType::Added | ActionType::Modified) => {
                    index.entry(name).or_default().insert(instance.id().to_owned(), Arc::clone(instance));
                }
                Some(ActionType::Deleted) => {
                    if let Some(instances) = index.get_mut(&name) {
                        instances.remove(instance.id());
                    }
                }
                None => {}
            }
        }
    }
    applications(index, delta.versions_delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn instance(app: &str, id: &str, status: Status, action: Option<ActionType>) -> Arc<Instance> {
        let mut instance = Instance::new(app, id, "h", "127.0.0.1");
        instance.status = status;
        instance.action_type = action;
        Arc::new(instance)
    }

    fn apps(instances: Vec<Arc<Instance>>) -> Applications {
        let mut by_app: BTreeMap<String, Vec<Arc<Instance>>> = BTreeMap::new();
        for instance in instances {
            by_app.entry(instance.app.clone()).or_default().push(instance);
        }
        Applications {
            versions_delta: 0,
            apps_hashcode: String::new(),
            applications: by_app.into_iter().map(|(name, instances)| Application { name, instances }).collect(),
        }
    }

    fn ids(apps: &Applications) -> Vec<(String, String, Status)> {
        apps.instances().map(|i| (i.app.clone(), i.instance_id.clone(), i.status)).collect()
    }

    #[test]
    fn added_modified_deleted() {
        let local = apps(vec![instance("a", "a1", Status::Up, None), instance("b", "b1", Status::Up, None)]);
        let mut delta = apps(vec![
            instance("a", "a2", Status::Up, Some(ActionType::Added)),
            instance("a", "a1", Status::OutOfService, Some(ActionType::Modified)),
            instance("b", "b1", Status::Up, Some(ActionType::Deleted)),
            instance("c", "c1", Status::Down, Some(ActionType::Added)),
        ]);
        delta.versions_delta = 7;
        let result = apply_delta(&local, &delta);
        assert_eq!(
            ids(&result),
            vec![
                ("A".into(), "a1".into(), Status::OutOfService),
                ("A".into(), "a2".into(), Status::Up),
                ("C".into(), "c1".into(), Status::Down)
            ]
        );
        // B lost its last instance and is gone, not left empty.
        assert!(result.application("b").is_none());
        assert_eq!((result.versions_delta, result.apps_hashcode.as_str()), (7, "DOWN_1_OUT_OF_SERVICE_1_UP_1_"));
    }

    #[test]
    fn applying_the_same_delta_twice_changes_nothing() {
        let local = apps(vec![instance("a", "a1", Status::Up, None)]);
        let delta = apps(vec![
            instance("a", "a2", Status::Up, Some(ActionType::Added)),
            instance("a", "a1", Status::Up, Some(ActionType::Deleted)),
            instance("a", "gone", Status::Up, Some(ActionType::Deleted)),
        ]);
        let once = apply_delta(&local, &delta);
        let twice = apply_delta(&once, &delta);
        assert_eq!(once, twice);
        assert_eq!(ids(&once), vec![("A".into(), "a2".into(), Status::Up)]);
    }

    #[test]
    fn instances_without_an_action_are_skipped() {
        let local = apps(vec![]);
        let delta = apps(vec![instance("a", "a1", Status::Up, None)]);
        let result = apply_delta(&local, &delta);
        assert!(result.applications.is_empty());
        assert_eq!(result.apps_hashcode, "");
    }

    #[test]
    fn normalize_sorts_and_hashes() {
        let unsorted = Applications {
            versions_delta: 3,
            apps_hashcode: "stale".into(),
            applications: vec![
                Application { name: "B".into(), instances: vec![instance("b", "b2", Status::Up, None), instance("b", "b1", Status::Down, None)] },
                Application { name: "A".into(), instances: vec![] },
            ],
        };
        let normal = normalize(&unsorted);
        assert_eq!(ids(&normal), vec![("B".into(), "b1".into(), Status::Down), ("B".into(), "b2".into(), Status::Up)]);
        assert_eq!((normal.versions_delta, normal.apps_hashcode.as_str()), (3, "DOWN_1_UP_1_"));
    }
}
