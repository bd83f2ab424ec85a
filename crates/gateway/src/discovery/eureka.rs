//! An external Eureka cluster as a [`Source`] of services (`eureka.client.serviceUrl.defaultZone`).
//!
//! [`EurekaSource`] runs a [`EurekaClient`] (full fetch, then deltas reconciled by hash code, every
//! `registryFetchIntervalSeconds`, with failover across the service URLs) and follows its copies of
//! the remote registry with the same [`RegistrySource`] and conversion as the embedded registry, so
//! an application behaves alike whichever registry it is known to. Routes follow the cluster within
//! one fetch interval. The gateway only reads the cluster: it does not register itself.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wsgate_registry::client::ConfigError;
use wsgate_registry::{ClientConfig, EurekaClient};

use super::embedded::RegistrySource;
use super::{ServiceDirectory, Source};

/// The client of an external Eureka cluster and the task feeding its copies to the directory.
#[derive(Debug)]
pub struct EurekaSource {
    client: Arc<EurekaClient>,
    source: RegistrySource,
}

impl EurekaSource {
    /// A client for `config` whose copies feed `directory` as [`Source::Eureka`]. Nothing is
    /// fetched until [`EurekaSource::spawn`].
    ///
    /// # Errors
    /// [`ConfigError`] when there is no service URL or one is not a usable `http://` URL.
    pub fn new(config: ClientConfig, directory: &Arc<ServiceDirectory>) -> Result<EurekaSource, ConfigError> {
        let client = Arc::new(EurekaClient::new(config)?);
        let source = RegistrySource::new(client.subscribe(), Source::Eureka, Arc::clone(directory));
        Ok(EurekaSource { client, source })
    }

    /// The client, for its current URL and quarantine.
    pub fn client(&self) -> &Arc<EurekaClient> {
        &self.client
    }

    /// Fetches now and every fetch interval, and applies each new copy to the directory, until
    /// `stopped` turns true (or its sender is dropped). The returned task ends once both loops
    /// have stopped; the services last fetched stay in the directory.
    pub fn spawn(self, stopped: &watch::Receiver<bool>) -> JoinHandle<()> {
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move { drop(stopped.wait_for(|stop| *stop).await) };
        let EurekaSource { client, source } = self;
        let follow = tokio::spawn(source.run(until_stopped(stopped.clone())));
        let stopped = stopped.clone();
        tokio::spawn(async move {
            client.run(until_stopped(stopped)).await;
            if let Err(error) = follow.await {
                tracing::warn!(%error, "the task following the Eureka client failed");
            }
        })
    }

}
