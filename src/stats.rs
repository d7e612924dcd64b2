//! Counters per reactor: kept as plain integers on the reactor thread, published to
//! atomics once per event-loop turn, read from any thread without a lock.

use std::sync::atomic::{
    AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release, fence,
};

/// Close codes counted one by one: 1000 to 1015. Others share the last bucket.
const CODES: usize = 16;

/// The reactor thread's own counters (no atomics on the hot path).
#[derive(Clone, Debug, Default)]
pub(crate) struct LocalStats {
    pub(crate) accepted: u64,
    pub(crate) rejected: u64,
    pub(crate) deferred_upgrades: u64,
    pub(crate) handoffs: u64,
    pub(crate) upgrades: u64,
    pub(crate) upgrades_tls: u64,
    pub(crate) messages_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) bytes_out: u64,
    pub(crate) dropped: u64,
    pub(crate) write_timeouts: u64,
    pub(crate) read_pauses: u64,
    pub(crate) tls_idle_records: u64,
    pub(crate) panics: u64,
    pub(crate) failed_reactors: u64,
    pub(crate) turns: u64,
    pub(crate) compressed_out: u64,
    pub(crate) compressors: u64,
    pub(crate) tls_handshakes: u64,
    pub(crate) tls_resumed: u64,
    pub(crate) topics: u64,
    pub(crate) subscriptions: u64,
    pub(crate) closes: [u64; CODES + 1],
}

impl LocalStats {
    pub(crate) fn count_close(&mut self, code: u16) {
        let i = usize::from(code.wrapping_sub(1000)).min(CODES);
        self.closes[i] += 1;
    }
}

/// The published counters of one reactor, read whole: a sequence lock (one writer,
/// the reactor; readers retry while it writes), so that a snapshot is one turn's
/// counters, never some of one turn's and some of the next (with `open` already 0
/// but the close that made it 0 not yet counted, say).
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    /// Odd while the reactor writes; moves by two per publication.
    seq: AtomicU64,
    open: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    deferred_upgrades: AtomicU64,
    handoffs: AtomicU64,
    upgrades: AtomicU64,
    upgrades_tls: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    dropped: AtomicU64,
    write_timeouts: AtomicU64,
    read_pauses: AtomicU64,
    tls_idle_records: AtomicU64,
    panics: AtomicU64,
    failed_reactors: AtomicU64,
    turns: AtomicU64,
    compressed_out: AtomicU64,
    compressors: AtomicU64,
    tls_handshakes: AtomicU64,
    tls_resumed: AtomicU64,
    topics: AtomicU64,
    subscriptions: AtomicU64,
    closes: [AtomicU64; CODES + 1],
}

impl SharedStats {
    /// Publishes the reactor's counters (one writer: the reactor's thread).
    pub(crate) fn publish(&self, local: &LocalStats, open: usize) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        // The odd sequence is seen before any counter this publication writes.
        fence(Release);
        self.open.store(open as u64, Relaxed);
        self.accepted.store(local.accepted, Relaxed);
        self.rejected.store(local.rejected, Relaxed);
        self.deferred_upgrades
            .store(local.deferred_upgrades, Relaxed);
        self.handoffs.store(local.handoffs, Relaxed);
        self.upgrades.store(local.upgrades, Relaxed);
        self.upgrades_tls.store(local.upgrades_tls, Relaxed);
        self.messages_in.store(local.messages_in, Relaxed);
        self.bytes_in.store(local.bytes_in, Relaxed);
        self.messages_out.store(local.messages_out, Relaxed);
        self.bytes_out.store(local.bytes_out, Relaxed);
        self.dropped.store(local.dropped, Relaxed);
        self.write_timeouts.store(local.write_timeouts, Relaxed);
        self.read_pauses.store(local.read_pauses, Relaxed);
        self.tls_idle_records.store(local.tls_idle_records, Relaxed);
        self.panics.store(local.panics, Relaxed);
        self.failed_reactors.store(local.failed_reactors, Relaxed);
        self.turns.store(local.turns, Relaxed);
        self.compressed_out.store(local.compressed_out, Relaxed);
        self.compressors.store(local.compressors, Relaxed);
        self.tls_handshakes.store(local.tls_handshakes, Relaxed);
        self.tls_resumed.store(local.tls_resumed, Relaxed);
        self.topics.store(local.topics, Relaxed);
        self.subscriptions.store(local.subscriptions, Relaxed);
        for (cell, value) in self.closes.iter().zip(local.closes) {
            cell.store(value, Relaxed);
        }
        // Every counter is seen before the even sequence that says they are whole.
        self.seq.store(seq.wrapping_add(2), Release);
    }

    /// The counters of one publication, whole: read again if the reactor published
    /// meanwhile (a publication takes well under a microsecond).
    pub(crate) fn snapshot(&self) -> Stats {
        loop {
            let before = self.seq.load(Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let stats = self.read();
            // The counters are read before the sequence is read again.
            fence(Acquire);
            if self.seq.load(Relaxed) == before {
                return stats;
            }
        }
    }

    fn read(&self) -> Stats {
        Stats {
            open: self.open.load(Relaxed),
            accepted: self.accepted.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            deferred_upgrades: self.deferred_upgrades.load(Relaxed),
            handoffs: self.handoffs.load(Relaxed),
            upgrades: self.upgrades.load(Relaxed),
            upgrades_tls: self.upgrades_tls.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            write_timeouts: self.write_timeouts.load(Relaxed),
            read_pauses: self.read_pauses.load(Relaxed),
            tls_idle_records: self.tls_idle_records.load(Relaxed),
            panics: self.panics.load(Relaxed),
            failed_reactors: self.failed_reactors.load(Relaxed),
            loop_turns: self.turns.load(Relaxed),
            compressed_out: self.compressed_out.load(Relaxed),
            compressors: self.compressors.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_resumed: self.tls_resumed.load(Relaxed),
            topics: self.topics.load(Relaxed),
            subscriptions: self.subscriptions.load(Relaxed),
            #[cfg(feature = "redis")]
            bridge: None,
            closes: std::array::from_fn(|i| self.closes[i].load(Relaxed)),
            history_topics: 0,
            history_messages: 0,
            history_bytes: 0,
        }
    }
}

