//! The `echo` workload: N sessions each send a message, wait for its echo and check every byte.
//!
//! # Loops and timing
//!
//! All sessions are opened first; then every session runs on its own task. Closed loop (default):
//! each session sends its next message as soon as the previous echo arrived, and latency runs from
//! the send. With `--rate R`, each session sends `R / N` messages per second on a fixed schedule,
//! session `i` offset by `i / R` so sends are spread evenly. Latency then runs from the *scheduled*
//! send time whenever the session was still waiting for an earlier echo at that time (coordinated
//! omission corrected: a slow reply delays later sends, and that delay is counted); when the session
//! was idle and only waited for its timer, latency runs from the actual send, so the timer's
//! millisecond granularity is not charged to the endpoint.
//!
//! Messages sent during `--warmup` are exchanged and checked but not counted. With `--duration`,
//! messages sent inside the measuring window count; with `--count`, the first M after the warmup.
//!
//! # Checking
//!
//! Each echo must have the opcode and the exact bytes sent ([`crate::payload`] makes every message
//! distinct). A mismatch is counted as an error and printed; the session goes on. A close, a protocol
//! error or a lost connection ends that session with an error. A run that makes no progress for
//! [`STALL_TIMEOUT`] is stopped and each unfinished session counts as an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio_websockets::Message;

use crate::cli::EchoArgs;
use crate::latency::Latency;
use crate::payload::Payloads;
use crate::report::{Report, Value};
use crate::target::{self, Session, Target};
use crate::{print_error, RunError};

/// A run whose message count has not moved for this long is stopped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Sessions opened at once while setting up.
const OPEN_CONCURRENCY: usize = 128;

/// When a session stops sending.
#[derive(Debug, Clone, Copy)]
enum End {
    /// At this instant (end of the measuring window).
    At(Instant),
    /// After this many counted messages.
    Count(u64),
}

/// What every session shares: the timeline and the counters read by the progress monitor.
struct Plan {
    begin: Instant,
    measure_start: Instant,
    sessions: u64,
    size: usize,
    text: bool,
    /// Send interval of one session in rate mode.
    interval: Option<Duration>,
    /// Messages exchanged so far, warmup included (progress and stall detection).
    exchanged: AtomicU64,
    /// Errors of all sessions so far (numbering for [`print_error`]).
    errors: AtomicU64,
}

/// What one session measured.
struct SessionResult {
    messages: u64,
    latency: Latency,
    errors: u64,
    /// When its last counted echo arrived.
    last: Option<Instant>,
}

/// Runs the workload and returns its report.
///
/// # Errors
///
/// [`RunError::Usage`] when the TLS options do not fit the URL (see [`Target::resolve`]);
/// [`RunError::Failed`] when the URL does not resolve.
pub async fn run(args: &EchoArgs) -> Result<Report, RunError> {
    let target = Arc::new(Target::resolve(&args.endpoint.url, args.endpoint.ca.as_deref()).await?);
    let size = usize::try_from(args.size).map_err(|_| RunError::Usage("--size is too large".into()))?;
    let text = !args.binary;
    let base = Report::new("echo")
        .str("url", args.endpoint.url.as_str())
        .int("sessions", args.sessions)
        .int("size", args.size)
        .field("binary", Value::Bool(args.binary))
        .field("rate", args.rate.map_or(Value::Null, |r| Value::Float(r, 1)))
        .float("warmup_s", args.warmup.as_secs_f64(), 3);

    // Open every session before the first message.
    let opened = open_all(&target, args.sessions).await;
    let failed = opened.iter().filter(|r| r.is_err()).count() as u64;
    if failed > 0 {
        let sessions: Vec<Session> = opened.into_iter().filter_map(Result::ok).collect();
        close_all(sessions).await;
        let report = base
            .float("duration_s", 0.0, 3)
            .int("messages", 0)
            .float("msgs_per_s", 0.0, 1)
            .float("mib_per_s", 0.0, 3)
            .percentiles(&Default::default())
            .int("errors", failed)
            .str("error", format!("{failed} of {} sessions failed to open", args.sessions));
        return Ok(report);
    }
    let sessions: Vec<Session> = opened.into_iter().filter_map(Result::ok).collect();

    let begin = Instant::now();
    let measure_start = begin + args.warmup;
    let end = match (args.duration, args.count) {
        (Some(d), _) => End::At(measure_start + d),
        (None, Some(count)) => End::Count(count),
        (None, None) => return Err(RunError::Usage("one of --duration or --count is required".into())),
    };
    let plan = Arc::new(Plan {
        begin,
        measure_start,
        sessions: args.sessions,
        size,
        text,
        interval: args.rate.map(|r| Duration::from_secs_f64(args.sessions as f64 / r)),
        exchanged: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });

    let handles: Vec<JoinHandle<SessionResult>> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, session)| {
            let i = i as u64;
            let session_end = match end {
                End::At(t) => End::At(t),
                // Spread M over N sessions: the first M % N sessions do one more.
                End::Count(m) => End::Count(m / args.sessions + u64::from(i < m % args.sessions)),
            };
            tokio::spawn(run_session(i, session, Arc::clone(&plan), session_end))
        })
        .collect();

    let results = monitor(handles, &plan).await;

    let mut latency = Latency::new();
    let mut messages = 0;
    let mut errors = 0;
    let mut last = measure_start;
    for result in &results {
        latency.merge(&result.latency);
        messages += result.messages;
        errors += result.errors;
        if let Some(t) = result.last {
            last = last.max(t);
        }
    }
    let duration = match (args.duration, end) {
        (Some(d), _) => d,
        (None, _) => last.saturating_duration_since(measure_start),
    };
    let seconds = duration.as_secs_f64();
    let (msgs_per_s, mib_per_s) = if seconds > 0.0 {
        (messages as f64 / seconds, messages as f64 * args.size as f64 / seconds / (1024.0 * 1024.0))
    } else {
        (0.0, 0.0)
    };
    Ok(base
        .float("duration_s", seconds, 3)
        .int("messages", messages)
        .float("msgs_per_s", msgs_per_s, 1)
        .float("mib_per_s", mib_per_s, 3)
        .percentiles(&latency.percentiles())
        .int("errors", errors))
}

