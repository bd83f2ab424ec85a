//! `wsgate-demo-service`: runs the demo WebSocket service until SIGTERM or Ctrl-C.
//!
//! When bound it prints exactly one line on stdout,
//! `wsgate-demo-service listening on ADDRESS:PORT`; logs go to stderr (`RUST_LOG` filters).
//! With `--eureka-url` it registers itself with that Eureka registry (wsgate's embedded one), and on
//! SIGTERM or Ctrl-C cancels its registration before it stops serving. An `https` registry is verified
//! against `--registry-ca` (else the system's roots); `--registry-cert` and `--registry-key` are the
//! client certificate for a registry that asks for one.

use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use tokio::sync::watch;
use wsgate_demo_service::eureka::{registry_tls, EurekaClient, EurekaOptions, RegistryTlsError};
use wsgate_demo_service::{DemoError, DemoService, Options};

/// Exit code for a bad command line value (sysexits `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// The demo WebSocket service of wsgate.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 10012)]
    port: u16,
    /// The path prefix of every endpoint.
    #[arg(long, default_value = "/discoverableclient")]
    base_path: String,
    /// The instance id reported by the service [default: demo-<port>].
    #[arg(long)]
    instance_id: Option<String>,
    /// Register with this Eureka registry, e.g. http://127.0.0.1:10011/eureka (wsgate's embedded one)
    /// or https://127.0.0.1:10011/eureka.
    #[arg(long)]
    eureka_url: Option<String>,
    /// PEM CA certificates an https registry's certificate is verified against [default: the system's roots].
    #[arg(long, value_name = "FILE", requires = "eureka_url")]
    registry_ca: Option<PathBuf>,
    /// PEM client certificate (chain) for an https registry that asks for one; needs --registry-key.
    #[arg(long, value_name = "FILE", requires_all = ["eureka_url", "registry_key"])]
    registry_cert: Option<PathBuf>,
    /// PEM private key of --registry-cert.
    #[arg(long, value_name = "FILE", requires = "registry_cert")]
    registry_key: Option<PathBuf>,
    /// The application name to register as.
    #[arg(long, default_value = "discoverableclient")]
    app: String,
    /// Seconds between heartbeats to the registry (the lease lasts three heartbeats).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_interval: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wsgate-demo-service: {error}");
            match error {
                DemoError::InvalidBasePath { .. } | DemoError::Eureka(_) | DemoError::RegistryTls(_) => ExitCode::from(EXIT_USAGE),
                DemoError::Bind { .. } => ExitCode::FAILURE,
            }
        }
    }
}

/// Binds, announces the address on stdout, registers when asked to, and serves until a stop signal.
async fn run(args: Args) -> Result<(), DemoError> {
    let options = Options {
        address: args.address,
        port: args.port,
        base_path: args.base_path.clone(),
        instance_id: args
            .instance_id
            .unwrap_or_else(|| format!("demo-{}", args.port)),
    };
    // Asked-for TLS that would not be used is an error, not a silent plain registration.
    let asks_tls = args.registry_ca.is_some() || args.registry_cert.is_some();
    if asks_tls && !args.eureka_url.as_deref().is_some_and(wsgate_registry::client::is_https) {
        return Err(RegistryTlsError::NotHttps.into());
    }
    // The files first: a wrong path is reported before the port is taken.
    let tls = registry_tls(args.registry_ca.as_deref(), args.registry_cert.as_deref().zip(args.registry_key.as_deref()))?;
    let service = DemoService::bind(options).await?;
    let eureka = match args.eureka_url {
        None => None,
        Some(url) => {
            // An unspecified listening address is no address to give the gateway; loopback is the safe guess.
            let ip = service.local_addr().ip();
            let host = if ip.is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { ip };
            Some(EurekaClient::with_tls(&EurekaOptions {
                url,
                app: args.app,
                host: host.to_string(),
                port: service.local_addr().port(),
                base_path: args.base_path,
                heartbeat_interval: Duration::from_secs(args.heartbeat_interval),
            }, tls)?)
        }
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout must not stop the service; the line is only a courtesy then.
    let _ = writeln!(
        stdout,
        "wsgate-demo-service listening on {}",
        service.local_addr()
    );
    let _ = stdout.flush();
    drop(stdout);
    // The registration is cancelled before serving stops, so the gateway sends no new session to a
    // service that is going away.
    let (stop, mut stopped) = watch::channel(false);
    let control = async move {
        match &eureka {
            Some(client) => client.run(stop_signal()).await,
            None => stop_signal().await,
        }
        let _ = stop.send(true);
    };
    let until_stopped = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let (served, ()) = tokio::join!(service.serve(until_stopped), control);
    served
}

/// Completes on SIGTERM or Ctrl-C (only Ctrl-C outside Unix).
async fn stop_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received; stopping"),
        () = terminate => tracing::info!("SIGTERM received; stopping"),
    }
}
