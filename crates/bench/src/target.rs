//! The measured endpoint: its `ws://` or `wss://` URL, and opening and cleanly closing one session
//! on it.
//!
//! Every session is a fresh TCP connection with `TCP_NODELAY`, optionally bound to a chosen source
//! address first (the idle workload spreads them over 127.0.0.0/8), for `wss://` a full TLS
//! handshake ([`crate::tls`]), then an RFC 6455 handshake (tokio-websockets' client: no
//! subprotocol, no extension offered).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::Uri;
use tokio::net::TcpSocket;
use tokio_websockets::{ClientBuilder, CloseCode, Limits, Message, WebSocketStream};

use crate::tls::{self, Stream};
use crate::RunError;

/// A client session: a WebSocket over plain TCP or TLS.
pub type Session = WebSocketStream<Stream>;

/// How long a clean close may take: our close frame, the peer's answer, the peer's TCP close.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening one session may take (TCP connect, TLS and WebSocket handshakes).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed `ws://HOST:PORT/PATH` or `wss://HOST:PORT/PATH` URL.
#[derive(Debug, Clone)]
pub struct WsUrl {
    text: String,
    uri: Uri,
    host: String,
    port: u16,
    tls: bool,
}

impl WsUrl {
    /// Parses a `ws://` or `wss://` URL (the port defaults to 80 or 443, the path to `/`).
    ///
    /// # Errors
    ///
    /// Returns a message when the text is not a URL, has no host, or its scheme is neither `ws`
    /// nor `wss`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text.parse().map_err(|e| format!("invalid URL {text:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => return Err(format!("invalid URL {text:?}: expected ws://HOST:PORT/PATH or wss://HOST:PORT/PATH")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("invalid URL {text:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let uri = if uri.path_and_query().is_none() || uri.path().is_empty() {
            let scheme = if tls { "wss" } else { "ws" };
            format!("{scheme}://{}/", uri.authority().map(|a| a.as_str()).unwrap_or(&host))
                .parse()
                .map_err(|e| format!("invalid URL {text:?}: {e}"))?
        } else {
            uri
        };
        Ok(Self { text: text.to_owned(), uri, host, port, tls })
    }

    /// The URL as typed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the URL is `wss://` (TLS).
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Display for WsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a session could not be opened or closed cleanly.
#[derive(Debug)]
pub enum SessionError {
    /// The host name did not resolve.
    Resolve(String),
    /// TCP connect (or binding the source address) failed.
    Connect(io::Error),
    /// The TLS handshake failed (`wss://`), e.g. an untrusted certificate or a wrong host name.
    Tls(io::Error),
    /// The HTTP upgrade failed or was refused.
    Handshake(tokio_websockets::Error),
    /// The step did not finish in time.
    Timeout(&'static str),
    /// Sending our close frame or reading the peer's failed.
    Close(tokio_websockets::Error),
    /// Waiting for the peer's TCP close failed.
    CloseIo(io::Error),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve(e) => write!(f, "cannot resolve host: {e}"),
            Self::Connect(e) => write!(f, "TCP connect failed: {e}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            Self::Timeout(what) => write!(f, "timed out: {what}"),
            Self::Close(e) => write!(f, "close handshake failed: {e}"),
            Self::CloseIo(e) => write!(f, "waiting for the server's TCP close failed: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// A resolved endpoint, shared by all sessions of a run.
pub struct Target {
    url: WsUrl,
    addr: SocketAddr,
    builder: ClientBuilder<'static>,
    /// Set for `wss://`.
    tls: Option<tls::Client>,
}

impl Target {
    /// Checks the TLS options against the URL, loads the `--ca` certificates for `wss://`, and
    /// resolves the URL's host once (the first address returned is used for every session).
    ///
    /// # Errors
    ///
    /// [`RunError::Usage`] for a `wss://` URL without `ca`, `ca` with a `ws://` URL, or a CA file
    /// that cannot be used; [`RunError::Failed`] when the host does not resolve.
    pub async fn resolve(url: &WsUrl, ca: Option<&Path>) -> Result<Self, RunError> {
        let tls = match (url.tls, ca) {
            (true, Some(ca)) => Some(tls::Client::new(ca, &url.host).map_err(|e| RunError::Usage(e.to_string()))?),
            (true, None) => {
                return Err(RunError::Usage(format!(
                    "{url}: a wss:// URL needs --ca FILE, the PEM file of the CA certificates to trust \
                     (no system roots are used)"
                )))
            }
            (false, Some(_)) => {
                return Err(RunError::Usage(format!("{url}: --ca applies to wss:// URLs only")));
            }
            (false, None) => None,
        };
        let addr = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| RunError::Failed(SessionError::Resolve(format!("{}: {e}", url.host)).to_string()))?
            .next()
            .ok_or_else(|| RunError::Failed(SessionError::Resolve(format!("{}: no address", url.host)).to_string()))?;
        let builder = ClientBuilder::from_uri(url.uri.clone()).limits(Limits::unlimited());
        Ok(Self { url: url.clone(), addr, builder, tls })
    }

    /// The URL of the endpoint.
    pub fn url(&self) -> &WsUrl {
        &self.url
    }

    /// The socket address every session connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens one session: TCP connect (bound to `source` first when given), `TCP_NODELAY`, the TLS
    /// handshake for `wss://`, then the WebSocket handshake, within [`OPEN_TIMEOUT`].
    ///
    /// # Errors
    ///
    /// [`SessionError::Connect`], [`SessionError::Tls`], [`SessionError::Handshake`] or
    /// [`SessionError::Timeout`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the half-open connection.
    pub async fn open(&self, source: Option<IpAddr>) -> Result<Session, SessionError> {
        match tokio::time::timeout(OPEN_TIMEOUT, self.open_inner(source)).await {
            Ok(result) => result,
            Err(_) => Err(SessionError::Timeout("opening the session")),
        }
    }

    async fn open_inner(&self, source: Option<IpAddr>) -> Result<Session, SessionError> {
        let socket = if self.addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(SessionError::Connect)?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).map_err(SessionError::Connect)?;
        }
        socket.set_nodelay(true).map_err(SessionError::Connect)?;
        let stream = socket.connect(self.addr).await.map_err(SessionError::Connect)?;
        stream.set_nodelay(true).map_err(SessionError::Connect)?;
        let stream = match &self.tls {
            Some(client) => client.connect(stream).await.map_err(SessionError::Tls)?,
            None => Stream::Plain(stream),
        };
        let (session, _response) = self.builder.connect_on(stream).await.map_err(SessionError::Handshake)?;
        Ok(session)
    }
}

/// Closes a session cleanly within [`CLOSE_TIMEOUT`]: sends a close frame (1000), reads until the
/// server's close frame, then waits for the server to close TCP before dropping the socket (so the
/// TIME_WAIT state stays on the server's side, as RFC 6455 §7.1.1 intends).
///
/// Messages still arriving before the server's close frame are discarded.
///
/// # Errors
///
/// [`SessionError::Close`], [`SessionError::CloseIo`] or [`SessionError::Timeout`].
pub async fn close(session: Session) -> Result<(), SessionError> {
    match tokio::time::timeout(CLOSE_TIMEOUT, close_inner(session)).await {
        Ok(result) => result,
        Err(_) => Err(SessionError::Timeout("closing the session")),
    }
}

async fn close_inner(mut session: Session) -> Result<(), SessionError> {
    session
        .send(Message::close(Some(CloseCode::NORMAL_CLOSURE), ""))
        .await
        .map_err(SessionError::Close)?;
    while let Some(item) = session.next().await {
        item.map_err(SessionError::Close)?;
    }
    session.into_inner().drain_to_close().await.map_err(SessionError::CloseIo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = WsUrl::parse("ws://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8080));
        assert_eq!(u.uri.path(), "/a/b");
        let u = WsUrl::parse("ws://localhost").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.uri.path()), ("localhost", 80, "/"));
        assert!(!u.is_tls());
        assert!(WsUrl::parse("http://127.0.0.1/").is_err());
        assert!(WsUrl::parse("not a url").is_err());
    }

