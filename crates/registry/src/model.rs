//! The Eureka data model: [`Instance`], [`Application`], [`Applications`].
//!
//! These types hold what the wire formats carry (EUREKA.md, "Instance JSON"); [`crate::codec`] reads
//! and writes them. They are plain data: the registry's rules (leases, status precedence) live in
//! [`crate::registry`]. The gateway turns an [`Instance`] into routes from its [`Instance::app`],
//! [`Instance::instance_id`], [`Instance::host_name`]/[`Instance::ip_addr`], ports, [`Instance::status`]
//! and [`Instance::metadata`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

/// An instance's status as Eureka reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Ready to receive traffic: the only status the gateway routes to.
    Up,
    /// Failed its health check.
    Down,
    /// Still starting.
    Starting,
    /// Taken out of traffic by an operator (the usual status override).
    OutOfService,
    /// Not known. Also the value of an absent override.
    Unknown,
}

impl Status {
    /// The wire spelling (`UP`, `OUT_OF_SERVICE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Down => "DOWN",
            Status::Starting => "STARTING",
            Status::OutOfService => "OUT_OF_SERVICE",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// Parses an exact wire spelling; `None` for anything else. The status override endpoint uses it
    /// because Java answers 500 to an unknown value there.
    pub fn parse_strict(text: &str) -> Option<Status> {
        match text {
            "UP" => Some(Status::Up),
            "DOWN" => Some(Status::Down),
            "STARTING" => Some(Status::Starting),
            "OUT_OF_SERVICE" => Some(Status::OutOfService),
            "UNKNOWN" => Some(Status::Unknown),
            _ => None,
        }
    }

    /// Parses a status the way Java's `InstanceStatus.toEnum` does: case-insensitive, anything
    /// unrecognised reads as [`Status::Unknown`].
    pub fn parse_lenient(text: &str) -> Status {
        Status::parse_strict(&text.trim().to_ascii_uppercase()).unwrap_or(Status::Unknown)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to an instance, as reported in deltas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionType {
    /// Registered (or registered again).
    Added,
    /// Status, override or metadata changed.
    Modified,
    /// Cancelled or evicted.
    Deleted,
}

impl ActionType {
    /// The wire spelling (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::Added => "ADDED",
            ActionType::Modified => "MODIFIED",
            ActionType::Deleted => "DELETED",
        }
    }

    /// Parses the wire spelling, case-insensitively; `None` for anything else.
    pub fn parse(text: &str) -> Option<ActionType> {
        match text.trim().to_ascii_uppercase().as_str() {
            "ADDED" => Some(ActionType::Added),
            "MODIFIED" => Some(ActionType::Modified),
            "DELETED" => Some(ActionType::Deleted),
            _ => None,
        }
    }
}

/// A port and whether it is in use (`{"$":8080,"@enabled":"true"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortInfo {
    /// The port number.
    pub port: u16,
    /// Whether clients may use it.
    pub enabled: bool,
}

/// Eureka's `dataCenterInfo`: where the instance runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCenterInfo {
    /// The Java class name (`com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo` or `...AmazonInfo`).
    pub class: String,
    /// `MyOwn`, `Amazon` or `Netflix`.
    pub name: String,
    /// The AmazonInfo metadata (`instance-id`, `public-hostname`, ...), when sent.
    pub metadata: Option<Metadata>,
}

impl DataCenterInfo {
    /// The class Java writes for a `MyOwn` data center.
    pub const DEFAULT_CLASS: &'static str = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";

    /// A `MyOwn` data center, the one every non-AWS client sends.
    pub fn my_own() -> DataCenterInfo {
        DataCenterInfo { class: DataCenterInfo::DEFAULT_CLASS.to_owned(), name: "MyOwn".to_owned(), metadata: None }
    }
}

/// Eureka's `leaseInfo`. Durations are seconds, timestamps milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseInfo {
    /// How often the client promises to heartbeat.
    pub renewal_interval_secs: u32,
    /// How long after its last heartbeat the instance expires; 0 means the default (90 s).
    pub duration_secs: u32,
    /// When the current lease was created.
    pub registration_timestamp: u64,
    /// When the last heartbeat (or registration) was received.
    pub last_renewal_timestamp: u64,
    /// When the lease was cancelled or evicted; 0 while it lives.
    pub eviction_timestamp: u64,
    /// When the instance was first seen UP.
    pub service_up_timestamp: u64,
}

impl LeaseInfo {
    /// Eureka's default heartbeat interval, seconds.
    pub const DEFAULT_RENEWAL_INTERVAL_SECS: u32 = 30;
    /// Eureka's default lease duration, seconds.
    pub const DEFAULT_DURATION_SECS: u32 = 90;

