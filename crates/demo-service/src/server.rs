//! The listener: binding, the accept loop, and the signal that ends sessions when serving stops.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::error::DemoError;
use crate::route::{self, BasePath, Context};

/// How long a client may take to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to pause accepting after a listener error that is not about one connection
/// (for example, out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Where and as whom the demo service runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The address to listen on (use a loopback address unless you mean to expose it).
    pub address: IpAddr,
    /// The port to listen on; `0` picks a free one (read it back with
    /// [`DemoService::local_addr`]).
    pub port: u16,
    /// The path prefix of every endpoint, such as `/discoverableclient`. It must start with
    /// `/`; a trailing `/` is ignored, and `/` alone serves the endpoints at the root.
    pub base_path: String,
    /// The instance id reported by the greeting endpoint and the index page.
    pub instance_id: String,
}

/// A bound demo service, ready to [`serve`](DemoService::serve).
#[derive(Debug)]
pub struct DemoService {
    /// The bound listener.
    listener: TcpListener,
    /// The address the listener is bound to (with the real port when `0` was asked for).
    local_addr: SocketAddr,
    /// What every request handler needs to know.
    context: Context,
}

/// Completes when serving has stopped, so open WebSocket sessions can end.
///
/// It is a `watch` receiver whose sender is dropped, never sent on, when
/// [`DemoService::serve`] returns.
#[derive(Debug, Clone)]
pub(crate) struct Stopped(watch::Receiver<()>);

// ===== impl DemoService =====

impl DemoService {
    /// Validates the options and binds the listener.
    ///
    /// # Errors
    ///
    /// [`DemoError::InvalidBasePath`] if `base_path` is not a usable path prefix, and
    /// [`DemoError::Bind`] if the address cannot be listened on.
    pub async fn bind(options: Options) -> Result<Self, DemoError> {
        let base_path = BasePath::parse(&options.base_path)?;
        let address = SocketAddr::new(options.address, options.port);
        let bind_error = |source| DemoError::Bind { address, source };
        let listener = TcpListener::bind(address).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            local_addr,
            context: Context {
                base_path,
                instance_id: options.instance_id,
            },
        })
    }

    /// The address the listener is bound to, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections and serves them until `shutdown` completes.
    ///
    /// When `shutdown` completes the listener is closed, and open HTTP connections and
    /// WebSocket sessions are dropped without a close handshake.
    ///
    /// # Errors
    ///
    /// None at present: errors of single connections are logged and do not stop the
    /// service. The `Result` leaves room for failures of the listener itself.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the service like `shutdown` does.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DemoError> {
        let Self {
            listener,
            local_addr,
            context,
        } = self;
        // Dropping `_stop` (when this function returns) completes every `Stopped`.
        let (_stop, stopped) = watch::channel(());
        let stopped = Stopped(stopped);
        let context = Arc::new(context);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        info!(%local_addr, "demo service serving");
        loop {
            // Order: shutdown first, so a stop request wins over a busy listener. Finished
            // connection tasks are reaped as they end, so the set holds only live ones.
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = connections.join_next() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(stream, peer, context.clone(), stopped.clone()));
                    }
                    Err(error) if is_connection_error(&error) => {
                        debug!(%error, "accept failed for one connection");
                    }
                    Err(error) => {
                        warn!(%error, "accept failed; pausing");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
            }
        }
        info!(%local_addr, "demo service stopped");
        // Dropping `connections` aborts the HTTP connection tasks.
        Ok(())
    }
}

/// Serves HTTP/1.1 (with upgrades) on one accepted connection.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    context: Arc<Context>,
    stopped: Stopped,
) {
    let service = service_fn(move |request| {
        let context = context.clone();
        let stopped = stopped.clone();
        async move { Ok::<_, Infallible>(route::handle(request, &context, stopped).await) }
    });
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(error) = result {
        debug!(%peer, %error, "HTTP connection ended with an error");
    }
}

/// Whether an accept error concerns only the connection being accepted.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

// ===== impl Stopped =====

impl Stopped {
    /// Completes once serving has stopped.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only waits.
    pub(crate) async fn wait(mut self) {
        // The sender never sends, so this returns only when it is dropped.
        while self.0.changed().await.is_ok() {}
    }
}
