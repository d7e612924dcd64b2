//! Starting, driving and stopping a server: the builder, the handle, the
//! cross-thread sender.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mio::Poll;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::handler::{ConnId, Handler};
use crate::proto::frame::{FrameHeader, OpCode};
use crate::proto::{CloseCode, Message};
use crate::pubsub::{Published, TopicCounts};
use crate::reactor::tls::TlsConfig;
use crate::reactor::topics::PubSub;
use crate::reactor::{Command, Listeners, Reactor, Shared, WAKER};
use crate::response::Upgrade;
use crate::stats::Stats;
use crate::status::QueueStatus;

pub mod handoff;
pub use handoff::{Accepted, HandoffAnswer, HandoffError, HandoffRequest, PendingUpgrade};
mod handle;
pub use handle::ServerHandle;

/// Builds a [`Server`].
///
/// ```no_run
/// use wsreactor::{Config, Server};
///
/// let server = Server::builder()
///     .config(Config::default().with_max_message_size(1 << 20))
///     .reactors(2)
///     .bind("127.0.0.1:9001")?;
/// println!("listening on {}", server.local_addr());
/// # Ok::<(), wsreactor::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerBuilder {
    config: Config,
    #[cfg(feature = "redis")]
    redis: Option<crate::bridge::RedisConfig>,
    /// wss:// listeners (feature `tls`, see [`tls`](crate::tls)).
    pub(crate) tls: TlsListen,
}

/// Which listeners serve wss:// (set by `ServerBuilder::tls` and `tls_listener`).
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsListen {
    /// The configuration of the listener `bind` opens, when it serves wss.
    pub(crate) first: Option<TlsConfig>,
    /// A second listener, serving wss beside a plain one.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) second: Option<(SocketAddr, TlsConfig)>,
}

impl ServerBuilder {
    /// Uses `config` (its `reactors` field included).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the number of reactor threads (default: one per core).
    pub fn reactors(mut self, reactors: usize) -> Self {
        self.config.reactors = reactors.max(1);
        self
    }

    /// Shares this server's topics with other server processes through Redis
    /// pub/sub (feature `redis`; see [`bridge`](crate::bridge)): a publish on any
    /// node reaches the subscribers on every node, at most once.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, redis: crate::bridge::RedisConfig) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Binds one listening socket per reactor to `addr`, all with `SO_REUSEPORT`, so
    /// the kernel spreads incoming connections over the reactors. Port 0 picks a free
    /// port, shared by every reactor.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address cannot be resolved or bound, or the event loops
    /// cannot be created; [`Error::Config`] for more than 65,535 reactors.
    pub fn bind(self, addr: impl ToSocketAddrs) -> Result<Server> {
        let config = self.config;
        if config.reactors > usize::from(u16::MAX) {
            return Err(Error::Config("at most 65535 reactors"));
        }
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or(Error::Config("the address resolved to nothing"))?;
        let first = listen(addr, &config)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..config.reactors.max(1) {
            listeners.push(listen(local_addr, &config)?);
        }
        let (tls_listeners, tls_addr) =
            listen_tls(&self.tls, local_addr, listeners.len(), &config)?;
        let mut polls = Vec::with_capacity(listeners.len());
        let mut shared = Vec::with_capacity(listeners.len());
        for _ in &listeners {
            let poll = Poll::new()?;
            let limit = config.max_queued_command_bytes;
            shared.push(Arc::new(Shared::new(&poll, WAKER, limit)?));
            polls.push(poll);
        }
        let counts = TopicCounts::new(listeners.len()).with_history(config.history);
        #[cfg(feature = "redis")]
        let counts = match self.redis {
            Some(redis) => {
                let link = crate::bridge::Link::new(redis)?;
                TopicCounts::with_bridge(listeners.len(), Arc::new(link))
                    .with_history(config.history)
            }
            None => counts,
        };
        let counts = Arc::new(counts);
        Ok(Server {
            config,
            listeners,
            tls_first: self.tls.first,
            tls_listeners,
            tls_addr,
            polls,
            local_addr,
            shared: shared.into(),
            counts,
        })
    }
}

