//! The registry: leases under Eureka's rules, change notification, and the state file.
//!
//! [`Registry`] is a cheap-to-clone handle over the pure `state` core. It reads the clocks (a
//! monotonic one for leases, the wall clock for timestamps in documents), and after every change
//! that clients can see (registration, cancellation, eviction, status or metadata change; not a
//! plain heartbeat, nor a change that changes nothing) it publishes a new immutable
//! [`Applications`] snapshot on a `watch` channel, so the gateway rebuilds its routes at once.
//! Snapshots share their instances with the registry (`Arc<Instance>`), so publishing one costs a
//! pointer per instance, not a copy. [`Registry::run_maintenance`] evicts expired leases and writes
//! the state file.

mod delta;
mod lease;
mod state;
mod state_file;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{watch, Notify};

use crate::config::RegistryConfig;
use crate::model::{Application, Applications, Instance, Status};
pub use state::{LeaseError, MetadataUpdateError, RegistryFull};
pub use state_file::StateFileError;
use state::{Now, RegistryState, Rules};

/// How long after a change the state file is written, so a burst of registrations costs one write.
const SAVE_DEBOUNCE: Duration = Duration::from_millis(200);

/// How often the state file is refreshed while only heartbeats arrive, so a restart after a crash
/// resumes leases at most this much older than they were.
const RENEWAL_SAVE_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest eviction interval [`Registry::run_maintenance`] uses (a zero interval is raised to it).
const MIN_EVICTION_INTERVAL: Duration = Duration::from_millis(1);

/// Milliseconds since the Unix epoch (0 for a clock before 1970). Only written into documents:
/// leases run on the monotonic clock.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The embedded Eureka registry. Clones share one registry.
#[derive(Clone)]
pub struct Registry {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<RegistryState>,
    /// Zero of the monotonic clock the leases run on.
    origin: Instant,
    snapshots: watch::Sender<Arc<Applications>>,
    /// Set on every change; the maintenance task writes the state file after it.
    changed: Notify,
    /// Set by heartbeats, which move lease timestamps without being changes.
    renewed: AtomicBool,
    /// One state-file write at a time, each of the registry as it is when the write starts, so
    /// an older state never lands after a newer one.
    saving: tokio::sync::Mutex<()>,
    /// Expired leases self-preservation held at the last eviction run, to warn once per change.
    held: AtomicUsize,
    config: RegistryConfig,
}

impl Registry {
    /// A registry with `config`, resumed from `config.state_file` when that file exists.
    ///
    /// # Errors
    /// [`StateFileError`] when the state file exists but cannot be read or is corrupt; the caller
    /// decides whether to start empty (`Registry::new` with the state file moved away) or stop.
    pub fn new(config: RegistryConfig) -> Result<Registry, StateFileError> {
        let rules = Rules {
            self_preservation: config.self_preservation,
            renewal_percent_threshold: config.renewal_percent_threshold,
            max_instances: config.max_instances,
        };
        let origin = Instant::now();
        let state = match config.state_file.as_deref().map(state_file::load).transpose()?.flatten() {
            Some(saved) => RegistryState::resume(saved, rules, Now { mono: 0, wall: now_ms() }),
            None => RegistryState::new(rules),
        };
        let (snapshots, _) = watch::channel(Arc::new(state.full()));
        let shared = Shared {
            state: Mutex::new(state),
            origin,
            snapshots,
            changed: Notify::new(),
            renewed: AtomicBool::new(false),
            saving: tokio::sync::Mutex::new(()),
            held: AtomicUsize::new(0),
            config,
        };
        Ok(Registry { shared: Arc::new(shared) })
    }

    /// The configuration the registry was built with.
    pub fn config(&self) -> &RegistryConfig {
        &self.shared.config
    }