    /// The lease duration in milliseconds, with 0 read as the 90 s default (as Java's `Lease` does).
    pub fn duration_ms(&self) -> u64 {
        let secs = if self.duration_secs > 0 { self.duration_secs } else { LeaseInfo::DEFAULT_DURATION_SECS };
        u64::from(secs) * 1000
    }
}

impl Default for LeaseInfo {
    fn default() -> Self {
        LeaseInfo {
            renewal_interval_secs: LeaseInfo::DEFAULT_RENEWAL_INTERVAL_SECS,
            duration_secs: LeaseInfo::DEFAULT_DURATION_SECS,
            registration_timestamp: 0,
            last_renewal_timestamp: 0,
            eviction_timestamp: 0,
            service_up_timestamp: 0,
        }
    }
}

/// Instance metadata: string keys and values in insertion order (the order the client sent them).
///
/// Metadata is usually small (a handful of keys), so it is a vector, which keeps the order for free;
/// past 16 keys a hash index is added, so reading a hostile document with
/// thousands of keys stays linear. The registry refuses metadata beyond [`Metadata::MAX_KEYS`] keys
/// or [`Metadata::MAX_BYTES`] bytes ([`Metadata::check_size`]).
#[derive(Clone, Default)]
pub struct Metadata {
    entries: Vec<(String, String)>,
    /// Position of each key in `entries`, once there are [`Metadata::INDEX_FROM`] of them.
    index: Option<HashMap<String, usize>>,
}

impl Metadata {
    /// Most keys one instance's metadata may hold in the registry.
    pub const MAX_KEYS: usize = 256;
    /// Most bytes (keys and values, UTF-8) one instance's metadata may hold in the registry.
    pub const MAX_BYTES: usize = 64 * 1024;
    /// From this many keys on, lookups go through a hash index instead of a scan.
    const INDEX_FROM: usize = 16;

    /// An empty map.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.position(key).map(|i| self.entries[i].1.as_str())
    }

    /// Sets `key`; an existing key keeps its position.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        if let Some(i) = self.position(&key) {
            self.entries[i].1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.entries.len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() >= Metadata::INDEX_FROM {
            self.index = Some(self.entries.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect());
        }
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of all keys and values (UTF-8), the measure [`Metadata::MAX_BYTES`] limits.
    pub fn byte_size(&self) -> usize {
        self.entries.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Checks the registry's limits: at most [`Metadata::MAX_KEYS`] keys and [`Metadata::MAX_BYTES`]
    /// bytes. Eureka itself has no limit; wsgate has one because every key is copied into every
    /// snapshot, delta and fetch.
    ///
    /// # Errors
    /// [`MetadataTooLarge`] with the actual size.
    pub fn check_size(&self) -> Result<(), MetadataTooLarge> {
        let (keys, bytes) = (self.len(), self.byte_size());
        if keys > Metadata::MAX_KEYS || bytes > Metadata::MAX_BYTES {
            return Err(MetadataTooLarge { keys, bytes });
        }
        Ok(())
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Metadata) -> bool {
        self.entries == other.entries
    }
}

impl Eq for Metadata {}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Metadata beyond the registry's limits ([`Metadata::check_size`]); answered 400 with this
/// `Display`, worded like Java's registration errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("Metadata too large, expecting at most {max_keys} keys and {max_bytes} bytes but was {keys} keys and {bytes} bytes", max_keys = Metadata::MAX_KEYS, max_bytes = Metadata::MAX_BYTES)]
pub struct MetadataTooLarge {
    /// Keys of the refused metadata.
    pub keys: usize,
    /// Bytes of its keys and values.
    pub bytes: usize,
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut metadata = Metadata::new();
        for (k, v) in iter {
            metadata.insert(k, v);
        }
        metadata
    }
}

