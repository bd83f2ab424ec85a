//! A Eureka client for external clusters: keeps a copy of a remote registry and publishes it the
//! way the embedded [`crate::Registry`] publishes its own, so the gateway feeds both into its
//! directory alike (EUREKA.md, "Client semantics").
//!
//! - [`EurekaClient`]: full fetch when the copy is empty, else deltas reconciled by hash code
//!   ([`EurekaClient::refresh`]), every [`ClientConfig::fetch_interval`] ([`EurekaClient::run`]);
//!   each new copy goes out on a `watch` channel ([`EurekaClient::subscribe`]).
//! - `endpoints`: failover and quarantine across the service URLs.
//! - `fetch`: one HTTP `GET` with failover, gzip and time-outs.
//! - `tls`: the connector of both clients, for `http` and `https` URLs ([`ClientConfig::tls`]).
//! - [`apply_delta`]: a delta applied to a copy.
//! - [`Registration`]: registers one instance (register, heartbeat, re-register on 404, cancel),
//!   with the same failover across the service URLs.

mod delta;
mod endpoints;
mod error;
mod fetch;
mod register;
mod service_url;
mod tls;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

pub use delta::{apply_delta, normalize};
pub use error::{AttemptError, ConfigError, FetchError};
pub use fetch::MAX_BODY_BYTES;
pub use register::{InstanceDescription, Lease, RegisterError, Registration};
pub use tls::{system_roots, tls_config};

use endpoints::Endpoints;
pub use service_url::{is_https, redacted};
use service_url::ServiceUrl;
use fetch::{Reply, Transport};

use crate::model::Applications;

/// Options of a [`EurekaClient`], with Eureka's client defaults. `Debug` shows the URLs without their
/// passwords.
#[derive(Clone)]
pub struct ClientConfig {
    /// The service URLs, such as `http://127.0.0.1:8761/eureka` or `https://eureka:8761/eureka`, tried
    /// in this order.
    pub service_urls: Vec<String>,
    /// TLS for `https` service URLs: trust anchors, and a client certificate for servers that want
    /// one. `None`: the system's root certificates and no client certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// How often [`EurekaClient::run`] fetches. Default 30 s (`registryFetchIntervalSeconds`).
    pub fetch_interval: Duration,
    /// Connect time-out per attempt. Default 5 s.
    pub connect_timeout: Duration,
    /// Time-out for the answer once connected. Default 8 s.
    pub read_timeout: Duration,
    /// How often an instance registered with this cluster heartbeats (the gateway's own
    /// registration, [`Registration`]); the lease is three times as long. Default 30 s
    /// (Spring's `eureka.instance.leaseRenewalIntervalInSeconds`).
    pub lease_renewal_interval: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("service_urls", &self.service_urls.iter().map(|url| redacted(url)).collect::<Vec<_>>())
            .field("tls", &self.tls.is_some())
            .field("fetch_interval", &self.fetch_interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("lease_renewal_interval", &self.lease_renewal_interval)
            .finish()
    }
}

impl ClientConfig {
    /// Default fetch interval.
    pub const DEFAULT_FETCH_INTERVAL: Duration = Duration::from_secs(30);
    /// Default connect time-out.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default read time-out.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(8);
    /// Default lease renewal interval.
    pub const DEFAULT_LEASE_RENEWAL_INTERVAL: Duration = Duration::from_secs(30);

    /// Options for `urls` with the default interval and time-outs.
    pub fn new(urls: Vec<String>) -> ClientConfig {
        ClientConfig {
            service_urls: urls,
            tls: None,
            fetch_interval: ClientConfig::DEFAULT_FETCH_INTERVAL,
            connect_timeout: ClientConfig::DEFAULT_CONNECT_TIMEOUT,
            read_timeout: ClientConfig::DEFAULT_READ_TIMEOUT,
            lease_renewal_interval: ClientConfig::DEFAULT_LEASE_RENEWAL_INTERVAL,
        }
    }

