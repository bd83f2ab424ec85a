//! The `connect` workload: C workers each open a session (TCP connect + handshake), close it
//! cleanly (close frame, the server's close frame, the server's TCP close), and start again.
//!
//! Handshake latency runs from before the TCP connect to the 101 response; for `wss://` it
//! includes the TLS handshake (a full one every time: resumption is off, see [`crate::tls`]). A session counts once it
//! is opened and closed cleanly; sessions/s divides that count by the time from the start until the
//! last worker finished. Failures are counted as errors and the worker goes on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::ConnectArgs;
use crate::latency::Latency;
use crate::report::Report;
use crate::target::{self, Target};
use crate::{print_error, RunError};

/// After a failed attempt a worker waits this long, so a refusing endpoint is not hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

struct Shared {
    target: Target,
    deadline: Option<Instant>,
    /// Remaining sessions to start in count mode.
    tickets: Option<AtomicU64>,
    opened: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    /// Whether a worker may start one more session.
    fn take_ticket(&self) -> bool {
        if let Some(deadline) = self.deadline {
            return Instant::now() < deadline;
        }
        match &self.tickets {
            Some(left) => left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok(),
            None => false,
        }
    }
}

/// Runs the workload and returns its report.
///
/// # Errors
///
/// [`RunError::Usage`] when the TLS options do not fit the URL (see [`Target::resolve`]);
/// [`RunError::Failed`] when the URL does not resolve.
pub async fn run(args: &ConnectArgs) -> Result<Report, RunError> {
    let target = Target::resolve(&args.endpoint.url, args.endpoint.ca.as_deref()).await?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        target,
        deadline: args.duration.map(|d| start + d),
        tickets: args.count.map(AtomicU64::new),
        opened: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });

    let workers: Vec<_> = (0..args.concurrency).map(|_| tokio::spawn(worker(Arc::clone(&shared)))).collect();
    let progress = tokio::spawn(progress(Arc::clone(&shared), start));

    let mut latency = Latency::new();
    let mut sessions = 0;
    let mut errors = 0;
    for handle in workers {
        match handle.await {
            Ok((worker_latency, worker_sessions)) => {
                latency.merge(&worker_latency);
                sessions += worker_sessions;
            }
            Err(_) => errors += 1,
        }
    }
    progress.abort();
    let elapsed = start.elapsed().as_secs_f64();
    errors += shared.errors.load(Ordering::Relaxed);

    Ok(Report::new("connect")
        .str("url", args.endpoint.url.as_str())
        .int("concurrency", args.concurrency)
        .float("duration_s", elapsed, 3)
        .int("sessions", sessions)
        .float("sessions_per_s", if elapsed > 0.0 { sessions as f64 / elapsed } else { 0.0 }, 1)
        .percentiles(&latency.percentiles())
        .int("errors", errors))
}

/// One worker: open, close, repeat; returns its handshake latencies and its clean sessions.
async fn worker(shared: Arc<Shared>) -> (Latency, u64) {
    let mut latency = Latency::new();
    let mut sessions = 0;
    while shared.take_ticket() {
        let begin = Instant::now();
        let result = match shared.target.open(None).await {
            Ok(session) => {
                latency.record(begin.elapsed());
                shared.opened.fetch_add(1, Ordering::Relaxed);
                target::close(session).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => sessions += 1,
            Err(e) => {
                let k = shared.errors.fetch_add(1, Ordering::Relaxed);
                print_error(k, format_args!("{e}"));
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    (latency, sessions)
}

/// Prints sessions opened so far every 5 s on stderr.
async fn progress(shared: Arc<Shared>, start: Instant) {
    let mut interval = tokio::time::interval_at((start + Duration::from_secs(5)).into(), Duration::from_secs(5));
    loop {
        interval.tick().await;
        eprintln!(
            "connect: {:.0} s, {} sessions opened, {} errors",
            start.elapsed().as_secs_f64(),
            shared.opened.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed)
        );
    }
}
