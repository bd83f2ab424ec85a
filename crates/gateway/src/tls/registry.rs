//! TLS on the embedded registry's port (`discovery.embedded.ssl.*`): the gateway's own certificate,
//! asked of the same [`ServerIdentity`] as the gateway's port, so a SIGHUP reload applies to both; and,
//! when `clientAuth` asks for them, client certificates verified against a trust store.
//!
//! The registry crate only runs the handshakes ([`wsgate_registry::server::serve_tls`]); which
//! certificates it presents and accepts is decided here.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::ServerConfig;
use thiserror::Error;

use super::client::{trust_anchors_of, ServiceTlsError, TrustStoreKeys};
use super::{Password, ServerIdentity};

/// The CA certificates client certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStore {
    /// A PEM bundle or a PKCS#12 file.
    pub path: PathBuf,
    /// The PKCS#12 file's password (none: the empty password).
    pub password: Option<Password>,
    /// The config keys it came from (`discovery.embedded.ssl.trustStore`, or `server.ssl.trustStore` by
    /// default), which its errors name.
    pub keys: TrustStoreKeys,
}

/// `discovery.embedded.ssl.clientAuth`, in the words of Spring's `server.ssl.client-auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `none`: no certificate is asked for.
    None,
    /// `want`: a certificate is asked for; a client may go without (and then needs a Basic credential).
    Want(TrustStore),
    /// `need`: a client without a certificate fails the handshake.
    Need(TrustStore),
}

impl ClientAuth {
    /// Whether clients are asked for a certificate (`want` or `need`).
    pub fn asks(&self) -> bool {
        !matches!(self, ClientAuth::None)
    }

    /// Its config word: `none`, `want` or `need`.
    pub fn word(&self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Want(_) => "want",
            ClientAuth::Need(_) => "need",
        }
    }
}

/// `discovery.embedded.ssl.*` when `enabled`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryTls {
    /// `clientAuth`, with the trust store it needs.
    pub client_auth: ClientAuth,
}

/// Why the registry's TLS configuration could not be built. Each names its config key.
#[derive(Debug, Error)]
pub enum RegistryTlsError {
    /// The trust store could not be read or holds an unusable certificate.
    #[error(transparent)]
    TrustStore(#[from] ServiceTlsError),
    /// rustls cannot verify client certificates with the trust store's certificates.
    #[error("{key}: {path}: cannot verify client certificates with it: {source}")]
    Verifier {
        /// The config key of the trust store.
        key: &'static str,
        /// The trust store.
        path: PathBuf,
        /// rustls's reason.
        source: VerifierBuilderError,
    },
    /// The crypto provider supports none of the protocol versions asked for.
    #[error("discovery.embedded.ssl.enabled: no usable TLS protocol version: {0}")]
    Provider(rustls::Error),
}

/// The registry port's server configuration: `identity`'s certificate, TLS 1.2 and 1.3, ALPN
/// `http/1.1`, and the client certificate verifier `tls.client_auth` asks for.
///
/// # Errors
///
/// [`RegistryTlsError`] naming the trust store's key when it cannot be used.
pub fn server_config(identity: Arc<ServerIdentity>, tls: &RegistryTls) -> Result<Arc<ServerConfig>, RegistryTlsError> {
    let provider = Arc::clone(&identity.provider);
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions().map_err(RegistryTlsError::Provider)?;
    let builder = match &tls.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Want(store) | ClientAuth::Need(store) => {
            let roots = trust_anchors_of(store.keys, &store.path, store.password.as_ref())?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if matches!(tls.client_auth, ClientAuth::Want(_)) { verifier.allow_unauthenticated() } else { verifier };
            let verifier = verifier.build().map_err(|source| RegistryTlsError::Verifier { key: store.keys.store, path: store.path.clone(), source })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(identity);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
