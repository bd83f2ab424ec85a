//! Following the frames of one direction of a connection across reads.

use crate::close::CloseFrame;
use crate::header::{FrameHeader, OpCode};

/// Which peer sends the frames a scanner sees; it decides the masking rule (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Frames from the client: every frame must be masked.
    Client,
    /// Frames from the service: no frame may be masked.
    Service,
    /// Frames whose masking is not checked: for reading what a peer still sends while its connection
    /// is being closed, after it already broke the rules.
    Unchecked,
}

/// A frame the relay must not forward; the session ends at its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A client frame without a masking key.
    Unmasked,
    /// A service frame with a masking key.
    Masked,
    /// A frame whose payload is larger than the configured maximum.
    TooLarge,
    /// A header that can never be valid (a 64-bit length with its top bit set).
    BadLength,
}

/// The outcome of [`FrameScanner::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    /// How many bytes from the front of the input may be forwarded now. Bytes after them are the
    /// start of a header that is not complete yet (keep them and scan again with more), or the header
    /// of the frame named by `violation`.
    pub forward: usize,
    /// Set when scanning stopped at a frame that must not be forwarded.
    pub violation: Option<Violation>,
}

/// What the payload bytes of the current frame are, for what the scanner keeps of them.
#[derive(Debug, Clone, Copy)]
enum Payload {
    /// Payload bytes only need counting down.
    Skip,
    /// A close frame: its payload is unmasked into a [`CloseFrame`] while it passes.
    Close { frame: CloseFrame, mask: Option<[u8; 4]>, offset: usize },
}

/// Follows frame boundaries in the bytes one peer sends, read by read.
///
/// The scanner holds only the position inside the current frame (a few words, no buffer), so a relay
/// can forward payload bytes as soon as they arrive, whatever the frame or message size.
///
/// ```
/// use wsgate_frame::{FrameScanner, Origin};
///
/// let mut scanner = FrameScanner::new(Origin::Service, 1 << 20);
/// // "Hello" as an unmasked text frame, arriving in two reads split inside the header.
/// let frame = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
/// assert_eq!(scanner.scan(&frame[..1]).forward, 0); // keep the byte, read more
/// assert_eq!(scanner.scan(&frame).forward, 7);
/// assert_eq!(scanner.messages(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct FrameScanner {
    origin: Origin,
    max_payload: u64,
    remaining: u64,
    payload: Payload,
    messages: u64,
    close: Option<CloseFrame>,
}

impl FrameScanner {
    /// A scanner for frames sent by `origin`, refusing payloads longer than `max_payload` bytes.
    pub fn new(origin: Origin, max_payload: u64) -> FrameScanner {
        FrameScanner { origin, max_payload, remaining: 0, payload: Payload::Skip, messages: 0, close: None }
    }

    /// Scans `input`: the bytes not forwarded yet, starting where the previous scan stopped.
    ///
    /// Call it again with the unforwarded tail of `input` followed by newly read bytes.
    pub fn scan(&mut self, input: &[u8]) -> Scan {
        let mut pos = 0;
        loop {
            if self.remaining > 0 {
                let available = input.len() - pos;
                let take = usize::try_from(self.remaining).map_or(available, |r| r.min(available));
                self.consume_payload(&input[pos..pos + take]);
                pos += take;
                if pos == input.len() {
                    return Scan { forward: pos, violation: None };
                }
            }
            let header = match FrameHeader::parse(&input[pos..]) {
                Ok(Some(header)) => header,
                Ok(None) => return Scan { forward: pos, violation: None },
                Err(_) => return Scan { forward: pos, violation: Some(Violation::BadLength) },
            };
            if let Some(violation) = self.check(&header) {
                return Scan { forward: pos, violation: Some(violation) };
            }
            pos += header.header_len;
            self.start_payload(&header);
        }
    }

    /// Whether the bytes scanned so far end on a frame boundary, so a frame of the relay's own may
    /// be sent after them.
    pub fn at_frame_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// How many data messages have been completed (a fragmented message counts once, on its final
    /// frame's header).
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// The last close frame that passed completely, taken out so each is reported once.
    pub fn take_close(&mut self) -> Option<CloseFrame> {
        self.close.take()
    }

    fn check(&self, header: &FrameHeader) -> Option<Violation> {
        match (self.origin, header.mask) {
            (Origin::Client, None) => return Some(Violation::Unmasked),
            (Origin::Service, Some(_)) => return Some(Violation::Masked),
            (Origin::Client, Some(_)) | (Origin::Service, None) | (Origin::Unchecked, _) => {}
        }
        (header.payload_len > self.max_payload).then_some(Violation::TooLarge)
    }

    fn start_payload(&mut self, header: &FrameHeader) {
        let ends_message = header.fin && matches!(header.opcode, OpCode::Text | OpCode::Binary | OpCode::Continuation);
        if ends_message {
            self.messages += 1;
        }
        self.remaining = header.payload_len;
        self.payload = match header.opcode {
            OpCode::Close => Payload::Close { frame: CloseFrame::EMPTY, mask: header.mask, offset: 0 },
            _ => Payload::Skip,
        };
        if self.remaining == 0 {
            self.finish_payload();
        }
    }

    fn consume_payload(&mut self, bytes: &[u8]) {
        if let Payload::Close { frame, mask, offset } = &mut self.payload {
            for &byte in bytes {
                let key = mask.map_or(0, |key| key[*offset % 4]);
                frame.push(byte ^ key);
                *offset += 1;
            }
        }
        self.remaining -= bytes.len() as u64;
        if self.remaining == 0 {
            self.finish_payload();
        }
    }

