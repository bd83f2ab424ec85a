//! Close frames: the status code and reason that end a session (RFC 6455 §5.5.1, §7.4).

use crate::header::{encode_control, OpCode};

/// The longest reason that fits a close frame: 125 payload bytes less the 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// The longest close frame on the wire: a 6-byte masked header and a 125-byte payload.
pub const MAX_CLOSE_FRAME_LEN: usize = 6 + 125;

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the session is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: an endpoint is going away.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: data the endpoint cannot accept (the Zowe gateway also uses it for routing failures).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1008: a message or a request that violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: an unexpected condition on the server.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting or unavailable.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: the server is overloaded; try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
}

/// What a close frame carried, captured while it passed through: its code and the length of its
/// reason. The reason itself is not kept, so following a session costs a few bytes, not 125.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseFrame {
    code: [u8; 2],
    payload_len: u64,
}

impl CloseFrame {
    pub(crate) const EMPTY: CloseFrame = CloseFrame { code: [0; 2], payload_len: 0 };

    pub(crate) fn push(&mut self, byte: u8) {
        if let Some(slot) = usize::try_from(self.payload_len).ok().and_then(|at| self.code.get_mut(at)) {
            *slot = byte;
        }
        self.payload_len += 1;
    }

    /// The status code, or `None` for a close frame without one (seen by the peer as 1005).
    pub fn code(&self) -> Option<CloseCode> {
        (self.payload_len >= 2).then(|| CloseCode(u16::from_be_bytes(self.code)))
    }

    /// The length of the reason in bytes.
    pub fn reason_len(&self) -> u64 {
        self.payload_len.saturating_sub(2)
    }
}

/// Writes a close frame with `code` and `reason` into `out` and returns its length.
///
/// The reason is cut to [`MAX_REASON_LEN`] bytes on a UTF-8 character boundary. With `mask` the frame
/// is masked, as frames towards a service must be.
pub fn encode_close(code: CloseCode, reason: &str, mask: Option<[u8; 4]>, out: &mut [u8; MAX_CLOSE_FRAME_LEN]) -> usize {
    let mut cut = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    encode_control(OpCode::Close, &[&code.0.to_be_bytes(), &reason.as_bytes()[..cut]], mask, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameScanner, Origin};

    fn decode(frame: &[u8], origin: Origin) -> CloseFrame {
        let mut scanner = FrameScanner::new(origin, u64::MAX);
        let scan = scanner.scan(frame);
        assert_eq!(scan.forward, frame.len());
        scanner.take_close().expect("a close frame")
    }

    #[test]
    fn unmasked_and_masked_close_frames_decode_to_what_was_encoded() {
        let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
        let len = encode_close(CloseCode(4001), "custom reason", None, &mut out);
        assert_eq!(&out[..4], &[0x88, 15, 0x0F, 0xA1]);
        assert_eq!(&out[4..len], b"custom reason");
        let close = decode(&out[..len], Origin::Service);
        assert_eq!((close.code(), close.reason_len()), (Some(CloseCode(4001)), 13));

        let len = encode_close(CloseCode::GOING_AWAY, "bye", Some([9, 8, 7, 6]), &mut out);
        assert_eq!(len, 6 + 5);
        let unmasked: Vec<u8> = out[6..len].iter().enumerate().map(|(i, b)| b ^ [9, 8, 7, 6][i % 4]).collect();
        assert_eq!(unmasked, b"\x03\xe9bye");
        let close = decode(&out[..len], Origin::Client);
        assert_eq!((close.code(), close.reason_len()), (Some(CloseCode::GOING_AWAY), 3));
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
        // 'é' is two bytes: 62 of them are 124 bytes, so the cut must fall back to 122.
        let reason = "é".repeat(62);
        let len = encode_close(CloseCode::INTERNAL_ERROR, &reason, None, &mut out);
        assert_eq!(decode(&out[..len], Origin::Service).reason_len(), 122);
        assert!(std::str::from_utf8(&out[4..len]).is_ok());
        let len = encode_close(CloseCode::INTERNAL_ERROR, &"x".repeat(300), None, &mut out);
        assert_eq!(len, 2 + 125);
    }

    #[test]
    fn close_without_code() {
        let close = decode(&[0x88, 0x00], Origin::Service);
        assert_eq!((close.code(), close.reason_len()), (None, 0));
    }
}
