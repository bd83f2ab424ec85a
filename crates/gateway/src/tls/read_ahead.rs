//! A socket under rustls that reads a burst in one syscall.
//!
//! rustls asks its socket for at most 4 KiB per read, so a 16 KiB record takes five `recvfrom`s
//! (measured: six per 16 KiB wss message through the gateway). This wrapper passes small reads
//! straight through; once a read fills rustls's whole request, more is probably waiting, and it reads
//! up to [`AHEAD`] bytes at once into a buffer of its own, which rustls then drains. The buffer is
//! allocated without being zeroed and freed as soon as it is drained and the socket has nothing more,
//! so a quiet session holds none; the first short read ends the burst.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

/// How much one read takes while a burst lasts: four full TLS records.
const AHEAD: usize = 64 * 1024;

/// Reads shorter than this end a burst: rustls's own read size.
const SHORT: usize = 4 * 1024;

/// A connection whose reads go through a burst buffer.
#[derive(Debug)]
pub struct ReadAhead<S> {
    io: S,
    burst: Option<Burst>,
}

/// A burst in progress: the bytes read ahead and not handed out yet.
#[derive(Debug, Default)]
struct Burst {
    /// Empty, and without an allocation, between reads of the socket.
    ahead: BytesMut,
    /// The last read was short: the burst ends once it is drained.
    ending: bool,
}

impl<S> ReadAhead<S> {
    /// Wraps a connection.
    pub fn new(io: S) -> ReadAhead<S> {
        ReadAhead { io, burst: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(burst) = &mut this.burst else {
            let wanted = buf.remaining();
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            if wanted > 0 && buf.filled().len() - before == wanted {
                this.burst = Some(Burst::default());
            }
            return Poll::Ready(Ok(()));
        };
        if burst.ahead.is_empty() {
            burst.ahead.reserve(AHEAD);
            match poll_read_buf(Pin::new(&mut this.io), cx, &mut burst.ahead) {
                Poll::Pending => {
                    // Nothing more for now: the memory goes back until the socket has more.
                    burst.ahead = BytesMut::new();
                    return Poll::Pending;
                }
                Poll::Ready(read) => burst.ending = read? < SHORT,
            }
        }
        let taken = burst.ahead.len().min(buf.remaining());
        buf.put_slice(&burst.ahead[..taken]);
        burst.ahead.advance(taken);
        if burst.ahead.is_empty() && burst.ending {
            this.burst = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the reads that reach the connection and returned bytes.
    struct Counted<S> {
        io: S,
        reads: usize,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            if buf.filled().len() > before {
                this.reads += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Reads as rustls does: 4 KiB at a time, until `len` bytes have arrived.
    async fn read_like_rustls<S: AsyncRead + Unpin>(reader: &mut ReadAhead<S>, len: usize) -> Vec<u8> {
        let mut received = Vec::new();
        while received.len() < len {
            let mut chunk = [0u8; SHORT];
            let read = reader.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the stream ended early");
            received.extend_from_slice(&chunk[..read]);
        }
        received
    }

    /// Polls one read of `reader` once; whether it is pending.
    fn polled_once_is_pending<S: AsyncRead + Unpin>(reader: &mut ReadAhead<S>, into: &mut [u8]) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut buf = ReadBuf::new(into);
        Pin::new(reader).poll_read(&mut cx, &mut buf).is_pending()
    }

    #[tokio::test]
    async fn a_burst_takes_two_reads_and_light_traffic_holds_no_buffer() {
        let (mut sender, receiver) = tokio::io::duplex(256 * 1024);
        let mut reader = ReadAhead::new(Counted { io: receiver, reads: 0 });

        sender.write_all(&[7; 100]).await.unwrap();
        assert_eq!(read_like_rustls(&mut reader, 100).await, [7; 100]);
        assert!(reader.burst.is_none(), "a short read needs no buffer");

        let record: Vec<u8> = (0..16_436u32).map(|i| i as u8).collect();
        sender.write_all(&record).await.unwrap();
        let before = reader.io.reads;
        assert_eq!(read_like_rustls(&mut reader, record.len()).await, record);
        assert_eq!(reader.io.reads - before, 2, "one read of 4 KiB, then the rest at once");
        assert!(reader.burst.is_some(), "a long read keeps the burst going");

        sender.write_all(&record).await.unwrap();
        let before = reader.io.reads;
        assert_eq!(read_like_rustls(&mut reader, record.len()).await, record);
        assert_eq!(reader.io.reads - before, 1, "inside a burst, a record takes one read");
        let mut nothing = [0u8; SHORT];
        assert!(polled_once_is_pending(&mut reader, &mut nothing), "the socket has nothing more");
        let burst = reader.burst.as_ref().expect("the burst goes on");
        assert_eq!(burst.ahead.capacity(), 0, "a drained burst waiting for the socket holds no memory");

        sender.write_all(&[9; 10]).await.unwrap();
        assert_eq!(read_like_rustls(&mut reader, 10).await, [9; 10]);
        assert!(reader.burst.is_none(), "a short read ends the burst once drained");

        drop(sender);
        let mut rest = [0u8; SHORT];
        assert_eq!(reader.read(&mut rest).await.unwrap(), 0, "the end of the stream passes through");
    }
}
