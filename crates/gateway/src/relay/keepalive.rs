//! The idle time-out and the gateway's own pings (`server.webSocket.idleTimeout`, `pingInterval`).
//!
//! Nothing here runs per message: the pumps already count the bytes they forward each way
//! ([`Traffic`](crate::session::Traffic)), and a session with either key set gets one periodic tick
//! ([`Keepalive::watch`]) that compares those counters with what it saw before:
//! - neither counter moved for `idleTimeout`: the gateway received nothing from either peer, so
//!   both pumps are asked to close their output with [`failure::idle`];
//! - the bytes written to one peer did not move for `pingInterval`: the pump writing to that peer is
//!   asked for a ping, which it sends only on a frame boundary of its output.
//!
//! A peer's pong is relayed like any other frame (the other peer gets it as an unsolicited pong,
//! which RFC 6455 §5.5.3 allows), so it counts as traffic: a peer that answers pings keeps its session
//! open. Swallowing the pongs would mean cutting frames out of what a pump writes in one piece.
//!
//! The tick raises its requests in the session's [`Requests`].

use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tracing::info;
use wsgate_frame::{encode_control, OpCode};

use super::request::{Request, Requests};
use super::{Direction, Limits};
use crate::config::format_duration;
use crate::failure::{self, Close};
use crate::session::Session;

/// The payload of the gateway's pings: it tells them apart from the peers' own in a capture.
pub(super) const PING_PAYLOAD: &[u8] = b"wsgate";

/// The length of the gateway's longest ping: a 2-byte header, a masking key and the payload.
pub(super) const MAX_PING_FRAME_LEN: usize = 2 + 4 + PING_PAYLOAD.len();

/// What a tick finds due for one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// A ping, the output having been quiet for `pingInterval`.
    Ping,
    /// The idle close, nothing having been received for `idleTimeout`.
    Close,
}

/// The keep-alive of one session: its two durations.
#[derive(Debug)]
pub(super) struct Keepalive {
    /// `idleTimeout`, or [`Duration::MAX`] (never) when unset.
    idle_timeout: Duration,
    /// `pingInterval`, or [`Duration::MAX`] (never) when unset.
    ping_interval: Duration,
}

impl Keepalive {
    /// The keep-alive `limits` ask for; `None` when neither key is set, so the session has no tick at
    /// all. Boxed: a session without one carries a null pointer, not the durations.
    pub(super) fn new(limits: &Limits) -> Option<Box<Keepalive>> {
        if limits.idle_timeout.is_none() && limits.ping_interval.is_none() {
            return None;
        }
        Some(Box::new(Keepalive {
            idle_timeout: limits.idle_timeout.unwrap_or(Duration::MAX),
            ping_interval: limits.ping_interval.unwrap_or(Duration::MAX),
        }))
    }

    /// The close both peers of an idle session get.
    pub(super) fn idle_close(&self) -> Close {
        failure::idle(self.idle_timeout)
    }

    /// How often the traffic is checked: a quarter of the shorter duration, so a close or a ping
    /// comes at most half of that duration after it is due.
    fn period(&self) -> Duration {
        (self.idle_timeout.min(self.ping_interval) / 4).max(Duration::from_millis(1))
    }

    /// Checks `session`'s traffic every [`Self::period`] and raises in `requests` what the pumps
    /// act on. Never returns: the session ends with its pumps, and this future is dropped then.
    pub(super) async fn watch(&self, session: &Session, requests: &Requests) -> Infallible {
        let counts = || Counts { from_client: session.from_client.bytes(), to_client: session.to_client.bytes() };
        let period = self.period();
        let mut watch = Watch::new(self.idle_timeout, self.ping_interval, Instant::now(), counts());
        let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
        // A tick that comes late (a busy runtime) is not made up for with a burst of them.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let due = watch.tick(Instant::now(), counts());
            if due == [None; 2] {
                continue;
            }
            let closing = due[0] == Some(Due::Close);
            if closing {
                info!(idle_timeout = %format_duration(self.idle_timeout), "closing the idle session");
            }
            // Indexed as the outputs: the service's (written by the client's pump), then the client's.
            for (direction, due) in [Direction::ClientToService, Direction::ServiceToClient].into_iter().zip(due) {
                match due {
                    Some(Due::Ping) => requests.raise(direction, Request::Ping),
                    Some(Due::Close) => requests.raise(direction, Request::Idle),
                    None => {}
                }
            }
            // The pumps run in this task: waking it makes them poll again and find the requests.
            tokio::task::yield_now().await;
            if closing {
                return std::future::pending().await;
            }
        }
    }
}

