//! Deterministic message content, different per session and per message.
//!
//! Each session owns a pattern of `size + STRIDE` pseudo-random bytes (xorshift, seeded by the
//! session index); message `k` is the `size`-byte window starting at `k % STRIDE`. A reply that
//! belongs to another session or another message therefore differs from the one expected. Text
//! payloads use printable ASCII only, so they are valid UTF-8.

use bytes::Bytes;

/// Number of distinct windows over a session's pattern.
pub const STRIDE: usize = 61;

/// The messages of one session.
pub struct Payloads {
    pattern: Bytes,
    size: usize,
}

impl Payloads {
    /// Builds the pattern of session `session` for messages of `size` bytes.
    pub fn new(session: u64, size: usize, text: bool) -> Self {
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ session.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut pattern = Vec::with_capacity(size + STRIDE);
        for _ in 0..size + STRIDE {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let byte = (state >> 24) as u8;
            pattern.push(if text { b' ' + byte % 95 } else { byte });
        }
        Self { pattern: Bytes::from(pattern), size }
    }

    /// The payload of message number `k` (no copy).
    pub fn message(&self, k: u64) -> Bytes {
        let start = (k % STRIDE as u64) as usize;
        self.pattern.slice(start..start + self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_distinct_and_printable() {
        let a = Payloads::new(1, 64, true);
        assert_eq!(a.message(3), Payloads::new(1, 64, true).message(3));
        assert_ne!(a.message(3), a.message(4));
        assert_ne!(a.message(3), Payloads::new(2, 64, true).message(3));
        assert_eq!(a.message(3), a.message(3 + STRIDE as u64));
        assert!(a.message(0).iter().all(|b| (b' '..=b'~').contains(b)));
        assert_eq!(Payloads::new(0, 0, false).message(7).len(), 0);
    }
}
