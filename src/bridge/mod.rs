//! Topics shared by several server processes through Redis pub/sub (feature
//! `redis`): what a publish on one node reaches on every other.
//!
//! Each process runs a bridge of two threads beside its reactors, each with its own
//! connection to Redis (`redis.rs`): one PUBLISHes what the reactors publish, the
//! other SUBSCRIBEs to the channel of every topic that has a subscriber on this node
//! and hands what arrives to the reactors' command queues. The reactors never wait on
//! Redis: a publish is put in a bounded queue toward Redis or counted as dropped, and
//! subscription changes are noted in a set the subscribing thread drains.
//!
//! Delivery across nodes is **at most once**, as Redis pub/sub itself: a message
//! published while Redis is unreachable, or while the receiving node is reconnecting,
//! is lost (and counted on the sending side, in [`BridgeStats::dropped`]). Within one
//! node nothing changes: local subscribers get a publish directly, once.

mod envelope;
mod publisher;
mod subscriber;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::pubsub::TopicCounts;
use crate::reactor::Shared;

/// How a node reaches Redis, and the bridge's limits.
///
/// ```
/// use wsreactor::bridge::RedisConfig;
///
/// let redis = RedisConfig::new("redis://127.0.0.1:6379/")
///     .with_prefix("chat:")
///     .with_node_name("node-a");
/// assert_eq!(redis.prefix, "chat:");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Where Redis listens: `redis://[:PASSWORD@]HOST:PORT[/DB]` (the `redis` crate's
    /// URL). Checked when the server binds; connected to when it starts.
    pub url: String,
    /// Put before every topic to make its channel, so that several applications can
    /// share one Redis. Default `wsreactor:`.
    pub prefix: String,
    /// This node's name, given to Redis as the connections' names
    /// (`CLIENT SETNAME NAME:pub` and `NAME:sub`, so that `CLIENT LIST` shows the
    /// nodes). Default `wsreactor-PID`. Characters other than letters, digits and
    /// `-_.:` become `_`.
    pub node_name: String,
    /// Bytes of publications waiting for the publishing connection (each counts its
    /// payload, topic and 64 bytes); past it a publication is dropped and counted.
    /// Default 16 MiB, as the reactors' command queues: a second of a busy node's
    /// publications, not minutes of them.
    pub max_queued_bytes: usize,
    /// The largest payload sent to or taken from Redis; larger ones are dropped and
    /// counted (`dropped` going out, `malformed` coming in). Default 1 MiB: fan-out
    /// messages are small, and each received one is copied once per reactor queue.
    pub max_message_size: usize,
    /// The first wait before reconnecting; it doubles after each failed attempt up to
    /// `reconnect_max`. Default 50 ms: a restarted Redis is found at once.
    pub reconnect_min: Duration,
    /// The longest wait between attempts. Default 1 s: a node is back within about a
    /// second of Redis, without hammering a Redis that is down.
    pub reconnect_max: Duration,
}

impl RedisConfig {
    /// The defaults, with Redis at `url`.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "wsreactor:".into(),
            node_name: format!("wsreactor-{}", std::process::id()),
            max_queued_bytes: 16 << 20,
            max_message_size: 1 << 20,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
        }
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`node_name`](Self::node_name).
    pub fn with_node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = name.into();
        self
    }

    /// Sets [`max_queued_bytes`](Self::max_queued_bytes).
    pub fn with_max_queued_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_bytes = bytes;
        self
    }

    /// Sets [`max_message_size`](Self::max_message_size).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets [`reconnect_min`](Self::reconnect_min) and
    /// [`reconnect_max`](Self::reconnect_max).
    pub fn with_reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }
}

/// Where the bridge is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BridgeState {
    /// Not connected yet since the server started (or not started).
    #[default]
    Connecting,
    /// Both connections are up: publications go out, subscriptions are in place.
    Connected,
    /// A connection was lost; reconnecting with backoff. Publications to other nodes
    /// are dropped meanwhile.
    Reconnecting,
    /// The server shut down.
    Stopped,
}

/// The bridge's counters, in [`Stats::bridge`](crate::Stats::bridge).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BridgeStats {
    /// Where the bridge is.
    pub state: BridgeState,
    /// Publications Redis accepted.
    pub sent: u64,
    /// Publications not sent: the queue toward Redis was full, Redis was unreachable,
    /// the connection failed under them, or the payload was over `max_message_size`.
    pub dropped: u64,
    /// Messages from other nodes (or from publishers that are not nodes), handed to
    /// this node's reactors.
    pub received: u64,
    /// This node's own publications that came back from Redis, skipped (its local
    /// subscribers had them already).
    pub own: u64,
    /// Received messages a reactor's command queue refused (full, or shut down).
    pub refused: u64,
    /// Messages from Redis that were not wsreactor envelopes, too large, text that is
    /// not UTF-8, or on a channel outside the prefix: dropped.
    pub malformed: u64,
    /// Connections re-established after a loss (each of the two connections counts
    /// its own, so one Redis restart counts 2). Messages published elsewhere while a
    /// node was reconnecting did not reach it.
    pub reconnects: u64,
    /// Channels this node subscribes to now: its topics with a local subscriber.
    pub channels: u64,
}

