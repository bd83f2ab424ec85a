//! Client-facing TLS: the gateway's certificate and key, from PEM files or a PKCS#12 keystore, in the rustls
//! server configuration that serves wss and https on the gateway's port.
//!
//! The configuration asks a [`ServerIdentity`] for the certificate on every handshake, so
//! [`ServerIdentity::reload`] (on SIGHUP) changes what new handshakes present without touching the
//! listeners or the sessions already open.
//!
//! TLS towards services is in [`client`]; both sides load PEM files through [`load_certificates`] and
//! [`load_private_key`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;

pub mod client;
mod ec_key;
pub mod pkcs12;
mod read_ahead;
pub mod registry;

pub use read_ahead::ReadAhead;

/// Where the gateway's certificate and key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFiles {
    /// `server.ssl.certificate` and `server.ssl.certificateKey`.
    Pem {
        /// The PEM certificate chain, the gateway's own certificate first.
        certificate: PathBuf,
        /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
    /// `server.ssl.keyStore` and `server.ssl.keyStorePassword`.
    KeyStore {
        /// The PKCS#12 file, holding one private key and its chain.
        path: PathBuf,
        /// Its password.
        password: Password,
    },
}

impl fmt::Display for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFiles::Pem { certificate, key } => write!(f, "{CERTIFICATE_KEY} {} with {KEY_KEY} {}", certificate.display(), key.display()),
            TlsFiles::KeyStore { path, .. } => write!(f, "{KEY_STORE_KEY} {}", path.display()),
        }
    }
}

/// A password from the configuration; `Debug` does not show it, so it stays out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `password`.
    pub fn new(password: String) -> Password {
        Password(password)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The config keys of the files, for messages.
const CERTIFICATE_KEY: &str = "server.ssl.certificate";
const KEY_KEY: &str = "server.ssl.certificateKey";
const KEY_STORE_KEY: &str = "server.ssl.keyStore";
const KEY_STORE_PASSWORD_KEY: &str = "server.ssl.keyStorePassword";

/// Why the TLS identity could not be loaded. Each names the config key and the file at fault.
#[derive(Debug, Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        /// The config key that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file holds no PEM block of the expected kind, or a malformed one.
    #[error("{key}: {path}: no valid PEM {what} in it ({message})")]
    Pem {
        /// The config key that names the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The keystore could not be read, decrypted or used.
    #[error("{key}: {path}: {source}")]
    KeyStore {
        /// `server.ssl.keyStorePassword` for a wrong password, else `server.ssl.keyStore`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: pkcs12::Pkcs12Error,
    },
    /// The keystore holds certificates only.
    #[error("{KEY_STORE_KEY}: {0}: no private key in it (a keystore for the gateway holds its key and certificate chain; this looks like a trust store)")]
    NoKey(PathBuf),
    /// rustls refused the pair, e.g. a key that does not belong to the certificate.
    #[error("{files}: {source}")]
    Identity {
        /// The files.
        files: TlsFiles,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The gateway's current certificate and key, handed to every new TLS handshake.
pub struct ServerIdentity {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerIdentity {
    /// Loads the certificate and key named by `files`.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file that could not be used.
    pub fn load(files: TlsFiles) -> Result<ServerIdentity, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = RwLock::new(certified_key(&files, &provider)?);
        Ok(ServerIdentity { files, provider, current })
    }

    /// Reads the files again; new handshakes use what they hold from now on. When they cannot be used,
    /// nothing changes: the previous certificate stays in use.
    ///
    /// # Errors
    ///
    /// [`TlsError`] naming the file that could not be used.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The files it reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ServerIdentity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

/// Builds the server configuration presenting `identity`: TLS 1.2 and 1.3, ALPN `http/1.1` (WebSocket
/// upgrades are HTTP/1.1 only, and the same port serves https).
///
/// # Errors
///
/// [`TlsError::Identity`] when the provider refuses the protocol versions.
pub fn server_config(identity: Arc<ServerIdentity>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&identity.provider))
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Identity { files: identity.files.clone(), source })?
        .with_no_client_auth()
        .with_cert_resolver(identity);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Reads `files` into a certificate chain with its signing key, checking that they belong together.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let (chain, key) = match files {
        TlsFiles::Pem { certificate, key } => (load_certificates(CERTIFICATE_KEY, certificate)?, load_private_key(KEY_KEY, key)?),
        TlsFiles::KeyStore { path, password } => {
            let store = pkcs12::load(path, &password.0).map_err(|source| {
                let key = if matches!(source, pkcs12::Pkcs12Error::WrongPassword) { KEY_STORE_PASSWORD_KEY } else { KEY_STORE_KEY };
                TlsError::KeyStore { key, path: path.clone(), source }
            })?;
            let identity = store.identity.ok_or_else(|| TlsError::NoKey(path.clone()))?;
            (identity.chain, identity.key)
        }
    };
    // keytool's EC keys lack the public key ring wants: taken from the certificate, then checked like any key.
    let key = chain.first().and_then(|certificate| ec_key::with_public_key(&key, certificate)).unwrap_or(key);
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Identity { files: files.clone(), source })?;
    Ok(Arc::new(certified))
}

