//! Abusive connections: each misbehaves in its kind's way, and what the server did
//! is recorded against what it must do ([`Abuse::expected`]).

use std::io;
use std::time::{Duration, Instant};

use wsreactor::proto::Message;

use super::{Churn, Ending, RawRead, State, read_raw};
use crate::client::{Failure, Received};
use crate::net;
use crate::soak::abuse::{
    ANSWER_TIMEOUT, Abuse, NEVER_READS_FOR, NEVER_READS_MESSAGE, Observed, TRICKLE_EVERY,
    TRICKLE_FOR, http_status,
};

/// How often a client that never reads sends.
const NEVER_READS_TICK: Duration = Duration::from_millis(10);

impl Churn {
    /// The TCP connect finished, for the kinds that do not upgrade.
    pub(super) fn abuse_connected(&mut self, key: usize, kind: Abuse, variant: u64, now: Instant) {
        let bytes = kind.payload(variant, &self.plan.host, &self.plan.path);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match kind {
            Abuse::Vanish => self.finish(key, Ending::Saw(Observed::Left)),
            Abuse::Slowloris => {
                conn.trickle = bytes;
                conn.state = State::Holding;
                conn.deadline = now;
            }
            _ => {
                // A write the server cut short is fine: its answer is what counts.
                let _ = conn.client.send(&bytes);
                conn.state = State::Answer;
                conn.deadline = now + ANSWER_TIMEOUT;
            }
        }
    }

    /// The upgrade completed, for the kinds that misbehave after it.
    pub(super) fn abuse_opened(&mut self, key: usize, kind: Abuse, variant: u64, now: Instant) {
        let bytes = kind.payload(variant, &self.plan.host, &self.plan.path);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let sent = conn.client.send(&bytes);
        match kind {
            Abuse::ResetMidFrame | Abuse::FloodReset => {
                if let Some(conn) = self.conns.try_remove(key) {
                    net::abort(conn.client.stream);
                    self.end_slot(conn.slot, conn.job, Ending::Saw(Observed::Left));
                }
            }
            Abuse::NeverReads => {
                conn.state = State::Holding;
                conn.deadline = now;
            }
            _ if sent.is_err() => self.finish(key, Ending::Saw(Observed::Reset)),
            _ => {
                conn.state = State::Answer;
                conn.deadline = now + ANSWER_TIMEOUT;
            }
        }
    }

    pub(super) fn abuse_readable(&mut self, key: usize, kind: Abuse, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // A client that never reads does not read.
        if matches!(kind, Abuse::NeverReads | Abuse::FloodReset) {
            return;
        }
        if kind.upgrades() {
            return self.abuse_close_frame(key, scratch);
        }
        // Raw kinds: slowloris must hear nothing; garbage and oversized requests
        // get an HTTP status, then the end of the connection.
        let observed = match read_raw(&mut conn.client, &mut conn.response, scratch) {
            RawRead::Open if conn.state == State::Answer || conn.response.is_empty() => return,
            RawRead::Open | RawRead::Eof => response_observed(&conn.response),
            // The server may reset a connection whose request it did not read to
            // the end: its status, if it came first, still counts.
            RawRead::Reset => match http_status(&conn.response) {
                Some(status) => Observed::Http(status),
                None => Observed::Reset,
            },
        };
        self.finish(key, Ending::Saw(observed));
    }

    /// An upgraded abuser reads the server's close frame and its code.
    fn abuse_close_frame(&mut self, key: usize, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut messages = 0u64;
        let result = conn
            .client
            .receive(scratch, &self.limits, None, |_, Received::Message(_)| {
                messages += 1
            });
        let observed = match (result, conn.client.close_code) {
            // A message echoed where a close was due.
            _ if messages > 0 => Observed::Unexpected,
            (Ok(()), _) => return,
            (Err(Failure::Closed), Some(code)) => Observed::Close(code),
            (Err(Failure::Closed), None) => Observed::Eof,
            (Err(Failure::Reset), _) => Observed::Reset,
            (Err(_), _) => Observed::Unexpected,
        };
        self.finish(key, Ending::Saw(observed));
    }

    pub(super) fn abuse_timer(
        &mut self,
        key: usize,
        kind: Abuse,
        now: Instant,
        scratch: &mut [u8],
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match (conn.state, kind) {
            (State::Holding, Abuse::Slowloris) => {
                let Some(&byte) = conn.trickle.get(conn.trickled) else {
                    return self.finish(key, Ending::Saw(Observed::Silent));
                };
                if now.duration_since(conn.since) >= TRICKLE_FOR {
                    return self.finish(key, Ending::Saw(Observed::Silent));
                }
                conn.trickled += 1;
                conn.deadline = now + TRICKLE_EVERY;
                if conn.client.send(&[byte]).is_err() {
                    // The server closed it: see how, from what can be read.
                    self.abuse_readable(key, kind, scratch);
                }
            }
            (State::Holding, _) => self.never_reads_tick(key, now),
            _ => {
                let observed = match http_status(&conn.response) {
                    Some(status) => Observed::Http(status),
                    None => Observed::NoAnswer,
                };
                self.finish(key, Ending::Saw(observed));
            }
        }
    }

    /// A client that never reads: a ping and a message whenever the kernel has
    /// taken the last ones, for [`NEVER_READS_FOR`]; then it leaves, with a reset
    /// since its receive queue is full.
    fn never_reads_tick(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if now.duration_since(conn.since) >= NEVER_READS_FOR {
            return self.finish(key, Ending::Saw(Observed::Held));
        }
        conn.deadline = now + NEVER_READS_TICK;
        let result = if conn.client.queued() > 0 {
            self.outcome.never_reads_stalls += 1;
            conn.client.flush()
        } else {
            self.outcome.never_reads_bytes += NEVER_READS_MESSAGE as u64;
            let payload = [0x4e; NEVER_READS_MESSAGE];
            conn.client
                .ping(b"soak")
                .and_then(|()| conn.client.send_message(Message::Binary(&payload)))
        };
        if let Err(e) = result {
            self.abuse_write_failed(key, Abuse::NeverReads, &e);
        }
    }

    /// A write failed. Only a client that never reads learns of the server's close
    /// this way; the others see it on their next read.
    pub(super) fn abuse_write_failed(&mut self, key: usize, kind: Abuse, error: &io::Error) {
        if kind != Abuse::NeverReads {
            return;
        }
        let observed = if error.kind() == io::ErrorKind::BrokenPipe {
            Observed::Eof
        } else {
            Observed::Reset
        };
        self.finish(key, Ending::Saw(observed));
    }

    /// The round is over: the abuses that run for a time end now, having seen what
    /// they must; those awaiting an answer still await it.
    pub(super) fn abuse_stop(&mut self, key: usize, kind: Abuse) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.state == State::Holding)
        {
            self.finish(key, Ending::Saw(kind.expected_if_held()));
        }
    }
}

/// What an HTTP-level answer was: its status, nothing, or something else.
fn response_observed(response: &[u8]) -> Observed {
    match http_status(response) {
        Some(status) => Observed::Http(status),
        None if response.is_empty() => Observed::Eof,
        None => Observed::Unexpected,
    }
}
