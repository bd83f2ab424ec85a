//! Opening the session to a service instance: TCP connect, the TLS handshake for a secure instance
//! (wss), then the upgrade request, all within `connectTimeout`.
//!
//! A TLS failure (the certificate is not trusted, has expired or names another host, the handshake
//! fails, the service refuses the gateway's client certificate) is retried on another instance like
//! an unreachable one: the certificate and the TLS set-up are the instance's, another instance may
//! have good ones, and the service's application never saw the request. The instance is ejected for
//! `ejectFor` as for any failed connect.

mod head;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

pub use head::{HeadError, MAX_RESPONSE_HEAD};

use crate::discovery::Instance;
use crate::handshake::{self, Accepted, Offer, ServiceRefusal};
use crate::relay::Peer;
use crate::tls::client::ServiceTls;
use crate::tls::ReadAhead;

/// Why no session to the service could be opened.
#[derive(Debug, Error)]
pub enum ConnectCause {
    /// Nothing listens at the instance's address.
    #[error("connection refused")]
    Refused,
    /// Connecting or the handshake took longer than `connectTimeout`.
    #[error("timed out")]
    TimedOut,
    /// Another socket error.
    #[error("{0}")]
    Io(io::Error),
    /// The service did not answer with an HTTP/1.1 response head.
    #[error(transparent)]
    Response(HeadError),
    /// The service answered, but did not open a session.
    #[error(transparent)]
    Refusal(ServiceRefusal),
    /// The instance's host and port do not make a valid address.
    #[error("invalid instance address")]
    BadAddress,
    /// The HTTP proxy's client failed (connection reset, malformed answer...).
    #[error("{0}")]
    Proxy(hyper_util::client::legacy::Error),
    /// TLS towards a secure instance failed.
    #[error("TLS: {0}")]
    Tls(TlsFailure),
}

/// Why TLS towards a service failed.
#[derive(Debug, Error)]
pub enum TlsFailure {
    /// rustls refused the service's certificate or handshake (unknown issuer, expired, not valid for
    /// the instance's host...), or the service sent an alert (e.g. it refused the gateway's client
    /// certificate, or got none).
    #[error("{0}")]
    Rejected(rustls::Error),
    /// The connection failed in the middle of the handshake (closed, reset).
    #[error("handshake failed: {0}")]
    Handshake(io::Error),
    /// The instance's host is neither a DNS name nor an IP address, so no certificate can match it.
    #[error("`{0}` is not a valid server name")]
    ServerName(String),
}

impl ConnectCause {
    /// Whether another instance may be tried: yes when the instance could not be reached or gave no
    /// usable answer (refused, timed out, reset, malformed, TLS failed), no when the service answered
    /// on purpose (a 401, 403 or 500 is the service's verdict, and goes to the client as it is).
    pub fn may_retry(&self) -> bool {
        !matches!(self, ConnectCause::Refusal(_))
    }

    /// The cause of a failed TLS handshake: a refusal or time-out of the connection (which the first
    /// write of the handshake reports, see [`connect_tcp`]) stays one; any other error is a TLS failure.
    fn of_handshake(error: io::Error) -> ConnectCause {
        match ConnectCause::from(error) {
            ConnectCause::Io(error) => ConnectCause::Tls(TlsFailure::Handshake(error)),
            other => other,
        }
    }
}

impl From<io::Error> for ConnectCause {
    fn from(error: io::Error) -> Self {
        match classify(&error) {
            Some(cause) => cause,
            None => ConnectCause::Io(error),
        }
    }
}

/// What an I/O error towards a service says beyond "I/O failed": refused, timed out, or TLS. An error
/// of a TLS connection carries rustls's reason inside (tokio-rustls wraps it): that reason is the
/// cause, e.g. an alert the service sent after the handshake.
pub(crate) fn classify(error: &io::Error) -> Option<ConnectCause> {
    if let Some(tls) = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return Some(ConnectCause::Tls(TlsFailure::Rejected(tls.clone())));
    }
    match error.kind() {
        io::ErrorKind::ConnectionRefused => Some(ConnectCause::Refused),
        io::ErrorKind::TimedOut => Some(ConnectCause::TimedOut),
        _ => None,
    }
}

/// A failed attempt to open a session at `url`.
#[derive(Debug, Error)]
#[error("cannot open session to {url}: {cause}")]
pub struct ConnectError {
    /// The service URL tried.
    pub url: String,
    /// Why it failed.
    pub cause: ConnectCause,
}

/// A session the service accepted.
#[derive(Debug)]
pub struct OpenedSession {
    /// What the service chose.
    pub accepted: Accepted,
    /// The connection, switched to WebSocket.
    pub io: Peer,
}

