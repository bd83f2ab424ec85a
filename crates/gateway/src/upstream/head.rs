//! The two message heads of the upstream handshake on the wire: the upgrade request the gateway
//! writes, and the service's response head it reads.
//!
//! An upgrade exchange is one request without a body and one response head; what follows a 101 is
//! WebSocket frames. hyper's client would run a connection task, a dispatcher and an upgrade channel
//! per session for that, and hand the socket back boxed; writing the head and parsing the answer with
//! `httparse` (the parser hyper itself uses) keeps the socket in the session's task from the start.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest response head accepted from a service. Cookies and long headers fit; a service that
/// sends more is broken or hostile.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// The most header fields accepted in a response head.
const MAX_HEADERS: usize = 100;

/// Why a service's answer is not a usable HTTP/1.1 response head.
#[derive(Debug, Error)]
pub enum HeadError {
    /// The connection ended before the head was complete.
    #[error("connection closed before the response")]
    Closed,
    /// The head is longer than [`MAX_RESPONSE_HEAD`].
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    TooLarge,
    /// The bytes are not an HTTP/1.x response head.
    #[error("malformed response: {0}")]
    Malformed(httparse::Error),
    /// A header name or value is not valid HTTP.
    #[error("malformed response header")]
    BadHeader,
    /// Reading or writing the socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes `request` (a GET without a body) as an HTTP/1.1 request head, `Host` first.
///
/// # Errors
///
/// The socket's write error.
pub async fn write_request<W: AsyncWrite + Unpin>(io: &mut W, request: &Request<()>) -> std::io::Result<()> {
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(request.method().as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = request.headers();
    let host = headers.get(header::HOST).into_iter().map(|value| (&header::HOST, value));
    for (name, value) in host.chain(headers.iter().filter(|(name, _)| **name != header::HOST)) {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    io.write_all(&head).await
}

/// Reads a response head from `io`. Returns it with the bytes the service sent right behind it (its
/// first frames after a 101), which belong to the relay.
///
/// # Errors
///
/// [`HeadError`] when the connection ends or fails first, or the head is too large or malformed.
///
/// # Cancel safety
///
/// Not cancel safe: bytes read so far are lost.
pub async fn read_response<R: AsyncRead + Unpin>(io: &mut R) -> Result<(Response<()>, Bytes), HeadError> {
    let mut buffer = BytesMut::with_capacity(1024);
    loop {
        if buffer.len() >= MAX_RESPONSE_HEAD {
            return Err(HeadError::TooLarge);
        }
        if buffer.capacity() == buffer.len() {
            buffer.reserve(buffer.len().min(MAX_RESPONSE_HEAD - buffer.len()));
        }
        let limit = MAX_RESPONSE_HEAD - buffer.len();
        if io.read_buf(&mut (&mut buffer).limit(limit)).await? == 0 {
            return Err(HeadError::Closed);
        }
        if let Some((response, length)) = parse(&buffer)? {
            let rest = buffer.split_off(length).freeze();
            return Ok((response, rest));
        }
    }
}

/// Parses a complete head at the start of `bytes`, with its length; `None` while it is incomplete.
fn parse(bytes: &[u8]) -> Result<Option<(Response<()>, usize)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let length = match parsed.parse(bytes).map_err(HeadError::Malformed)? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(length) => length,
    };
    let status = parsed.code.and_then(|code| StatusCode::from_u16(code).ok()).ok_or(HeadError::BadHeader)?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.reserve(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| HeadError::BadHeader)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| HeadError::BadHeader)?;
        headers.append(name, value);
    }
    Ok(Some((response, length)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const SWITCHING: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[tokio::test]
    async fn request_head_puts_host_first_and_ends_with_a_blank_line() {
        let request = Request::get("/ws/uppercase?x=1").header("sec-websocket-key", "k").header("host", "127.0.0.1:7").body(()).unwrap();
        let mut written = Vec::new();
        write_request(&mut written, &request).await.unwrap();
        assert_eq!(written, b"GET /ws/uppercase?x=1 HTTP/1.1\r\nhost: 127.0.0.1:7\r\nsec-websocket-key: k\r\n\r\n");
    }

    #[tokio::test]
    async fn response_head_split_anywhere_keeps_the_frames_behind_it() {
        let frames = b"\x81\x02hi";
        let wire = [SWITCHING, frames].concat();
        for cut in 1..wire.len() {
            let (mut service, mut gateway) = tokio::io::duplex(64);
            let (first, second) = wire.split_at(cut);
            let (first, second) = (first.to_vec(), second.to_vec());
            let writer = tokio::spawn(async move {
                service.write_all(&first).await.unwrap();
                tokio::task::yield_now().await;
                service.write_all(&second).await.unwrap();
                service
            });
            let (response, rest) = read_response(&mut gateway).await.unwrap();
            let _service = writer.await.unwrap();
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS, "cut at {cut}");
            assert_eq!(response.headers().get_all("set-cookie").iter().count(), 2);
            assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
            // Frames that arrived with the head come back; later ones stay in the socket.
            let mut relayed = rest.to_vec();
            while relayed.len() < frames.len() {
                let mut more = [0u8; 8];
                let n = gateway.read(&mut more).await.unwrap();
                relayed.extend_from_slice(&more[..n]);
            }
            assert_eq!(relayed, frames);
        }
    }

    #[tokio::test]
    async fn bad_heads_are_errors() {
        async fn answer(bytes: &[u8]) -> HeadError {
            let mut reader = bytes;
            read_response(&mut reader).await.unwrap_err()
        }
        assert!(matches!(answer(b"HTTP/1.1 101 Switching").await, HeadError::Closed));
        assert!(matches!(answer(b"").await, HeadError::Closed));
        assert!(matches!(answer(b"SSH-2.0-OpenSSH\r\n\r\n").await, HeadError::Malformed(_)));
        assert!(matches!(answer(b"HTTP/1.1 101 OK\r\nX: \x01\r\n\r\n").await, HeadError::Malformed(_) | HeadError::BadHeader));
        let endless = [b"HTTP/1.1 101 OK\r\n".as_slice(), &b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(4000)].concat();
        assert!(matches!(answer(&endless).await, HeadError::TooLarge | HeadError::Malformed(httparse::Error::TooManyHeaders)));
        let huge_value = [b"HTTP/1.1 101 OK\r\nX-Filler: ".as_slice(), &vec![b'a'; 2 * MAX_RESPONSE_HEAD]].concat();
        assert!(matches!(answer(&huge_value).await, HeadError::TooLarge));
    }
}