/// What the reactors, the `Sender` and the bridge's threads share.
pub(crate) struct Link {
    config: RedisConfig,
    client: ::redis::Client,
    /// `prefix` as bytes, and this node's id in its envelopes.
    prefix: Box<[u8]>,
    node: u64,
    outbox: Mutex<Outbox>,
    /// Signalled when the publishing thread waits and something is queued, and on
    /// stop (both threads sleep on it between attempts).
    wake: Condvar,
    /// Topics whose subscriber count went from 0 to 1 or back since the subscribing
    /// thread last looked: it compares them with what it subscribes to.
    changes: Mutex<HashSet<Box<[u8]>>>,
    changed: AtomicBool,
    stop: AtomicBool,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    connected_once: AtomicBool,
    counters: Counters,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    own: AtomicU64,
    refused: AtomicU64,
    malformed: AtomicU64,
    reconnects: AtomicU64,
    channels: AtomicU64,
}

/// The queue toward Redis.
#[derive(Default)]
struct Outbox {
    queue: VecDeque<Outbound>,
    bytes: usize,
    /// The publishing thread is waiting for the queue: a producer signals it.
    waiting: bool,
}

/// A publication on its way to Redis: the frame as the reactors encoded it.
struct Outbound {
    topic: Bytes,
    frame: Bytes,
}