impl From<HeadError> for ConnectCause {
    fn from(error: HeadError) -> Self {
        match error {
            HeadError::Io(error) => ConnectCause::from(error),
            other => ConnectCause::Response(other),
        }
    }
}

/// Connects to the port of `instance`, with `TCP_NODELAY` set: relayed frames are sent whole.
///
/// For an IP address the connection may still be in progress when this returns: the first write
/// waits for it and reports a refusal, which spares the readiness check a connect future makes on
/// every session. A host name is connected the usual way, one address after the other until one
/// answers (`localhost` may resolve to `::1` first for a service that listens on IPv4 only).
pub async fn connect_tcp(instance: &Instance) -> io::Result<TcpStream> {
    if let Ok(ip) = instance.host.parse::<IpAddr>() {
        return start_connect(SocketAddr::new(ip, instance.port));
    }
    let stream = TcpStream::connect((instance.host.as_str(), instance.port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn start_connect(address: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM.nonblocking(), Some(Protocol::TCP))?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&address.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    TcpStream::from_std(socket.into())
}

/// Sends the upgrade `request` to `instance` (over TLS with `tls` when the instance is secure) and
/// waits for a session, all within `timeout`.
///
/// # Errors
///
/// [`ConnectError`] with the URL and the cause.
pub async fn open_websocket(instance: &Instance, url: String, request: Request<()>, offer: &Offer, tls: &ServiceTls, timeout: Duration) -> Result<OpenedSession, ConnectError> {
    if instance.secure {
        tls.warn_if_unverified(&url);
    }
    match tokio::time::timeout(timeout, exchange(instance, request, offer, tls)).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(cause)) => Err(ConnectError { url, cause }),
        Err(_) => Err(ConnectError { url, cause: ConnectCause::TimedOut }),
    }
}

async fn exchange(instance: &Instance, request: Request<()>, offer: &Offer, tls: &ServiceTls) -> Result<OpenedSession, ConnectCause> {
    if !instance.secure {
        let mut stream = connect_tcp(instance).await?;
        let (accepted, early) = upgrade(&mut stream, &request, offer).await?;
        return Ok(OpenedSession { accepted, io: Peer::tcp(stream, early) });
    }
    // SNI and the name the certificate must carry: the instance's host (an IP literal is matched
    // against the certificate's IP addresses, and sent as no SNI).
    let name = ServerName::try_from(instance.host.clone()).map_err(|_| ConnectCause::Tls(TlsFailure::ServerName(instance.host.clone())))?;
    let stream = connect_tcp(instance).await?;
    // The read-ahead buffer lets a burst of large records arrive in one read, as on the client side.
    let mut stream = TlsConnector::from(Arc::clone(tls.config())).connect(name, ReadAhead::new(stream)).await.map_err(ConnectCause::of_handshake)?;
    let (accepted, early) = upgrade(&mut stream, &request, offer).await?;
    Ok(OpenedSession { accepted, io: Peer::tls(stream, early) })
}