type TlsListeners = Vec<(std::net::TcpListener, TlsConfig)>;

/// The wss listener beside a plain one (one per reactor too, on one port), and the
/// address serving wss.
#[cfg(feature = "tls")]
fn listen_tls(
    tls: &TlsListen,
    local_addr: SocketAddr,
    reactors: usize,
    config: &Config,
) -> std::io::Result<(TlsListeners, Option<SocketAddr>)> {
    let Some((addr, tls_config)) = &tls.second else {
        return Ok((Vec::new(), tls.first.as_ref().map(|_| local_addr)));
    };
    let first = listen(*addr, config)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![(first, tls_config.clone())];
    for _ in 1..reactors {
        listeners.push((listen(addr, config)?, tls_config.clone()));
    }
    Ok((listeners, Some(addr)))
}

#[cfg(not(feature = "tls"))]
fn listen_tls(
    _: &TlsListen,
    _: SocketAddr,
    _: usize,
    _: &Config,
) -> std::io::Result<(TlsListeners, Option<SocketAddr>)> {
    Ok((Vec::new(), None))
}

fn listen(addr: SocketAddr, config: &Config) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Accepted connections inherit it: no system call per connection.
    if let Some(bytes) = config.send_buffer_size {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(config.backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// A bound server, not yet serving: [`spawn`](Server::spawn) it on reactor threads
/// or [`run`](Server::run) it on the caller's thread.
pub struct Server {
    config: Config,
    listeners: Vec<std::net::TcpListener>,
    /// The TLS configuration of `listeners`, when they serve wss.
    tls_first: Option<TlsConfig>,
    /// Listeners serving wss beside plain `listeners`, one per reactor.
    tls_listeners: Vec<(std::net::TcpListener, TlsConfig)>,
    tls_addr: Option<SocketAddr>,
    polls: Vec<Poll>,
    local_addr: SocketAddr,
    shared: Arc<[Arc<Shared>]>,
    counts: Arc<TopicCounts>,
}

impl Server {
    /// A builder with the default configuration.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Binds with `config`: shorthand for `Server::builder().config(config).bind(addr)`.
    ///
    /// # Errors
    ///
    /// As [`ServerBuilder::bind`].
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> Result<Server> {
        Server::builder().config(config).bind(addr)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address serving wss:// (feature `tls`): `local_addr` when the server
    /// serves only wss, the second listener's when it serves both; `None` without
    /// TLS.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// A sender for this server, usable before it runs (for example to stop a server
    /// that [`run`](Server::run)s on the caller's thread).
    pub fn sender(&self) -> Sender {
        Sender {
            reactors: self.shared.clone(),
            counts: self.counts.clone(),
            next: Default::default(),
        }
    }

    /// Starts one thread per reactor, each with its own clone of `handler`, and
    /// returns at once. The server serves for as long as the returned
    /// [`ServerHandle`] lives: dropping it stops the server. The handle is
    /// `#[must_use]`, so a handle left on the floor is a warning:
    ///
    /// ```compile_fail
    /// #![deny(unused_must_use)]
    /// # use wsreactor::{Config, Handler, Server};
    /// # #[derive(Clone)] struct Quiet;
    /// # impl Handler for Quiet { type Session = (); }
    /// # fn main() -> wsreactor::Result<()> {
    /// let server = Server::bind("127.0.0.1:0", Config::default())?;
    /// server.spawn(Quiet)?; // unused `ServerHandle`: the server would stop here
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a thread or a registration fails.
    #[must_use = "dropping the ServerHandle stops the server at once: keep it, or call wait()"]
    pub fn spawn<H: Handler>(self, handler: H) -> Result<ServerHandle> {
        self.start_bridge()?;
        let sender = self.sender();
        let local_addr = self.local_addr;
        let tls_addr = self.tls_addr;
        let (reports, heard) = mpsc::channel();
        let mut threads = Vec::new();
        for (index, parts) in self.into_parts(handler).into_iter().enumerate() {
            match spawn_reactor(index, parts, reports.clone()) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop(&sender, threads);
                    return Err(e);
                }
            }
        }
        if let Err(e) = started(&heard, threads.len()) {
            // Those that did start stop at once: a server is whole or not at all.
            stop(&sender, threads);
            return Err(e);
        }
        crate::observe::event!(info, addr = %local_addr, tls_addr = ?tls_addr, reactors = threads.len(), "serving");
        Ok(ServerHandle::new(local_addr, tls_addr, sender, threads))
    }

    /// Serves on the caller's thread (reactor 0; the others get threads of their own)
    /// until [`Sender::shutdown`] is called and every reactor has finished.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a thread or a registration fails;
    /// [`Error::ReactorPanicked`] if a reactor thread died.
    pub fn run<H: Handler>(self, handler: H) -> Result<()> {
        self.start_bridge()?;
        let sender = self.sender();
        let mut parts = self.into_parts(handler).into_iter();
        let Some(first) = parts.next() else {
            return Err(Error::Config("no reactor"));
        };
        let (reports, heard) = mpsc::channel();
        let mut threads = Vec::new();
        for (index, parts) in parts.enumerate() {
            match spawn_reactor(index + 1, parts, reports.clone()) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    stop(&sender, threads);
                    return Err(e);
                }
            }
        }
        let first = match (started(&heard, threads.len()), build(first)) {
            (Ok(()), Ok(first)) => first,
            (Err(e), _) | (_, Err(e)) => {
                stop(&sender, threads);
                return Err(e);
            }
        };
        let survived = first.run();
        let joined = join(threads);
        sender.join_bridge();
        if !survived {
            return Err(Error::ReactorPanicked);
        }
        joined
    }

    /// Starts the bridge's threads, when there is one.
    fn start_bridge(&self) -> Result<()> {
        #[cfg(feature = "redis")]
        if let Some(link) = self.counts.bridge() {
            link.start(self.counts.clone(), self.shared.clone())?;
        }
        Ok(())
    }

    /// What each reactor is built from (on its own thread: a reactor holds sessions,
    /// which need not be `Send`).
    fn into_parts<H: Handler>(self, handler: H) -> Vec<ReactorParts<H>> {
        let Server {
            config,
            listeners,
            tls_first,
            tls_listeners,
            polls,
            shared,
            counts,
            ..
        } = self;
        let mut tls_listeners = tls_listeners.into_iter();
        listeners
            .into_iter()
            .zip(polls)
            .enumerate()
            .map(|(index, (listener, poll))| ReactorParts {
                index: index as u16,
                poll,
                listeners: Listeners {
                    first: listener,
                    first_tls: tls_first.clone(),
                    second: tls_listeners.next(),
                },
                handler: handler.clone(),
                pubsub: PubSub::new(
                    counts.clone(),
                    shared.clone(),
                    index,
                    crate::reactor::topics::Cap {
                        topics: config.max_subscriptions,
                        bytes: config.max_subscription_bytes,
                    },
                ),
                config: config.clone(),
                shared: shared[index].clone(),
            })
            .collect()
    }
}

