//! The gateway's workers: one thread per core, each with a single-threaded tokio runtime that
//! accepts on a listening socket of its own.
//!
//! All the sockets are bound to the gateway's one port with `SO_REUSEPORT`, so the kernel spreads
//! new connections over them. A WebSocket session then lives on the worker that accepted it, together
//! with its service connection, and is never woken on another thread (the HTTP proxy's pooled
//! connections are shared by all workers). Against one work-stealing runtime with as many threads,
//! this measured 13–43 % more 64 B messages per second and a lower p99 (BENCHMARKS.md).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tracing::error;

/// The listening sockets of the gateway's port, one per worker, not yet given to a runtime.
#[derive(Debug)]
pub(crate) struct Listeners {
    sockets: Vec<std::net::TcpListener>,
    address: SocketAddr,
}

impl Listeners {
    /// Binds one socket per core to `address` (port 0: one port the kernel picks for all).
    ///
    /// A plain bind comes first: it fails when anything listens on the port already, so a second
    /// gateway started by mistake cannot silently share the port through `SO_REUSEPORT`. Two gateways
    /// started in the same instant could still both pass it, and a process of the same user that
    /// binds with `SO_REUSEPORT` later would get a share of the connections: that is inherent to the
    /// option.
    pub(crate) fn bind(address: SocketAddr) -> io::Result<Listeners> {
        let address = std::net::TcpListener::bind(address)?.local_addr()?;
        let workers = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let sockets = (0..workers).map(|_| reuse_port_listener(address)).collect::<io::Result<_>>()?;
        Ok(Listeners { sockets, address })
    }

    /// The address all the sockets are bound to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Starts a worker per socket, each running `accept_loop` on its socket until `stop` turns true
    /// and `accept_loop` returns.
    ///
    /// # Errors
    ///
    /// When a worker's runtime or thread cannot be made. Workers started before then stop with
    /// `stop`; the sockets of the others are closed.
    pub(crate) fn start<F, Fut>(self, accept_loop: F, stop: &watch::Receiver<bool>) -> io::Result<Workers>
    where
        F: Fn(TcpListener, watch::Receiver<bool>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()>,
    {
        // Each worker holds a sender until its thread ends: the channel closes when all have ended.
        let (running, ended) = mpsc::channel::<Infallible>(1);
        for (index, socket) in self.sockets.into_iter().enumerate() {
            let accept_loop = accept_loop.clone();
            let stop = stop.clone();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let running = running.clone();
            let worker = move || {
                let _running = running;
                runtime.block_on(async move {
                    match TcpListener::from_std(socket) {
                        Ok(listener) => accept_loop(listener, stop).await,
                        // The socket closes here: the kernel then sends its connections to the other workers.
                        Err(error) => error!(%error, worker = index, "cannot register the listening socket"),
                    }
                });
            };
            std::thread::Builder::new().name(format!("wsgate-worker-{index}")).spawn(worker)?;
        }
        Ok(Workers { ended })
    }
}

/// The started workers.
#[derive(Debug)]
pub(crate) struct Workers {
    ended: mpsc::Receiver<Infallible>,
}

impl Workers {
    /// Waits up to `timeout` for every worker's thread to end; whether they all did.
    pub(crate) async fn stopped(mut self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.ended.recv()).await.is_ok()
    }
}

fn reuse_port_listener(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    // Accepted connections inherit TCP_NODELAY from the listener (Linux): relayed frames are sent
    // whole, without a setsockopt per connection.
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    // From here on the socket is std's: it is registered with a runtime only inside its worker.
    let listener = socket.listen(1024)?.into_std()?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_in_use_is_refused_even_to_a_second_set_of_workers() {
        let first = Listeners::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        assert_eq!(first.sockets.len(), std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
        assert!(first.sockets.iter().all(|s| s.local_addr().unwrap() == first.local_addr()));
        let again = Listeners::bind(first.local_addr()).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn every_worker_accepts_and_all_stop_together() {
        let listeners = Listeners::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let address = listeners.local_addr();
        let workers = listeners.sockets.len();
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = watch::channel(false);
        let started = listeners.start(
            move |listener: TcpListener, mut stop: watch::Receiver<bool>| {
                let accepted_tx = accepted_tx.clone();
                async move {
                    loop {
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => return,
                            Ok((stream, _)) = listener.accept() => {
                                let _ = accepted_tx.send((std::thread::current().name().map(str::to_owned), stream.nodelay().ok()));
                                drop(stream);
                            }
                        }
                    }
                }
            },
            &stopped,
        )
        .unwrap();
        let mut threads = std::collections::HashSet::new();
        // The kernel spreads connections by their address hash: enough of them reach every worker.
        for _ in 0..100 * workers {
            let _ = tokio::net::TcpStream::connect(address).await.unwrap();
            let (thread, nodelay) = accepted.recv().await.unwrap();
            assert_eq!(nodelay, Some(true), "accepted connections inherit TCP_NODELAY");
            threads.insert(thread);
            if threads.len() == workers {
                break;
            }
        }
        assert_eq!(threads.len(), workers, "{threads:?}");
        stop.send(true).unwrap();
        assert!(started.stopped(Duration::from_secs(5)).await, "every worker's thread ended");
        assert!(tokio::net::TcpStream::connect(address).await.is_err(), "the workers closed their sockets");
    }
}