/// Opens `n` sessions, [`OPEN_CONCURRENCY`] at a time, printing each failure (the first few).
async fn open_all(target: &Arc<Target>, n: u64) -> Vec<Result<Session, target::SessionError>> {
    let failures = AtomicU64::new(0);
    futures_util::stream::iter(0..n)
        .map(|i| {
            let failures = &failures;
            async move {
                let result = target.open(None).await;
                if let Err(e) = &result {
                    let k = failures.fetch_add(1, Ordering::Relaxed);
                    print_error(k, format_args!("session {i}: {e}"));
                }
                result
            }
        })
        .buffered(OPEN_CONCURRENCY)
        .collect()
        .await
}

async fn close_all(sessions: Vec<Session>) {
    futures_util::stream::iter(sessions)
        .map(target::close)
        .buffer_unordered(OPEN_CONCURRENCY)
        .for_each(|_| async {})
        .await;
}

/// Waits for every session, printing progress every 5 s on stderr and stopping a stalled run.
async fn monitor(handles: Vec<JoinHandle<SessionResult>>, plan: &Plan) -> Vec<SessionResult> {
    let mut last_count = 0;
    let mut last_move = Instant::now();
    let mut next_progress = plan.begin + Duration::from_secs(5);
    // At a very low rate, a quiet spell of a whole send interval is no stall.
    let stall_timeout = STALL_TIMEOUT.max(plan.interval.unwrap_or_default() * 2);
    while !handles.iter().all(JoinHandle::is_finished) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = Instant::now();
        let count = plan.exchanged.load(Ordering::Relaxed);
        if count != last_count {
            last_count = count;
            last_move = now;
        } else if now.duration_since(last_move) >= stall_timeout {
            eprintln!("error: no echo for {} s; stopping the unfinished sessions", stall_timeout.as_secs());
            handles.iter().for_each(JoinHandle::abort);
            break;
        }
        if now >= next_progress {
            eprintln!(
                "echo: {:.0} s, {} messages exchanged, {} errors",
                now.duration_since(plan.begin).as_secs_f64(),
                count,
                plan.errors.load(Ordering::Relaxed)
            );
            next_progress += Duration::from_secs(5);
        }
    }
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap_or_else(|_| SessionResult {
            messages: 0,
            latency: Latency::new(),
            errors: 1,
            last: None,
        }));
    }
    results
}