struct ReactorParts<H> {
    index: u16,
    poll: Poll,
    listeners: Listeners,
    handler: H,
    config: Config,
    shared: Arc<Shared>,
    pubsub: PubSub,
}

impl<H: Handler> ReactorParts<H> {
    fn build(self) -> std::io::Result<Reactor<H>> {
        Reactor::new(
            self.index,
            self.poll,
            self.listeners,
            self.handler,
            self.config,
            self.shared,
            self.pubsub,
        )
    }
}

/// What a reactor thread says once it has started, or failed to.
type Started = std::result::Result<(), Error>;

/// Starts reactor `index` on a thread of its own; it reports on `started` whether
/// it could be built. The thread's result is `false` if the reactor ended on a
/// panic.
fn spawn_reactor<H: Handler>(
    index: usize,
    parts: ReactorParts<H>,
    started: mpsc::Sender<Started>,
) -> Result<JoinHandle<bool>> {
    let thread = std::thread::Builder::new()
        .name(format!("wsreactor-{index}"))
        .spawn(move || match build(parts) {
            Ok(reactor) => {
                let _ = started.send(Ok(()));
                reactor.run()
            }
            Err(e) => {
                let _ = started.send(Err(e));
                true
            }
        })?;
    Ok(thread)
}

/// Builds a reactor; a failure (an error, or a panic) closes its command queue, so
/// that nothing waits for a reactor that never ran.
fn build<H: Handler>(parts: ReactorParts<H>) -> Result<Reactor<H>> {
    let shared = parts.shared.clone();
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parts.build()));
    let result = match built {
        Ok(Ok(reactor)) => return Ok(reactor),
        Ok(Err(e)) => Err(Error::Io(e)),
        Err(_) => Err(Error::ReactorPanicked),
    };
    shared.close();
    result
}