/// A snapshot of a reactor's counters (or their sum over reactors). Counters are
/// published once per event-loop turn, so a snapshot may trail by one turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now (in the handshake or after it).
    pub open: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Upgrade requests refused (400, 403, 426, 431, timeouts) since start.
    pub rejected: u64,
    /// Upgrades the handler answered later ([`Upgrade::later`](crate::Upgrade::later)),
    /// since start.
    pub deferred_upgrades: u64,
    /// Connections handed over by another server
    /// ([`ServerHandle::upgrade`](crate::ServerHandle::upgrade)) and opened, since
    /// start.
    pub handoffs: u64,
    /// WebSocket handshakes completed (connections opened: `on_open` called), ws
    /// and wss, since start.
    pub upgrades: u64,
    /// Of those, the ones over TLS (wss).
    pub upgrades_tls: u64,
    /// Messages received.
    pub messages_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Messages sent (or queued).
    pub messages_out: u64,
    /// Payload bytes sent (or queued).
    pub bytes_out: u64,
    /// Messages dropped at the backpressure limit: by the policy
    /// ([`Drop`](crate::BackpressurePolicy::Drop), [`Close`](crate::BackpressurePolicy::Close),
    /// [`DropOldest`](crate::BackpressurePolicy::DropOldest)), or, under
    /// [`Pause`](crate::BackpressurePolicy::Pause), a [`Sender`](crate::Sender) send,
    /// broadcast or publication that met a full queue.
    pub dropped: u64,
    /// Connections dropped by the write timeout (also counted as closed with 1008).
    pub write_timeouts: u64,
    /// How many times a connection's reading was paused because its queue passed
    /// [`Config::max_backpressure`](crate::Config::max_backpressure) (it resumes once
    /// the queue is down to half the limit). A paused peer is pushed back by TCP
    /// flow control; nothing it sent is lost.
    pub read_pauses: u64,
    /// wss connections dropped for sending TLS records without application data
    /// past the allowance: 64 KiB of them in a row once the handshake is done
    /// (empty records, key updates: a reactor's work that carries no message).
    pub tls_idle_records: u64,
    /// Panics caught while serving a connection, in a callback or in the engine
    /// (proto, the deflate codec, the TLS filter): each closed its connection with
    /// 1011, and the reactor went on.
    pub panics: u64,
    /// Reactors that ended on a panic no connection's guard caught: their
    /// connections were closed (1011 to `on_close`) and their subscriptions
    /// released; [`ServerHandle::wait`](crate::ServerHandle::wait) then reports
    /// [`Error::ReactorPanicked`](crate::Error::ReactorPanicked).
    pub failed_reactors: u64,
    /// Event-loop turns: a busy reactor makes one per batch of events, an idle one
    /// about one per timer tick. A figure that grows by millions a second on an idle
    /// server means the loop spins.
    pub loop_turns: u64,
    /// Messages sent compressed with permessage-deflate (also counted in
    /// `messages_out`; their `bytes_out` are the compressed bytes).
    pub compressed_out: u64,
    /// Dedicated compressors held now (one per connection that sent a compressed
    /// message recently; see [`Deflate::release_after`](crate::Deflate::release_after)).
    pub compressors: u64,
    /// TLS handshakes completed on wss listeners, full and resumed, since start.
    pub tls_handshakes: u64,
    /// Of those, the resumed ones (a session ticket or id).
    pub tls_resumed: u64,
    /// Topics with a subscriber now, counted per reactor (a topic with
    /// subscribers on two reactors counts twice; [`Sender::subscribers`](crate::Sender::subscribers)
    /// counts one topic's subscribers over all).
    pub topics: u64,
    /// Subscriptions now: (connection, topic) pairs.
    pub subscriptions: u64,
    /// Topics with a history ([`Config::history`](crate::Config::history)), the
    /// messages their histories keep, and the bytes those hold (frames and
    /// entries), over the whole server: in [`Sender::stats`](crate::Sender::stats)
    /// and [`ServerHandle::stats`](crate::ServerHandle::stats), 0 in each
    /// reactor's own counters.
    pub history_topics: u64,
    /// See [`history_topics`](Self::history_topics).
    pub history_messages: u64,
    /// See [`history_topics`](Self::history_topics).
    pub history_bytes: u64,
    /// The bridge to other nodes through Redis (feature `redis`): its state and
    /// counters, in [`ServerHandle::stats`](crate::ServerHandle::stats); `None`
    /// without a bridge, and in each reactor's own counters.
    #[cfg(feature = "redis")]
    pub bridge: Option<crate::bridge::BridgeStats>,
    closes: [u64; CODES + 1],
}

