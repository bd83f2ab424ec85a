//! `wsgate`: the gateway binary. It parses the command line, loads configuration before binding
//! anything, and hands over to the `wsgate-gateway` library.
//!
//! Exit codes: 0 after a clean stop, 64 for a bad command line or configuration, 1 when the gateway
//! cannot start (for example the port is taken).

mod demo;
mod signal;

use std::io::{IsTerminal as _, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wsgate_gateway::server::GatewayError;
use wsgate_gateway::{Config, Gateway};

/// Exit code for bad usage or configuration (sysexits `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// A WebSocket-first API gateway for services found through a service registry.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The YAML config file (keys as in the README); without it, defaults and environment only.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the gateway with two instances of the demo service, for a first look.
    Demo {
        /// The gateway's address.
        #[arg(long, default_value = "127.0.0.1")]
        address: IpAddr,
        /// The gateway's port (0 picks a free one).
        #[arg(long, default_value_t = wsgate_gateway::config::DEFAULT_PORT)]
        port: u16,
    },
}

/// Why the binary stops with an error.
enum Failure {
    Usage(String),
    Runtime(String),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Runtime(format!("cannot start the runtime: {error}")))
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("wsgate: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("wsgate: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref(), std::env::vars()).map_err(|error| Failure::Usage(error.to_string()))?;
            let gateway = Gateway::bind(config).await.map_err(|error| match error {
                // A certificate or key that cannot be used is a configuration error like any other.
                GatewayError::Tls(_) => Failure::Usage(error.to_string()),
                GatewayError::Bind { .. } | GatewayError::Workers(_) => Failure::Runtime(error.to_string()),
            })?;
            announce(&gateway, &[]);
            gateway.serve(signal::stop()).await.map_err(|error| Failure::Runtime(error.to_string()))?;
            Ok(())
        }
        Command::Demo { address, port } => demo::run(address, port).await,
    }
}

/// Prints the listening line (the one line tests and scripts read from stdout), then `extra` lines.
fn announce(gateway: &Gateway, extra: &[String]) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not stop the gateway.
    let _ = writeln!(stdout, "wsgate listening on {}", gateway.local_addr());
    for line in extra {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
}