/// One session's loop: send, wait for the echo, check it, record the latency; then close.
async fn run_session(index: u64, mut session: Session, plan: Arc<Plan>, end: End) -> SessionResult {
    let payloads = Payloads::new(index, plan.size, plan.text);
    let mut result = SessionResult { messages: 0, latency: Latency::new(), errors: 0, last: None };
    let error = |result: &mut SessionResult, message: std::fmt::Arguments<'_>| {
        result.errors += 1;
        let k = plan.errors.fetch_add(1, Ordering::Relaxed);
        print_error(k, format_args!("session {index}: {message}"));
    };
    // Rate mode: session i's first send is offset by i/N of the interval.
    let mut scheduled = plan.interval.map(|iv| plan.begin + iv.mul_f64(index as f64 / plan.sessions as f64));
    let mut k: u64 = 0;
    let mut ended_early = false;

    loop {
        // `origin`: where its latency runs from; `slot`: the time deciding whether it is counted
        // (the scheduled time in rate mode, the send time in closed loop).
        let (origin, slot) = match (scheduled.as_mut(), plan.interval) {
            (Some(at), Some(interval)) => {
                let slot = *at;
                *at += interval;
                if matches!(end, End::At(t) if slot >= t) {
                    break;
                }
                if Instant::now() < slot {
                    tokio::time::sleep_until(slot.into()).await;
                    (Instant::now(), slot)
                } else {
                    (slot, slot)
                }
            }
            _ => {
                let now = Instant::now();
                if matches!(end, End::At(t) if now >= t) {
                    break;
                }
                (now, now)
            }
        };
        if matches!(end, End::Count(n) if result.messages >= n) {
            break;
        }
        let counted = slot >= plan.measure_start;

        let expected = payloads.message(k);
        let message = if plan.text { Message::text(expected.clone()) } else { Message::binary(expected.clone()) };
        if let Err(e) = session.send(message).await {
            error(&mut result, format_args!("sending message {k} failed: {e}"));
            ended_early = true;
            break;
        }
        let reply = loop {
            match session.next().await {
                Some(Ok(m)) if m.is_text() || m.is_binary() => break Ok(m),
                Some(Ok(m)) if m.is_close() => {
                    break Err(match m.as_close() {
                        Some((code, reason)) => format!("the server closed the session: {} {reason:?}", u16::from(code)),
                        None => "the server closed the session".to_owned(),
                    })
                }
                Some(Ok(_)) => continue, // ping or pong
                Some(Err(e)) => break Err(format!("reading the echo of message {k} failed: {e}")),
                None => break Err(format!("the connection ended while waiting for the echo of message {k}")),
            }
        };
        let done = Instant::now();
        let reply = match reply {
            Ok(reply) => reply,
            Err(message) => {
                error(&mut result, format_args!("{message}"));
                ended_early = true;
                break;
            }
        };
        plan.exchanged.fetch_add(1, Ordering::Relaxed);
        if let Err(mismatch) = check(&expected, plan.text, &reply) {
            error(&mut result, format_args!("message {k}: {mismatch}"));
        } else if counted {
            result.messages += 1;
            result.latency.record(done.duration_since(origin));
            result.last = Some(done);
        }
        k += 1;
    }

    if !ended_early {
        if let Err(e) = target::close(session).await {
            error(&mut result, format_args!("{e}"));
        }
    }
    result
}

/// Compares an echo with the message sent.
///
/// # Errors
///
/// A description of the first difference: opcode, length, or the first differing byte.
pub fn check(expected: &[u8], text: bool, reply: &Message) -> Result<(), String> {
    if reply.is_text() != text {
        let kind = |t: bool| if t { "text" } else { "binary" };
        return Err(format!("sent a {} message, got a {} one back", kind(text), kind(reply.is_text())));
    }
    let got: &[u8] = reply.as_payload();
    if got == expected {
        return Ok(());
    }
    if got.len() != expected.len() {
        return Err(format!("sent {} bytes, got {} back", expected.len(), got.len()));
    }
    let at = expected.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
    Err(format!(
        "byte {at} of {} differs: sent 0x{:02x}, got 0x{:02x}",
        expected.len(),
        expected[at],
        got[at]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_the_first_difference() {
        let sent = b"hello world";
        assert_eq!(check(sent, true, &Message::text("hello world")), Ok(()));
        assert_eq!(
            check(sent, true, &Message::text("hello World")),
            Err("byte 6 of 11 differs: sent 0x77, got 0x57".into())
        );
        assert_eq!(check(sent, true, &Message::text("hello")), Err("sent 11 bytes, got 5 back".into()));
        assert_eq!(
            check(sent, true, &Message::binary(&b"hello world"[..])),
            Err("sent a text message, got a binary one back".into())
        );
    }
}
