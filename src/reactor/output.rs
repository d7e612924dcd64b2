//! The write path: cork, direct write, queue the rest, backpressure.
//!
//! Sends made to the connection being served in this turn are appended to one
//! per-reactor cork buffer and leave in a single write when the turn ends for that
//! connection (an echo costs one read and one write). Only the bytes the kernel does
//! not take are copied into the connection's [`OutQueue`], as `Bytes`; frames shared
//! by many connections (broadcasts) are queued as clones, never copied.

use std::io::{self, IoSlice};

use bytes::Bytes;
use slab::Slab;

use super::conn::{Conn, NONE, OutQueue, flag, write_once};
use crate::config::BackpressurePolicy;
use crate::handler::SendStatus;
use crate::proto::frame::{FrameHeader, OpCode};
use crate::proto::{CloseCode, CloseState};
use crate::stats::LocalStats;

/// Payloads at least this large skip the cork: they go out at once with the corked
/// bytes in one vectored write, so they are not copied unless the kernel refuses
/// part of them.
const DIRECT_WRITE: usize = 16 * 1024;

/// The cork is written out when it reaches this size, even in the middle of a
/// callback.
const CORK_LIMIT: usize = 64 * 1024;

/// What a flush left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything went to the kernel.
    All,
    /// Some bytes wait in the queue for a writable event.
    Partly,
}

/// The reactor's write state: every connection's queue, and the cork of the one
/// being served.
pub(crate) struct Output {
    pub(crate) queues: Slab<OutQueue>,
    pub(crate) cork: Vec<u8>,
    pub(crate) max_backpressure: usize,
    pub(crate) policy: BackpressurePolicy,
    pub(crate) stats: LocalStats,
}

impl Output {
    pub(crate) fn new(max_backpressure: usize, policy: BackpressurePolicy) -> Output {
        Output {
            queues: Slab::new(),
            cork: Vec::with_capacity(64 * 1024),
            max_backpressure,
            policy,
            stats: LocalStats::default(),
        }
    }

    /// Bytes queued for `conn` (the cork counts: it belongs to the connection being
    /// served, and is empty otherwise).
    pub(crate) fn buffered<S>(&self, conn: &Conn<S>) -> usize {
        self.queued(conn) + self.cork.len()
    }

    pub(crate) fn queued<S>(&self, conn: &Conn<S>) -> usize {
        self.queues
            .get(conn.output as usize)
            .map_or(0, OutQueue::len)
    }

    /// Whether a frame of `len` more bytes fits under the backpressure limit. A
    /// frame of any size is accepted when nothing is buffered, or it could never be
    /// sent.
    fn admits(&self, buffered: usize, len: usize) -> bool {
        buffered == 0 || buffered + len <= self.max_backpressure
    }

    /// Applies the policy to a send that did not fit.
    fn refuse<S>(&mut self, conn: &mut Conn<S>) -> SendStatus {
        self.stats.dropped += 1;
        if self.policy == BackpressurePolicy::Close {
            self.close(conn, CloseCode::POLICY_VIOLATION, "backpressure limit");
        }
        SendStatus::Dropped
    }

