//! Serves the embedded registry alone on a loopback port, for tests with real Eureka clients until
//! `wsgate serve` hosts it.
//!
//! ```text
//! cargo run -p wsgate-registry --example registry -- [--port N] [--eviction-interval-ms N]
//!     [--no-self-preservation] [--allow CIDR]... [--state-file PATH]
//! ```
//!
//! Prints `wsgate-registry listening on 127.0.0.1:PORT` once it accepts connections (port 0, the
//! default, lets the kernel choose) and stops on SIGTERM or Ctrl-C. Logs go to stderr (`RUST_LOG`).

use std::process::ExitCode;
use std::time::Duration;

use wsgate_registry::{AllowList, Registry, RegistryConfig};

/// Exit code for bad arguments (sysexits' EX_USAGE, as `wsgate` uses).
const EX_USAGE: u8 = 64;

fn parse(args: &[String]) -> Result<(u16, RegistryConfig), String> {
    let mut port = 0u16;
    let mut config = RegistryConfig::default();
    let mut allow: Vec<String> = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--port" => port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--eviction-interval-ms" => {
                let ms: u64 = value("--eviction-interval-ms")?.parse().map_err(|e| format!("--eviction-interval-ms: {e}"))?;
                config.eviction_interval = Duration::from_millis(ms.max(1));
            }
            "--no-self-preservation" => config.self_preservation = false,
            "--allow" => allow.push(value("--allow")?),
            "--state-file" => config.state_file = Some(value("--state-file")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !allow.is_empty() {
        config.allow = AllowList::parse(&allow).map_err(|e| e.to_string())?;
    }
    Ok((port, config))
}

async fn stop_signal() {
    let interrupted = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = interrupted => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => drop(interrupted.await),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, config) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("registry: {message}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let registry = match Registry::new(config) {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("registry: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("registry: cannot listen on 127.0.0.1:{port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("wsgate-registry listening on {addr}"),
        Err(error) => {
            eprintln!("registry: {error}");
            return ExitCode::FAILURE;
        }
    }
    match wsgate_registry::server::serve(listener, registry, stop_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("registry: {error}");
            ExitCode::FAILURE
        }
    }
}
