//! https service URLs against a real TLS server on a loopback socket: the crate's registry served by
//! its own `serve_tls`, with certificates made here by rcgen. Checks the trusted path (DNS name and
//! IPv4 and IPv6 literals), a wrong CA, a certificate for another name, mutual TLS (fetch and registration), and
//! failover from a failing https URL to a plain one.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use wsgate_registry::client::{tls_config, AttemptError, FetchError, InstanceDescription, Registration};
use wsgate_registry::server::{serve_tls, Tls};
use wsgate_registry::{ClientConfig, EurekaClient, Instance, Registry, RegistryConfig};

/// A CA of the test, signing server and client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

/// A certificate chain and its key.
type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca { issuer: Issuer::new(params, key), der }
    }

    /// A certificate for `names` (DNS names, or IP addresses when they parse as one).
    fn issue(&self, names: &[&str]) -> Identity {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("client"));
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().unwrap()),
            })
            .collect();
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        (vec![certificate.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }
}

/// The crate's registry behind TLS on a kernel-chosen loopback port, with one instance of `DEMO`;
/// stopped on drop.
struct TlsServer {
    port: u16,
    registry: Registry,
    _stop: oneshot::Sender<()>,
}

impl TlsServer {
    /// Serves on 127.0.0.1 with `identity`; with `client_ca`, a client certificate of that CA is required.
    async fn start(identity: Identity, client_ca: Option<&Ca>) -> TlsServer {
        TlsServer::start_on("127.0.0.1:0", identity, client_ca).await
    }

    /// As [`TlsServer::start`], on `address`.
    async fn start_on(address: &str, identity: Identity, client_ca: Option<&Ca>) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions().unwrap();
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider).build().unwrap()),
        };
        let acceptor = TlsAcceptor::from(Arc::new(builder.with_single_cert(identity.0, identity.1).unwrap()));
        let listener = TcpListener::bind(address).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let registry = Registry::new(RegistryConfig::default()).unwrap();
        registry.register(Instance::new("DEMO", "demo-1", "127.0.0.1", "127.0.0.1")).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        // The crate's own https server; with `client_ca` a verified certificate authenticates.
        let tls = Tls { acceptor, client_certificates: client_ca.is_some() };
        tokio::spawn(serve_tls(listener, registry.clone(), tls, async move { drop(stopped.await) }));
        TlsServer { port, registry, _stop: stop }
    }

    fn url(&self, host: &str) -> String {
        format!("https://{host}:{}/eureka", self.port)
    }
}

fn client(urls: Vec<String>, tls: rustls::ClientConfig) -> EurekaClient {
    let mut config = ClientConfig::new(urls);
    config.tls = Some(Arc::new(tls));
    config.connect_timeout = Duration::from_secs(2);
    config.read_timeout = Duration::from_secs(2);
    EurekaClient::new(config).unwrap()
}

fn apps(client: &EurekaClient) -> Vec<String> {
    client.snapshot().applications.iter().map(|app| app.name.clone()).collect()
}

/// The TLS cause of a fetch in which every attempt failed.
fn tls_failure(result: Result<wsgate_registry::client::Fetched, FetchError>) -> (rustls::Error, String) {
    let error = result.unwrap_err();
    let text = error.to_string();
    match error {
        FetchError::AllFailed { last: AttemptError::Tls(cause), .. } => (cause, text),
        other => panic!("expected a TLS failure, got {other}"),
    }
}

#[tokio::test]
async fn fetches_over_https_from_a_dns_name_and_ip_literals() {
    let ca = Ca::new("eureka CA");
    let v4 = TlsServer::start(ca.issue(&["localhost", "127.0.0.1"]), None).await;
    let mut urls = vec![v4.url("localhost"), v4.url("127.0.0.1")];
    // A machine without an IPv6 loopback cannot run the IPv6 literal's case.
    let v6 = match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => Some(TlsServer::start_on("[::1]:0", ca.issue(&["::1"]), None).await),
        Err(error) => {
            eprintln!("no IPv6 loopback ({error}): the [::1] case is not run here");
            None
        }
    };
    urls.extend(v6.as_ref().map(|v6| v6.url("[::1]")));
    for url in urls {
        let client = client(vec![url.clone()], tls_config(ca.roots(), None).unwrap());
        client.refresh().await.unwrap();
        assert_eq!(apps(&client), ["DEMO"], "{url}");
        assert_eq!(client.current_url(), Some(url));
    }
}