/// Stops the reactors of a server that could not start whole.
fn stop(sender: &Sender, threads: Vec<JoinHandle<bool>>) {
    sender.shutdown(Duration::ZERO);
    let _ = join(threads);
    sender.join_bridge();
}

/// Waits for `count` reactors to report their start: the first failure, if any.
fn started(reports: &mpsc::Receiver<Started>, count: usize) -> Result<()> {
    let mut result = Ok(());
    for _ in 0..count {
        match reports.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if result.is_ok() {
                    result = Err(e);
                }
            }
            // A thread that ended without a word panicked before it could speak.
            Err(_) => {
                if result.is_ok() {
                    result = Err(Error::ReactorPanicked);
                }
            }
        }
    }
    result
}

fn join(threads: Vec<JoinHandle<bool>>) -> Result<()> {
    let mut result = Ok(());
    for thread in threads {
        if !thread.join().unwrap_or(false) {
            result = Err(Error::ReactorPanicked);
        }
    }
    result
}

/// Sends to connections from any thread. Cheap to clone.
///
/// Each send goes through the owning reactor's command queue, woken by a
/// `mio::Waker`; a broadcast encodes its frame once and every connection's queue
/// gets a clone of the same `Bytes`. Every call says whether its command was queued
/// ([`QueueStatus`]): each reactor's queue is bounded
/// ([`Config::max_queued_command_bytes`]), and refuses everything once the reactor
/// has exited (after shutdown).
///
/// # Examples
///
/// A worker thread pushes to the connections that registered with it: the handler
/// hands each [`ConnId`] over in `on_open`, the worker sends through its `Sender`.
///
/// ```no_run
/// use std::sync::mpsc;
/// use std::time::Duration;
/// use wsreactor::{Config, ConnId, Handler, Message, QueueStatus, Server, Socket};
///
/// #[derive(Clone)]
/// struct Register(mpsc::Sender<ConnId>);
///
/// impl Handler for Register {
///     type Session = ();
///     fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
///         let _ = self.0.send(ws.id());
///     }
/// }
///
/// let (ids, opened) = mpsc::channel();
/// let handle = Server::bind("127.0.0.1:9001", Config::default())?.spawn(Register(ids))?;
/// let sender = handle.sender();
/// std::thread::spawn(move || {
///     let mut clients = Vec::new();
///     for tick in 0u64.. {
///         clients.extend(opened.try_iter());
///         let text = format!("tick {tick}");
///         // A connection that closed is skipped by its reactor: its id is stale.
///         for &id in &clients {
///             if sender.send(id, Message::Text(&text)) == QueueStatus::Closed {
///                 return; // the server has shut down
///             }
///         }
///         std::thread::sleep(Duration::from_millis(100));
///     }
/// });
/// # Ok::<(), wsreactor::Error>(())
/// ```
///
/// To send one message to many connections, [`encode`] it once and hand each
/// connection the same frame with [`send_frame`](Self::send_frame); for a set
/// known by name, use topics ([`publish`](Self::publish)).
///
/// # Ordering
///
/// Commands from one thread to one reactor run in the order they were queued, so
/// everything one thread sends to one connection arrives in order. Between a
/// `Sender` and the callbacks the order is the reactor's, not the callers' clock:
/// a reactor runs the callbacks of a loop turn's events first, then the commands
/// queued by then. So a [`Socket::send`](crate::Socket::send) made in a callback
/// reaches its connection before a `Sender` send queued while that callback ran,
/// even one queued first in real time; a command queued after the reactor took its
/// batch runs in the next turn, after that turn's callbacks. A message must follow
/// another through one path to be sure to arrive after it: reply from the callback,
/// or send both from the same thread.
#[derive(Clone)]
pub struct Sender {
    reactors: Arc<[Arc<Shared>]>,
    counts: Arc<TopicCounts>,
    /// The reactor the next hand-off goes to, modulo their number.
    next: Arc<std::sync::atomic::AtomicUsize>,
}

