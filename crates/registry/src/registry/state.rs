//! The registry's state and Eureka's rules, as a pure core: every operation takes the time
//! ([`Now`]) and does no I/O, so lease expiry and eviction are tested without sleeping.
//!
//! Leases run on the monotonic clock ([`Now::mono`]): each lease holds the monotonic time it runs
//! out at, so a step of the wall clock (NTP, a suspended VM) neither evicts live instances nor
//! keeps dead ones. The wall clock ([`Now::wall`]) only fills the timestamps documents carry
//! (`lastRenewalTimestamp` moves on every heartbeat). [`RegistryState::version`] grows on every
//! change that clients can see (never on a plain heartbeat, nor on a change that changes nothing),
//! which is how [`super::Registry`] knows to publish.
//!
//! Instances are held as `Arc<Instance>`, shared with the snapshots and the delta queue: a
//! snapshot after a change copies pointers, and a lease copies its instance only when it changes
//! one that a snapshot still holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

use super::delta::RecentChanges;
use super::lease::{self, RenewRate};
use crate::model::{apps_hash_code, ActionType, Application, Applications, Instance, MetadataTooLarge, Status};

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

/// A registration refused because the registry holds [`crate::RegistryConfig::max_instances`]
/// instances already. Answered 503: every Eureka client takes it as a failed registration and
/// tries again later (Java and py-eureka-client at their next heartbeat, which gets 404 and
/// registers again; Spring's client first tries its other registry URLs), whereas a 4xx would say
/// the registration itself is wrong. Re-registrations of instances already held are never refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the registry is full: it holds at most {max} instances")]
pub struct RegistryFull {
    /// The limit.
    pub max: usize,
}

/// Why a metadata update (`PUT .../metadata`) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MetadataUpdateError {
    /// No such instance, answered 404.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The merged metadata would be beyond the limits, answered 400; nothing was changed.
    #[error(transparent)]
    TooLarge(#[from] MetadataTooLarge),
}

/// The tunables the rules depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Whether self-preservation may stop expiry.
    pub(crate) self_preservation: bool,
    /// Java's `renewalPercentThreshold`.
    pub(crate) renewal_percent_threshold: f64,
    /// Most instances registrations may bring the registry to.
    pub(crate) max_instances: usize,
}

/// The time of one operation, read once by [`super::Registry`] under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Now {
    /// Milliseconds on a monotonic clock (since the registry was made): leases, the renewal rate
    /// and the delta window run on it.
    pub(crate) mono: u64,
    /// Milliseconds since the Unix epoch: only written into the documents' timestamps.
    pub(crate) wall: u64,
}

/// One instance's lease.
#[derive(Debug, Clone)]
struct Lease {
    /// The instance as registered, whose `leaseInfo` carries the wire timestamps.
    instance: Arc<Instance>,
    /// When the lease runs out ([`Now::mono`]).
    expires_at: u64,
    /// The status override set through `PUT .../status` (or brought by a registration), if any.
    ///
    /// Kept with the lease, so keyed by application and id. This departs from Java, which keys
    /// overrides by instance id alone: eureka-js-client's id is its hostName, so two js services on
    /// one host share the id `localhost`, and in Java an override of one applies to the other and
    /// cancelling one drops the other's override. An override still ends with its lease, as in Java.
    status_override: Option<Status>,
}

impl Lease {
    /// Java's `Lease.renew`: the lease runs a full duration from `now`, and the instance says so.
    fn renew(&mut self, now: Now) {
        self.expires_at = lease::expires_at(&self.instance, now.mono);
        if self.instance.lease_info.last_renewal_timestamp != now.wall {
            Arc::make_mut(&mut self.instance).lease_info.last_renewal_timestamp = now.wall;
        }
    }
}

/// What one eviction run did.
#[derive(Debug, Default)]
pub(crate) struct Eviction {
    /// The instances evicted.
    pub(crate) evicted: Vec<Arc<Instance>>,
    /// Expired leases self-preservation kept (none were evicted then).
    pub(crate) held: usize,
}

