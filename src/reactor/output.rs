//! The write path: cork, direct write, queue the rest, backpressure.
//!
//! Sends to a connection are staged in the reactor's one cork buffer and leave in a
//! single write when that connection's turn ends (an echo costs one read and one
//! write). The cork is lent to one connection at a time and knows which: every byte
//! in it was staged for [`Cork::owner`], only that connection's socket or queue ever
//! receives them, and a connection that stages bytes while the cork holds another's
//! displaces them into [`Output::strays`], tagged with their owner, for the reactor
//! to deliver. So a path that forgets to flush can delay bytes, never misdeliver
//! them. Only the bytes the kernel does not take are copied into the connection's
//! [`OutQueue`], as `Bytes`; frames shared by many connections (broadcasts) are
//! queued as clones, never copied.

use std::io::{self, IoSlice};

use bytes::Bytes;

use super::conn::{Conn, Generation, NONE, Phase, flag};
use super::deflate::Compressors;
use super::queue::{OutQueue, Queues, write_once};
use super::tls::Sessions;
use crate::compression::Compress;
use crate::config::BackpressurePolicy;
use crate::handler::ConnId;
use crate::proto::frame::{FrameHeader, OpCode, RSV1, Role};
use crate::proto::{CloseCode, CloseState, Message};
use crate::stats::LocalStats;
use crate::status::SendStatus;

/// Payloads at least this large skip the cork: they go out at once with the corked
/// bytes in one vectored write, so they are not copied unless the kernel refuses
/// part of them.
const DIRECT_WRITE: usize = 16 * 1024;

/// The cork is written out when it reaches this size, even in the middle of a
/// callback or of a read full of pings; it is shrunk back to it after a turn that
/// grew it (one staged item can pass it by at most a frame under `DIRECT_WRITE` or
/// a handshake response).
pub(crate) const CORK_LIMIT: usize = 64 * 1024;

/// A connection's identity inside its reactor: slab key and generation. Staged bytes
/// carry it, so they cannot reach the connection that reuses the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) key: u32,
    pub(crate) generation: Generation,
}

impl Owner {
    pub(crate) fn of<S>(key: usize, conn: &Conn<S>) -> Owner {
        Owner {
            key: key as u32,
            generation: conn.generation,
        }
    }
}

impl From<ConnId> for Owner {
    fn from(id: ConnId) -> Owner {
        Owner {
            key: id.slot,
            generation: id.generation,
        }
    }
}

/// What a flush left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything went to the kernel.
    All,
    /// Some bytes wait in the queue for a writable event.
    Partly,
}

/// The reactor's staging buffer, lent to one connection at a time.
struct Cork {
    bytes: Vec<u8>,
    /// Whose bytes these are (meaningful while `bytes` is not empty).
    owner: Owner,
}

/// A payload to write after the cork: borrowed (copied only if the kernel refuses
/// it) or shared (queued by reference).
#[derive(Clone, Copy)]
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Shared(&'a Bytes),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Shared(b) => b,
        }
    }
}

/// The reactor's write state: every connection's queue, and the cork.
pub(crate) struct Output {
    queues: Queues,
    cork: Cork,
    /// Bytes staged for a connection and displaced from the cork before its turn
    /// wrote them, with their owner, waiting for the reactor to deliver them.
    strays: Vec<(Owner, Bytes)>,
    max_backpressure: usize,
    policy: BackpressurePolicy,
    /// permessage-deflate's compressors (`None` when compression is off).
    pub(crate) deflate: Option<Box<Compressors>>,
    /// The TLS sessions of wss connections, which their bytes are written through.
    pub(crate) tls: Sessions,
    /// Connections whose work panicked where the reactor could not close them at
    /// once (a delivery inside a publish): closed with 1011 when the turn settles.
    pub(crate) faulted: Vec<Owner>,
    /// Subscribers of a topic with history that a delivery was dropped for: they
    /// would have a gap, so they are closed with 1013 when the turn settles, to
    /// resume from their last offset.
    pub(crate) lagged: Vec<Owner>,
    pub(crate) stats: LocalStats,
}

impl Output {
    pub(crate) fn new(max_backpressure: usize, policy: BackpressurePolicy) -> Output {
        Output {
            queues: Queues::default(),
            cork: Cork {
                bytes: Vec::with_capacity(CORK_LIMIT),
                owner: Owner {
                    key: u32::MAX,
                    generation: 0,
                },
            },
            strays: Vec::new(),
            max_backpressure,
            policy,
            deflate: None,
            tls: Sessions::default(),
            faulted: Vec::new(),
            lagged: Vec::new(),
            stats: LocalStats::default(),
        }
    }

