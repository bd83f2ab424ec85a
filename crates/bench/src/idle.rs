//! The `idle` workload: open N sessions, hold them, and read a process's RSS before and after.
//!
//! The soft open-file limit is raised to the hard one first; each session takes one descriptor
//! here, and a run that cannot fit says so before opening anything. When the endpoint is on IPv4
//! loopback, session `i` is bound to source address `127.0.0.(2 + i % 253)` before connecting,
//! so the 4-tuples spread over 253 addresses and ephemeral ports do not run out.
//!
//! With `--pid`, VmRSS of that process is read before the first session and again at the end of
//! the hold, while every session is still open; `bytes_per_session` is the difference over the
//! sessions opened. Progress goes to stderr every 1000 sessions.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;

use crate::cli::IdleArgs;
use crate::process;
use crate::report::{Report, Value};
use crate::target::{self, Session, Target};
use crate::{print_error, RunError};

/// Sessions opened (and closed) at once.
const CONCURRENCY: usize = 64;

/// Descriptors kept free for the runtime, stdio and the like.
const SPARE_FDS: u64 = 32;

/// The source address of session `i` when the target is IPv4 loopback: 127.0.0.2 to 127.0.0.254.
pub fn source_address(i: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 253) as u8)
}

/// Checks that `sessions` more descriptors fit under `limit` with `in_use` already open.
///
/// # Errors
///
/// A message saying how many fit and what to do instead.
pub fn check_fd_budget(sessions: u64, in_use: u64, limit: u64) -> Result<(), String> {
    let available = limit.saturating_sub(in_use + SPARE_FDS);
    if sessions <= available {
        return Ok(());
    }
    Err(format!(
        "--sessions {sessions} does not fit: each session needs one open file in this process, and the \
         open-file limit (RLIMIT_NOFILE, raised to its hard limit {limit}; going higher needs privileges) \
         leaves room for {available}; run several `wsgate-bench idle` processes with fewer sessions each"
    ))
}

/// Runs the workload and returns its report.
///
/// # Errors
///
/// [`RunError::Usage`] when the sessions do not fit under the open-file limit, or the TLS options
/// do not fit the URL;
/// [`RunError::Failed`] when the limit or the process's RSS cannot be read, or the URL does not
/// resolve.
pub async fn run(args: &IdleArgs) -> Result<Report, RunError> {
    let limit = process::raise_open_file_limit()
        .map_err(|e| RunError::Failed(format!("cannot raise the open-file limit: {e}")))?;
    let in_use = process::open_fds().map_err(|e| RunError::Failed(format!("cannot count open files: {e}")))?;
    check_fd_budget(args.sessions, in_use, limit).map_err(RunError::Usage)?;

    let target = Target::resolve(&args.endpoint.url, args.endpoint.ca.as_deref()).await?;
    let spread = matches!(target.addr().ip(), IpAddr::V4(ip) if ip.is_loopback());
    let rss = |pid: u32| process::rss_kib(pid).map_err(|e| RunError::Failed(format!("cannot read the RSS of {pid}: {e}")));
    let rss_before = args.pid.map(rss).transpose()?;

    let errors = AtomicU64::new(0);
    let opened_count = AtomicU64::new(0);
    let sessions: Vec<Session> = futures_util::stream::iter(0..args.sessions)
        .map(|i| {
            let (target, errors, opened_count) = (&target, &errors, &opened_count);
            async move {
                let source = spread.then(|| IpAddr::V4(source_address(i)));
                match target.open(source).await {
                    Ok(session) => {
                        let n = opened_count.fetch_add(1, Ordering::Relaxed) + 1;
                        if n % 1000 == 0 {
                            eprintln!("idle: {n} of {} sessions open", args.sessions);
                        }
                        Some(session)
                    }
                    Err(e) => {
                        let k = errors.fetch_add(1, Ordering::Relaxed);
                        print_error(k, format_args!("session {i}: {e}"));
                        None
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|s| async move { s })
        .collect()
        .await;
    let opened = sessions.len() as u64;
    eprintln!("idle: {opened} of {} sessions open; holding them {:?}", args.sessions, args.hold);

    tokio::time::sleep(args.hold).await;
    let rss_after = args.pid.map(rss).transpose()?;

    let close_errors = AtomicU64::new(0);
    futures_util::stream::iter(sessions)
        .map(target::close)
        .buffer_unordered(CONCURRENCY)
        .for_each(|result| {
            if let Err(e) = result {
                let k = close_errors.fetch_add(1, Ordering::Relaxed);
                print_error(k, format_args!("{e}"));
            }
            async {}
        })
        .await;

    let bytes_per_session = match (rss_before, rss_after) {
        (Some(before), Some(after)) if opened > 0 => {
            Value::Signed((after as i64 - before as i64) * 1024 / opened as i64)
        }
        _ => Value::Null,
    };
    Ok(Report::new("idle")
        .str("url", args.endpoint.url.as_str())
        .int("sessions", args.sessions)
        .int("opened", opened)
        .opt_int("pid", args.pid.map(u64::from))
        .float("hold_s", args.hold.as_secs_f64(), 3)
        .opt_int("rss_before_kib", rss_before)
        .opt_int("rss_after_kib", rss_after)
        .field("bytes_per_session", bytes_per_session)
        .int("errors", errors.into_inner() + close_errors.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cover_127_0_0_2_to_254() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_address(252), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(source_address(253), Ipv4Addr::new(127, 0, 0, 2));
    }

    #[test]
    fn fd_budget() {
        assert!(check_fd_budget(9000, 10, 20_000).is_ok());
        let message = check_fd_budget(20_000, 10, 20_000).unwrap_err();
        assert!(message.contains("--sessions 20000 does not fit"), "{message}");
        assert!(message.contains("room for 19958"), "{message}");
    }
}
