//! The WebSocket pipeline for one upgrade request: resolve the route → count the session against the
//! limits → pick an instance → open the service session (upstream first; a failed connect is retried
//! on other instances) → answer the client → relay → account.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::time::Instant;
use tracing::{info, info_span, warn, Instrument};

use crate::balance::{Lease, Tried};

use crate::body::{self, Body};
use crate::config::ErrorMode;
use crate::failure::{self, Failure};
use crate::handshake::{self, Offer};
use crate::limits::Admission;
use crate::relay::{self, Direction, Limits, Peer};
use crate::server::Shared;
use crate::session::{OpenSession, SessionId, SessionInfo};
use crate::upstream::{self, OpenedSession};

/// Handles a valid WebSocket upgrade request and returns the answer to the client's handshake.
pub(crate) async fn open(shared: Arc<Shared>, mut request: Request<Incoming>, offer: Offer, client: SocketAddr) -> Response<Body> {
    let id = shared.sessions.next_id();
    let span = info_span!("session", id = %id);
    let outcome = connect(&shared, &request, &offer, client).instrument(span.clone()).await;
    match outcome {
        Ok(Connected { opened, info, lease, admission }) => {
            let response = handshake::client_response(&offer, &opened.accepted).map(|()| body::empty());
            // Only what the relay needs moves into its task: every byte there is held per open session.
            let client_upgrade = hyper::upgrade::on(&mut request);
            let session = shared.sessions.open(id, info);
            let relay = relay_session(Arc::clone(&shared), client_upgrade, opened.io, session, lease, admission).instrument(span);
            shared.drain.spawn(relay);
            response
        }
        Err(failure) => {
            span.in_scope(|| warn!(%failure, path = request.uri().path(), "session refused"));
            match shared.websocket.error_mode {
                ErrorMode::HttpStatus => failure.response(),
                ErrorMode::CloseCode => {
                    let response = handshake::refusal_response(&offer).map(|()| body::empty());
                    shared.drain.spawn(
                        async move {
                            if let Ok(upgraded) = hyper::upgrade::on(request).await {
                                relay::refuse(Peer::new(upgraded), failure.close()).await;
                            }
                        }
                        .instrument(span),
                    );
                    response
                }
            }
        }
    }
}

/// A service session opened for a client, with what counts it until its relay ends.
struct Connected {
    opened: OpenedSession,
    info: SessionInfo,
    /// Counts the session on its instance, for `least-sessions`.
    lease: Lease,
    /// Counts the session against `server.limits.*`.
    admission: Admission,
}

/// Checks the origin, resolves, checks the session limits and the credential ([`crate::auth`]),
/// picks and opens the service session. A connect failure is retried on another instance after a
/// short back-off, up to `retries` times; the client gets the last failure. Each try has
/// `connectTimeout` of its own.
async fn connect(shared: &Shared, request: &Request<Incoming>, offer: &Offer, client: SocketAddr) -> Result<Connected, Failure> {
    shared.guard.check_origin(request.headers())?;
    let routes = Arc::clone(&shared.routes.borrow());
    let path = request.uri().path();
    let resolved = routes.resolve(path, request.uri().query())?;
    // Before any connection to a service, and before bcrypt: a refused client costs neither.
    let admission = shared.limits.admit(client.ip(), &resolved.service.service.id)?;
    let service_token = shared.guard.admit(request.headers(), &resolved.service.service).await?;
    let forwarded = shared.forwarded(client, request, service_token);
    let mut tried = Tried::default();
    let mut retries = 0;
    let mut last_error = None;
    loop {
        let Some(pick) = shared.picker.pick_for_try(&resolved.service, request.headers(), &tried, retries).await else {
            // Every UP instance has failed this session already (or none is UP, or a sticky one is not).
            return Err(last_error.map_or_else(|| Failure::NoInstance { service_id: resolved.requested_id.clone() }, Failure::Connect));
        };
        let instance = pick.instance;
        let authority = instance.authority();
        let scheme = if instance.secure { "wss" } else { "ws" };
        let url = format!("{scheme}://{authority}{}", resolved.target);
        let upstream_request = handshake::upstream_request(request.headers(), offer, &resolved.target, &authority, &forwarded);
        match upstream::open_websocket(instance, url.clone(), upstream_request, offer, &shared.service_tls, shared.websocket.connect_timeout).await {
            Ok(opened) => {
                let info = SessionInfo {
                    client_address: client,
                    gateway_path: request.uri().path_and_query().map_or(path, |p| p.as_str()).to_owned(),
                    service_url: url,
                    service_id: resolved.service.service.id.shared(),
                    instance_id: Arc::clone(&instance.instance_id),
                    subprotocol: opened.accepted.protocol.clone(),
                };
                return Ok(Connected { opened, info, lease: pick.into_lease(), admission });
            }
            Err(error) if error.cause.may_retry() => {
                shared.picker.failed(pick, &mut tried, Instant::now());
                if retries == shared.picker.retries() {
                    return Err(error.into());
                }
                retries += 1;
                warn!(%error, retry = retries, "connect failed; trying another instance");
                last_error = Some(error);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Waits for the client's side of the upgrade, then relays until the session ends.
///
/// `_lease` counts the session on its instance for `least-sessions`, and `_admission` against the
/// session limits, until the session ends (also when the client never completes its upgrade).
async fn relay_session(shared: Arc<Shared>, client_upgrade: OnUpgrade, service: Peer, session: OpenSession, _lease: Lease, _admission: Admission) {
    let client = match client_upgrade.await {
        Ok(upgraded) => Peer::new(upgraded),
        Err(error) => {
            warn!(%error, "client went away before its upgrade completed");
            relay::abandon(service, failure::vanished(Direction::ClientToService), mask_key(session.id)).await;
            return;
        }
    };
    let info = &session.info;
    info!(client = %info.client_address, service = %info.service_url, subprotocol = ?info.subprotocol, "session open");
    let limits = Limits { max_frame_size: shared.websocket.max_frame_size, idle_timeout: shared.websocket.idle_timeout, ping_interval: shared.websocket.ping_interval };
    relay::run(client, service, &session, &limits, &shared.buffers, mask_key(session.id), || shared.drain.stopping()).await;
    info!(
        bytes_from_client = session.from_client.bytes(),
        bytes_to_client = session.to_client.bytes(),
        messages_from_client = session.from_client.messages(),
        messages_to_client = session.to_client.messages(),
        "session closed"
    );
}

/// A masking key for the close frames the gateway sends to the service itself, unpredictable per
/// session as RFC 6455 §5.3 asks (std's `RandomState` is seeded randomly per process).
fn mask_key(id: SessionId) -> [u8; 4] {
    (std::collections::hash_map::RandomState::new().hash_one(id) as u32).to_be_bytes()
}
