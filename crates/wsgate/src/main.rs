//! `wsgate`: the gateway binary. It parses the command line, loads configuration before binding
//! anything, and hands over to the `wsgate-gateway` library.
//!
//! Exit codes: 0 after a clean stop, 64 for a bad command line or configuration (the embedded
//! registry's port taken or its state file unreadable included: both name their key), 1 when the
//! gateway cannot start (for example its port is taken).

mod demo;
mod devcert;
mod signal;

use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
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
        /// Where the gateway keeps what it makes itself, such as the generated login signing key
        /// (`server.stateDir`; this flag wins) [default: the config file's folder].
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Run the gateway, its registry and two self-registering instances of the demo service, for a first look.
    Demo {
        /// The gateway's address.
        #[arg(long, default_value = "127.0.0.1")]
        address: IpAddr,
        /// The gateway's port (0 picks a free one).
        #[arg(long, default_value_t = wsgate_gateway::config::DEFAULT_PORT)]
        port: u16,
        /// The embedded registry's port, on the same address (0 picks a free one).
        #[arg(long, default_value_t = wsgate_gateway::config::DEFAULT_REGISTRY_PORT)]
        registry_port: u16,
        /// Where the development CA and certificate are kept across starts
        /// [default: $XDG_STATE_HOME/wsgate/demo, or ~/.local/state/wsgate/demo].
        #[arg(long)]
        state_dir: Option<PathBuf>,
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
        Command::Serve { config, state_dir } => {
            // The flag is applied as the key's variable, after the environment's, so that it wins; made
            // absolute, as a path on the command line is relative to the working folder, not the config's.
            let flag = match state_dir {
                None => None,
                Some(dir) => {
                    let dir = absolute_state_dir(&dir)?;
                    let dir = dir.into_os_string().into_string().map_err(|dir| Failure::Usage(format!("--state-dir {}: not valid UTF-8", dir.display())))?;
                    Some(("SERVER_STATEDIR".to_owned(), dir))
                }
            };
            let config = Config::load(config.as_deref(), std::env::vars().chain(flag)).map_err(|error| Failure::Usage(error.to_string()))?;
            let gateway = Gateway::bind(config).await.map_err(bind_failure)?;
            let reload = tokio::spawn(signal::reload_on_hangup(gateway.tls_identity()));
            let stopping = signal::stop();
            let (address, registry) = (gateway.local_addr(), gateway.registry_addr());
            // Announced once every worker accepts: scripts and tests that read the line find a gateway ready.
            let running = gateway.start().map_err(|error| Failure::Runtime(error.to_string()))?;
            announce(address, registry, &[]);
            running.wait(stopping).await;
            reload.abort();
            Ok(())
        }
        Command::Demo { address, port, registry_port, state_dir } => {
            let state_dir = match state_dir {
                Some(dir) => dir,
                None => default_state_dir().ok_or_else(|| Failure::Usage("neither XDG_STATE_HOME nor HOME is set: give --state-dir".to_owned()))?,
            };
            // Absolute, so that the paths printed for clients work from any folder.
            let state_dir = absolute_state_dir(&state_dir)?;
            demo::run(address, port, registry_port, &state_dir).await
        }
    }
}

/// `--state-dir` made absolute: a path on the command line is relative to the working folder.
fn absolute_state_dir(dir: &std::path::Path) -> Result<PathBuf, Failure> {
    std::path::absolute(dir).map_err(|error| Failure::Usage(format!("--state-dir {}: {error}", dir.display())))
}

/// `$XDG_STATE_HOME/wsgate/demo`, or `~/.local/state/wsgate/demo` (the XDG default).
fn default_state_dir() -> Option<PathBuf> {
    let non_empty = |name| std::env::var_os(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    let state = non_empty("XDG_STATE_HOME").or_else(|| non_empty("HOME").map(|home| home.join(".local").join("state")))?;
    Some(state.join("wsgate").join("demo"))
}

/// How a gateway that cannot start stops the binary.
fn bind_failure(error: GatewayError) -> Failure {
    match error {
        // A certificate or key that cannot be used is a configuration error like any other; so are
        // the registry's port and state file, whose messages name their keys.
        GatewayError::Tls(_) | GatewayError::ServiceTls(_) | GatewayError::Registry(_) | GatewayError::Eureka(_) => Failure::Usage(error.to_string()),
        GatewayError::Bind { .. } | GatewayError::Workers(_) => Failure::Runtime(error.to_string()),
    }
}

/// Prints the listening lines (the lines tests and scripts read from stdout): the gateway's, then the
/// embedded registry's when it runs, then `extra` lines.
fn announce(gateway: SocketAddr, registry: Option<SocketAddr>, extra: &[String]) {
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not stop the gateway.
    let _ = writeln!(stdout, "wsgate listening on {gateway}");
    if let Some(registry) = registry {
        let _ = writeln!(stdout, "registry listening on {registry}");
    }
    for line in extra {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
}
