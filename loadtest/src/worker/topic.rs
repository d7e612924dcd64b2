//! The topic scenario's side of a worker: subscribers on one server, one publisher
//! on the same server or on another node of a cluster, through the pubsub example's
//! text protocol (`sub TOPIC`, `pub TOPIC PAYLOAD`; a subscriber receives
//! `TOPIC PAYLOAD`).
//!
//! The publisher sends on a fixed schedule (open loop). A payload leads with its
//! scheduled time (nanoseconds since the run's clock started) and its sequence
//! number, 16 hex digits each, then the pattern the other scenarios send; latency is
//! from the scheduled time to the delivery, so a stalled server or bridge shows in
//! the percentiles. A subscriber expects the publisher's sequence numbers in order:
//! one already received (a repeat, or one out of order) is a **mismatch**; one
//! skipped is **lost**, counted at the end from the messages sent times the
//! subscribers (`run::execute`).
//!
//! A subscriber counts as open once its subscription is in place: after `sub`, it
//! sends a command the server answers with `error: ...`, and the answer comes after
//! the subscription was made.

use std::time::Instant;

use wsreactor::proto::Message;

use super::{MEASURE, STOP, Worker};
use crate::client::{Failure, Phase, Received};

/// The topic every subscriber subscribes to.
pub const TOPIC: &str = "wsload";
/// Bytes of the header each payload starts with: send time, sequence number.
pub const HEADER: usize = 32;

/// One subscriber's state.
#[derive(Default)]
pub struct Subscriber {
    /// Its subscription is in place.
    ready: bool,
    /// The sequence number expected next.
    next: u64,
}

/// What became of one delivery.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// In order, well formed: its send time.
    Ok(u64),
    /// Malformed, or a sequence number already passed.
    Mismatch,
}

impl Subscriber {
    /// Checks a delivery against `pattern` and the sequence expected.
    fn check(&mut self, text: &str, pattern: &[u8]) -> Delivery {
        let Some(payload) = text
            .strip_prefix(TOPIC)
            .and_then(|rest| rest.strip_prefix(' '))
        else {
            return Delivery::Mismatch;
        };
        let (Some(sent), Some(seq), Some(rest)) = (
            payload.get(..16).and_then(hex),
            payload.get(16..HEADER).and_then(hex),
            payload.get(HEADER..),
        ) else {
            return Delivery::Mismatch;
        };
        if rest.as_bytes() != pattern || seq < self.next {
            return Delivery::Mismatch;
        }
        self.next = seq + 1;
        Delivery::Ok(sent)
    }
}

fn hex(digits: &str) -> Option<u64> {
    u64::from_str_radix(digits, 16).ok()
}

/// The payload of publication `seq`, scheduled `sent` ns after the run's start.
fn payload(sent: u64, seq: u64, pattern: &[u8], out: &mut String) {
    use std::fmt::Write;
    out.clear();
    let _ = write!(out, "pub {TOPIC} {sent:016x}{seq:016x}");
    out.push_str(std::str::from_utf8(pattern).unwrap_or(""));
}

impl Worker {
    /// Sends the next publication (the publisher's worker only).
    pub(super) fn send_publication(&mut self, scheduled: Instant) {
        let Some(key) = self.sender_key else {
            return;
        };
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let pattern = &self.expected[HEADER.min(self.expected.len())..];
        let sent = scheduled.duration_since(self.plan.base).as_nanos() as u64;
        let mut text = std::mem::take(&mut self.text);
        payload(sent, self.outcome.sent, pattern, &mut text);
        let result = client.send_message(Message::Text(&text));
        self.text = text;
        self.outcome.sent += 1;
        if result.is_err() {
            self.drop_client(key, Failure::Reset);
        }
    }

