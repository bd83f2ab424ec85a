//! The service directory: which services exist, their instances and metadata.
//!
//! Several sources feed it (static config today; the embedded registry and external Eureka clusters
//! plug in as further [`Source`]s). Each update rebuilds the [`RouteTable`] and publishes it on a
//! `watch` channel, so new sessions see the change at once and open sessions are not touched.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::route::RouteTable;

/// A service's identifier. Eureka upper-cases application names, so it matches case-insensitively;
/// the spelling it was registered with is kept for display.
#[derive(Debug, Clone)]
pub struct ServiceId {
    display: Arc<str>,
    key: String,
}

impl ServiceId {
    /// A service id as written.
    pub fn new(id: &str) -> ServiceId {
        ServiceId { display: id.into(), key: id.to_ascii_lowercase() }
    }

    /// The case-folded form used for lookups.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The id as it was written.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The id as it was written, shared rather than copied (each session keeps it).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.display)
    }
}

impl PartialEq for ServiceId {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ServiceId {}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// An instance's status, as Eureka reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    /// Ready for traffic.
    Up,
    /// Not working.
    Down,
    /// Still starting.
    Starting,
    /// Taken out of rotation by an operator.
    OutOfService,
    /// Not known.
    Unknown,
}

impl InstanceStatus {
    /// The status as Eureka spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Up => "UP",
            InstanceStatus::Down => "DOWN",
            InstanceStatus::Starting => "STARTING",
            InstanceStatus::OutOfService => "OUT_OF_SERVICE",
            InstanceStatus::Unknown => "UNKNOWN",
        }
    }
}

/// One running copy of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Unique within the service (`host:port` when the source has no id of its own); shared with
    /// every session the instance serves.
    pub instance_id: Arc<str>,
    /// Host name or address to connect to.
    pub host: String,
    /// Port to connect to.
    pub port: u16,
    /// Whether the instance speaks TLS (wss/https) on `port`.
    pub secure: bool,
    /// Whether it takes new sessions.
    pub status: InstanceStatus,
}

impl Instance {
    /// `host:port`, with brackets around an IPv6 address: the `Host` header and URL authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A service with its instances and the flat metadata map its routes come from.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its id.
    pub id: ServiceId,
    /// Its instances, in the order the source listed them.
    pub instances: Vec<Instance>,
    /// Metadata such as `apiml.routes.ws_v1.gatewayUrl`.
    pub metadata: BTreeMap<String, String>,
}

/// Where a set of services came from; each source replaces only its own services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The `services` list of the config file.
    Static,
}

/// All services known to the gateway, by source, and the route table built from them.
#[derive(Debug)]
pub struct ServiceDirectory {
    sources: Mutex<HashMap<Source, Vec<Service>>>,
    routes: watch::Sender<Arc<RouteTable>>,
}

impl ServiceDirectory {
    /// An empty directory.
    pub fn new() -> ServiceDirectory {
        let (routes, _) = watch::channel(Arc::new(RouteTable::default()));
        ServiceDirectory { sources: Mutex::new(HashMap::new()), routes }
    }

    /// Replaces the services of `source` and publishes the new route table.
    pub fn update(&self, source: Source, services: Vec<Service>) {
        let mut sources = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sources.insert(source, services);
        let table = RouteTable::build(sources.values().flatten());
        self.routes.send_replace(Arc::new(table));
    }

    /// A receiver that always holds the current route table.
    pub fn routes(&self) -> watch::Receiver<Arc<RouteTable>> {
        self.routes.subscribe()
    }
}

impl Default for ServiceDirectory {
    fn default() -> Self {
        ServiceDirectory::new()
    }
}
