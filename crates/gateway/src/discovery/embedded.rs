//! Eureka registry snapshots as a [`Source`] of services: the embedded registry's, and the copies
//! of an external cluster's that [`super::eureka`] fetches.
//!
//! [`RegistrySource`] follows a channel of snapshots (for the embedded registry, a new one after
//! every registration, cancellation, eviction, status or metadata change; for an external cluster,
//! after every fetch that changed something) and hands each to the [`ServiceDirectory`] as
//! services, so routes change as soon as the registry does. The conversion of one snapshot, the
//! same for both sources:
//!
//! - one service per application; its id is the application name (Eureka upper-cases it; service
//!   ids match case-insensitively);
//! - instance id = Eureka's instance id; host = `ipAddr` (else `hostName`); port = `port`;
//!   status as Eureka's (only UP instances get sessions);
//! - an instance whose `securePort` is enabled is reached with TLS on that port (wss and https,
//!   MISSION §1), whether or not `port` is enabled too; an instance with neither port enabled is
//!   listed as not routable and gets no session;
//! - the service's metadata (its routes) is that of its most recently updated UP instance, else of
//!   its most recently updated instance: instances of one application normally agree, and when a
//!   new version rolls out with other routes, the newest live one speaks for the service;
//! - an application whose last instance left (cancelled, evicted) stays known with no instances
//!   and its last routes, so its clients get "does not have available instance" (1012 or 503,
//!   worth a retry) rather than "not known" while it restarts. It is forgotten when the gateway
//!   stops.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tracing::{info, warn};
use wsgate_registry::{Application, Applications, Registry, Status};

use super::{Discovered, Instance, InstanceStatus, Service, ServiceDirectory, ServiceId, Source, Unroutable};

/// Why an instance with neither port enabled gets no session.
const NO_PORT: &str = "neither port nor securePort is enabled";

/// Turns registry snapshots into services, remembering what earlier snapshots held.
#[derive(Debug, Default)]
pub struct Converter {
    /// Every application seen, by case-folded name, without instances: the routes a vanished
    /// application keeps.
    known: BTreeMap<String, Service>,
    /// The unroutable instances already logged, so each is logged once while it stays.
    reported: HashSet<(String, Arc<str>)>,
}

impl Converter {
    /// The services of `snapshot`, and those of applications earlier snapshots held (with no instances).
    pub fn convert(&mut self, snapshot: &Applications) -> Discovered {
        let mut discovered = Discovered::default();
        let mut reported = HashSet::new();
        for application in &snapshot.applications {
            let id = ServiceId::new(&application.name);
            let mut instances = Vec::new();
            for registered in &application.instances {
                let (instance, unroutable) = instance(registered);
                match unroutable {
                    None => instances.push(instance),
                    Some(reason) => {
                        let key = (id.key().to_owned(), Arc::clone(&instance.instance_id));
                        if !self.reported.contains(&key) {
                            warn!(service = %id, instance = %instance.instance_id, reason, "registered instance is not routable");
                        }
                        reported.insert(key);
                        discovered.unroutable.push(Unroutable { service: id.clone(), instance, reason });
                    }
                }
            }
            let service = Service { id: id.clone(), instances, metadata: metadata(application) };
            self.known.insert(id.key().to_owned(), Service { instances: Vec::new(), ..service.clone() });
            discovered.services.push(service);
        }
        self.reported = reported;
        let present: HashSet<&str> = discovered.services.iter().map(|s| s.id.key()).collect();
        let vanished: Vec<Service> = self.known.iter().filter(|(key, _)| !present.contains(key.as_str())).map(|(_, s)| s.clone()).collect();
        discovered.services.extend(vanished);
        discovered
    }
}

/// One registered instance as the gateway sees it, and why it is not routable, if it is not.
fn instance(registered: &wsgate_registry::Instance) -> (Instance, Option<&'static str>) {
    let host = if registered.ip_addr.trim().is_empty() { &registered.host_name } else { &registered.ip_addr };
    let (port, secure, unroutable) = match (registered.secure_port.enabled, registered.port.enabled) {
        (true, _) => (registered.secure_port.port, true, None),
        (false, true) => (registered.port.port, false, None),
        (false, false) => (registered.port.port, false, Some(NO_PORT)),
    };
    let instance = Instance { instance_id: registered.id().into(), host: host.trim().to_owned(), port, secure, status: status(registered.status) };
    (instance, unroutable)
}

