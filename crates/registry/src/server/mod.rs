//! The Eureka REST API over HTTP/1.1, with hyper.
//!
//! [`serve`] accepts connections until its shutdown future completes, then lets requests in flight
//! finish, stops the registry's maintenance (which saves the state file) and returns. [`handle`]
//! answers a single request, for a caller that runs its own server.
//!
//! [`serve_tls`] serves the same API over https: the caller's rustls configuration brings the
//! certificate and, when clients must or may present one, the client certificate verifier; this crate
//! holds no certificate logic. The TLS handshake runs in the connection's own task under the header
//! time-out, so a slow client never holds up the others; a failed handshake is logged and closes that
//! connection only.
//!
//! Access:
//! - changes (POST, PUT, DELETE) only from peers in [`crate::RegistryConfig::allow`], others get 403,
//!   whatever certificate or credential they bring;
//! - reads are open to anyone who reaches the port, unless the registry authenticates: with a
//!   [`crate::RegistryConfig::credentials`] check, or TLS asking for client certificates
//!   ([`Tls::client_certificates`]), every request needs a verified client certificate or a Basic
//!   credential the check accepts (either suffices), others get 401. When TLS requires a certificate,
//!   a client without one does not get past the handshake.

mod body;
mod handler;
mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub use handler::{handle, ClientCertificate, Peer};

use crate::registry::Registry;

/// How long a client may take to send its request headers, and over https first to complete its TLS
/// handshake (slow clients must not pin connections).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long requests in flight get to finish at shutdown before their connections are dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS on the registry's port, for [`serve_tls`].
#[derive(Clone)]
pub struct Tls {
    /// Performs the handshakes; its rustls configuration holds the certificate and, for client
    /// authentication, the client certificate verifier.
    pub acceptor: TlsAcceptor,
    /// Whether that configuration asks clients for a certificate: then a verified one authenticates
    /// its requests, and every request needs one or a Basic credential (see the module doc).
    pub client_certificates: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("client_certificates", &self.client_certificates).finish_non_exhaustive()
    }
}

/// Serves the Eureka REST API of `registry` over plain HTTP on `listener` until `shutdown`
/// completes, and runs the registry's maintenance (eviction, state file) meanwhile.
///
/// On shutdown: stops accepting, closes idle connections, gives requests in flight up to 5 s,
/// then saves the state file and returns.
///
/// # Errors
/// None today; accept errors (such as running out of file descriptors) are logged and retried.
/// The `io::Result` leaves room for errors that must stop the server.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    run(listener, registry, None, shutdown).await
}

/// [`serve`] over https: every connection starts with a TLS handshake through `tls`.
///
/// # Errors
/// As [`serve`]; failed handshakes end their connection only.
pub async fn serve_tls(listener: TcpListener, registry: Registry, tls: Tls, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    run(listener, registry, Some(tls), shutdown).await
}

async fn run(listener: TcpListener, registry: Registry, tls: Option<Tls>, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let maintenance = tokio::spawn({
        let registry = registry.clone();
        let mut stopping = stopping.clone();
        async move { registry.run_maintenance(async move { drop(stopping.wait_for(|stop| *stop).await) }).await }
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let Next::Accepted(accepted) = next_connection(&listener, &mut connections, shutdown.as_mut()).await else { break };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "registry accept failed");
                // EMFILE and friends persist for a moment; retrying at once would spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let registry = registry.clone();
        let mut stopping = stopping.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            match tls {
                None => serve_connection(stream, Peer::from(peer), registry, stopping).await,
                Some(tls) => {
                    if let Some((stream, certificate)) = handshake(&tls, stream, peer, &mut stopping).await {
                        serve_connection(stream, Peer { address: peer, certificate }, registry, stopping).await;
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        tracing::warn!(left = connections.len(), "registry connections still busy at shutdown; dropping them");
        connections.shutdown().await;
    }
    if let Err(error) = maintenance.await {
        tracing::warn!(%error, "registry maintenance task failed");
    }
    Ok(())
}

/// The TLS handshake of the connection from `peer`, within [`HEADER_TIMEOUT`] and abandoned at
/// shutdown; `None` (logged) when it fails. Also tells what the client proved with a certificate.
async fn handshake(tls: &Tls, stream: TcpStream, peer: SocketAddr, stopping: &mut watch::Receiver<bool>) -> Option<(TlsStream<TcpStream>, ClientCertificate)> {
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(HEADER_TIMEOUT, tls.acceptor.accept(stream)) => accepted,
        _ = async { drop(stopping.wait_for(|stop| *stop).await) } => return None,
    };
    match accepted {
        Ok(Ok(stream)) => {
            // The verifier accepted the chain during the handshake, or the handshake would have failed.
            let certificate = match (tls.client_certificates, stream.get_ref().1.peer_certificates()) {
                (false, _) => ClientCertificate::NotAsked,
                (true, Some(_)) => ClientCertificate::Verified,
                (true, None) => ClientCertificate::Absent,
            };
            Some((stream, certificate))
        }
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "registry TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(%peer, "registry TLS handshake timed out");
            None
        }
    }
}

/// Serves the requests of one connection until it ends, or until a stop once its current request is
/// answered.
async fn serve_connection<I>(io: I, peer: Peer, registry: Registry, mut stopping: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let registry = registry.clone();
        async move { Ok::<_, Infallible>(handle(request, peer, &registry).await) }
    });
    let connection = http1::Builder::new().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // The connection ends by itself, or finishes its current request after a stop.
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(peer = %peer.address, %error, "registry connection ended with an error");
    }
}

/// What [`next_connection`] got.
enum Next {
    /// The shutdown future completed.
    Stop,
    /// `accept` returned.
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
}

/// Reaps the connections that have finished, then waits for a new one or for `shutdown`.
///
/// Finished connections are reaped without waiting before every accept: under load `accept` is
/// always ready, so a `join_next` arm after it would never run and the set would keep every
/// connection the server ever had. The arm stays for quiet times, when nothing is accepted.
///
/// # Cancel safety
/// Cancel safe: nothing is accepted unless returned.
async fn next_connection(listener: &TcpListener, connections: &mut JoinSet<()>, mut shutdown: Pin<&mut impl Future<Output = ()>>) -> Next {
    loop {
        while connections.try_join_next().is_some() {}
        // Shutdown first: once asked to stop, take no new connection.
        tokio::select! {
            biased;
            () = shutdown.as_mut() => return Next::Stop,
            accepted = listener.accept() => return Next::Accepted(accepted),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finished_connections_are_reaped_before_each_accept() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut connections = JoinSet::new();
        let handles: Vec<_> = (0..50).map(|_| connections.spawn(async {})).collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !handles.iter().all(|h| h.is_finished()) {
            assert!(std::time::Instant::now() < deadline, "the tasks never finished");
            tokio::task::yield_now().await;
        }
        // A connection is waiting, so accept is ready at once, as under load.
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let shutdown = std::future::pending::<()>();
        tokio::pin!(shutdown);
        assert!(matches!(next_connection(&listener, &mut connections, shutdown.as_mut()).await, Next::Accepted(Ok(_))));
        assert_eq!(connections.len(), 0, "finished connections left in the set");
    }
}