    fn finish_payload(&mut self) {
        if let Payload::Close { frame, .. } = self.payload {
            self.close = Some(frame);
        }
        self.payload = Payload::Skip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close::CloseCode;
    use crate::header::MAX_HEADER_LEN;

    fn frame(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader { fin, rsv: 0, opcode, mask, payload_len: payload.len() as u64, header_len: 0 };
        let mut head = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut head);
        let mut out = head[..len].to_vec();
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask.map_or(0, |k| k[i % 4])));
        out
    }

    /// Feeds `stream` as a relay would, in reads of at most `chunk` bytes, keeping unforwarded bytes.
    fn relay(scanner: &mut FrameScanner, stream: &[u8], chunk: usize) -> (usize, Option<Violation>) {
        let mut pending = Vec::new();
        let mut forwarded = 0;
        for piece in stream.chunks(chunk) {
            pending.extend_from_slice(piece);
            let scan = scanner.scan(&pending);
            forwarded += scan.forward;
            pending.drain(..scan.forward);
            if scan.violation.is_some() {
                return (forwarded, scan.violation);
            }
        }
        (forwarded, None)
    }

    #[test]
    fn every_split_of_a_fragmented_message_with_interleaved_control_frames() {
        let key = Some([0xA1, 0xB2, 0xC3, 0xD4]);
        let mut stream = frame(OpCode::Text, false, key, b"Hel");
        stream.extend(frame(OpCode::Ping, true, key, b"ping"));
        stream.extend(frame(OpCode::Continuation, false, key, &[b'l'; 300]));
        stream.extend(frame(OpCode::Pong, true, key, b""));
        stream.extend(frame(OpCode::Continuation, true, key, b"o"));
        stream.extend(frame(OpCode::Binary, true, key, &[7; 70_000]));
        stream.extend(frame(OpCode::Close, true, key, b"\x0f\xa1gone"));
        for chunk in 1..=MAX_HEADER_LEN + 2 {
            let mut scanner = FrameScanner::new(Origin::Client, 1 << 20);
            assert_eq!(relay(&mut scanner, &stream, chunk), (stream.len(), None), "chunk {chunk}");
            assert_eq!(scanner.messages(), 2);
            assert!(scanner.at_frame_boundary());
            let close = scanner.take_close().expect("close frame captured");
            assert_eq!((close.code(), close.reason_len()), (Some(CloseCode(4001)), 4));
            assert_eq!(scanner.take_close(), None);
        }
    }

    #[test]
    fn every_split_point_of_a_two_frame_stream() {
        let mut stream = frame(OpCode::Binary, true, None, &[1; 126]);
        stream.extend(frame(OpCode::Text, true, None, &[2; 65_536]));
        for cut in 0..=stream.len().min(200) {
            let mut scanner = FrameScanner::new(Origin::Service, 1 << 20);
            let first = scanner.scan(&stream[..cut]);
            assert!(first.violation.is_none());
            // Only whole headers are forwarded: a cut inside a header keeps it back.
            let in_first_header = cut < 4;
            let in_second_header = (4 + 126..4 + 126 + 10).contains(&cut);
            let expected = if in_first_header { 0 } else if in_second_header { 4 + 126 } else { cut };
            assert_eq!(first.forward, expected, "cut {cut}");
            assert_eq!(scanner.at_frame_boundary(), in_first_header || in_second_header || cut == 4 + 126);
            let rest = scanner.scan(&stream[first.forward..]);
            assert_eq!(first.forward + rest.forward, stream.len());
            assert_eq!(scanner.messages(), 2);
        }
    }

    #[test]
    fn masking_rules_per_direction() {
        let unmasked = frame(OpCode::Text, true, None, b"hi");
        let masked = frame(OpCode::Text, true, Some([1, 2, 3, 4]), b"hi");
        let mut client = FrameScanner::new(Origin::Client, 100);
        assert_eq!(client.scan(&masked), Scan { forward: masked.len(), violation: None });
        assert_eq!(client.scan(&unmasked), Scan { forward: 0, violation: Some(Violation::Unmasked) });
        let mut service = FrameScanner::new(Origin::Service, 100);
        let mut both = unmasked.clone();
        both.extend(&masked);
        assert_eq!(service.scan(&both), Scan { forward: unmasked.len(), violation: Some(Violation::Masked) });
        let mut unchecked = FrameScanner::new(Origin::Unchecked, 100);
        assert_eq!(unchecked.scan(&both), Scan { forward: both.len(), violation: None });
    }

    #[test]
    fn too_large_is_judged_on_the_header_before_any_payload() {
        let mut scanner = FrameScanner::new(Origin::Service, 1000);
        let ok = frame(OpCode::Binary, true, None, &[0; 1000]);
        assert_eq!(scanner.scan(&ok).forward, ok.len());
        let big = frame(OpCode::Binary, true, None, &[0; 1001]);
        assert_eq!(scanner.scan(&big[..4]), Scan { forward: 0, violation: Some(Violation::TooLarge) });
    }

    #[test]
    fn bad_length_is_a_violation() {
        let mut scanner = FrameScanner::new(Origin::Service, u64::MAX);
        let scan = scanner.scan(&[0x82, 0x7F, 0xFF, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(scan, Scan { forward: 0, violation: Some(Violation::BadLength) });
    }

    #[test]
    fn rsv_bits_and_reserved_opcodes_pass_through() {
        let mut stream = frame(OpCode::Reserved(0x3), true, None, b"x");
        stream[0] |= 0x70;
        let mut scanner = FrameScanner::new(Origin::Service, 100);
        assert_eq!(scanner.scan(&stream).forward, stream.len());
    }
}