    /// The cork, lent to `owner`. Bytes another connection left in it are moved to
    /// the strays first, with their owner.
    #[inline]
    pub(crate) fn cork(&mut self, owner: Owner) -> &mut Vec<u8> {
        if self.cork.owner != owner {
            if !self.cork.bytes.is_empty() {
                self.displace();
            }
            self.cork.owner = owner;
        }
        &mut self.cork.bytes
    }

    /// Moves the cork's bytes to the strays, with their owner.
    #[cold]
    fn displace(&mut self) {
        let displaced = Bytes::copy_from_slice(&self.cork.bytes);
        self.strays.push((self.cork.owner, displaced));
        self.cork.bytes.clear();
    }

    /// Bytes corked for `owner`.
    #[inline]
    fn corked(&self, owner: Owner) -> usize {
        if self.cork.owner == owner {
            self.cork.bytes.len()
        } else {
            0
        }
    }

    /// The connection the cork holds bytes for, if it holds any.
    pub(crate) fn cork_owner(&self) -> Option<Owner> {
        (!self.cork.bytes.is_empty()).then_some(self.cork.owner)
    }

    /// Takes the displaced bytes, for the reactor to deliver to their owners.
    pub(crate) fn take_strays(&mut self) -> Vec<(Owner, Bytes)> {
        std::mem::take(&mut self.strays)
    }

    pub(crate) fn has_strays(&self) -> bool {
        !self.strays.is_empty()
    }

    /// Bytes sent to `conn` that the kernel has not taken (queued and corked).
    pub(crate) fn buffered<S>(&self, owner: Owner, conn: &Conn<S>) -> usize {
        self.queued(conn) + self.corked(owner)
    }

    pub(crate) fn queued<S>(&self, conn: &Conn<S>) -> usize {
        self.queues
            .get(conn.output as usize)
            .map_or(0, OutQueue::len)
    }

    /// Whether a frame of `len` more bytes fits under the backpressure limit. A
    /// frame of any size is accepted when nothing is buffered, or it could never be
    /// sent. Under `Pause` a frame from the connection's own callbacks (`own`) is
    /// always accepted: the reader pauses instead. Under `DropOldest` the oldest
    /// whole messages queued are dropped to make room, if that is enough.
    fn admits<S>(&mut self, owner: Owner, conn: &Conn<S>, len: usize, own: bool) -> bool {
        let buffered = self.buffered(owner, conn);
        if buffered == 0 || buffered + len <= self.max_backpressure {
            return true;
        }
        match self.policy {
            BackpressurePolicy::Pause => return own,
            BackpressurePolicy::DropOldest => {}
            BackpressurePolicy::Drop | BackpressurePolicy::Close => return false,
        }
        let need = buffered + len - self.max_backpressure;
        match self.queues.get_mut(conn.output as usize) {
            Some(queue) if queue.droppable() >= need => {
                self.stats.dropped += queue.drop_oldest(need) as u64;
                true
            }
            _ => false,
        }
    }

    /// Whether a queued copy of this frame may be dropped under `DropOldest`: one
    /// whole text or binary message (FIN set; RSV bits aside), but never a
    /// compressed one on a connection whose compressor keeps its context: the
    /// messages compressed after it may refer to it, and the peer could not inflate
    /// them without it.
    fn is_droppable<S>(&self, conn: &Conn<S>, frame: &[u8]) -> bool {
        let keeps_context = conn
            .proto
            .deflate()
            .is_some_and(|d| d.compressor(Role::Server).context_takeover);
        self.policy == BackpressurePolicy::DropOldest
            && frame.first().is_some_and(|&b| {
                (b & 0x8f == 0x81 || b & 0x8f == 0x82) && !(keeps_context && b & 0x40 != 0)
            })
    }

    /// Applies the policy to a send that did not fit.
    fn refuse<S>(&mut self, owner: Owner, conn: &mut Conn<S>) -> SendStatus {
        self.stats.dropped += 1;
        if self.policy == BackpressurePolicy::Close {
            self.close(
                owner,
                conn,
                CloseCode::POLICY_VIOLATION,
                "backpressure limit",
            );
        }
        SendStatus::Dropped
    }

