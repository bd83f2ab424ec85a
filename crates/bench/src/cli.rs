//! The command line as typed: subcommands, options, and the parsers for durations, sizes and URLs.
//!
//! Parsing errors are clap errors, which exit with code 2 ([`crate::EXIT_USAGE`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::target::WsUrl;

/// `wsgate-bench`: WebSocket benchmarks over real sockets.
#[derive(Debug, Parser)]
#[command(name = "wsgate-bench", version, about = "WebSocket benchmarks: an echo backend and echo, connect and idle workloads")]
pub struct Cli {
    /// The workload or server to run.
    #[command(subcommand)]
    pub command: Command,
}

/// One subcommand of `wsgate-bench`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A fast multi-threaded WebSocket echo server; runs until SIGTERM or Ctrl-C.
    EchoServer(EchoServerArgs),
    /// N sessions send messages and check every echoed byte; reports rate, throughput, latency.
    Echo(EchoArgs),
    /// C workers open and cleanly close sessions in a loop; reports sessions/s and handshake latency.
    Connect(ConnectArgs),
    /// Opens N idle sessions and holds them; reports the RSS of a process before and after.
    Idle(IdleArgs),
    /// A TCP relay that only copies bytes to --upstream: the floor of any proxy; runs until SIGTERM or Ctrl-C.
    Pipe(PipeArgs),
}

/// Options of `echo-server`.
#[derive(Debug, Args)]
pub struct EchoServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Port to listen on (0: any free port, printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Worker threads, each running its own single-threaded runtime.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
}

/// Options of `pipe`.
#[derive(Debug, Args)]
pub struct PipeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Port to listen on (0: any free port, printed on stdout).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where every connection is relayed to, `IP:PORT`.
    #[arg(long)]
    pub upstream: SocketAddr,
    /// Worker threads, each running its own single-threaded runtime and listening socket.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
}

/// The endpoint options every client workload has.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// The endpoint, `ws://HOST:PORT/PATH` or `wss://HOST:PORT/PATH` (with --ca).
    #[arg(long, value_parser = parse_url)]
    pub url: WsUrl,
    /// For a `wss://` URL (required there): PEM file of the CA certificates to trust; the server's
    /// certificate must chain to one of them and name the URL's host. No system roots are used.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// Options of `echo`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("length").required(true).args(["duration", "count"])))]
pub struct EchoArgs {
    /// The endpoint and, for wss, the CA file.
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Number of sessions, all opened before the first message.
    #[arg(long, value_parser = parse_positive)]
    pub sessions: u64,
    /// Message payload size: bytes, or with a suffix (`64KiB`, `1MiB`).
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// How long to measure after the warmup (`10s`, `500ms`, `1m`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How many messages to measure after the warmup, over all sessions.
    #[arg(long, value_parser = parse_positive)]
    pub count: Option<u64>,
    /// Total messages per second over all sessions, on a fixed schedule (open loop); latency is
    /// measured from each message's scheduled send time. Without it: closed loop.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Time spent exchanging messages before measuring; these messages are not counted.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// Send binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// Print one JSON object on one line instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `connect`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("length").required(true).args(["duration", "count"])))]
pub struct ConnectArgs {
    /// The endpoint and, for wss, the CA file.
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Number of workers, each opening and closing one session at a time.
    #[arg(long, value_parser = parse_positive)]
    pub concurrency: u64,
    /// How long to run (`10s`, `500ms`, `1m`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// How many sessions to open and close, over all workers.
    #[arg(long, value_parser = parse_positive)]
    pub count: Option<u64>,
    /// Print one JSON object on one line instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Options of `idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// The endpoint and, for wss, the CA file.
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Number of sessions to open and hold.
    #[arg(long, value_parser = parse_positive)]
    pub sessions: u64,
    /// Process whose RSS (VmRSS in /proc/PID/status) is read before and after.
    #[arg(long)]
    pub pid: Option<u32>,
    /// How long to hold the sessions once all are open.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub hold: Duration,
    /// Print one JSON object on one line instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Parses a duration: a number with a unit `ms`, `s`, `m` or `h` (`500ms`, `1.5s`, `2m`), or a
/// bare number of seconds.
///
/// # Errors
///
/// Returns a message naming the input when it is empty, negative, not a number, has an unknown
/// unit, or is too large.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 10s, 500ms, 1m"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "us" | "µs" => 0.000_001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| format!("invalid duration {text:?}"))
}

/// Parses a size in bytes: a whole number, optionally followed by `B`, `KiB`, `MiB` or `GiB`
/// (also `K`, `M`, `G`, meaning the same binary multiples).
///
/// # Errors
///
/// Returns a message naming the input when it is not a whole number, has an unknown unit, or
/// overflows.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}: expected bytes, e.g. 64, 16KiB, 1MiB"))?;
    let multiple: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        other => return Err(format!("invalid size {text:?}: unknown unit {other:?} (use B, KiB, MiB, GiB)")),
    };
    value.checked_mul(multiple).ok_or_else(|| format!("invalid size {text:?}: too large"))
}

fn parse_positive(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a whole number above 0, got {text:?}")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("expected messages per second above 0, got {text:?}")),
    }
}

fn parse_url(text: &str) -> Result<WsUrl, String> {
    WsUrl::parse(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn durations_rejected() {
        for bad in ["", "s", "10x", "-1s", "1.2.3s", "ten seconds", "1e400s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("64B"), Ok(64));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "1.5KiB", "12XB", "-3", "99999999999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn echo_needs_duration_or_count_not_both() {
        let base = ["wsgate-bench", "echo", "--url", "ws://127.0.0.1:1/", "--sessions", "2", "--size", "64"];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["--duration", "1s"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["--count", "10"])).is_ok());
        assert!(Cli::try_parse_from(base.iter().chain(&["--count", "10", "--duration", "1s"])).is_err());
    }

    #[test]
    fn wss_urls_and_ca_parse() {
        let argv = ["wsgate-bench", "connect", "--url", "wss://localhost:8443/", "--ca", "ca.pem", "--concurrency", "1", "--count", "1"];
        let cli = Cli::try_parse_from(argv).unwrap();
        let Command::Connect(args) = cli.command else { panic!("not connect") };
        assert!(args.endpoint.url.is_tls());
        assert_eq!(args.endpoint.ca.as_deref(), Some(std::path::Path::new("ca.pem")));
    }
}
