//! The embedded Eureka registry's own listener (`discovery.embedded.port`), served beside the
//! gateway: [`RegistryListener::bind`] creates the registry (resuming its state file), binds its
//! port and hands its services to the directory; [`RegistryListener::spawn`] serves the Eureka API
//! and keeps the directory following the registry until the gateway stops.
//!
//! With `discovery.embedded.ssl.enabled` the port speaks https, presenting the gateway's own
//! certificate (the same [`ServerIdentity`], so a SIGHUP reload applies to both ports) and asking for
//! client certificates as `clientAuth` says; see [`crate::tls::registry`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};
use wsgate_registry::server::Tls;
use wsgate_registry::{Registry, StateFileError};

use super::embedded::RegistrySource;
use super::ServiceDirectory;
use crate::config::EmbeddedRegistry;
use crate::tls::registry::{self, ClientAuth, RegistryTlsError};
use crate::tls::ServerIdentity;

/// Why the embedded registry could not start. Each names its config key.
#[derive(Debug, Error)]
pub enum RegistryStartError {
    /// Its port could not be bound.
    #[error("discovery.embedded.port: the embedded registry cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// Its state file exists but cannot be read.
    #[error("discovery.embedded.stateFile: {0} (move it away to start with an empty registry)")]
    State(#[from] StateFileError),
    /// Its TLS configuration could not be built (the trust store for client certificates).
    #[error(transparent)]
    Tls(#[from] RegistryTlsError),
    /// https is asked for but the gateway has no certificate to present (validation refuses this
    /// configuration: a caller that skipped it gets an error rather than a plain HTTP registry).
    #[error("discovery.embedded.ssl.enabled: the registry's port presents the gateway's certificate, and there is none")]
    NoCertificate,
}

/// The embedded registry, bound, its current services already in the directory.
pub(crate) struct RegistryListener {
    listener: TcpListener,
    address: SocketAddr,
    registry: Registry,
    source: RegistrySource,
    /// https on the port; `None`: plain HTTP.
    tls: Option<Tls>,
}

impl std::fmt::Debug for RegistryListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryListener").field("address", &self.address).finish_non_exhaustive()
    }
}

impl RegistryListener {
    /// Creates the registry of `embedded` (resuming its state file), binds `ip` and `embedded.port`,
    /// and hands the registry's current services to `directory`. `identity` is the gateway's
    /// certificate, which the port presents when `embedded.tls` is set (validation made sure there is one).
    pub(crate) async fn bind(ip: IpAddr, embedded: EmbeddedRegistry, identity: Option<&Arc<ServerIdentity>>, directory: &Arc<ServiceDirectory>) -> Result<RegistryListener, RegistryStartError> {
        let tls = match (&embedded.tls, identity) {
            (Some(settings), Some(identity)) => {
                let config = registry::server_config(Arc::clone(identity), settings)?;
                Some(Tls { acceptor: TlsAcceptor::from(config), client_certificates: settings.client_auth.asks() })
            }
            (Some(_), None) => return Err(RegistryStartError::NoCertificate),
            (None, _) => None,
        };
        if tls.is_none() {
            if let Some(network) = embedded.registry.allow.networks().iter().find(|network| !network.is_loopback()) {
                warn!(
                    %network,
                    "the embedded registry speaks plain HTTP and discovery.embedded.allow admits non-loopback clients: \
                     registrations (and Basic credentials) cross the network in clear; consider discovery.embedded.ssl.enabled"
                );
            }
        }
        let registry = Registry::new(embedded.registry)?;
        let requested = SocketAddr::new(ip, embedded.port);
        let bind_error = |source| RegistryStartError::Bind { address: requested, source };
        let listener = TcpListener::bind(requested).await.map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        match embedded.tls.as_ref().map(|settings| &settings.client_auth) {
            None => {}
            Some(ClientAuth::None) => info!(%address, client_auth = "none", "the embedded registry serves https with the gateway's certificate"),
            // Whoever holds a certificate of this trust store is let in: said once, as it may be a broad bundle.
            Some(client_auth @ (ClientAuth::Want(store) | ClientAuth::Need(store))) => info!(
                %address,
                client_auth = client_auth.word(),
                trust_store = %store.path.display(),
                from = store.keys.store,
                "the embedded registry serves https with the gateway's certificate; client certificates of this trust store authenticate"
            ),
        }
        let source = RegistrySource::embedded(&registry, Arc::clone(directory));
        Ok(RegistryListener { listener, address, registry, source, tls })
    }

    /// The address it listens on (the real port when 0 was asked for).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves the Eureka API and follows the registry until `stopped` turns true; the returned task
    /// ends once requests in flight are answered and the state file is saved.
    pub(crate) fn spawn(self, stopped: &watch::Receiver<bool>) -> JoinHandle<()> {
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move { drop(stopped.wait_for(|stop| *stop).await) };
        let RegistryListener { listener, address, registry, source, tls } = self;
        tokio::spawn(source.run(until_stopped(stopped.clone())));
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => wsgate_registry::server::serve(listener, registry, until_stopped(stopped)).await,
                Some(tls) => wsgate_registry::server::serve_tls(listener, registry, tls, until_stopped(stopped)).await,
            };
            if let Err(error) = served {
                warn!(%address, %error, "embedded registry stopped with an error");
            }
        })
    }
}
