//! The fanout scenario's side of a worker: every client sends one message, the server
//! publishes it to every client (the sender included), and a client sends its next
//! message once it has received N since its last send, N being every connection of
//! the run: rounds of N² deliveries, the shape of uWebSockets'
//! `benchmarks/broadcast_test.c`.
//!
//! A payload starts with its sender's index and round (two little-endian `u32`), then
//! the pattern the other scenarios send. wsreactor delivers one publisher's messages
//! to each subscriber in publish order, exactly once, so a receiver keeps the round
//! it expects next from each sender: a message from an earlier round (a repeat, or
//! one out of order) is a mismatch, as is one of the wrong length or content. A
//! skipped round is found at the end instead, when the run sets the deliveries
//! against the messages sent times the connections open (`run::execute`).
//!
//! The load generator must not be the bottleneck: per delivery a receiver decodes the
//! frame, compares its bytes and touches one counter; the clock is read once a round.

use std::time::Instant;

use wsreactor::proto::Message;

use super::{MEASURE, STOP, Worker};
use crate::client::{Client, Failure, Phase, Received};

/// Bytes of the header each payload starts with: sender index, round.
pub const HEADER: usize = 8;

/// One client's rounds.
pub struct Peer {
    /// This client's index in the run (0..N): the sender in its payloads.
    index: u32,
    /// Messages sent; the next one carries this round.
    round: u32,
    /// Messages received since the last send.
    since_send: usize,
    /// A round is in progress: sent, and fewer than N received since.
    waiting: bool,
    sent_at: Instant,
    /// The round expected next from each sender, modulo 2^16: two bytes a sender, so
    /// the run's tables take N² × 2 bytes (200 MB at 10,000 connections), and a
    /// bounded run sends far fewer than 2^15 rounds.
    next: Vec<u16>,
}

/// What a worker counts from one read of one client.
#[derive(Default)]
struct Tally {
    sent: u64,
    received: u64,
    mismatched: u64,
    send_failed: bool,
}

impl Peer {
    /// A client with index `index` in a run of `connections`.
    pub fn new(index: usize, connections: usize) -> Peer {
        Peer {
            index: index as u32,
            round: 0,
            since_send: 0,
            waiting: false,
            sent_at: Instant::now(),
            next: vec![0; connections],
        }
    }

    /// Whether `message` is well formed: binary, `HEADER` plus `pattern` long, the
    /// pattern after the header, from a sender of the run, and not from a round
    /// already received from that sender. A later round than expected passes (the
    /// missing one is counted as lost at the end) and is expected from then on.
    fn check(&mut self, message: &Message<'_>, pattern: &[u8]) -> bool {
        let Message::Binary(payload) = message else {
            return false;
        };
        let Some((header, rest)) = payload.split_first_chunk::<HEADER>() else {
            return false;
        };
        if rest != pattern {
            return false;
        }
        let [s0, s1, s2, s3, r0, r1, _, _] = *header;
        let sender = u32::from_le_bytes([s0, s1, s2, s3]) as usize;
        let round = u16::from_le_bytes([r0, r1]);
        let Some(next) = self.next.get_mut(sender) else {
            return false;
        };
        // Half the u16 range behind the expected round is the past.
        if round.wrapping_sub(*next) >= 0x8000 {
            return false;
        }
        *next = round.wrapping_add(1);
        true
    }

    /// Writes this client's next payload into `payload`.
    fn payload(&self, pattern: &[u8], payload: &mut Vec<u8>) {
        payload.clear();
        payload.extend_from_slice(&self.index.to_le_bytes());
        payload.extend_from_slice(&self.round.to_le_bytes());
        payload.extend_from_slice(pattern);
    }

    /// Sends the next round's message on `client`.
    fn send(&mut self, client: &mut Client, pattern: &[u8], payload: &mut Vec<u8>) -> bool {
        self.payload(pattern, payload);
        if client.send_message(Message::Binary(payload)).is_err() {
            return false;
        }
        self.round += 1;
        self.since_send = 0;
        self.waiting = true;
        self.sent_at = Instant::now();
        true
    }
}

impl Worker {
    /// Sends a client's next message if it has no round in progress (when sending
    /// starts, or when it opens while the load runs).
    pub(super) fn start_round(&mut self, key: usize) {
        let pattern = &self.expected[HEADER.min(self.expected.len())..];
        let (Some(client), Some(Some(peer))) = (self.clients.get_mut(key), self.peers.get_mut(key))
        else {
            return;
        };
        if client.phase != Phase::Open || peer.waiting {
            return;
        }
        if peer.send(client, pattern, &mut self.batch) {
            self.outcome.sent += 1;
        } else {
            self.drop_client(key, Failure::Reset);
        }
    }

