//! A reactor's own pub/sub registry: which of its connections subscribe to what.
//!
//! Topic names are interned once per reactor. A topic holds its subscribers (slab key
//! and subscriptions index, 8 bytes each) in a `Vec`; a subscribed connection holds,
//! in a 32-byte slab entry indexed from its slot, its topics and its place in each
//! topic's list (the first inline, more in a vector: 8 bytes each), so that
//! unsubscribing and closing cost O(its subscriptions), not O(the topic's
//! subscribers). Keys need no generation: a connection's subscriptions are removed
//! before its slot can be reused.

use std::collections::HashMap;
use std::sync::Arc;

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use slab::Slab;

use super::commands::{Command, Shared};
use super::conn::{Conn, NONE, flag};
use super::output::{Output, Owner};
use crate::handler::ConnId;
use crate::pubsub::{MAX_TOPIC_LEN, Published, TopicCounts, TopicError};
use crate::status::{QueueStatus, SendStatus};

/// What one connection may subscribe to: how many topics, and how many bytes of
/// their names together (`Config::max_subscriptions`, `max_subscription_bytes`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cap {
    pub(crate) topics: usize,
    pub(crate) bytes: usize,
}

/// A reactor's pub/sub state: its registry, and what it needs to reach the others.
pub(crate) struct PubSub {
    pub(crate) topics: Topics,
    pub(crate) counts: Arc<TopicCounts>,
    pub(crate) reactors: Arc<[Arc<Shared>]>,
    pub(crate) index: usize,
    /// Subscriptions allowed per connection.
    pub(crate) cap: Cap,
    /// Connections with published messages batched for the end of this turn.
    pub(crate) batched: Vec<usize>,
}

impl PubSub {
    pub(crate) fn new(
        counts: Arc<TopicCounts>,
        reactors: Arc<[Arc<Shared>]>,
        index: usize,
        cap: Cap,
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
        self.topics.subscribe(
            key as u32,
            &mut conn.subs,
            name,
            self.cap,
            &self.counts,
            self.index,
        )
    }

    pub(crate) fn unsubscribe<S>(&mut self, conn: &mut Conn<S>, name: &[u8]) -> bool {
        conn.subs != NONE
            && self
                .topics
                .unsubscribe(&mut conn.subs, name, &self.counts, self.index)
    }

    /// Ends the subscriptions of a connection that is closing.
    pub(crate) fn remove_conn<S>(&mut self, conn: &mut Conn<S>) {
        if conn.subs != NONE {
            self.topics
                .remove_conn(&mut conn.subs, &self.counts, self.index);
        }
    }

