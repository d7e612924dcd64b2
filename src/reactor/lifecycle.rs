//! How a turn ends and how a connection ends: flushing, draining, closing, timers.

use std::net::Shutdown;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::Reactor;
use super::conn::{NONE, Phase, flag};
use super::output::{Flushed, Owner};
use super::timer::{before, is_due};
use crate::handler::{ConnId, Handler};
use crate::proto::{CloseCode, OpCode};

/// What a round of `finish_turn` does after its flush.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The write failed: the peer is gone.
    Gone,
    /// Bytes wait for the kernel (whether it took some this time).
    Wait(bool),
    /// Everything is written; nothing to call.
    Done,
    /// Everything is written on a draining connection: shut our side.
    ShutWrite,
    /// Everything is written and the queue had met backpressure: call `on_drain`.
    Drain,
}

/// How many times one turn calls `on_drain` for a connection whose queue keeps
/// emptying (see `finish_turn`).
const DRAIN_ROUNDS: usize = 4;

impl<H: Handler> Reactor<H> {
    // ---- writing ----------------------------------------------------------------

    pub(super) fn writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let waiting = conn.output != NONE
            || (conn.phase == Phase::Draining && !conn.has(flag::WRITE_SHUT))
            || (conn.has(flag::TLS) && self.output.tls.sealed(key));
        if waiting {
            self.finish_turn(key);
        }
        self.resume_reading(key);
    }

    /// The most a connection may have queued and still be read: the limit, or,
    /// once reading has paused, the low-water mark (half the limit), so that a
    /// paused reader resumes with room for more than one write's worth.
    pub(super) fn read_limit<S>(max_backpressure: usize, conn: &super::conn::Conn<S>) -> usize {
        if conn.has(flag::READ_PAUSED) {
            max_backpressure / 2
        } else {
            max_backpressure
        }
    }

    /// Reads again next turn from a connection whose reading was paused for
    /// backpressure (see `readable`), once its queue is down to the low-water mark.
    pub(super) fn resume_reading(&mut self, key: usize) {
        if let Some(conn) = self.conns.get(key)
            && conn.has(flag::READ_PAUSED)
            && self.output.queued(conn) <= Self::read_limit(self.config.max_backpressure, conn)
            && !(conn.has(flag::TLS) && self.output.tls.sealed(key))
            && let Some(conn) = self.conns.get_mut(key)
        {
            conn.clear(flag::READ_PAUSED);
            self.deferred.push(key);
        }
    }

    /// Ends the turn of `key`: writes its cork and queue; calls `on_drain` when a
    /// queue that met backpressure empties, and writes what it sent; shuts down our
    /// side once a draining connection has written everything. Every round starts
    /// with a flush, so what the last `on_drain` sent is written or queued before
    /// this returns. A handler that refills its queue in every `on_drain` while the
    /// kernel keeps taking it gets [`DRAIN_ROUNDS`] calls here, and the rest in the
    /// following turns. A connection whose reading was paused is read again if the
    /// flush brought its queue down to the low-water mark, whichever path flushed
    /// it: the peer, its window full, may send nothing that would wake it.
    pub(super) fn finish_turn(&mut self, key: usize) {
        self.flush_and_drain(key);
        self.resume_reading(key);
    }

    fn flush_and_drain(&mut self, key: usize) {
        for round in 0.. {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let owner = Owner::of(key, conn);
            // Progress only matters to a write timer already running.
            let waiting = conn.has(flag::WRITE_WAIT);
            let buffered = if waiting {
                self.output.buffered(owner, conn)
            } else {
                0
            };
            let next = match self.output.flush(owner, conn) {
                Err(_) => Next::Gone,
                Ok(Flushed::Partly) => Next::Wait(self.output.queued(conn) < buffered),
                Ok(Flushed::All) if conn.phase == Phase::Draining => Next::ShutWrite,
                Ok(Flushed::All) if conn.has(flag::WANTS_DRAIN) => Next::Drain,
                Ok(Flushed::All) => Next::Done,
            };
            if next != Next::Gone && (waiting || matches!(next, Next::Wait(_))) {
                self.write_waiting(key, matches!(next, Next::Wait(true)));
            }
            match next {
                Next::Gone => return self.peer_gone(key),
                Next::Wait(_) => {
                    // Backpressure met (published messages batched for this turn
                    // meet it only here): on_drain once the queue empties. Only
                    // TLS records waiting (no queue) is not backpressure.
                    if let Some(conn) = self.conns.get_mut(key)
                        && conn.output != NONE
                    {
                        conn.set(flag::WANTS_DRAIN);
                    }
                    return;
                }
                Next::Done => return,
                Next::ShutWrite => {
                    if let Some(conn) = self.conns.get_mut(key)
                        && !conn.has(flag::WRITE_SHUT)
                    {
                        if conn.has(flag::TLS) {
                            // close_notify after the WebSocket close, before the FIN.
                            let generation = conn.generation;
                            self.output.tls.close_notify(key, generation);
                            match self.output.tls.flush(key, generation, &mut conn.stream) {
                                Ok(true) => {}
                                Ok(false) => return, // the rest at a writable event
                                Err(_) => return self.remove(key),
                            }
                        }
                        conn.set(flag::WRITE_SHUT);
                        if conn.stream.shutdown(Shutdown::Write).is_err() {
                            self.remove(key);
                        }
                    }
                    if self.shutdown.is_some() {
                        self.close_drained(key);
                    }
                    return;
                }
                Next::Drain if round == DRAIN_ROUNDS => {
                    // No writable edge will come for an empty queue: call on_drain
                    // again next turn.
                    return self.deferred.push(key);
                }
                Next::Drain => {
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.clear(flag::WANTS_DRAIN);
                    }
                    self.callback(key, |h, ws| h.on_drain(ws));
                }
            }
        }
    }

    /// Keeps the write timer of an open connection: started when its queue stops
    /// draining, restarted whenever the kernel takes some of it (`progressed`), and
    /// replaced by the idle timer once the queue is empty. While it runs, input
    /// does not push the deadline back: a peer that sends but never reads is still
    /// evicted.
    fn write_waiting(&mut self, key: usize, progressed: bool) {
        let Some(write) = self.timeouts.write else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        if conn.output != NONE {
            if progressed || !conn.has(flag::WRITE_WAIT) {
                conn.set(flag::WRITE_WAIT);
                self.set_deadline(key, write);
            }
        } else if conn.has(flag::WRITE_WAIT) {
            conn.clear(flag::WRITE_WAIT);
            match self.timeouts.idle {
                Some(idle) => self.set_deadline(key, idle),
                None => self.clear_deadline(key),
            }
        }
    }

    /// Writes what was published to each subscriber during this turn: everything a
    /// subscriber got leaves in one write (a vectored one over the shared frames).
    pub(super) fn flush_batched(&mut self) {
        // Callbacks run here (on_drain) may publish again: serve those too.
        while !self.pubsub.batched.is_empty() {
            let spare = std::mem::take(&mut self.batched_spare);
            let mut batched = std::mem::replace(&mut self.pubsub.batched, spare);
            for key in batched.drain(..) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.clear(flag::BATCHED);
                }
                // A subscriber the backpressure policy closed is closing now.
                self.guard(key, |r| {
                    r.after_callback(key);
                    r.finish_turn(key);
                });
            }
            self.batched_spare = batched;
        }
    }

    /// Delivers bytes staged for a connection whose turn ended without writing
    /// them: a cork another path left behind, and strays displaced from the cork.
    /// Each goes to the connection it was staged for, or nowhere if that
    /// connection is gone; never to another.
    pub(super) fn settle(&mut self) {
        if let Some(deflate) = self.output.deflate.as_mut() {
            deflate.end_turn();
        }
        for owner in std::mem::take(&mut self.output.faulted) {
            self.fault(owner.key as usize, Some(owner.generation));
        }
        for owner in std::mem::take(&mut self.output.lagged) {
            let key = owner.key as usize;
            self.guard(key, |r| {
                if let Some(conn) = r.conns.get_mut(key)
                    && conn.generation == owner.generation
                {
                    let reason = "lagged behind a topic: resume from the last offset";
                    r.output
                        .close(owner, conn, CloseCode::TRY_AGAIN_LATER, reason);
                    r.after_callback(key);
                    r.finish_turn(key);
                }
            });
        }
        if let Some(owner) = self.output.cork_owner() {
            self.guard(owner.key as usize, |r| r.deliver(owner, None));
        }
        if self.output.has_strays() {
            for (owner, bytes) in self.output.take_strays() {
                self.guard(owner.key as usize, |r| r.deliver(owner, Some(bytes)));
            }
        }
    }

    fn deliver(&mut self, owner: Owner, stray: Option<bytes::Bytes>) {
        let key = owner.key as usize;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.generation != owner.generation {
            return;
        }
        if let Some(bytes) = stray {
            self.output.enqueue(conn, bytes);
        }
        self.finish_turn(key);
    }

    /// Moves a connection to draining: nothing more is read; what is queued is
    /// flushed, then our side is shut down and the peer's FIN awaited.
    pub(super) fn drain(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.phase = Phase::Draining;
        conn.clear(flag::WRITE_WAIT);
        let close = self.timeouts.close;
        self.set_deadline(key, close);
    }

    /// Closes a draining connection that has written everything, without waiting
    /// for the peer's FIN: the server is shutting down, and a client may keep an
    /// answered page's connection open for as long as it likes. What the peer sent
    /// is read and dropped first, since closing a socket with unread input resets
    /// it, which could cost the peer the end of our answer.
    pub(super) fn close_drained(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut sink = [0; 4096];
        for _ in 0..16 {
            match super::read(&mut conn.stream, &mut sink) {
                Ok(n) if n == sink.len() => {}
                _ => break,
            }
        }
        self.remove(key);
    }

    // ---- closing ----------------------------------------------------------------

    /// Calls `on_close` once for an opened connection.
    pub(super) fn report_close(&mut self, key: usize, code: CloseCode, reason: &str) {
        let index = self.index;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.has(flag::OPENED) {
            return;
        }
        conn.clear(flag::OPENED);
        conn.close_code = code.0;
        // Nothing is delivered after on_close: its subscriptions end here.
        self.pubsub.remove_conn(conn);
        self.output.stats.count_close(code.0);
        crate::observe::event!(debug, conn = ?(index, key, conn.generation), code = code.0, reason, "closed");
        let id = ConnId {
            reactor: index,
            slot: key as u32,
            generation: conn.generation,
        };
        if let Some(session) = conn.session.take() {
            let handler = &mut self.handler;
            // A panic in on_close has nothing left to close.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                handler.on_close(id, session, code, reason)
            }));
        }
    }

    /// The peer of connection `key` closed the TCP connection or it failed: it is
    /// dropped with everything staged for it.
    pub(super) fn peer_gone(&mut self, key: usize) {
        self.remove(key);
    }

    /// Drops a connection and everything it holds.
    pub(super) fn remove(&mut self, key: usize) {
        self.remove_because(key, "");
    }

    /// Drops a connection, reporting `reason` to `on_close` with its close code.
    pub(super) fn remove_because(&mut self, key: usize, reason: &str) {
        let code = match self.conns.get(key) {
            Some(conn) => conn.close_code,
            None => return,
        };
        self.report_close(key, CloseCode(code), reason);
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        self.pubsub.remove_conn(&mut conn);
        self.output.release(Owner::of(key, &conn), &mut conn);
        if conn.has(flag::TLS) {
            self.output.tls.end(key);
        }
        if let Some(inflaters) = self.inflaters.as_mut() {
            inflaters.forget(key, conn.generation);
        }
        if conn.input != NONE
            && let Some(held) = self.inputs.try_remove(conn.input as usize)
        {
            self.pool.give(held);
        }
        // Dropping the stream closes the socket, which also removes it from epoll.
    }

    pub(super) fn drop_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove(key);
        }
    }

    // ---- timers -----------------------------------------------------------------

    /// Sets the deadline of `key` to `ticks` from now.
    pub(super) fn set_deadline(&mut self, key: usize, ticks: u32) {
        let deadline = self.wheel.deadline(ticks);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.deadline = deadline;
        // A live entry due before the new deadline finds it moved and re-schedules
        // itself; one due after it would fire late, so schedule anew.
        if conn.timer_at == 0 || before(deadline, conn.timer_at) {
            conn.timer_at = self
                .wheel
                .schedule(deadline, (key as u32, conn.generation as u32));
        }
    }

    pub(super) fn clear_deadline(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.deadline = 0;
        }
    }

    pub(super) fn timers(&mut self) {
        let instant = Instant::now();
        let now = self.wheel.tick_of(instant);
        if now <= self.wheel.now() {
            return;
        }
        if let Some(deflate) = self.output.deflate.as_mut() {
            deflate.sweep(instant);
            self.output.stats.compressors = deflate.own_count();
        }
        self.output.tls.sweep(instant);
        self.accept_paused = false;
        if self.listener.is_some() {
            self.accept_pending = true;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(now, &mut due);
        for ((key, generation), tick) in due.drain(..) {
            let key = key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation as u32 != generation || conn.timer_at != tick {
                continue; // a superseded entry
            }
            conn.timer_at = 0;
            if conn.deadline == 0 {
                continue;
            }
            if !is_due(conn.deadline, now) {
                conn.timer_at = self.wheel.schedule(conn.deadline, (key as u32, generation));
                continue;
            }
            conn.deadline = 0;
            self.guard(key, |r| r.timeout(key));
        }
        self.due = due;
    }

    pub(super) fn timeout(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.phase {
            Phase::Handshake => {
                self.output.stats.rejected += 1;
                self.remove(key);
            }
            Phase::Open if conn.has(flag::WRITE_WAIT) => {
                // The peer has taken nothing for the write timeout: no close frame
                // could reach it either.
                self.output.stats.write_timeouts += 1;
                crate::observe::event!(debug, conn = ?(self.index, key), "write timeout");
                conn.close_code = CloseCode::POLICY_VIOLATION.0;
                self.remove_because(key, "write timeout");
            }
            Phase::Open => {
                let Some(idle) = self.timeouts.idle else {
                    return;
                };
                let owner = Owner::of(key, conn);
                if conn.has(flag::PINGED) {
                    self.output
                        .close(owner, conn, CloseCode::GOING_AWAY, "idle timeout");
                    self.after_callback(key);
                } else {
                    conn.set(flag::PINGED);
                    let _ = self.output.send(owner, conn, OpCode::Ping, b"");
                    self.set_deadline(key, idle);
                }
                self.finish_turn(key);
            }
            Phase::Closing | Phase::Draining => self.remove(key),
        }
    }
}
