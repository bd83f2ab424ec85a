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
//! | keep-alive, `idleTimeout` and `pingInterval` unset | per read: one relaxed load (the gateway's own requests, see `request.rs`); per session: no timer, no heap object |
//! | keep-alive, either set | per session: two small heap objects and one periodic timer (a quarter of the shorter duration) that compares the traffic counters above; per read: one more relaxed atomic load and the timer's poll, no reset; per ping: one write of 8 or 12 bytes |
//!
//! With `idleTimeout` or `pingInterval` the gateway also speaks for itself while the session is
//! open: `keepalive.rs` closes a session in which neither peer sent anything for `idleTimeout`, and
//! pings a peer the gateway has written nothing to for `pingInterval`. When the gateway stops, it
//! closes both peers with 1001 (`stopping` in [`run`]). Both reach the pumps as requests
//! (`request.rs`).

mod buffer;
mod keepalive;
mod peer;
mod pump;
mod refuse;
mod request;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::debug;

use crate::session::Session;
use keepalive::Keepalive;
use pump::{End, Pump};
use request::{Request, Requests};
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
    /// A session in which neither peer sent anything for this long is closed on both sides.
    pub idle_timeout: Option<Duration>,
    /// A peer the gateway has written nothing to for this long gets a ping.
    pub ping_interval: Option<Duration>,
}

/// Relays `client` and `service` until both directions have ended, or the future `stopping` makes
/// completes: then both peers get the gateway's close ([`crate::failure::stopping`]) on a frame
/// boundary, and the relay waits up to [`LINGER`] for their answering closes.
///
/// `mask` is the masking key for the close frames the gateway itself sends to the service. `limits`
/// is borrowed: by value it would be held in every session's task, twice (rust-lang/rust#62958); for
/// the same reason `stopping` makes its future, which is then held once.
pub async fn run<S, F>(mut client: Peer, mut service: Peer, session: &Session, limits: &Limits, pool: &BufferPool, mask: [u8; 4], stopping: S)
where
    S: FnOnce() -> F,
    F: Future<Output = ()>,
{
    let (mut client_reader, mut client_writer) = client.split();
    let (mut service_reader, mut service_writer) = service.split();
    // Each pump may ask the other to close its output, when the peer it reads broke the rules.
    let (ask_service_pump, service_pump_inbox) = oneshot::channel();
    let (ask_client_pump, client_pump_inbox) = oneshot::channel();
    // The pumps live here and their futures borrow them: a future that owned its pump would hold it
    // twice (rust-lang/rust#62958), which costs every session a few hundred bytes.
    let common = Common { keepalive: Keepalive::new(limits), ..Common::default() };
    let mut upstream_pump = Pump::new(Direction::ClientToService, (&mut client_reader, &mut service_writer), Some(mask), &session.from_client, limits.max_frame_size, pool, &common);
    let mut downstream_pump = Pump::new(Direction::ServiceToClient, (&mut service_reader, &mut client_writer), None, &session.to_client, limits.max_frame_size, pool, &common);
    let upstream = upstream_pump.run(client_pump_inbox, ask_service_pump);
    let downstream = downstream_pump.run(service_pump_inbox, ask_client_pump);
    // Boxed like the keep-alive itself: a session without one carries no timer in its task.
    let mut watch = common.keepalive.as_deref().map(|keepalive| Box::pin(keepalive.watch(session, &common.requests)));
    let stop = stop_when(stopping, &common.requests);
    tokio::pin!(upstream, downstream, stop);
    // When one direction has ended, the other only has its half of the close left to do. The
    // timer is boxed: it exists only while a session ends, not in every open session's task.
    // The keep-alive's watch and the stop never end; they are polled in this task, with the pumps,
    // which is how they see their requests (see `request`), and they stop when either pump ends.
    // Should the gateway stop while one direction lingers, that one has had its close already.
    let (up, down) = tokio::select! {
        up = &mut upstream => (Some(up), Box::pin(tokio::time::timeout(LINGER, downstream)).await.ok()),
        down = &mut downstream => (Box::pin(tokio::time::timeout(LINGER, upstream)).await.ok(), Some(down)),
        never = keepalive::watch_if_any(&mut watch) => match never {},
        never = &mut stop => match never {},
    };
    debug!(client_to_service = ?up.unwrap_or(End::Abandoned), service_to_client = ?down.unwrap_or(End::Abandoned), "session ended");
}

