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

use super::client::{trust_anchors, ServiceTlsError, TrustStoreKeys};
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
            let roots = trust_anchors(store.keys, &store.path, store.password.as_ref())?;
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{ClientConfig, RootCertStore};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};
    use wsgate_registry::server::{serve_tls, Tls};
    use wsgate_registry::{Registry, RegistryConfig};

    use super::*;
    use crate::tls::TlsFiles;

    const KEYS: TrustStoreKeys = TrustStoreKeys { store: "discovery.embedded.ssl.trustStore", password: "discovery.embedded.ssl.trustStorePassword" };

    /// A CA, as the issuer of leaf certificates and as PEM.
    fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        (Issuer::new(params, key), pem)
    }

    /// A certificate for `name` signed by `issuer`, and its key, as PEM.
    fn leaf(issuer: &Issuer<'static, KeyPair>, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, issuer).unwrap();
        (certificate.pem(), key.serialize_pem())
    }

    /// The files of a test: the registry's certificate for 127.0.0.1 and the CA that signed it, which
    /// also signs `client`; `stranger` comes from another CA.
    struct Files {
        dir: PathBuf,
        client: (String, String),
        stranger: (String, String),
    }

    impl Files {
        fn make(name: &str) -> Files {
            let dir = std::env::temp_dir().join(format!("wsgate-registry-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let ((issuer, ca_pem), (other, _)) = (ca("registry CA"), ca("other CA"));
            let (certificate, key) = leaf(&issuer, "127.0.0.1");
            for (file, text) in [("ca.pem", &ca_pem), ("gw.pem", &certificate), ("gw-key.pem", &key)] {
                std::fs::write(dir.join(file), text).unwrap();
            }
            Files { client: leaf(&issuer, "client"), stranger: leaf(&other, "client"), dir }
        }

        fn identity(&self) -> Arc<ServerIdentity> {
            Arc::new(ServerIdentity::load(TlsFiles::Pem { certificate: self.dir.join("gw.pem"), key: self.dir.join("gw-key.pem") }).unwrap())
        }

        fn trust_store(&self) -> TrustStore {
            TrustStore { path: self.dir.join("ca.pem"), password: None, keys: KEYS }
        }

        /// Serves an empty registry over https with `client_auth` on a loopback port.
        async fn serve(&self, client_auth: ClientAuth) -> std::net::SocketAddr {
            let asks = client_auth.asks();
            let config = server_config(self.identity(), &RegistryTls { client_auth }).unwrap();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let registry = Registry::new(RegistryConfig::default()).unwrap();
            tokio::spawn(serve_tls(listener, registry, Tls { acceptor: TlsAcceptor::from(config), client_certificates: asks }, std::future::pending()));
            address
        }

        /// The status of `GET /eureka/apps` over TLS trusting the CA, with `certificate` if any; an
        /// error when TLS fails.
        async fn get(&self, address: std::net::SocketAddr, certificate: Option<&(String, String)>) -> std::io::Result<u16> {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from_pem_file(self.dir.join("ca.pem")).unwrap()).unwrap();
            let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider())).with_safe_default_protocol_versions().unwrap().with_root_certificates(roots);
            let config = match certificate {
                None => builder.with_no_client_auth(),
                Some((chain, key)) => builder.with_client_auth_cert(vec![CertificateDer::from_pem_slice(chain.as_bytes()).unwrap()], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap(),
            };
            let stream = TcpStream::connect(address).await?;
            let mut tls = TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("127.0.0.1").unwrap(), stream).await?;
            tls.write_all(b"GET /eureka/apps HTTP/1.1\r\nhost: registry\r\nconnection: close\r\n\r\n").await?;
            let mut answer = String::new();
            tls.read_to_string(&mut answer).await?;
            answer.split(' ').nth(1).and_then(|status| status.parse().ok()).ok_or_else(|| std::io::Error::other(format!("no status in {answer:?}")))
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[tokio::test]
    async fn want_takes_a_certificate_of_the_trust_store_in_place_of_a_credential() {
        let files = Files::make("want");
        let address = files.serve(ClientAuth::Want(files.trust_store())).await;
        assert_eq!(files.get(address, Some(&files.client)).await.unwrap(), 200);
        assert_eq!(files.get(address, None).await.unwrap(), 401);
        assert!(files.get(address, Some(&files.stranger)).await.is_err());
    }

    #[tokio::test]
    async fn need_refuses_clients_without_a_certificate_and_none_asks_for_nothing() {
        let files = Files::make("need");
        let need = files.serve(ClientAuth::Need(files.trust_store())).await;
        assert_eq!(files.get(need, Some(&files.client)).await.unwrap(), 200);
        assert!(files.get(need, None).await.is_err());
        let none = files.serve(ClientAuth::None).await;
        assert_eq!(files.get(none, None).await.unwrap(), 200);
    }

    #[test]
    fn an_unreadable_trust_store_names_its_key() {
        let files = Files::make("unreadable");
        let missing = TrustStore { path: Path::new("/nonexistent/clients.pem").to_owned(), password: None, keys: KEYS };
        let error = server_config(files.identity(), &RegistryTls { client_auth: ClientAuth::Need(missing) }).unwrap_err().to_string();
        assert!(error.starts_with("discovery.embedded.ssl.trustStore: ") && error.contains("/nonexistent/clients.pem"), "{error}");
    }
}
