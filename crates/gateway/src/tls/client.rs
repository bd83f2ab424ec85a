//! TLS towards services: one rustls client configuration, built at start and shared by the WebSocket
//! upstream ([`crate::upstream`]) and the HTTP proxy ([`crate::proxy`]).
//!
//! - Trust: the CA certificates of `server.ssl.trustStore` ([`trust_anchors`]), else the system's
//!   roots, read once at start.
//! - The name checked is the instance's host: a DNS name is sent as SNI and matched against the
//!   certificate's DNS names, an IP literal against its IP addresses (without SNI, which RFC 6066 keeps
//!   for DNS names).
//! - A client certificate for services that ask for one (mutual TLS), when configured.
//! - `server.ssl.verifyServices: false` accepts any certificate: a warning at start, and one on every
//!   session or request to a secure instance ([`ServiceTls::warn_if_unverified`]).
//! - TLS 1.2 and 1.3 and ALPN `http/1.1`; sessions are resumed from rustls's in-memory cache, which the
//!   one shared configuration makes common to both pipelines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use thiserror::Error;
use tracing::{info, warn};

use super::pkcs12::{self, Pkcs12Error};
use super::{load_certificates, load_identity, Password, TlsError, TlsFiles, CLIENT_IDENTITY};

/// `server.ssl.verifyServices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Certificates are checked against the trust anchors, their validity dates and the instance's host.
    On,
    /// Any certificate is accepted (`verifyServices: false`).
    Off,
}

/// The `server.ssl.*` keys of TLS towards services, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTlsSettings {
    /// `trustStore`: the CA certificates to trust, a PEM bundle or a PKCS#12 file; `None` trusts the
    /// system's roots.
    pub trust_store: Option<PathBuf>,
    /// `trustStorePassword`: the PKCS#12 trust store's password (none: the empty password).
    pub trust_store_password: Option<Password>,
    /// `clientCertificate` and `clientCertificateKey`, or `clientKeyStore` and its password, when set
    /// ([`CLIENT_IDENTITY`]).
    pub client_identity: Option<TlsFiles>,
    /// `verifyServices`.
    pub verification: Verification,
}

impl Default for ServiceTlsSettings {
    fn default() -> Self {
        ServiceTlsSettings { trust_store: None, trust_store_password: None, client_identity: None, verification: Verification::On }
    }
}

/// Why TLS towards services could not be set up. Each names the config key and the file at fault.
#[derive(Debug, Error)]
pub enum ServiceTlsError {
    /// A file could not be read, or holds no valid PEM block of the kind its key asks for.
    #[error(transparent)]
    File(#[from] TlsError),
    /// The PKCS#12 trust store could not be read.
    #[error("{key}: {path}: {source}")]
    TrustStore {
        /// The config key at fault: `server.ssl.trustStore`, or `trustStorePassword` for a wrong password.
        key: &'static str,
        /// The trust store.
        path: PathBuf,
        /// Why.
        source: Pkcs12Error,
    },
    /// A certificate of the trust store cannot be a trust anchor.
    #[error("{key}: {path}: certificate {index} is not a usable CA certificate: {source}")]
    TrustAnchor {
        /// The config key of the trust store.
        key: &'static str,
        /// The trust store.
        path: PathBuf,
        /// Its position in the file, from 1.
        index: usize,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The crypto provider supports none of the protocol versions asked for.
    #[error("no usable TLS protocol version: {0}")]
    Provider(rustls::Error),
}

/// The client side of TLS towards services, built once at start; clones share the configuration.
#[derive(Debug, Clone)]
pub struct ServiceTls {
    config: Arc<ClientConfig>,
    verification: Verification,
}

impl ServiceTls {
    /// Loads the trust anchors and the client identity of `settings` and builds the configuration.
    /// Logs a warning when verification is off.
    ///
    /// # Errors
    ///
    /// [`ServiceTlsError`] naming the key and the file that could not be used.
    pub fn new(settings: &ServiceTlsSettings) -> Result<ServiceTls, ServiceTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions().map_err(ServiceTlsError::Provider)?;
        let builder = match (settings.verification, &settings.trust_store) {
            (Verification::On, Some(path)) => {
                let roots = trust_anchors(SERVICE_TRUST_STORE, path, settings.trust_store_password.as_ref())?;
                info!(trust_store = %path.display(), certificates = roots.len(), "TLS towards services trusts the CA certificates of server.ssl.trustStore");
                builder.with_root_certificates(roots)
            }
            (Verification::On, None) => builder.with_root_certificates(wsgate_registry::client::system_roots("secure services (server.ssl.trustStore is not set)")),
            (Verification::Off, trust_store) => {
                warn!(
                    trust_store = ?trust_store,
                    "server.ssl.verifyServices is false: certificates of secure services and of https Eureka URLs are NOT verified; \
                     anyone on the network path can impersonate them (the trust store is not read)"
                );
                builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            }
        };
        let mut config = match &settings.client_identity {
            None => builder.with_no_client_auth(),
            Some(files) => {
                let (chain, key) = load_identity(files, CLIENT_IDENTITY)?;
                builder.with_client_auth_cert(chain, key).map_err(|source| TlsError::Identity { files: files.describe(CLIENT_IDENTITY), source })?
            }
        };
        // The WebSocket upgrade and the proxy's client both speak HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServiceTls { config: Arc::new(config), verification: settings.verification })
    }

    /// The shared rustls configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Logs a warning naming `url` when verification is off: called for every session or request
    /// that goes to a secure instance.
    pub fn warn_if_unverified(&self, url: &str) {
        if self.verification == Verification::Off {
            warn!(url, "TLS towards the service is not verified (server.ssl.verifyServices: false)");
        }
    }
}

/// The config keys naming a trust store and its password, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustStoreKeys {
    /// The trust store's key, such as `server.ssl.trustStore`.
    pub store: &'static str,
    /// Its password's key, such as `server.ssl.trustStorePassword`.
    pub password: &'static str,
}