/// What both pumps of a session share, in the session's task.
#[derive(Debug, Default)]
struct Common {
    /// How many of the session's two inputs have ended.
    inputs_ended: AtomicU8,
    /// What the gateway asks of each pump on its own.
    requests: Requests,
    /// The session's keep-alive, when `idleTimeout` or `pingInterval` is set: it raises pings and
    /// idle closes in `requests`, and says what an idle close is.
    keepalive: Option<Box<Keepalive>>,
}

/// Once the future `stopping` makes completes, asks both pumps to close their outputs, and wakes
/// them to see it.
async fn stop_when<F: Future<Output = ()>>(stopping: impl FnOnce() -> F, requests: &Requests) -> Infallible {
    stopping().await;
    debug!("closing the session: the gateway stops");
    requests.raise_both(Request::Stop);
    tokio::task::yield_now().await;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::Instant;
    use wsgate_frame::{encode_close, CloseCode, MAX_CLOSE_FRAME_LEN};

    use super::peer::tcp_pair;
    use super::*;
    use crate::session::{OpenSession, SessionInfo, SessionTable};

    const SESSION_KEY: [u8; 4] = [1, 2, 3, 4];

    /// Both peers of a session on loopback sockets, and its entry in a session table.
    struct Setup {
        client: Peer,
        client_remote: TcpStream,
        service: Peer,
        service_remote: TcpStream,
        session: OpenSession,
    }

    impl Setup {
        async fn new() -> Setup {
            let ((client, client_remote), (service, service_remote)) = (tcp_pair().await, tcp_pair().await);
            let table = SessionTable::new(1);
            let info = SessionInfo {
                client_address: "127.0.0.1:1".parse().unwrap(),
                gateway_path: "/svc/ws/v1".into(),
                service_url: "ws://127.0.0.1:2/ws".into(),
                service_id: Arc::from("svc"),
                instance_id: Arc::from("127.0.0.1:2"),
                subprotocol: None,
            };
            let session = table.open(table.next_id(), info);
            Setup { client, client_remote, service, service_remote, session }
        }
    }

    /// Reads exactly as many bytes as `expected` holds and compares them.
    async fn expect_bytes(remote: &mut TcpStream, expected: &[u8], what: &str) {
        let mut got = vec![0; expected.len()];
        remote.read_exact(&mut got).await.unwrap_or_else(|error| panic!("{what}: {error}"));
        assert_eq!(got, expected, "{what}");
    }

    /// Expects the gateway's close, 1001 with `reason`, on both peers (returns when the client's
    /// came), answers each as RFC 6455 asks, and expects both connections to end then.
    async fn expect_both_closed(client_remote: &mut TcpStream, service_remote: &mut TcpStream, reason: &str) -> Instant {
        let mut close = [0u8; MAX_CLOSE_FRAME_LEN];
        let len = encode_close(CloseCode::GOING_AWAY, reason, None, &mut close);
        expect_bytes(client_remote, &close[..len], "the client's close").await;
        let closed = Instant::now();
        let len = encode_close(CloseCode::GOING_AWAY, reason, Some(SESSION_KEY), &mut close);
        expect_bytes(service_remote, &close[..len], "the service's close").await;
        client_remote.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE9]).await.unwrap();
        service_remote.write_all(&[0x88, 0x02, 0x03, 0xE9]).await.unwrap();
        for remote in [client_remote, service_remote] {
            let mut rest = Vec::new();
            remote.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"", "nothing after the close");
        }
        closed
    }

    #[tokio::test]
    async fn an_idle_session_is_closed_on_both_sides() {
        let Setup { client, mut client_remote, service, mut service_remote, session } = Setup::new().await;
        let limits = Limits { max_frame_size: 1 << 20, idle_timeout: Some(Duration::from_millis(200)), ping_interval: None };
        let pool = BufferPool::default();
        let started = Instant::now();
        let peers = async {
            // One message each way first: traffic starts the time-out again.
            client_remote.write_all(&[0x82, 0x81, 9, 9, 9, 9, 0]).await.unwrap();
            expect_bytes(&mut service_remote, &[0x82, 0x81, 9, 9, 9, 9, 0], "the client's message").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            service_remote.write_all(&[0x82, 0x01, 7]).await.unwrap();
            expect_bytes(&mut client_remote, &[0x82, 0x01, 7], "the service's message").await;
            let last_traffic = Instant::now();
            let closed = expect_both_closed(&mut client_remote, &mut service_remote, "Session idle for more than 200ms").await;
            closed - last_traffic
        };
        let ((), idle_for) = tokio::time::timeout(LINGER, async { tokio::join!(run(client, service, &session, &limits, &pool, SESSION_KEY, std::future::pending::<()>), peers) }).await.expect("the relay ended");
        // Closed 200 ms after the last frame, give or take the 50 ms ticks (and a loaded machine).
        assert!(idle_for >= Duration::from_millis(200) - Duration::from_millis(50), "closed after {idle_for:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "ended after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_stopping_gateway_closes_both_peers_and_waits_for_their_closes() {
        let Setup { client, mut client_remote, service, mut service_remote, session } = Setup::new().await;
        let limits = Limits { max_frame_size: 1 << 20, idle_timeout: None, ping_interval: None };
        let pool = BufferPool::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let peers = async {
            service_remote.write_all(&[0x82, 0x02, 1, 2]).await.unwrap();
            expect_bytes(&mut client_remote, &[0x82, 0x02, 1, 2], "the service's message").await;
            stop.send(()).unwrap();
            expect_both_closed(&mut client_remote, &mut service_remote, "Gateway stopping").await;
        };
        let stopping = async {
            let _ = stopped.await;
        };
        let started = Instant::now();
        tokio::time::timeout(LINGER, async { tokio::join!(run(client, service, &session, &limits, &pool, SESSION_KEY, || stopping), peers) }).await.expect("the relay ended");
        assert!(started.elapsed() < Duration::from_secs(2), "ended after {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn quiet_peers_get_pings_and_a_silent_session_without_idle_timeout_stays_open() {
        let Setup { client, mut client_remote, service, mut service_remote, session } = Setup::new().await;
        let limits = Limits { max_frame_size: 1 << 20, idle_timeout: None, ping_interval: Some(Duration::from_millis(20)) };
        let pool = BufferPool::default();
        let peers = async {
            let mut keys = Vec::new();
            for _ in 0..3 {
                expect_bytes(&mut client_remote, b"\x89\x06wsgate", "an unmasked ping to the client").await;
                let mut ping = [0u8; 12];
                service_remote.read_exact(&mut ping).await.unwrap();
                assert_eq!(ping[..2], [0x89, 0x86], "a masked ping to the service");
                keys.push([ping[2], ping[3], ping[4], ping[5]]);
            }
            keys.dedup();
            assert_eq!(keys.len(), 3, "a fresh key per ping: {keys:?}");
            // The gateway's pings are not the session's traffic.
            assert_eq!((session.from_client.bytes(), session.to_client.bytes()), (0, 0));
            drop((client_remote, service_remote));
        };
        tokio::time::timeout(LINGER, async { tokio::join!(run(client, service, &session, &limits, &pool, SESSION_KEY, std::future::pending::<()>), peers) }).await.expect("the relay ended");
    }
}
