//! Registering one instance with a Eureka cluster: register, heartbeat, cancel (EUREKA.md, "Client
//! semantics"), with failover across the service URLs as the fetch side does it.
//!
//! It speaks the REST protocol as Spring's client does (JSON both ways): `POST {url}/apps/{APP}`
//! with the instance (answered 204), a heartbeat `PUT {url}/apps/{APP}/{ID}` every
//! [`Registration::heartbeat_interval`] (200; 404 means the registry has no lease, so the client
//! registers again at once), and `DELETE {url}/apps/{APP}/{ID}` when it stops. A request that
//! cannot be sent, times out or is answered 5xx quarantines that URL and moves on to the next one
//! (see `endpoints`). `https` URLs use the rustls configuration given to [`Registration::new`] (see
//! `tls`).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;
use tracing::{info, warn};

use super::endpoints::Endpoints;
use super::service_url::ServiceUrl;
use super::error::{AttemptError, ConfigError};
use super::tls::{self, Connector};
use crate::credentials::Credentials;

/// How long one request to the registry may take (Eureka's clients use 5 s to connect, 8 s to read).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause after a failed registration; it doubles up to the heartbeat interval.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// What a path segment may hold unencoded (RFC 3986 unreserved characters).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The instance to register, as the caller describes it.
#[derive(Debug, Clone)]
pub struct InstanceDescription {
    /// The application name; Eureka upper-cases it.
    pub app: String,
    /// The instance id, such as `host:app:port` (Spring's convention).
    pub instance_id: String,
    /// The `instance` object of the registration document (`hostName`, `port`, `metadata`, …).
    /// `app`, `instanceId`, `leaseInfo`, `lastUpdatedTimestamp` and `lastDirtyTimestamp` are set
    /// by [`Registration::new`].
    pub instance: serde_json::Map<String, serde_json::Value>,
    /// How often to heartbeat (at least 1 s); the lease is three times as long, Eureka's 30 s / 90 s.
    pub heartbeat_interval: Duration,
}