/// `server.ssl.trustStore` and `server.ssl.trustStorePassword`.
pub const SERVICE_TRUST_STORE: TrustStoreKeys = TrustStoreKeys { store: "server.ssl.trustStore", password: "server.ssl.trustStorePassword" };

/// The trust anchors of the trust store at `path`, named by the config keys `keys` in its errors: a
/// PEM bundle of CA certificates, or a PKCS#12 file (as Zowe's truststores are) read with `password`
/// (none: the empty password).
///
/// # Errors
///
/// [`ServiceTlsError`] naming `keys.store` (or `keys.password`) and `path` when the file cannot be read,
/// holds no certificate, is a PKCS#12 file the password does not open, or holds a certificate that
/// cannot be a trust anchor.
pub fn trust_anchors(keys: TrustStoreKeys, path: &Path, password: Option<&Password>) -> Result<RootCertStore, ServiceTlsError> {
    // A PKCS#12 file is DER, a SEQUENCE (0x30); PEM is text.
    let certificates = if std::fs::read(path).is_ok_and(|bytes| bytes.first() == Some(&0x30)) {
        let store = pkcs12::load(path, password.map_or("", |password| password.0.as_str())).map_err(|source| {
            let key = if matches!(source, Pkcs12Error::WrongPassword) { keys.password } else { keys.store };
            ServiceTlsError::TrustStore { key, path: path.to_owned(), source }
        })?;
        if store.certificates.is_empty() {
            return Err(ServiceTlsError::TrustStore { key: keys.store, path: path.to_owned(), source: Pkcs12Error::NoCertificate });
        }
        store.certificates
    } else {
        load_certificates(keys.store, path)?
    };
    let mut roots = RootCertStore::empty();
    for (index, certificate) in certificates.into_iter().enumerate() {
        roots.add(certificate).map_err(|source| ServiceTlsError::TrustAnchor { key: keys.store, path: path.to_owned(), index: index + 1, source })?;
    }
    Ok(roots)
}

/// The verifier of `verifyServices: false`: any certificate is accepted, for any name and at any date.
/// The handshake signatures are still checked, so the session is at least keyed to the certificate
/// the service presented.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(&self, message: &[u8], certificate: &CertificateDer<'_>, signed: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, signed, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(&self, message: &[u8], certificate: &CertificateDer<'_>, signed: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, certificate, signed, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of this test process under the system's temporary folder.
    fn file(name: &str, contents: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("wsgate-tls-client-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_trust_store_that_is_neither_pem_nor_pkcs12_is_refused_naming_the_key_and_the_file() {
        // The start of a DER (PKCS#12-like) file, then garbage.
        let der = file("truststore.p12", &[0x30, 0x82, 0x01, 0x00, 0xff, 0x00, b'\n', 0x80]);
        let text = file("truststore.txt", b"no certificate here\n");
        for (path, says) in [(&der, "not a PKCS#12 keystore"), (&text, "no valid PEM certificate")] {
            let error = trust_anchors(SERVICE_TRUST_STORE, path, None).unwrap_err().to_string();
            let _ = std::fs::remove_file(path);
            assert!(error.starts_with("server.ssl.trustStore: ") && error.contains(&*path.to_string_lossy()), "{error}");
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn a_missing_trust_store_is_refused_naming_the_key_and_the_file() {
        let path = std::env::temp_dir().join("wsgate-no-such-truststore.pem");
        let settings = ServiceTlsSettings { trust_store: Some(path.clone()), ..ServiceTlsSettings::default() };
        let error = ServiceTls::new(&settings).unwrap_err().to_string();
        assert!(error.starts_with("server.ssl.trustStore: cannot read ") && error.contains(&*path.to_string_lossy()), "{error}");
    }

    #[test]
    fn client_certificate_files_are_named_in_errors() {
        let key = file("not-a-key.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let missing = std::env::temp_dir().join("wsgate-no-such-client.pem");
        let identity = |certificate: &Path, key: &Path| ServiceTlsSettings {
            client_identity: Some(TlsFiles::Pem { certificate: certificate.to_owned(), key: key.to_owned() }),
            verification: Verification::Off,
            ..ServiceTlsSettings::default()
        };
        let error = ServiceTls::new(&identity(&missing, &key)).unwrap_err().to_string();
        assert!(error.starts_with("server.ssl.clientCertificate: cannot read ") && error.contains(&*missing.to_string_lossy()), "{error}");
        let error = ServiceTls::new(&identity(&key, &key)).unwrap_err().to_string();
        let _ = std::fs::remove_file(&key);
        assert!(error.starts_with("server.ssl.clientCertificateKey: ") && error.contains("no valid PEM private key"), "{error}");
    }

    #[test]
    fn one_configuration_offering_http_1_1_whether_verified_or_not() {
        let verified = ServiceTls::new(&ServiceTlsSettings::default()).unwrap();
        assert_eq!(verified.config().alpn_protocols, [b"http/1.1".to_vec()]);
        assert_eq!(verified.verification, Verification::On);
        // Verification off reads no trust store, so a missing one is no error.
        let settings = ServiceTlsSettings { trust_store: Some("/nonexistent/ca.pem".into()), trust_store_password: None, client_identity: None, verification: Verification::Off };
        let unverified = ServiceTls::new(&settings).unwrap();
        assert_eq!(unverified.verification, Verification::Off);
        let clone = unverified.clone();
        assert!(Arc::ptr_eq(clone.config(), unverified.config()), "clones share the one configuration");
    }
}