impl Sender {
    /// Sends `message` to connection `id`. A stale id (its connection closed, even if
    /// the slot was reused) reaches nobody. `Queued` is not delivery: backpressure
    /// applies at the reactor as for any send.
    pub fn send(&self, id: ConnId, message: Message<'_>) -> QueueStatus {
        self.send_frame(id, encode(message))
    }

    /// Sends a frame encoded with [`encode`]: encoded once, it goes to several ids
    /// without another copy (each gets a reference to the same bytes).
    ///
    /// ```
    /// use wsreactor::{ConnId, Message, QueueStatus, Sender, encode};
    ///
    /// fn to_all(sender: &Sender, ids: &[ConnId], text: &str) -> usize {
    ///     let frame = encode(Message::Text(text));
    ///     ids.iter()
    ///         .filter(|&&id| sender.send_frame(id, frame.clone()) == QueueStatus::Queued)
    ///         .count()
    /// }
    /// ```
    pub fn send_frame(&self, id: ConnId, frame: Bytes) -> QueueStatus {
        match self.reactors.get(id.reactor()) {
            Some(reactor) => reactor.push(Command::Send { id, frame }),
            None => QueueStatus::Closed,
        }
    }

    /// Sends `message` to every open connection of every reactor. It is queued for
    /// every running reactor or for none: `Full` if any running reactor's queue
    /// lacks room; `Closed` once every reactor has exited (a reactor that ended on
    /// a panic while the others serve is passed over: it has no connections).
    pub fn broadcast(&self, message: Message<'_>) -> QueueStatus {
        self.broadcast_frame(encode(message), None)
    }

    /// Sends `message` to every open connection except `except`, as
    /// [`broadcast`](Self::broadcast).
    pub fn broadcast_except(&self, message: Message<'_>, except: ConnId) -> QueueStatus {
        self.broadcast_frame(encode(message), Some(except))
    }

    fn broadcast_frame(&self, frame: Bytes, except: Option<ConnId>) -> QueueStatus {
        let command = || Command::Broadcast {
            frame: frame.clone(),
            except,
        };
        // Every queue is locked, always in reactor order (reactors lock only their
        // own), so that the check and the pushes are one step for all of them.
        // A reactor that has exited (one that died, while the others serve) is
        // passed over: it has no connections left to reach.
        let mut queues: Vec<_> = self.reactors.iter().map(|r| r.lock()).collect();
        let mut live = 0;
        for (reactor, queue) in self.reactors.iter().zip(&queues) {
            match reactor.admits(queue, &command()) {
                QueueStatus::Queued => live += 1,
                QueueStatus::Closed => {}
                QueueStatus::Full => return QueueStatus::Full,
            }
        }
        if live == 0 {
            return QueueStatus::Closed;
        }
        for (reactor, queue) in self.reactors.iter().zip(&mut queues) {
            if reactor.admits(queue, &command()) == QueueStatus::Queued {
                reactor.enqueue(queue, command());
            }
        }
        drop(queues);
        for reactor in self.reactors.iter() {
            reactor.wake();
        }
        QueueStatus::Queued
    }

