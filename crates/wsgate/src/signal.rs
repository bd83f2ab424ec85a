//! Signals: SIGTERM and Ctrl-C stop the gateway, SIGHUP reloads its TLS certificate.

use std::future::Future;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};
use wsgate_gateway::tls::{ServerIdentity, SERVER_IDENTITY};

/// Completes on the first SIGTERM or Ctrl-C; from then on a second one ends the process at once (exit
/// code 1), for an operator who will not wait for the graceful stop.
///
/// The handlers are installed when this is called, not when the future first runs, so that a signal
/// sent as soon as the gateway says it listens never meets the default action.
pub(crate) fn stop() -> impl Future<Output = ()> {
    let first = received();
    async move {
        first.await;
        let second = received();
        tokio::spawn(async move {
            second.await;
            warn!("second stop signal: exiting without waiting for the sessions");
            std::process::exit(1);
        });
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C), whose handlers it installs at once.
fn received() -> impl Future<Output = ()> {
    let handlers = [("SIGTERM", signal(SignalKind::terminate())), ("Ctrl-C", signal(SignalKind::interrupt()))];
    let waits = handlers.map(|(name, handler)| async move {
        match handler {
            Ok(mut handler) => {
                handler.recv().await;
                name
            }
            Err(error) => {
                warn!(%error, "cannot listen for {name}");
                std::future::pending().await
            }
        }
    });
    async move {
        let [terminate, interrupt] = waits;
        let name = tokio::select! {
            name = terminate => name,
            name = interrupt => name,
        };
        info!("{name} received, stopping");
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
