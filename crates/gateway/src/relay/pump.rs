//! One direction of the relay: read, scan, write, repeat.

use std::io;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tracing::{debug, trace};
use wsgate_frame::{encode_close, FrameScanner, Origin, MAX_CLOSE_FRAME_LEN};

use super::buffer::{BufferPool, RelayBuffer};
use super::keepalive::{encode_ping, fresh_mask, MAX_PING_FRAME_LEN};
use super::request::Request;
use super::peer::Writer;
use super::{Common, Direction, LINGER};
use crate::failure::{self, Close};
use crate::session::Traffic;

/// How a direction ended.
#[derive(Debug)]
pub(super) enum End {
    /// The peer closed its connection after a close frame: the normal end.
    Closed,
    /// The peer's connection ended without a close frame.
    Vanished,
    /// The peer sent a frame that breaks the rules.
    Violation,
    /// The other peer's connection failed while writing to it.
    OutputLost,
    /// The other direction asked this one to close its output.
    Stopped,
    /// Neither peer sent anything for `idleTimeout`: the gateway closed the output.
    Idle,
    /// The gateway is stopping: it closed the output.
    Stopping,
    /// The relay stopped waiting for this direction.
    Abandoned,
}

/// Reads frames from one peer and writes them to the other.
pub(super) struct Pump<'a, R, W> {
    direction: Direction,
    reader: &'a mut R,
    writer: &'a mut W,
    /// The masking key for frames the gateway writes itself: set when the writer goes to the service.
    mask: Option<[u8; 4]>,
    traffic: &'a Traffic,
    scanner: FrameScanner,
    buffer: RelayBuffer<'a>,
    /// Whether a close frame from the peer has passed, so the output has had its close: the gateway
    /// must not send another one there (RFC 6455 §5.5.1).
    close_seen: bool,
    /// What both pumps share: how many inputs have ended, and the gateway's requests.
    common: &'a Common,
}

/// What a pump writes to.
pub(super) trait Output: AsyncWrite + Unpin {
    /// Whether closing the connection ends this output as cleanly as a shutdown: true for plain
    /// TCP once its input has been read to the end (the kernel sends the FIN), false for TLS, whose
    /// `close_notify` and last buffered records only a shutdown sends.
    fn closing_is_enough(&self) -> bool;
}

impl Output for Writer<'_> {
    fn closing_is_enough(&self) -> bool {
        matches!(self, Writer::Tcp(_))
    }
}

