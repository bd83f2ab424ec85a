//! The floor of a proxy: a TCP relay that does nothing but copy bytes, for comparison with the
//! proxies measured.
//!
//! Every client connection gets its own connection to `--upstream`, opened when the client
//! connects, and bytes are copied both ways until each side has ended: read, write it all, read
//! again, with 256 KiB per direction (as much as wsgate's large buffers) taken from a pool of the
//! worker's, so no connection pays for fresh memory. It does not parse HTTP or
//! WebSocket frames, so the WebSocket handshake passes through untouched: whatever a WebSocket proxy
//! costs beyond this relay is its own work, and what this relay costs is the kernel's price of a
//! second TCP connection and of two more socket reads and writes per round trip.
//!
//! Each of `--threads` threads runs a single-threaded runtime accepting on its own `SO_REUSEPORT`
//! socket (the design of wsgate's workers), so the relay has no cross-thread hand-off either.

use std::cell::RefCell;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::thread;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Builder;

use crate::cli::PipeArgs;

/// Bytes buffered per direction of a relayed connection.
const BUFFER: usize = 256 * 1024;

/// Binds, prints `pipe listening on ADDRESS:PORT` on stdout, and relays until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// The error binding the address or starting a runtime or thread.
pub fn run(args: &PipeArgs) -> io::Result<()> {
    // A plain bind first picks the port (port 0) that every worker's socket then shares.
    let address = std::net::TcpListener::bind(SocketAddr::new(args.address, args.port))?.local_addr()?;
    for index in 0..args.threads {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        // tokio makes a listening socket only inside a runtime; it is bound here, so a bind error
        // stops the start.
        let socket = {
            let _inside = runtime.enter();
            reuse_port_listener(address)?
        };
        let upstream = args.upstream;
        thread::Builder::new().name(format!("pipe-worker-{index}")).spawn(move || {
            runtime.block_on(async move {
                if let Err(e) = accept_loop(socket, upstream).await {
                    eprintln!("pipe: accept loop ended: {e}");
                    std::process::exit(crate::EXIT_ERRORS);
                }
            });
        })?;
    }
    {
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "pipe listening on {address}")?;
        stdout.flush()?;
    }
    let signals = Builder::new_current_thread().enable_all().build()?;
    signals.block_on(crate::echo_server::wait_for_shutdown())
}

fn reuse_port_listener(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    // Accepted connections inherit it (Linux).
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(1024)?.into_std()
}

async fn accept_loop(listener: std::net::TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    loop {
        let client = match listener.accept().await {
            Ok((client, _peer)) => client,
            Err(e) if crate::echo_server::is_transient_accept_error(&e) => {
                eprintln!("pipe: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        tokio::spawn(relay(client, upstream));
    }
}

/// Relays one connection; a refused upstream just closes the client's connection.
async fn relay(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut service) = TcpStream::connect(upstream).await else { return };
    let _ = service.set_nodelay(true);
    let (client_reader, client_writer) = client.split();
    let (service_reader, service_writer) = service.split();
    tokio::join!(copy(client_reader, service_writer), copy(service_reader, client_writer));
}

/// Copies one direction until its reader ends, then ends the writer's side.
async fn copy(mut reader: ReadHalf<'_>, mut writer: WriteHalf<'_>) {
    let mut buffer = POOL.with(|pool| pool.borrow_mut().pop()).unwrap_or_else(|| vec![0; BUFFER].into_boxed_slice());
    while let Ok(read @ 1..) = reader.read(&mut buffer).await {
        if writer.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
    POOL.with(|pool| pool.borrow_mut().push(buffer));
}

thread_local! {
    /// The worker's spare buffers: as many as its busiest moment needed, reused ever after.
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}