/// Drives `watch` when the session has one; otherwise never completes.
pub(super) async fn watch_if_any<F: Future<Output = Infallible> + Unpin>(watch: &mut Option<F>) -> Infallible {
    match watch {
        Some(watch) => watch.await,
        None => std::future::pending().await,
    }
}

/// The session's byte counters, as one tick reads them.
#[derive(Debug, Clone, Copy)]
struct Counts {
    /// Bytes relayed to the service (all of them sent by the client).
    from_client: u64,
    /// Bytes relayed to the client (all of them sent by the service).
    to_client: u64,
}

/// How long a counter has stood still, as far as the ticks can tell.
#[derive(Debug, Clone, Copy)]
struct Still {
    count: u64,
    since: Instant,
}

impl Still {
    /// Notes `count` as seen at `now` and says how long it has stood still.
    fn observe(&mut self, count: u64, now: Instant) -> Duration {
        if count != self.count {
            *self = Still { count, since: now };
        }
        now.saturating_duration_since(self.since)
    }
}

/// What the ticks have seen of one session: the decisions, apart from the clock and the pumps.
#[derive(Debug)]
struct Watch {
    idle_timeout: Duration,
    ping_interval: Duration,
    /// Everything received, from either peer.
    received: Still,
    /// What was written to the service, then to the client (the service's, then the client's).
    outputs: [Still; 2],
}

impl Watch {
    fn new(idle_timeout: Duration, ping_interval: Duration, now: Instant, counts: Counts) -> Watch {
        let still = |count| Still { count, since: now };
        Watch {
            idle_timeout,
            ping_interval,
            received: still(counts.from_client.wrapping_add(counts.to_client)),
            outputs: [still(counts.from_client), still(counts.to_client)],
        }
    }

    /// What is due on the service's output and the client's, given the counters at `now`.
    fn tick(&mut self, now: Instant, counts: Counts) -> [Option<Due>; 2] {
        if self.received.observe(counts.from_client.wrapping_add(counts.to_client), now) >= self.idle_timeout {
            return [Some(Due::Close); 2];
        }
        let ping_interval = self.ping_interval;
        let ping = |output: &mut Still, count| {
            let due = output.observe(count, now) >= ping_interval;
            // The ping itself is output: the next one is due a whole interval later.
            due.then(|| {
                output.since = now;
                Due::Ping
            })
        };
        let [service, client] = &mut self.outputs;
        [ping(service, counts.from_client), ping(client, counts.to_client)]
    }
}

/// A fresh masking key for one frame towards the service, unpredictable as RFC 6455 §5.3 asks: every
/// `RandomState` has its own keys (std seeds them randomly per thread and steps them per instance).
pub(super) fn fresh_mask() -> [u8; 4] {
    (RandomState::new().build_hasher().finish() as u32).to_be_bytes()
}