/// Every lease and recent change.
#[derive(Debug, Clone)]
pub(crate) struct RegistryState {
    /// Application name → instance id → lease.
    apps: BTreeMap<String, BTreeMap<String, Lease>>,
    changes: RecentChanges,
    version: u64,
    /// Java's `expectedNumberOfClientsSendingRenews`: grows with each new registration, shrinks
    /// with each cancellation (not with evictions, as in Java: an evicted instance is one whose
    /// renewals the registry still expects, which is what self-preservation measures).
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
            // A delta may name every instance twice (a restart: old ids deleted, new ones added).
            changes: RecentChanges::new(rules.max_instances.saturating_mul(2)),
            version: 0,
            expected_clients: 0,
            renews: RenewRate::new(),
            rules,
        }
    }

    /// A registry resumed from a saved snapshot: each lease runs out when it would have without the
    /// restart (its `lastRenewalTimestamp` plus its duration, measured against the wall clock once,
    /// here), and overrides come back from `overriddenStatus`.
    pub(crate) fn resume(saved: Applications, rules: Rules, now: Now) -> RegistryState {
        let mut state = RegistryState::new(rules);
        state.version = saved.versions_delta;
        for app in saved.applications {
            for instance in app.instances {
                let mut instance = Arc::unwrap_or_clone(instance);
                instance.instance_id = instance.id().to_owned();
                if instance.instance_id.is_empty() {
                    continue;
                }
                if instance.lease_info.last_renewal_timestamp == 0 {
                    instance.lease_info.last_renewal_timestamp = now.wall;
                }
                let age = now.wall.saturating_sub(instance.lease_info.last_renewal_timestamp);
                let expires_at = lease::expires_at(&instance, now.mono).saturating_sub(age);
                let status_override = (instance.overridden_status != Status::Unknown).then_some(instance.overridden_status);
                let lease = Lease { instance: Arc::new(instance), expires_at, status_override };
                let instances = state.apps.entry(lease.instance.app.clone()).or_default();
                if instances.insert(lease.instance.instance_id.clone(), lease).is_none() {
                    state.expected_clients += 1;
                }
            }
        }
        state
    }

    /// Grows with every visible change.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    fn changed(&mut self, now: Now, instance: &Arc<Instance>) {
        self.version += 1;
        self.changes.push(now.mono, Arc::clone(instance));
    }

    fn lease(&self, app: &str, id: &str) -> Option<&Lease> {
        self.apps.get(app).and_then(|instances| instances.get(id))
    }

    fn lease_mut(&mut self, app: &str, id: &str) -> Result<&mut Lease, LeaseError> {
        self.apps.get_mut(app).and_then(|instances| instances.get_mut(id)).ok_or(LeaseError::NoLease)
    }

    /// Registers (or registers again) an instance that passed
    /// [`crate::codec::validate_registration`]. Returns the stored copy.
    ///
    /// # Errors
    /// [`RegistryFull`] when the instance is new and the registry holds `max_instances` already.
    pub(crate) fn register(&mut self, mut instance: Instance, now: Now) -> Result<Arc<Instance>, RegistryFull> {
        instance.instance_id = instance.id().to_owned();
        instance.app = instance.app.to_ascii_uppercase();
        if instance.last_dirty_timestamp == 0 {
            instance.last_dirty_timestamp = now.wall;
        }
        let id = instance.instance_id.clone();
        let existing = self.lease(&instance.app, &id).map(|lease| (Arc::clone(&lease.instance), lease.status_override));
        match &existing {
            // Java keeps its own copy when it is newer than the one registering (a late replay).
            Some((existing, _)) if existing.last_dirty_timestamp > instance.last_dirty_timestamp => instance = Instance::clone(existing),
            Some(_) => {}
            None if self.size() >= self.rules.max_instances => return Err(RegistryFull { max: self.rules.max_instances }),
            None => self.expected_clients += 1,
        }
        let kept_override = existing.as_ref().and_then(|(_, overridden)| *overridden);
        let overridden = kept_override.or((instance.overridden_status != Status::Unknown).then_some(instance.overridden_status));
        if let Some(overridden) = overridden {
            instance.overridden_status = overridden;
        }
        instance.status = effective_status(instance.status, overridden, existing.as_ref().map(|(e, _)| e.status));
        let lease_info = &mut instance.lease_info;
        lease_info.registration_timestamp = now.wall;
        lease_info.last_renewal_timestamp = now.wall;
        lease_info.eviction_timestamp = 0;
        lease_info.service_up_timestamp = existing.as_ref().map_or(0, |(e, _)| e.lease_info.service_up_timestamp);
        if instance.status == Status::Up && lease_info.service_up_timestamp == 0 {
            lease_info.service_up_timestamp = now.wall;
        }
        instance.action_type = Some(ActionType::Added);
        instance.last_updated_timestamp = now.wall;
        let expires_at = lease::expires_at(&instance, now.mono);
        let instance = Arc::new(instance);
        self.changed(now, &instance);
        let lease = Lease { instance: Arc::clone(&instance), expires_at, status_override: overridden };
        self.apps.entry(instance.app.clone()).or_default().insert(id, lease);
        Ok(instance)
    }

    /// A heartbeat. The `status` query parameter is ignored, as in Java; `last_dirty` is the
    /// client's `lastDirtyTimestamp` when it sent one.
    ///
    /// # Errors
    /// [`LeaseError`]: the client must register again (404).
    pub(crate) fn renew(&mut self, app: &str, id: &str, last_dirty: Option<u64>, now: Now) -> Result<(), LeaseError> {
        let lease = self.lease_mut(app, id)?;
        let current = lease.instance.status;
        let status = effective_status(current, lease.status_override, Some(current));
        if status == Status::Unknown {
            return Err(LeaseError::UnknownStatus);
        }
        lease.renew(now);
        let newer_on_client = last_dirty.is_some_and(|dirty| dirty > lease.instance.last_dirty_timestamp);
        // Java sets such a status silently; wsgate records it, so routes and deltas follow it.
        let changed = (current != status).then(|| {
            let instance = Arc::make_mut(&mut lease.instance);
            instance.status = status;
            instance.action_type = Some(ActionType::Modified);
            instance.last_updated_timestamp = now.wall;
            Arc::clone(&lease.instance)
        });
        self.renews.record(now.mono);
        if let Some(instance) = changed {
            self.changed(now, &instance);
        }
        if newer_on_client {
            return Err(LeaseError::NewerOnClient);
        }
        Ok(())
    }

    /// Removes an instance: a cancellation, or an eviction when `!cancelled`.
    fn remove(&mut self, app: &str, id: &str, now: Now, cancelled: bool) -> Result<Arc<Instance>, LeaseError> {
        let instances = self.apps.get_mut(app).ok_or(LeaseError::NoLease)?;
        let lease = instances.remove(id).ok_or(LeaseError::NoLease)?;
        if instances.is_empty() {
            self.apps.remove(app);
        }
        if cancelled {
            // Java's PeerAwareInstanceRegistryImpl.cancel; its evict leaves the count alone.
            self.expected_clients = self.expected_clients.saturating_sub(1);
        }
        let mut instance = Arc::unwrap_or_clone(lease.instance);
        instance.lease_info.eviction_timestamp = now.wall;
        instance.action_type = Some(ActionType::Deleted);
        instance.last_updated_timestamp = now.wall;
        let instance = Arc::new(instance);
        self.changed(now, &instance);
        Ok(instance)
    }

    /// A cancellation (`DELETE /apps/{APP}/{ID}`).
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub(crate) fn cancel(&mut self, app: &str, id: &str, now: Now) -> Result<(), LeaseError> {
        self.remove(app, id, now, true).map(drop)
    }

    /// Renews the lease and applies `apply` to the instance as a MODIFIED change.
    fn modified(&mut self, app: &str, id: &str, now: Now, last_dirty: Option<u64>, apply: impl FnOnce(&mut Instance)) -> Result<(), LeaseError> {
        let lease = self.lease_mut(app, id)?;
        lease.renew(now);
        let instance = Arc::make_mut(&mut lease.instance);
        apply(instance);
        if let Some(dirty) = last_dirty {
            instance.last_dirty_timestamp = instance.last_dirty_timestamp.max(dirty);
        }
        instance.action_type = Some(ActionType::Modified);
        instance.last_updated_timestamp = now.wall;
        let instance = Arc::clone(&lease.instance);
        self.changed(now, &instance);
        Ok(())
    }

    /// `PUT .../status?value=S`: stores the override, sets the status and renews the lease. Setting
    /// the override the instance already has (and shows) only renews: no delta entry, no snapshot.
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub(crate) fn set_status_override(&mut self, app: &str, id: &str, status: Status, last_dirty: Option<u64>, now: Now) -> Result<(), LeaseError> {
        let lease = self.lease_mut(app, id)?;
        if lease.status_override == Some(status) && lease.instance.status == status && lease.instance.overridden_status == status {
            lease.renew(now);
            return Ok(());
        }
        lease.status_override = Some(status);
        self.modified(app, id, now, last_dirty, |instance| {
            instance.overridden_status = status;
            instance.status = status;
            if status == Status::Up && instance.lease_info.service_up_timestamp == 0 {
                instance.lease_info.service_up_timestamp = now.wall;
            }
        })
    }

    /// `DELETE .../status[?value=S]`: removes the override; the status becomes `status` (UNKNOWN
    /// when the client named none, so its next heartbeat gets a 404 and it registers again).
    /// Without an override and with that status already, it only renews.
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub(crate) fn delete_status_override(&mut self, app: &str, id: &str, status: Status, last_dirty: Option<u64>, now: Now) -> Result<(), LeaseError> {
        let lease = self.lease_mut(app, id)?;
        if lease.status_override.is_none() && lease.instance.status == status && lease.instance.overridden_status == Status::Unknown {
            lease.renew(now);
            return Ok(());
        }
        lease.status_override = None;
        self.modified(app, id, now, last_dirty, |instance| {
            instance.overridden_status = Status::Unknown;
            instance.status = status;
        })
    }

    /// `PUT .../metadata?k=v`: merges the pairs into the metadata and marks the record dirty.
    /// Pairs that change nothing (none, or values already set) only renew the lease.
    ///
    /// # Errors
    /// [`MetadataUpdateError::Lease`] without a lease; [`MetadataUpdateError::TooLarge`] when the
    /// merged metadata would exceed the limits (nothing changes then).
    pub(crate) fn update_metadata(&mut self, app: &str, id: &str, pairs: &[(String, String)], now: Now) -> Result<(), MetadataUpdateError> {
        let lease = self.lease_mut(app, id)?;
        let mut metadata = lease.instance.metadata.clone();
        for (key, value) in pairs {
            metadata.insert(key.as_str(), value.as_str());
        }
        metadata.check_size()?;
        if metadata == lease.instance.metadata {
            lease.renew(now);
            return Ok(());
        }
        self.modified(app, id, now, None, |instance| {
            instance.metadata = metadata;
            instance.last_dirty_timestamp = now.wall;
        })?;
        Ok(())
    }

    /// Number of registered instances.
    pub(crate) fn size(&self) -> usize {
        self.apps.values().map(BTreeMap::len).sum()
    }

    /// The self-preservation threshold and the renewals of the last minute at `now`.
    pub(crate) fn renewals(&self, now: Now) -> (u64, u64) {
        (lease::renews_threshold(self.expected_clients, self.rules.renewal_percent_threshold), self.renews.last_minute(now.mono))
    }

    /// Whether self-preservation lets leases expire at `now`.
    pub(crate) fn expiry_enabled(&self, now: Now) -> bool {
        let (threshold, renews) = self.renewals(now);
        lease::expiry_enabled(self.rules.self_preservation, threshold, renews)
    }

    /// One eviction run: removes expired leases, longest-expired first, at most
    /// [`lease::eviction_limit`] of them, and none while self-preservation holds (then
    /// [`Eviction::held`] counts them).
    pub(crate) fn evict(&mut self, now: Now) -> Eviction {
        let mut expired: Vec<(u64, String, String)> = self
            .apps
            .values()
            .flat_map(BTreeMap::values)
            .filter(|lease| lease::is_expired(lease.expires_at, now.mono))
            .map(|lease| (lease.expires_at, lease.instance.app.clone(), lease.instance.instance_id.clone()))
            .collect();
        if expired.is_empty() {
            return Eviction::default();
        }
        if !self.expiry_enabled(now) {
            return Eviction { evicted: Vec::new(), held: expired.len() };
        }
        expired.sort();
        expired.truncate(lease::eviction_limit(self.size(), self.rules.renewal_percent_threshold));
        let evicted = expired.into_iter().filter_map(|(_, app, id)| self.remove(&app, &id, now, false).ok()).collect();
        Eviction { evicted, held: 0 }
    }

    fn hash_code(&self) -> String {
        apps_hash_code(self.apps.values().flat_map(BTreeMap::values).map(|lease| &*lease.instance))
    }

    fn application_of(name: &str, leases: &BTreeMap<String, Lease>) -> Application {
        Application { name: name.to_owned(), instances: leases.values().map(|lease| Arc::clone(&lease.instance)).collect() }
    }

    /// Every application (`GET /apps`).
    pub(crate) fn full(&self) -> Applications {
        Applications {
            versions_delta: self.version,
            apps_hashcode: self.hash_code(),
            applications: self.apps.iter().map(|(name, leases)| RegistryState::application_of(name, leases)).collect(),
        }
    }

    /// The changes of the last three minutes (`GET /apps/delta`), with the full registry's hash code.
    pub(crate) fn delta(&self, now: Now) -> Applications {
        Applications { versions_delta: self.version, apps_hashcode: self.hash_code(), applications: self.changes.applications(now.mono) }
    }

    /// One application, `None` when it has no instances.
    pub(crate) fn application(&self, app: &str) -> Option<Application> {
        self.apps.get(app).map(|leases| RegistryState::application_of(app, leases))
    }

    /// One instance of one application.
    pub(crate) fn instance(&self, app: &str, id: &str) -> Option<Arc<Instance>> {
        self.lease(app, id).map(|lease| Arc::clone(&lease.instance))
    }

    /// The instance with this id, in whichever application.
    pub(crate) fn instance_by_id(&self, id: &str) -> Option<Arc<Instance>> {
        self.apps.values().find_map(|leases| leases.get(id)).map(|lease| Arc::clone(&lease.instance))
    }

    /// The instances whose (secure) VIP list names `vip`, as applications.
    pub(crate) fn by_vip(&self, vip: &str, secure: bool) -> Applications {
        let applications = self
            .apps
            .iter()
            .filter_map(|(name, leases)| {
                let matching: Vec<Arc<Instance>> = leases.values().filter(|lease| lease.instance.has_vip(vip, secure)).map(|lease| Arc::clone(&lease.instance)).collect();
                (!matching.is_empty()).then(|| Application { name: name.clone(), instances: matching })
            })
            .collect::<Vec<_>>();
        let mut found = Applications { versions_delta: self.version, apps_hashcode: String::new(), applications };
        found.apps_hashcode = found.compute_hash_code();
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LeaseInfo, Metadata};

    const RULES: Rules = Rules { self_preservation: false, renewal_percent_threshold: 0.85, max_instances: 10_000 };
    const T0: u64 = 1_700_000_000_000;

    /// `ms` after the test's start: on the monotonic clock, and on the wall clock from [`T0`].
    fn at(ms: u64) -> Now {
        Now { mono: ms, wall: T0 + ms }
    }

    fn instance(app: &str, id: &str) -> Instance {
        let mut instance = Instance::new(app, id, "host", "127.0.0.1");
        instance.lease_info = LeaseInfo { renewal_interval_secs: 1, duration_secs: 3, ..LeaseInfo::default() };
        instance
    }

    fn ids(state: &RegistryState) -> Vec<String> {
        state.full().instances().map(|i| i.instance_id.clone()).collect()
    }

    fn evicted_ids(eviction: &Eviction) -> Vec<&str> {
        eviction.evicted.iter().map(|i| i.instance_id.as_str()).collect()
    }

    #[test]
    fn register_fills_lease_and_identity() {
        let mut state = RegistryState::new(RULES);
        let mut i = instance("demo", "");
        i.host_name = "by-host".into();
        let stored = state.register(i, at(0)).unwrap();
        assert_eq!((stored.instance_id.as_str(), stored.app.as_str()), ("by-host", "DEMO"));
        assert_eq!(stored.lease_info.registration_timestamp, T0);
        assert_eq!(stored.lease_info.service_up_timestamp, T0);
        assert_eq!((stored.last_dirty_timestamp, stored.action_type), (T0, Some(ActionType::Added)));
        assert_eq!(state.full().apps_hashcode, "UP_1_");
    }

    #[test]
    fn status_precedence_on_register() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), at(0)).unwrap();
        // An override wins over the UP the client sends again...
        state.set_status_override("A", "1", Status::OutOfService, None, at(1)).unwrap();
        assert_eq!(state.register(instance("a", "1"), at(2)).unwrap().status, Status::OutOfService);
        // ...but a client-reported DOWN or STARTING wins over the override.
        let mut down = instance("a", "1");
        down.status = Status::Down;
        assert_eq!(state.register(down, at(3)).unwrap().status, Status::Down);
        // Without an override, an existing OUT_OF_SERVICE is kept against a reported UP.
        state.delete_status_override("A", "1", Status::OutOfService, None, at(4)).unwrap();
        assert_eq!(state.register(instance("a", "1"), at(5)).unwrap().status, Status::OutOfService);
        // A fresh instance gets what it reports; one that reports an override keeps it.
        let mut with_override = instance("a", "2");
        with_override.overridden_status = Status::OutOfService;
        let stored = state.register(with_override, at(6)).unwrap();
        assert_eq!((stored.status, stored.overridden_status), (Status::OutOfService, Status::OutOfService));
    }

    #[test]
    fn overrides_belong_to_one_application_even_when_ids_collide() {
        // Two eureka-js-client services on one host: both ids are the host name.
        let mut state = RegistryState::new(RULES);
        state.register(instance("svc-a", "localhost"), at(0)).unwrap();
        state.register(instance("svc-b", "localhost"), at(0)).unwrap();
        state.set_status_override("SVC-A", "localhost", Status::OutOfService, None, at(1)).unwrap();
        state.renew("SVC-B", "localhost", None, at(2)).unwrap();
        assert_eq!(state.instance("SVC-B", "localhost").map(|i| i.status), Some(Status::Up), "A's override is not B's");
        assert_eq!(state.register(instance("svc-b", "localhost"), at(3)).unwrap().status, Status::Up);
        state.cancel("SVC-B", "localhost", at(4)).unwrap();
        assert_eq!(state.register(instance("svc-a", "localhost"), at(5)).unwrap().status, Status::OutOfService, "cancelling B keeps A's override");
        state.renew("SVC-A", "localhost", None, at(6)).unwrap();
        assert_eq!(state.instance("SVC-A", "localhost").map(|i| i.status), Some(Status::OutOfService));
    }

    #[test]
    fn a_newer_copy_on_the_server_wins_over_a_replayed_registration() {
        let mut state = RegistryState::new(RULES);
        let mut newer = instance("a", "1");
        newer.last_dirty_timestamp = T0 + 10;
        newer.metadata.insert("v", "2");
        state.register(newer, at(0)).unwrap();
        let mut older = instance("a", "1");
        older.last_dirty_timestamp = T0;
        assert_eq!(state.register(older, at(1)).unwrap().metadata.get("v"), Some("2"));
    }

    #[test]
    fn heartbeat_404_rules() {
        let mut state = RegistryState::new(RULES);
        assert_eq!(state.renew("A", "1", None, at(0)), Err(LeaseError::NoLease));
        state.register(instance("a", "1"), at(0)).unwrap();
        let version = state.version();
        assert_eq!(state.renew("A", "1", None, at(1)), Ok(()));
        assert_eq!(state.version(), version, "a heartbeat that changes nothing is no change");
        assert_eq!(state.instance("A", "1").map(|i| i.lease_info.last_renewal_timestamp), Some(T0 + 1));
        assert_eq!(state.renew("A", "1", Some(T0), at(2)), Ok(()));
        assert_eq!(state.renew("A", "1", Some(T0 + 100), at(3)), Err(LeaseError::NewerOnClient));
        state.delete_status_override("A", "1", Status::Unknown, None, at(4)).unwrap();
        assert_eq!(state.renew("A", "1", None, at(5)), Err(LeaseError::UnknownStatus));
    }

    #[test]
    fn override_put_and_delete() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), at(0)).unwrap();
        assert_eq!(state.set_status_override("A", "2", Status::Down, None, at(0)), Err(LeaseError::NoLease));
        state.set_status_override("A", "1", Status::OutOfService, Some(T0 + 50), at(1)).unwrap();
        let i = state.instance("A", "1").unwrap();
        assert_eq!((i.status, i.overridden_status, i.action_type), (Status::OutOfService, Status::OutOfService, Some(ActionType::Modified)));
        assert_eq!((i.last_dirty_timestamp, i.lease_info.last_renewal_timestamp), (T0 + 50, T0 + 1));
        // The override survives heartbeats.
        state.renew("A", "1", None, at(2)).unwrap();
        assert_eq!(state.instance("A", "1").map(|i| i.status), Some(Status::OutOfService));
        state.delete_status_override("A", "1", Status::Up, None, at(3)).unwrap();
        let i = state.instance("A", "1").unwrap();
        assert_eq!((i.status, i.overridden_status), (Status::Up, Status::Unknown));
    }

    #[test]
    fn metadata_merges_and_marks_dirty() {
        let mut state = RegistryState::new(RULES);
        let mut i = instance("a", "1");
        i.metadata.insert("keep", "1");
        state.register(i, at(0)).unwrap();
        state.update_metadata("A", "1", &[("new".into(), "2".into()), ("keep".into(), "3".into())], at(7)).unwrap();
        let i = state.instance("A", "1").unwrap();
        assert_eq!(i.metadata.iter().collect::<Vec<_>>(), vec![("keep", "3"), ("new", "2")]);
        assert_eq!(i.last_dirty_timestamp, T0 + 7);
        assert_eq!(state.update_metadata("A", "9", &[], at(0)), Err(MetadataUpdateError::Lease(LeaseError::NoLease)));
    }

    #[test]
    fn metadata_beyond_the_limits_is_refused_whole() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), at(0)).unwrap();
        let version = state.version();
        let many: Vec<(String, String)> = (0..=Metadata::MAX_KEYS).map(|n| (format!("k{n}"), "v".to_owned())).collect();
        assert_eq!(state.update_metadata("A", "1", &many, at(1)), Err(MetadataUpdateError::TooLarge(MetadataTooLarge { keys: 257, bytes: many.iter().map(|(k, v)| k.len() + v.len()).sum() })));
        let big = [("k".to_owned(), "v".repeat(Metadata::MAX_BYTES))];
        assert!(matches!(state.update_metadata("A", "1", &big, at(1)), Err(MetadataUpdateError::TooLarge(_))));
        assert_eq!(state.version(), version);
        assert!(state.instance("A", "1").unwrap().metadata.is_empty(), "nothing of a refused update is kept");
        let fits: Vec<(String, String)> = many[..Metadata::MAX_KEYS].to_vec();
        assert_eq!(state.update_metadata("A", "1", &fits, at(2)), Ok(()));
    }

    #[test]
    fn changes_that_change_nothing_are_no_change() {
        let mut state = RegistryState::new(RULES);
        let mut i = instance("a", "1");
        i.metadata.insert("k", "v");
        state.register(i, at(0)).unwrap();
        state.set_status_override("A", "1", Status::OutOfService, None, at(1)).unwrap();
        let (version, delta) = (state.version(), state.delta(at(1)));
        state.update_metadata("A", "1", &[], at(2)).unwrap();
        state.update_metadata("A", "1", &[("k".into(), "v".into())], at(3)).unwrap();
        state.set_status_override("A", "1", Status::OutOfService, None, at(4)).unwrap();
        assert_eq!(state.version(), version, "no snapshot to publish");
        assert_eq!(state.delta(at(4)).applications, delta.applications, "no delta entry");
        assert_eq!(state.instance("A", "1").map(|i| i.lease_info.last_renewal_timestamp), Some(T0 + 4), "the lease was renewed all the same");
        assert!(state.evict(at(4 + 3_000)).evicted.is_empty(), "the renewed lease runs 3 s from then");
        // The same override removed twice: the second removal changes nothing.
        state.delete_status_override("A", "1", Status::Up, None, at(5)).unwrap();
        let version = state.version();
        state.delete_status_override("A", "1", Status::Up, None, at(6)).unwrap();
        assert_eq!(state.version(), version);
    }

    #[test]
    fn snapshots_share_instances() {
        let mut state = RegistryState::new(RULES);
        for n in 0..3 {
            state.register(instance("a", &n.to_string()), at(0)).unwrap();
        }
        let before = state.full();
        state.set_status_override("A", "1", Status::Down, None, at(1)).unwrap();
        state.renew("A", "2", None, at(1)).unwrap();
        let after = state.full();
        let (old, new) = (&before.applications[0].instances, &after.applications[0].instances);
        assert!(Arc::ptr_eq(&old[0], &new[0]), "an unchanged instance is not copied");
        assert!(!Arc::ptr_eq(&old[1], &new[1]) && !Arc::ptr_eq(&old[2], &new[2]));
        assert_eq!((old[1].status, new[1].status), (Status::Up, Status::Down), "an older snapshot keeps what it showed");
        assert_eq!(old[2].lease_info.last_renewal_timestamp, T0);
    }

    #[test]
    fn registrations_stop_at_max_instances() {
        let mut state = RegistryState::new(Rules { max_instances: 2, ..RULES });
        state.register(instance("a", "1"), at(0)).unwrap();
        state.register(instance("b", "2"), at(0)).unwrap();
        let version = state.version();
        assert_eq!(state.register(instance("a", "3"), at(1)), Err(RegistryFull { max: 2 }));
        assert_eq!((state.version(), state.size()), (version, 2), "a refused registration changes nothing");
        assert!(state.register(instance("a", "1"), at(2)).is_ok(), "a registered instance may register again");
        state.cancel("B", "2", at(3)).unwrap();
        assert!(state.register(instance("a", "3"), at(4)).is_ok());
    }

    #[test]
    fn leases_expire_at_their_duration_and_eviction_is_capped() {
        let mut state = RegistryState::new(RULES);
        for n in 0..10 {
            state.register(instance("a", &n.to_string()), at(0)).unwrap();
        }
        state.renew("A", "9", None, at(2_000)).unwrap();
        assert!(state.evict(at(3_000)).evicted.is_empty(), "not expired at exactly the duration");
        // 9 expired, but one run evicts at most 10 - (int)(10 × 0.85) = 2, oldest first.
        assert_eq!(state.evict(at(3_001)).evicted.len(), 2);
        assert_eq!(state.size(), 8);
        while !state.evict(at(3_002)).evicted.is_empty() {}
        assert_eq!(ids(&state), vec!["9"]);
        assert_eq!(state.evict(at(5_001)).evicted.len(), 1);
        assert_eq!(state.size(), 0);
        assert_eq!(state.full().apps_hashcode, "");
    }

    #[test]
    fn leases_follow_the_monotonic_clock_not_the_wall_clock() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), Now { mono: 0, wall: T0 }).unwrap();
        // NTP steps the wall clock an hour forward: the lease (3 s) has not run out.
        let jumped = Now { mono: 1_000, wall: T0 + 3_600_000 };
        assert!(state.evict(jumped).evicted.is_empty());
        // ...and an hour back: the heartbeat's timestamp says so, the lease still runs 3 s.
        state.renew("A", "1", None, Now { mono: 2_000, wall: T0 - 3_600_000 }).unwrap();
        assert_eq!(state.instance("A", "1").map(|i| i.lease_info.last_renewal_timestamp), Some(T0 - 3_600_000));
        assert!(state.evict(Now { mono: 5_000, wall: T0 + 7_200_000 }).evicted.is_empty());
        assert_eq!(evicted_ids(&state.evict(Now { mono: 5_001, wall: T0 - 7_200_000 })), vec!["1"]);
    }

    #[test]
    fn self_preservation_stops_expiry_when_renewals_drop() {
        let mut state = RegistryState::new(Rules { self_preservation: true, ..RULES });
        state.register(instance("a", "1"), at(0)).unwrap();
        state.register(instance("a", "2"), at(0)).unwrap();
        // Expected 2 clients → threshold (int)(2 × 2 × 0.85) = 3 renewals a minute.
        for n in 1..=3 {
            state.renew("A", "1", None, at(n * 1_000)).unwrap();
        }
        assert!(!state.expiry_enabled(at(3_000)));
        let held = state.evict(at(10_000));
        assert!(held.evicted.is_empty(), "3 renewals is not above the threshold");
        assert_eq!(held.held, 2, "the expired leases self-preservation keeps are reported");
        state.renew("A", "1", None, at(4_000)).unwrap();
        // 4 renewals in the last minute: expiry resumes and the silent instance goes.
        assert_eq!(evicted_ids(&state.evict(at(5_000))), vec!["2"]);
        // A minute without renewals: instance 1 expired, but self-preservation holds it, because
        // the evicted instance is still expected to renew (as in Java).
        let held = state.evict(at(70_000));
        assert_eq!((held.evicted.len(), held.held), (0, 1));
        assert_eq!(ids(&state), vec!["1"]);
    }

    #[test]
    fn evictions_keep_expected_renewals_and_cancellations_drop_them() {
        let mut state = RegistryState::new(RULES);
        for n in 0..4 {
            state.register(instance("a", &n.to_string()), at(0)).unwrap();
        }
        state.register(instance("a", "0"), at(0)).unwrap();
        assert_eq!(state.expected_clients, 4, "registering again expects no more renewals");
        state.cancel("A", "0", at(1)).unwrap();
        assert_eq!(state.expected_clients, 3);
        assert_eq!(state.evict(at(3_001)).evicted.len(), 1);
        assert_eq!(state.expected_clients, 3, "Java's evict leaves the expected renewals alone");
        assert_eq!(state.renewals(at(3_001)).0, lease::renews_threshold(3, 0.85));
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
        let mut ms = 0;
        type Step = Box<dyn Fn(&mut RegistryState, Now)>;
        let steps: Vec<Step> = vec![
            Box::new(|s, t| drop(s.register(instance("a", "1"), t).unwrap())),
            Box::new(|s, t| drop(s.register(instance("b", "2"), t).unwrap())),
            Box::new(|s, t| s.set_status_override("A", "1", Status::OutOfService, None, t).unwrap()),
            Box::new(|s, t| drop(s.register(instance("a", "3"), t).unwrap())),
            Box::new(|s, t| s.cancel("B", "2", t).unwrap()),
            Box::new(|s, t| s.delete_status_override("A", "1", Status::Down, None, t).unwrap()),
            Box::new(|s, t| drop(s.register(instance("b", "2"), t).unwrap())),
            Box::new(|s, t| s.cancel("A", "3", t).unwrap()),
        ];
        for step in steps {
            ms += 1_000;
            step(&mut state, at(ms));
            let delta = state.delta(at(ms));
            // Every change is in several consecutive deltas: applying one twice changes nothing.
            apply_delta(&mut copy, &delta);
            apply_delta(&mut copy, &delta);
            let copied = Applications { applications: vec![Application { name: String::new(), instances: copy.values().cloned().map(Arc::new).collect() }], ..Applications::default() };
            assert_eq!(copied.compute_hash_code(), delta.apps_hashcode);
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
        state.register(i, at(0)).unwrap();
        state.register(instance("b", "2"), at(0)).unwrap();
        assert!(state.application("A").is_some() && state.application("C").is_none());
        assert_eq!(state.instance_by_id("2").map(|i| i.app.clone()), Some("B".to_owned()));
        let vip = state.by_vip("alias", false);
        assert_eq!((vip.instances().count(), vip.apps_hashcode.as_str()), (1, "UP_1_"));
        assert_eq!(state.by_vip("secure-svc", true).instances().count(), 1);
        assert_eq!(state.by_vip("secure-svc", false).instances().count(), 0);
    }

    #[test]
    fn resume_keeps_renewals_and_overrides() {
        let mut state = RegistryState::new(RULES);
        state.register(instance("a", "1"), at(0)).unwrap();
        state.set_status_override("A", "1", Status::OutOfService, None, at(1_000)).unwrap();
        // The restarted registry's monotonic clock starts again from 0.
        let restart = Now { mono: 0, wall: T0 + 2_000 };
        let mut resumed = RegistryState::resume(state.full(), RULES, restart);
        assert_eq!(resumed.full(), state.full());
        assert_eq!(resumed.register(instance("a", "1"), Now { mono: 500, wall: T0 + 2_500 }).unwrap().status, Status::OutOfService, "override survives");
        let mut resumed = RegistryState::resume(state.full(), RULES, restart);
        assert!(resumed.evict(Now { mono: 2_000, wall: T0 + 4_000 }).evicted.is_empty());
        assert_eq!(resumed.evict(Now { mono: 2_001, wall: T0 + 4_001 }).evicted.len(), 1, "the lease ran out 3 s after its last renewal before the restart");
        // A lease that ran out while the registry was down goes at the first eviction.
        let mut resumed = RegistryState::resume(state.full(), RULES, Now { mono: 0, wall: T0 + 60_000 });
        assert_eq!(resumed.evict(Now { mono: 1, wall: T0 + 60_001 }).evicted.len(), 1);
    }
}