fn status(status: Status) -> InstanceStatus {
    match status {
        Status::Up => InstanceStatus::Up,
        Status::Down => InstanceStatus::Down,
        Status::Starting => InstanceStatus::Starting,
        Status::OutOfService => InstanceStatus::OutOfService,
        Status::Unknown => InstanceStatus::Unknown,
    }
}

/// The metadata of the application's most recently updated UP instance, else of its most recently
/// updated instance (ties: the greatest id, so the choice does not depend on order).
fn metadata(application: &Application) -> BTreeMap<String, String> {
    let newest = application
        .instances
        .iter()
        .max_by(|a, b| (a.status == Status::Up, a.last_updated_timestamp, a.id()).cmp(&(b.status == Status::Up, b.last_updated_timestamp, b.id())));
    newest.map(|i| i.metadata.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()).unwrap_or_default()
}

/// Feeds the [`ServiceDirectory`] from a channel of registry snapshots, as one [`Source`].
#[derive(Debug)]
pub struct RegistrySource {
    converter: Converter,
    snapshots: watch::Receiver<Arc<Applications>>,
    source: Source,
    directory: Arc<ServiceDirectory>,
}

impl RegistrySource {
    /// Subscribes to the embedded `registry` (as [`Source::Embedded`]) and hands its current
    /// snapshot to `directory` at once, so the instances of a resumed state file are routable
    /// before the gateway accepts its first session.
    pub fn embedded(registry: &Registry, directory: Arc<ServiceDirectory>) -> RegistrySource {
        RegistrySource::new(registry.subscribe(), Source::Embedded, directory)
    }

    /// Follows `snapshots` as `source`, handing the current snapshot to `directory` at once.
    pub fn new(snapshots: watch::Receiver<Arc<Applications>>, source: Source, directory: Arc<ServiceDirectory>) -> RegistrySource {
        let mut follower = RegistrySource { converter: Converter::default(), snapshots, source, directory };
        follower.apply();
        follower
    }

    fn apply(&mut self) {
        let snapshot = Arc::clone(&self.snapshots.borrow_and_update());
        let discovered = self.converter.convert(&snapshot);
        self.directory.update_discovered(self.source, discovered);
    }