/// The upgrade exchange on a connected `io`: the service's choices, and the bytes it sent past its
/// response head.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, request: &Request<()>, offer: &Offer) -> Result<(Accepted, Bytes), ConnectCause> {
    head::write_request(io, request).await?;
    let (response, early) = head::read_response(io).await?;
    let accepted = handshake::check_service_response(offer, &response).map_err(ConnectCause::Refusal)?;
    Ok((accepted, early))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SubprotocolPolicy;
    use crate::discovery::InstanceStatus;
    use crate::tls::client::ServiceTlsSettings;

    fn instance(host: &str, port: u16) -> Instance {
        Instance { instance_id: "i".into(), host: host.into(), port, secure: false, status: InstanceStatus::Up }
    }

    #[tokio::test]
    async fn a_host_name_tries_each_address_until_one_answers() {
        // `localhost` resolves to ::1 and 127.0.0.1 on most systems; the service listens on IPv4 only.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut stream = connect_tcp(&instance("localhost", port)).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, b"x").await.unwrap();
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut byte).await.unwrap();
        assert!(stream.nodelay().unwrap());
    }

    fn offer() -> Offer {
        let request = Request::get("/x")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap();
        Offer::inspect(&request, &SubprotocolPolicy::Any).unwrap().unwrap()
    }

    /// Opens a session to a secure instance at `host:port` that must fail; returns why.
    async fn open_secure(host: &str, port: u16) -> ConnectCause {
        let tls = ServiceTls::new(&ServiceTlsSettings::default()).unwrap();
        let mut instance = instance(host, port);
        instance.secure = true;
        let request = Request::get("/ws").header("host", "x").body(()).unwrap();
        let error = open_websocket(&instance, "wss://x/ws".into(), request, &offer(), &tls, Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(error.url, "wss://x/ws");
        error.cause
    }

    /// A wss service on 127.0.0.1 whose self-signed certificate is made out to `name`: it answers one
    /// upgrade with a 101 and, in the same record, its first frame. Returns its port, and the TLS
    /// set-up of a gateway that trusts that certificate.
    async fn wss_service(name: &str) -> (u16, ServiceTls) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let trust_store = std::env::temp_dir().join(format!("wsgate-upstream-{}-{port}.pem", std::process::id()));
        std::fs::write(&trust_store, certified.cert.pem()).unwrap();
        let tls = ServiceTls::new(&ServiceTlsSettings { trust_store: Some(trust_store.clone()), ..ServiceTlsSettings::default() }).unwrap();
        let _ = std::fs::remove_file(trust_store);
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key.into())
            .unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            // The gateway may refuse the certificate.
            let Ok(mut service) = tokio_rustls::TlsAcceptor::from(Arc::new(config)).accept(socket).await else { return };
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if tokio::io::AsyncReadExt::read(&mut service, &mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi";
            tokio::io::AsyncWriteExt::write_all(&mut service, answer).await.unwrap();
            tokio::io::AsyncWriteExt::flush(&mut service).await.unwrap();
            // Held open until the gateway's side ends.
            let _ = tokio::io::AsyncReadExt::read(&mut service, &mut [0u8; 16]).await;
        });
        (port, tls)
    }

    #[tokio::test]
    async fn a_wss_instance_is_checked_by_its_host_and_its_first_frames_are_kept() {
        let (port, tls) = wss_service("127.0.0.1").await;
        let mut secure = instance("127.0.0.1", port);
        secure.secure = true;
        let request = Request::get("/ws").header("host", "x").body(()).unwrap();
        let opened = open_websocket(&secure, "wss://x/ws".into(), request.clone(), &offer(), &tls, Duration::from_secs(10)).await.unwrap();
        match &opened.io {
            Peer::Tls { early: Some(early), .. } => assert_eq!(&early[..], b"\x81\x02hi"),
            other => panic!("expected a TLS peer holding the frame sent with the 101: {other:?}"),
        }
        // A certificate for 127.0.0.1 does not do for the host name `localhost`.
        let (port, tls) = wss_service("127.0.0.1").await;
        let mut by_name = instance("localhost", port);
        by_name.secure = true;
        let error = open_websocket(&by_name, "wss://x/ws".into(), request, &offer(), &tls, Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(error.cause, ConnectCause::Tls(TlsFailure::Rejected(rustls::Error::InvalidCertificate(_)))), "{error}");
        assert!(error.to_string().contains("TLS: invalid peer certificate: certificate not valid for name \"localhost\""), "{error}");
    }

    #[tokio::test]
    async fn a_secure_instance_that_does_not_speak_tls_is_a_tls_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let service = tokio::spawn(async move {
            // A plain HTTP server: its answer to the ClientHello is no TLS record.
            let (mut plain, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut plain, &mut hello).await;
            let _ = tokio::io::AsyncWriteExt::write_all(&mut plain, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
            // A server that hangs up in the middle of the handshake.
            let (hung_up, _) = listener.accept().await.unwrap();
            drop(hung_up);
            drop(plain);
        });
        let cause = open_secure("127.0.0.1", port).await;
        assert!(matches!(cause, ConnectCause::Tls(TlsFailure::Rejected(_))), "{cause:?}");
        assert!(cause.to_string().starts_with("TLS: ") && cause.may_retry(), "{cause}");
        let cause = open_secure("127.0.0.1", port).await;
        assert!(matches!(cause, ConnectCause::Tls(TlsFailure::Handshake(_))), "{cause:?}");
        assert!(cause.to_string().starts_with("TLS: handshake failed: "), "{cause}");
        service.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_secure_instance_is_refused_and_a_bad_host_is_no_server_name() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(matches!(open_secure("127.0.0.1", port).await, ConnectCause::Refused));
        let cause = open_secure("not a host", 1).await;
        assert_eq!(cause.to_string(), "TLS: `not a host` is not a valid server name");
    }

    #[test]
    fn an_error_carrying_a_tls_alert_is_a_tls_failure() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let cause = ConnectCause::from(io::Error::new(io::ErrorKind::InvalidData, alert));
        assert_eq!(cause.to_string(), "TLS: received fatal alert: CertificateRequired");
        assert!(matches!(ConnectCause::of_handshake(io::Error::from(io::ErrorKind::ConnectionRefused)), ConnectCause::Refused));
    }

    #[tokio::test]
    async fn a_refused_address_surfaces_on_the_first_write() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut stream = connect_tcp(&instance("127.0.0.1", port)).await.unwrap();
        let request = Request::get("/").header("host", "x").body(()).unwrap();
        let error = head::write_request(&mut stream, &request).await.unwrap_err();
        assert!(matches!(ConnectCause::from(error), ConnectCause::Refused));
    }
}
