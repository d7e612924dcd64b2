//! A topic's history: positions and a bounded ring of recent messages, for
//! recovery after a reconnect (issue 24; not wired to the reactors yet).
//!
//! Every message published to a topic with history gets a position, its topic's
//! epoch and an offset that grows by exactly one per message, from 1. The ring keeps
//! the newest messages as encoded frames (shared `Bytes`, so a replay to many
//! connections copies nothing), bounded by count, bytes and age; it keeps messages
//! published while nobody subscribes. The epoch is an opaque token that changes
//! whenever the history is lost (a new ring: a restart without a broker), so a
//! client holding a position from before is told to reset, never given a gap.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// What a kept message costs beyond its frame's bytes: its entry in the ring.
pub(crate) const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>();

/// A topic history's epoch: which incarnation of its history a position belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub(crate) u64);

impl Epoch {
    /// A fresh epoch, different from any other in all likelihood: 64 bits from the
    /// process's random hasher keys (no dependency), mixed with the clock.
    pub(crate) fn fresh() -> Epoch {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        hasher.write_u128(now);
        Epoch(hasher.finish())
    }

    /// Parses the text form (16 lowercase hex digits); `None` for anything else.
    pub fn parse(text: &str) -> Option<Epoch> {
        if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Epoch)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({self})")
    }
}

/// Where a message stands in its topic: the epoch and the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    /// The history's incarnation.
    pub epoch: Epoch,
    /// 1 for the first message of the epoch, one more for each after it.
    pub offset: u64,
}

/// How much history a topic keeps: the newest messages up to all three bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept at most.
    pub count: usize,
    /// Bytes of frames (and their entries) kept at most.
    pub bytes: usize,
    /// How long a message is kept (`None`: no age limit).
    pub age: Option<Duration>,
    /// Bytes all topics' histories hold together, at most: past it, a publish
    /// lets go of its own topic's oldest messages (so a flood of new topics cannot
    /// grow the server; it can only shorten histories until its messages age out).
    pub budget: usize,
}

impl Default for HistoryLimits {
    /// 1,000 messages, 1 MiB, 5 minutes per topic: a phone's reconnect after a
    /// tunnel; 64 MiB for all topics together.
    fn default() -> Self {
        HistoryLimits {
            count: 1000,
            bytes: 1 << 20,
            age: Some(Duration::from_secs(300)),
            budget: 64 << 20,
        }
    }
}

/// Why a position cannot be recovered: the subscription starts live from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetReason {
    /// The epoch is not the topic's: its history was lost since (or never was).
    UnknownEpoch,
    /// Messages after the offset have left the history (too old, or too many).
    Evicted,
    /// The offset is past the newest message: not a position this topic gave.
    Future,
}

/// What a subscription from a position got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subscribed {
    /// The topic's newest position when the subscription took effect: every
    /// message after it reaches the subscriber, in order, and none before it
    /// (but those replayed).
    pub position: Position,
    /// Whether missed messages were replayed.
    pub recovery: Recovery,
}

/// Whether a subscription recovered what its connection missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// No position was given: live from now.
    New,
    /// The messages after the position given (this many) were queued to the
    /// connection, oldest first, before the call returned.
    Recovered(usize),
    /// The position could not be recovered: nothing was replayed, live from now.
    Reset(ResetReason),
}

/// A kept message.
struct Entry {
    offset: u64,
    at: Instant,
    frame: Bytes,
}

/// One topic's positions and recent messages.
pub(crate) struct Ring {
    epoch: Epoch,
    /// The offset of the newest message (0: none yet).
    newest: u64,
    entries: VecDeque<Entry>,
    /// Frames' bytes plus [`ENTRY_OVERHEAD`] per entry.
    bytes: usize,
    limits: HistoryLimits,
}

impl Ring {
    pub(crate) fn new(epoch: Epoch, limits: HistoryLimits) -> Ring {
        Ring {
            epoch,
            newest: 0,
            entries: VecDeque::new(),
            bytes: 0,
            limits,
        }
    }