    #[test]
    fn wss_urls() {
        let u = WsUrl::parse("wss://localhost:8443/echo").unwrap();
        assert!(u.is_tls());
        assert_eq!((u.host.as_str(), u.port, u.uri.path()), ("localhost", 8443, "/echo"));
        let u = WsUrl::parse("wss://localhost").unwrap();
        assert_eq!((u.port, u.uri.scheme_str(), u.uri.path()), (443, Some("wss"), "/"));
    }

    fn usage_message(result: Result<Target, RunError>) -> String {
        match result {
            Err(RunError::Usage(m)) => m,
            Err(RunError::Failed(m)) => panic!("expected a usage error, got a failure: {m}"),
            Ok(_) => panic!("expected a usage error"),
        }
    }

    #[tokio::test]
    async fn wss_needs_ca_and_ws_refuses_it() {
        let wss = WsUrl::parse("wss://127.0.0.1:1/").unwrap();
        let message = usage_message(Target::resolve(&wss, None).await);
        assert!(message.contains("needs --ca FILE"), "{message}");
        let ws = WsUrl::parse("ws://127.0.0.1:1/").unwrap();
        let message = usage_message(Target::resolve(&ws, Some(Path::new("ca.pem"))).await);
        assert!(message.contains("--ca applies to wss:// URLs only"), "{message}");
    }
}
