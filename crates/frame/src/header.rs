//! One frame header: the 2 to 14 bytes in front of every frame's payload (RFC 6455 §5.2).

use std::fmt;

/// The longest possible frame header: 2 fixed bytes, 8 bytes of extended length, 4 of masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame's opcode (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// `0x0`: a further fragment of the current message.
    Continuation,
    /// `0x1`: the first frame of a text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: the close control frame.
    Close,
    /// `0x9`: ping.
    Ping,
    /// `0xA`: pong.
    Pong,
    /// Any opcode RFC 6455 reserves (`0x3`–`0x7`, `0xB`–`0xF`); a relay passes these on and lets the
    /// endpoint reject them, so that it never judges extensions it does not know.
    Reserved(u8),
}

impl OpCode {
    fn from_bits(bits: u8) -> OpCode {
        match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => OpCode::Reserved(other),
        }
    }

    /// Whether this is a control frame opcode (the high bit of the 4-bit opcode is set).
    pub fn is_control(self) -> bool {
        match self {
            OpCode::Close | OpCode::Ping | OpCode::Pong => true,
            OpCode::Reserved(bits) => bits & 0x8 != 0,
            OpCode::Continuation | OpCode::Text | OpCode::Binary => false,
        }
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this frame ends its message.
    pub fin: bool,
    /// The three RSV bits, in the low bits (RSV1 = `0b100`); permessage-deflate uses RSV1.
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every frame a client sends.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
    /// How many bytes the header itself takes on the wire (2 to 14).
    pub header_len: usize,
}

/// A header that cannot be a valid frame header whatever follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// A 64-bit payload length with its most significant bit set (RFC 6455 §5.2 forbids it).
    LengthOverflow,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::LengthOverflow => f.write_str("64-bit payload length has its top bit set"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl FrameHeader {
    /// Parses the header at the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header, so the caller keeps those bytes and
    /// tries again once more have arrived.
    ///
    /// # Errors
    ///
    /// [`HeaderError`] when the bytes can never form a valid header.
    pub fn parse(buf: &[u8]) -> Result<Option<FrameHeader>, HeaderError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let masked = b1 & 0x80 != 0;
        let (len_bytes, short_len) = match b1 & 0x7F {
            126 => (2, None),
            127 => (8, None),
            n => (0, Some(u64::from(n))),
        };
        let header_len = 2 + len_bytes + if masked { 4 } else { 0 };
        if buf.len() < header_len {
            return Ok(None);
        }
        let payload_len = match short_len {
            Some(n) => n,
            None => {
                let mut len = 0u64;
                for &byte in &buf[2..2 + len_bytes] {
                    len = (len << 8) | u64::from(byte);
                }
                if len >> 63 != 0 {
                    return Err(HeaderError::LengthOverflow);
                }
                len
            }
        };
        let mask = masked.then(|| {
            let at = 2 + len_bytes;
            [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]
        });
        Ok(Some(FrameHeader {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode: OpCode::from_bits(b0 & 0x0F),
            mask,
            payload_len,
            header_len,
        }))
    }

    /// Writes a header into `out` and returns its length.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        let opcode_bits = match self.opcode {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
            OpCode::Reserved(bits) => bits & 0x0F,
        };
        out[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | opcode_bits;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        if self.payload_len < 126 {
            out[1] = mask_bit | self.payload_len as u8;
        } else if let Ok(len) = u16::try_from(self.payload_len) {
            out[1] = mask_bit | 126;
            out[2..4].copy_from_slice(&len.to_be_bytes());
            at = 4;
        } else {
            out[1] = mask_bit | 127;
            out[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            at = 10;
        }
        if let Some(key) = self.mask {
            out[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        at
    }
}

/// Writes a control frame of the gateway's own (final, no RSV bits) into `out`: `opcode`, and a
/// payload made of `parts` one after the other, masked with `mask` when given (frames towards a
/// service). Returns its length.
///
/// # Panics
///
/// When `out` cannot hold the frame: callers size it for their largest payload.
pub fn encode_control(opcode: OpCode, parts: &[&[u8]], mask: Option<[u8; 4]>, out: &mut [u8]) -> usize {
    let payload_len: usize = parts.iter().map(|part| part.len()).sum();
    let header = FrameHeader { fin: true, rsv: 0, opcode, mask, payload_len: payload_len as u64, header_len: 0 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let at = header.encode(&mut head);
    out[..at].copy_from_slice(&head[..at]);
    let mut end = at;
    for part in parts {
        out[end..end + part.len()].copy_from_slice(part);
        end += part.len();
    }
    if let Some(key) = mask {
        for (i, byte) in out[at..end].iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(header: FrameHeader) {
        let mut out = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut out);
        assert_eq!(len, header.header_len);
        // Every strict prefix is incomplete, the whole header parses back to itself.
        for cut in 0..len {
            assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(FrameHeader::parse(&out[..len]), Ok(Some(header)));
    }

    #[test]
    fn lengths_of_7_16_and_64_bits_masked_and_unmasked() {
        for (payload_len, unmasked_len) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10), (1 << 40, 10)] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let header_len = unmasked_len + if mask.is_some() { 4 } else { 0 };
                roundtrip(FrameHeader {
                    fin: payload_len % 2 == 0,
                    rsv: 0b100,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len,
                    header_len,
                });
            }
        }
    }

    #[test]
    fn rfc_6455_examples() {
        // §5.7: a single-frame unmasked text message "Hello".
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let header = FrameHeader::parse(&unmasked).unwrap().unwrap();
        assert!(header.fin);
        assert_eq!(header.opcode, OpCode::Text);
        assert_eq!((header.payload_len, header.header_len, header.mask), (5, 2, None));
        // §5.7: the masked variant.
        let masked = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let header = FrameHeader::parse(&masked).unwrap().unwrap();
        assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(header.header_len, 6);
        // §5.7: 256 bytes binary in a single unmasked frame.
        let header = FrameHeader::parse(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((header.opcode, header.payload_len), (OpCode::Binary, 256));
    }

    #[test]
    fn reserved_opcodes_and_control_bit() {
        let header = FrameHeader::parse(&[0x8B, 0x00]).unwrap().unwrap();
        assert_eq!(header.opcode, OpCode::Reserved(0xB));
        assert!(header.opcode.is_control());
        assert!(!OpCode::Reserved(0x3).is_control());
        assert!(OpCode::Ping.is_control() && !OpCode::Continuation.is_control());
    }

    #[test]
    fn top_bit_of_64_bit_length_is_an_error() {
        let buf = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(FrameHeader::parse(&buf), Err(HeaderError::LengthOverflow));
    }
}
