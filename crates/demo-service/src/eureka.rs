//! Registers the demo service with a Eureka registry (wsgate's embedded one, or any Eureka server),
//! keeps its lease alive, and cancels it on shutdown.
//!
//! The protocol (register, heartbeat, re-register on 404, cancel) is wsgate's one implementation,
//! [`wsgate_registry::client::Registration`]; this module only describes the demo's instance: the
//! `apiml.routes.*` metadata from which the gateway builds the demo's routes (`ws/v1`, `api/v1`,
//! `ui/v1`), and a lease three heartbeats long, Eureka's 30 s / 90 s ratio. For an `https` registry,
//! [`registry_tls`] makes the TLS configuration of `--registry-ca`, `--registry-cert` and
//! `--registry-key`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use serde_json::json;
use wsgate_registry::client::{self, InstanceDescription, Registration};

pub use wsgate_registry::client::{ConfigError as EurekaError, Lease};

/// Where to register and as what. `Debug` shows the URL without its password.
#[derive(Clone)]
pub struct EurekaOptions {
    /// The registry's base URL, such as `http://127.0.0.1:10011/eureka` or `https://…`.
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

impl std::fmt::Debug for EurekaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EurekaOptions")
            .field("url", &client::redacted(&self.url))
            .field("app", &self.app)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("base_path", &self.base_path)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .finish()
    }
}

/// A Eureka client for the demo's instance.
#[derive(Debug)]
pub struct EurekaClient {
    registration: Registration,
}

impl EurekaClient {
    /// A client registering `options`'s instance, with the id `host:app:port` (Spring's convention);
    /// an https registry is verified against the system's root certificates.
    ///
    /// # Errors
    ///
    /// [`EurekaError::InvalidUrl`] when `options.url` is not an `http://` or `https://` URL.
    pub fn new(options: &EurekaOptions) -> Result<EurekaClient, EurekaError> {
        EurekaClient::with_tls(options, None)
    }

    /// As [`EurekaClient::new`], with `tls` for an https registry (see [`registry_tls`]).
    ///
    /// # Errors
    ///
    /// As [`EurekaClient::new`].
    pub fn with_tls(options: &EurekaOptions, tls: Option<Arc<rustls::ClientConfig>>) -> Result<EurekaClient, EurekaError> {
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
        Ok(EurekaClient { registration: Registration::new(&[url.to_owned()], tls.as_ref(), description)? })
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

/// Why the TLS files of an https registry cannot be used; each names its flag and file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryTlsError {
    /// A file cannot be read or holds nothing usable of what its flag asks for.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The command-line flag, such as `--registry-ca`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the client certificate and key (such as a key of another certificate).
    #[error("--registry-cert {certificate} with --registry-key {key}: {source}")]
    Identity {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls offers no usable protocol version (not expected with its ring provider).
    #[error("cannot set up TLS towards the registry: {0}")]
    Tls(#[source] rustls::Error),
    /// The registry flags were given for a plain `http://` registry, which would not use them.
    #[error("--registry-ca, --registry-cert and --registry-key are for an https:// --eureka-url; this one is plain http")]
    NotHttps,
}

/// The TLS configuration towards an https registry: the CA certificates of the PEM file `ca` (`None`:
/// the system's roots) and, for a registry that asks for one, the PEM client certificate chain and
/// key of `identity` (`--registry-cert`, `--registry-key`). `None` when neither is given: the registry
/// client then trusts the system's roots by itself.
///
/// # Errors
///
/// [`RegistryTlsError`] naming the flag and the file that cannot be used.
pub fn registry_tls(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Option<Arc<rustls::ClientConfig>>, RegistryTlsError> {
    if ca.is_none() && identity.is_none() {
        return Ok(None);
    }
    let roots = match ca {
        None => client::system_roots("https registry URLs"),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("--registry-ca", path)? {
                roots.add(certificate).map_err(|error| file_error("--registry-ca", path, format!("not a usable CA certificate: {error}")))?;
            }
            roots
        }
    };
    let config = match identity {
        None => client::tls_config(roots, None).map_err(RegistryTlsError::Tls)?,
        Some((certificate, key)) => {
            let chain = certificates("--registry-cert", certificate)?;
            let private_key = PrivateKeyDer::from_pem_file(key).map_err(|error| file_error("--registry-key", key, format!("no usable PEM private key: {error}")))?;
            client::tls_config(roots, Some((chain, private_key)))
                .map_err(|source| RegistryTlsError::Identity { certificate: certificate.to_owned(), key: key.to_owned(), source })?
        }
    };
    Ok(Some(Arc::new(config)))
}

/// The PEM certificates of `path`, at least one.
fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, RegistryTlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| file_error(flag, path, error.to_string()))?;
    if certificates.is_empty() {
        return Err(file_error(flag, path, "no PEM certificate in it".into()));
    }
    Ok(certificates)
}

fn file_error(flag: &'static str, path: &Path, reason: String) -> RegistryTlsError {
    RegistryTlsError::File { flag, path: path.to_owned(), reason }
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
        assert!(EurekaClient::new(&options("https://127.0.0.1:10011/eureka")).is_ok());
        for bad in ["ftp://127.0.0.1/eureka", "127.0.0.1:10011", "not a url", ""] {
            assert!(matches!(EurekaClient::new(&options(bad)), Err(EurekaError::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn registry_tls_errors_name_the_flag_and_the_file() {
        let dir = std::env::temp_dir().join(format!("wsgate-demo-registry-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        let cases = [
            (registry_tls(Some(&missing), None), "--registry-ca", &missing),
            (registry_tls(Some(&empty), None), "--registry-ca", &empty),
            (registry_tls(None, Some((&missing, &empty))), "--registry-cert", &missing),
        ];
        for (result, flag, path) in cases {
            let error = result.unwrap_err().to_string();
            assert!(error.starts_with(&format!("{flag} {}: ", path.display())), "{error}");
        }
        assert!(registry_tls(None, None).unwrap().is_none(), "no flag: the registry client's system roots");
        std::fs::remove_dir_all(&dir).unwrap();
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
