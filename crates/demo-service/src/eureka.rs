//! A small Eureka client: registers the demo service with a Eureka registry (wsgate's embedded one,
//! or any Eureka server), keeps its lease alive, and cancels it on shutdown.
//!
//! It speaks the REST protocol as Spring's client does (JSON both ways): `POST {url}/apps/{APP}`
//! with the instance (answered 204), a heartbeat `PUT {url}/apps/{APP}/{ID}` every
//! [`EurekaOptions::heartbeat_interval`] (200; 404 means the registry has no lease, so the client
//! registers again at once), and `DELETE {url}/apps/{APP}/{ID}` when it stops. The instance carries
//! the `apiml.routes.*` metadata from which the gateway builds the demo's routes (`ws/v1`, `api/v1`,
//! `ui/v1`), and a lease three heartbeats long, Eureka's 30 s / 90 s ratio.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::json;
use tracing::{info, warn};

/// How long one request to the registry may take (Eureka's clients use 5 s to connect, 8 s to read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause after a failed registration; it doubles up to the heartbeat interval.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// What a path segment may hold unencoded (RFC 3986 unreserved characters).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

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

/// Why a request to the registry failed.
///
/// The `Display` text is meant for people and is not a contract; match on the variants.
#[derive(Debug, thiserror::Error)]
pub enum EurekaError {
    /// The registry URL is not an `http://` URL.
    #[error("invalid Eureka URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request could not be sent or its answer not read.
    #[error("{method} {url}: {source}")]
    Request {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry did not answer in time.
    #[error("{method} {url}: no answer within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
    },
    /// The registry answered with a status the protocol does not expect.
    #[error("{method} {url}: answered {status}")]
    Status {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The status.
        status: StatusCode,
    },
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The lease was renewed.
    Renewed,
    /// The registry has no lease for this instance (404): register again.
    Unknown,
}

/// A Eureka client for one instance.
#[derive(Debug)]
pub struct EurekaClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `{url}/apps/{APP}`.
    app_url: String,
    /// `{url}/apps/{APP}/{ID}`, the id percent-encoded.
    instance_url: String,
    instance_id: String,
    /// The registration document, made once: it never changes.
    registration: Bytes,
    last_dirty_timestamp: u64,
    heartbeat_interval: Duration,
}

impl EurekaClient {
    /// A client registering `options`'s instance, with the id `host:app:port` (Spring's convention).
    ///
    /// # Errors
    ///
    /// [`EurekaError::InvalidUrl`] when `options.url` is not an `http://` URL.
    pub fn new(options: &EurekaOptions) -> Result<EurekaClient, EurekaError> {
        let invalid = |reason| EurekaError::InvalidUrl { url: options.url.clone(), reason };
        let base = options.url.trim().trim_end_matches('/');
        let uri: Uri = base.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(invalid("expected http://HOST:PORT/eureka (the client speaks plain HTTP only)"));
        }
        let app = options.app.to_ascii_uppercase();
        let instance_id = format!("{}:{}:{}", options.host, options.app.to_ascii_lowercase(), options.port);
        let app_url = format!("{base}/apps/{}", utf8_percent_encode(&app, SEGMENT));
        let instance_url = format!("{app_url}/{}", utf8_percent_encode(&instance_id, SEGMENT));
        let last_dirty_timestamp = now_ms();
        let registration = registration(options, &app, &instance_id, last_dirty_timestamp);
        let client = Client::builder(TokioExecutor::new()).build_http();
        // Eureka counts leases in whole seconds.
        let heartbeat_interval = options.heartbeat_interval.max(Duration::from_secs(1));
        Ok(EurekaClient { client, app_url, instance_url, instance_id, registration, last_dirty_timestamp, heartbeat_interval })
    }

    /// The instance id the registry knows this instance by.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Registers the instance (`POST`, answered 204).
    ///
    /// # Errors
    ///
    /// [`EurekaError`] when the request fails or gets another status.
    pub async fn register(&self) -> Result<(), EurekaError> {
        match self.send(Method::POST, &self.app_url, self.registration.clone()).await? {
            StatusCode::NO_CONTENT => Ok(()),
            status => Err(EurekaError::Status { method: Method::POST, url: self.app_url.clone(), status }),
        }
    }

    /// Renews the lease (`PUT`).
    ///
    /// # Errors
    ///
    /// [`EurekaError`] when the request fails or gets a status other than 200 or 404.
    pub async fn renew(&self) -> Result<Lease, EurekaError> {
        let url = format!("{}?status=UP&lastDirtyTimestamp={}", self.instance_url, self.last_dirty_timestamp);
        match self.send(Method::PUT, &url, Bytes::new()).await? {
            StatusCode::OK => Ok(Lease::Renewed),
            StatusCode::NOT_FOUND => Ok(Lease::Unknown),
            status => Err(EurekaError::Status { method: Method::PUT, url, status }),
        }
    }

    /// Cancels the lease (`DELETE`); a registry that has no lease (404) is fine too.
    ///
    /// # Errors
    ///
    /// [`EurekaError`] when the request fails or gets another status.
    pub async fn cancel(&self) -> Result<(), EurekaError> {
        match self.send(Method::DELETE, &self.instance_url, Bytes::new()).await? {
            StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            status => Err(EurekaError::Status { method: Method::DELETE, url: self.instance_url.clone(), status }),
        }
    }

    /// Registers (retrying with back-off until it works), heartbeats, registers again when the
    /// registry lost the lease, and cancels the lease once `shutdown` completes. Failures are
    /// logged, never fatal: a registry may come and go.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the lease to expire instead of cancelling it.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut registered = false;
        let mut retry = FIRST_RETRY;
        loop {
            let step = async {
                if registered {
                    match self.renew().await {
                        Ok(Lease::Renewed) => (true, self.heartbeat_interval),
                        Ok(Lease::Unknown) => {
                            info!(instance = %self.instance_id, "the registry has no lease for this instance; registering again");
                            (false, Duration::ZERO)
                        }
                        Err(error) => {
                            warn!(%error, "heartbeat failed");
                            (true, self.heartbeat_interval)
                        }
                    }
                } else {
                    match self.register().await {
                        Ok(()) => {
                            info!(instance = %self.instance_id, url = %self.app_url, "registered");
                            (true, self.heartbeat_interval)
                        }
                        Err(error) => {
                            warn!(%error, retry_in = ?retry, "registration failed");
                            (false, retry)
                        }
                    }
                }
            };
            // Shutdown first, also while a request is in flight: stopping must not wait for a slow registry.
            let (now_registered, pause) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                outcome = step => outcome,
            };
            retry = if now_registered || pause.is_zero() { FIRST_RETRY } else { (retry * 2).min(self.heartbeat_interval) };
            registered = now_registered;
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        // A registration may have been in flight when the stop came: cancel whatever the registry holds.
        match self.cancel().await {
            Ok(()) => info!(instance = %self.instance_id, "registration cancelled"),
            Err(error) => warn!(%error, "cannot cancel the registration; the lease will expire"),
        }
    }

    /// Sends one request and returns the status, with the body read (so the connection is reused).
    async fn send(&self, method: Method, url: &str, body: Bytes) -> Result<StatusCode, EurekaError> {
        let request_error = |source: Box<dyn std::error::Error + Send + Sync>| EurekaError::Request { method: method.clone(), url: url.to_owned(), source };
        let request = Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|error| request_error(error.into()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| request_error(error.into()))?;
            let status = response.status();
            response.into_body().collect().await.map_err(|error| request_error(error.into()))?;
            Ok(status)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.unwrap_or_else(|_| Err(EurekaError::Timeout { method, url: url.to_owned() }))
    }
}