/// The PEM certificates of `path` (at least one), for the config key `key`.
///
/// # Errors
///
/// [`TlsError::Read`] or [`TlsError::Pem`], naming `key` and `path`.
pub fn load_certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|error| pem_error(key, path, "certificate", error.to_string()))?;
    if certificates.is_empty() {
        return Err(pem_error(key, path, "certificate", "none found".into()));
    }
    Ok(certificates)
}

/// The PEM private key of `path` (PKCS#8, PKCS#1 or SEC1), for the config key `key`.
///
/// # Errors
///
/// [`TlsError::Read`] or [`TlsError::Pem`], naming `key` and `path`.
pub fn load_private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(key, path)?).map_err(|error| pem_error(key, path, "private key", error.to_string()))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { key, path: path.to_owned(), source })
}

fn pem_error(key: &'static str, path: &Path, what: &'static str, message: String) -> TlsError {
    TlsError::Pem { key, path: path.to_owned(), what, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};

    /// A self-signed certificate for `name` and its key, as PEM and DER.
    struct Made {
        pem: String,
        key_pem: String,
        der: Vec<u8>,
        key_der: Vec<u8>,
    }

    fn make(name: &str) -> Made {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().self_signed(&key).unwrap();
        Made { pem: certificate.pem(), key_pem: key.serialize_pem(), der: certificate.der().to_vec(), key_der: key.serialize_der() }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wsgate-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn presented(identity: &ServerIdentity) -> Vec<u8> {
        identity.current.read().unwrap().cert[0].to_vec()
    }

    #[test]
    fn reload_swaps_the_certificate_and_keeps_it_when_the_files_are_broken() {
        let dir = temp_dir("reload");
        let (certificate, key) = (dir.join("chain.pem"), dir.join("key.pem"));
        let (a, b) = (make("a.example"), make("b.example"));
        std::fs::write(&certificate, &a.pem).unwrap();
        std::fs::write(&key, &a.key_pem).unwrap();
        let identity = ServerIdentity::load(TlsFiles::Pem { certificate: certificate.clone(), key: key.clone() }).unwrap();
        assert_eq!(presented(&identity), a.der);
        std::fs::write(&certificate, &b.pem).unwrap();
        std::fs::write(&key, &b.key_pem).unwrap();
        identity.reload().unwrap();
        assert_eq!(presented(&identity), b.der);
        // A key of another certificate, then no certificate at all: refused, B stays.
        std::fs::write(&key, &a.key_pem).unwrap();
        let error = identity.reload().unwrap_err();
        assert!(matches!(error, TlsError::Identity { .. }), "{error}");
        std::fs::write(&certificate, "garbage").unwrap();
        assert!(identity.reload().unwrap_err().to_string().starts_with("server.ssl.certificate: "));
        assert_eq!(presented(&identity), b.der);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn keystore_errors_name_the_key_and_the_file() {
        let dir = temp_dir("keystore");
        let made = make("gw.example");
        let mut with_key = KeyStore::new();
        let chain = PrivateKeyChain::new("gw", PrivateKey::from_der(&made.key_der).unwrap(), [Certificate::from_der(&made.der).unwrap()]);
        with_key.add_entry("gw", KeyStoreEntry::PrivateKeyChain(chain));
        let mut without_key = KeyStore::new();
        without_key.add_entry("ca", KeyStoreEntry::Certificate(Certificate::from_der(&made.der).unwrap()));
        let (store, trust) = (dir.join("gw.p12"), dir.join("trust.p12"));
        std::fs::write(&store, with_key.writer("changeit").write().unwrap()).unwrap();
        std::fs::write(&trust, without_key.writer("changeit").write().unwrap()).unwrap();
        let files = |path: &Path, password: &str| TlsFiles::KeyStore { path: path.to_owned(), password: Password::new(password.to_owned()) };

        let identity = ServerIdentity::load(files(&store, "changeit")).unwrap();
        assert_eq!(presented(&identity), made.der);
        let wrong = ServerIdentity::load(files(&store, "guess")).unwrap_err().to_string();
        assert!(wrong.starts_with("server.ssl.keyStorePassword: ") && wrong.contains(&store.display().to_string()) && wrong.contains("wrong password"), "{wrong}");
        let no_key = ServerIdentity::load(files(&trust, "changeit")).unwrap_err().to_string();
        assert!(no_key.starts_with("server.ssl.keyStore: ") && no_key.contains("no private key"), "{no_key}");
        let missing = ServerIdentity::load(files(&dir.join("none.p12"), "changeit")).unwrap_err().to_string();
        assert!(missing.starts_with("server.ssl.keyStore: ") && missing.contains("none.p12"), "{missing}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
