//! Registers the demo service with a Eureka registry (wsgate's embedded one, or any Eureka server),
//! keeps its lease alive, and cancels it on shutdown.
//!
//! The protocol (register, heartbeat, re-register on 404, cancel) is wsgate's one implementation,
//! [`wsgate_registry::client::Registration`]; this module only describes the demo's instance: the
//! `apiml.routes.*` metadata from which the gateway builds the demo's routes (`ws/v1`, `api/v1`,
//! `ui/v1`), and a lease three heartbeats long, Eureka's 30 s / 90 s ratio.

use std::future::Future;
use std::time::Duration;

use serde_json::json;
use wsgate_registry::client::{InstanceDescription, Registration};

pub use wsgate_registry::client::{ConfigError as EurekaError, Lease};

/// Where to register and as what.
#[derive(Debug, Clone)]
pub struct EurekaOptions {
    /// The registry's base URL, such as `http://127.0.0.1:10011/eureka` (plain HTTP only).
    pub url: String,
    /// The application name (Eureka upper-cases it), such as `discoverableclient`.
    pub app: String,
    /// The host name or address the gateway should connect to.
    pub host: String,
    /// The port the service listens on.
    pub port: u16,
    /// The service's base path (`/discoverableclient`), from which the route metadata is made.
    pub base_path: String,
    /// How often to heartbeat; the lease is three times as long.
    pub heartbeat_interval: Duration,
}

/// A Eureka client for the demo's instance.
#[derive(Debug)]
pub struct EurekaClient {
    registration: Registration,
}

impl EurekaClient {
    /// A client registering `options`'s instance, with the id `host:app:port` (Spring's convention).
    ///
    /// # Errors
    ///
    /// [`EurekaError::InvalidUrl`] when `options.url` is not an `http://` URL.
    pub fn new(options: &EurekaOptions) -> Result<EurekaClient, EurekaError> {
        let instance_id = format!("{}:{}:{}", options.host, options.app.to_ascii_lowercase(), options.port);
        let description = InstanceDescription {
            app: options.app.clone(),
            instance_id,
            instance: instance(options),
            heartbeat_interval: options.heartbeat_interval,
        };
        let url = options.url.trim();
        if url.is_empty() {
            return Err(EurekaError::InvalidUrl { url: options.url.clone(), reason: "not a URL" });
        }
        Ok(EurekaClient { registration: Registration::new(&[url.to_owned()], description)? })
    }

    /// The instance id the registry knows this instance by.
    pub fn instance_id(&self) -> &str {
        self.registration.instance_id()
    }

    /// The registration (register, renew, cancel one at a time).
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// Registers, heartbeats and cancels once `shutdown` completes: see [`Registration::run`].
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        self.registration.run(shutdown).await;
    }
}

/// The instance as Spring's client describes it, with the demo's routes.
fn instance(options: &EurekaOptions) -> serde_json::Map<String, serde_json::Value> {
    let base = options.base_path.trim_end_matches('/');
    let authority = if options.host.contains(':') { format!("[{}]:{}", options.host, options.port) } else { format!("{}:{}", options.host, options.port) };
    let document = json!({
        "hostName": options.host,
        "ipAddr": options.host,
        "status": "UP",
        "overriddenStatus": "UNKNOWN",
        "port": {"$": options.port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "metadata": {
            "apiml.routes.ws_v1.gatewayUrl": "ws/v1",
            "apiml.routes.ws_v1.serviceUrl": format!("{base}/ws"),
            "apiml.routes.api_v1.gatewayUrl": "api/v1",
            "apiml.routes.api_v1.serviceUrl": format!("{base}/api/v1"),
            "apiml.routes.ui_v1.gatewayUrl": "ui/v1",
            "apiml.routes.ui_v1.serviceUrl": if base.is_empty() { "/" } else { base },
        },
        "homePageUrl": format!("http://{authority}{base}/"),
        "statusPageUrl": format!("http://{authority}{base}/api/v1/greeting"),
        "healthCheckUrl": format!("http://{authority}{base}/api/v1/greeting"),
        "vipAddress": options.app.to_ascii_lowercase(),
        "secureVipAddress": options.app.to_ascii_lowercase(),
        "isCoordinatingDiscoveryServer": "false",
    });
    match document {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> EurekaOptions {
        EurekaOptions {
            url: url.to_owned(),
            app: "discoverableclient".into(),
            host: "127.0.0.1".into(),
            port: 40001,
            base_path: "/discoverableclient/".into(),
            heartbeat_interval: Duration::from_secs(30),
        }
    }

    #[test]
    fn urls_and_id_follow_springs_conventions() {
        let client = EurekaClient::new(&options("http://127.0.0.1:10011/eureka/")).unwrap();
        assert_eq!(client.instance_id(), "127.0.0.1:discoverableclient:40001");
        for bad in ["https://127.0.0.1/eureka", "127.0.0.1:10011", "not a url", ""] {
            assert!(matches!(EurekaClient::new(&options(bad)), Err(EurekaError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn the_registration_carries_the_demo_routes_and_a_lease_of_three_heartbeats() {
        let client = EurekaClient::new(&options("http://127.0.0.1:10011/eureka")).unwrap();
        let document: serde_json::Value = serde_json::from_slice(client.registration().document()).unwrap();
        let instance = &document["instance"];
        assert_eq!(instance["app"], "DISCOVERABLECLIENT");
        assert_eq!(instance["port"]["$"], 40001);
        assert_eq!(instance["leaseInfo"]["durationInSecs"], 90);
        assert_eq!(instance["metadata"]["apiml.routes.ws_v1.serviceUrl"], "/discoverableclient/ws");
        assert_eq!(instance["metadata"]["apiml.routes.ui_v1.serviceUrl"], "/discoverableclient");
    }
}