    /// `Backpressure` when the frame waits behind a queue (then `on_drain` follows
    /// when it empties), `Sent` otherwise.
    fn status<S>(conn: &mut Conn<S>) -> SendStatus {
        if conn.output == NONE {
            SendStatus::Sent
        } else {
            conn.set(flag::WANTS_DRAIN);
            SendStatus::Backpressure
        }
    }

    /// Sends a message to `conn`, compressed if it negotiated permessage-deflate
    /// and `compress` says so.
    pub(crate) fn send_message<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        message: Message<'_>,
        compress: Compress,
    ) -> SendStatus {
        let opcode = if message.is_text() {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let payload = message.as_bytes();
        if let (Some(params), Some(deflate)) = (conn.proto.deflate(), self.deflate.as_mut())
            && deflate.wants(payload.len(), compress)
            && conn.proto.can_send()
        {
            let reset = conn.has(flag::DEFLATE_RESET);
            conn.clear(flag::DEFLATE_RESET);
            let mut buf = std::mem::take(&mut deflate.buf);
            buf.clear();
            if deflate.compress(owner, params, reset, payload, &mut buf) {
                let status = self.send_frame(owner, conn, opcode, RSV1, &buf);
                if let Some(deflate) = self.deflate.as_mut() {
                    deflate.restore(buf);
                    self.stats.compressors = deflate.own_count();
                }
                self.stats.compressed_out += 1;
                if !matches!(status, SendStatus::Sent | SendStatus::Backpressure) {
                    // The compressor's context holds a message the peer will never
                    // see: start the next one without it.
                    conn.set(flag::DEFLATE_RESET);
                }
                return status;
            }
            deflate.restore(buf);
        }
        self.send(owner, conn, opcode, payload)
    }

    /// Sends one frame to `conn`, from its own callbacks (or the reactor's own
    /// ping): lossless under `Pause`.
    pub(crate) fn send<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        opcode: OpCode,
        payload: &[u8],
    ) -> SendStatus {
        self.send_frame(owner, conn, opcode, 0, payload)
    }

    /// Sends one frame with the RSV bits `rsv` to `conn`.
    fn send_frame<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        opcode: OpCode,
        rsv: u8,
        payload: &[u8],
    ) -> SendStatus {
        if !conn.proto.can_send() {
            return SendStatus::Closed;
        }
        let mut header = FrameHeader::outgoing(opcode, true, payload.len(), None);
        header.rsv = rsv;
        let header = header.encode();
        let header = header.as_bytes();
        if !self.admits(owner, conn, header.len() + payload.len(), true) {
            return self.refuse(owner, conn);
        }
        if !opcode.is_control() {
            self.stats.messages_out += 1;
            self.stats.bytes_out += payload.len() as u64;
        }
        if payload.len() >= DIRECT_WRITE || conn.output != NONE {
            // Large, or behind a queue: one vectored write (or one copy into the
            // queue), never a copy into the cork first.
            // A frame from the connection's own compressor (RSV1) may be context for
            // the messages after it: only frames without it may be dropped later.
            self.write_through(owner, conn, header, Payload::Borrowed(payload), rsv == 0);
        } else {
            let cork = self.cork(owner);
            cork.extend_from_slice(header);
            cork.extend_from_slice(payload);
            if cork.len() >= CORK_LIMIT {
                // A callback sending a lot: write now rather than grow the cork, so
                // the status tells the truth. A write error is seen by the next
                // read, which closes the connection.
                let _ = self.flush_cork(owner, conn);
            }
        }
        Self::status(conn)
    }

    /// Sends an encoded frame shared with other connections (a broadcast, or a
    /// frame from another thread): queued by reference, never copied.
    pub(crate) fn send_shared<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        frame: &Bytes,
    ) -> SendStatus {
        let frame = &self.shared_form(conn, frame);
        if let Err(status) = self.admit_shared(owner, conn, frame) {
            return status;
        }
        self.write_through(owner, conn, &[], Payload::Shared(frame), true);
        Self::status(conn)
    }

    /// The form of a shared frame that `conn` gets: compressed (once per turn and
    /// window, without context) if it negotiated permessage-deflate and the frame
    /// is long enough, else the frame itself.
    fn shared_form<S>(&mut self, conn: &mut Conn<S>, frame: &Bytes) -> Bytes {
        if let (Some(params), Some(deflate)) = (conn.proto.deflate(), self.deflate.as_mut())
            && let Some(compressed) = deflate.shared_frame(params, frame)
        {
            // The peer's window now holds bytes the connection's own compressor
            // did not see.
            conn.set(flag::DEFLATE_RESET);
            self.stats.compressed_out += 1;
            return compressed;
        }
        frame.clone()
    }

    /// The checks and counts of a shared frame's send: refused (`Err`) when the
    /// connection is not open, or by the backpressure policy.
    fn admit_shared<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        frame: &Bytes,
    ) -> Result<(), SendStatus> {
        self.admit_shared_as(owner, conn, frame, false)
    }

    /// As [`admit_shared`](Self::admit_shared); `own` as a callback's send is
    /// admitted (a replay: bounded by the history, never dropped under `Pause`).
    fn admit_shared_as<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        frame: &Bytes,
        own: bool,
    ) -> Result<(), SendStatus> {
        if conn.phase != Phase::Open || !conn.proto.can_send() {
            return Err(SendStatus::Closed);
        }
        if !self.admits(owner, conn, frame.len(), own) {
            return Err(self.refuse(owner, conn));
        }
        self.stats.messages_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        Ok(())
    }

    /// Queues a published frame for `conn`, to leave with everything else it gets in
    /// this loop turn in one write when the turn ends (the caller lists it). What
    /// was corked for it goes first, so its bytes keep their order.
    pub(crate) fn deliver<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        frame: &Bytes,
    ) -> SendStatus {
        self.deliver_as(owner, conn, frame, false)
    }

    /// As [`deliver`](Self::deliver); `own`: admitted as a callback's own send.
    pub(crate) fn deliver_as<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        frame: &Bytes,
        own: bool,
    ) -> SendStatus {
        let frame = &self.shared_form(conn, frame);
        if let Err(status) = self.admit_shared_as(owner, conn, frame, own) {
            return status;
        }
        self.reclaim_strays(owner, conn);
        let corked = self.corked(owner);
        let droppable = self.is_droppable(conn, frame);
        let queue = batch_of(&mut self.queues, conn);
        if corked > 0 {
            queue.push_copy(&self.cork.bytes);
            self.cork.bytes.clear();
        }
        if droppable {
            queue.push_message(frame.clone());
        } else {
            queue.push(frame.clone());
        }
        SendStatus::Sent
    }

    /// Sends a plain-HTTP response body after the head corked before it, without a
    /// copy unless the kernel refuses part of it.
    pub(crate) fn send_body<S>(&mut self, owner: Owner, conn: &mut Conn<S>, body: &Bytes) {
        self.write_through(owner, conn, &[], Payload::Shared(body), false);
    }

    /// Writes the cork of `owner`, `header` and `payload` in one vectored write when
    /// nothing is queued, and queues what the kernel does not take (a borrowed
    /// payload copied once, a shared one by reference). Behind a queue, everything
    /// goes to the queue. `frame` says header and payload are one WebSocket frame
    /// (not an HTTP body), which `DropOldest` may drop while the kernel has not
    /// started on it. A write error is seen by the next read, which closes the
    /// connection.
    fn write_through<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        header: &[u8],
        payload: Payload<'_>,
        frame: bool,
    ) {
        // Take the cork for this connection (displacing another's, if any).
        self.cork(owner);
        self.reclaim_strays(owner, conn);
        let written = if conn.output == NONE {
            let mut slices = [IoSlice::new(&[]); 3];
            let mut count = 0;
            for part in [&self.cork.bytes[..], header, payload.as_slice()] {
                if !part.is_empty() {
                    slices[count] = IoSlice::new(part);
                    count += 1;
                }
            }
            let tls = conn.has(flag::TLS);
            let mut sink =
                self.tls
                    .sink(owner.key as usize, owner.generation, tls, &mut conn.stream);
            write_once(&mut sink, &slices[..count]).unwrap_or(0)
        } else {
            0
        };
        let total = self.cork.bytes.len() + header.len() + payload.as_slice().len();
        if written < total {
            // A frame the kernel has not started on may be dropped later.
            let droppable = frame
                && written <= self.cork.bytes.len()
                && self.is_droppable(
                    conn,
                    if header.is_empty() {
                        payload.as_slice()
                    } else {
                        header
                    },
                );
            let queue = queue_of(&mut self.queues, conn);
            let taken = written.min(self.cork.bytes.len());
            queue.push_copy(&self.cork.bytes[taken..]);
            match payload {
                Payload::Borrowed(bytes) if droppable => queue.push_message_copy(header, bytes),
                Payload::Shared(bytes) if droppable && header.is_empty() => {
                    queue.push_message(bytes.clone())
                }
                _ => {
                    let mut skip = written - taken;
                    let from_header = skip.min(header.len());
                    skip -= from_header;
                    queue.push_copy(&header[from_header..]);
                    match payload {
                        Payload::Borrowed(bytes) => queue.push_copy(&bytes[skip..]),
                        Payload::Shared(bytes) => queue.push(bytes.slice(skip..)),
                    }
                }
            }
        }
        self.cork.bytes.clear();
    }

    /// Starts the close handshake on `conn` (the caller flushes).
    pub(crate) fn close<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
        code: CloseCode,
        reason: &str,
    ) {
        if conn.proto.close_state() == CloseState::Open {
            // Reported to on_close if the peer never answers.
            conn.close_code = code.0;
            let cork = self.cork(owner);
            // The only errors are "already closing" and an unsendable code; the
            // latter is replaced by 1000 rather than refused silently.
            if conn.proto.close(cork, code, reason).is_err() {
                let _ = conn.proto.close(cork, CloseCode::NORMAL, reason);
            }
        }
    }

    /// Puts `owner`'s strays, older than anything it sends now, at the end of its
    /// queue before anything else is written, so that its bytes keep their order.
    #[inline]
    fn reclaim_strays<S>(&mut self, owner: Owner, conn: &mut Conn<S>) {
        if !self.strays.is_empty() {
            self.reclaim_strays_slow(owner, conn);
        }
    }

    #[cold]
    fn reclaim_strays_slow<S>(&mut self, owner: Owner, conn: &mut Conn<S>) {
        let mut i = 0;
        while i < self.strays.len() {
            if self.strays[i].0 == owner {
                let (_, bytes) = self.strays.remove(i);
                queue_of(&mut self.queues, conn).push(bytes);
            } else {
                i += 1;
            }
        }
    }

    /// Queues bytes staged for `conn` earlier (a stray being delivered).
    pub(crate) fn enqueue<S>(&mut self, conn: &mut Conn<S>, bytes: Bytes) {
        queue_of(&mut self.queues, conn).push(bytes);
    }

    /// Writes the cork if it holds bytes of `owner`: directly if nothing is queued,
    /// else behind the queue. Another connection's bytes are left alone.
    fn flush_cork<S>(&mut self, owner: Owner, conn: &mut Conn<S>) -> io::Result<()> {
        self.reclaim_strays(owner, conn);
        if self.corked(owner) == 0 {
            return Ok(());
        }
        let written = if conn.output == NONE {
            let tls = conn.has(flag::TLS);
            let mut sink =
                self.tls
                    .sink(owner.key as usize, owner.generation, tls, &mut conn.stream);
            match write_once(&mut sink, &[IoSlice::new(&self.cork.bytes)]) {
                Ok(n) => n,
                Err(e) => {
                    self.cork.bytes.clear();
                    return Err(e);
                }
            }
        } else {
            0
        };
        if written < self.cork.bytes.len() {
            let queue = queue_of(&mut self.queues, conn);
            queue.push_copy(&self.cork.bytes[written..]);
        }
        self.cork.bytes.clear();
        if self.cork.bytes.capacity() > 2 * CORK_LIMIT {
            self.cork.bytes.shrink_to(CORK_LIMIT);
        }
        Ok(())
    }

    /// Writes the cork (if it is `owner`'s) and the queue of `conn`. The queue is
    /// released when empty.
    pub(crate) fn flush<S>(&mut self, owner: Owner, conn: &mut Conn<S>) -> io::Result<Flushed> {
        self.flush_cork(owner, conn)?;
        let tls = conn.has(flag::TLS);
        if let Some(queue) = self.queues.get_mut(conn.output as usize) {
            let mut sink =
                self.tls
                    .sink(owner.key as usize, owner.generation, tls, &mut conn.stream);
            if !queue.flush(&mut sink)? {
                return Ok(Flushed::Partly);
            }
            self.queues.remove(conn.output as usize);
        }
        conn.output = NONE;
        // A wss connection is flushed when its records are, too (and what rustls
        // wrote on its own: handshake flights, alerts, key updates).
        if tls
            && !self
                .tls
                .flush(owner.key as usize, owner.generation, &mut conn.stream)?
        {
            return Ok(Flushed::Partly);
        }
        Ok(Flushed::All)
    }

    /// Writes the cork now if it has reached its limit (replies to a read full of
    /// pings), so that it stays bounded.
    #[inline]
    pub(crate) fn flush_full_cork<S>(
        &mut self,
        owner: Owner,
        conn: &mut Conn<S>,
    ) -> io::Result<()> {
        if self.corked(owner) >= CORK_LIMIT {
            self.flush_cork(owner, conn)?;
        }
        Ok(())
    }

    /// Frees everything staged for a connection being dropped, or whose peer is
    /// gone: its queue, its corked bytes, its strays.
    pub(crate) fn release<S>(&mut self, owner: Owner, conn: &mut Conn<S>) {
        if conn.output != NONE {
            self.queues.remove(conn.output as usize);
            conn.output = NONE;
        }
        if let Some(deflate) = self.deflate.as_mut() {
            deflate.forget(owner);
            self.stats.compressors = deflate.own_count();
        }
        self.discard(owner);
    }

    /// Drops the bytes staged for `owner` that are not queued yet (its peer is gone).
    pub(crate) fn discard(&mut self, owner: Owner) {
        if self.cork.owner == owner {
            self.cork.bytes.clear();
        }
        self.strays.retain(|(o, _)| *o != owner);
    }
}

