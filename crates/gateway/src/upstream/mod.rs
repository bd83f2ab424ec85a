//! Opening the session to a service instance: TCP connect, then the upgrade request, within
//! `connectTimeout`.

mod head;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::Request;
use socket2::{Domain, Protocol, Socket, Type};
use thiserror::Error;
use tokio::net::TcpStream;

pub use head::{HeadError, MAX_RESPONSE_HEAD};

use crate::discovery::Instance;
use crate::handshake::{self, Accepted, Offer, ServiceRefusal};
use crate::relay::Peer;

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
}

impl ConnectCause {
    /// Whether another instance may be tried: yes when the instance could not be reached or gave no
    /// usable answer (refused, timed out, reset, malformed), no when the service answered on purpose
    /// (a 401, 403 or 500 is the service's verdict, and goes to the client as it is).
    pub fn may_retry(&self) -> bool {
        !matches!(self, ConnectCause::Refusal(_))
    }
}

impl From<io::Error> for ConnectCause {
    fn from(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => ConnectCause::Refused,
            io::ErrorKind::TimedOut => ConnectCause::TimedOut,
            _ => ConnectCause::Io(error),
        }
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

/// Sends the upgrade `request` to `instance` and waits for a session, all within `timeout`.
///
/// # Errors
///
/// [`ConnectError`] with the URL and the cause.
pub async fn open_websocket(instance: &Instance, url: String, request: Request<()>, offer: &Offer, timeout: Duration) -> Result<OpenedSession, ConnectError> {
    match tokio::time::timeout(timeout, exchange(instance, request, offer)).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(cause)) => Err(ConnectError { url, cause }),
        Err(_) => Err(ConnectError { url, cause: ConnectCause::TimedOut }),
    }
}

async fn exchange(instance: &Instance, request: Request<()>, offer: &Offer) -> Result<OpenedSession, ConnectCause> {
    let mut stream = connect_tcp(instance).await?;
    head::write_request(&mut stream, &request).await?;
    let (response, early) = head::read_response(&mut stream).await?;
    let accepted = handshake::check_service_response(offer, &response).map_err(ConnectCause::Refusal)?;
    Ok(OpenedSession { accepted, io: Peer::tcp(stream, early) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::InstanceStatus;

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
