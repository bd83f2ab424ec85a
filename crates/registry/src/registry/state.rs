//! The registry's state and Eureka's rules, as a pure core: every operation takes `now` (ms since
//! the Unix epoch) and does no I/O, so lease expiry and eviction are tested without sleeping.
//!
//! Each instance's `leaseInfo` is its lease: `lastRenewalTimestamp` moves on every heartbeat,
//! `durationInSecs` says when it runs out. [`RegistryState::version`] grows on every change that
//! clients can see (never on a plain heartbeat), which is how [`super::Registry`] knows to publish.

use std::collections::{BTreeMap, HashMap};

use thiserror::Error;

use super::delta::RecentChanges;
use super::lease::{self, RenewRate};
use crate::model::{apps_hash_code, ActionType, Application, Applications, Instance, Status};

/// Why an operation on an existing lease answered 404 (the client then registers again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LeaseError {
    /// No instance with that application and id.
    #[error("no lease for this instance")]
    NoLease,
    /// The instance's effective status is UNKNOWN (after an override was deleted without a new
    /// status): a 404 makes the client register again with its real status.
    #[error("the instance's status is UNKNOWN")]
    UnknownStatus,
    /// The heartbeat's `lastDirtyTimestamp` is newer than the registry's copy: the client changed
    /// its record since it registered, so it must send it again.
    #[error("the client's record is newer than the registry's")]
    NewerOnClient,
}

/// The tunables the rules depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Whether self-preservation may stop expiry.
    pub(crate) self_preservation: bool,
    /// Java's `renewalPercentThreshold`.
    pub(crate) renewal_percent_threshold: f64,
}

/// Every lease, override and recent change.
#[derive(Debug, Clone)]
pub(crate) struct RegistryState {
    /// Application name → instance id → instance (whose `leaseInfo` is the lease).
    apps: BTreeMap<String, BTreeMap<String, Instance>>,
    /// Status overrides by instance id (Java keeps them apart from the instance, keyed by id alone).
    overrides: HashMap<String, Status>,
    changes: RecentChanges,
    version: u64,
    /// Java's `expectedNumberOfClientsSendingRenews`.
    expected_clients: u64,
    renews: RenewRate,
    rules: Rules,
}

/// Java's rule chain for an instance's effective status on renewal and registration (first match
/// wins): a client-reported DOWN/STARTING/UNKNOWN stands; else an override; else an existing
/// lease's UP/OUT_OF_SERVICE; else what the client said.
fn effective_status(reported: Status, overridden: Option<Status>, existing: Option<Status>) -> Status {
    if !matches!(reported, Status::Up | Status::OutOfService) {
        return reported;
    }
    if let Some(overridden) = overridden {
        return overridden;
    }
    match existing {
        Some(status @ (Status::Up | Status::OutOfService)) => status,
        _ => reported,
    }
}

impl RegistryState {
    /// An empty registry.
    pub(crate) fn new(rules: Rules) -> RegistryState {
        RegistryState {
            apps: BTreeMap::new(),
            overrides: HashMap::new(),
            changes: RecentChanges::default(),
            version: 0,
            expected_clients: 0,
            renews: RenewRate::new(),
            rules,
        }
    }

    /// A registry resumed from a saved snapshot: leases keep their renewal timestamps (so instances
    /// that miss their next heartbeats still expire), overrides come back from `overriddenStatus`.
    pub(crate) fn resume(saved: Applications, rules: Rules, now: u64) -> RegistryState {
        let mut state = RegistryState::new(rules);
        state.version = saved.versions_delta;
        for app in saved.applications {
            for mut instance in app.instances {
                instance.instance_id = instance.id().to_owned();
                if instance.instance_id.is_empty() {
                    continue;
                }
                if instance.lease_info.last_renewal_timestamp == 0 {
                    instance.lease_info.last_renewal_timestamp = now;
                }
                if instance.overridden_status != Status::Unknown {
                    state.overrides.insert(instance.instance_id.clone(), instance.overridden_status);
                }
                state.expected_clients += 1;
                state.apps.entry(instance.app.clone()).or_default().insert(instance.instance_id.clone(), instance);
            }
        }
        state
    }

