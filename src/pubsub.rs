//! Pub/sub topics: the names, the results of a publish, and the registry the
//! reactors share to know which of them have subscribers.
//!
//! Each reactor keeps its own subscriber lists (`reactor/topics.rs`); what is
//! shared is only how many subscribers each reactor has per topic, updated by every
//! subscribe and unsubscribe under one lock, so that a publish goes only to the
//! reactors that have subscribers, and a message published after `subscribe`
//! returned finds the subscriber's reactor.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::history::{Epoch, HistoryLimits, Position, ResetReason, Ring};
use crate::reactor::{Command, Shared};
use crate::status::QueueStatus;

/// The longest topic name, in bytes. Topics are byte strings (UTF-8 is not
/// required); a longer name is refused with [`TopicError::TooLong`].
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a subscription was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic name is longer than [`MAX_TOPIC_LEN`] (the caller's fault).
    TooLong,
    /// The connection already has
    /// [`Config::max_subscriptions`](crate::Config::max_subscriptions) subscriptions,
    /// or their names would add up to more than
    /// [`Config::max_subscription_bytes`](crate::Config::max_subscription_bytes)
    /// (the caller's fault, or a peer asking for too many).
    TooMany,
    /// The connection is closing: nothing more will be delivered to it.
    Closed,
    /// A subscription from a position asked of a server that keeps no history
    /// ([`Config::history`](crate::Config::history)).
    NoHistory,
    /// A subscription from a position on a topic the connection subscribes to
    /// already: its messages are on their way; unsubscribe first to start again.
    AlreadySubscribed,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicError::TooLong => "topic name too long",
            TopicError::TooMany => "too many subscriptions on one connection",
            TopicError::Closed => "the connection is closing",
            TopicError::NoHistory => "the server keeps no history",
            TopicError::AlreadySubscribed => "already subscribed to the topic",
        })
    }
}

impl std::error::Error for TopicError {}

/// What became of a publish: how many subscribers it reached and how many it was
/// dropped for, so that nothing is lost silently.
///
/// Subscribers on the publishing reactor (for [`Socket::publish`]) are served before
/// the call returns: `reached` and `dropped` count them. Subscribers on other
/// reactors are served by their reactor's command queue: `forwarded` counts those
/// whose reactor queued the message (each then applies its subscriber's backpressure
/// limit, and counts drops in [`Stats::dropped`] and per connection), `refused` those
/// whose reactor could not take it (its queue full, or the server shut down).
///
/// [`Socket::publish`]: crate::Socket::publish
/// [`Stats::dropped`]: crate::Stats::dropped
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// Subscribers the message was written or queued for.
    pub reached: usize,
    /// Subscribers it was dropped for, at their backpressure limit.
    pub dropped: usize,
    /// Subscribers on other reactors whose reactor queued it.
    pub forwarded: usize,
    /// Subscribers on other reactors whose reactor refused it: not delivered.
    pub refused: usize,
    /// The message's position in its topic's history, when the server keeps one
    /// and it was published with a position (`publish_positioned`).
    pub position: Option<Position>,
}

/// Every topic's history, and what they hold together.
#[derive(Default)]
pub(crate) struct Histories {
    rings: HashMap<Arc<[u8]>, Ring>,
    /// The sum of the rings' bytes.
    bytes: usize,
}

impl Histories {
    /// The ring of `topic` in `rings`, made (with a fresh epoch) if it has none.
    fn ring<'a>(
        rings: &'a mut HashMap<Arc<[u8]>, Ring>,
        topic: &[u8],
        limits: HistoryLimits,
    ) -> &'a mut Ring {
        if !rings.contains_key(topic) {
            rings.insert(Arc::from(topic), Ring::new(Epoch::fresh(), limits));
        }
        match rings.get_mut(topic) {
            Some(ring) => ring,
            None => unreachable!("inserted above"),
        }
    }
}

/// What a subscription from a position replays: the missed messages (offset,
/// frame), oldest first, or why they cannot be.
pub(crate) type Replay = Result<Vec<(u64, Bytes)>, ResetReason>;

/// Subscribers per reactor (indexed by reactor), per topic.
pub(crate) type CountMap = HashMap<Arc<[u8]>, Box<[u32]>>;

