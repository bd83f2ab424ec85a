//! wsgate-bench: measures a WebSocket endpoint (wsgate, another proxy, or a server directly) over
//! real sockets, as a black box.
//!
//! # Brief overview
//!
//! - [`echo_server`]: a fast multi-threaded WebSocket echo backend (one current-thread runtime per
//!   thread, connections dealt round-robin), so that the backend is never what is measured.
//! - [`echo`]: N sessions exchanging messages of a given size, closed loop or at a fixed rate,
//!   every echoed byte checked, round-trip latency in an HDR histogram.
//! - [`connect`]: handshake rate, C workers opening and cleanly closing sessions in a loop.
//! - [`idle`]: N idle sessions held open, with the target process's RSS read from `/proc`.
//! - [`pipe`]: the floor of a proxy, a TCP relay that only copies bytes (no HTTP, no frames), to
//!   show what any proxy pays to the kernel for its second connection.
//! - [`report`]: one ordered list of fields per run, printed as a human table or one JSON line.
//!
//! The supporting pieces are [`cli`] (what was typed, with duration and size parsing),
//! [`target`] (the `ws://` or `wss://` URL, opening and cleanly closing a session), [`tls`] (the
//! client side of `wss://`: `--ca` roots, rustls with ring), [`latency`] (the histogram),
//! [`payload`] (deterministic message content) and [`process`] (open-file limit, RSS).

#![warn(missing_docs)]

pub mod cli;
pub mod connect;
pub mod echo;
pub mod echo_server;
pub mod idle;
pub mod latency;
pub mod payload;
pub mod pipe;
pub mod process;
pub mod report;
pub mod target;
pub mod tls;

/// Exit code of a run whose every session and message succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code of a run that counted errors (or could not start its sessions).
pub const EXIT_ERRORS: i32 = 1;
/// Exit code of bad usage: unparsable arguments, or a request that cannot be met (clap's code too).
pub const EXIT_USAGE: i32 = 2;

/// Why a workload could not produce a report.
#[derive(Debug)]
pub enum RunError {
    /// The request cannot be met as asked (exit code 2), e.g. more sessions than open files allow.
    Usage(String),
    /// The run could not start or went wrong as a whole (exit code 1).
    Failed(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Usage(m) | Self::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RunError {}

/// Prints at most this many individual errors of one kind on stderr; the rest are only counted.
pub const MAX_PRINTED_ERRORS: u64 = 10;

/// Prints `message` on stderr as the `n`-th error of its kind (counting from 0), unless
/// [`MAX_PRINTED_ERRORS`] were printed already; says once that further errors are only counted.
pub fn print_error(n: u64, message: std::fmt::Arguments<'_>) {
    if n < MAX_PRINTED_ERRORS {
        eprintln!("error: {message}");
    } else if n == MAX_PRINTED_ERRORS {
        eprintln!("error: further errors are counted, not printed");
    }
}
