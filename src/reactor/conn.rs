//! One connection's slot in the reactor's slab, and its output queue.
//!
//! The slot is the whole memory of an idle connection in user space: the socket,
//! the protocol state, the user's session, a deadline and two optional indices (a
//! read buffer while a message is partly received, an output queue while the kernel
//! does not take everything). A unit test pins its size.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};
use mio::net::TcpStream;

use super::timer::Tick;
use crate::proto::Connection;

/// "No buffer" / "no queue" for the index fields.
pub(crate) const NONE: u32 = u32::MAX;

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
    pub(crate) const OPENED: u8 = 1;
    /// The idle timer sent a ping that has not been answered by any input yet.
    pub(crate) const PINGED: u8 = 2;
    /// Our side of the TCP connection is shut down.
    pub(crate) const WRITE_SHUT: u8 = 4;
    /// The connection's output queue had to wait for the kernel: call `on_drain`
    /// when it empties.
    pub(crate) const WANTS_DRAIN: u8 = 8;
    /// Reading stopped because the replies the peer does not read passed the
    /// backpressure limit: resume when the queue is back under it.
    pub(crate) const READ_PAUSED: u8 = 16;
    /// A readiness event reported the peer's FIN or an error: read until the end
    /// is seen, a short read notwithstanding.
    pub(crate) const PEER_CLOSED: u8 = 32;
}

/// A connection slot.
pub(crate) struct Conn<S> {
    pub(crate) stream: TcpStream,
    pub(crate) proto: Connection,
    /// The user's state; `None` until the upgrade is accepted, and after `on_close`.
    pub(crate) session: Option<S>,
    pub(crate) generation: u32,
    /// When the current timeout fires (0: none).
    pub(crate) deadline: Tick,
    /// The tick of this connection's live entry in the timer wheel (0: none).
    pub(crate) timer_at: Tick,
    /// Index of the read buffer holding a partial message, or [`NONE`].
    pub(crate) input: u32,
    /// Index of the output queue, or [`NONE`].
    pub(crate) output: u32,
    /// The close code to report to `on_close`.
    pub(crate) close_code: u16,
    pub(crate) phase: Phase,
    pub(crate) flags: u8,
}

impl<S> Conn<S> {
    pub(crate) fn new(stream: TcpStream, generation: u32) -> Conn<S> {
        Conn {
            stream,
            proto: Connection::server(),
            session: None,
            generation,
            deadline: 0,
            timer_at: 0,
            input: NONE,
            output: NONE,
            close_code: 1006,
            phase: Phase::Handshake,
            flags: 0,
        }
    }

    pub(crate) fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    pub(crate) fn set(&mut self, f: u8) {
        self.flags |= f;
    }

    pub(crate) fn clear(&mut self, f: u8) {
        self.flags &= !f;
    }
}

/// Bytes the kernel has not taken yet, as shared segments (a broadcast frame is one
/// `Bytes` shared by every queue it is in).
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    segments: VecDeque<Bytes>,
    len: usize,
}

/// The most segments handed to one `writev`.
const MAX_IOVECS: usize = 64;

impl OutQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.segments.push_back(bytes);
        }
    }

    /// Writes as much as the kernel takes, with vectored writes. Returns `Ok(true)`
    /// when the queue is empty afterwards.
    pub(crate) fn flush(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        while !self.segments.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, seg) in slices.iter_mut().zip(self.segments.iter()) {
                *slot = IoSlice::new(seg);
                count += 1;
            }
            match stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.segments.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// Writes `bufs` once (vectored), retrying on EINTR. Returns how much was taken;
/// `WouldBlock` counts as zero.
pub(crate) fn write_once(stream: &mut TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        // One buffer (the usual cork) goes through write(2): writev(2) costs more in
        // the kernel for the same bytes.
        let result = match bufs {
            [one] => stream.write(one),
            _ => stream.write_vectored(bufs),
        };
        match result {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `slab`'s private entry type, to measure a slot as the slab stores it.
    #[allow(dead_code)]
    enum SlabEntry<T> {
        Vacant(usize),
        Occupied(T),
    }

    #[test]
    fn an_idle_connection_slot_is_small() {
        let conn = std::mem::size_of::<Conn<()>>();
        let slot = std::mem::size_of::<SlabEntry<Conn<()>>>();
        let proto = std::mem::size_of::<Connection>();
        println!("slab slot for the echo handler: {slot} bytes (Conn {conn}, proto {proto})");
        assert!(slot <= 128, "slot is {slot} bytes");
    }

    #[test]
    fn consume_walks_across_segments() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"defg"));
        assert_eq!(q.len(), 7);
        q.consume(4);
        assert_eq!(q.len(), 3);
        assert_eq!(q.segments.len(), 1);
        assert_eq!(&q.segments[0][..], b"efg");
        q.consume(3);
        assert!(q.len() == 0 && q.segments.is_empty());
    }
}
