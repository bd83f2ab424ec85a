//! The gateway's listener: accepts connections, serves HTTP/1.1 on them with hyper, and sends each
//! request down its pipeline (diagnostics, WebSocket, or HTTP proxy).

use std::convert::Infallible;
use std::future::Future;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::admin;
use crate::auth::{login, Guard, RegistryUsers};
use crate::balance::Picker;
use crate::body::Body;
use crate::config::{format_duration, Config, WebSocketConfig};
use crate::discovery::eureka::EurekaSource;
use crate::discovery::listener::{RegistryListener, RegistryStartError};
use crate::discovery::{ServiceDirectory, Source};
use crate::drain::Drain;
use crate::failure::Failure;
use crate::handshake::{self, Forwarded, Offer};
use crate::limits::SessionLimits;
use crate::proxy::HttpProxy;
use crate::relay::BufferPool;
use crate::route::RouteTable;
use crate::session::SessionTable;
use crate::tls::client::{ServiceTls, ServiceTlsError};
use crate::tls::{self, ReadAhead, ServerIdentity, TlsError};
use crate::worker::{Listeners, Workers};
use crate::websocket;

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A worker thread or its runtime could not be started.
    #[error("cannot start the workers: {0}")]
    Workers(io::Error),
    /// The TLS certificate or key could not be used.
    #[error("cannot load the TLS identity: {0}")]
    Tls(#[from] TlsError),
    /// The trust store or the client certificate for TLS towards services could not be used.
    #[error("cannot set up TLS towards services: {0}")]
    ServiceTls(#[from] ServiceTlsError),
    /// The embedded registry could not start (its port, its state file or its TLS trust store).
    #[error(transparent)]
    Registry(#[from] RegistryStartError),
    /// The external Eureka cluster's client could not be built (its service URLs).
    #[error("eureka.client.serviceUrl.defaultZone: {0}")]
    Eureka(#[from] wsgate_registry::client::ConfigError),
}

/// What every request handler shares: configuration, the live route table, the picker, the session
/// table and the HTTP client.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) websocket: WebSocketConfig,
    pub(crate) routes: watch::Receiver<Arc<RouteTable>>,
    pub(crate) picker: Picker,
    pub(crate) sessions: SessionTable,
    /// The session counts against `server.limits.*`.
    pub(crate) limits: SessionLimits,
    pub(crate) proxy: HttpProxy,
    pub(crate) buffers: BufferPool,
    /// TLS towards secure instances, shared with the HTTP proxy.
    pub(crate) service_tls: ServiceTls,
    port: u16,
    /// `server.handshakeTimeout`.
    handshake_timeout: Duration,
    /// `server.maxHttpHeaderSize`.
    max_http_header_size: usize,
    /// The client-facing TLS configuration; `None` serves plain ws and http.
    tls: Option<Arc<ServerConfig>>,
    /// Where the routes come from, for `/application/routes`.
    pub(crate) directory: Arc<ServiceDirectory>,
    /// Origin, credential and diagnostics checks.
    pub(crate) guard: Guard,
    /// Every task serving a client, and the signal that the gateway stops.
    pub(crate) drain: Drain,
    /// `server.shutdownTimeout`.
    shutdown_timeout: Duration,
}

impl Shared {
    /// The `X-Forwarded-*` facts of a request from `client`, with the token the service gets
    /// ([`Guard::admit`]).
    pub(crate) fn forwarded<B>(&self, client: SocketAddr, request: &Request<B>, service_token: Option<String>) -> Forwarded {
        let proto = if self.tls.is_some() { "https" } else { "http" };
        Forwarded { client, proto, host: request.headers().get(header::HOST).cloned(), port: self.port, service_token }
    }
}

/// A bound gateway, ready to serve.
#[derive(Debug)]
pub struct Gateway {
    listeners: Listeners,
    shared: Arc<Shared>,
    directory: Arc<ServiceDirectory>,
    registry: Option<RegistryListener>,
    eureka: Option<EurekaSource>,
    /// The client-facing certificate, when TLS is on.
    identity: Option<Arc<ServerIdentity>>,
}

impl Gateway {
    /// Binds the listening sockets of `config` (one per worker) and, when it is enabled, the
    /// embedded registry's port on the same address; loads the static services and the registry's
    /// state file, and prepares the client of the external Eureka cluster when one is configured.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Tls`] when the TLS certificate or key cannot be used, [`GatewayError::ServiceTls`]
    /// when the trust store or the client certificate for services cannot be used, [`GatewayError::Bind`]
    /// when the address cannot be bound, [`GatewayError::Registry`] when the registry's port cannot
    /// be bound, or its state file or its client certificates' trust store cannot be read,
    /// [`GatewayError::Eureka`] when a Eureka service URL is not usable.
    pub async fn bind(config: Config) -> Result<Gateway, GatewayError> {
        let identity = config.tls.map(ServerIdentity::load).transpose()?.map(Arc::new);
        let tls = identity.clone().map(tls::server_config).transpose()?;
        let service_tls = ServiceTls::new(&config.service_tls)?;
        let listeners = Listeners::bind(config.listen).map_err(|source| GatewayError::Bind { address: config.listen, source })?;
        let port = listeners.local_addr().port();
        let directory = Arc::new(ServiceDirectory::new());
        directory.update(Source::Static, config.services);
        let guard = Guard::new(config.auth, config.websocket.allowed_origins.clone());
        let registry = match config.embedded {
            None => None,
            Some(mut embedded) => {
                // Validation made sure that users come with an htpasswd file, hence an authenticator.
                if let (Some(users), Some(authenticator)) = (embedded.users.take(), guard.authenticator()) {
                    embedded.registry.credentials = Some(Arc::new(RegistryUsers::new(users, Arc::clone(authenticator))));
                }
                Some(RegistryListener::bind(config.listen.ip(), embedded, identity.as_ref(), &directory).await?)
            }
        };
        let listen = SocketAddr::new(config.listen.ip(), port);
        // The cluster is reached as services are, with the same trust and client certificate (as Zowe's
        // gateway uses its keystore towards the discovery service).
        let eureka = config
            .eureka
            .map(|client| EurekaSource::new(wsgate_registry::ClientConfig { tls: Some(Arc::clone(service_tls.config())), ..client }, &directory, listen, tls.is_some()))
            .transpose()?;
        let prefix = std::collections::hash_map::RandomState::new().hash_one(port) as u32;
        let shared = Shared {
            routes: directory.routes(),
            picker: Picker::new(&config.load_balancing),
            sessions: SessionTable::new(prefix),
            limits: SessionLimits::new(&config.limits),
            proxy: HttpProxy::new(config.websocket.connect_timeout, &service_tls),
            buffers: BufferPool::default(),
            guard,
            service_tls,
            websocket: config.websocket,
            port,
            handshake_timeout: config.handshake_timeout,
            max_http_header_size: config.max_http_header_size,
            tls,
            directory: Arc::clone(&directory),
            drain: Drain::new(),
            shutdown_timeout: config.shutdown_timeout,
        };
        Ok(Gateway { listeners, shared: Arc::new(shared), directory, registry, eureka, identity })
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listeners.local_addr()
    }

    /// The address the embedded registry listens on, when it is enabled.
    pub fn registry_addr(&self) -> Option<SocketAddr> {
        self.registry.as_ref().map(RegistryListener::address)
    }

    /// The service directory, for sources that add services at run time.
    pub fn directory(&self) -> Arc<ServiceDirectory> {
        Arc::clone(&self.directory)
    }

    /// The client-facing TLS certificate, when TLS is on: [`ServerIdentity::reload`] makes new
    /// handshakes use the files' current contents.
    pub fn tls_identity(&self) -> Option<Arc<ServerIdentity>> {
        self.identity.clone()
    }

    /// The open sessions.
    pub fn sessions(&self) -> SessionTable {
        self.shared.sessions.clone()
    }

    /// Starts the workers (one thread and runtime per core, see [`crate::worker`]), the embedded
    /// registry and the external Eureka client, then serves connections until `shutdown` completes:
    /// [`Gateway::start`], then [`Running::wait`].
    ///
    /// # Errors
    ///
    /// [`GatewayError::Workers`] when a worker thread or runtime cannot be started.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        self.start()?.wait(shutdown).await;
        Ok(())
    }

    /// Starts the workers (one thread and runtime per core, see [`crate::worker`]), and spawns the
    /// embedded registry and the external Eureka client on the current runtime. Once it returns, every
    /// worker accepts: the moment to tell the world the gateway listens.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Workers`] when a worker thread or runtime cannot be started.
    pub fn start(self) -> Result<Running, GatewayError> {
        let (stop, stopped) = watch::channel(false);
        let Gateway { listeners, shared, registry, eureka, .. } = self;
        let serving = Arc::clone(&shared);
        let started = listeners.start(move |listener, stop| accept_loop(listener, Arc::clone(&serving), stop), &stopped);
        let workers = match started {
            Ok(workers) => workers,
            Err(source) => {
                // The workers started so far stop, and do not wait for a drain nobody will run.
                let _ = stop.send(true);
                shared.drain.close();
                return Err(GatewayError::Workers(source));
            }
        };
        let registry = registry.map(|registry| registry.spawn(&stopped));
        let eureka = eureka.map(|eureka| eureka.spawn(&stopped));
        Ok(Running { stop, shared, workers: Some(workers), registry, eureka })
    }
}

/// A started gateway: its workers accept until [`Running::wait`]'s shutdown completes. Dropped
/// without [`Running::wait`], it tells everything to stop and waits for nothing.
#[derive(Debug)]
pub struct Running {
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
    workers: Option<Workers>,
    registry: Option<tokio::task::JoinHandle<()>>,
    eureka: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.shared.drain.close();
    }
}

