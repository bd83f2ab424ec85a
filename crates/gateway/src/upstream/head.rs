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
    io.write_all(&head).await?;
    // Over TLS, the end of a write can wait in rustls's buffer; for plain TCP this returns at once.
    io.flush().await
}

/// Reads the service's final response head from `io`, skipping informational ones (`100 Continue`,
/// `103 Early Hints`) as HTTP/1.1 asks. Returns it with the bytes the service sent right behind it
/// (its first frames after a 101), which belong to the relay.
///
/// # Errors
///
/// [`HeadError`] when the connection ends or fails first, or the heads are too large (together,
/// over [`MAX_RESPONSE_HEAD`]) or malformed.
///
/// # Cancel safety
///
/// Not cancel safe: bytes read so far are lost.
pub async fn read_response<R: AsyncRead + Unpin>(io: &mut R) -> Result<(Response<()>, Bytes), HeadError> {
    let mut buffer = BytesMut::with_capacity(1024);
    // Bytes at the start of `buffer` known to hold no blank line, so a slow service that sends its
    // head a byte at a time costs a scan of each byte once, not of the whole head per byte.
    let mut searched = 0;
    // Bytes of informational heads already skipped.
    let mut skipped = 0;
    loop {
        if let Some(end) = blank_line_end(&buffer, searched) {
            match parse(&buffer[..end])? {
                Some(response) if response.status().is_informational() && response.status() != StatusCode::SWITCHING_PROTOCOLS => {
                    skipped += end;
                    let _ = buffer.split_to(end);
                    searched = 0;
                    continue;
                }
                Some(response) => {
                    let rest = buffer.split_off(end).freeze();
                    return Ok((response, rest));
                }
                // A blank line where httparse still wants more (e.g. leading empty lines).
                None => searched = end,
            }
        } else {
            searched = buffer.len();
        }
        let held = skipped + buffer.len();
        if held >= MAX_RESPONSE_HEAD {
            return Err(HeadError::TooLarge);
        }
        if buffer.capacity() == buffer.len() {
            buffer.reserve(buffer.len().max(1024).min(MAX_RESPONSE_HEAD - held));
        }
        if io.read_buf(&mut (&mut buffer).limit(MAX_RESPONSE_HEAD - held)).await? == 0 {
            return Err(HeadError::Closed);
        }
    }
}

/// Where the first blank line (`\n\n` or `\n\r\n`, as httparse accepts both) that starts at or after
/// `from` ends.
fn blank_line_end(bytes: &[u8], from: usize) -> Option<usize> {
    // A blank line that began before `from` ends at most two bytes into the new part.
    let start = from.saturating_sub(2);
    let tail = bytes.get(start..)?;
    tail.iter().enumerate().find_map(|(i, &byte)| {
        if byte != b'\n' {
            return None;
        }
        match (tail.get(i + 1), tail.get(i + 2)) {
            (Some(b'\n'), _) => Some(start + i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(start + i + 3),
            _ => None,
        }
    })
}

/// Parses a head that ends at the end of `bytes`; `None` when httparse finds it incomplete.
fn parse(bytes: &[u8]) -> Result<Option<Response<()>>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    if parsed.parse(bytes).map_err(HeadError::Malformed)?.is_partial() {
        return Ok(None);
    }
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
    Ok(Some(response))
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
    async fn informational_heads_are_skipped() {
        let wire = [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\nLink: </a>\n\n".as_slice(), SWITCHING, b"\x81\x00"].concat();
        let mut reader = wire.as_slice();
        let (response, rest) = read_response(&mut reader).await.unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(response.headers().get("link").is_none(), "headers of a skipped head do not leak into the answer");
        assert_eq!(&rest[..], b"\x81\x00");
        let mut refused = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".as_slice();
        assert_eq!(read_response(&mut refused).await.unwrap().0.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn blank_lines_are_found_once_complete() {
        assert_eq!(blank_line_end(b"HTTP/1.1 101 X\r\n\r\nab", 0), Some(18));
        assert_eq!(blank_line_end(b"HTTP/1.1 101 X\n\nab", 0), Some(16));
        assert_eq!(blank_line_end(b"HTTP/1.1 101 X\r\n\r", 0), None);
        // Found when the search resumes after a read that completed it.
        assert_eq!(blank_line_end(b"HTTP/1.1 101 X\r\n\r\n", 16), Some(18));
        assert_eq!(blank_line_end(b"HTTP/1.1 101 X\r\n\r\n", 17), Some(18));
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
        assert!(matches!(answer(&endless).await, HeadError::TooLarge));
        let many = [b"HTTP/1.1 101 OK\r\n".as_slice(), &b"X: a\r\n".repeat(MAX_HEADERS + 1), b"\r\n"].concat();
        assert!(matches!(answer(&many).await, HeadError::Malformed(httparse::Error::TooManyHeaders)));
        let endless_continues = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_RESPONSE_HEAD / 20);
        assert!(matches!(answer(&endless_continues).await, HeadError::TooLarge));
        let huge_value = [b"HTTP/1.1 101 OK\r\nX-Filler: ".as_slice(), &vec![b'a'; 2 * MAX_RESPONSE_HEAD]].concat();
        assert!(matches!(answer(&huge_value).await, HeadError::TooLarge));
    }
}