    /// Grows with every visible change.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    fn changed(&mut self, now: u64, instance: &Instance) {
        self.version += 1;
        self.changes.push(now, instance.clone());
    }

    fn lease_mut(&mut self, app: &str, id: &str) -> Result<&mut Instance, LeaseError> {
        self.apps.get_mut(app).and_then(|instances| instances.get_mut(id)).ok_or(LeaseError::NoLease)
    }

    /// Registers (or registers again) an instance that passed
    /// [`crate::codec::validate_registration`]. Returns the stored copy.
    pub(crate) fn register(&mut self, mut instance: Instance, now: u64) -> Instance {
        instance.instance_id = instance.id().to_owned();
        instance.app = instance.app.to_ascii_uppercase();
        if instance.last_dirty_timestamp == 0 {
            instance.last_dirty_timestamp = now;
        }
        let id = instance.instance_id.clone();
        let existing = self.apps.get(&instance.app).and_then(|instances| instances.get(&id)).cloned();
        match &existing {
            // Java keeps its own copy when it is newer than the one registering (a late replay).
            Some(existing) if existing.last_dirty_timestamp > instance.last_dirty_timestamp => instance = existing.clone(),
            Some(_) => {}
            None => self.expected_clients += 1,
        }
        if instance.overridden_status != Status::Unknown {
            self.overrides.entry(id.clone()).or_insert(instance.overridden_status);
        }
        let overridden = self.overrides.get(&id).copied();
        if let Some(overridden) = overridden {
            instance.overridden_status = overridden;
        }
        instance.status = effective_status(instance.status, overridden, existing.as_ref().map(|e| e.status));
        let lease = &mut instance.lease_info;
        lease.registration_timestamp = now;
        lease.last_renewal_timestamp = now;
        lease.eviction_timestamp = 0;
        lease.service_up_timestamp = existing.as_ref().map_or(0, |e| e.lease_info.service_up_timestamp);
        if instance.status == Status::Up && lease.service_up_timestamp == 0 {
            lease.service_up_timestamp = now;
        }
        instance.action_type = Some(ActionType::Added);
        instance.last_updated_timestamp = now;
        self.changed(now, &instance);
        self.apps.entry(instance.app.clone()).or_default().insert(id, instance.clone());
        instance
    }

    /// A heartbeat. The `status` query parameter is ignored, as in Java; `last_dirty` is the
    /// client's `lastDirtyTimestamp` when it sent one.
    ///
    /// # Errors
    /// [`LeaseError`]: the client must register again (404).
    pub(crate) fn renew(&mut self, app: &str, id: &str, last_dirty: Option<u64>, now: u64) -> Result<(), LeaseError> {
        let overridden = self.overrides.get(id).copied();
        let instance = self.lease_mut(app, id)?;
        let status = effective_status(instance.status, overridden, Some(instance.status));
        if status == Status::Unknown {
            return Err(LeaseError::UnknownStatus);
        }
        instance.lease_info.last_renewal_timestamp = now;
        let newer_on_client = last_dirty.is_some_and(|dirty| dirty > instance.last_dirty_timestamp);
        // Java sets such a status silently; wsgate records it, so routes and deltas follow it.
        let status_changed = instance.status != status;
        if status_changed {
            instance.status = status;
            instance.action_type = Some(ActionType::Modified);
            instance.last_updated_timestamp = now;
        }
        let snapshot = status_changed.then(|| instance.clone());
        self.renews.record(now);
        if let Some(snapshot) = snapshot {
            self.changed(now, &snapshot);
        }
        if newer_on_client {
            return Err(LeaseError::NewerOnClient);
        }
        Ok(())
    }

    /// Removes an instance (cancel, or eviction when `evicted`).
    fn remove(&mut self, app: &str, id: &str, now: u64) -> Result<Instance, LeaseError> {
        let instances = self.apps.get_mut(app).ok_or(LeaseError::NoLease)?;
        let mut instance = instances.remove(id).ok_or(LeaseError::NoLease)?;
        if instances.is_empty() {
            self.apps.remove(app);
        }
        self.overrides.remove(id);
        self.expected_clients = self.expected_clients.saturating_sub(1);
        instance.lease_info.eviction_timestamp = now;
        instance.action_type = Some(ActionType::Deleted);
        instance.last_updated_timestamp = now;
        self.changed(now, &instance);
        Ok(instance)
    }

    /// A cancellation (`DELETE /apps/{APP}/{ID}`).
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub(crate) fn cancel(&mut self, app: &str, id: &str, now: u64) -> Result<(), LeaseError> {
        self.remove(app, id, now).map(drop)
    }

    fn modified(&mut self, app: &str, id: &str, now: u64, last_dirty: Option<u64>, apply: impl FnOnce(&mut Instance)) -> Result<(), LeaseError> {
        let instance = self.lease_mut(app, id)?;
        instance.lease_info.last_renewal_timestamp = now;
        apply(instance);
        if let Some(dirty) = last_dirty {
            instance.last_dirty_timestamp = instance.last_dirty_timestamp.max(dirty);
        }
        instance.action_type = Some(ActionType::Modified);
        instance.last_updated_timestamp = now;
        let snapshot = instance.clone();
        self.changed(now, &snapshot);
        Ok(())
    }

    /// `PUT .../status?value=S`: stores the override, sets the status and renews the lease.
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub(crate) fn set_status_override(&mut self, app: &str, id: &str, status: Status, last_dirty: Option<u64>, now: u64) -> Result<(), LeaseError> {
        self.lease_mut(app, id)?;
        self.overrides.insert(id.to_owned(), status);
        self.modified(app, id, now, last_dirty, |instance| {
            instance.overridden_status = status;
            instance.status = status;
        })
    }

    /// `DELETE .../status[?value=S]`: removes the override; the status becomes `status` (UNKNOWN
    /// when the client named none, so its next heartbeat gets a 404 and it registers again).
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub(crate) fn delete_status_override(&mut self, app: &str, id: &str, status: Status, last_dirty: Option<u64>, now: u64) -> Result<(), LeaseError> {
        self.lease_mut(app, id)?;
        self.overrides.remove(id);
        self.modified(app, id, now, last_dirty, |instance| {
            instance.overridden_status = Status::Unknown;
            instance.status = status;
        })
    }

    /// `PUT .../metadata?k=v`: merges the pairs into the metadata and marks the record dirty.
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub(crate) fn update_metadata(&mut self, app: &str, id: &str, pairs: &[(String, String)], now: u64) -> Result<(), LeaseError> {
        self.modified(app, id, now, None, |instance| {
            for (key, value) in pairs {
                instance.metadata.insert(key.as_str(), value.as_str());
            }
            instance.last_dirty_timestamp = now;
        })
    }

    /// Number of registered instances.
    pub(crate) fn size(&self) -> usize {
        self.apps.values().map(BTreeMap::len).sum()
    }

    /// Whether self-preservation lets leases expire at `now`.
    pub(crate) fn expiry_enabled(&self, now: u64) -> bool {
        let threshold = lease::renews_threshold(self.expected_clients, self.rules.renewal_percent_threshold);
        lease::expiry_enabled(self.rules.self_preservation, threshold, self.renews.last_minute(now))
    }

    /// One eviction run: removes expired leases, longest-expired first, at most
    /// [`lease::eviction_limit`] of them, and none while self-preservation holds. Returns the
    /// evicted instances.
    pub(crate) fn evict(&mut self, now: u64) -> Vec<Instance> {
        if !self.expiry_enabled(now) {
            return Vec::new();
        }
        let mut expired: Vec<(u64, String, String)> = self
            .apps
            .values()
            .flat_map(BTreeMap::values)
            .filter(|instance| lease::is_expired(instance, now))
            .map(|instance| (instance.lease_info.last_renewal_timestamp, instance.app.clone(), instance.instance_id.clone()))
            .collect();
        expired.sort();
        expired.truncate(lease::eviction_limit(self.size(), self.rules.renewal_percent_threshold));
        expired.into_iter().filter_map(|(_, app, id)| self.remove(&app, &id, now).ok()).collect()
    }

    fn hash_code(&self) -> String {
        apps_hash_code(self.apps.values().flat_map(BTreeMap::values))
    }

    /// Every application (`GET /apps`).
    pub(crate) fn full(&self) -> Applications {
        Applications {
            versions_delta: self.version,
            apps_hashcode: self.hash_code(),
            applications: self
                .apps
                .iter()
                .map(|(name, instances)| Application { name: name.clone(), instances: instances.values().cloned().collect() })
                .collect(),
        }
    }

    /// The changes of the last three minutes (`GET /apps/delta`), with the full registry's hash code.
    pub(crate) fn delta(&self, now: u64) -> Applications {
        Applications { versions_delta: self.version, apps_hashcode: self.hash_code(), applications: self.changes.applications(now) }
    }

    /// One application, `None` when it has no instances.
    pub(crate) fn application(&self, app: &str) -> Option<Application> {
        self.apps.get(app).map(|instances| Application { name: app.to_owned(), instances: instances.values().cloned().collect() })
    }

    /// One instance of one application.
    pub(crate) fn instance(&self, app: &str, id: &str) -> Option<Instance> {
        self.apps.get(app).and_then(|instances| instances.get(id)).cloned()
    }

    /// The instance with this id, in whichever application.
    pub(crate) fn instance_by_id(&self, id: &str) -> Option<Instance> {
        self.apps.values().find_map(|instances| instances.get(id)).cloned()
    }

    /// The instances whose (secure) VIP list names `vip`, as applications.
    pub(crate) fn by_vip(&self, vip: &str, secure: bool) -> Applications {
        let applications = self
            .apps
            .iter()
            .filter_map(|(name, instances)| {
                let matching: Vec<Instance> = instances.values().filter(|i| i.has_vip(vip, secure)).cloned().collect();
                (!matching.is_empty()).then(|| Application { name: name.clone(), instances: matching })
            })
            .collect::<Vec<_>>();
        let apps_hashcode = apps_hash_code(applications.iter().flat_map(|a| a.instances.iter()));
        Applications { versions_delta: self.version, apps_hashcode, applications }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LeaseInfo;

    const RULES: Rules = Rules { self_preservation: false, renewal_percent_threshold: 0.85 };
    const T0: u64 = 1_700_000_000_000;

    fn instance(app: &str, id: &str) -> Instance {
        let mut instance = Instance::new(app, id, "host", "127.0.0.1");
        instance.lease_info = LeaseInfo { renewal_interval_secs: 1, duration_secs: 3, ..LeaseInfo::default() };
        instance
    }

    fn ids(state: &RegistryState) -> Vec<String> {
        state.full().instances().map(|i| i.instance_id.clone()).collect()
    }

    #[test]
    fn register_fills_lease_and_identity() {
        let mut state = RegistryState::new(RULES);
        let mut i = instance("demo", "");
        i.host_name = "by-host".into();
        let stored = state.register(i, T0);
        assert_eq!((stored.instance_id.as_str(), stored.app.as_str()), ("by-host", "DEMO"));
        assert_eq!(stored.lease_info.registration_timestamp, T0);
        assert_eq!(stored.lease_info.service_up_timestamp, T0);
        assert_eq!((stored.last_dirty_timestamp, stored.action_type), (T0, Some(ActionType::Added)));
        assert_eq!(state.full().apps_hashcode, "UP_1_");
    }

    #[test]
    fn status_precedence_on_register() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), T0);
        // An override wins over the UP the client sends again...
        state.set_status_override("A", "1", Status::OutOfService, None, T0 + 1).unwrap();
        assert_eq!(state.register(instance("a", "1"), T0 + 2).status, Status::OutOfService);
        // ...but a client-reported DOWN or STARTING wins over the override.
        let mut down = instance("a", "1");
        down.status = Status::Down;
        assert_eq!(state.register(down, T0 + 3).status, Status::Down);
        // Without an override, an existing OUT_OF_SERVICE is kept against a reported UP.
        state.delete_status_override("A", "1", Status::OutOfService, None, T0 + 4).unwrap();
        assert_eq!(state.register(instance("a", "1"), T0 + 5).status, Status::OutOfService);
        // A fresh instance gets what it reports; one that reports an override keeps it.
        let mut with_override = instance("a", "2");
        with_override.overridden_status = Status::OutOfService;
        let stored = state.register(with_override, T0 + 6);
        assert_eq!((stored.status, stored.overridden_status), (Status::OutOfService, Status::OutOfService));
    }

    #[test]
    fn a_newer_copy_on_the_server_wins_over_a_replayed_registration() {
        let mut state = RegistryState::new(RULES);
        let mut newer = instance("a", "1");
        newer.last_dirty_timestamp = T0 + 10;
        newer.metadata.insert("v", "2");
        state.register(newer, T0);
        let mut older = instance("a", "1");
        older.last_dirty_timestamp = T0;
        assert_eq!(state.register(older, T0 + 1).metadata.get("v"), Some("2"));
    }

    #[test]
    fn heartbeat_404_rules() {
        let mut state = RegistryState::new(RULES);
        assert_eq!(state.renew("A", "1", None, T0), Err(LeaseError::NoLease));
        state.register(instance("a", "1"), T0);
        let version = state.version();
        assert_eq!(state.renew("A", "1", None, T0 + 1), Ok(()));
        assert_eq!(state.version(), version, "a heartbeat that changes nothing is no change");
        assert_eq!(state.instance("A", "1").map(|i| i.lease_info.last_renewal_timestamp), Some(T0 + 1));
        assert_eq!(state.renew("A", "1", Some(T0), T0 + 2), Ok(()));
        assert_eq!(state.renew("A", "1", Some(T0 + 100), T0 + 3), Err(LeaseError::NewerOnClient));
        state.delete_status_override("A", "1", Status::Unknown, None, T0 + 4).unwrap();
        assert_eq!(state.renew("A", "1", None, T0 + 5), Err(LeaseError::UnknownStatus));
    }

    #[test]
    fn override_put_and_delete() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), T0);
        assert_eq!(state.set_status_override("A", "2", Status::Down, None, T0), Err(LeaseError::NoLease));
        state.set_status_override("A", "1", Status::OutOfService, Some(T0 + 50), T0 + 1).unwrap();
        let i = state.instance("A", "1").unwrap();
        assert_eq!((i.status, i.overridden_status, i.action_type), (Status::OutOfService, Status::OutOfService, Some(ActionType::Modified)));
        assert_eq!((i.last_dirty_timestamp, i.lease_info.last_renewal_timestamp), (T0 + 50, T0 + 1));
        // The override survives heartbeats.
        state.renew("A", "1", None, T0 + 2).unwrap();
        assert_eq!(state.instance("A", "1").map(|i| i.status), Some(Status::OutOfService));
        state.delete_status_override("A", "1", Status::Up, None, T0 + 3).unwrap();
        let i = state.instance("A", "1").unwrap();
        assert_eq!((i.status, i.overridden_status), (Status::Up, Status::Unknown));
    }

    #[test]
    fn metadata_merges_and_marks_dirty() {
        let mut state = RegistryState::new(RULES);
        let mut i = instance("a", "1");
        i.metadata.insert("keep", "1");
        state.register(i, T0);
        state.update_metadata("A", "1", &[("new".into(), "2".into()), ("keep".into(), "3".into())], T0 + 7).unwrap();
        let i = state.instance("A", "1").unwrap();
        assert_eq!(i.metadata.iter().collect::<Vec<_>>(), vec![("keep", "3"), ("new", "2")]);
        assert_eq!(i.last_dirty_timestamp, T0 + 7);
        assert_eq!(state.update_metadata("A", "9", &[], T0), Err(LeaseError::NoLease));
    }

    #[test]
    fn leases_expire_at_their_duration_and_eviction_is_capped() {
        let mut state = RegistryState::new(RULES);
        for n in 0..10 {
            state.register(instance("a", &n.to_string()), T0);
        }
        state.renew("A", "9", None, T0 + 2_000).unwrap();
        assert!(state.evict(T0 + 3_000).is_empty(), "not expired at exactly the duration");
        // 9 expired, but one run evicts at most 10 - (int)(10 × 0.85) = 2, oldest first.
        assert_eq!(state.evict(T0 + 3_001).len(), 2);
        assert_eq!(state.size(), 8);
        while !state.evict(T0 + 3_002).is_empty() {}
        assert_eq!(ids(&state), vec!["9"]);
        assert_eq!(state.evict(T0 + 5_001).len(), 1);
        assert_eq!(state.size(), 0);
        assert_eq!(state.full().apps_hashcode, "");
    }

    #[test]
    fn self_preservation_stops_expiry_when_renewals_drop() {
        let mut state = RegistryState::new(Rules { self_preservation: true, ..RULES });
        state.register(instance("a", "1"), T0);
        state.register(instance("a", "2"), T0);
        // Expected 2 clients → threshold (int)(2 × 2 × 0.85) = 3 renewals a minute.
        for n in 1..=3 {
            state.renew("A", "1", None, T0 + n * 1_000).unwrap();
        }
        assert!(!state.expiry_enabled(T0 + 3_000));
        assert!(state.evict(T0 + 10_000).is_empty(), "3 renewals is not above the threshold");
        state.renew("A", "1", None, T0 + 4_000).unwrap();
        // 4 renewals in the last minute: expiry resumes and the silent instance goes.
        assert_eq!(state.evict(T0 + 5_000).iter().map(|i| i.instance_id.as_str()).collect::<Vec<_>>(), vec!["2"]);
        // A minute without renewals: instance 1 expired, but self-preservation holds it.
        assert!(state.evict(T0 + 70_000).is_empty());
        assert_eq!(ids(&state), vec!["1"]);
    }

    /// A client's copy, kept up to date by deltas the way Java's DiscoveryClient does.
    fn apply_delta(copy: &mut BTreeMap<String, Instance>, delta: &Applications) {
        for instance in delta.instances() {
            match instance.action_type {
                Some(ActionType::Deleted) => {
                    copy.remove(&instance.instance_id);
                }
                _ => {
                    copy.insert(instance.instance_id.clone(), instance.clone());
                }
            }
        }
    }

    #[test]
    fn deltas_are_idempotent_and_converge_to_the_full_registry() {
        let mut state = RegistryState::new(RULES);
        let mut copy = BTreeMap::new();
        let mut now = T0;
        type Step = Box<dyn Fn(&mut RegistryState, u64)>;
        let steps: Vec<Step> = vec![
            Box::new(|s, t| drop(s.register(instance("a", "1"), t))),
            Box::new(|s, t| drop(s.register(instance("b", "2"), t))),
            Box::new(|s, t| s.set_status_override("A", "1", Status::OutOfService, None, t).unwrap()),
            Box::new(|s, t| drop(s.register(instance("a", "3"), t))),
            Box::new(|s, t| s.cancel("B", "2", t).unwrap()),
            Box::new(|s, t| s.delete_status_override("A", "1", Status::Down, None, t).unwrap()),
            Box::new(|s, t| drop(s.register(instance("b", "2"), t))),
            Box::new(|s, t| s.cancel("A", "3", t).unwrap()),
        ];
        for step in steps {
            now += 1_000;
            step(&mut state, now);
            let delta = state.delta(now);
            // Every change is in several consecutive deltas: applying one twice changes nothing.
            apply_delta(&mut copy, &delta);
            apply_delta(&mut copy, &delta);
            assert_eq!(apps_hash_code(copy.values()), delta.apps_hashcode);
        }
        let full: BTreeMap<String, Instance> = state.full().instances().map(|i| (i.instance_id.clone(), i.clone())).collect();
        assert_eq!(copy.keys().collect::<Vec<_>>(), full.keys().collect::<Vec<_>>());
        assert_eq!(state.full().apps_hashcode, "DOWN_1_UP_1_");
    }

    #[test]
    fn reads_and_vips() {
        let mut state = RegistryState::new(RULES);
        let mut i = instance("a", "1");
        i.vip_address = Some("svc,alias".into());
        i.secure_vip_address = Some("secure-svc".into());
        state.register(i, T0);
        state.register(instance("b", "2"), T0);
        assert!(state.application("A").is_some() && state.application("C").is_none());
        assert_eq!(state.instance_by_id("2").map(|i| i.app), Some("B".to_owned()));
        assert_eq!(state.by_vip("alias", false).instances().count(), 1);
        assert_eq!(state.by_vip("secure-svc", true).instances().count(), 1);
        assert_eq!(state.by_vip("secure-svc", false).instances().count(), 0);
    }

    #[test]
    fn resume_keeps_renewals_and_overrides() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), T0);
        state.set_status_override("A", "1", Status::OutOfService, None, T0 + 1_000).unwrap();
        let mut resumed = RegistryState::resume(state.full(), RULES, T0 + 2_000);
        assert_eq!(resumed.full(), state.full());
        assert_eq!(resumed.register(instance("a", "1"), T0 + 2_500).status, Status::OutOfService, "override survives");
        let mut resumed = RegistryState::resume(state.full(), RULES, T0 + 2_000);
        assert_eq!(resumed.evict(T0 + 4_001).len(), 1, "the lease ran out 3 s after its last renewal before the restart");
    }
}