/// Why a registration request failed.
///
/// The `Display` text is meant for people and is not a contract; match on the variants.
#[derive(Debug, Error)]
pub enum RegisterError {
    /// No service URL answered (IO error, time-out or 5xx at each); `last` is the last failure.
    #[error("{method} {path}: no Eureka service URL answered ({last})")]
    AllFailed {
        /// The request's method.
        method: Method,
        /// The request's path below the service URL.
        path: String,
        /// The last failure.
        last: String,
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

/// The registration of one instance with a Eureka cluster.
#[derive(Debug)]
pub struct Registration {
    client: Client<Connector, Full<Bytes>>,
    endpoints: Mutex<Endpoints>,
    /// `/apps/{APP}`.
    app_path: String,
    /// `/apps/{APP}/{ID}`, the id percent-encoded.
    instance_path: String,
    instance_id: String,
    /// The registration document, made once: it never changes.
    document: Bytes,
    last_dirty_timestamp: u64,
    heartbeat_interval: Duration,
}

impl Registration {
    /// A registration of `description` with the cluster at `service_urls` (tried in this order,
    /// `http[s]://[USER:PASSWORD@]HOST[:PORT][/PATH]`), with `tls` for the https ones (`None`: the
    /// system's root certificates, no client certificate). Nothing is sent until [`Registration::run`]
    /// or [`Registration::register`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when there is no URL or one is not a usable `http://` or `https://` URL.
    pub fn new(service_urls: &[String], tls: Option<&Arc<rustls::ClientConfig>>, description: InstanceDescription) -> Result<Registration, ConfigError> {
        let urls = service_urls.iter().filter(|url| !url.trim().is_empty()).map(|url| ServiceUrl::parse(url)).collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(ConfigError::NoServiceUrls);
        }
        let app = description.app.to_ascii_uppercase();
        let app_path = format!("/apps/{}", utf8_percent_encode(&app, SEGMENT));
        let instance_path = format!("{app_path}/{}", utf8_percent_encode(&description.instance_id, SEGMENT));
        // Eureka counts leases in whole seconds.
        let heartbeat_interval = Duration::from_secs(description.heartbeat_interval.as_secs().max(1));
        let renewal_secs = heartbeat_interval.as_secs();
        let last_dirty_timestamp = now_ms();
        let mut instance = description.instance;
        instance.insert("app".into(), app.into());
        instance.insert("instanceId".into(), description.instance_id.clone().into());
        instance.insert("leaseInfo".into(), serde_json::json!({"renewalIntervalInSecs": renewal_secs, "durationInSecs": renewal_secs * 3}));
        instance.insert("lastUpdatedTimestamp".into(), last_dirty_timestamp.to_string().into());
        instance.insert("lastDirtyTimestamp".into(), last_dirty_timestamp.to_string().into());
        let document = Bytes::from(serde_json::json!({ "instance": instance }).to_string());
        Ok(Registration {
            client: Client::builder(TokioExecutor::new()).build(tls::connector(tls, &urls, REQUEST_TIMEOUT)?),
            endpoints: Mutex::new(Endpoints::new(urls)),
            app_path,
            instance_path,
            instance_id: description.instance_id,
            document,
            last_dirty_timestamp,
            heartbeat_interval,
        })
    }

    /// The instance id the registry knows this instance by.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// How often [`Registration::run`] heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    /// The registration document sent with `POST`.
    pub fn document(&self) -> &Bytes {
        &self.document
    }

    /// Registers the instance (`POST`, answered 204).
    ///
    /// # Errors
    ///
    /// [`RegisterError`] when no URL answers or the answer is another status.
    pub async fn register(&self) -> Result<(), RegisterError> {
        match self.send(Method::POST, &self.app_path, self.document.clone()).await? {
            (_, StatusCode::NO_CONTENT) => Ok(()),
            (url, status) => Err(RegisterError::Status { method: Method::POST, url, status }),
        }
    }

    /// Renews the lease (`PUT`).
    ///
    /// # Errors
    ///
    /// [`RegisterError`] when no URL answers or the answer is neither 200 nor 404.
    pub async fn renew(&self) -> Result<Lease, RegisterError> {
        let path = format!("{}?status=UP&lastDirtyTimestamp={}", self.instance_path, self.last_dirty_timestamp);
        match self.send(Method::PUT, &path, Bytes::new()).await? {
            (_, StatusCode::OK) => Ok(Lease::Renewed),
            (_, StatusCode::NOT_FOUND) => Ok(Lease::Unknown),
            (url, status) => Err(RegisterError::Status { method: Method::PUT, url, status }),
        }
    }

    /// Cancels the lease (`DELETE`); a registry that has no lease (404) is fine too.
    ///
    /// # Errors
    ///
    /// [`RegisterError`] when no URL answers or the answer is another status.
    pub async fn cancel(&self) -> Result<(), RegisterError> {
        match self.send(Method::DELETE, &self.instance_path, Bytes::new()).await? {
            (_, StatusCode::OK | StatusCode::NOT_FOUND) => Ok(()),
            (url, status) => Err(RegisterError::Status { method: Method::DELETE, url, status }),
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
                            info!(instance = %self.instance_id, path = %self.app_path, "registered with Eureka");
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
            Ok(()) => info!(instance = %self.instance_id, "Eureka registration cancelled"),
            Err(error) => warn!(%error, "cannot cancel the Eureka registration; the lease will expire"),
        }
    }

    fn lock_endpoints(&self) -> std::sync::MutexGuard<'_, Endpoints> {
        // Plain indices updated in single steps: consistent even after a panic elsewhere.
        self.endpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends one request with failover: each URL at most once, the sticky one first. Returns the
    /// URL that answered and its status (not 5xx), with the body read so the connection is reused.
    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<(String, StatusCode), RegisterError> {
        let mut tried = Vec::new();
        let mut last = String::from("no URL to try");
        loop {
            let picked = {
                let mut endpoints = self.lock_endpoints();
                endpoints.pick(&tried).map(|index| (index, endpoints.url(index).to_owned(), endpoints.credential(index).map(Credentials::header_value)))
            };
            let Some((index, base, authorization)) = picked else {
                return Err(RegisterError::AllFailed { method, path: path.to_owned(), last });
            };
            tried.push(index);
            let url = format!("{base}{path}");
            match self.attempt(method.clone(), &url, authorization, body.clone()).await {
                Ok(status) if !status.is_server_error() => {
                    self.lock_endpoints().succeeded(index);
                    return Ok((url, status));
                }
                Ok(status) => last = format!("{url}: answered {status}"),
                Err(error) => last = format!("{url}: {error}"),
            }
            // Each failure is told, also when a later URL answers: a URL that always fails (a TLS
            // misconfiguration, say) must not go unnoticed behind one that works.
            warn!(failure = %last, "Eureka registration request failed on this service URL");
            self.lock_endpoints().failed(index);
        }
    }

    /// One request to one URL.
    async fn attempt(&self, method: Method, url: &str, authorization: Option<HeaderValue>, body: Bytes) -> Result<StatusCode, AttemptError> {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|error| AttemptError::Io(error.into()))?;
        if let Some(authorization) = authorization {
            request.headers_mut().insert(header::AUTHORIZATION, authorization);
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(tls::request_error)?;
            let status = response.status();
            response.into_body().collect().await.map_err(|error| AttemptError::Io(error.into()))?;
            Ok(status)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.unwrap_or(Err(AttemptError::Timeout(REQUEST_TIMEOUT)))
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before 1970).
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn description() -> InstanceDescription {
        let mut instance = serde_json::Map::new();
        instance.insert("hostName".into(), "127.0.0.1".into());
        InstanceDescription { app: "gateway".into(), instance_id: "127.0.0.1:gateway:10010".into(), instance, heartbeat_interval: Duration::from_secs(30) }
    }

    #[test]
    fn paths_document_and_lease_follow_eureka() {
        let registration = Registration::new(&["http://127.0.0.1:10011/eureka/".to_owned()], None, description()).unwrap();
        assert_eq!(registration.app_path, "/apps/GATEWAY");
        assert_eq!(registration.instance_path, "/apps/GATEWAY/127.0.0.1%3Agateway%3A10010");
        let document: serde_json::Value = serde_json::from_slice(registration.document()).unwrap();
        assert_eq!(document["instance"]["app"], "GATEWAY");
        assert_eq!(document["instance"]["instanceId"], "127.0.0.1:gateway:10010");
        assert_eq!(document["instance"]["hostName"], "127.0.0.1");
        assert_eq!(document["instance"]["leaseInfo"]["durationInSecs"], 90);
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(Registration::new(&[" ".to_owned()], None, description()), Err(ConfigError::NoServiceUrls)));
        for url in ["ftp://a/eureka", "a:1/eureka", "not a url", "http://a/eureka?x=1", "https://a/eureka?x=1"] {
            assert!(matches!(Registration::new(&[url.to_owned()], None, description()), Err(ConfigError::InvalidUrl { .. })), "{url}");
        }
        assert!(Registration::new(&["http://a/eureka".to_owned(), "https://b/eureka".to_owned()], None, description()).is_ok());
    }
}