impl Stats {
    /// How many opened connections ended with close code `code` (as reported to
    /// `on_close`). Codes outside 1000–1015 are counted together: ask for any of them.
    pub fn closed_with(&self, code: u16) -> u64 {
        self.closes[usize::from(code.wrapping_sub(1000)).min(CODES)]
    }

    /// How many opened connections have closed, whatever the code.
    pub fn closed(&self) -> u64 {
        self.closes.iter().sum()
    }

    /// The sum of several snapshots.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Stats>) -> Stats {
        let mut total = Stats::default();
        for s in all {
            total.open += s.open;
            total.accepted += s.accepted;
            total.rejected += s.rejected;
            total.deferred_upgrades += s.deferred_upgrades;
            total.handoffs += s.handoffs;
            total.upgrades += s.upgrades;
            total.upgrades_tls += s.upgrades_tls;
            total.messages_in += s.messages_in;
            total.bytes_in += s.bytes_in;
            total.messages_out += s.messages_out;
            total.bytes_out += s.bytes_out;
            total.dropped += s.dropped;
            total.write_timeouts += s.write_timeouts;
            total.read_pauses += s.read_pauses;
            total.tls_idle_records += s.tls_idle_records;
            total.panics += s.panics;
            total.failed_reactors += s.failed_reactors;
            total.loop_turns += s.loop_turns;
            total.compressed_out += s.compressed_out;
            total.compressors += s.compressors;
            total.tls_handshakes += s.tls_handshakes;
            total.tls_resumed += s.tls_resumed;
            total.topics += s.topics;
            total.subscriptions += s.subscriptions;
            for (t, c) in total.closes.iter_mut().zip(s.closes) {
                *t += c;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_bucketed_by_code() {
        let mut local = LocalStats::default();
        for code in [1000, 1000, 1009, 1011, 4000, 999] {
            local.count_close(code);
        }
        let shared = SharedStats::default();
        shared.publish(&local, 3);
        let s = shared.snapshot();
        assert_eq!(
            (
                s.closed_with(1000),
                s.closed_with(1009),
                s.closed_with(1011)
            ),
            (2, 1, 1)
        );
        assert_eq!(
            s.closed_with(4000),
            2,
            "4000 and 999 share the other bucket"
        );
        assert_eq!((s.closed(), s.open), (6, 3));
        let total = Stats::sum([&s, &s]);
        assert_eq!((total.closed_with(1000), total.open), (4, 6));
    }

    /// A reader never sees part of one publication and part of another: the
    /// reactor publishes `n` in every counter, for n = 1, 2, 3 ..., and every
    /// snapshot taken meanwhile holds one n throughout (without the sequence lock a
    /// reader preempted between two loads saw `open` of one turn and the closes of
    /// an earlier one).
    #[test]
    fn a_snapshot_is_one_publication_whole() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        const PUBLICATIONS: u64 = 200_000;
        let shared = Arc::new(SharedStats::default());
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (shared, done) = (Arc::clone(&shared), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut seen = 0;
                    while !done.load(Relaxed) {
                        let s = shared.snapshot();
                        let n = s.open;
                        assert!(
                            [
                                s.accepted,
                                s.messages_in,
                                s.dropped,
                                s.loop_turns,
                                s.compressors
                            ]
                            .iter()
                            .chain(s.closes.iter())
                            .all(|&v| v == n),
                            "a torn snapshot: {s:?}"
                        );
                        assert!(n >= seen, "went back from {seen} to {n}");
                        seen = n;
                    }
                })
            })
            .collect();
        let mut local = LocalStats::default();
        for n in 1..=PUBLICATIONS {
            local.accepted = n;
            local.messages_in = n;
            local.dropped = n;
            local.turns = n;
            local.compressors = n;
            local.closes = [n; CODES + 1];
            shared.publish(&local, n as usize);
        }
        done.store(true, Relaxed);
        for reader in readers {
            reader.join().unwrap();
        }
        assert_eq!(shared.snapshot().open, PUBLICATIONS);
    }
}
