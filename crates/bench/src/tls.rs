//! TLS for `wss://` endpoints: the client configuration built from `--ca`, and [`Stream`], the
//! connection a session runs on (plain TCP or TLS over TCP).
//!
//! rustls with the ring provider, TLS 1.3 and 1.2, ALPN `http/1.1`, and the server's certificate
//! checked against the `--ca` roots only (no system roots: a benchmark must not depend on what the
//! machine happens to trust) with the host name of the URL (a DNS name or an IP address SAN).
//! Session resumption is off, so every session of a run pays a full handshake, whatever ticket or
//! cache settings each server under test has: `connect` compares like with like.

use std::fmt;
use std::io::{self, IoSlice};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why the TLS client could not be set up from `--ca` and the URL.
#[derive(Debug)]
pub struct ConfigError(String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Everything a session needs to start TLS: the connector (shared configuration) and the name the
/// server's certificate must carry.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl Client {
    /// Builds the client trusting the CA certificates of the PEM file `ca`, for server `host`
    /// (the URL's host, without brackets for IPv6).
    ///
    /// # Errors
    ///
    /// A message naming the file when it cannot be read, holds no certificate or a malformed one,
    /// or naming the host when it is neither a DNS name nor an IP address.
    pub fn new(ca: &Path, host: &str) -> Result<Self, ConfigError> {
        let roots = load_roots(ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The provider is named here rather than taken from the process default, so that another
        // crate of the build enabling a second provider cannot make this ambiguous.
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| ConfigError(format!("cannot configure TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = Resumption::disabled();
        let server_name = ServerName::try_from(host.to_owned()).map_err(|_| {
            ConfigError(format!("{host:?} is neither a DNS name nor an IP address, cannot check the certificate"))
        })?;
        Ok(Self { connector: TlsConnector::from(Arc::new(config)), server_name })
    }

    /// Runs the TLS handshake on a connected TCP stream.
    ///
    /// # Errors
    ///
    /// The I/O error of the handshake; rustls's reason (e.g. `invalid peer certificate:
    /// UnknownIssuer`) is its message.
    pub async fn connect(&self, tcp: TcpStream) -> io::Result<Stream> {
        let tls = self.connector.connect(self.server_name.clone(), tcp).await?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// Reads every certificate of a PEM file into a root store.
fn load_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let shown = path.display();
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| ConfigError(format!("--ca {shown}: {}", pem_error(e))))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError(format!("--ca {shown}: {}", pem_error(e))))?;
    if certificates.is_empty() {
        return Err(ConfigError(format!("--ca {shown}: no PEM certificate (-----BEGIN CERTIFICATE-----) in the file")));
    }
    let mut roots = RootCertStore::empty();
    for (i, certificate) in certificates.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|e| ConfigError(format!("--ca {shown}: certificate {} is not usable as a CA: {e}", i + 1)))?;
    }
    Ok(roots)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => format!("cannot read: {e}"),
        other => format!("not a valid PEM file: {other}"),
    }
}

/// The connection under a session: plain TCP (`ws://`) or TLS over TCP (`wss://`).
///
/// An enum rather than a boxed trait object: the per-call match is cheaper than a virtual call
/// and keeps plain sessions exactly as they were. The TLS state is boxed (it is over 1 KiB), so a
/// plain session does not carry its size.
pub enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Reads and discards everything up to the server's TCP close, after both close frames.
    ///
    /// Over TLS our `close_notify` goes first (without a TCP FIN): some servers (Python's asyncio,
    /// for one) wait for it before they close TCP. The server's `close_notify` then ends the TLS
    /// stream, and the raw TCP stream is read to its end, so that the server closes first and keeps
    /// the TIME_WAIT state. A server that closes TCP without a `close_notify` (rustls:
    /// `UnexpectedEof`) or resets the connection still ends the session cleanly: the WebSocket close
    /// handshake was already complete.
    ///
    /// # Errors
    ///
    /// Any other read or write error.
    pub async fn drain_to_close(self) -> io::Result<()> {
        let mut sink = [0u8; 256];
        let mut tcp = match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(mut tls) => {
                tls.get_mut().1.send_close_notify();
                match tls.flush().await {
                    Ok(()) => {}
                    // The server may already be gone after its close frame.
                    Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => {
                        return Ok(())
                    }
                    Err(e) => return Err(e),
                }
                loop {
                    match tls.read(&mut sink).await {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) if matches!(e.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) => {
                            return Ok(())
                        }
                        Err(e) => return Err(e),
                    }
                }
                tls.into_inner().0
            }
        };
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("wsgate-bench-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let message = Client::new(Path::new("/nonexistent/ca.pem"), "localhost").err().unwrap().to_string();
        assert!(message.contains("--ca /nonexistent/ca.pem: cannot read"), "{message}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let path = temp_file("empty.pem", "not a certificate\n");
        let message = Client::new(&path, "localhost").err().unwrap().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(message.contains("no PEM certificate"), "{message}");
    }

    #[test]
    fn a_malformed_certificate_is_refused() {
        let path = temp_file("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let message = Client::new(&path, "localhost").err().unwrap().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(message.contains("--ca "), "{message}");
    }
}
