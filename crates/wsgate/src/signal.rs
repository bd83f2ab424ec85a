//! Signals: SIGTERM and Ctrl-C stop the gateway, SIGHUP reloads its TLS certificate.

use std::future::Future;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};
use wsgate_gateway::tls::{ServerIdentity, SERVER_IDENTITY};

/// Completes on SIGTERM or Ctrl-C.
pub(crate) async fn stop() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C received, stopping"),
        () = terminate => info!("SIGTERM received, stopping"),
    }
}

/// Re-reads the TLS certificate and key of `identity` on every SIGHUP, for as long as the returned future
/// runs: new handshakes use them, open sessions keep theirs, and files that cannot be used are logged and
/// leave the previous certificate in use. Without TLS a SIGHUP is logged and ignored.
///
/// The handler is installed when this is called, not when the future first runs, so that a SIGHUP sent
/// as soon as the gateway says it listens never meets the default action (which would end the process).
pub(crate) fn reload_on_hangup(identity: Option<Arc<ServerIdentity>>) -> impl Future<Output = ()> {
    let hangup = signal(SignalKind::hangup());
    async move {
        let mut hangup = match hangup {
            Ok(hangup) => hangup,
            Err(error) => {
                warn!(%error, "cannot listen for SIGHUP; the TLS certificate will not be reloaded");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            let Some(identity) = &identity else {
                info!("SIGHUP received; TLS is off, nothing to reload");
                continue;
            };
            // A few file reads and a key derivation, once per signal: not worth a blocking-pool thread.
            match identity.reload() {
                Ok(()) => info!(files = %identity.files().describe(SERVER_IDENTITY), "SIGHUP received: TLS certificate reloaded, new handshakes use it"),
                Err(error) => error!(%error, "SIGHUP received: TLS certificate reload failed, the previous certificate stays in use"),
            }
        }
    }
}