    /// Applies every new snapshot until `shutdown` completes or the registry is gone. Snapshots
    /// published while one is applied are coalesced: only the newest is applied next.
    ///
    /// # Cancel safety
    /// Cancel safe: the directory always holds a whole snapshot's services.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            // Shutdown first: a registry stopping with the gateway must not reroute anything.
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        info!(source = self.source.as_str(), "registry gone; its services stay as they were");
                        return;
                    }
                }
            }
            self.apply();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgate_registry::PortInfo;

    fn registered(app: &str, id: &str, port: u16, status: Status, updated: u64, routes: &[(&str, &str)]) -> wsgate_registry::Instance {
        let mut instance = wsgate_registry::Instance::new(app, id, "svc.example", "10.0.0.7");
        instance.port = PortInfo { port, enabled: true };
        instance.status = status;
        instance.last_updated_timestamp = updated;
        instance.metadata = routes.iter().map(|(k, v)| (*k, *v)).collect();
        instance
    }

    fn snapshot(instances: Vec<wsgate_registry::Instance>) -> Applications {
        let mut applications: Vec<Application> = Vec::new();
        for instance in instances {
            match applications.iter_mut().find(|a| a.name == instance.app) {
                Some(app) => app.instances.push(Arc::new(instance)),
                None => applications.push(Application { name: instance.app.clone(), instances: vec![Arc::new(instance)] }),
            }
        }
        Applications { applications, ..Applications::default() }
    }

    const V1: &[(&str, &str)] = &[("apiml.routes.ws_v1.gatewayUrl", "ws/v1"), ("apiml.routes.ws_v1.serviceUrl", "/v1")];
    const V2: &[(&str, &str)] = &[("apiml.routes.ws_v1.gatewayUrl", "ws/v1"), ("apiml.routes.ws_v1.serviceUrl", "/v2")];

    #[test]
    fn applications_become_services_with_their_instances_and_routes() {
        let mut up = registered("demo", "10.0.0.7:demo:8080", 8080, Status::Up, 5, V1);
        up.ip_addr = String::new();
        let out = registered("demo", "b", 8081, Status::OutOfService, 9, V2);
        let starting = registered("other", "c", 9000, Status::Starting, 1, &[]);
        let discovered = Converter::default().convert(&snapshot(vec![up, out, starting]));
        assert!(discovered.unroutable.is_empty());
        let demo = &discovered.services[0];
        assert_eq!(demo.id, ServiceId::new("demo"));
        assert_eq!(demo.id.as_str(), "DEMO");
        let first = &demo.instances[0];
        assert_eq!((&*first.instance_id, first.host.as_str(), first.port, first.secure, first.status), ("10.0.0.7:demo:8080", "svc.example", 8080, false, InstanceStatus::Up));
        assert_eq!((demo.instances[1].host.as_str(), demo.instances[1].status), ("10.0.0.7", InstanceStatus::OutOfService));
        // The UP instance speaks for the service, though the other changed later.
        assert_eq!(demo.metadata["apiml.routes.ws_v1.serviceUrl"], "/v1");
        assert_eq!(discovered.services[1].instances[0].status, InstanceStatus::Starting);
    }

    #[test]
    fn the_newest_up_instance_gives_the_metadata() {
        let old = registered("demo", "a", 1, Status::Up, 5, V1);
        let new = registered("demo", "b", 2, Status::Up, 7, V2);
        let discovered = Converter::default().convert(&snapshot(vec![new, old]));
        assert_eq!(discovered.services[0].metadata["apiml.routes.ws_v1.serviceUrl"], "/v2");
    }

    #[test]
    fn an_enabled_secure_port_is_reached_with_tls_and_a_portless_instance_is_listed_not_routed() {
        let mut both = registered("demo", "both", 8080, Status::Up, 1, V1);
        both.secure_port = PortInfo { port: 8443, enabled: true };
        let mut tls_only = registered("demo", "tls", 8080, Status::Up, 1, V1);
        tls_only.secure_port = PortInfo { port: 9443, enabled: true };
        tls_only.port.enabled = false;
        let mut portless = registered("demo", "none", 8080, Status::Up, 1, V1);
        portless.port.enabled = false;
        let discovered = Converter::default().convert(&snapshot(vec![both, tls_only, portless]));
        let routed: Vec<_> = discovered.services[0].instances.iter().map(|i| (&*i.instance_id, i.port, i.secure)).collect();
        assert_eq!(routed, [("both", 8443, true), ("tls", 9443, true)]);
        let held: Vec<_> = discovered.unroutable.iter().map(|u| (&*u.instance.instance_id, u.instance.port, u.instance.secure, u.reason)).collect();
        assert_eq!(held, [("none", 8080, false, NO_PORT)]);
    }

    #[test]
    fn a_vanished_application_keeps_its_routes_without_instances() {
        let mut converter = Converter::default();
        converter.convert(&snapshot(vec![registered("demo", "a", 1, Status::Up, 1, V1)]));
        let discovered = converter.convert(&Applications::default());
        assert_eq!(discovered.services.len(), 1);
        assert!(discovered.services[0].instances.is_empty());
        assert_eq!(discovered.services[0].metadata["apiml.routes.ws_v1.gatewayUrl"], "ws/v1");
    }

    #[tokio::test]
    async fn the_directory_follows_the_registry() {
        let registry = Registry::new(wsgate_registry::RegistryConfig::default()).unwrap();
        let directory = Arc::new(ServiceDirectory::new());
        directory.update(Source::Static, vec![Service { id: ServiceId::new("static"), instances: Vec::new(), metadata: BTreeMap::new() }]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(RegistrySource::embedded(&registry, Arc::clone(&directory)).run(async { drop(stopped.await) }));
        let mut routes = directory.routes();
        registry.register(registered("demo", "a", 8080, Status::Up, 1, V1)).unwrap();
        let table = routes.wait_for(|t| t.resolve("/demo/ws/v1/x", None).is_ok()).await.unwrap().clone();
        assert_eq!(table.services().count(), 2, "static services stay beside registered ones");
        let listing = directory.listing();
        assert_eq!(listing.iter().map(|s| s.routes.service.id.key()).collect::<Vec<_>>(), ["demo", "static"]);
        assert_eq!(listing[0].instances[0].source, Source::Embedded);
        registry.set_status_override("DEMO", "a", Status::OutOfService, None).unwrap();
        routes.wait_for(|t| t.resolve("/demo/ws/v1/x", None).is_ok_and(|r| r.service.service.instances[0].status == InstanceStatus::OutOfService)).await.unwrap();
        let _ = stop.send(());
        task.await.unwrap();
    }
}