/// The queue of `conn`, created if it has none (the connection then wants `on_drain`
/// once it empties: a send met backpressure).
fn queue_of<'q, S>(queues: &'q mut Queues, conn: &mut Conn<S>) -> &'q mut OutQueue {
    if queues.get(conn.output as usize).is_none() {
        conn.set(flag::WANTS_DRAIN);
    }
    batch_of(queues, conn)
}

/// The queue of `conn`, created if it has none, for published messages batched until
/// the end of the loop turn (no backpressure met yet: no `on_drain`).
fn batch_of<'q, S>(queues: &'q mut Queues, conn: &mut Conn<S>) -> &'q mut OutQueue {
    queues.get_or_insert(&mut conn.output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::conn::Conn;

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
        let proto = std::mem::size_of::<crate::proto::Connection>();
        println!("slab slot for the echo handler: {slot} bytes (Conn {conn}, proto {proto})");
        assert!(slot <= 128, "slot is {slot} bytes");
    }

    const A: Owner = Owner {
        key: 1,
        generation: 7,
    };
    const B: Owner = Owner {
        key: 2,
        generation: 7,
    };
    /// A's slot reused by a new connection.
    const A2: Owner = Owner {
        key: 1,
        generation: 8,
    };

    #[test]
    fn bytes_left_in_the_cork_are_displaced_with_their_owner_never_handed_on() {
        let mut output = Output::new(1 << 20, BackpressurePolicy::Drop);
        output.cork(A).extend_from_slice(b"for A");
        assert_eq!(output.corked(A), 5);
        assert_eq!(output.corked(B), 0, "B does not see A's bytes as its own");
        assert_eq!(
            output.corked(A2),
            0,
            "nor does the connection reusing A's slot"
        );
        output.cork(B).extend_from_slice(b"for B");
        assert_eq!(output.cork_owner(), Some(B));
        assert_eq!(output.corked(B), 5);
        let strays = output.take_strays();
        assert_eq!(strays.len(), 1);
        assert_eq!(strays[0].0, A);
        assert_eq!(&strays[0].1[..], b"for A");
    }

    #[test]
    fn displaced_bytes_go_out_before_what_their_connection_sends_next() {
        let (stream, mut client) = crate::reactor::tests::pair();
        let mut conn: Conn<()> = Conn::new(stream, A.generation);
        let mut output = Output::new(1 << 20, BackpressurePolicy::Drop);
        output.cork(A).extend_from_slice(b"first ");
        output.cork(B).extend_from_slice(b"for B");
        // A's next send is written at once (large), yet after its displaced bytes.
        let big = vec![b'x'; DIRECT_WRITE];
        let _ = output.send(A, &mut conn, OpCode::Binary, &big);
        output.flush(A, &mut conn).unwrap();
        assert_eq!(output.take_strays().len(), 1, "only B's are left");
        let mut got = vec![0u8; 6];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_eq!(&got, b"first ");
    }

    #[test]
    fn a_gone_connection_leaves_nothing_staged() {
        let mut output = Output::new(1 << 20, BackpressurePolicy::Drop);
        output.cork(A).extend_from_slice(b"a1");
        output.cork(B).extend_from_slice(b"b1");
        output.cork(A).extend_from_slice(b"a2");
        // A's turn: its first bytes are strays, its second in the cork; B's are strays.
        output.discard(A);
        assert_eq!(output.cork_owner(), None);
        let strays = output.take_strays();
        assert_eq!(strays.len(), 1);
        assert_eq!((strays[0].0, &strays[0].1[..]), (B, &b"b1"[..]));
    }
}