    /// The newest position given (offset 0 before the first message).
    pub(crate) fn newest(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.newest,
        }
    }

    /// What the ring holds now, in bytes (frames and entries).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages kept now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps `frame` as the next message; its position. The oldest messages leave
    /// to stay within the limits. A frame larger than the byte limit is given its
    /// position but not kept, and the messages before it go too: the ring always
    /// holds an unbroken run of offsets ending at the newest, so a replay from it
    /// never skips one.
    pub(crate) fn push(&mut self, frame: Bytes, now: Instant) -> Position {
        self.newest += 1;
        let cost = frame.len() + ENTRY_OVERHEAD;
        if self.limits.count > 0 && cost <= self.limits.bytes {
            self.bytes += cost;
            self.entries.push_back(Entry {
                offset: self.newest,
                at: now,
                frame,
            });
        } else {
            self.entries.clear();
            self.bytes = 0;
        }
        self.evict(now);
        self.newest()
    }

    /// Lets go of the oldest message kept, if any; the bytes it held.
    pub(crate) fn pop_oldest(&mut self) -> usize {
        match self.entries.pop_front() {
            Some(oldest) => {
                let freed = oldest.frame.len() + ENTRY_OVERHEAD;
                self.bytes -= freed;
                freed
            }
            None => 0,
        }
    }

    /// Lets go what is past a limit: too many, too many bytes, too old.
    pub(crate) fn evict(&mut self, now: Instant) {
        while let Some(oldest) = self.entries.front() {
            let too_old = self
                .limits
                .age
                .is_some_and(|age| now.saturating_duration_since(oldest.at) > age);
            if self.entries.len() > self.limits.count || self.bytes > self.limits.bytes || too_old {
                self.bytes -= oldest.frame.len() + ENTRY_OVERHEAD;
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// The messages after `from`, oldest first, if all of them are kept; else why
    /// not. A position at the newest offset recovers nothing, successfully.
    pub(crate) fn since(
        &mut self,
        from: Position,
        now: Instant,
    ) -> Result<Vec<(u64, Bytes)>, ResetReason> {
        if from.epoch != self.epoch {
            return Err(ResetReason::UnknownEpoch);
        }
        if from.offset > self.newest {
            return Err(ResetReason::Future);
        }
        self.evict(now);
        if from.offset == self.newest {
            return Ok(Vec::new());
        }
        // The first message wanted must still be kept: the oldest kept is at most
        // the one right after `from`.
        match self.entries.front() {
            Some(oldest) if oldest.offset <= from.offset + 1 => {}
            _ => return Err(ResetReason::Evicted),
        }
        let skip = (from.offset + 1 - self.entries[0].offset) as usize;
        Ok(self
            .entries
            .iter()
            .skip(skip)
            .map(|e| (e.offset, e.frame.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(count: usize, bytes: usize, age: Option<u64>) -> HistoryLimits {
        HistoryLimits {
            count,
            bytes,
            age: age.map(Duration::from_millis),
            budget: usize::MAX,
        }
    }

    #[test]
    fn offsets_start_at_1_and_grow_by_one() {
        let start = Instant::now();
        let mut ring = Ring::new(Epoch(7), HistoryLimits::default());
        assert_eq!(ring.newest().offset, 0);
        for i in 1..=5 {
            let p = ring.push(Bytes::from(vec![0; 10]), start);
            assert_eq!(
                p,
                Position {
                    epoch: Epoch(7),
                    offset: i
                }
            );
        }
        let from = Position {
            epoch: Epoch(7),
            offset: 2,
        };
        let replay = ring.since(from, start).unwrap();
        assert_eq!(replay.iter().map(|r| r.0).collect::<Vec<_>>(), [3, 4, 5]);
        let newest = Position {
            epoch: Epoch(7),
            offset: 5,
        };
        assert_eq!(ring.since(newest, start).unwrap().len(), 0);
        let future = Position {
            epoch: Epoch(7),
            offset: 6,
        };
        assert_eq!(ring.since(future, start), Err(ResetReason::Future));
        let other = Position {
            epoch: Epoch(8),
            offset: 2,
        };
        assert_eq!(ring.since(other, start), Err(ResetReason::UnknownEpoch));
    }

    #[test]
    fn the_epoch_reads_back_from_its_text() {
        let epoch = Epoch::fresh();
        assert_eq!(Epoch::parse(&epoch.to_string()), Some(epoch));
        assert_ne!(Epoch::fresh(), Epoch::fresh());
        for bad in [
            "",
            "0",
            "0123456789ABCDEF",
            "0123456789abcdeg",
            "0123456789abcdef0",
            "+123456789abcdef",
        ] {
            assert_eq!(Epoch::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn messages_too_old_leave_and_a_position_before_them_resets() {
        let start = Instant::now();
        let mut ring = Ring::new(Epoch(1), limits(100, 1 << 20, Some(1000)));
        ring.push(Bytes::from_static(b"a"), start);
        ring.push(Bytes::from_static(b"b"), start + Duration::from_millis(600));
        let later = start + Duration::from_millis(1200);
        let from_0 = Position {
            epoch: Epoch(1),
            offset: 0,
        };
        assert_eq!(ring.since(from_0, later), Err(ResetReason::Evicted));
        let from_1 = Position {
            epoch: Epoch(1),
            offset: 1,
        };
        assert_eq!(ring.since(from_1, later).unwrap().len(), 1);
        let much_later = start + Duration::from_secs(5);
        assert_eq!(ring.since(from_1, much_later), Err(ResetReason::Evicted));
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.bytes(), 0);
    }

    proptest! {
        /// Against a plain model that keeps everything: a recovery returns exactly
        /// the messages after the position when every one of them is still within
        /// the limits, and an error otherwise; the ring never holds more than its
        /// limits allow.
        #[test]
        fn recovery_matches_a_model(
            count in 1usize..20,
            bytes in 64usize..2048,
            sizes in proptest::collection::vec((0usize..200, 0u64..50), 1..100),
            asks in proptest::collection::vec(0u64..120, 1..20),
        ) {
            let start = Instant::now();
            let age = 500;
            let mut ring = Ring::new(Epoch(3), limits(count, bytes, Some(age)));
            // Everything ever published: (offset, size, time in ms).
            let mut all: Vec<(u64, usize, u64)> = Vec::new();
            let mut t = 0;
            for (size, dt) in sizes {
                t += dt;
                let p = ring.push(Bytes::from(vec![1; size]), start + Duration::from_millis(t));
                all.push((p.offset, size, t));
                prop_assert_eq!(p.offset, all.len() as u64);
                prop_assert!(ring.len() <= count);
                prop_assert!(ring.bytes() <= bytes);
            }
            let now = start + Duration::from_millis(t);
            for ask in asks {
                let from = Position { epoch: Epoch(3), offset: ask };
                let got = ring.since(from, now);
                let newest = all.len() as u64;
                if ask > newest {
                    prop_assert_eq!(got, Err(ResetReason::Future));
                    continue;
                }
                // The model: the newest messages that fit every limit at `now`,
                // kept only if each fit on its own when pushed and stayed since.
                let mut kept: Vec<u64> = Vec::new();
                let (mut n, mut b) = (0usize, 0usize);
                for &(offset, size, at) in all.iter().rev() {
                    let cost = size + ENTRY_OVERHEAD;
                    if n + 1 > count || b + cost > bytes || t - at > age {
                        break;
                    }
                    n += 1;
                    b += cost;
                    kept.push(offset);
                }
                kept.reverse();
                let wanted: Vec<u64> = (ask + 1..=newest).collect();
                let recoverable = wanted.iter().all(|o| kept.contains(o));
                match got {
                    Ok(replay) => {
                        prop_assert!(recoverable);
                        let offsets: Vec<u64> = replay.iter().map(|r| r.0).collect();
                        prop_assert_eq!(offsets, wanted);
                    }
                    Err(reason) => {
                        prop_assert_eq!(reason, ResetReason::Evicted);
                        prop_assert!(!recoverable);
                    }
                }
            }
        }
    }
}