/// How many subscribers each reactor has, per topic.
#[derive(Default)]
pub(crate) struct TopicCounts {
    counts: Mutex<CountMap>,
    /// Each topic's history, when the server keeps one (`Config::history`). Locked
    /// before `counts` whenever both are held.
    histories: Mutex<Histories>,
    history: Option<HistoryLimits>,
    reactors: usize,
    /// The bridge to other nodes: told when a topic gets its first subscriber on
    /// this node or loses its last, and given every publication.
    #[cfg(feature = "redis")]
    bridge: Option<std::sync::Arc<crate::bridge::Link>>,
}

impl TopicCounts {
    pub(crate) fn new(reactors: usize) -> TopicCounts {
        TopicCounts {
            counts: Mutex::new(HashMap::new()),
            histories: Mutex::new(Histories::default()),
            history: None,
            reactors,
            #[cfg(feature = "redis")]
            bridge: None,
        }
    }

    /// Counts for a node bridged to others through `link`.
    #[cfg(feature = "redis")]
    pub(crate) fn with_bridge(
        reactors: usize,
        link: std::sync::Arc<crate::bridge::Link>,
    ) -> TopicCounts {
        TopicCounts {
            bridge: Some(link),
            ..TopicCounts::new(reactors)
        }
    }

    /// The bridge to other nodes, if any.
    #[cfg(feature = "redis")]
    pub(crate) fn bridge(&self) -> Option<&std::sync::Arc<crate::bridge::Link>> {
        self.bridge.as_ref()
    }

    /// Hands a publication to the bridge, for the other nodes.
    pub(crate) fn to_other_nodes(&self, _topic: &[u8], _frame: &bytes::Bytes) {
        #[cfg(feature = "redis")]
        if let Some(link) = &self.bridge {
            link.publish(_topic, _frame);
        }
    }