impl Running {
    /// Serves until `shutdown` completes, then stops gracefully: the workers stop accepting, every
    /// WebSocket session closes both peers with 1001 `Gateway stopping` ([`crate::drain`]), every
    /// HTTP connection finishes its request in flight, and the gateway waits for them up to
    /// `server.shutdownTimeout`; meanwhile the registry finishes its requests in flight and saves its
    /// state file, and the Eureka client stops. Returns once the workers have ended, or at the
    /// time-out (the binary then exits, which ends what is left).
    pub async fn wait(mut self, shutdown: impl Future<Output = ()>) {
        shutdown.await;
        let _ = self.stop.send(true);
        let open = self.shared.sessions.len();
        info!(sessions = open, timeout = %format_duration(self.shared.shutdown_timeout), "stopping: closing sessions and connections");
        match self.shared.drain.stop(self.shared.shutdown_timeout).await {
            0 => {
                let stopped = match self.workers.take() {
                    Some(workers) => workers.stopped(Duration::from_secs(1)).await,
                    None => true,
                };
                if !stopped {
                    warn!("a worker did not stop in time");
                }
                info!(sessions = open, "stopped: every session and connection closed");
            }
            left => warn!(left, "server.shutdownTimeout passed: giving up on the connections and sessions left"),
        }
        if let Some(registry) = self.registry.take() {
            if let Err(error) = registry.await {
                warn!(%error, "embedded registry task failed");
            }
        }
        if let Some(eureka) = self.eureka.take() {
            if let Err(error) = eureka.await {
                warn!(%error, "Eureka client task failed");
            }
        }
    }
}

