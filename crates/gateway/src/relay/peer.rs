//! A peer's connection once its handshake is done, and the two halves the pumps use.
//!
//! hyper hands an upgraded connection over as [`Upgraded`], a boxed trait object. Splitting that for
//! the two pumps takes a lock on every read and write (`tokio::io::split`) and two more heap objects
//! per peer, held for the whole session. A plain TCP connection is taken back out of it instead and
//! split by reference: no lock, nothing on the heap. A TLS connection the gateway opened to a service
//! is held boxed (rustls's state is large, and most sessions have none) and split with
//! `tokio::io::split`, since both directions share one TLS state. Other connections keep the general
//! path.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::tls::ReadAhead;

/// A TLS connection to a secure service instance.
pub type ServiceTlsStream = TlsStream<ReadAhead<TcpStream>>;

/// One side of a session, ready for the relay.
#[derive(Debug)]
pub enum Peer {
    /// A plain TCP connection.
    Tcp {
        /// The socket.
        stream: TcpStream,
        /// Bytes read past the handshake (by hyper for the client, by the gateway's own response
        /// reader for the service): the peer's first frames, relayed before the socket is read
        /// again. Rare, so boxed: the session keeps a pointer, not a `Bytes`.
        early: Option<Box<Bytes>>,
    },
    /// A TLS connection to a service (wss).
    Tls {
        /// The connection.
        stream: Box<ServiceTlsStream>,
        /// Bytes read past the handshake, as for [`Peer::Tcp`].
        early: Option<Box<Bytes>>,
    },
    /// Any other connection, through hyper's upgrade object.
    Other(TokioIo<Upgraded>),
}

impl Peer {
    /// Takes over a connection hyper has upgraded.
    pub fn new(upgraded: Upgraded) -> Peer {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Peer::tcp(parts.io.into_inner(), parts.read_buf),
            Err(upgraded) => Peer::Other(TokioIo::new(upgraded)),
        }
    }

    /// A plain TCP connection, with the bytes already read from it past its handshake.
    pub fn tcp(stream: TcpStream, early: Bytes) -> Peer {
        Peer::Tcp { stream, early: keep(early) }
    }

    /// A TLS connection to a service, with the bytes already read from it past its handshake.
    pub fn tls(stream: ServiceTlsStream, early: Bytes) -> Peer {
        Peer::Tls { stream: Box::new(stream), early: keep(early) }
    }

    /// The reading and the writing half, both borrowing the connection.
    pub(super) fn split(&mut self) -> (Reader<'_>, Writer<'_>) {
        match self {
            Peer::Tcp { stream, early } => {
                let (reader, writer) = stream.split();
                (Reader::Tcp { early, reader }, Writer::Tcp(writer))
            }
            Peer::Tls { stream, early } => {
                let (reader, writer) = tokio::io::split(stream.as_mut());
                (Reader::Tls { early, reader }, Writer::Tls(writer))
            }
            Peer::Other(io) => {
                let (reader, writer) = tokio::io::split(io);
                (Reader::Other(reader), Writer::Other(writer))
            }
        }
    }
}

/// Early bytes worth keeping: an empty view would still keep the whole handshake read buffer alive
/// for the session.
fn keep(early: Bytes) -> Option<Box<Bytes>> {
    (!early.is_empty()).then(|| Box::new(early))
}

/// Moves early bytes into `buf`, as many as fit, and frees them once all are handed out. Returns
/// whether there were any: if not, the connection is read.
fn read_early(early: &mut Option<Box<Bytes>>, buf: &mut ReadBuf<'_>) -> bool {
    // An empty `buf` would read as the end of the stream; the pumps never pass one.
    debug_assert!(buf.remaining() > 0);
    let Some(bytes) = early else {
        return false;
    };
    let taken = bytes.split_to(bytes.len().min(buf.remaining()));
    buf.put_slice(&taken);
    if bytes.is_empty() {
        *early = None;
    }
    true
}

/// The reading half of a [`Peer`].
pub(super) enum Reader<'a> {
    Tcp { early: &'a mut Option<Box<Bytes>>, reader: tcp::ReadHalf<'a> },
    Tls { early: &'a mut Option<Box<Bytes>>, reader: tokio::io::ReadHalf<&'a mut ServiceTlsStream> },
    Other(tokio::io::ReadHalf<&'a mut TokioIo<Upgraded>>),
}

/// The writing half of a [`Peer`].
pub(super) enum Writer<'a> {
    Tcp(tcp::WriteHalf<'a>),
    Tls(tokio::io::WriteHalf<&'a mut ServiceTlsStream>),
    Other(tokio::io::WriteHalf<&'a mut TokioIo<Upgraded>>),
}

impl AsyncRead for Reader<'_> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp { early, reader } => {
                if read_early(early, buf) {
                    return Poll::Ready(Ok(()));
                }
                Pin::new(reader).poll_read(cx, buf)
            }
            Reader::Tls { early, reader } => {
                if read_early(early, buf) {
                    return Poll::Ready(Ok(()));
                }
                Pin::new(reader).poll_read(cx, buf)
            }
            Reader::Other(reader) => Pin::new(reader).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writer<'_> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(writer) => Pin::new(writer).poll_write(cx, buf),
            Writer::Tls(writer) => Pin::new(writer).poll_write(cx, buf),
            Writer::Other(writer) => Pin::new(writer).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(writer) => Pin::new(writer).poll_flush(cx),
            Writer::Tls(writer) => Pin::new(writer).poll_flush(cx),
            Writer::Other(writer) => Pin::new(writer).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(writer) => Pin::new(writer).poll_shutdown(cx),
            Writer::Tls(writer) => Pin::new(writer).poll_shutdown(cx),
            Writer::Other(writer) => Pin::new(writer).poll_shutdown(cx),
        }
    }
}

/// A connected pair of loopback sockets for tests: the gateway's end as a [`Peer`], and the remote
/// peer's end.
#[cfg(test)]
pub(super) async fn tcp_pair() -> (Peer, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind on loopback");
    let remote = TcpStream::connect(listener.local_addr().expect("bound address")).await.expect("connect on loopback");
    let (stream, _) = listener.accept().await.expect("accept on loopback");
    (Peer::tcp(stream, Bytes::new()), remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn early_bytes_come_first_then_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut remote = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let mut peer = Peer::Tcp { stream, early: Some(Box::new(Bytes::from_static(b"early "))) };
        remote.write_all(b"late").await.unwrap();
        remote.shutdown().await.unwrap();
        let (mut reader, mut writer) = peer.split();
        let mut small = [0u8; 3];
        assert_eq!(reader.read(&mut small).await.unwrap(), 3, "a read never takes more than fits");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!([&small[..], &rest].concat(), b"early late");
        writer.write_all(b"back").await.unwrap();
        writer.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        remote.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"back");
    }
}