    /// Sends one frame to the connection being served.
    pub(crate) fn send<S>(
        &mut self,
        conn: &mut Conn<S>,
        opcode: OpCode,
        payload: &[u8],
    ) -> SendStatus {
        if !conn.proto.can_send() {
            return SendStatus::Closed;
        }
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        }
        .encode();
        let len = header.as_bytes().len() + payload.len();
        if !self.admits(self.buffered(conn), len) {
            return self.refuse(conn);
        }
        if !opcode.is_control() {
            self.stats.messages_out += 1;
            self.stats.bytes_out += payload.len() as u64;
        }
        if payload.len() < DIRECT_WRITE || conn.output != NONE {
            self.cork.extend_from_slice(header.as_bytes());
            self.cork.extend_from_slice(payload);
            if self.cork.len() >= CORK_LIMIT {
                // A callback sending a lot: write now rather than grow the cork, so
                // the status tells the truth and the cork stays small. A write error
                // is seen by the next read, which closes the connection.
                let _ = self.flush_cork(conn);
            }
        } else {
            // Large: one vectored write of the cork, the header and the payload.
            let parts = [&self.cork[..], header.as_bytes(), payload];
            let slices = parts.map(IoSlice::new);
            // A write error is seen by the next read, which closes the connection.
            let written = write_once(&mut conn.stream, &slices).unwrap_or_default();
            let mut rest = Vec::new();
            let mut skip = written;
            for part in parts {
                let taken = skip.min(part.len());
                skip -= taken;
                rest.extend_from_slice(&part[taken..]);
            }
            self.cork.clear();
            if !rest.is_empty() {
                self.enqueue(conn, Bytes::from(rest));
                return SendStatus::Backpressure;
            }
        }
        if conn.output != NONE {
            SendStatus::Backpressure
        } else {
            SendStatus::Sent
        }
    }

    /// Sends an encoded frame shared with other connections (a broadcast), to a
    /// connection that is not being served (the cork is empty).
    pub(crate) fn send_shared<S>(&mut self, conn: &mut Conn<S>, frame: &Bytes) -> SendStatus {
        if conn.phase != super::conn::Phase::Open || !conn.proto.can_send() {
            return SendStatus::Closed;
        }
        if !self.admits(self.queued(conn), frame.len()) {
            return self.refuse(conn);
        }
        self.stats.messages_out += 1;
        self.stats.bytes_out += frame.len() as u64;
        if conn.output != NONE {
            self.enqueue(conn, frame.clone());
            return SendStatus::Backpressure;
        }
        let written = write_once(&mut conn.stream, &[IoSlice::new(frame)]).unwrap_or(0);
        if written < frame.len() {
            self.enqueue(conn, frame.slice(written..));
            return SendStatus::Backpressure;
        }
        SendStatus::Sent
    }

    /// Starts the close handshake on the connection being served (or, with an
    /// empty cork, on any connection: the caller flushes).
    pub(crate) fn close<S>(&mut self, conn: &mut Conn<S>, code: CloseCode, reason: &str) {
        if conn.proto.close_state() == CloseState::Open {
            // Reported to on_close if the peer never answers.
            conn.close_code = code.0;
            // The only errors are "already closing" and an unsendable code; the
            // latter is replaced by 1000 rather than refused silently.
            if conn.proto.close(&mut self.cork, code, reason).is_err() {
                let _ = conn.proto.close(&mut self.cork, CloseCode::NORMAL, reason);
            }
        }
    }

    fn enqueue<S>(&mut self, conn: &mut Conn<S>, bytes: Bytes) {
        if conn.output == NONE {
            conn.output = self.queues.insert(OutQueue::default()) as u32;
            conn.set(flag::WANTS_DRAIN);
        }
        if let Some(q) = self.queues.get_mut(conn.output as usize) {
            q.push(bytes);
        }
    }

    /// Writes the cork: directly if nothing is queued, else behind the queue.
    fn flush_cork<S>(&mut self, conn: &mut Conn<S>) -> io::Result<()> {
        if self.cork.is_empty() {
            return Ok(());
        }
        if conn.output == NONE {
            let written = match write_once(&mut conn.stream, &[IoSlice::new(&self.cork)]) {
                Ok(n) => n,
                Err(e) => {
                    self.cork.clear();
                    return Err(e);
                }
            };
            if written < self.cork.len() {
                let rest = Bytes::copy_from_slice(&self.cork[written..]);
                self.enqueue(conn, rest);
            }
        } else {
            let corked = Bytes::copy_from_slice(&self.cork);
            self.enqueue(conn, corked);
        }
        self.cork.clear();
        Ok(())
    }

    /// Writes the cork and the queue of `conn`. The queue is released when empty.
    pub(crate) fn flush<S>(&mut self, conn: &mut Conn<S>) -> io::Result<Flushed> {
        self.flush_cork(conn)?;
        if conn.output == NONE {
            return Ok(Flushed::All);
        }
        let Some(queue) = self.queues.get_mut(conn.output as usize) else {
            conn.output = NONE;
            return Ok(Flushed::All);
        };
        if queue.flush(&mut conn.stream)? {
            self.queues.remove(conn.output as usize);
            conn.output = NONE;
            Ok(Flushed::All)
        } else {
            Ok(Flushed::Partly)
        }
    }

    /// Frees the queue of a connection being dropped.
    pub(crate) fn release<S>(&mut self, conn: &mut Conn<S>) {
        if conn.output != NONE {
            self.queues.try_remove(conn.output as usize);
            conn.output = NONE;
        }
    }
}