    /// Publishes `message` to every subscriber of `topic`, on every reactor. The
    /// frame is encoded once and handed only to the reactors that have subscribers;
    /// each delivers it in its next loop turn, batched with everything else its
    /// subscribers get in that turn. The result counts subscribers as `forwarded`
    /// (their reactor queued it) or `refused` (their reactor's queue was full, or
    /// the server shut down).
    pub fn publish(&self, topic: impl AsRef<[u8]>, message: Message<'_>) -> Published {
        let topic = topic.as_ref();
        let mut published = Published::default();
        let frame = encode(message);
        self.counts.to_other_nodes(topic, &frame);
        let counts = self.counts.lock();
        let Some(per_reactor) = counts.get(topic) else {
            return published;
        };
        let name = Bytes::copy_from_slice(topic);
        for (&count, reactor) in per_reactor.iter().zip(self.reactors.iter()) {
            if count == 0 {
                continue;
            }
            let command = Command::Publish {
                topic: name.clone(),
                frame: frame.clone(),
                except: None,
                offset: None,
            };
            match reactor.push(command) {
                QueueStatus::Queued => published.forwarded += count as usize,
                _ => published.refused += count as usize,
            }
        }
        published
    }

    /// Publishes to a topic with history ([`Config::history`]): the message gets
    /// the topic's next position, `build` makes its frame (with [`encode`]) knowing
    /// it, the history keeps it, and every subscriber gets it in offset order, the
    /// ones that join later from an earlier position by replay. `published.position`
    /// is the position; `None` (and nothing sent) without history.
    pub fn publish_positioned(
        &self,
        topic: impl AsRef<[u8]>,
        build: impl FnOnce(crate::history::Position) -> Bytes,
    ) -> Published {
        let mut published = Published::default();
        published.position = self.counts.publish_positioned(
            topic.as_ref(),
            &self.reactors,
            None,
            build,
            &mut published,
        );
        published
    }

    /// How many connections subscribe to `topic`, over every reactor.
    pub fn subscribers(&self, topic: impl AsRef<[u8]>) -> usize {
        self.counts.total(topic.as_ref())
    }

