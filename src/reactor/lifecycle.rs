//! How a turn ends and how a connection ends: flushing, draining, closing, timers.

use std::net::Shutdown;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::Reactor;
use super::conn::{NONE, Phase, flag};
use super::output::Flushed;
use crate::handler::{ConnId, Handler};
use crate::proto::CloseCode;

impl<H: Handler> Reactor<H> {
    // ---- writing ----------------------------------------------------------------

    pub(super) fn writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let waiting =
            conn.output != NONE || (conn.phase == Phase::Draining && !conn.has(flag::WRITE_SHUT));
        if waiting {
            self.finish_turn(key);
        }
        self.resume_reading(key);
    }

    /// Reads again next turn from a connection whose reading was paused for
    /// backpressure (see `readable`), once its queue is back under the limit.
    pub(super) fn resume_reading(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.has(flag::READ_PAUSED)
            && self.output.queued(conn) <= self.config.max_backpressure
        {
            conn.clear(flag::READ_PAUSED);
            self.deferred.push(key);
        }
    }

    /// Flushes the cork and the queue of `key`; calls `on_drain` when a queue that
    /// met backpressure empties; shuts down our side once a draining connection has
    /// written everything.
    pub(super) fn finish_turn(&mut self, key: usize) {
        for _ in 0..2 {
            let Some(conn) = self.conns.get_mut(key) else {
                self.output.cork.clear();
                return;
            };
            match self.output.flush(conn) {
                Ok(Flushed::Partly) => return,
                Ok(Flushed::All) => {}
                Err(_) => {
                    self.peer_gone(key);
                    return;
                }
            }
            if conn.phase == Phase::Draining {
                if !conn.has(flag::WRITE_SHUT) {
                    conn.set(flag::WRITE_SHUT);
                    if conn.stream.shutdown(Shutdown::Write).is_err() {
                        self.remove(key);
                    }
                }
                return;
            }
            if !conn.has(flag::WANTS_DRAIN) {
                return;
            }
            conn.clear(flag::WANTS_DRAIN);
            self.callback(key, |h, ws| h.on_drain(ws));
            // Flush again what on_drain sent.
        }
    }

    /// Moves a connection to draining: nothing more is read; what is queued is
    /// flushed, then our side is shut down and the peer's FIN awaited.
    pub(super) fn drain(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.phase = Phase::Draining;
        let timeout = self.config.close_timeout;
        self.set_deadline(key, timeout);
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
        self.output.stats.count_close(code.0);
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

    /// The peer of the connection being served closed the TCP connection or it
    /// failed. What this turn answered it and did not write yet is dropped with it:
    /// the cork is the served connection's, and the next one served must not get it.
    pub(super) fn peer_gone(&mut self, key: usize) {
        self.output.cork.clear();
        self.remove(key);
    }

    /// Drops a connection and everything it holds.
    pub(super) fn remove(&mut self, key: usize) {
        let code = match self.conns.get(key) {
            Some(conn) => conn.close_code,
            None => return,
        };
        self.report_close(key, CloseCode(code), "");
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        self.output.release(&mut conn);
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

    pub(super) fn set_deadline(&mut self, key: usize, after: Duration) {
        let deadline = self.wheel.deadline(after);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.deadline = deadline;
        if conn.timer_at == 0 || deadline < conn.timer_at {
            conn.timer_at = self.wheel.schedule(deadline, (key as u32, conn.generation));
        }
    }

    pub(super) fn clear_deadline(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.deadline = 0;
        }
    }

    pub(super) fn timers(&mut self) {
        let now = self.wheel.tick_of(Instant::now());
        if now <= self.wheel.now() {
            return;
        }
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
            if conn.generation != generation || conn.timer_at != tick {
                continue; // a superseded entry
            }
            conn.timer_at = 0;
            if conn.deadline == 0 {
                continue;
            }
            if conn.deadline > now {
                conn.timer_at = self.wheel.schedule(conn.deadline, (key as u32, generation));
                continue;
            }
            conn.deadline = 0;
            self.timeout(key);
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
            Phase::Open => {
                let Some(idle) = self.config.idle_timeout else {
                    return;
                };
                if conn.has(flag::PINGED) {
                    self.output
                        .close(conn, CloseCode::GOING_AWAY, "idle timeout");
                    self.after_callback(key);
                } else {
                    conn.set(flag::PINGED);
                    let _ = self.output.send(conn, crate::proto::OpCode::Ping, b"");
                    self.set_deadline(key, idle);
                }
                self.finish_turn(key);
            }
            Phase::Closing | Phase::Draining => self.remove(key),
        }
    }
}