    /// Tells the bridge that `topic` got its first subscriber or lost its last.
    fn first_or_last(&self, _topic: &[u8]) {
        #[cfg(feature = "redis")]
        if let Some(link) = &self.bridge {
            link.topic_changed(_topic);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, CountMap> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The same, keeping `history` per topic.
    pub(crate) fn with_history(mut self, history: Option<HistoryLimits>) -> TopicCounts {
        self.history = history;
        self
    }

    /// Whether topics keep a history (positions, recovery).
    pub(crate) fn has_history(&self) -> bool {
        self.history.is_some()
    }

    fn histories(&self) -> MutexGuard<'_, Histories> {
        self.histories
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes to a topic with history: the message gets the next position,
    /// `build` makes its frame knowing it, the ring keeps it, and every reactor with
    /// subscribers gets it through its queue, all under the histories' lock, so
    /// each reactor's queue holds the topic's messages in offset order. `None`
    /// without history.
    pub(crate) fn publish_positioned(
        &self,
        topic: &[u8],
        reactors: &[Arc<Shared>],
        except: Option<crate::ConnId>,
        build: impl FnOnce(Position) -> Bytes,
        published: &mut Published,
    ) -> Option<Position> {
        let limits = self.history?;
        let mut guard = self.histories();
        let histories = &mut *guard;
        let ring = Histories::ring(&mut histories.rings, topic, limits);
        let next = Position {
            epoch: ring.newest().epoch,
            offset: ring.newest().offset + 1,
        };
        let frame = build(next);
        let before = ring.bytes();
        let position = ring.push(frame.clone(), std::time::Instant::now());
        // Past the server-wide budget, this topic's own oldest messages go.
        let mut after = ring.bytes();
        while histories.bytes - before + after > limits.budget && after > 0 {
            after -= ring.pop_oldest();
        }
        histories.bytes = histories.bytes - before + after;
        let counts = self.lock();
        if let Some(per_reactor) = counts.get(topic) {
            let name = Bytes::copy_from_slice(topic);
            for (&count, reactor) in per_reactor.iter().zip(reactors) {
                if count == 0 {
                    continue;
                }
                let command = Command::Publish {
                    topic: name.clone(),
                    frame: frame.clone(),
                    except,
                    offset: Some(position.offset),
                };
                match reactor.push(command) {
                    QueueStatus::Queued => published.forwarded += count as usize,
                    _ => published.refused += count as usize,
                }
            }
        }
        Some(position)
    }

    /// Under the histories' lock: what a subscription from `from` recovers from
    /// `topic`'s history, and the newest position, then `register` (the caller's
    /// subscribe, which counts the subscriber), so that every message after that
    /// position reaches the new subscriber through its reactor's queue.
    pub(crate) fn join<R>(
        &self,
        topic: &[u8],
        from: Option<Position>,
        register: impl FnOnce() -> R,
    ) -> Option<(Position, Replay, R)> {
        let limits = self.history?;
        let mut guard = self.histories();
        let histories = &mut *guard;
        let ring = Histories::ring(&mut histories.rings, topic, limits);
        let now = std::time::Instant::now();
        let before = ring.bytes();
        let replay = match from {
            Some(from) => ring.since(from, now),
            None => Ok(Vec::new()),
        };
        histories.bytes -= before - ring.bytes();
        let newest = ring.newest();
        let registered = register();
        Some((newest, replay, registered))
    }

    /// Messages and bytes the topics' histories hold now, and how many topics have one.
    pub(crate) fn history_usage(&self) -> (u64, u64, u64) {
        let histories = self.histories();
        let messages = histories.rings.values().map(|r| r.len() as u64).sum();
        (
            histories.rings.len() as u64,
            messages,
            histories.bytes as u64,
        )
    }

    /// Lets go of what has aged out of every history, and forgets the histories
    /// that hold nothing and have no subscriber (their epoch goes with them: a
    /// later resume from it resets). Reactor 0 calls it about once a second.
    pub(crate) fn sweep_histories(&self) {
        if self.history.is_none() {
            return;
        }
        let now = std::time::Instant::now();
        let mut guard = self.histories();
        let histories = &mut *guard;
        let counts = self.lock();
        let mut bytes = 0;
        histories.rings.retain(|topic, ring| {
            ring.evict(now);
            bytes += ring.bytes();
            ring.len() > 0 || counts.contains_key(topic)
        });
        histories.bytes = bytes;
    }

    /// Counts one more subscriber of `topic` on `reactor`. The name is the
    /// reactor's interned one: the first reactor to subscribe shares it here.
    pub(crate) fn add(&self, topic: &Arc<[u8]>, reactor: usize) {
        let mut counts = self.lock();
        let per_reactor = match counts.get_mut(&**topic) {
            Some(c) => c,
            None => {
                if reactor < self.reactors {
                    self.first_or_last(topic);
                }
                counts
                    .entry(topic.clone())
                    .or_insert_with(|| vec![0; self.reactors].into())
            }
        };
        if let Some(c) = per_reactor.get_mut(reactor) {
            *c += 1;
        }
    }

    /// Counts one subscriber fewer; forgets the topic when nobody subscribes.
    pub(crate) fn remove(&self, topic: &[u8], reactor: usize) {
        let mut counts = self.lock();
        if let Some(per_reactor) = counts.get_mut(topic) {
            if let Some(c) = per_reactor.get_mut(reactor) {
                *c = c.saturating_sub(1);
            }
            if per_reactor.iter().all(|&c| c == 0) {
                counts.remove(topic);
                self.first_or_last(topic);
            }
        }
    }

    /// How many connections subscribe to `topic`, over every reactor.
    pub(crate) fn total(&self, topic: &[u8]) -> usize {
        self.lock()
            .get(topic)
            .map_or(0, |c| c.iter().map(|&n| n as usize).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_subscribes_and_forget_empty_topics() {
        let counts = TopicCounts::new(2);
        let a: Arc<[u8]> = Arc::from(&b"a"[..]);
        counts.add(&a, 0);
        counts.add(&a, 1);
        counts.add(&a, 1);
        assert_eq!(counts.total(b"a"), 3);
        counts.remove(b"a", 1);
        counts.remove(b"a", 1);
        counts.remove(b"a", 0);
        assert_eq!(counts.total(b"a"), 0);
        assert!(counts.lock().is_empty());
        counts.remove(b"never", 0);
        counts.add(&Arc::from(&b"b"[..]), 7); // no such reactor: ignored
        assert_eq!(counts.total(b"b"), 0);
    }
}