/// Writes the gateway's ping into `out` and returns its length: masked with `mask` towards the
/// service, unmasked towards the client.
pub(super) fn encode_ping(mask: Option<[u8; 4]>, out: &mut [u8; MAX_PING_FRAME_LEN]) -> usize {
    encode_control(OpCode::Ping, &[PING_PAYLOAD], mask, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsgate_frame::{FrameScanner, Origin};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ping_frames_towards_the_client_and_the_service() {
        let mut out = [0u8; MAX_PING_FRAME_LEN];
        let len = encode_ping(None, &mut out);
        assert_eq!(&out[..len], b"\x89\x06wsgate");
        let len = encode_ping(Some([1, 2, 3, 4]), &mut out);
        assert_eq!(len, MAX_PING_FRAME_LEN);
        assert_eq!(&out[..6], &[0x89, 0x86, 1, 2, 3, 4]);
        let unmasked: Vec<u8> = out[6..len].iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]).collect();
        assert_eq!(unmasked, b"wsgate");
        // What a client writes must be masked: the service's side of the scanner accepts it whole.
        let mut scanner = FrameScanner::new(Origin::Client, 125);
        let scan = scanner.scan(&out[..len]);
        assert_eq!((scan.forward, scan.violation, scanner.at_frame_boundary()), (len, None, true));
    }

    #[test]
    fn each_frame_gets_its_own_key() {
        let keys: std::collections::HashSet<[u8; 4]> = (0..64).map(|_| fresh_mask()).collect();
        assert!(keys.len() > 60, "{} distinct keys of 64", keys.len());
    }

    fn counts(from_client: u64, to_client: u64) -> Counts {
        Counts { from_client, to_client }
    }

    #[test]
    fn a_session_that_receives_nothing_is_closed_after_the_idle_timeout() {
        let start = Instant::now();
        let mut watch = Watch::new(100 * MS, Duration::MAX, start, counts(0, 0));
        assert_eq!(watch.tick(start + 99 * MS, counts(0, 0)), [None; 2]);
        assert_eq!(watch.tick(start + 100 * MS, counts(0, 0)), [Some(Due::Close); 2]);

        let mut watch = Watch::new(100 * MS, Duration::MAX, start, counts(0, 0));
        // Traffic either way counts, seen at the tick after it: the time-out starts again there.
        assert_eq!(watch.tick(start + 75 * MS, counts(10, 0)), [None; 2]);
        assert_eq!(watch.tick(start + 150 * MS, counts(10, 7)), [None; 2]);
        assert_eq!(watch.tick(start + 249 * MS, counts(10, 7)), [None; 2]);
        assert_eq!(watch.tick(start + 250 * MS, counts(10, 7)), [Some(Due::Close); 2]);
    }

    #[test]
    fn a_quiet_output_gets_a_ping_every_interval() {
        let start = Instant::now();
        let mut watch = Watch::new(Duration::MAX, 30 * MS, start, counts(0, 0));
        assert_eq!(watch.tick(start + 29 * MS, counts(0, 0)), [None; 2]);
        assert_eq!(watch.tick(start + 30 * MS, counts(0, 0)), [Some(Due::Ping); 2]);
        // The ping counts as output: the next is due an interval later, and only where the output
        // stayed quiet (here the service sent something to the client at 40 ms).
        assert_eq!(watch.tick(start + 45 * MS, counts(0, 5)), [None; 2]);
        assert_eq!(watch.tick(start + 60 * MS, counts(0, 5)), [Some(Due::Ping), None]);
        assert_eq!(watch.tick(start + 75 * MS, counts(0, 5)), [None, Some(Due::Ping)]);
        // Never an idle close without idleTimeout, however long the session stays silent.
        assert_eq!(watch.tick(start + Duration::from_secs(3600), counts(0, 5)), [Some(Due::Ping); 2]);
    }

    #[test]
    fn answered_pings_keep_a_silent_session_open() {
        let start = Instant::now();
        let mut watch = Watch::new(100 * MS, 30 * MS, start, counts(0, 0));
        let (mut from_client, mut to_client) = (0, 0);
        for tick in 1..=40 {
            let requests = watch.tick(start + tick * 15 * MS, counts(from_client, to_client));
            assert!(!requests.contains(&Some(Due::Close)), "closed at tick {tick}");
            // Each peer answers a ping with a 6-byte pong, which the relay forwards to the other peer.
            if requests[0].is_some() {
                to_client += 8;
            }
            if requests[1].is_some() {
                from_client += 12;
            }
        }
        // Peers that stop answering still get pings, and the session is closed an idle time-out after
        // the last pongs were seen (at 585 ms).
        let silent = counts(from_client, to_client);
        for tick in 41..=45 {
            assert!(!watch.tick(start + tick * 15 * MS, silent).contains(&Some(Due::Close)), "closed at tick {tick}");
        }
        assert_eq!(watch.tick(start + 690 * MS, silent), [Some(Due::Close); 2]);
    }

    #[test]
    fn the_idle_close_names_the_time_out() {
        let limits = Limits { max_frame_size: 125, idle_timeout: Some(MS), ping_interval: Some(MS) };
        let Some(keepalive) = Keepalive::new(&limits) else { panic!("both keys are set") };
        assert_eq!(keepalive.idle_close(), (wsgate_frame::CloseCode::GOING_AWAY, "Session idle for more than 1ms".into()));
    }

    #[test]
    fn the_tick_is_a_quarter_of_the_shorter_duration() {
        let limits = |idle_timeout, ping_interval| Limits { max_frame_size: 125, idle_timeout, ping_interval };
        assert!(Keepalive::new(&limits(None, None)).is_none());
        let period = |idle, ping| Keepalive::new(&limits(idle, ping)).map(|k| k.period());
        assert_eq!(period(Some(Duration::from_secs(1)), None), Some(250 * MS));
        assert_eq!(period(Some(Duration::from_secs(1)), Some(300 * MS)), Some(75 * MS));
        assert_eq!(period(None, Some(Duration::from_secs(30))), Some(Duration::from_millis(7500)));
        assert_eq!(period(None, Some(MS)), Some(MS));
    }
}