    /// Options from a `eureka.client.serviceUrl.defaultZone` value: comma-separated URLs, blanks
    /// around them and empty items ignored.
    pub fn from_default_zone(default_zone: &str) -> ClientConfig {
        ClientConfig::new(default_zone.split(',').map(str::trim).filter(|url| !url.is_empty()).map(str::to_owned).collect())
    }

    /// Checks the service URLs as [`EurekaClient::new`] does, without setting anything up.
    ///
    /// # Errors
    /// As [`EurekaClient::new`] for the URLs.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.parse_urls().map(drop)
    }

    fn parse_urls(&self) -> Result<Vec<ServiceUrl>, ConfigError> {
        if self.service_urls.is_empty() {
            return Err(ConfigError::NoServiceUrls);
        }
        self.service_urls.iter().map(|url| ServiceUrl::parse(url)).collect()
    }
}

/// How [`EurekaClient::refresh`] brought the copy up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// `GET /apps/`: the copy was empty.
    Full,
    /// `GET /apps/delta`, and the hash codes matched.
    Delta,
    /// A delta, then a full fetch: the delta was not 200 or the hash codes did not match.
    Reconciled,
}

/// A client following a remote Eureka registry. Cheap to share behind an `Arc`; refreshes are
/// serialized.
#[derive(Debug)]
pub struct EurekaClient {
    config: ClientConfig,
    transport: Transport,
    endpoints: Mutex<Endpoints>,
    snapshots: watch::Sender<Arc<Applications>>,
    /// One refresh at a time: two interleaved would apply deltas to a stale copy.
    refreshing: tokio::sync::Mutex<()>,
}

impl EurekaClient {
    /// A client for `config`, with an empty copy. Nothing is fetched until [`EurekaClient::refresh`]
    /// or [`EurekaClient::run`].
    ///
    /// # Errors
    /// [`ConfigError`] when there is no URL or one is not `http[s]://[USER:PASSWORD@]HOST[:PORT][/PATH]`.
    pub fn new(mut config: ClientConfig) -> Result<EurekaClient, ConfigError> {
        let urls = config.parse_urls()?;
        config.service_urls = urls.iter().map(|url| url.base.clone()).collect();
        let transport = Transport::new(config.tls.as_ref(), &urls, config.connect_timeout, config.read_timeout)?;
        let endpoints = Mutex::new(Endpoints::new(urls));
        let (snapshots, _) = watch::channel(Arc::new(Applications::default()));
        Ok(EurekaClient { config, transport, endpoints, snapshots, refreshing: tokio::sync::Mutex::new(()) })
    }

