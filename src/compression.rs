//! permessage-deflate (RFC 7692) settings: the mode, the window, the level, the
//! threshold under which messages go uncompressed, and the per-message choice.
//!
//! | mode | compressor | idle connection pays | suits |
//! |---|---|---|---|
//! | [`Compression::Off`] (default) | none | 0 B | binary protocols, LAN, lowest CPU |
//! | [`Compression::Shared`] | one per reactor and window, reset after every message | 0 B | large messages (≥ 1 KiB) of text |
//! | [`Compression::Dedicated`] | one per connection, keeps its context, freed when the connection has been quiet | 0 B once quiet; 380 KB while sending (window 15; 251 KB at window 9) | streams of small, similar messages (JSON feeds) |
//!
//! The mode decides how a message sent from a callback (`Socket::send`) is
//! compressed. A publish, a broadcast or a `Sender` send is encoded and compressed
//! once for every connection that gets it, so in both modes it is compressed alone,
//! without any connection's context, at level 6 or the configured level if higher
//! (paid once per message, not per delivery), and sent uncompressed if it does not
//! shrink. On small JSON that saves 0 to 27 % where a dedicated compressor's
//! context saves 65 to 75 % (README, "Compression"; `cargo bench -p
//! wsreactor-benches --bench compression_ratio`): `dedicated` pays for streams sent
//! from callbacks, not for topics of small messages.
//!
//! In both modes the server asks the client for `client_no_context_takeover` unless
//! [`Deflate::client_context_takeover`] is set, so that one decompressor per
//! reactor reads every connection: an idle connection then holds nothing for
//! compression in either direction.

use std::time::Duration;

use crate::proto::deflate::{MAX_WINDOW_BITS, MIN_WINDOW_BITS, ServerDeflate};

/// Whether and how the server negotiates permessage-deflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Offers are declined; the connection is upgraded without the extension. The
    /// default, as in uWebSockets and gorilla: compression costs CPU on every
    /// message and pays only for text that compresses, so it is the user's choice.
    #[default]
    Off,
    /// One compressor and one decompressor per reactor (per window size asked for,
    /// created when first needed), reset after every message. The server answers
    /// `server_no_context_takeover; client_no_context_takeover`. No memory per
    /// connection; ratios are those of each message alone.
    Shared(Deflate),
    /// A compressor per connection that keeps its context between messages (far
    /// better ratios on small, similar messages), allocated on the first compressed
    /// send and released after [`Deflate::release_after`] without one; the next
    /// message then starts without history, which RFC 7692 allows.
    Dedicated(Deflate),
}

impl Compression {
    /// [`Compression::Shared`] with the default settings.
    #[must_use]
    pub fn shared() -> Compression {
        Compression::Shared(Deflate::default())
    }

    /// [`Compression::Dedicated`] with the default settings, but a threshold of 64
    /// bytes: with its context a compressor shrinks even 64-byte JSON messages to a
    /// third (docs/BENCHMARKS.md, "Choosing the deflate crate").
    #[must_use]
    pub fn dedicated() -> Compression {
        Compression::Dedicated(Deflate::default().with_threshold(64))
    }

    /// The settings, unless compression is off.
    #[must_use]
    pub fn settings(&self) -> Option<&Deflate> {
        match self {
            Compression::Off => None,
            Compression::Shared(d) | Compression::Dedicated(d) => Some(d),
        }
    }

    /// What the server accepts in the negotiation.
    pub(crate) fn server(&self) -> Option<ServerDeflate> {
        let (d, dedicated) = match self {
            Compression::Off => return None,
            Compression::Shared(d) => (d, false),
            Compression::Dedicated(d) => (d, true),
        };
        Some(ServerDeflate {
            server_context_takeover: dedicated,
            server_max_window_bits: if dedicated {
                d.window_bits
            } else {
                MAX_WINDOW_BITS
            },
            client_context_takeover: d.client_context_takeover,
            client_max_window_bits: d.client_max_window_bits,
        })
    }
}

/// The settings of a compression mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deflate {
    /// zlib's level, 1 (fastest) to 9 (smallest). Default 1: on JSON-like messages
    /// with context it compresses 64-byte messages 13 times faster than level 2, to
    /// 36% against 34%; without context, 1 KiB messages 2.5 times faster, to 48%
    /// against 38% (docs/BENCHMARKS.md, "Choosing the deflate crate"). A server's
    /// CPU is what it runs out of first.
    pub level: u32,
    /// The server's compression window in dedicated mode, 9–15 (shared mode always
    /// uses the largest window the client allows). Default 15 (32 KiB of history).
    pub window_bits: u8,
    /// Messages shorter than this are sent uncompressed by
    /// [`Socket::send`](crate::Socket::send) and by broadcasts; use
    /// [`Socket::send_with`](crate::Socket::send_with) to decide per message.
    /// Default 160 bytes: without context, level 1 saves 10% or more on JSON-like
    /// messages from about 150 bytes, and nothing below 112 (docs/BENCHMARKS.md,
    /// "Choosing the deflate crate"). [`Compression::dedicated`] sets 64.
    pub threshold: usize,
    /// Dedicated mode: a connection's compressor is released when it has sent no
    /// compressed message for this long (between one and two times it). Default
    /// 10 s: a feed that sends every second keeps its compressor; a connection that
    /// went quiet gives back its 380 KB (window 15).
    pub release_after: Duration,
    /// Let clients keep their compression context between messages. Default
    /// `false`: the server answers `client_no_context_takeover`, so one
    /// decompressor per reactor serves every connection. `true` keeps a
    /// decompressor (and its window of 2^[`client_max_window_bits`](Self::client_max_window_bits))
    /// per connection for its whole life.
    pub client_context_takeover: bool,
    /// With [`client_context_takeover`](Self::client_context_takeover): the window
    /// the server asks clients to compress with, 9–15, when they offer
    /// `client_max_window_bits` (browsers do). Default 15.
    pub client_max_window_bits: u8,
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate {
            level: 1,
            window_bits: MAX_WINDOW_BITS,
            threshold: 160,
            release_after: Duration::from_secs(10),
            client_context_takeover: false,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl Deflate {
    /// Sets the level (clamped to 1–9).
    #[must_use]
    pub fn with_level(mut self, level: u32) -> Self {
        self.level = level.clamp(1, 9);
        self
    }

    /// Sets the dedicated compressor's window (clamped to 9–15).
    #[must_use]
    pub fn with_window_bits(mut self, bits: u8) -> Self {
        self.window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// Sets the size under which messages go uncompressed.
    #[must_use]
    pub fn with_threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets how long a quiet connection keeps its dedicated compressor.
    #[must_use]
    pub fn with_release_after(mut self, quiet: Duration) -> Self {
        self.release_after = quiet;
        self
    }

    /// Lets clients keep their context, asking them for a window of `bits` (9–15).
    #[must_use]
    pub fn with_client_context_takeover(mut self, bits: u8) -> Self {
        self.client_context_takeover = true;
        self.client_max_window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }
}

/// Whether one message is compressed, on a connection that negotiated
/// permessage-deflate (elsewhere every message goes uncompressed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compress {
    /// Compress when the message is at least [`Deflate::threshold`] long.
    #[default]
    Auto,
    /// Compress, whatever the size.
    Always,
    /// Send uncompressed (already compressed data: images, archives).
    Never,
}
