//! A fast multi-threaded WebSocket echo server, so that the backend is never what a benchmark
//! measures.
//!
//! # Design
//!
//! Each of `--threads` threads runs its own single-threaded tokio runtime (no work stealing, no
//! cross-thread wake-ups on the message path). Worker 0 also runs the accept loop and deals
//! connections out round-robin, so sessions spread evenly however few there are. The main thread
//! only waits for SIGTERM or Ctrl-C.
//!
//! # Per message
//!
//! tokio-websockets reads frames into the connection's read buffer and unmasks them in place (SIMD);
//! the received payload (a `Bytes` view of that buffer) is queued back unchanged with the same
//! opcode and written with one vectored write (header + payload): no copy of the payload. Pings are
//! answered and closes completed by the library; text is checked for UTF-8 as RFC 6455 requires.
//! Fragmented messages are reassembled and echoed as one message. No subprotocol is chosen and no
//! extension (permessage-deflate) is accepted. Every socket has `TCP_NODELAY`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Handle};
use tokio_websockets::{Limits, ServerBuilder};

use crate::cli::EchoServerArgs;

/// Binds, prints `echo-server listening on ADDRESS:PORT` on stdout, and serves until SIGTERM or
/// Ctrl-C.
///
/// # Errors
///
/// The error binding the address or starting a runtime or thread.
pub fn run(args: &EchoServerArgs) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(SocketAddr::new(args.address, args.port))?;
    listener.set_nonblocking(true)?;
    let workers = start_workers(usize::from(args.threads))?;

    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "echo-server listening on {}", listener.local_addr()?)?;
        stdout.flush()?;
    }

    let dealer = workers.clone();
    workers[0].spawn(async move {
        if let Err(e) = accept_loop(listener, dealer).await {
            eprintln!("echo-server: accept loop ended: {e}");
            std::process::exit(crate::EXIT_ERRORS);
        }
    });

    let signals = Builder::new_current_thread().enable_all().build()?;
    signals.block_on(wait_for_shutdown())
}

/// Starts `n` threads, each blocked forever in its own current-thread runtime, and returns their
/// handles (tasks spawned through a handle run on that thread).
fn start_workers(n: usize) -> io::Result<Vec<Handle>> {
    let (tx, rx) = mpsc::channel();
    for i in 0..n {
        let tx = tx.clone();
        thread::Builder::new().name(format!("echo-worker-{i}")).spawn(move || {
            let runtime = match Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(runtime.handle().clone()));
            runtime.block_on(std::future::pending::<()>());
        })?;
    }
    drop(tx);
    rx.iter().take(n).collect()
}

async fn accept_loop(listener: std::net::TcpListener, workers: Vec<Handle>) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    let mut next = 0;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) if is_transient_accept_error(&e) => {
                // Out of file descriptors or similar: back off briefly rather than spin.
                eprintln!("echo-server: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        // Deregister from this runtime's reactor; the worker registers it with its own.
        let Ok(stream) = stream.into_std() else { continue };
        workers[next].spawn(serve(stream));
        next = (next + 1) % workers.len();
    }
}

/// Whether a failed `accept` is worth retrying (the listener itself is fine).
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// Serves one connection: handshake, then echo every message until the close handshake ends.
async fn serve(stream: std::net::TcpStream) {
    let Ok(stream) = TcpStream::from_std(stream) else { return };
    let _ = stream.set_nodelay(true);
    let server = ServerBuilder::new().limits(Limits::unlimited());
    let Ok((_request, mut ws)) = server.accept(stream).await else { return };
    // After an error the stream has queued its close frame (protocol error) or is done (I/O);
    // polling on flushes that close and then ends with None.
    while let Some(item) = ws.next().await {
        let Ok(message) = item else { continue };
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// Waits for SIGTERM or Ctrl-C.
pub(crate) async fn wait_for_shutdown() -> io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result?,
    }
    Ok(())
}
