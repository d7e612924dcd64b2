//! permessage-deflate (RFC 7692): negotiation and the per-message codec, sans-IO.
//!
//! - [`ServerDeflate::negotiate`] picks the first offer of a request that the server
//!   can honour and writes the response value; [`ClientDeflate`] writes an offer and
//!   checks the server's answer.
//! - [`PerMessageDeflate`] is what both ends agreed on: it tells each side which
//!   window and which context rule its compressor and decompressor follow. A
//!   [`Connection`](crate::proto::Connection) told of it
//!   ([`Connection::set_deflate`](crate::proto::Connection::set_deflate)) accepts RSV1
//!   on the first frame of a data message and reports such a message as
//!   [`Event::Compressed`](crate::proto::Event::Compressed).
//! - [`Deflater`] compresses one message into a frame payload (sync flush, the
//!   trailing `00 00 ff ff` removed); [`Inflater`] inflates one, checking the size
//!   limit and, for text, UTF-8 while it inflates.
//!
//! The compressor objects are the caller's: one per reactor, reset after every
//! message, or one per connection that keeps its context. proto only says which.

mod codec;
mod negotiate;

pub use codec::{Deflater, InflateError, Inflater};
pub use negotiate::{
    ClientDeflate, EXTENSION_NAME, MAX_RESPONSE_LEN, Offer, Response, ServerDeflate,
};

use super::frame::Role;

/// The smallest window zlib compresses with. A peer that asks for 8 gets 8 in the
/// answer, and a compressor of 9 that forgets its context after every message (see
/// [`PerMessageDeflate::compressor`]).
pub const MIN_WINDOW_BITS: u8 = 9;
/// The largest window (32 KiB), and the default.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The parameters in force on a connection, from the negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerMessageDeflate {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (8–15).
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window (8–15).
    pub client_max_window_bits: u8,
}

/// How one direction's compressor (and the peer's decompressor) work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Direction {
    /// The window, in bits (9–15).
    pub window_bits: u8,
    /// Whether the context is kept between messages.
    pub context_takeover: bool,
}

impl PerMessageDeflate {
    fn direction(no_takeover: bool, bits: u8) -> Direction {
        Direction {
            window_bits: bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS),
            // A compressor of 9 stands in for 8 only without context.
            context_takeover: !no_takeover && bits >= MIN_WINDOW_BITS,
        }
    }

    /// Our compressor, in `role`.
    #[must_use]
    pub fn compressor(&self, role: Role) -> Direction {
        match role {
            Role::Server => {
                Self::direction(self.server_no_context_takeover, self.server_max_window_bits)
            }
            Role::Client => {
                Self::direction(self.client_no_context_takeover, self.client_max_window_bits)
            }
        }
    }

    /// Our decompressor, in `role`: the peer's compressor's rules. A window of 8
    /// is inflated with 9 (a larger window reads any smaller one's stream).
    #[must_use]
    pub fn decompressor(&self, role: Role) -> Direction {
        let (no_takeover, bits) = match role {
            Role::Server => (self.client_no_context_takeover, self.client_max_window_bits),
            Role::Client => (self.server_no_context_takeover, self.server_max_window_bits),
        };
        Direction {
            window_bits: bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS),
            context_takeover: !no_takeover,
        }
    }
}

#[cfg(test)]
mod tests;