    /// Reads a topic client: the publisher's (nothing is expected), or a
    /// subscriber's: its readiness answer, then deliveries, each checked and timed.
    pub(super) fn readable_topic(&mut self, key: usize, scratch: &mut [u8]) {
        let phase = self.phase;
        let base = self.plan.base;
        let publisher = self.plan.sender;
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.phase == Phase::Connecting {
            return; // the writable event comes with it
        }
        let was_handshaking = client.phase == Phase::Handshaking;
        let pattern = &self.expected[HEADER.min(self.expected.len())..];
        let subscriber = self.subscribers.get_mut(key).and_then(Option::as_mut);
        let latency = &mut self.outcome.latency;
        let (mut received, mut mismatched, mut measured, mut ready) = (0u64, 0u64, 0u64, false);
        let mut subscriber = subscriber;
        let result = client.receive(scratch, &self.limits, None, |_, received_message| {
            let Received::Message(message) = received_message;
            let text = match message {
                Message::Text(text) => text,
                Message::Binary(_) => "",
            };
            let Some(sub) = subscriber.as_deref_mut() else {
                mismatched += 1; // the publisher is not subscribed
                return;
            };
            if !sub.ready && text.starts_with("error: ") {
                sub.ready = true;
                ready = true;
                return;
            }
            received += 1;
            match sub.check(text, pattern) {
                Delivery::Ok(sent) => {
                    if phase == MEASURE {
                        measured += 1;
                        let now = Instant::now().duration_since(base).as_nanos() as u64;
                        let _ = latency.record(now.saturating_sub(sent).max(1));
                    }
                }
                Delivery::Mismatch => mismatched += 1,
            }
        });
        let opened_now = was_handshaking && client.phase == Phase::Open;
        if opened_now {
            self.connecting = self.connecting.saturating_sub(1);
            if publisher {
                self.sender_key = Some(key);
                self.opened += 1;
            } else {
                let subscribe = format!("sub {TOPIC}");
                let sent = client
                    .send_message(Message::Text(&subscribe))
                    .and_then(|()| client.send_message(Message::Text("ready?")));
                if self.subscribers.len() <= key {
                    self.subscribers.resize_with(key + 1, || None);
                }
                self.subscribers[key] = Some(Subscriber::default());
                if sent.is_err() {
                    self.drop_client(key, Failure::Reset);
                    return;
                }
            }
        }
        if ready {
            self.opened += 1;
        }
        self.outcome.received += received;
        self.outcome.errors.mismatch += mismatched;
        self.measured += measured;
        if let Err(failure) = result {
            // A close or reset after the run stopped is the end of the test, not an error.
            if self.phase == STOP {
                return;
            }
            self.drop_client(key, failure);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(sent: u64, seq: u64, pattern: &[u8]) -> String {
        let mut out = String::new();
        payload(sent, seq, pattern, &mut out);
        out.strip_prefix("pub ").unwrap().to_owned()
    }

    #[test]
    fn deliveries_pass_in_order_and_carry_their_send_time() {
        let pattern = b"abcdef";
        let mut sub = Subscriber::default();
        assert_eq!(
            sub.check(&delivery(7, 0, pattern), pattern),
            Delivery::Ok(7)
        );
        assert_eq!(
            sub.check(&delivery(9, 1, pattern), pattern),
            Delivery::Ok(9)
        );
        // A skip passes (lost, counted at the end); a repeat or an earlier one not.
        assert_eq!(
            sub.check(&delivery(9, 5, pattern), pattern),
            Delivery::Ok(9)
        );
        assert_eq!(
            sub.check(&delivery(9, 5, pattern), pattern),
            Delivery::Mismatch
        );
        assert_eq!(
            sub.check(&delivery(9, 3, pattern), pattern),
            Delivery::Mismatch
        );
        assert_eq!(
            sub.check(&delivery(u64::MAX, 6, pattern), pattern),
            Delivery::Ok(u64::MAX)
        );
    }

    #[test]
    fn malformed_deliveries_do_not_pass() {
        let pattern = b"abcdef";
        let mut sub = Subscriber::default();
        let good = delivery(1, 0, pattern);
        for bad in [
            &good[..good.len() - 1],
            &good[1..],
            "other 00000000000000010000000000000000abcdef",
            "wsload 0000000000000001000000000000000zabcdef",
            "wsload",
            "",
        ] {
            assert_eq!(sub.check(bad, pattern), Delivery::Mismatch, "{bad:?}");
        }
        assert_eq!(sub.check(&good, pattern), Delivery::Ok(1));
    }
}