    /// Snapshots of the whole registry, a new one after every change. The gateway builds routes
    /// from them. A snapshot's `lastRenewalTimestamp`s are those of its last change (heartbeats
    /// alone publish nothing).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Applications>> {
        self.shared.snapshots.subscribe()
    }

    /// The current snapshot (see [`Registry::subscribe`]).
    pub fn snapshot(&self) -> Arc<Applications> {
        self.shared.snapshots.borrow().clone()
    }

    fn lock(&self) -> MutexGuard<'_, RegistryState> {
        // No code panics while holding the lock, but a poisoned registry is still a consistent one:
        // every operation completes its changes before anything can fail.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The time now, on both clocks. Read under the state lock, so operations see it grow in the
    /// order they apply.
    fn now(&self) -> Now {
        let mono = u64::try_from(self.shared.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        Now { mono, wall: now_ms() }
    }

    /// Runs `operation` on the state at the current time and publishes a snapshot if it changed
    /// anything visible.
    fn update<T>(&self, operation: impl FnOnce(&mut RegistryState, Now) -> T) -> T {
        let mut state = self.lock();
        let before = state.version();
        let result = operation(&mut state, self.now());
        if state.version() != before {
            // Published under the lock, so snapshots go out in the order of the changes.
            self.shared.snapshots.send_replace(Arc::new(state.full()));
            self.shared.changed.notify_one();
        }
        result
    }

    /// Registers an instance (POST `/apps/{APP}`), applying Eureka's status precedence. The caller
    /// has checked it with [`crate::codec::validate_registration`]. Returns the stored copy.
    ///
    /// # Errors
    /// [`RegistryFull`] when the instance is not registered yet and the registry holds
    /// [`RegistryConfig::max_instances`] instances (the API answers 503).
    pub fn register(&self, instance: Instance) -> Result<Arc<Instance>, RegistryFull> {
        let stored = self.update(|state, now| state.register(instance, now));
        match &stored {
            Ok(stored) => tracing::info!(app = %stored.app, instance = %stored.instance_id, status = %stored.status, "registered"),
            Err(full) => tracing::warn!(max = full.max, "registration refused: the registry is full (max_instances)"),
        }
        stored
    }

    /// A heartbeat (PUT `/apps/{APP}/{ID}`); `last_dirty` is the client's `lastDirtyTimestamp`.
    ///
    /// # Errors
    /// [`LeaseError`] (answered 404, so the client registers again).
    pub fn renew(&self, app: &str, id: &str, last_dirty: Option<u64>) -> Result<(), LeaseError> {
        let result = self.update(|state, now| state.renew(app, id, last_dirty, now));
        self.shared.renewed.store(true, Ordering::Relaxed);
        result
    }

    /// Cancels a lease (DELETE `/apps/{APP}/{ID}`): the instance leaves at once.
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub fn cancel(&self, app: &str, id: &str) -> Result<(), LeaseError> {
        self.update(|state, now| state.cancel(app, id, now))?;
        tracing::info!(app, instance = id, "cancelled");
        Ok(())
    }

    /// Sets a status override (PUT `/apps/{APP}/{ID}/status?value=`). Overrides belong to one
    /// application's instance (Java keys them by id alone; see the registry's state module).
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub fn set_status_override(&self, app: &str, id: &str, status: Status, last_dirty: Option<u64>) -> Result<(), LeaseError> {
        self.update(|state, now| state.set_status_override(app, id, status, last_dirty, now))?;
        self.shared.renewed.store(true, Ordering::Relaxed);
        tracing::info!(app, instance = id, %status, "status override set");
        Ok(())
    }

    /// Removes a status override (DELETE `/apps/{APP}/{ID}/status`); the status becomes `status`.
    ///
    /// # Errors
    /// [`LeaseError::NoLease`].
    pub fn delete_status_override(&self, app: &str, id: &str, status: Status, last_dirty: Option<u64>) -> Result<(), LeaseError> {
        self.update(|state, now| state.delete_status_override(app, id, status, last_dirty, now))?;
        self.shared.renewed.store(true, Ordering::Relaxed);
        tracing::info!(app, instance = id, %status, "status override removed");
        Ok(())
    }

    /// Merges `pairs` into an instance's metadata (PUT `/apps/{APP}/{ID}/metadata`).
    ///
    /// # Errors
    /// [`MetadataUpdateError::Lease`] (404) without a lease, [`MetadataUpdateError::TooLarge`]
    /// (400) when the merged metadata would pass [`crate::Metadata::MAX_KEYS`] keys or
    /// [`crate::Metadata::MAX_BYTES`] bytes; nothing changes then.
    pub fn update_metadata(&self, app: &str, id: &str, pairs: &[(String, String)]) -> Result<(), MetadataUpdateError> {
        self.update(|state, now| state.update_metadata(app, id, pairs, now))?;
        self.shared.renewed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Evicts expired leases now (the maintenance task does it every `eviction_interval`).
    /// Returns how many instances left. Logs a warning when self-preservation keeps expired
    /// leases (once each time their number changes).
    pub fn evict_expired(&self) -> usize {
        let (eviction, (threshold, renews)) = self.update(|state, now| {
            let eviction = state.evict(now);
            (eviction, state.renewals(now))
        });
        for instance in &eviction.evicted {
            tracing::info!(app = %instance.app, instance = %instance.instance_id, "lease expired; evicted");
        }
        if self.shared.held.swap(eviction.held, Ordering::Relaxed) != eviction.held && eviction.held > 0 {
            tracing::warn!(
                expired = eviction.held,
                renewals_last_minute = renews,
                threshold,
                "self-preservation: expired leases are kept because renewals are not above the threshold \
                 (discovery.embedded.selfPreservation); their instances stay registered"
            );
        }
        eviction.evicted.len()
    }

    /// Every application, with current lease timestamps (`GET /apps`).
    pub fn full(&self) -> Applications {
        self.lock().full()
    }

    /// The changes of the last three minutes (`GET /apps/delta`).
    pub fn delta(&self) -> Applications {
        let state = self.lock();
        state.delta(self.now())
    }

    /// One application (name upper-cased); `None` when it has no instances.
    pub fn application(&self, app: &str) -> Option<Application> {
        self.lock().application(&app.to_ascii_uppercase())
    }

    /// One instance of an application (name upper-cased).
    pub fn instance(&self, app: &str, id: &str) -> Option<Instance> {
        self.lock().instance(&app.to_ascii_uppercase(), id).map(Arc::unwrap_or_clone)
    }

    /// The instance with this id, in whichever application (`GET /instances/{ID}`).
    pub fn instance_by_id(&self, id: &str) -> Option<Instance> {
        self.lock().instance_by_id(id).map(Arc::unwrap_or_clone)
    }

    /// The instances whose VIP (`secure`: secure VIP) list names `vip` (`GET /vips/{vip}`, `/svips/{svip}`).
    pub fn by_vip(&self, vip: &str, secure: bool) -> Applications {
        self.lock().by_vip(vip, secure)
    }

    /// Writes the state file now, if one is configured. Concurrent calls write one after the
    /// other, each the registry as it is when its turn comes.
    ///
    /// # Errors
    /// [`StateFileError::Write`].
    pub async fn save_state(&self) -> Result<(), StateFileError> {
        let Some(path) = self.shared.config.state_file.clone() else { return Ok(()) };
        let _turn = self.shared.saving.lock().await;
        self.shared.renewed.store(false, Ordering::Relaxed);
        let bytes = state_file::encode(&self.full());
        let target = path.clone();
        match tokio::task::spawn_blocking(move || state_file::store(&target, &bytes)).await {
            Ok(result) => result,
            // The blocking task panicked or was cancelled at runtime shutdown: nothing was written.
            Err(join) => Err(StateFileError::Write { path, source: std::io::Error::other(join) }),
        }
    }

    async fn save_logged(&self) {
        if let Err(error) = self.save_state().await {
            tracing::warn!(%error, "registry state not saved");
        }
    }

    /// Evicts expired leases every `eviction_interval` (at least 1 ms: a zero interval is raised
    /// to that rather than panicking) and keeps the state file current, until `shutdown`
    /// completes; then writes the state file one last time. [`crate::server::serve`] runs it; a
    /// caller serving the registry otherwise runs it beside.
    ///
    /// # Cancel safety
    /// Dropping the future stops maintenance without the final save.
    pub async fn run_maintenance(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut eviction = tokio::time::interval(self.shared.config.eviction_interval.max(MIN_EVICTION_INTERVAL));
        eviction.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewal_save = tokio::time::interval(RENEWAL_SAVE_INTERVAL);
        let persistent = self.shared.config.state_file.is_some();
        loop {
            // Shutdown first, so a stop is never delayed by pending work.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                _ = eviction.tick() => {
                    self.evict_expired();
                }
                () = self.shared.changed.notified(), if persistent => {
                    // Debounce, but let a shutdown cut it short (the final save follows).
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(SAVE_DEBOUNCE) => self.save_logged().await,
                    }
                }
                _ = renewal_save.tick(), if persistent => {
                    if self.shared.renewed.load(Ordering::Relaxed) {
                        self.save_logged().await;
                    }
                }
            }
        }
        if persistent {
            self.save_logged().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::state_file::tests::TempDir;
    use super::*;
    use crate::model::LeaseInfo;

    fn instance(app: &str, id: &str) -> Instance {
        let mut instance = Instance::new(app, id, "host", "127.0.0.1");
        instance.lease_info = LeaseInfo { renewal_interval_secs: 1, duration_secs: 1, ..LeaseInfo::default() };
        instance
    }

    #[tokio::test]
    async fn changes_publish_snapshots_and_heartbeats_do_not() {
        let registry = Registry::new(RegistryConfig::default()).unwrap();
        let mut snapshots = registry.subscribe();
        snapshots.mark_unchanged();
        registry.register(instance("a", "1")).unwrap();
        assert!(snapshots.has_changed().unwrap());
        assert_eq!(snapshots.borrow_and_update().instances().count(), 1);
        registry.renew("A", "1", None).unwrap();
        assert!(!snapshots.has_changed().unwrap(), "a heartbeat that changes nothing publishes nothing");
        registry.set_status_override("A", "1", Status::OutOfService, None).unwrap();
        assert_eq!(snapshots.borrow_and_update().instances().next().map(|i| i.status), Some(Status::OutOfService));
        registry.update_metadata("A", "1", &[("k".into(), "v".into())]).unwrap();
        assert_eq!(snapshots.borrow_and_update().instances().next().and_then(|i| i.metadata.get("k").map(str::to_owned)), Some("v".to_owned()));
        registry.cancel("A", "1").unwrap();
        assert_eq!(snapshots.borrow_and_update().instances().count(), 0);
        assert_eq!(registry.cancel("A", "1"), Err(LeaseError::NoLease));
        assert!(!snapshots.has_changed().unwrap(), "a failed operation publishes nothing");
    }

    #[tokio::test]
    async fn state_file_survives_a_restart_and_leases_resume() {
        let dir = TempDir::new();
        let config = RegistryConfig { state_file: Some(dir.0.join("state.json")), self_preservation: false, ..RegistryConfig::default() };
        let registry = Registry::new(config.clone()).unwrap();
        registry.register(instance("a", "1")).unwrap();
        registry.set_status_override("A", "1", Status::OutOfService, None).unwrap();
        registry.save_state().await.unwrap();
        let saved = registry.instance("A", "1").unwrap();

        let restarted = Registry::new(config).unwrap();
        assert_eq!(restarted.instance("A", "1"), Some(saved.clone()));
        assert_eq!(restarted.snapshot().instances().count(), 1, "the first snapshot holds the resumed registry");
        // The lease resumed with its old renewal time: without heartbeats it runs out.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while restarted.evict_expired() == 0 {
            assert!(std::time::Instant::now() < deadline, "the resumed lease never expired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(restarted.full().applications.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_saves_all_succeed() {
        let dir = TempDir::new();
        let path = dir.0.join("state.json");
        let registry = Registry::new(RegistryConfig { state_file: Some(path.clone()), ..RegistryConfig::default() }).unwrap();
        for n in 0..200 {
            let mut i = instance("a", &n.to_string());
            i.metadata.insert("pad", "x".repeat(1000));
            registry.register(i).unwrap();
        }
        let mut saves = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let registry = registry.clone();
            saves.spawn(async move { registry.save_state().await });
        }
        while let Some(saved) = saves.join_next().await {
            saved.unwrap().unwrap();
        }
        let restarted = Registry::new(RegistryConfig { state_file: Some(path), ..RegistryConfig::default() }).unwrap();
        assert_eq!(restarted.full().instances().count(), 200);
    }

    #[tokio::test]
    async fn a_corrupt_state_file_is_reported_not_ignored() {
        let dir = TempDir::new();
        let path = dir.0.join("state.json");
        std::fs::write(&path, b"{not json").unwrap();
        let config = RegistryConfig { state_file: Some(path), ..RegistryConfig::default() };
        assert!(matches!(Registry::new(config), Err(StateFileError::Corrupt { .. })));
    }

    #[tokio::test]
    async fn maintenance_saves_after_changes_and_on_shutdown() {
        let dir = TempDir::new();
        let path = dir.0.join("state.json");
        let config = RegistryConfig { state_file: Some(path.clone()), ..RegistryConfig::default() };
        let registry = Registry::new(config).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let registry = registry.clone();
            async move { registry.run_maintenance(async { drop(stopped.await) }).await }
        });
        registry.register(instance("a", "1")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read(&path).is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains("\"A\"")) {
            assert!(std::time::Instant::now() < deadline, "state file not written after a change");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        registry.register(instance("b", "2")).unwrap();
        let _ = stop.send(());
        task.await.unwrap();
        let saved = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        assert!(saved.contains("\"B\""), "final save on shutdown: {saved}");
    }
}