/// One registered instance of an application, with every field of Eureka's instance document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The id as sent; may be empty on input, see [`Instance::id`]. The registry stores the resolved id.
    pub instance_id: String,
    /// Host name clients connect to (often the IP address).
    pub host_name: String,
    /// Application name, upper case (Java upper-cases it on input, and so does the codec).
    pub app: String,
    /// IP address.
    pub ip_addr: String,
    /// Current status.
    pub status: Status,
    /// Status override set through `PUT .../status`; [`Status::Unknown`] when none.
    pub overridden_status: Status,
    /// Plain port (default 7001, enabled).
    pub port: PortInfo,
    /// TLS port (default 7002, disabled).
    pub secure_port: PortInfo,
    /// Country id (1 by default, unused).
    pub country_id: i64,
    /// The data center; `None` only on input that lacked it (registration rejects that).
    pub data_center_info: Option<DataCenterInfo>,
    /// Lease durations and timestamps.
    pub lease_info: LeaseInfo,
    /// Free-form metadata (wsgate reads its routes from it).
    pub metadata: Metadata,
    /// Home page URL.
    pub home_page_url: Option<String>,
    /// Status page URL.
    pub status_page_url: Option<String>,
    /// Health check URL.
    pub health_check_url: Option<String>,
    /// TLS health check URL.
    pub secure_health_check_url: Option<String>,
    /// Comma-separated virtual host names for plain traffic.
    pub vip_address: Option<String>,
    /// Comma-separated virtual host names for TLS traffic.
    pub secure_vip_address: Option<String>,
    /// Whether this instance is itself a discovery server.
    pub is_coordinating_discovery_server: bool,
    /// When the server last changed this record, ms.
    pub last_updated_timestamp: u64,
    /// When the client last changed this record, ms (0 on input means "now").
    pub last_dirty_timestamp: u64,
    /// The last action on this record (set by the registry; deltas carry it).
    pub action_type: Option<ActionType>,
}

impl Instance {
    /// An instance with Eureka's defaults (status UP, override UNKNOWN, port 7001 enabled, securePort
    /// 7002 disabled, country 1, lease 30/90) and the given identity, in a `MyOwn` data center.
    pub fn new(app: &str, instance_id: &str, host_name: &str, ip_addr: &str) -> Instance {
        Instance {
            instance_id: instance_id.to_owned(),
            host_name: host_name.to_owned(),
            app: app.to_ascii_uppercase(),
            ip_addr: ip_addr.to_owned(),
            status: Status::Up,
            overridden_status: Status::Unknown,
            port: PortInfo { port: 7001, enabled: true },
            secure_port: PortInfo { port: 7002, enabled: false },
            country_id: 1,
            data_center_info: Some(DataCenterInfo::my_own()),
            lease_info: LeaseInfo::default(),
            metadata: Metadata::new(),
            home_page_url: None,
            status_page_url: None,
            health_check_url: None,
            secure_health_check_url: None,
            vip_address: None,
            secure_vip_address: None,
            is_coordinating_discovery_server: false,
            last_updated_timestamp: 0,
            last_dirty_timestamp: 0,
            action_type: None,
        }
    }

    /// The instance's id by Java's rule: `instanceId` if not blank, else the AmazonInfo
    /// `instance-id`, else `hostName`. Empty when all three are.
    pub fn id(&self) -> &str {
        if !self.instance_id.trim().is_empty() {
            return &self.instance_id;
        }
        let amazon = self.data_center_info.as_ref().and_then(|dc| dc.metadata.as_ref()).and_then(|m| m.get("instance-id"));
        match amazon {
            Some(id) if !id.trim().is_empty() => id,
            _ => &self.host_name,
        }
    }

    /// Whether `vip` is one of the comma-separated names of [`Instance::vip_address`] (or of
    /// [`Instance::secure_vip_address`] when `secure`). Eureka compares VIPs case-insensitively.
    pub fn has_vip(&self, vip: &str, secure: bool) -> bool {
        let list = if secure { &self.secure_vip_address } else { &self.vip_address };
        list.as_deref().is_some_and(|list| list.split(',').any(|v| v.trim().eq_ignore_ascii_case(vip)))
    }
}

/// All instances of one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Application name, upper case.
    pub name: String,
    /// Its instances, sorted by id. Shared (`Arc`) so that the registry's snapshots, deltas and
    /// leases hold one copy of an instance between them, and publishing a snapshot after a change
    /// copies pointers, not instances.
    pub instances: Vec<Arc<Instance>>,
}

/// A registry document: every application (full fetch) or the recent changes (delta).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applications {
    /// `versions__delta`: a counter that grows with every change of the registry.
    pub versions_delta: u64,
    /// `apps__hashcode`: see [`apps_hash_code`]. In a delta it is the full registry's.
    pub apps_hashcode: String,
    /// The applications, sorted by name.
    pub applications: Vec<Application>,
}

impl Applications {
    /// Every instance, application by application.
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.applications.iter().flat_map(|app| app.instances.iter().map(|instance| &**instance))
    }

    /// The application called `name` (upper-cased before the lookup).
    pub fn application(&self, name: &str) -> Option<&Application> {
        let name = name.to_ascii_uppercase();
        self.applications.iter().find(|app| app.name == name)
    }

    /// The hash code of these applications (see [`apps_hash_code`]).
    pub fn compute_hash_code(&self) -> String {
        apps_hash_code(self.instances())
    }
}

