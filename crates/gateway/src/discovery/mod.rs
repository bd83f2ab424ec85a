//! The service directory: which services exist, their instances and metadata.
//!
//! Several [`Source`]s feed it: the static `services` of the config file, the [`embedded`] Eureka
//! registry and an external Eureka cluster ([`eureka`]). Each update rebuilds the
//! [`RouteTable`] and publishes it on a `watch` channel, so new sessions see the change at once and
//! open sessions are not touched.
//!
//! When several sources know a service of the same id, they make one service: its instances are
//! those of every source (static first; an instance id seen twice is kept once), and its metadata
//! is the static service's, with keys only a registry has added to it (the config file wins key by
//! key, since it is what the operator wrote).

pub mod embedded;
pub mod eureka;
pub mod listener;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::route::{RouteTable, ServiceRoutes};

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

/// Where a set of services came from; each source replaces only its own services. Sources are
/// ordered by precedence: when two know the same service, the first one's metadata wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The `services` list of the config file.
    Static,
    /// The embedded Eureka registry (`discovery.embedded.*`).
    Embedded,
    /// An external Eureka cluster (`eureka.client.serviceUrl.defaultZone`).
    Eureka,
}

impl Source {
    /// The name `/application/routes` shows (`static`, `embedded`, `eureka`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Embedded => "embedded",
            Source::Eureka => "eureka",
        }
    }
}

/// An instance a source knows but the gateway cannot route to, with the reason (for example a
/// registered instance with neither port enabled). Listed, never picked.
#[derive(Debug, Clone)]
pub struct Unroutable {
    /// The service it belongs to.
    pub service: ServiceId,
    /// The instance as the source describes it.
    pub instance: Instance,
    /// Why no session goes to it.
    pub reason: &'static str,
}

/// What one source knows: routable services, and instances it holds back.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The services, each with its routable instances only.
    pub services: Vec<Service>,
    /// Instances that are known but not routable; their service is in `services`.
    pub unroutable: Vec<Unroutable>,
}

/// One instance as `/application/routes` lists it.
#[derive(Debug, Clone)]
pub struct ListedInstance {
    /// The instance.
    pub instance: Instance,
    /// The source that reported it.
    pub source: Source,
    /// Why it gets no sessions, when it is not routable.
    pub unroutable: Option<&'static str>,
}

/// One service of the live route table with where each of its instances came from.
#[derive(Debug, Clone)]
pub struct ListedService {
    /// The service and its routes, as new sessions see them.
    pub routes: Arc<ServiceRoutes>,
    /// Its instances, routable ones first.
    pub instances: Vec<ListedInstance>,
}

/// All services known to the gateway, by source, and the route table built from them.
#[derive(Debug)]
pub struct ServiceDirectory {
    sources: Mutex<BTreeMap<Source, Discovered>>,
    routes: watch::Sender<Arc<RouteTable>>,
}

impl ServiceDirectory {
    /// An empty directory.
    pub fn new() -> ServiceDirectory {
        let (routes, _) = watch::channel(Arc::new(RouteTable::default()));
        ServiceDirectory { sources: Mutex::new(BTreeMap::new()), routes }
    }

    /// Replaces the services of `source` and publishes the new route table.
    pub fn update(&self, source: Source, services: Vec<Service>) {
        self.update_discovered(source, Discovered { services, unroutable: Vec::new() });
    }

    /// Replaces what `source` knows, unroutable instances included, and publishes the new route table.
    pub fn update_discovered(&self, source: Source, discovered: Discovered) {
        let mut sources = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sources.insert(source, discovered);
        let merged = merge(sources.values().map(|d| d.services.as_slice()));
        // Published under the lock, so tables go out in the order of the updates.
        self.routes.send_replace(Arc::new(RouteTable::build(&merged)));
    }

    /// A receiver that always holds the current route table.
    pub fn routes(&self) -> watch::Receiver<Arc<RouteTable>> {
        self.routes.subscribe()
    }

