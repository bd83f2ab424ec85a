//! Client-facing TLS: the gateway's certificate and key, loaded at start into the rustls server
//! configuration that serves wss and https on the gateway's port. TLS towards services is in
//! [`client`]; both load PEM files through [`load_certificates`] and [`load_private_key`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use thiserror::Error;

pub mod client;
mod read_ahead;

pub use read_ahead::ReadAhead;

/// `server.ssl.certificate` and `server.ssl.certificateKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain, the gateway's own certificate first.
    pub certificate: PathBuf,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The config keys of the two files, for messages.
const CERTIFICATE_KEY: &str = "server.ssl.certificate";
const KEY_KEY: &str = "server.ssl.certificateKey";

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
    /// rustls refused the pair, e.g. a key that does not belong to the certificate.
    #[error("server.ssl.certificate {certificate} with server.ssl.certificateKey {key}: {source}")]
    Identity {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// Builds the server configuration for `files`: TLS 1.2 and 1.3, ALPN `http/1.1` (WebSocket upgrades are
/// HTTP/1.1 only, and the same port serves https).
///
/// # Errors
///
/// [`TlsError`] naming the file that could not be used.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certificates = load_certificates(CERTIFICATE_KEY, &files.certificate)?;
    let key = load_private_key(KEY_KEY, &files.key)?;
    let identity_error = |source| TlsError::Identity { certificate: files.certificate.clone(), key: files.key.clone(), source };
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(identity_error)?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(identity_error)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
