//! The frame-aware relay: forwards a WebSocket session's bytes both ways once both handshakes are done.
//!
//! Each direction is a pump: it reads into its buffer (small and inline, or large while a burst of
//! big frames lasts), lets a [`FrameScanner`](wsgate_frame::FrameScanner) find the frame boundaries,
//! and writes the bytes on before it reads again, so it never reads faster than the other side takes
//! (backpressure) and a message of any size passes through the same bounded buffer. Payloads are not touched: client frames stay
//! masked (the gateway is the client of the service), RSV bits, ping/pong and close frames pass as
//! they are, so extensions such as permessage-deflate work end to end.
//!
//! The relay steps in only when a peer breaks the rules or vanishes; [`crate::failure`] says which
//! close each peer then gets. It can only send a close of its own on a frame boundary of that output;
//! mid-frame it just closes the connection.
//!
//! | per session | cost |
//! | --- | --- |
//! | buffers, idle or small messages | 2 × 256 bytes inline in the session's task, no heap buffer |
//! | connections | plain TCP sockets (the client's taken out of hyper's upgrade object, the service's never in one) split by reference: no lock per read or write, no heap object per peer |
//! | connections, TLS | a client's wss connection stays in hyper's upgrade object, a wss service's is boxed; each split with `tokio::io::split` (a lock per read or write, one heap object), and flushed after each write so rustls never holds back the end of one |
//! | buffers, during a burst of large frames | a pooled 256 KiB buffer per busy direction, returned when a read smaller than 256 bytes ends the burst |
//! | per read | one scan of the frame headers in it, one `write_all` and a flush (no system call on plain TCP), two relaxed atomic updates |
//! | allocations per frame | none (one per burst of large frames) |

mod buffer;
mod peer;
mod pump;
mod refuse;

use std::sync::atomic::AtomicU8;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;

use crate::session::Session;
use pump::{End, Pump};
pub use buffer::BufferPool;
pub use peer::Peer;
pub use refuse::{abandon, refuse};

/// How long the relay waits for a peer to finish its side of a close, once the session is ending.
pub const LINGER: Duration = Duration::from_secs(5);

/// One direction of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Frames the client sends to the service.
    ClientToService,
    /// Frames the service sends to the client.
    ServiceToClient,
}

impl Direction {
    /// The other direction of the same session.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToService => Direction::ServiceToClient,
            Direction::ServiceToClient => Direction::ClientToService,
        }
    }

    /// The label on every trace event of that direction.
    pub fn label(self) -> &'static str {
        match self {
            Direction::ClientToService => "client->service",
            Direction::ServiceToClient => "service->client",
        }
    }
}

/// Limits the relay enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest frame payload forwarded; a larger one ends the session with 1009.
    pub max_frame_size: u64,
}

/// Relays `client` and `service` until both directions have ended.
///
/// `mask` is the masking key for the close frames the gateway itself sends to the service.
pub async fn run(mut client: Peer, mut service: Peer, session: &Session, limits: Limits, pool: &BufferPool, mask: [u8; 4]) {
    let (mut client_reader, mut client_writer) = client.split();
    let (mut service_reader, mut service_writer) = service.split();
    // Each pump may ask the other to close its output, when the peer it reads broke the rules.
    let (ask_service_pump, service_pump_inbox) = oneshot::channel();
    let (ask_client_pump, client_pump_inbox) = oneshot::channel();
    // The pumps live here and their futures borrow them: a future that owned its pump would hold it
    // twice (rust-lang/rust#62958), which costs every session a few hundred bytes.
    let inputs_ended = AtomicU8::new(0);
    let mut upstream_pump = Pump::new(Direction::ClientToService, (&mut client_reader, &mut service_writer), Some(mask), &session.from_client, limits, pool, &inputs_ended);
    let mut downstream_pump = Pump::new(Direction::ServiceToClient, (&mut service_reader, &mut client_writer), None, &session.to_client, limits, pool, &inputs_ended);
    let upstream = upstream_pump.run(client_pump_inbox, ask_service_pump);
    let downstream = downstream_pump.run(service_pump_inbox, ask_client_pump);
    tokio::pin!(upstream, downstream);
    // When one direction has ended, the other only has its half of the close left to do. The
    // timer is boxed: it exists only while a session ends, not in every open session's task.
    let (up, down) = tokio::select! {
        up = &mut upstream => (Some(up), Box::pin(tokio::time::timeout(LINGER, downstream)).await.ok()),
        down = &mut downstream => (Box::pin(tokio::time::timeout(LINGER, upstream)).await.ok(), Some(down)),
    };
    debug!(client_to_service = ?up.unwrap_or(End::Abandoned), service_to_client = ?down.unwrap_or(End::Abandoned), "session ended");
}