/// Eureka's reconcile hash code: the instances counted by status, statuses sorted by name, each as
/// `STATUS_count_` (`DOWN_1_OUT_OF_SERVICE_2_UP_5_`); empty for no instances. A client compares it
/// with its own copy after applying a delta and fetches everything again on a mismatch.
pub fn apps_hash_code<'a>(instances: impl Iterator<Item = &'a Instance>) -> String {
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    for instance in instances {
        *counts.entry(instance.status.as_str()).or_default() += 1;
    }
    counts.iter().map(|(status, count)| format!("{status}_{count}_")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_code_sorts_statuses_by_name() {
        let mut instances = Vec::new();
        for (i, status) in [Status::Up, Status::OutOfService, Status::Up, Status::Down, Status::OutOfService].into_iter().enumerate() {
            let mut instance = Instance::new("demo", &format!("i{i}"), "h", "127.0.0.1");
            instance.status = status;
            instances.push(instance);
        }
        assert_eq!(apps_hash_code(instances.iter()), "DOWN_1_OUT_OF_SERVICE_2_UP_2_");
        assert_eq!(apps_hash_code(std::iter::empty()), "");
    }

    #[test]
    fn id_falls_back_to_amazon_then_host_name() {
        let mut instance = Instance::new("demo", "", "host-a", "10.0.0.1");
        assert_eq!(instance.id(), "host-a");
        instance.data_center_info = Some(DataCenterInfo {
            class: "com.netflix.appinfo.AmazonInfo".into(),
            name: "Amazon".into(),
            metadata: Some([("instance-id", "i-123")].into_iter().collect()),
        });
        assert_eq!(instance.id(), "i-123");
        instance.instance_id = "explicit".into();
        assert_eq!(instance.id(), "explicit");
    }

    #[test]
    fn statuses_parse_strictly_and_leniently() {
        assert_eq!(Status::parse_strict("OUT_OF_SERVICE"), Some(Status::OutOfService));
        assert_eq!(Status::parse_strict("up"), None);
        assert_eq!(Status::parse_lenient("up"), Status::Up);
        assert_eq!(Status::parse_lenient("SLEEPING"), Status::Unknown);
    }

    #[test]
    fn metadata_keeps_insertion_order_and_replaces_in_place() {
        let mut metadata = Metadata::new();
        metadata.insert("b", "1");
        metadata.insert("a", "2");
        metadata.insert("b", "3");
        assert_eq!(metadata.iter().collect::<Vec<_>>(), vec![("b", "3"), ("a", "2")]);
    }

    #[test]
    fn large_metadata_is_indexed_and_stays_ordered() {
        let mut metadata = Metadata::new();
        for n in 0..1_000 {
            metadata.insert(format!("k{n}"), "a");
        }
        metadata.insert("k3", "b");
        metadata.insert("k999", "c");
        assert!(metadata.index.is_some());
        assert_eq!((metadata.len(), metadata.get("k3"), metadata.get("k999"), metadata.get("k1000")), (1_000, Some("b"), Some("c"), None));
        assert_eq!(metadata.iter().nth(3), Some(("k3", "b")));
        let small: Metadata = metadata.iter().take(3).collect();
        assert!(small.index.is_none());
        assert_eq!(small, metadata.iter().take(3).collect::<Metadata>());
        assert_eq!(format!("{small:?}"), r#"{"k0": "a", "k1": "a", "k2": "a"}"#);
    }

    #[test]
    fn metadata_size_limits() {
        let at_limit: Metadata = (0..Metadata::MAX_KEYS).map(|n| (format!("{n:03}"), "")).collect();
        assert_eq!(at_limit.check_size(), Ok(()));
        let mut over = at_limit.clone();
        over.insert("one more", "");
        assert_eq!(over.check_size(), Err(MetadataTooLarge { keys: 257, bytes: 256 * 3 + 8 }));
        let heavy: Metadata = [("k", "v".repeat(Metadata::MAX_BYTES - 1))].into_iter().collect();
        assert_eq!(heavy.check_size(), Ok(()));
        let heavier: Metadata = [("k", "v".repeat(Metadata::MAX_BYTES))].into_iter().collect();
        assert!(heavier.check_size().is_err());
    }

    #[test]
    fn vip_lists_are_comma_split() {
        let mut instance = Instance::new("demo", "i", "h", "127.0.0.1");
        instance.vip_address = Some("demo, demo-alias".into());
        assert!(instance.has_vip("DEMO-alias", false));
        assert!(!instance.has_vip("demo", true));
    }
}
