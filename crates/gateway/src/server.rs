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
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::admin;
use crate::balance::Picker;
use crate::body::Body;
use crate::config::{Config, WebSocketConfig};
use crate::discovery::eureka::EurekaSource;
use crate::discovery::listener::{RegistryListener, RegistryStartError};
use crate::discovery::{ServiceDirectory, Source};
use crate::failure::Failure;
use crate::handshake::{self, Forwarded, Offer};
use crate::proxy::HttpProxy;
use crate::relay::BufferPool;
use crate::route::RouteTable;
use crate::session::SessionTable;
use crate::tls::{self, ReadAhead, ServerIdentity, TlsError};
use crate::worker::Listeners;
use crate::websocket;

/// How long a client may take to send its request headers, and to complete its TLS handshake.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The embedded registry could not start (its port or its state file).
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
    pub(crate) proxy: HttpProxy,
    pub(crate) buffers: BufferPool,
    port: u16,
    /// The client-facing TLS configuration; `None` serves plain ws and http.
    tls: Option<Arc<ServerConfig>>,
    /// Where the routes come from, for `/application/routes`.
    pub(crate) directory: Arc<ServiceDirectory>,
}

impl Shared {
    /// The `X-Forwarded-*` facts of a request from `client`.
    pub(crate) fn forwarded<B>(&self, client: SocketAddr, request: &Request<B>) -> Forwarded {
        let proto = if self.tls.is_some() { "https" } else { "http" };
        Forwarded { client, proto, host: request.headers().get(header::HOST).cloned(), port: self.port }
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
    /// [`GatewayError::Tls`] when the TLS certificate or key cannot be used, [`GatewayError::Bind`]
    /// when the address cannot be bound, [`GatewayError::Registry`] when the registry's port cannot
    /// be bound or its state file cannot be read, [`GatewayError::Eureka`] when a Eureka service URL
    /// is not usable.
    pub async fn bind(config: Config) -> Result<Gateway, GatewayError> {
        let identity = config.tls.map(ServerIdentity::load).transpose()?.map(Arc::new);
        let tls = identity.clone().map(tls::server_config).transpose()?;
        let listeners = Listeners::bind(config.listen).map_err(|source| GatewayError::Bind { address: config.listen, source })?;
        let port = listeners.local_addr().port();
        let directory = Arc::new(ServiceDirectory::new());
        directory.update(Source::Static, config.services);
        let registry = match config.embedded {
            None => None,
            Some(embedded) => Some(RegistryListener::bind(config.listen.ip(), embedded, &directory).await?),
        };
        let listen = SocketAddr::new(config.listen.ip(), port);
        let eureka = config.eureka.map(|client| EurekaSource::new(client, &directory, listen, tls.is_some())).transpose()?;
        let prefix = std::collections::hash_map::RandomState::new().hash_one(port) as u32;
        let shared = Shared {
            routes: directory.routes(),
            picker: Picker::new(&config.load_balancing),
            sessions: SessionTable::new(prefix),
            proxy: HttpProxy::new(config.websocket.connect_timeout),
            buffers: BufferPool::default(),
            websocket: config.websocket,
            port,
            tls,
            directory: Arc::clone(&directory),
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

    /// Starts the workers (one thread and runtime per core, see [`crate::worker`]) and the embedded
    /// registry and the external Eureka client, and serves connections until `shutdown` completes;
    /// then it tells the workers to stop, which drops their open sessions, waits for the registry to
    /// finish its requests in flight and save its state file and for the Eureka client to stop
    /// fetching, and returns without waiting for the workers.
    ///
    /// # Errors
    ///
    /// [`GatewayError::Workers`] when a worker thread or runtime cannot be started.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        let (stop, stopped) = watch::channel(false);
        let Gateway { listeners, shared, registry, eureka, .. } = self;
        let started = listeners.start(move |listener, stop| accept_loop(listener, Arc::clone(&shared), stop), &stopped);
        if let Err(source) = started {
            let _ = stop.send(true);
            return Err(GatewayError::Workers(source));
        }
        let registry = registry.map(|registry| registry.spawn(&stopped));
        let eureka = eureka.map(|eureka| eureka.spawn(&stopped));
        shutdown.await;
        let _ = stop.send(true);
        if let Some(registry) = registry {
            if let Err(error) = registry.await {
                warn!(%error, "embedded registry task failed");
            }
        }
        if let Some(eureka) = eureka {
            if let Err(error) = eureka.await {
                warn!(%error, "Eureka client task failed");
            }
        }
        Ok(())
    }
}

/// One worker's accept loop: each connection gets a task on this worker, until `stop` turns true.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, client) = tokio::select! {
            // A dropped sender stops the worker too.
            _ = stop.wait_for(|stop| *stop) => return,
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
        let shared = Arc::clone(&shared);
        match &shared.tls {
            None => drop(tokio::spawn(serve_http(shared, client, stream))),
            Some(tls) => {
                let handshake = TlsAcceptor::from(Arc::clone(tls)).accept(ReadAhead::new(stream));
                tokio::spawn(async move {
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => serve_http(shared, client, stream).await,
                        Ok(Err(error)) => debug!(%client, %error, "TLS handshake failed"),
                        Err(_) => debug!(%client, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
}

/// Serves HTTP/1.1 requests on one client connection, plain or TLS, until it ends or is upgraded.
async fn serve_http<I>(shared: Arc<Shared>, client: SocketAddr, io: I)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| dispatch(Arc::clone(&shared), client, request));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(error) = connection.await {
        debug!(%client, %error, "connection ended with an error");
    }
}

/// Sends a request to its pipeline.
async fn dispatch(shared: Arc<Shared>, client: SocketAddr, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if request.uri().path().starts_with(admin::PREFIX) {
        return Ok(admin::handle(request.method(), request.uri().path(), client, &shared.sessions, &shared.directory));
    }
    let response = match Offer::inspect(&request, &shared.websocket.subprotocols) {
        Err(error) => handshake::reject(error),
        Ok(Some(offer)) => websocket::open(shared, request, offer, client).await,
        Ok(None) => forward_http(&shared, request, client).await.unwrap_or_else(|failure| failure.response()),
    };
    Ok(response)
}

/// The HTTP pipeline: resolve → pick → forward.
async fn forward_http(shared: &Shared, request: Request<Incoming>, client: SocketAddr) -> Result<Response<Body>, Failure> {
    let routes = Arc::clone(&shared.routes.borrow());
    let resolved = routes.resolve(request.uri().path(), request.uri().query())?;
    let forwarded = shared.forwarded(client, &request);
    shared.proxy.forward(request, &shared.picker, &resolved, &forwarded).await
}