#[tokio::test]
async fn a_server_of_another_ca_fails_with_the_tls_cause() {
    let server = TlsServer::start(Ca::new("eureka CA").issue(&["127.0.0.1"]), None).await;
    let client = client(vec![server.url("127.0.0.1")], tls_config(Ca::new("another CA").roots(), None).unwrap());
    let (cause, text) = tls_failure(client.refresh().await);
    assert!(matches!(cause, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)), "{cause:?}");
    assert!(text.contains("TLS failed: invalid peer certificate: UnknownIssuer"), "{text}");
    assert!(apps(&client).is_empty());
}

#[tokio::test]
async fn the_host_is_checked_against_the_certificate() {
    let ca = Ca::new("eureka CA");
    // Names localhost only: an IP literal is checked against IP addresses, which it has none of.
    let server = TlsServer::start(ca.issue(&["localhost"]), None).await;
    let client = client(vec![server.url("127.0.0.1")], tls_config(ca.roots(), None).unwrap());
    let (cause, text) = tls_failure(client.refresh().await);
    assert!(matches!(cause, rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. })), "{cause:?}");
    assert!(text.contains("TLS failed: invalid peer certificate: certificate not valid for name \"127.0.0.1\""), "{text}");
}

#[tokio::test]
async fn mutual_tls_fetches_and_registers_with_a_client_certificate_only() {
    let ca = Ca::new("eureka CA");
    let server = TlsServer::start(ca.issue(&["127.0.0.1"]), Some(&ca)).await;
    let url = server.url("127.0.0.1");

    let anonymous = client(vec![url.clone()], tls_config(ca.roots(), None).unwrap());
    let (cause, _) = tls_failure(anonymous.refresh().await);
    assert!(matches!(cause, rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)), "{cause:?}");

    let tls = Arc::new(tls_config(ca.roots(), Some(ca.issue(&["gateway"]))).unwrap());
    let mut config = ClientConfig::new(vec![url.clone()]);
    config.tls = Some(Arc::clone(&tls));
    let certified = EurekaClient::new(config).unwrap();
    certified.refresh().await.unwrap();
    assert_eq!(apps(&certified), ["DEMO"]);

    let mut instance = serde_json::Map::new();
    instance.insert("hostName".into(), "127.0.0.1".into());
    instance.insert("ipAddr".into(), "127.0.0.1".into());
    instance.insert("dataCenterInfo".into(), serde_json::json!({"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}));
    let description = InstanceDescription { app: "mtls".into(), instance_id: "127.0.0.1:mtls:1".into(), instance, heartbeat_interval: Duration::from_secs(30) };
    let registration = Registration::new(std::slice::from_ref(&url), Some(&tls), description.clone()).unwrap();
    registration.register().await.unwrap();
    assert!(server.registry.application("MTLS").is_some());

    // Without a client certificate the registration fails, naming the TLS cause.
    let refused = Registration::new(&[url], Some(&Arc::new(tls_config(ca.roots(), None).unwrap())), description).unwrap();
    let error = refused.register().await.unwrap_err().to_string();
    assert!(error.contains("TLS failed") && error.contains("CertificateRequired"), "{error}");
}

#[tokio::test]
async fn a_failing_https_url_fails_over_to_the_next_one_plain_or_not() {
    let untrusted = TlsServer::start(Ca::new("another CA").issue(&["127.0.0.1"]), None).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = format!("http://{}/eureka", listener.local_addr().unwrap());
    let registry = Registry::new(RegistryConfig::default()).unwrap();
    registry.register(Instance::new("PLAIN", "plain-1", "127.0.0.1", "127.0.0.1")).unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(wsgate_registry::server::serve(listener, registry, async { drop(stopped.await) }));
    let client = client(vec![untrusted.url("127.0.0.1"), plain.clone()], tls_config(Ca::new("eureka CA").roots(), None).unwrap());
    client.refresh().await.unwrap();
    assert_eq!(apps(&client), ["PLAIN"]);
    assert_eq!(client.current_url(), Some(plain));
    assert_eq!(client.quarantined_urls(), [untrusted.url("127.0.0.1")]);
}
