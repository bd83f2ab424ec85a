//! An external Eureka cluster as a [`Source`] of services (`eureka.client.serviceUrl.defaultZone`),
//! and the gateway's own registration with it.
//!
//! [`EurekaSource`] runs a [`EurekaClient`] (full fetch, then deltas reconciled by hash code, every
//! `registryFetchIntervalSeconds`, with failover across the service URLs) and follows its copies of
//! the remote registry with the same [`RegistrySource`] and conversion as the embedded registry, so
//! an application behaves alike whichever registry it is known to. Routes follow the cluster within
//! one fetch interval.
//!
//! Like a Zowe gateway, it also registers the gateway itself with the cluster as app `GATEWAY`
//! ([`Registration`], the same implementation the demo service uses), heartbeats every
//! `eureka.instance.leaseRenewalIntervalInSeconds` (30 s by default; the lease is three times as
//! long) and cancels the registration when the gateway stops. See [`gateway_instance`] for the
//! instance it describes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wsgate_registry::client::{ConfigError, InstanceDescription, Registration};
use wsgate_registry::{ClientConfig, EurekaClient};

use super::embedded::RegistrySource;
use super::{ServiceDirectory, Source};

/// The application name the gateway registers as, Zowe's.
pub const GATEWAY_APP: &str = "GATEWAY";

/// The client of an external Eureka cluster, the task feeding its copies to the directory, and the
/// gateway's own registration.
#[derive(Debug)]
pub struct EurekaSource {
    client: Arc<EurekaClient>,
    source: RegistrySource,
    registration: Arc<Registration>,
}

impl EurekaSource {
    /// A client for `config` whose copies feed `directory` as [`Source::Eureka`], and a
    /// registration of the gateway listening on `listen` (TLS when `tls`) with the same cluster.
    /// Nothing is fetched or registered until [`EurekaSource::spawn`].
    ///
    /// # Errors
    /// [`ConfigError`] when there is no service URL or one is not a usable `http://` or `https://` URL.
    pub fn new(config: ClientConfig, directory: &Arc<ServiceDirectory>, listen: SocketAddr, tls: bool) -> Result<EurekaSource, ConfigError> {
        let registration = Arc::new(Registration::new(&config.service_urls, config.tls.as_ref(), gateway_instance(&config, listen, tls))?);
        let client = Arc::new(EurekaClient::new(config)?);
        let source = RegistrySource::new(client.subscribe(), Source::Eureka, Arc::clone(directory));
        Ok(EurekaSource { client, source, registration })
    }

    /// The client, for its current URL and quarantine.
    pub fn client(&self) -> &Arc<EurekaClient> {
        &self.client
    }

    /// The gateway's own registration with the cluster.
    pub fn registration(&self) -> &Arc<Registration> {
        &self.registration
    }

    /// Fetches now and every fetch interval, and applies each new copy to the directory; registers
    /// the gateway and heartbeats; until `stopped` turns true (or its sender is dropped), when the
    /// registration is cancelled. The returned task ends once all three loops have stopped; the
    /// services last fetched stay in the directory.
    pub fn spawn(self, stopped: &watch::Receiver<bool>) -> JoinHandle<()> {
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move { drop(stopped.wait_for(|stop| *stop).await) };
        let EurekaSource { client, source, registration } = self;
        let follow = tokio::spawn(source.run(until_stopped(stopped.clone())));
        let register = {
            let until = until_stopped(stopped.clone());
            tokio::spawn(async move { registration.run(until).await })
        };
        let stopped = stopped.clone();
        tokio::spawn(async move {
            client.run(until_stopped(stopped)).await;
            if let Err(error) = follow.await {
                tracing::warn!(%error, "the task following the Eureka client failed");
            }
            if let Err(error) = register.await {
                tracing::warn!(%error, "the task registering the gateway with Eureka failed");
            }
        })
    }
}

/// The address other hosts are told to reach a gateway listening on `ip`: `ip` itself, or the
/// loopback address when it listens on all addresses (`0.0.0.0`, `::`). Loopback is only right
/// when the cluster's clients run on this host; set `server.address` to a reachable address
/// otherwise.
pub fn advertised_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

/// The gateway's instance, as a Zowe gateway describes itself: app `GATEWAY`, instance id
/// `{host}:gateway:{port}`, `hostName` and `ipAddr` the [`advertised_ip`] of `listen`, the
/// gateway's port as `port` (plain) or `securePort` (TLS), VIP address `gateway`, status `UP`,
/// and metadata `apiml.service.title: wsgate`. The lease follows `config.lease_renewal_interval`.
pub fn gateway_instance(config: &ClientConfig, listen: SocketAddr, tls: bool) -> InstanceDescription {
    let host = advertised_ip(listen.ip()).to_string();
    let port = listen.port();
    let authority = SocketAddr::new(advertised_ip(listen.ip()), port);
    let scheme = if tls { "https" } else { "http" };
    let instance = json!({
        "hostName": host,
        "ipAddr": host,
        "status": "UP",
        "overriddenStatus": "UNKNOWN",
        "port": {"$": port, "@enabled": (!tls).to_string()},
        "securePort": {"$": port, "@enabled": tls.to_string()},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "metadata": {
            "apiml.service.title": "wsgate",
            "apiml.service.description": "wsgate API gateway",
        },
        "homePageUrl": format!("{scheme}://{authority}/"),
        "statusPageUrl": format!("{scheme}://{authority}/"),
        "healthCheckUrl": format!("{scheme}://{authority}/"),
        "vipAddress": "gateway",
        "secureVipAddress": "gateway",
        "isCoordinatingDiscoveryServer": "false",
    });
    let instance = match instance {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    InstanceDescription {
        app: GATEWAY_APP.to_owned(),
        instance_id: format!("{host}:gateway:{port}"),
        instance,
        heartbeat_interval: config.lease_renewal_interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_describes_itself_as_zowes_does() {
        let mut config = ClientConfig::from_default_zone("http://127.0.0.1:10011/eureka");
        config.lease_renewal_interval = std::time::Duration::from_secs(1);
        let description = gateway_instance(&config, "0.0.0.0:10010".parse().unwrap(), true);
        assert_eq!(description.app, "GATEWAY");
        assert_eq!(description.instance_id, "127.0.0.1:gateway:10010");
        assert_eq!(description.instance["hostName"], "127.0.0.1");
        assert_eq!(description.instance["securePort"]["@enabled"], "true");
        assert_eq!(description.instance["port"]["@enabled"], "false");
        assert_eq!(description.instance["vipAddress"], "gateway");
        assert_eq!(description.instance["metadata"]["apiml.service.title"], "wsgate");
        assert_eq!(description.heartbeat_interval, std::time::Duration::from_secs(1));
        assert_eq!(advertised_ip("::".parse().unwrap()), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(advertised_ip("10.0.0.5".parse().unwrap()), "10.0.0.5".parse::<IpAddr>().unwrap());
    }
}