/// One worker's accept loop: each connection gets a task on this worker, until `stop` turns true.
/// Once stopped, the worker's runtime keeps running until the drain has finished, so that its
/// sessions can close.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, client) = tokio::select! {
            // A dropped sender stops the worker too (the drain is closed then, see `Running`'s drop).
            stopped = stop.wait_for(|stop| *stop) => {
                // The watch's read guard goes first: held during the drain, it would block the
                // sender's next write (`Running`'s drop) until the drain ends.
                drop(stopped);
                drop(listener);
                shared.drain.finished().await;
                return;
            }
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or similar: wait a little instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The TLS handshake and the first request head share one time-out, from the accept on.
        let deadline = Instant::now() + shared.handshake_timeout;
        let serving = Arc::clone(&shared);
        match &shared.tls {
            None => shared.drain.spawn(serve_http(serving, client, stream, deadline)),
            Some(tls) => {
                let handshake = TlsAcceptor::from(Arc::clone(tls)).accept(ReadAhead::new(stream));
                shared.drain.spawn(async move {
                    // A client still in its handshake when the gateway stops has sent no request: dropped.
                    let handshake = tokio::select! {
                        handshake = tokio::time::timeout_at(deadline, handshake) => handshake,
                        () = serving.drain.stopping() => {
                            debug!(%client, "TLS handshake dropped: the gateway stops");
                            return;
                        }
                    };
                    match handshake {
                        Ok(Ok(stream)) => serve_http(serving, client, stream, deadline).await,
                        Ok(Err(error)) => debug!(%client, %error, "TLS handshake failed"),
                        Err(_) => debug!(%client, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Serves HTTP/1.1 requests on one client connection, plain or TLS, until it ends or is upgraded.
///
/// A request head must be complete by `deadline` and fit `server.maxHttpHeaderSize` (else hyper
/// answers 431 itself); a client too slow is disconnected without an answer (slowloris).
async fn serve_http<I>(shared: Arc<Shared>, client: SocketAddr, io: I, deadline: Instant)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // hyper restarts this timer for each request head of a kept-alive connection (which also bounds
    // its idle time); every head gets what the TLS handshake left of the time-out.
    let header_read_timeout = deadline.saturating_duration_since(Instant::now());
    let max_header_size = shared.max_http_header_size;
    let dispatching = Arc::clone(&shared);
    let service = service_fn(move |request| dispatch(Arc::clone(&dispatching), client, request));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_header_size(max_header_size)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    // A stopping gateway lets the request in flight finish, then closes the connection.
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = shared.drain.stopping() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = ended {
        debug!(%client, %error, "connection ended with an error");
    }
}

/// Sends a request to its pipeline.
async fn dispatch(shared: Arc<Shared>, client: SocketAddr, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if request.uri().path().starts_with(admin::PREFIX) {
        return Ok(admin::handle(&request, client, &shared.guard, &shared.sessions, &shared.directory).await);
    }
    if request.uri().path().starts_with(login::PREFIX) {
        return Ok(login::handle(request, client, &shared.guard).await);
    }
    let response = match Offer::inspect(&request, &shared.websocket.subprotocols) {
        Err(error) => handshake::reject(error),
        Ok(Some(offer)) => websocket::open(shared, request, offer, client).await,
        Ok(None) => forward_http(&shared, request, client).await.unwrap_or_else(|failure| failure.response()),
    };
    Ok(response)
}

/// The HTTP pipeline: resolve → check the credential → pick → forward.
async fn forward_http(shared: &Shared, request: Request<Incoming>, client: SocketAddr) -> Result<Response<Body>, Failure> {
    let routes = Arc::clone(&shared.routes.borrow());
    let resolved = routes.resolve(request.uri().path(), request.uri().query())?;
    let service_token = match shared.guard.admit(request.headers(), &resolved.service.service).await {
        Ok(token) => token,
        Err(refusal) => {
            warn!(%client, path = request.uri().path(), error = %refusal, "request refused");
            return Err(refusal.into());
        }
    };
    let forwarded = shared.forwarded(client, &request, service_token);
    shared.proxy.forward(request, &shared.picker, &resolved, &forwarded).await
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    use super::*;

    /// A gateway on a free loopback port with `server` keys added, serving until the sender drops.
    async fn start(server: &str) -> (SocketAddr, oneshot::Sender<()>) {
        let text = format!("server: {{address: 127.0.0.1, port: 0, ssl: {{enabled: false}}, {server}}}\ndiscovery: {{embedded: {{enabled: false}}}}\n");
        let config = Config::parse(&text, Path::new("test.yml"), []).unwrap();
        let gateway = Gateway::bind(config).await.unwrap();
        let address = gateway.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(gateway.serve(async {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    /// What the gateway answers to `request` before it closes the connection.
    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_request_head_over_max_http_header_size_gets_431() {
        let (address, _stop) = start("maxHttpHeaderSize: 16KiB").await;
        let head = |size| format!("GET /nosuch/ws/v1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nX-Big: {}\r\n\r\n", "b".repeat(size));
        let fits = exchange(address, head(16_000).as_bytes()).await;
        assert!(fits.starts_with("HTTP/1.1 404 "), "{fits}");
        let too_large = exchange(address, head(16_384).as_bytes()).await;
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
    }

    #[tokio::test]
    async fn a_slow_request_head_is_cut_at_the_handshake_timeout_without_an_answer() {
        let (address, _stop) = start("handshakeTimeout: 300ms").await;
        let started = std::time::Instant::now();
        let answer = exchange(address, b"GET /nosuch/ws/v1 HTTP/1.1\r\nHost: gw\r\n").await;
        assert_eq!(answer, "");
        assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());
    }
}
