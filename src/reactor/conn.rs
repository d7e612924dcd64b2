//! One connection's slot in the reactor's slab, and its output queue.
//!
//! The slot is the whole memory of an idle connection in user space: the socket,
//! the protocol state, the user's session, a deadline and two optional indices (a
//! read buffer while a message is partly received, an output queue while the kernel
//! does not take everything). A unit test in `output.rs` pins its size.

use mio::net::TcpStream;

use super::timer::Stamp;
use crate::proto::Connection;

/// "No buffer" / "no queue" for the index fields.
pub(crate) const NONE: u32 = u32::MAX;

/// Which connection of a slot's life: counted per reactor from 1 and never reused
/// (64 bits: at a million accepts a second, half a million years), so that an id or
/// a staged byte of a closed connection never matches the one that took its slot.
/// Where 32 bits are kept (the poll's token, the timer wheel's entries), they only
/// pick out a stale event or entry, and a match by chance costs nothing: the
/// connection's own state is checked before anything is done.
pub(crate) type Generation = u64;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reading the HTTP upgrade request.
    Handshake,
    /// WebSocket open.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Nothing more to read: flush what is queued, shut down our side, wait for the
    /// peer's FIN (so the last bytes are not lost to a reset), then drop.
    Draining,
}

/// Flags in [`Conn::flags`].
pub(crate) mod flag {
    /// `on_open` was called, so `on_close` must be.
    pub(crate) const OPENED: u16 = 1;
    /// The idle timer sent a ping that has not been answered by any input yet.
    pub(crate) const PINGED: u16 = 2;
    /// Our side of the TCP connection is shut down.
    pub(crate) const WRITE_SHUT: u16 = 4;
    /// The connection's output queue had to wait for the kernel: call `on_drain`
    /// when it empties.
    pub(crate) const WANTS_DRAIN: u16 = 8;
    /// Reading stopped because the replies the peer does not read passed the
    /// backpressure limit: resume when the queue is back under it.
    pub(crate) const READ_PAUSED: u16 = 16;
    /// A readiness event reported the peer's FIN or an error: read until the end
    /// is seen, a short read notwithstanding.
    pub(crate) const PEER_CLOSED: u16 = 32;
    /// The output queue has stopped draining: the deadline is the write timeout's,
    /// and input does not push it back.
    pub(crate) const WRITE_WAIT: u16 = 64;
    /// Published messages wait in the queue for the end of the loop turn.
    pub(crate) const BATCHED: u16 = 128;
    /// The peer's decompressor took in a frame that this connection's own
    /// compressor did not make (a shared frame), or one of its compressed
    /// messages was refused: reset the compressor before its next message.
    pub(crate) const DEFLATE_RESET: u16 = 256;
    /// A wss connection: its bytes pass through its TLS session (`tls.rs`).
    pub(crate) const TLS: u16 = 512;
    /// The held input holds whole frames not processed yet: reading stopped after
    /// the turn's inflate budget was spent. Processed before anything is read.
    pub(crate) const UNPROCESSED: u16 = 1024;
    /// The handler answers the upgrade later (`Upgrade::later`): the request is
    /// held, nothing more is read until the answer comes.
    pub(crate) const DEFERRED: u16 = 2048;
}

/// A connection slot.
pub(crate) struct Conn<S> {
    pub(crate) stream: TcpStream,
    pub(crate) proto: Connection,
    /// The user's state; `None` until the upgrade is accepted, and after `on_close`.
    pub(crate) session: Option<S>,
    pub(crate) generation: Generation,
    /// When the current timeout fires (0: none).
    pub(crate) deadline: Stamp,
    /// The tick of this connection's live entry in the timer wheel (0: none).
    pub(crate) timer_at: Stamp,
    /// Index of the read buffer holding a partial message, or [`NONE`].
    pub(crate) input: u32,
    /// Index of the output queue, or [`NONE`].
    pub(crate) output: u32,
    /// Index of the connection's pub/sub subscriptions, or [`NONE`].
    pub(crate) subs: u32,
    /// The close code to report to `on_close`.
    pub(crate) close_code: u16,
    pub(crate) phase: Phase,
    pub(crate) flags: u16,
}

impl<S> Conn<S> {
    pub(crate) fn new(stream: TcpStream, generation: Generation) -> Conn<S> {
        Conn {
            stream,
            proto: Connection::server(),
            session: None,
            generation,
            deadline: 0,
            timer_at: 0,
            input: NONE,
            output: NONE,
            subs: NONE,
            close_code: 1006,
            phase: Phase::Handshake,
            flags: 0,
        }
    }

    pub(crate) fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u16) {
        self.flags |= f;
    }

    pub(crate) fn clear(&mut self, f: u16) {
        self.flags &= !f;
    }
}