    /// The counters of all reactors together (and the bridge's, with one): the same
    /// as [`ServerHandle::stats`], from any thread or from a handler built with
    /// [`Server::sender`] (a metrics endpoint in `on_http`, say). Each reactor
    /// publishes its counters at the end of every loop turn, so what a callback
    /// reads leaves out its own turn so far; reading them takes no lock.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::sum(&self.reactor_stats());
        (
            stats.history_topics,
            stats.history_messages,
            stats.history_bytes,
        ) = self.counts.history_usage();
        #[cfg(feature = "redis")]
        {
            stats.bridge = self.bridge_stats();
        }
        stats
    }

    /// The counters of each reactor, in reactor order.
    pub fn reactor_stats(&self) -> Vec<Stats> {
        self.reactors.iter().map(|r| r.stats.snapshot()).collect()
    }

    /// Answers an upgrade that the handler deferred ([`Upgrade::later`]): accepts it
    /// with a session (opening the connection: `on_open` runs on its reactor) or
    /// refuses it with a response, as `on_upgrade` would have. `S` must be the
    /// handler's `Session` type; an answer of another type is the handler's bug and
    /// refuses the upgrade with 500.
    ///
    /// `Queued` is not delivery: an answer for a connection that has gone (the peer
    /// hung up, the handshake timeout closed it) or that was answered already
    /// reaches nobody, and its session is dropped on the reactor.
    pub fn answer_upgrade<S: Send + 'static>(&self, id: ConnId, answer: Upgrade<S>) -> QueueStatus {
        let weight = answer.weight();
        match self.reactors.get(id.reactor()) {
            Some(reactor) => reactor.push(Command::Answer {
                id,
                answer: Box::new(answer),
                weight,
            }),
            None => QueueStatus::Closed,
        }
    }

    /// Hands an upgrade request another server read (hyper, axum) to a reactor: it
    /// is checked as the engine's own are, and the handler's `on_upgrade` answers
    /// it. Await the answer (or [`wait`](handoff::PendingUpgrade::wait) for it),
    /// then write the 101 with [`Accepted::headers`](handoff::Accepted::headers)
    /// and [`attach`](handoff::Accepted::attach) the socket; or send the rejection.
    /// See [`handoff`] for the whole exchange and its limits.
    ///
    /// The reactors take requests in turn. The answer is an error when the request
    /// is not an upgrade ([`HandoffError::NotUpgrade`](handoff::HandoffError::NotUpgrade)),
    /// the server has stopped, or the reactor's queue is full.
    pub fn upgrade(&self, request: handoff::HandoffRequest) -> handoff::PendingUpgrade {
        use handoff::{HandoffAnswer, HandoffError, PendingUpgrade};
        let Some((head, peer_addr)) = request.finish() else {
            let bad = crate::HttpResponse::empty(400);
            return PendingUpgrade::ready(Ok(HandoffAnswer::Reject(bad)));
        };
        let n = self.reactors.len();
        if n == 0 {
            return PendingUpgrade::ready(Err(HandoffError::Stopped));
        }
        let mut index = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
        let (pending, reply) = PendingUpgrade::new();
        let mut command = Command::Upgrade {
            head,
            peer_addr,
            reply,
        };
        // A reactor that has exited (one that died) is passed over.
        for _ in 0..n {
            match self.reactors[index].try_push(command) {
                Ok(()) => return pending,
                Err((QueueStatus::Full, _)) => {
                    return PendingUpgrade::ready(Err(HandoffError::Busy));
                }
                Err((_, back)) => command = back,
            }
            index = (index + 1) % n;
        }
        PendingUpgrade::ready(Err(HandoffError::Stopped))
    }

    /// Starts the close handshake of connection `id` with `code` and `reason`.
    pub fn close(&self, id: ConnId, code: CloseCode, reason: &str) -> QueueStatus {
        match self.reactors.get(id.reactor()) {
            Some(reactor) => reactor.push(Command::Close {
                id,
                code,
                reason: reason.to_owned(),
            }),
            None => QueueStatus::Closed,
        }
    }

    /// Asks every reactor to shut down gracefully within `timeout` (see
    /// [`ServerHandle::shutdown`]); returns at once. A shutdown is never refused for
    /// room: it runs behind the commands queued before it. A timeout too large to
    /// add to the current time (`Duration::MAX`) means no deadline.
    pub fn shutdown(&self, timeout: Duration) {
        let deadline = Instant::now().checked_add(timeout);
        crate::observe::event!(info, ?timeout, "shutting down");
        for reactor in self.reactors.iter() {
            let _ = reactor.push(Command::Shutdown { deadline });
        }
        #[cfg(feature = "redis")]
        if let Some(link) = self.counts.bridge() {
            link.stop();
        }
    }

    /// The bridge's counters (feature `redis`): `None` without a bridge.
    #[cfg(feature = "redis")]
    pub fn bridge_stats(&self) -> Option<crate::bridge::BridgeStats> {
        self.counts.bridge().map(|link| link.stats())
    }

    /// Waits for the bridge's threads, once the server is shut down.
    fn join_bridge(&self) {
        #[cfg(feature = "redis")]
        if let Some(link) = self.counts.bridge() {
            link.join();
        }
    }

    /// The number of reactors.
    pub fn reactors(&self) -> usize {
        self.reactors.len()
    }
}

/// Encodes `message` as one unmasked frame (a server frame), ready to be sent to
/// many connections without another copy ([`Sender::send_frame`]).
///
/// ```
/// use wsreactor::{Message, encode};
///
/// let frame = encode(Message::Text("hi"));
/// assert_eq!(&frame[..], b"\x81\x02hi"); // FIN + text, length 2, unmasked
/// ```
pub fn encode(message: Message<'_>) -> Bytes {
    let payload = message.as_bytes();
    let opcode = if message.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let header = FrameHeader::outgoing(opcode, true, payload.len(), None).encode();
    let mut frame = BytesMut::with_capacity(header.as_bytes().len() + payload.len());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(payload);
    frame.freeze()
}
