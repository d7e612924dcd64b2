//! The subscribing thread: keeps one SUBSCRIBE per topic that has a subscriber on
//! this node, and hands what other nodes publish to the reactors that have
//! subscribers, through their command queues.
//!
//! The `redis` crate's blocking `PubSub` cannot be woken from another thread, so
//! the thread reads with a short timeout and looks at the noted subscription changes
//! between reads: a topic's channel is subscribed within about `POLL` of its first
//! local subscriber.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Backoff, COMMAND_TIMEOUT, Link, PING_EVERY, connect, envelope};
use crate::pubsub::TopicCounts;
use crate::reactor::{Command, Shared};
use crate::server::encode;
use crate::status::QueueStatus;

/// How long a read waits for a message before the thread looks at subscription
/// changes: the delay of a new topic's SUBSCRIBE at worst. 20 ms costs an idle node
/// 50 wake-ups a second, a few microseconds each.
const POLL: Duration = Duration::from_millis(20);

/// Channels per SUBSCRIBE or UNSUBSCRIBE command.
const CHUNK: usize = 256;

type RedisResult<T> = ::redis::RedisResult<T>;

pub(super) fn run(link: &Link, counts: &TopicCounts, reactors: &[Arc<Shared>]) {
    let mut backoff = Backoff::new(&link.config);
    let mut was_up = false;
    let mut subscribed: HashSet<Box<[u8]>> = HashSet::new();
    while !link.stopping() {
        let mut con = match connect(link, "sub") {
            Ok(con) => con,
            Err(_) => {
                // What changed meanwhile is read afresh from the counts on connect.
                link.take_changes();
                backoff.wait(link);
                continue;
            }
        };
        backoff.reset();
        subscribed.clear();
        let result = serve(
            link,
            counts,
            reactors,
            &mut con,
            &mut subscribed,
            &mut was_up,
        );
        link.down(false);
        link.counters.channels.store(0, Relaxed);
        if let Err(e) = result {
            eprintln!(
                "wsreactor: redis bridge {}: subscribing connection lost ({e}); reconnecting",
                link.config.node_name
            );
        }
    }
}

/// Subscribes to every live topic, then reads and follows changes until the
/// connection fails or the bridge stops.
fn serve(
    link: &Link,
    counts: &TopicCounts,
    reactors: &[Arc<Shared>],
    con: &mut ::redis::Connection,
    subscribed: &mut HashSet<Box<[u8]>>,
    was_up: &mut bool,
) -> RedisResult<()> {
    let mut pubsub = con.as_pubsub();
    // Changes noted before this snapshot are in it; later ones are noted again.
    link.take_changes();
    let live: Vec<Box<[u8]>> = counts.lock().keys().map(|t| Box::from(&**t)).collect();
    change(link, &mut pubsub, subscribed, live, Vec::new())?;
    link.up(false, *was_up);
    *was_up = true;
    pubsub.set_read_timeout(Some(POLL))?;
    let mut heard = Instant::now();
    while !link.stopping() {
        if link.changed.load(Relaxed) {
            let noted = link.take_changes();
            let (add, remove) = {
                let counts = counts.lock();
                let add = noted
                    .iter()
                    .filter(|t| counts.contains_key(&***t) && !subscribed.contains(*t))
                    .cloned()
                    .collect();
                let remove = noted
                    .iter()
                    .filter(|t| !counts.contains_key(&***t) && subscribed.contains(*t))
                    .cloned()
                    .collect();
                (add, remove)
            };
            pubsub.set_read_timeout(Some(COMMAND_TIMEOUT))?;
            change(link, &mut pubsub, subscribed, add, remove)?;
            pubsub.set_read_timeout(Some(POLL))?;
        }
        match pubsub.get_message() {
            Ok(message) => {
                heard = Instant::now();
                deliver(link, counts, reactors, &message);
            }
            Err(e) if e.is_timeout() => {
                if heard.elapsed() >= PING_EVERY {
                    pubsub.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                    pubsub.ping::<::redis::Value>()?;
                    pubsub.set_read_timeout(Some(POLL))?;
                    heard = Instant::now();
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// SUBSCRIBEs to the channels of `add` and UNSUBSCRIBEs from those of `remove`.
fn change(
    link: &Link,
    pubsub: &mut ::redis::PubSub<'_>,
    subscribed: &mut HashSet<Box<[u8]>>,
    add: Vec<Box<[u8]>>,
    remove: Vec<Box<[u8]>>,
) -> RedisResult<()> {
    // Never an empty UNSUBSCRIBE: that would unsubscribe from everything.
    for chunk in add.chunks(CHUNK) {
        let channels: Vec<Vec<u8>> = chunk
            .iter()
            .map(|t| envelope::channel(&link.prefix, t))
            .collect();
        pubsub.subscribe(&channels[..])?;
        subscribed.extend(chunk.iter().cloned());
    }
    for chunk in remove.chunks(CHUNK) {
        let channels: Vec<Vec<u8>> = chunk
            .iter()
            .map(|t| envelope::channel(&link.prefix, t))
            .collect();
        pubsub.unsubscribe(&channels[..])?;
        for topic in chunk {
            subscribed.remove(topic);
        }
    }
    link.counters
        .channels
        .store(subscribed.len() as u64, Relaxed);
    Ok(())
}

/// Hands a message from Redis to the reactors with subscribers of its topic, unless
/// it is malformed or this node's own.
fn deliver(link: &Link, counts: &TopicCounts, reactors: &[Arc<Shared>], message: &::redis::Msg) {
    let name = message.get_channel_name();
    // The crate gives "?" for a channel name that is not UTF-8.
    let channel: Cow<'_, [u8]> = if name == "?" {
        Cow::Owned(message.get_channel::<Vec<u8>>().unwrap_or_default())
    } else {
        Cow::Borrowed(name.as_bytes())
    };
    let read = envelope::topic(&link.prefix, &channel).and_then(|topic| {
        envelope::read(message.get_payload_bytes(), link.config.max_message_size)
            .map(|(node, message)| (topic, node, message))
    });
    let (topic, node, message) = match read {
        Ok(read) => read,
        Err(_) => {
            link.counters.malformed.fetch_add(1, Relaxed);
            return;
        }
    };
    if node == link.node {
        link.counters.own.fetch_add(1, Relaxed);
        return;
    }
    link.counters.received.fetch_add(1, Relaxed);
    let frame = encode(message);
    let name = Bytes::copy_from_slice(topic);
    let counts = counts.lock();
    let Some(per_reactor) = counts.get(topic) else {
        return;
    };
    for (&count, reactor) in per_reactor.iter().zip(reactors) {
        if count == 0 {
            continue;
        }
        let command = Command::Publish {
            topic: name.clone(),
            frame: frame.clone(),
            except: None,
            offset: None,
        };
        if reactor.push(command) != QueueStatus::Queued {
            link.counters.refused.fetch_add(1, Relaxed);
        }
    }
}