impl Outbound {
    fn cost(&self) -> usize {
        64 + self.topic.len() + self.frame.len()
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("node_name", &self.config.node_name)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link for `config`, not started.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the URL is not one the `redis` crate takes.
    pub(crate) fn new(config: RedisConfig) -> Result<Link> {
        let client = ::redis::Client::open(config.url.as_str())
            .map_err(|_| Error::Config("not a redis:// URL"))?;
        Ok(Link {
            prefix: config.prefix.as_bytes().into(),
            node: envelope::node_id(),
            client,
            config,
            outbox: Mutex::new(Outbox::default()),
            wake: Condvar::new(),
            changes: Mutex::new(HashSet::new()),
            changed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            connected_once: AtomicBool::new(false),
            counters: Counters::default(),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// Starts the two threads.
    pub(crate) fn start(
        self: &Arc<Self>,
        counts: Arc<TopicCounts>,
        reactors: Arc<[Arc<Shared>]>,
    ) -> std::io::Result<()> {
        let publisher = {
            let link = Arc::clone(self);
            std::thread::Builder::new()
                .name("wsr-redis-pub".into())
                .spawn(move || publisher::run(&link))?
        };
        let subscriber = {
            let link = Arc::clone(self);
            std::thread::Builder::new()
                .name("wsr-redis-sub".into())
                .spawn(move || subscriber::run(&link, &counts, &reactors))?
        };
        lock(&self.threads).extend([publisher, subscriber]);
        Ok(())
    }

    /// Asks the threads to stop; returns at once.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Relaxed);
        let _outbox = lock(&self.outbox);
        self.wake.notify_all();
    }

    /// Stops the threads and waits for them (a publication in flight is finished or
    /// fails first, within the connection's timeouts).
    pub(crate) fn join(&self) {
        self.stop();
        let threads = std::mem::take(&mut *lock(&self.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Queues a publication for the other nodes, or counts it as dropped: never
    /// waits beyond the queue's lock.
    pub(crate) fn publish(&self, topic: &[u8], frame: &Bytes) {
        let connected = self.publisher_up.load(Relaxed);
        let size = envelope::split_frame(frame).map_or(usize::MAX, |(_, p)| p.len());
        if !connected || size > self.config.max_message_size {
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        let outbound = Outbound {
            topic: Bytes::copy_from_slice(topic),
            frame: frame.clone(),
        };
        let mut outbox = lock(&self.outbox);
        if outbox.bytes + outbound.cost() > self.config.max_queued_bytes {
            drop(outbox);
            self.counters.dropped.fetch_add(1, Relaxed);
            return;
        }
        outbox.bytes += outbound.cost();
        outbox.queue.push_back(outbound);
        if outbox.waiting {
            outbox.waiting = false;
            self.wake.notify_all();
        }
    }

    /// Notes that `topic` got its first subscriber on this node or lost its last
    /// (called under the `TopicCounts` lock, so the notes follow its order).
    pub(crate) fn topic_changed(&self, topic: &[u8]) {
        let mut changes = lock(&self.changes);
        if !changes.contains(topic) {
            changes.insert(topic.into());
        }
        self.changed.store(true, Relaxed);
    }

    /// The topics noted since the last call.
    fn take_changes(&self) -> HashSet<Box<[u8]>> {
        self.changed.store(false, Relaxed);
        std::mem::take(&mut *lock(&self.changes))
    }

    /// Sleeps for `wait` or until stopped.
    fn sleep(&self, wait: Duration) {
        let deadline = crate::config::deadline(Instant::now(), wait);
        let mut outbox = lock(&self.outbox);
        while !self.stopping() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            outbox = match self.wake.wait_timeout(outbox, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Takes what waits in the queue (at most `max` publications), waiting up to
    /// `idle` for the first one; empty when there was none or on stop.
    fn take_outbound(&self, max: usize, idle: Duration, into: &mut Vec<Outbound>) {
        let mut outbox = lock(&self.outbox);
        if outbox.queue.is_empty() && !self.stopping() {
            outbox.waiting = true;
            outbox = match self.wake.wait_timeout(outbox, idle) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
            outbox.waiting = false;
        }
        let n = outbox.queue.len().min(max);
        let mut taken = 0;
        for outbound in outbox.queue.drain(..n) {
            taken += outbound.cost();
            into.push(outbound);
        }
        outbox.bytes = outbox.bytes.saturating_sub(taken);
    }

    /// Drops everything queued (the connection is gone), counting it.
    fn discard_outbound(&self) {
        let mut outbox = lock(&self.outbox);
        let n = outbox.queue.len() as u64;
        outbox.queue.clear();
        outbox.bytes = 0;
        drop(outbox);
        self.counters.dropped.fetch_add(n, Relaxed);
    }

    /// A connection came up (`publisher` or not); counts a reconnect when it had
    /// been up before.
    fn up(&self, publisher: bool, again: bool) {
        let flag = if publisher {
            &self.publisher_up
        } else {
            &self.subscriber_up
        };
        flag.store(true, Relaxed);
        if again {
            self.counters.reconnects.fetch_add(1, Relaxed);
            crate::observe::event!(info, publisher, "bridge: reconnected to Redis");
        }
        if self.publisher_up.load(Relaxed) && self.subscriber_up.load(Relaxed) {
            self.connected_once.store(true, Relaxed);
        }
    }

    fn down(&self, publisher: bool) {
        crate::observe::event!(
            warn,
            publisher,
            "bridge: connection to Redis lost, reconnecting"
        );
        let flag = if publisher {
            &self.publisher_up
        } else {
            &self.subscriber_up
        };
        flag.store(false, Relaxed);
    }

    /// The counters now.
    pub(crate) fn stats(&self) -> BridgeStats {
        let c = &self.counters;
        let up = self.publisher_up.load(Relaxed) && self.subscriber_up.load(Relaxed);
        let state = if self.stopping() {
            BridgeState::Stopped
        } else if up {
            BridgeState::Connected
        } else if self.connected_once.load(Relaxed) {
            BridgeState::Reconnecting
        } else {
            BridgeState::Connecting
        };
        BridgeStats {
            state,
            sent: c.sent.load(Relaxed),
            dropped: c.dropped.load(Relaxed),
            received: c.received.load(Relaxed),
            own: c.own.load(Relaxed),
            refused: c.refused.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            reconnects: c.reconnects.load(Relaxed),
            channels: c.channels.load(Relaxed),
        }
    }
}

/// Locks a mutex whose data stays consistent across a panic (every change under it
/// is one push, one drain or one insert).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a command (PUBLISH batch, SUBSCRIBE, PING) may take before the
/// connection is given up as dead: Redis answers in microseconds when it is well.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often an idle connection is checked with a PING, so that a Redis that went
/// away shows in the state and is reconnected to before the next publication.
const PING_EVERY: Duration = Duration::from_secs(1);

/// Opens a connection named `NODE:role`, with the command timeout.
fn connect(link: &Link, role: &str) -> ::redis::RedisResult<::redis::Connection> {
    let mut con = link.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(COMMAND_TIMEOUT))?;
    con.set_write_timeout(Some(COMMAND_TIMEOUT))?;
    let name: String = link
        .config
        .node_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Names are for people reading CLIENT LIST; an ACL that forbids them is no reason
    // to stay disconnected.
    let _ = ::redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg(format!("{name}:{role}"))
        .exec(&mut con);
    Ok(con)
}

/// Waits between attempts to connect: `reconnect_min`, doubling up to
/// `reconnect_max`.
struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    fn new(config: &RedisConfig) -> Backoff {
        Backoff {
            next: config.reconnect_min,
            min: config.reconnect_min,
            max: config.reconnect_max,
        }
    }

    fn wait(&mut self, link: &Link) {
        link.sleep(self.next);
        self.next = (self.next * 2).min(self.max);
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}
