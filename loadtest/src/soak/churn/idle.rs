//! Idle connections: open, hold in silence, close with 1000, and reopen.
//!
//! A cycle counts when the server sent nothing during the hold, answered the close
//! with 1000, and then closed the TCP connection itself (RFC 6455 §7.1.1: the
//! server closes first).

use std::time::{Duration, Instant};

use super::{Churn, Ending, RawRead, State, read_raw};
use crate::client::{Failure, Received};
use crate::soak::abuse::FLOOD_MARK;

impl Churn {
    pub(super) fn idle_opened(&mut self, key: usize, now: Instant) {
        let hold = self.plan.idle_hold.as_secs_f64() * (0.5 + self.random());
        if let Some(conn) = self.conns.get_mut(key) {
            conn.state = State::Holding;
            conn.deadline = now + Duration::from_secs_f64(hold);
        }
    }

    pub(super) fn idle_readable(&mut self, key: usize, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state == State::AwaitEof {
            return self.idle_await_eof(key, scratch);
        }
        // Holding or closing: nothing may arrive but the server's close frame.
        let (mut messages, mut foreign) = (0u64, 0u64);
        let result = conn
            .client
            .receive(scratch, &self.limits, None, |_, Received::Message(m)| {
                messages += 1;
                foreign += u64::from(m.as_bytes().starts_with(FLOOD_MARK));
            });
        let (state, code) = (conn.state, conn.client.close_code);
        if foreign > 0 {
            let what = "replies to another client (flood-reset) on an idle connection";
            return self.idle_failed(key, what.into());
        }
        if messages > 0 {
            return self.idle_failed(key, "a message on an idle connection".into());
        }
        let Err(failure) = result else {
            return;
        };
        let what = match (state, failure, code) {
            (State::Closing, Failure::Closed, Some(1000)) => {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.state = State::AwaitEof;
                    conn.deadline = Instant::now() + super::ANSWER_TIMEOUT;
                }
                // The FIN may have come with the close frame: read on now, as no
                // new edge will tell.
                return self.idle_await_eof(key, scratch);
            }
            (State::Closing, _, Some(code)) => format!("close {code} in answer to 1000"),
            (_, Failure::Closed, Some(code)) => {
                format!("closed by the server while idle (close {code})")
            }
            (_, Failure::Reset, _) => "reset".into(),
            (_, Failure::Protocol, _) => "a protocol error by the server".into(),
            _ => "closed by the server without a close frame".into(),
        };
        self.idle_failed(key, what);
    }

    /// After the close handshake, the server closes the TCP connection.
    fn idle_await_eof(&mut self, key: usize, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut after = Vec::new();
        match read_raw(&mut conn.client, &mut after, scratch) {
            RawRead::Open if after.is_empty() => {}
            RawRead::Eof if after.is_empty() => self.finish(key, Ending::Cycle),
            RawRead::Reset => self.idle_failed(key, "reset after the close handshake".into()),
            _ => self.idle_failed(key, "bytes after the close frame".into()),
        }
    }

    fn idle_failed(&mut self, key: usize, what: String) {
        self.finish(key, Ending::Failed(what));
    }

    /// Sends the close frame.
    fn idle_close(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.state = State::Closing;
        conn.deadline = now + super::ANSWER_TIMEOUT;
        if conn.client.close(1000).is_err() {
            self.idle_failed(key, "reset".into());
        }
    }

    pub(super) fn idle_timer(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match conn.state {
            State::Holding => self.idle_close(key, now),
            State::Closing => self.idle_failed(key, "no close frame in answer to 1000".into()),
            State::AwaitEof => {
                self.idle_failed(key, "TCP left open after the close handshake".into())
            }
            _ => {}
        }
    }

    /// The round is over: a held connection closes now; a closing one finishes.
    pub(super) fn idle_stop(&mut self, key: usize, now: Instant) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.state == State::Holding)
        {
            self.idle_close(key, now);
        }
    }
}