    /// Hands `frame` to the other reactors that have subscribers of `name`, through
    /// their command queues (and to the other nodes, when bridged).
    pub(crate) fn forward(
        &self,
        name: &[u8],
        frame: &Bytes,
        except: Option<ConnId>,
        published: &mut Published,
    ) {
        self.counts.to_other_nodes(name, frame);
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
                offset: None,
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
    publish_local_at(conns, output, pubsub, name, frame, except, None)
}

/// As [`publish_local`], for a message at `offset` of its topic's history: a
/// subscriber that joined from a later position (its replay or its `new` line
/// covered this message) is passed over.
pub(crate) fn publish_local_at<S>(
    conns: &mut Slab<Conn<S>>,
    output: &mut Output,
    pubsub: &mut PubSub,
    name: &[u8],
    frame: &Bytes,
    except: Option<usize>,
    offset: Option<u64>,
) -> Published {
    let mut published = Published::default();
    let Some(id) = pubsub.topics.id(name) else {
        return published;
    };
    // Joiners whose position is at or past this offset skip it; the others are
    // in step from here on and leave the list.
    let skip: Vec<u32> = match (offset, pubsub.topics.joiners.get_mut(&id)) {
        (Some(offset), Some(joiners)) => {
            let skip = joiners
                .iter()
                .filter(|&&(_, from)| from >= offset)
                .map(|&(key, _)| key)
                .collect();
            joiners.retain(|&(_, from)| from > offset);
            if joiners.is_empty() {
                pubsub.topics.joiners.remove(&id);
            }
            skip
        }
        _ => Vec::new(),
    };
    let count = pubsub.topics.members(id).len();
    for i in 0..count {
        let Some(&(key, subs)) = pubsub.topics.members(id).get(i) else {
            break;
        };
        if skip.contains(&key) {
            continue;
        }
        let key = key as usize;
        if Some(key) == except {
            continue;
        }
        let Some(conn) = conns.get_mut(key) else {
            continue;
        };
        let owner = Owner::of(key, conn);
        // A panic (the shared compressor, say) harms this subscriber only: it is
        // closed at the end of the turn, the others are served.
        let delivered = catch_unwind(AssertUnwindSafe(|| output.deliver(owner, conn, frame)));
        let Ok(status) = delivered else {
            output.faulted.push(owner);
            continue;
        };
        match status {
            SendStatus::Sent | SendStatus::Backpressure => published.reached += 1,
            SendStatus::Dropped => {
                published.dropped += 1;
                pubsub.topics.count_drop(subs);
                if offset.is_some() {
                    output.lagged.push(owner);
                }
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
    name: Arc<[u8]>,
    /// The subscribers: (slab key, index of their `Subscriptions`), in no order.
    members: Vec<(u32, u32)>,
}

/// A connection's topics: one inline (most connections subscribe to one or a few),
/// more in a vector of their own.
enum List {
    One(Place),
    // Boxed so that the enum is 16 bytes, not 32: most connections never get here.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Place>>),
}

/// A subscription as its connection records it: (topic, index in the topic's
/// `members`).
type Place = (u32, u32);

impl List {
    fn as_slice(&self) -> &[Place] {
        match self {
            List::One(one) => std::slice::from_ref(one),
            List::Many(many) => many,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Place] {
        match self {
            List::One(one) => std::slice::from_mut(one),
            List::Many(many) => many,
        }
    }

    fn push(&mut self, place: Place) {
        match self {
            List::One(one) => *self = List::Many(Box::new(vec![*one, place])),
            List::Many(many) => many.push(place),
        }
    }

    /// Removes the entry at `at`; `None` when it was the last one (the list is then
    /// to be dropped).
    fn remove(&mut self, at: usize) -> Option<Place> {
        match self {
            List::One(_) => None,
            List::Many(many) => {
                let place = many.swap_remove(at);
                if many.len() == 1 {
                    *self = List::One(many[0]);
                }
                Some(place)
            }
        }
    }
}

/// A subscribed connection's side of its subscriptions (24 bytes, 32 in the slab).
struct Subscriptions {
    list: List,
    /// Published messages dropped for this connection at its backpressure limit.
    dropped: u32,
    /// The length of its topics' names, together (bounded by
    /// `Config::max_subscription_bytes`).
    bytes: u32,
}

/// The registry of one reactor.
#[derive(Default)]
pub(crate) struct Topics {
    /// Names interned: the key and the topic's `name` are one allocation, which
    /// the process-wide counts share too.
    ids: HashMap<Arc<[u8]>, u32>,
    topics: Slab<Topic>,
    /// Indexed by `Conn::subs`.
    subs: Slab<Subscriptions>,
    /// (connection, topic) pairs now.
    pub(crate) subscriptions: u64,
    /// Per topic with history, connections that subscribed from a position newer
    /// than what this reactor has delivered: (slab key, that offset). Empty but
    /// for the moments after such a subscribe.
    pub(crate) joiners: HashMap<u32, Vec<(u32, u64)>>,
}

impl Topics {
    /// The interned id of `name`, if this reactor has subscribers to it.
    pub(crate) fn id(&self, name: &[u8]) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// Topics with a subscriber on this reactor.
    pub(crate) fn len(&self) -> usize {
        self.topics.len()
    }

    /// The subscribers of topic `id`: (slab key, subscriptions index).
    pub(crate) fn members(&self, id: u32) -> &[(u32, u32)] {
        self.topics
            .get(id as usize)
            .map_or(&[], |t| t.members.as_slice())
    }

    fn list(&self, subs: u32) -> &[Place] {
        self.subs
            .get(subs as usize)
            .map_or(&[], |s| s.list.as_slice())
    }

    /// Subscribes connection `key`, whose subscriptions index is `*subs` (`NONE`:
    /// none yet). `Ok(false)`: it already was.
    pub(crate) fn subscribe(
        &mut self,
        key: u32,
        subs: &mut u32,
        name: &[u8],
        cap: Cap,
        counts: &TopicCounts,
        reactor: usize,
    ) -> Result<bool, TopicError> {
        if name.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong);
        }
        let existing = self.ids.get(name).copied();
        let list = self.list(*subs);
        if let Some(id) = existing
            && list.iter().any(|&(t, _)| t == id)
        {
            return Ok(false);
        }
        let bytes = self
            .subs
            .get(*subs as usize)
            .map_or(0, |s| s.bytes as usize);
        if list.len() >= cap.topics || bytes + name.len() > cap.bytes {
            return Err(TopicError::TooMany);
        }
        let id = match existing {
            Some(id) => id,
            None => {
                let name: Arc<[u8]> = Arc::from(name);
                let id = self.topics.insert(Topic {
                    name: name.clone(),
                    members: Vec::new(),
                }) as u32;
                self.ids.insert(name, id);
                id
            }
        };
        let topic = &mut self.topics[id as usize];
        let place = (id, topic.members.len() as u32);
        let len = topic.name.len() as u32;
        match self.subs.get_mut(*subs as usize) {
            Some(s) => {
                s.list.push(place);
                s.bytes += len;
            }
            None => {
                *subs = self.subs.insert(Subscriptions {
                    list: List::One(place),
                    dropped: 0,
                    bytes: len,
                }) as u32;
            }
        }
        topic.members.push((key, *subs));
        self.subscriptions += 1;
        counts.add(&topic.name, reactor);
        Ok(true)
    }

    /// Unsubscribes the connection whose subscriptions index is `*subs`; whether it
    /// was subscribed. `*subs` becomes `NONE` with its last subscription.
    pub(crate) fn unsubscribe(
        &mut self,
        subs: &mut u32,
        name: &[u8],
        counts: &TopicCounts,
        reactor: usize,
    ) -> bool {
        let Some(id) = self.ids.get(name).copied() else {
            return false;
        };
        let Some(s) = self.subs.get_mut(*subs as usize) else {
            return false;
        };
        let Some(at) = s.list.as_slice().iter().position(|&(t, _)| t == id) else {
            return false;
        };
        s.bytes = s.bytes.saturating_sub(name.len() as u32);
        let place = match s.list.remove(at) {
            Some(place) => place,
            None => {
                let last = self.subs.remove(*subs as usize);
                *subs = NONE;
                last.list.as_slice()[0]
            }
        };
        self.leave(place, counts, reactor);
        true
    }

    /// Whether the connection whose subscriptions index is `subs` subscribes to `name`.
    pub(crate) fn is_subscribed(&self, subs: u32, name: &[u8]) -> bool {
        match self.ids.get(name) {
            Some(&id) => self.list(subs).iter().any(|&(t, _)| t == id),
            None => false,
        }
    }

    /// Ends every subscription of a connection that is closing.
    pub(crate) fn remove_conn(&mut self, subs: &mut u32, counts: &TopicCounts, reactor: usize) {
        if let Some(s) = self.subs.try_remove(*subs as usize) {
            *subs = NONE;
            for &place in s.list.as_slice() {
                self.leave(place, counts, reactor);
            }
        }
    }

    /// Counts a published message dropped for a subscribed connection.
    pub(crate) fn count_drop(&mut self, subs: u32) {
        if let Some(s) = self.subs.get_mut(subs as usize) {
            s.dropped = s.dropped.saturating_add(1);
        }
    }

    /// Published messages dropped for a connection at its backpressure limit.
    pub(crate) fn dropped(&self, subs: u32) -> u64 {
        self.subs
            .get(subs as usize)
            .map_or(0, |s| u64::from(s.dropped))
    }

    /// Removes the member at `index` of topic `id`, moving the last one into its
    /// place (and telling that one where it now is); drops an empty topic.
    fn leave(&mut self, (id, index): Place, counts: &TopicCounts, reactor: usize) {
        let Some(topic) = self.topics.get_mut(id as usize) else {
            return;
        };
        counts.remove(&topic.name, reactor);
        let index = index as usize;
        if index >= topic.members.len() {
            return;
        }
        if let Some(joiners) = self.joiners.get_mut(&id) {
            let key = topic.members[index].0;
            joiners.retain(|&(k, _)| k != key);
            if joiners.is_empty() {
                self.joiners.remove(&id);
            }
        }
        topic.members.swap_remove(index);
        self.subscriptions = self.subscriptions.saturating_sub(1);
        if let Some(&(_, moved)) = topic.members.get(index)
            && let Some(s) = self.subs.get_mut(moved as usize)
            && let Some(entry) = s.list.as_mut_slice().iter_mut().find(|(t, _)| *t == id)
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

    /// The registry and every test connection's `Conn::subs`.
    struct Fixture {
        t: Topics,
        counts: TopicCounts,
        subs: [u32; 16],
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                t: Topics::default(),
                counts: TopicCounts::new(1),
                subs: [NONE; 16],
            }
        }
        fn sub(&mut self, key: u32, name: &[u8], cap: usize) -> Result<bool, TopicError> {
            let subs = &mut self.subs[key as usize];
            let cap = Cap {
                topics: cap,
                bytes: usize::MAX,
            };
            self.t.subscribe(key, subs, name, cap, &self.counts, 0)
        }
        fn unsub(&mut self, key: u32, name: &[u8]) -> bool {
            let subs = &mut self.subs[key as usize];
            *subs != NONE && self.t.unsubscribe(subs, name, &self.counts, 0)
        }
        fn close(&mut self, key: u32) {
            self.t
                .remove_conn(&mut self.subs[key as usize], &self.counts, 0);
        }
        fn members(&self, name: &[u8]) -> Vec<u32> {
            let mut m: Vec<u32> = self.t.id(name).map_or(Vec::new(), |id| {
                self.t.members(id).iter().map(|&(k, _)| k).collect()
            });
            m.sort();
            m
        }
        /// Both sides agree: each member's subscriptions index is its own, and its
        /// list points back at its place.
        fn consistent(&self) {
            for (id, topic) in self.t.topics.iter() {
                for (index, &(key, subs)) in topic.members.iter().enumerate() {
                    assert_eq!(self.subs[key as usize], subs);
                    assert!(self.t.list(subs).contains(&(id as u32, index as u32)));
                }
            }
        }
    }

    #[test]
    fn subscribe_unsubscribe_and_close_keep_both_sides_consistent() {
        let mut f = Fixture::new();
        for key in 0..5 {
            assert_eq!(f.sub(key, b"a", CAP), Ok(true));
        }
        assert_eq!(f.sub(2, b"a", CAP), Ok(false));
        assert_eq!(f.sub(2, b"b", CAP), Ok(true));
        assert_eq!(f.counts.total(b"a"), 5);
        // Removing from the middle moves the last member; its index must follow.
        assert!(f.unsub(1, b"a"));
        assert!(!f.unsub(1, b"a"), "twice is a no-op");
        assert_eq!(f.subs[1], NONE, "no subscriptions left: no record");
        assert_eq!(f.members(b"a"), vec![0, 2, 3, 4]);
        f.consistent();
        f.close(4); // the one that moved
        assert_eq!(f.members(b"a"), vec![0, 2, 3]);
        f.close(2);
        assert_eq!(f.members(b"a"), vec![0, 3]);
        assert_eq!(f.t.id(b"b"), None, "an empty topic is forgotten");
        assert!(f.t.is_subscribed(f.subs[3], b"a") && !f.t.is_subscribed(f.subs[2], b"a"));
        assert_eq!(f.counts.total(b"a"), 2);
        assert_eq!(f.counts.total(b"b"), 0);
        f.consistent();
        f.close(0);
        f.close(3);
        assert!(f.t.ids.is_empty() && f.t.topics.is_empty() && f.t.subs.is_empty());
        assert!(f.counts.lock().is_empty());
    }

    #[test]
    fn names_over_the_limit_and_subscriptions_over_the_cap_are_refused() {
        let mut f = Fixture::new();
        let long = vec![b'x'; MAX_TOPIC_LEN + 1];
        assert_eq!(f.sub(1, &long, CAP), Err(TopicError::TooLong));
        for i in 0..CAP {
            let name = format!("t{i}");
            assert_eq!(f.sub(1, name.as_bytes(), CAP), Ok(true));
        }
        assert_eq!(f.sub(1, b"one more", CAP), Err(TopicError::TooMany));
        assert_eq!(f.sub(1, b"t3", CAP), Ok(false));
        assert_eq!(f.sub(2, b"zero cap", 0), Err(TopicError::TooMany));
        assert_eq!(f.subs[2], NONE);
        f.close(1);
        assert!(f.t.ids.is_empty() && f.counts.lock().is_empty());
    }

    #[test]
    fn a_subscription_record_is_small() {
        let record = std::mem::size_of::<Subscriptions>();
        assert!(record <= 24, "{record} bytes");
    }

    /// A random walk against a model: every topic's members are exactly the
    /// connections the model says, after every step.
    #[test]
    fn a_random_walk_matches_a_model() {
        use std::collections::{BTreeMap, BTreeSet};
        let mut f = Fixture::new();
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
                    assert_eq!(f.sub(key, &name, CAP), Ok(new));
                }
                2 => {
                    let was = model.get_mut(&topic).is_some_and(|s| s.remove(&key));
                    assert_eq!(f.unsub(key, &name), was);
                }
                _ => {
                    for members in model.values_mut() {
                        members.remove(&key);
                    }
                    f.close(key);
                }
            }
            for topic in 0..6u8 {
                let want: Vec<u32> = model
                    .get(&topic)
                    .map_or(Vec::new(), |s| s.iter().copied().collect());
                assert_eq!(f.members(&[topic]), want);
                assert_eq!(f.counts.total(&[topic]), want.len());
            }
            f.consistent();
        }
    }
}