    /// The live route table with each instance's source, services sorted by id.
    pub fn listing(&self) -> Vec<ListedService> {
        let sources = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let table = Arc::clone(&self.routes.borrow());
        let mut services: Vec<&Arc<ServiceRoutes>> = table.services().collect();
        services.sort_by(|a, b| a.service.id.key().cmp(b.service.id.key()));
        services
            .into_iter()
            .map(|routes| {
                let id = &routes.service.id;
                let source_of = |instance: &Instance| {
                    sources
                        .iter()
                        .find(|(_, d)| d.services.iter().any(|s| s.id == *id && s.instances.iter().any(|i| i.instance_id == instance.instance_id)))
                        // Every instance of the table came from a source; the fallback only keeps this total.
                        .map_or(Source::Static, |(source, _)| *source)
                };
                let routable = routes.service.instances.iter().map(|i| ListedInstance { instance: i.clone(), source: source_of(i), unroutable: None });
                let held = sources.iter().flat_map(|(source, d)| {
                    d.unroutable.iter().filter(|u| u.service == *id).map(|u| ListedInstance { instance: u.instance.clone(), source: *source, unroutable: Some(u.reason) })
                });
                ListedService { routes: Arc::clone(routes), instances: routable.chain(held).collect() }
            })
            .collect()
    }
}

/// One service per id from every source's services, by the rule of the module doc.
fn merge<'a>(sources: impl Iterator<Item = &'a [Service]>) -> Vec<Service> {
    let mut merged: Vec<Service> = Vec::new();
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for service in sources.flatten() {
        match by_key.get(service.id.key()) {
            None => {
                by_key.insert(service.id.key(), merged.len());
                merged.push(service.clone());
            }
            Some(&index) => {
                let existing = &mut merged[index];
                let mut ids: HashSet<Arc<str>> = existing.instances.iter().map(|i| Arc::clone(&i.instance_id)).collect();
                existing.instances.extend(service.instances.iter().filter(|i| ids.insert(Arc::clone(&i.instance_id))).cloned());
                for (key, value) in &service.metadata {
                    existing.metadata.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
        }
    }
    merged
}

impl Default for ServiceDirectory {
    fn default() -> Self {
        ServiceDirectory::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, port: u16) -> Instance {
        Instance { instance_id: id.into(), host: "127.0.0.1".into(), port, secure: false, status: InstanceStatus::Up }
    }

    fn service(id: &str, instances: Vec<Instance>, metadata: &[(&str, &str)]) -> Service {
        Service { id: ServiceId::new(id), instances, metadata: metadata.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    #[test]
    fn sources_sharing_a_service_id_merge_instances_and_static_metadata_wins() {
        let directory = ServiceDirectory::new();
        directory.update(Source::Embedded, vec![service("DEMO", vec![instance("r1", 2), instance("s1", 9)], &[("a", "registered"), ("b", "registered")])]);
        directory.update(Source::Static, vec![service("demo", vec![instance("s1", 1)], &[("a", "static")])]);
        let table = directory.routes().borrow().clone();
        let merged = &table.services().next().unwrap().service;
        assert_eq!(table.services().count(), 1);
        assert_eq!(merged.instances.iter().map(|i| (&*i.instance_id, i.port)).collect::<Vec<_>>(), [("s1", 1), ("r1", 2)]);
        assert_eq!((merged.metadata["a"].as_str(), merged.metadata["b"].as_str()), ("static", "registered"));
        let listing = directory.listing();
        assert_eq!(listing[0].instances.iter().map(|i| i.source).collect::<Vec<_>>(), [Source::Static, Source::Embedded]);
        // Each source replaces only its own services.
        directory.update(Source::Embedded, Vec::new());
        let table = directory.routes().borrow().clone();
        assert_eq!(table.services().next().unwrap().service.instances.len(), 1);
    }

    #[test]
    fn unroutable_instances_are_listed_after_routable_ones() {
        let directory = ServiceDirectory::new();
        let mut tls = instance("tls", 8443);
        tls.secure = true;
        let unroutable = vec![Unroutable { service: ServiceId::new("demo"), instance: tls, reason: "TLS" }];
        directory.update_discovered(Source::Embedded, Discovered { services: vec![service("demo", vec![instance("plain", 1)], &[])], unroutable });
        let listing = directory.listing();
        let listed: Vec<_> = listing[0].instances.iter().map(|i| (&*i.instance.instance_id, i.unroutable)).collect();
        assert_eq!(listed, [("plain", None), ("tls", Some("TLS"))]);
    }
}