    /// The options, service URLs normalized (no credential, no trailing slash).
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Copies of the remote registry, a new one whenever a fetch changes its applications: the
    /// same shape as [`crate::Registry::subscribe`]. Applications are sorted by name, instances
    /// by id, and `apps_hashcode` is the copy's own.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Applications>> {
        self.snapshots.subscribe()
    }

    /// The current copy (see [`EurekaClient::subscribe`]); empty before the first fetch.
    pub fn snapshot(&self) -> Arc<Applications> {
        self.snapshots.borrow().clone()
    }

    /// The URL requests go to first: the last one that answered, unless it has failed since.
    pub fn current_url(&self) -> Option<String> {
        self.lock_endpoints().current().map(str::to_owned)
    }

    /// The quarantined URLs, in list order.
    pub fn quarantined_urls(&self) -> Vec<String> {
        self.lock_endpoints().quarantined()
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, Endpoints> {
        // Plain indices updated in single steps: consistent even after a panic elsewhere.
        self.endpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings the copy up to date once: a full fetch when it is empty, else a delta applied and
    /// checked against the delta's hash code, with a full fetch when the delta is not 200 or the
    /// hash codes differ. Publishes the copy when its applications changed.
    ///
    /// # Errors
    /// [`FetchError`] when no endpoint answered usably; the copy stays as it was.
    pub async fn refresh(&self) -> Result<Fetched, FetchError> {
        let _one_at_a_time = self.refreshing.lock().await;
        let local = self.snapshot();
        if local.applications.is_empty() {
            self.full().await?;
            return Ok(Fetched::Full);
        }
        match self.transport.get(&self.endpoints, "/apps/delta").await? {
            (_, Reply::Applications(delta)) => {
                let updated = apply_delta(&local, &delta);
                if updated.apps_hashcode == delta.apps_hashcode {
                    self.publish(updated);
                    return Ok(Fetched::Delta);
                }
                tracing::info!(local = %updated.apps_hashcode, remote = %delta.apps_hashcode, "Eureka delta does not reconcile; fetching the whole registry");
            }
            (url, Reply::Status(status)) => tracing::info!(%url, %status, "Eureka delta not available; fetching the whole registry"),
        }
        self.full().await?;
        Ok(Fetched::Reconciled)
    }

    /// `GET /apps/` and publish.
    async fn full(&self) -> Result<(), FetchError> {
        match self.transport.get(&self.endpoints, "/apps/").await? {
            (_, Reply::Applications(apps)) => {
                self.publish(normalize(&apps));
                Ok(())
            }
            (url, Reply::Status(status)) => Err(FetchError::Status { url, status }),
        }
    }

    /// Replaces the copy, waking subscribers only when the applications changed (a fetch that
    /// found nothing new must not make the gateway rebuild its routes).
    fn publish(&self, apps: Applications) {
        self.snapshots.send_if_modified(|current| {
            let changed = current.applications != apps.applications;
            *current = Arc::new(apps);
            changed
        });
    }

    /// Refreshes at once, then every [`ClientConfig::fetch_interval`], until `shutdown` completes.
    /// Failures are logged and the copy kept: a remote cluster may come and go.
    ///
    /// # Cancel safety
    /// Dropping the future stops fetching; the copy stays published.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                result = self.refresh() => if let Err(error) = result {
                    tracing::warn!(%error, "Eureka fetch failed; keeping the last copy");
                },
            }
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.fetch_interval) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_password() {
        let config = ClientConfig::new(vec!["https://eureka:s3cret/x@h:8761/eureka".into(), "http://h2/eureka".into()]);
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret") && shown.contains("https://eureka:***@h:8761/eureka") && shown.contains("http://h2/eureka"), "{shown}");
    }

    #[test]
    fn default_zone_is_split_on_commas() {
        let config = ClientConfig::from_default_zone(" http://a:1/eureka/, ,http://b:2/eureka ");
        assert_eq!(config.service_urls, vec!["http://a:1/eureka/".to_owned(), "http://b:2/eureka".to_owned()]);
        assert_eq!((config.fetch_interval, config.connect_timeout, config.read_timeout), (Duration::from_secs(30), Duration::from_secs(5), Duration::from_secs(8)));
        let client = EurekaClient::new(config).unwrap();
        assert_eq!(client.config().service_urls[0], "http://a:1/eureka");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(EurekaClient::new(ClientConfig::from_default_zone(" , ")), Err(ConfigError::NoServiceUrls)));
        for url in ["ftp://a/eureka", "a:1/eureka", "http://", "http://a/eureka?x=1", "not a url"] {
            assert!(matches!(EurekaClient::new(ClientConfig::new(vec![url.to_owned()])), Err(ConfigError::InvalidUrl { .. })), "{url}");
            assert!(matches!(ClientConfig::new(vec![url.to_owned()]).check(), Err(ConfigError::InvalidUrl { .. })), "{url}");
        }
        assert!(matches!(ClientConfig::new(Vec::new()).check(), Err(ConfigError::NoServiceUrls)));
    }

    #[test]
    fn http_and_https_urls_mix() {
        let config = ClientConfig::from_default_zone("https://u:p@a:1/eureka/,http://b:2/eureka");
        assert!(config.check().is_ok());
        let client = EurekaClient::new(config).unwrap();
        assert_eq!(client.config().service_urls, ["https://a:1/eureka", "http://b:2/eureka"]);
    }
}
