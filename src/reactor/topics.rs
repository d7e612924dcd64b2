//! A reactor's own pub/sub registry: which of its connections subscribe to what.
//!
//! Topic names are interned once per reactor. A topic holds its subscribers' slab
//! keys in a `Vec` (4 bytes a subscription); a subscribed connection holds its topics
//! and its place in each topic's list (8 bytes a subscription), so that unsubscribing
//! and closing cost O(its subscriptions), not O(the topic's subscribers). Keys need
//! no generation: a connection's subscriptions are removed before its slot can be
//! reused.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use slab::Slab;

use super::commands::{Command, Shared};
use super::conn::{Conn, flag};
use super::output::{Output, Owner};
use crate::handler::ConnId;
use crate::pubsub::{MAX_TOPIC_LEN, Published, TopicCounts, TopicError};
use crate::status::{QueueStatus, SendStatus};

/// A reactor's pub/sub state: its registry, and what it needs to reach the others.
pub(crate) struct PubSub {
    pub(crate) topics: Topics,
    pub(crate) counts: Arc<TopicCounts>,
    pub(crate) reactors: Arc<[Arc<Shared>]>,
    pub(crate) index: usize,
    /// Subscriptions allowed per connection.
    pub(crate) cap: usize,
    /// Connections with published messages batched for the end of this turn.
    pub(crate) batched: Vec<usize>,
}

impl PubSub {
    pub(crate) fn new(
        counts: Arc<TopicCounts>,
        reactors: Arc<[Arc<Shared>]>,
        index: usize,
        cap: usize,
    ) -> PubSub {
        PubSub {
            topics: Topics::default(),
            counts,
            reactors,
            index,
            cap,
            batched: Vec::new(),
        }
    }

    pub(crate) fn subscribe<S>(
        &mut self,
        key: usize,
        conn: &mut Conn<S>,
        name: &[u8],
    ) -> Result<bool, TopicError> {
        if !conn.proto.can_send() {
            return Err(TopicError::Closed);
        }
        let new = self
            .topics
            .subscribe(key as u32, name, self.cap, &self.counts, self.index)?;
        conn.set(flag::SUBSCRIBED);
        Ok(new)
    }

    pub(crate) fn unsubscribe<S>(&mut self, key: usize, conn: &mut Conn<S>, name: &[u8]) -> bool {
        if !conn.has(flag::SUBSCRIBED) {
            return false;
        }
        let was = self
            .topics
            .unsubscribe(key as u32, name, &self.counts, self.index);
        if !self.topics.has_subscriptions(key as u32) {
            conn.clear(flag::SUBSCRIBED);
        }
        was
    }

    /// Ends the subscriptions of a connection that is closing.
    pub(crate) fn remove_conn<S>(&mut self, key: usize, conn: &mut Conn<S>) {
        if conn.has(flag::SUBSCRIBED) {
            conn.clear(flag::SUBSCRIBED);
            self.topics
                .remove_conn(key as u32, &self.counts, self.index);
        }
    }

    /// Hands `frame` to the other reactors that have subscribers of `name`, through
    /// their command queues.
    pub(crate) fn forward(
        &self,
        name: &[u8],
        frame: &Bytes,
        except: Option<ConnId>,
        published: &mut Published,
    ) {
        let counts = self.counts.lock();
        let Some(per_reactor) = counts.get(name) else {
            return;
        };
        let topic = Bytes::copy_from_slice(name);
        for (index, (&count, reactor)) in per_reactor.iter().zip(self.reactors.iter()).enumerate() {
            if count == 0 || index == self.index {
                continue;
            }
            let command = Command::Publish {
                topic: topic.clone(),
                frame: frame.clone(),
                except,
            };
            match reactor.push(command) {
                QueueStatus::Queued => published.forwarded += count as usize,
                _ => published.refused += count as usize,
            }
        }
    }
}

/// Delivers `frame` to this reactor's subscribers of `name` but `except`, batched:
/// each subscriber's deliveries of the turn leave in one write at its end.
pub(crate) fn publish_local<S>(
    conns: &mut Slab<Conn<S>>,
    output: &mut Output,
    pubsub: &mut PubSub,
    name: &[u8],
    frame: &Bytes,
    except: Option<usize>,
) -> Published {
    let mut published = Published::default();
    let Some(id) = pubsub.topics.id(name) else {
        return published;
    };
    let count = pubsub.topics.members(id).len();
    for i in 0..count {
        let Some(&key) = pubsub.topics.members(id).get(i) else {
            break;
        };
        let key = key as usize;
        if Some(key) == except {
            continue;
        }
        let Some(conn) = conns.get_mut(key) else {
            continue;
        };
        match output.deliver(Owner::of(key, conn), conn, frame) {
            SendStatus::Sent | SendStatus::Backpressure => published.reached += 1,
            SendStatus::Dropped => {
                published.dropped += 1;
                pubsub.topics.count_drop(key as u32);
            }
            SendStatus::Closed => continue,
        }
        if !conn.has(flag::BATCHED) {
            conn.set(flag::BATCHED);
            pubsub.batched.push(key);
        }
    }
    published
}

