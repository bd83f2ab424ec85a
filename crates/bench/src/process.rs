//! What the idle workload needs from the operating system: the open-file limit and a process's RSS.

use std::fs;
use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
///
/// # Errors
///
/// The OS error of `getrlimit` or `setrlimit`.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every target
    Ok(limit.rlim_cur as u64)
}

/// Number of file descriptors this process has open now (entries of /proc/self/fd).
///
/// # Errors
///
/// The error reading /proc/self/fd.
pub fn open_fds() -> io::Result<u64> {
    Ok(fs::read_dir("/proc/self/fd")?.count() as u64)
}

/// The resident set size of process `pid` in KiB (`VmRSS` in /proc/PID/status).
///
/// # Errors
///
/// The error reading the file, or `InvalidData` when it has no readable `VmRSS` line.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no VmRSS line in /proc/{pid}/status")))
}

/// Extracts `VmRSS` in KiB from the text of a /proc/PID/status file.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_line() {
        let status = "Name:\twsgate\nVmPeak:\t  20000 kB\nVmRSS:\t    8516 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(8516));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn own_rss_and_limit() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(raise_open_file_limit().unwrap() >= open_fds().unwrap());
    }
}
