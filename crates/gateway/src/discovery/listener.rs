//! The embedded Eureka registry's own listener (`discovery.embedded.port`), served beside the
//! gateway: [`RegistryListener::bind`] creates the registry (resuming its state file), binds its
//! port and hands its services to the directory; [`RegistryListener::spawn`] serves the Eureka API
//! and keeps the directory following the registry until the gateway stops.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;
use wsgate_registry::{Registry, StateFileError};

use super::embedded::RegistrySource;
use super::ServiceDirectory;
use crate::config::EmbeddedRegistry;

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
}

/// The embedded registry, bound, its current services already in the directory.
pub(crate) struct RegistryListener {
    listener: TcpListener,
    address: SocketAddr,
    registry: Registry,
    source: RegistrySource,
}

impl std::fmt::Debug for RegistryListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryListener").field("address", &self.address).finish_non_exhaustive()
    }
}

impl RegistryListener {
    /// Creates the registry of `embedded` (resuming its state file), binds `ip` and `embedded.port`,
    /// and hands the registry's current services to `directory`.
    pub(crate) async fn bind(ip: IpAddr, embedded: EmbeddedRegistry, directory: &Arc<ServiceDirectory>) -> Result<RegistryListener, RegistryStartError> {
        let registry = Registry::new(embedded.registry)?;
        let requested = SocketAddr::new(ip, embedded.port);
        let bind_error = |source| RegistryStartError::Bind { address: requested, source };
        let listener = TcpListener::bind(requested).await.map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let source = RegistrySource::embedded(&registry, Arc::clone(directory));
        Ok(RegistryListener { listener, address, registry, source })
    }

    /// The address it listens on (the real port when 0 was asked for).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves the Eureka API and follows the registry until `stopped` turns true; the returned task
    /// ends once requests in flight are answered and the state file is saved.
    pub(crate) fn spawn(self, stopped: &watch::Receiver<bool>) -> JoinHandle<()> {
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move { drop(stopped.wait_for(|stop| *stop).await) };
        let RegistryListener { listener, address, registry, source } = self;
        tokio::spawn(source.run(until_stopped(stopped.clone())));
        let stopped = stopped.clone();
        tokio::spawn(async move {
            if let Err(error) = wsgate_registry::server::serve(listener, registry, until_stopped(stopped)).await {
                warn!(%address, %error, "embedded registry stopped with an error");
            }
        })
    }
}