    /// Reads a fanout client: counts and checks every delivery, times each completed
    /// round, and sends the next message while the load runs.
    pub(super) fn readable_fanout(&mut self, key: usize, scratch: &mut [u8]) {
        let (phase, sending) = (self.phase, self.sending());
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.phase == Phase::Connecting {
            return; // the writable event comes with it
        }
        let was_handshaking = client.phase == Phase::Handshaking;
        let pattern = &self.expected[HEADER.min(self.expected.len())..];
        let connections = self.plan.total_connections;
        let peer = self.peers.get_mut(key).and_then(Option::as_mut);
        let latency = &mut self.outcome.latency;
        let payload = &mut self.batch;
        let mut tally = Tally::default();
        let result = match peer {
            Some(peer) => client.receive(scratch, &self.limits, None, |client, received| {
                let Received::Message(message) = received;
                tally.received += 1;
                if !peer.check(&message, pattern) {
                    tally.mismatched += 1;
                }
                peer.since_send += 1;
                if !peer.waiting || peer.since_send < connections {
                    return;
                }
                // The N-th delivery since this client's send: its round is complete.
                peer.waiting = false;
                if phase == MEASURE {
                    let _ = latency.record((peer.sent_at.elapsed().as_nanos() as u64).max(1));
                }
                if sending && !tally.send_failed {
                    if peer.send(client, pattern, payload) {
                        tally.sent += 1;
                    } else {
                        tally.send_failed = true;
                    }
                }
            }),
            // Every fanout client has one from its connect on.
            None => Err(Failure::Protocol),
        };
        let opened_now = was_handshaking && client.phase == Phase::Open;
        if opened_now {
            self.opened_one(key);
        }
        self.outcome.sent += tally.sent;
        self.outcome.received += tally.received;
        self.outcome.errors.mismatch += tally.mismatched;
        if phase == MEASURE {
            self.measured += tally.received;
        }
        if tally.send_failed {
            self.drop_client(key, Failure::Reset);
            return;
        }
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

    fn message(sender: u32, round: u32, pattern: &[u8]) -> Vec<u8> {
        let mut peer = Peer::new(sender as usize, 0);
        peer.round = round;
        let mut payload = Vec::new();
        peer.payload(pattern, &mut payload);
        payload
    }

    #[test]
    fn each_round_of_each_sender_passes_once() {
        let pattern = [7u8; 24];
        let mut peer = Peer::new(0, 3);
        for round in 0..3 {
            for sender in [2, 0, 1] {
                let m = message(sender, round, &pattern);
                assert!(peer.check(&Message::Binary(&m), &pattern));
            }
        }
        // A repeat, and an earlier round, are not.
        let again = message(1, 2, &pattern);
        assert!(!peer.check(&Message::Binary(&again), &pattern));
        let earlier = message(0, 0, &pattern);
        assert!(!peer.check(&Message::Binary(&earlier), &pattern));
        // A skipped round passes (it is lost, counted at the end); the next follows it.
        let skipped = message(2, 5, &pattern);
        assert!(peer.check(&Message::Binary(&skipped), &pattern));
        assert!(peer.check(&Message::Binary(&message(2, 6, &pattern)), &pattern));
        assert!(!peer.check(&Message::Binary(&message(2, 4, &pattern)), &pattern));
    }

    #[test]
    fn rounds_wrap_around_two_bytes() {
        let pattern = [1u8; 4];
        let mut peer = Peer::new(0, 1);
        peer.next[0] = u16::MAX;
        assert!(peer.check(&Message::Binary(&message(0, 65_535, &pattern)), &pattern));
        assert!(peer.check(&Message::Binary(&message(0, 65_536, &pattern)), &pattern));
        assert!(!peer.check(&Message::Binary(&message(0, 65_535, &pattern)), &pattern));
    }

    #[test]
    fn malformed_messages_do_not_pass() {
        let pattern = [9u8; 24];
        let mut peer = Peer::new(0, 2);
        let good = message(1, 0, &pattern);
        // Too short, too long, wrong content, a sender outside the run, text.
        assert!(!peer.check(&Message::Binary(&good[..good.len() - 1]), &pattern));
        let mut long = good.clone();
        long.push(9);
        assert!(!peer.check(&Message::Binary(&long), &pattern));
        let mut wrong = good.clone();
        wrong[HEADER + 3] ^= 1;
        assert!(!peer.check(&Message::Binary(&wrong), &pattern));
        assert!(!peer.check(&Message::Binary(&message(2, 0, &pattern)), &pattern));
        assert!(!peer.check(&Message::Binary(&good[..4]), &pattern));
        let text = message(1, 0, b"abc");
        let text = std::str::from_utf8(&text).unwrap();
        assert!(!peer.check(&Message::Text(text), b"abc"));
        // None of them moved the expected round.
        assert!(peer.check(&Message::Binary(&good), &pattern));
    }
}
