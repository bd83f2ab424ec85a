//! `wsgate demo`: the gateway, its embedded registry and two demo-service instances in one process.
//! The instances register themselves with the registry over the Eureka REST API, as any service
//! would, and the gateway routes to them once they have. The gateway serves wss and https with a
//! development certificate of its own ([`crate::devcert`]); the instances stay plain ws behind it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use wsgate_demo_service::eureka::{EurekaClient, EurekaOptions};
use wsgate_demo_service::{DemoService, Options};
use wsgate_gateway::discovery::InstanceStatus;
use wsgate_gateway::route::RouteTable;
use wsgate_gateway::tls::TlsFiles;
use wsgate_gateway::{Config, Gateway};

use crate::devcert::{DevCertificates, Outcome};
use crate::{announce, bind_failure, signal, Failure};

const SERVICE_ID: &str = "discoverableclient";
const BASE_PATH: &str = "/discoverableclient";
const INSTANCES: usize = 2;

/// How long the instances get to register before the URLs are printed anyway, with a warning.
const REGISTRATION_WAIT: Duration = Duration::from_secs(10);

/// How often the demo instances heartbeat (Eureka's default).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

pub(crate) async fn run(address: IpAddr, port: u16, registry_port: u16, state_dir: &Path) -> Result<(), Failure> {
    let certificates = DevCertificates::in_dir(state_dir);
    // The development certificate and the state directory are the demo's defaults; the environment may
    // still name other files or turn TLS off, as for `wsgate serve`.
    let state = state_dir.to_owned();
    let defaults = [("SERVER_SSL_CERTIFICATE", &certificates.certificate), ("SERVER_SSL_CERTIFICATEKEY", &certificates.key), ("SERVER_STATEDIR", &state)];
    let vars = defaults.into_iter().map(|(variable, path)| (variable.to_owned(), path.display().to_string())).chain(std::env::vars());
    let mut config = Config::load(None, vars).map_err(|error| Failure::Usage(error.to_string()))?;
    let tls = config.tls.is_some();
    let made = if config.tls == Some(TlsFiles::Pem { certificate: certificates.certificate.clone(), key: certificates.key.clone() }) {
        Some(certificates.ensure().map_err(|error| Failure::Runtime(error.to_string()))?)
    } else {
        None
    };
    config.listen = SocketAddr::new(address, port);
    let Some(embedded) = config.embedded.as_mut() else {
        return Err(Failure::Usage("wsgate demo needs the embedded registry (unset DISCOVERY_EMBEDDED_ENABLED)".to_owned()));
    };
    embedded.port = registry_port;
    // The demo's instances register over plain HTTP: its registry stays plain whatever the environment says.
    if embedded.tls.take().is_some() {
        tracing::warn!("wsgate demo keeps its registry plain HTTP (its instances register over http://): discovery.embedded.ssl is ignored");
    }
    let gateway = Gateway::bind(config).await.map_err(bind_failure)?;
    let reload = tokio::spawn(signal::reload_on_hangup(gateway.tls_identity()));
    let at = gateway.local_addr();
    let registry_at = gateway.registry_addr().ok_or_else(|| Failure::Runtime("the embedded registry did not start".to_owned()))?;
    let eureka_url = format!("http://{}/eureka", reachable(registry_at));

    let (stop_services, services_stopped) = watch::channel(false);
    let (stop_clients, clients_stopped) = watch::channel(false);
    let mut clients = JoinSet::new();
    let mut instance_list = Vec::new();
    for number in 1..=INSTANCES {
        let options = Options { address: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0, base_path: BASE_PATH.to_owned(), instance_id: format!("demo-{number}") };
        let service = DemoService::bind(options).await.map_err(|error| Failure::Runtime(error.to_string()))?;
        let bound = service.local_addr();
        let eureka = EurekaOptions {
            url: eureka_url.clone(),
            app: SERVICE_ID.to_owned(),
            host: bound.ip().to_string(),
            port: bound.port(),
            base_path: BASE_PATH.to_owned(),
            heartbeat_interval: HEARTBEAT_INTERVAL,
        };
        let client = Arc::new(EurekaClient::new(&eureka).map_err(|error| Failure::Runtime(error.to_string()))?);
        instance_list.push(format!("demo-{number} at {bound}"));
        tokio::spawn(service.serve(until(services_stopped.clone())));
        clients.spawn({
            let stopped = until(clients_stopped.clone());
            async move { client.run(stopped).await }
        });
    }

    // On a stop signal: cancel the registrations, then stop the instances, then the gateway.
    let stopping = signal::stop();
    let shutdown = async move {
        stopping.await;
        let _ = stop_clients.send(true);
        while clients.join_next().await.is_some() {}
        let _ = stop_services.send(true);
    };
    let mut routes = gateway.directory().routes();
    let ready = async move {
        // Only whether: the routes' read guard must not be held while the directory changes.
        let registered = matches!(tokio::time::timeout(REGISTRATION_WAIT, routes.wait_for(|table| up_instances(table) >= INSTANCES)).await, Ok(Ok(_)));
        if !registered {
            tracing::warn!("the demo instances have not registered within {REGISTRATION_WAIT:?}; see the log above");
        }
        // The certificate names localhost, which a browser accepts where it may not accept an address.
        let host = match (tls, at.ip()) {
            (true, ip) if ip.is_loopback() || ip.is_unspecified() => "localhost".to_owned(),
            (_, ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            (_, ip) => ip.to_string(),
        };
        let port = at.port();
        let (ws, http) = if tls { ("wss", "https") } else { ("ws", "http") };
        let mut lines = vec![
            format!("demo service {SERVICE_ID}: {}", instance_list.join(", ")),
            format!("registered with the embedded registry at {eureka_url} (any Eureka client can register there)"),
        ];
        if let Some(made) = made {
            let what = match made {
                Outcome::Created => "created now: trust it once in your clients",
                Outcome::Reused => "kept from an earlier start",
                Outcome::Renewed => "kept from an earlier start, with a new certificate",
            };
            lines.push(format!("development CA: {} ({what})", certificates.ca.display()));
            lines.push(format!("certificate for localhost, 127.0.0.1 and ::1: {} (key {})", certificates.certificate.display(), certificates.key.display()));
            lines.push(format!("clients trust that CA (no --insecure): curl --cacert {} {http}://{host}:{port}/application/health", certificates.ca.display()));
        }
        lines.extend([
            format!("try: {ws}://{host}:{port}/{SERVICE_ID}/ws/v1/uppercase   (send text, get it upper-cased; 'bye' closes)"),
            format!("     {ws}://{host}:{port}/{SERVICE_ID}/ws/v1/header      (send anything, get the handshake headers)"),
            format!("     {http}://{host}:{port}/{SERVICE_ID}/api/v1/greeting?name=you"),
            format!("     {http}://{host}:{port}/{SERVICE_ID}/ui/v1/"),
            format!("     {http}://{host}:{port}/application/routes           (the live route table)"),
            format!("     {http}://{host}:{port}/application/websockets       (open sessions)"),
        ]);
        announce(at, Some(registry_at), &lines);
    };
    let (served, ()) = tokio::join!(gateway.serve(shutdown), ready);
    reload.abort();
    served.map_err(|error| Failure::Runtime(error.to_string()))
}

/// Completes once `stopped` turns true (or its sender is gone).
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The demo service's UP instances in `table`.
fn up_instances(table: &RouteTable) -> usize {
    table
        .services()
        .filter(|s| s.service.id.key() == SERVICE_ID)
        .flat_map(|s| &s.service.instances)
        .filter(|i| i.status == InstanceStatus::Up)
        .count()
}

/// An address to connect to `bound`: loopback in place of an unspecified address.
fn reachable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), bound.port()),
        _ => bound,
    }
}
