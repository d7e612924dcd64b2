//! Sans-IO protocol core: handshake, frames, masking, messages and close.
//!
//! Nothing in this module touches a socket, a thread or a clock. It takes bytes and
//! returns events and bytes to send, in buffers its caller owns:
//!
//! - [`handshake`]: the HTTP upgrade, parsed in place with httparse, and its responses.
//! - [`frame`]: frame headers, parsed and encoded for both roles.
//! - [`mask`]: in-place payload masking.
//! - [`message`]: the message type and incremental UTF-8 validation.
//! - [`close`]: close codes and payloads.
//! - [`conn`]: the per-connection state machine that ties them together.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation and the per-message codec.

pub mod close;
pub mod conn;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
mod utf8;

pub use close::{CloseCode, CloseFrame, CloseState};
pub use conn::{Compressed, Connection, Decoded, Event, Limits, ProtocolError, SendError};
pub use frame::{FrameHeader, OpCode, Role};
pub use message::Message;
