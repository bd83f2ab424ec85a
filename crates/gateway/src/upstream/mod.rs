//! Opening the session to a service instance: TCP connect, then the upgrade request, within
//! `connectTimeout`.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;
use tracing::debug;

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
    /// The service did not speak HTTP/1.1.
    #[error("{0}")]
    Http(hyper::Error),
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

/// Connects to the TCP port of `instance`, with `TCP_NODELAY` set: relayed frames are sent whole.
pub async fn connect_tcp(instance: &Instance) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((instance.host.as_str(), instance.port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
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
    let stream = connect_tcp(instance).await?;
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(ConnectCause::Http)?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            debug!(%error, "upstream handshake connection ended");
        }
    });
    let response = sender.send_request(request.map(|()| Empty::new())).await.map_err(ConnectCause::Http)?;
    let accepted = handshake::check_service_response(offer, &response).map_err(ConnectCause::Refusal)?;
    let upgraded = hyper::upgrade::on(response).await.map_err(ConnectCause::Http)?;
    Ok(OpenedSession { accepted, io: Peer::new(upgraded) })
}