/// One topic with subscribers on this reactor.
struct Topic {
    name: Box<[u8]>,
    /// The subscribers' slab keys, in no order.
    members: Vec<u32>,
}

/// A subscribed connection's side of its subscriptions.
#[derive(Default)]
struct Subscriptions {
    /// (topic, index of this connection in the topic's `members`).
    topics: Vec<(u32, u32)>,
    /// Published messages dropped for this connection at its backpressure limit.
    dropped: u64,
}

/// The registry of one reactor.
#[derive(Default)]
pub(crate) struct Topics {
    ids: HashMap<Box<[u8]>, u32>,
    topics: Slab<Topic>,
    conns: HashMap<u32, Subscriptions>,
}

impl Topics {
    /// The interned id of `name`, if this reactor has subscribers to it.
    pub(crate) fn id(&self, name: &[u8]) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The subscribers of topic `id` (slab keys).
    pub(crate) fn members(&self, id: u32) -> &[u32] {
        self.topics
            .get(id as usize)
            .map_or(&[], |t| t.members.as_slice())
    }

    /// Subscribes connection `key`. `Ok(false)`: it already was.
    pub(crate) fn subscribe(
        &mut self,
        key: u32,
        name: &[u8],
        cap: usize,
        counts: &TopicCounts,
        reactor: usize,
    ) -> Result<bool, TopicError> {
        if name.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong);
        }
        let existing = self.ids.get(name).copied();
        let subs = self.conns.entry(key).or_default();
        if let Some(id) = existing
            && subs.topics.iter().any(|&(t, _)| t == id)
        {
            return Ok(false);
        }
        if subs.topics.len() >= cap {
            if subs.topics.is_empty() {
                self.conns.remove(&key);
            }
            return Err(TopicError::TooMany);
        }
        let id = match existing {
            Some(id) => id,
            None => {
                let id = self.topics.insert(Topic {
                    name: name.into(),
                    members: Vec::new(),
                }) as u32;
                self.ids.insert(name.into(), id);
                id
            }
        };
        let topic = &mut self.topics[id as usize];
        subs.topics.push((id, topic.members.len() as u32));
        topic.members.push(key);
        counts.add(name, reactor);
        Ok(true)
    }

    /// Unsubscribes connection `key`; whether it was subscribed.
    pub(crate) fn unsubscribe(
        &mut self,
        key: u32,
        name: &[u8],
        counts: &TopicCounts,
        reactor: usize,
    ) -> bool {
        let Some(id) = self.ids.get(name).copied() else {
            return false;
        };
        let Some(subs) = self.conns.get_mut(&key) else {
            return false;
        };
        let Some(at) = subs.topics.iter().position(|&(t, _)| t == id) else {
            return false;
        };
        let (_, index) = subs.topics.swap_remove(at);
        if subs.topics.is_empty() {
            self.conns.remove(&key);
        }
        self.leave(id, index, counts, reactor);
        true
    }

    /// Whether connection `key` subscribes to `name`.
    pub(crate) fn is_subscribed(&self, key: u32, name: &[u8]) -> bool {
        match (self.ids.get(name), self.conns.get(&key)) {
            (Some(&id), Some(subs)) => subs.topics.iter().any(|&(t, _)| t == id),
            _ => false,
        }
    }

    /// Ends every subscription of connection `key` (it is closing).
    pub(crate) fn remove_conn(&mut self, key: u32, counts: &TopicCounts, reactor: usize) {
        if let Some(subs) = self.conns.remove(&key) {
            for (id, index) in subs.topics {
                self.leave(id, index, counts, reactor);
            }
        }
    }

    /// Whether connection `key` subscribes to anything.
    pub(crate) fn has_subscriptions(&self, key: u32) -> bool {
        self.conns.contains_key(&key)
    }

    /// Counts a published message dropped for connection `key`.
    pub(crate) fn count_drop(&mut self, key: u32) {
        if let Some(subs) = self.conns.get_mut(&key) {
            subs.dropped += 1;
        }
    }

    /// Published messages dropped for connection `key` at its backpressure limit.
    pub(crate) fn dropped(&self, key: u32) -> u64 {
        self.conns.get(&key).map_or(0, |s| s.dropped)
    }

    /// Removes the member at `index` of topic `id`, moving the last one into its
    /// place (and telling that one where it now is); drops an empty topic.
    fn leave(&mut self, id: u32, index: u32, counts: &TopicCounts, reactor: usize) {
        let Some(topic) = self.topics.get_mut(id as usize) else {
            return;
        };
        counts.remove(&topic.name, reactor);
        let index = index as usize;
        if index >= topic.members.len() {
            return;
        }
        topic.members.swap_remove(index);
        if let Some(&moved) = topic.members.get(index)
            && let Some(subs) = self.conns.get_mut(&moved)
            && let Some(entry) = subs.topics.iter_mut().find(|(t, _)| *t == id)
        {
            entry.1 = index as u32;
        }
        if topic.members.is_empty() {
            let topic = self.topics.remove(id as usize);
            self.ids.remove(&topic.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: usize = 8;

    fn sorted(topics: &Topics, name: &[u8]) -> Vec<u32> {
        let mut m = topics
            .id(name)
            .map_or(Vec::new(), |id| topics.members(id).to_vec());
        m.sort();
        m
    }

    #[test]
    fn subscribe_unsubscribe_and_close_keep_both_sides_consistent() {
        let counts = TopicCounts::new(1);
        let mut t = Topics::default();
        for key in 0..5 {
            assert_eq!(t.subscribe(key, b"a", CAP, &counts, 0), Ok(true));
        }
        assert_eq!(t.subscribe(2, b"a", CAP, &counts, 0), Ok(false));
        assert_eq!(t.subscribe(2, b"b", CAP, &counts, 0), Ok(true));
        assert_eq!(counts.total(b"a"), 5);
        // Removing from the middle moves the last member; its index must follow.
        assert!(t.unsubscribe(1, b"a", &counts, 0));
        assert!(!t.unsubscribe(1, b"a", &counts, 0), "twice is a no-op");
        assert_eq!(sorted(&t, b"a"), vec![0, 2, 3, 4]);
        t.remove_conn(4, &counts, 0); // the one that moved
        assert_eq!(sorted(&t, b"a"), vec![0, 2, 3]);
        t.remove_conn(2, &counts, 0);
        assert_eq!(sorted(&t, b"a"), vec![0, 3]);
        assert_eq!(t.id(b"b"), None, "an empty topic is forgotten");
        assert!(t.is_subscribed(3, b"a") && !t.is_subscribed(2, b"a"));
        assert_eq!(counts.total(b"a"), 2);
        assert_eq!(counts.total(b"b"), 0);
        t.remove_conn(0, &counts, 0);
        t.remove_conn(3, &counts, 0);
        assert!(t.ids.is_empty() && t.topics.is_empty() && t.conns.is_empty());
        assert!(counts.lock().is_empty());
    }

    #[test]
    fn names_over_the_limit_and_subscriptions_over_the_cap_are_refused() {
        let counts = TopicCounts::new(1);
        let mut t = Topics::default();
        let long = vec![b'x'; MAX_TOPIC_LEN + 1];
        assert_eq!(
            t.subscribe(1, &long, CAP, &counts, 0),
            Err(TopicError::TooLong)
        );
        for i in 0..CAP {
            let name = format!("t{i}");
            assert_eq!(t.subscribe(1, name.as_bytes(), CAP, &counts, 0), Ok(true));
        }
        assert_eq!(
            t.subscribe(1, b"one more", CAP, &counts, 0),
            Err(TopicError::TooMany)
        );
        assert_eq!(t.subscribe(1, b"t3", CAP, &counts, 0), Ok(false));
        assert_eq!(
            t.subscribe(2, b"zero cap", 0, &counts, 0),
            Err(TopicError::TooMany)
        );
        assert!(!t.conns.contains_key(&2));
        t.remove_conn(1, &counts, 0);
        assert!(t.ids.is_empty() && counts.lock().is_empty());
    }

    /// A random walk against a model: every topic's members are exactly the
    /// connections the model says, after every step.
    #[test]
    fn a_random_walk_matches_a_model() {
        use std::collections::{BTreeMap, BTreeSet};
        let counts = TopicCounts::new(1);
        let mut t = Topics::default();
        let mut model: BTreeMap<u8, BTreeSet<u32>> = BTreeMap::new();
        let mut seed = 12345u32;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let key = seed % 16;
            let topic = ((seed >> 8) % 6) as u8;
            let name = [topic];
            match (seed >> 16) % 4 {
                0 | 1 => {
                    let new = model.entry(topic).or_default().insert(key);
                    assert_eq!(t.subscribe(key, &name, CAP, &counts, 0), Ok(new));
                }
                2 => {
                    let was = model.get_mut(&topic).is_some_and(|s| s.remove(&key));
                    assert_eq!(t.unsubscribe(key, &name, &counts, 0), was);
                }
                _ => {
                    for members in model.values_mut() {
                        members.remove(&key);
                    }
                    t.remove_conn(key, &counts, 0);
                }
            }
            for topic in 0..6u8 {
                let want: Vec<u32> = model
                    .get(&topic)
                    .map_or(Vec::new(), |s| s.iter().copied().collect());
                assert_eq!(sorted(&t, &[topic]), want);
                assert_eq!(counts.total(&[topic]), want.len());
            }
        }
    }
}
