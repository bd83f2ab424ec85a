//! What the gateway asks a pump to do on its own, beside forwarding: ping its output
//! ([`crate::relay`]'s keep-alive), or close it because the session is idle or the gateway stops.
//!
//! The requests are raised in the session's task, next to both pumps (by the keep-alive's tick or
//! the stop), so a request is a flag: whoever raises it wakes the task right after, and the pump
//! takes it the next time it is about to read.

use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;

use super::Direction;

/// A request for the pump writing to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Request {
    /// Send a ping on the output, if it is on a frame boundary.
    Ping,
    /// Close the output: neither peer sent anything for `idleTimeout`.
    Idle,
    /// Close the output: the gateway is stopping.
    Stop,
}

// Ordered by precedence: a raised request is only ever replaced by a stronger one.
const NONE: u8 = 0;
const PING: u8 = 1;
const IDLE: u8 = 2;
const STOP: u8 = 3;

/// The raised requests of one session, for the service's output and the client's (see [`output`]):
/// two bytes in the session's task.
#[derive(Debug, Default)]
pub(super) struct Requests {
    cells: [AtomicU8; 2],
}

impl Requests {
    /// Raises `request` for the output the pump reading in `direction` writes to, unless a stronger
    /// one is raised already (a close raised stays: it ends the session anyway).
    pub(super) fn raise(&self, direction: Direction, request: Request) {
        let value = match request {
            Request::Ping => PING,
            Request::Idle => IDLE,
            Request::Stop => STOP,
        };
        self.cells[output(direction)].fetch_max(value, Ordering::Relaxed);
    }

    /// Raises `request` for both outputs.
    pub(super) fn raise_both(&self, request: Request) {
        self.raise(Direction::ClientToService, request);
        self.raise(Direction::ServiceToClient, request);
    }

    /// Takes the request raised for the pump reading in `direction`.
    fn take(&self, direction: Direction) -> Option<Request> {
        let cell = &self.cells[output(direction)];
        // A plain load first: the swap, a locked instruction, only when something was raised.
        if cell.load(Ordering::Relaxed) == NONE {
            return None;
        }
        match cell.swap(NONE, Ordering::Relaxed) {
            PING => Some(Request::Ping),
            IDLE => Some(Request::Idle),
            STOP => Some(Request::Stop),
            _ => None,
        }
    }

    /// The next request for the pump reading in `direction`.
    ///
    /// # Waking
    ///
    /// This future registers no waker of its own: whoever raises a request runs in the same task as
    /// the pumps and wakes that task right after, so the pump polls this again then; a pump busy
    /// writing finds the request when it next comes back to read.
    pub(super) fn next(&self, direction: Direction) -> impl Future<Output = Request> + '_ {
        std::future::poll_fn(move |_| self.take(direction).map_or(Poll::Pending, Poll::Ready))
    }
}

/// The index of the output the pump reading in `direction` writes to: 0 the service, 1 the client.
fn output(direction: Direction) -> usize {
    match direction {
        Direction::ClientToService => 0,
        Direction::ServiceToClient => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stronger_request_replaces_a_weaker_one_and_never_the_reverse() {
        let requests = Requests::default();
        let (up, down) = (Direction::ClientToService, Direction::ServiceToClient);
        assert_eq!(requests.take(up), None);
        requests.raise(up, Request::Ping);
        assert_eq!((requests.take(up), requests.take(down)), (Some(Request::Ping), None));
        assert_eq!(requests.take(up), None, "taken once");
        requests.raise_both(Request::Idle);
        requests.raise(up, Request::Ping);
        assert_eq!((requests.take(up), requests.take(down)), (Some(Request::Idle), Some(Request::Idle)));
        requests.raise_both(Request::Stop);
        requests.raise_both(Request::Idle);
        assert_eq!((requests.take(up), requests.take(down)), (Some(Request::Stop), Some(Request::Stop)));
    }
}
