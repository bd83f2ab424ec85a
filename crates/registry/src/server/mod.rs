//! The Eureka REST API over HTTP/1.1, with hyper.
//!
//! [`serve`] accepts connections until its shutdown future completes, then lets requests in flight
//! finish, stops the registry's maintenance (which saves the state file) and returns. [`handle`]
//! answers a single request, for a caller that runs its own server.
//!
//! Access: reads are open to anyone who reaches the port; changes (POST, PUT, DELETE) only to peers
//! in [`crate::RegistryConfig::allow`], others get 403. With [`crate::RegistryConfig::credentials`],
//! every request also needs a Basic credential that check accepts, others get 401.

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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use handler::handle;

use crate::registry::Registry;

/// How long a client may take to send its request headers (slow clients must not pin connections).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long requests in flight get to finish at shutdown before their connections are dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the Eureka REST API of `registry` on `listener` until `shutdown` completes, and runs
/// the registry's maintenance (eviction, state file) meanwhile.
///
/// On shutdown: stops accepting, closes idle connections, gives requests in flight up to 5 s,
/// then saves the state file and returns.
///
/// # Errors
/// None today; accept errors (such as running out of file descriptors) are logged and retried.
/// The `io::Result` leaves room for errors that must stop the server.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
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
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(handle(request, peer, &registry).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
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
                tracing::debug!(%peer, %error, "registry connection ended with an error");
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
