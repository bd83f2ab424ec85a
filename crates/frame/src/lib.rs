//! Sans-io WebSocket frame scanning for a relay (RFC 6455 §5).
//!
//! # Brief overview
//!
//! A relay forwards bytes; it does not need messages. This crate tells it where frames start and end
//! in a byte stream, without copying, allocating, reading a clock or doing any I/O:
//!
//! - [`FrameHeader`] parses one frame header from the front of a byte slice, or says more bytes are
//!   needed.
//! - [`FrameScanner`] follows one direction of a connection across reads. Given the bytes read so far
//!   it answers how many of them may be forwarded now: everything up to the first incomplete header
//!   (which stays with the caller until more bytes arrive) or up to the first frame that breaks the
//!   rules for that direction ([`Violation`]). On the way it counts messages and captures the payload of
//!   close frames ([`CloseFrame`]) so the caller can account for them.
//! - [`encode_close`] writes the close frame a relay sends when it ends a session itself.
//!
//! Payload bytes are never changed: a masked client frame stays masked, because the relay is itself the
//! client of the service and any masking key is valid there.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod close;
mod header;
mod scanner;

pub use close::{encode_close, CloseCode, CloseFrame, MAX_CLOSE_FRAME_LEN, MAX_REASON_LEN};
pub use header::{encode_control, FrameHeader, HeaderError, OpCode, MAX_HEADER_LEN};
pub use scanner::{FrameScanner, Origin, Scan, Violation};