/// The registration document: the instance as Spring's client describes it, with the demo's routes.
fn registration(options: &EurekaOptions, app: &str, instance_id: &str, last_dirty_timestamp: u64) -> Bytes {
    let base = options.base_path.trim_end_matches('/');
    let authority = if options.host.contains(':') { format!("[{}]:{}", options.host, options.port) } else { format!("{}:{}", options.host, options.port) };
    let renewal_secs = options.heartbeat_interval.as_secs().max(1);
    let document = json!({"instance": {
        "instanceId": instance_id,
        "hostName": options.host,
        "app": app,
        "ipAddr": options.host,
        "status": "UP",
        "overriddenStatus": "UNKNOWN",
        "port": {"$": options.port, "@enabled": "true"},
        "securePort": {"$": 443, "@enabled": "false"},
        "countryId": 1,
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"},
        "leaseInfo": {"renewalIntervalInSecs": renewal_secs, "durationInSecs": renewal_secs * 3},
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
        "lastUpdatedTimestamp": last_dirty_timestamp.to_string(),
        "lastDirtyTimestamp": last_dirty_timestamp.to_string(),
    }});
    Bytes::from(document.to_string())
}

/// Milliseconds since the Unix epoch (0 for a clock before 1970).
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
        assert_eq!(client.app_url, "http://127.0.0.1:10011/eureka/apps/DISCOVERABLECLIENT");
        assert_eq!(client.instance_url, "http://127.0.0.1:10011/eureka/apps/DISCOVERABLECLIENT/127.0.0.1%3Adiscoverableclient%3A40001");
        for bad in ["https://127.0.0.1/eureka", "127.0.0.1:10011", "not a url", ""] {
            assert!(matches!(EurekaClient::new(&options(bad)), Err(EurekaError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn the_registration_carries_the_demo_routes_and_a_lease_of_three_heartbeats() {
        let client = EurekaClient::new(&options("http://127.0.0.1:10011/eureka")).unwrap();
        let document: serde_json::Value = serde_json::from_slice(&client.registration).unwrap();
        let instance = &document["instance"];
        assert_eq!(instance["app"], "DISCOVERABLECLIENT");
        assert_eq!(instance["port"]["$"], 40001);
        assert_eq!(instance["leaseInfo"]["durationInSecs"], 90);
        assert_eq!(instance["metadata"]["apiml.routes.ws_v1.serviceUrl"], "/discoverableclient/ws");
        assert_eq!(instance["metadata"]["apiml.routes.ui_v1.serviceUrl"], "/discoverableclient");
    }
}