impl<'a, R, W> Pump<'a, R, W>
where
    R: AsyncRead + Unpin,
    W: Output,
{
    pub(super) fn new(
        direction: Direction,
        (reader, writer): (&'a mut R, &'a mut W),
        mask: Option<[u8; 4]>,
        traffic: &'a Traffic,
        max_frame_size: u64,
        pool: &'a BufferPool,
        common: &'a Common,
    ) -> Self {
        let origin = match direction {
            Direction::ClientToService => Origin::Client,
            Direction::ServiceToClient => Origin::Service,
        };
        Pump {
            direction,
            reader,
            writer,
            mask,
            traffic,
            scanner: FrameScanner::new(origin, max_frame_size),
            buffer: RelayBuffer::new(pool),
            close_seen: false,
            common,
        }
    }

    /// Pumps until the peer's connection ends, the peer breaks the rules, the other direction asks
    /// (through `inbox`) for a close on this pump's output, or the gateway asks for one (the
    /// session's `keepalive` found it idle, or the gateway stops). Asks the other direction through
    /// `outbox` when its output must be closed. Sends the pings the keep-alive asks for.
    pub(super) async fn run(&mut self, inbox: oneshot::Receiver<Close>, outbox: oneshot::Sender<Close>) -> End {
        let direction = self.direction.label();
        // The reference is copied out, so that polling the requests does not borrow the pump.
        let common = self.common;
        let mut inbox = Some(inbox);
        loop {
            let read = tokio::select! {
                // A close request comes first: it only arrives when the session is ending anyway.
                // Then the gateway's own, which never wait for the input (one relaxed load when
                // none is raised).
                biased;
                request = next_request(&mut inbox) => {
                    inbox = None;
                    let Ok(close) = request else { continue };
                    debug!(direction, code = close.0 .0, "closing on request of the other direction");
                    Box::pin(self.close_output(close)).await;
                    Box::pin(self.discard_until_close()).await;
                    return End::Stopped;
                }
                request = common.requests.next(self.direction) => {
                    let (close, end) = match (request, common.keepalive.as_deref()) {
                        (Request::Ping, _) => match self.ping().await {
                            Ok(()) => continue,
                            Err(error) => return self.output_failed(error, outbox).await,
                        },
                        // Only a keep-alive raises Idle.
                        (Request::Idle, Some(keepalive)) => (keepalive.idle_close(), End::Idle),
                        (Request::Idle, None) | (Request::Stop, _) => (failure::stopping(), End::Stopping),
                    };
                    Box::pin(self.close_output(close)).await;
                    Box::pin(self.discard_until_close()).await;
                    return end;
                }
                read = self.reader.read(self.buffer.space()) => read,
            };
            let read = match read {
                Ok(0) | Err(_) if self.close_seen => {
                    // Once the other input has ended too, both sockets are read to their end and
                    // closing a plain TCP one sends the same FIN: a shutdown would be one more syscall.
                    if self.input_ended() == 1 || !self.writer.closing_is_enough() {
                        let _ = Box::pin(tokio::time::timeout(LINGER, self.writer.shutdown())).await;
                    }
                    return End::Closed;
                }
                Ok(0) | Err(_) => {
                    self.input_ended();
                    debug!(direction, "peer vanished without a close frame");
                    Box::pin(self.close_output(failure::vanished(self.direction))).await;
                    return End::Vanished;
                }
                Ok(read) => read,
            };
            let scan = self.scanner.scan(self.buffer.filled(read));
            if scan.forward > 0 {
                let written = match self.writer.write_all(&self.buffer.filled(read)[..scan.forward]).await {
                    // A TLS output keeps the end of a write in rustls's buffer when its socket was
                    // full, and sends it only on the next write or a flush: flushed here, before the
                    // pump waits for its input again. For plain TCP the flush returns at once.
                    Ok(()) => self.writer.flush().await,
                    Err(error) => Err(error),
                };
                if let Err(error) = written {
                    self.buffer.advance(read, scan.forward);
                    return self.output_failed(error, outbox).await;
                }
                self.traffic.record(scan.forward as u64, self.scanner.messages());
                trace!(direction, bytes = scan.forward, "forwarded");
            }
            if let Some(close) = self.scanner.take_close() {
                debug!(direction, ?close, "close frame passed");
                self.close_seen = true;
            }
            if let Some(violation) = scan.violation {
                debug!(direction, ?violation, "frame refused");
                let (to_sender, to_receiver) = failure::violation(self.direction, violation);
                // The sender's close goes first: closing this output may wait on a slow reader.
                let _ = outbox.send(to_sender);
                // Everything before the refused header was written whole: the output is on a frame boundary.
                Box::pin(self.close_output(to_receiver)).await;
                // Skip the refused frame and look for the peer's answering close without judging it again.
                self.buffer.advance(read, scan.forward);
                self.scanner = FrameScanner::new(Origin::Unchecked, u64::MAX);
                Box::pin(self.discard_until_close()).await;
                return End::Violation;
            }
            self.buffer.advance(read, scan.forward);
        }
    }

    /// After writing to the output failed: the peer this pump writes to is gone, so the other pump
    /// tells its own peer, and this one reads what its peer still sends.
    async fn output_failed(&mut self, error: io::Error, outbox: oneshot::Sender<Close>) -> End {
        debug!(direction = self.direction.label(), %error, "writing failed");
        let _ = outbox.send(failure::vanished(self.direction.reverse()));
        Box::pin(self.discard_until_close()).await;
        End::OutputLost
    }

    /// Sends one of the gateway's pings on the output (with a fresh masking key towards the service),
    /// if it is on a frame boundary and no close has passed there. Inside a frame there is no room
    /// for one: the output is waiting for the rest of that frame.
    async fn ping(&mut self) -> io::Result<()> {
        let direction = self.direction.label();
        if !self.scanner.at_frame_boundary() || self.close_seen {
            debug!(direction, "no ping: the output is inside a frame or closed");
            return Ok(());
        }
        let mut frame = [0u8; MAX_PING_FRAME_LEN];
        let len = encode_ping(self.mask.map(|_| fresh_mask()), &mut frame);
        self.writer.write_all(&frame[..len]).await?;
        // As for forwarded bytes: a TLS output may hold a write's end until flushed.
        self.writer.flush().await?;
        debug!(direction, "ping sent");
        Ok(())
    }

    /// Counts this pump's input as ended; returns how many inputs have ended, this one included.
    fn input_ended(&self) -> u8 {
        // Both pumps run in one task: the atomic only makes the session future `Send`.
        self.common.inputs_ended.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends a close frame of the gateway's own on the output, if it is on a frame boundary and no
    /// close has passed there yet, then closes the output.
    pub(super) async fn close_output(&mut self, (code, reason): Close) {
        let finish = async {
            if self.scanner.at_frame_boundary() && !self.close_seen {
                let mut frame = [0u8; MAX_CLOSE_FRAME_LEN];
                let len = encode_close(code, &reason, self.mask, &mut frame);
                self.writer.write_all(&frame[..len]).await?;
            }
            self.writer.shutdown().await
        };
        // A peer that does not read must not hold the session open.
        let _ = tokio::time::timeout(LINGER, finish).await;
    }

    /// Reads and drops what the peer still sends until its close frame, the end of its connection, or
    /// [`LINGER`]: closing a socket with unread bytes would reset it and could destroy the close
    /// frame the gateway just sent before the peer reads it.
    pub(super) async fn discard_until_close(&mut self) {
        let discard = async {
            loop {
                // What is held may already contain the close.
                let scan = self.scanner.scan(self.buffer.filled(0));
                if self.scanner.take_close().is_some() || scan.violation.is_some() {
                    return;
                }
                self.buffer.advance(0, scan.forward);
                match self.reader.read(self.buffer.space()).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => self.buffer.advance(read, 0),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, discard).await;
    }
}

/// The next close request from the other direction; pending forever once it has been taken.
async fn next_request(inbox: &mut Option<oneshot::Receiver<Close>>) -> Result<Close, oneshot::error::RecvError> {
    match inbox {
        Some(receiver) => receiver.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::sync::watch;

    use super::super::peer::tcp_pair;
    use super::*;

    /// An output that, like a TLS connection whose socket was full, keeps what it is given until
    /// it is flushed.
    struct Holding {
        pending: Vec<u8>,
        delivered: watch::Sender<Vec<u8>>,
    }

    impl AsyncWrite for Holding {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.get_mut().pending.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let pending = std::mem::take(&mut this.pending);
            this.delivered.send_modify(|delivered| delivered.extend(pending));
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    impl Output for Holding {
        fn closing_is_enough(&self) -> bool {
            false
        }
    }

    #[tokio::test]
    async fn what_is_forwarded_is_flushed_before_the_pump_waits_for_more() {
        let (mut service, mut input) = tokio::io::duplex(1024);
        let (delivered, mut seen) = watch::channel(Vec::new());
        let mut output = Holding { pending: Vec::new(), delivered };
        let (traffic, pool, common) = (Traffic::default(), BufferPool::default(), Common::default());
        let mut pump = Pump::new(Direction::ServiceToClient, (&mut input, &mut output), None, &traffic, 1 << 20, &pool, &common);
        let (_ask, inbox) = oneshot::channel();
        let (outbox, _asked) = oneshot::channel();
        let frame = b"\x81\x05hello";
        service.write_all(frame).await.unwrap();
        let run = pump.run(inbox, outbox);
        tokio::pin!(run);
        // The service sends nothing more: the frame must reach the client all the same.
        let arrived = tokio::time::timeout(Duration::from_secs(10), seen.wait_for(|delivered| delivered.len() == frame.len()));
        tokio::select! {
            end = &mut run => panic!("the pump ended: {end:?}"),
            arrived = arrived => assert_eq!(*arrived.expect("the frame was held back").unwrap(), frame.to_vec()),
        }
    }

    #[tokio::test]
    async fn a_ping_waits_for_a_frame_boundary_and_never_follows_a_close() {
        let (mut input, _input_remote) = tcp_pair().await;
        let (mut output, mut remote) = tcp_pair().await;
        let ((mut reader, _), (_, mut writer)) = (input.split(), output.split());
        let (traffic, pool, common) = (Traffic::default(), BufferPool::default(), Common::default());
        let mut pump = Pump::new(Direction::ServiceToClient, (&mut reader, &mut writer), None, &traffic, 1 << 20, &pool, &common);
        // The header and 3 bytes of a 10-byte frame have been forwarded: no room for a ping.
        pump.scanner.scan(&[0x81, 10, b'a', b'b', b'c']);
        pump.ping().await.unwrap();
        // The frame's last 7 bytes: now the output is between frames.
        pump.scanner.scan(b"defghij");
        pump.ping().await.unwrap();
        pump.close_seen = true;
        pump.ping().await.unwrap();
        pump.writer.shutdown().await.unwrap();
        let mut written = Vec::new();
        remote.read_to_end(&mut written).await.unwrap();
        assert_eq!(written, b"\x89\x06wsgate", "one unmasked ping, sent at the frame boundary only");
    }

    #[tokio::test]
    async fn pings_towards_the_service_are_masked_with_a_fresh_key_each() {
        let (mut input, _input_remote) = tcp_pair().await;
        let (mut output, mut remote) = tcp_pair().await;
        let ((mut reader, _), (_, mut writer)) = (input.split(), output.split());
        let (traffic, pool, common) = (Traffic::default(), BufferPool::default(), Common::default());
        let session_key = [1, 2, 3, 4];
        let mut pump = Pump::new(Direction::ClientToService, (&mut reader, &mut writer), Some(session_key), &traffic, 1 << 20, &pool, &common);
        pump.ping().await.unwrap();
        pump.ping().await.unwrap();
        pump.writer.shutdown().await.unwrap();
        let mut written = Vec::new();
        remote.read_to_end(&mut written).await.unwrap();
        assert_eq!(written.len(), 2 * MAX_PING_FRAME_LEN);
        let keys: Vec<[u8; 4]> = written
            .chunks(MAX_PING_FRAME_LEN)
            .map(|frame| {
                assert_eq!(frame[..2], [0x89, 0x86], "a masked ping with 6 bytes of payload");
                let key = [frame[2], frame[3], frame[4], frame[5]];
                let payload: Vec<u8> = frame[6..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
                assert_eq!(payload, b"wsgate");
                key
            })
            .collect();
        assert_ne!(keys[0], keys[1]);
        assert!(!keys.contains(&session_key), "not the session's key for closes");
    }
}
