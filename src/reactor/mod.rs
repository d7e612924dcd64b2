//! The event loop: one thread, one `mio::Poll`, one slab of connections.
//!
//! This is the only module that touches mio. Each turn of the loop:
//!
//! 1. waits for readiness (or the next timer tick);
//! 2. accepts new connections, up to a budget;
//! 3. serves each ready connection: reads until the socket is drained (a short read
//!    or `WouldBlock`) or its read budget is spent, hands the bytes to proto, calls
//!    the handler for each event, then flushes what the callbacks sent in one write;
//! 4. runs the commands other threads queued (sends, broadcasts, closes, shutdown),
//!    up to a per-turn budget;
//! 5. fires the timers that are due;
//! 6. hands any bytes still staged in the cork (or displaced from it) to the
//!    connection they were staged for, and publishes the counters.

mod commands;
pub(crate) mod conn;
mod deflate;
mod fault;
#[cfg(test)]
mod fault_tests;
mod handoff;
mod http;
mod lifecycle;
pub(crate) mod output;
mod queue;
mod read;
#[cfg(test)]
mod tests;
pub(crate) mod timer;
pub(crate) mod tls;
pub(crate) mod topics;

use std::collections::VecDeque;
use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::buf::{BufferPool, ReadBuf};
use crate::config::Config;
use crate::handler::Handler;
pub(crate) use commands::{Command, Shared};
use conn::Conn;
use deflate::{Compressors, Inflaters};
use output::Output;
use timer::{Entry, Stamp, TimerWheel};
use tls::TlsConfig;
use topics::PubSub;

// A token packs a slab key (low 32 bits) and its generation (high 32 bits).
const _: () = assert!(
    usize::BITS >= 64,
    "wsreactor packs a slot and a generation into a mio token: it needs a 64-bit usize"
);

const LISTENER: Token = Token(usize::MAX);
pub(crate) const WAKER: Token = Token(usize::MAX - 1);
/// The second listener, which serves wss beside a plain one.
const LISTENER_TLS: Token = Token(usize::MAX - 2);

/// The size of the shared read buffer.
const SCRATCH: usize = 64 * 1024;
/// The size of a pooled read buffer.
const POOLED: usize = 16 * 1024;
/// How often reactor 0 lets aged messages out of the topics' histories.
const HISTORY_SWEEP: Duration = Duration::from_secs(1);
/// Connections accepted per turn before others are served.
const ACCEPT_BUDGET: usize = 256;
/// The most headers parsed on the stack; a larger configured limit uses the heap.
const STACK_HEADERS: usize = 64;

/// The configured timeouts, in wheel ticks (computed once: a division per use
/// would cost a 128-bit division per read).
#[derive(Clone, Copy)]
struct Timeouts {
    handshake: Option<u32>,
    idle: Option<u32>,
    close: u32,
    write: Option<u32>,
}

/// The input of one read, while it is processed.
enum Input {
    /// In the shared scratch buffer: `n` bytes.
    Scratch(Vec<u8>, usize),
    /// In the connection's own buffer.
    Held(ReadBuf),
}

pub(crate) struct Reactor<H: Handler> {
    index: u16,
    poll: Poll,
    listener: Option<TcpListener>,
    /// The TLS configuration of `listener`, when it serves wss.
    listener_tls: Option<TlsConfig>,
    /// A second listener serving wss beside a plain `listener`, and its configuration.
    tls_listener: Option<(TcpListener, TlsConfig)>,
    conns: Slab<Conn<H::Session>>,
    inputs: Slab<ReadBuf>,
    pool: BufferPool,
    scratch: Vec<u8>,
    /// Bytes inflated for the connection being read, since its read began: they
    /// count against the read budget like the bytes read.
    inflated: usize,
    output: Output,
    /// permessage-deflate's decompressors (`None` when compression is off).
    inflaters: Option<Box<Inflaters>>,
    pubsub: PubSub,
    wheel: TimerWheel,
    timeouts: Timeouts,
    due: Vec<(Entry, Stamp)>,
    handler: H,
    config: Config,
    shared: Arc<Shared>,
    next_generation: conn::Generation,
    /// Set once shutting down: the deadline for the close handshakes (`None`: none).
    shutdown: Option<Option<Instant>>,
    /// Connections whose read budget ran out: read again next turn (edge-triggered
    /// readiness will not report them again).
    deferred: Vec<usize>,
    /// The other half of `deferred`, swapped in while it is served (no allocation).
    deferred_spare: Vec<usize>,
    accept_pending: bool,
    accept_paused: bool,
    /// Commands taken from the shared queue and not yet run.
    commands: VecDeque<Command>,
    /// Commands wait (woken, or left over from the last turn's budget).
    commands_pending: bool,
    /// Reused by broadcasts, so they do not allocate.
    broadcast_keys: Vec<usize>,
    /// The other half of `pubsub.batched`, swapped in while it is served.
    batched_spare: Vec<usize>,
    /// The answer to a deferred upgrade, while the held request of the connection
    /// it is for is read again.
    answer_now: Option<(usize, crate::response::Answer<H::Session>)>,
    /// Upgrades handed over by another server, waiting for their sockets.
    handoffs: handoff::Handoffs<H::Session>,
    /// When reactor 0 next sweeps the topics' histories (`None`: never; other
    /// reactors, or no history).
    history_sweep: Option<Instant>,
    /// The `metrics` facade's handles, pushed once per turn.
    #[cfg(feature = "metrics")]
    exporter: crate::observe::Exporter,
}

impl<H: Handler> Reactor<H> {
    pub(crate) fn new(
        index: u16,
        poll: Poll,
        listeners: Listeners,
        handler: H,
        config: Config,
        shared: Arc<Shared>,
        pubsub: PubSub,
    ) -> io::Result<Reactor<H>> {
        let mut listener = TcpListener::from_std(listeners.first);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let tls_listener = match listeners.second {
            Some((second, tls)) => {
                let mut second = TcpListener::from_std(second);
                poll.registry()
                    .register(&mut second, LISTENER_TLS, Interest::READABLE)?;
                Some((second, tls))
            }
            None => None,
        };
        #[cfg(test)]
        if config.fault == Some(crate::config::Fault::Startup) {
            panic!("injected fault: Startup");
        }
        let wheel = TimerWheel::new(config.timer_tick(), Instant::now(), config.timer_origin);
        let timeouts = Timeouts {
            handshake: config.handshake_timeout.map(|t| wheel.ticks(t)),
            idle: config.idle_timeout.map(|t| wheel.ticks(t)),
            close: wheel.ticks(config.close_timeout),
            write: config.write_timeout.map(|t| wheel.ticks(t)),
        };
        let history_sweep = (index == 0 && config.history.is_some()).then(Instant::now);
        let max_pooled = 4 * SCRATCH;
        let mut output = Output::new(config.max_backpressure, config.backpressure_policy);
        output.deflate = Compressors::new(&config.compression);
        output.tls.set_key_release(config.tls_key_release);
        Ok(Reactor {
            index,
            poll,
            listener: Some(listener),
            listener_tls: listeners.first_tls,
            tls_listener,
            conns: Slab::new(),
            inputs: Slab::new(),
            pool: BufferPool::new(config.pooled_buffers, POOLED, max_pooled),
            scratch: vec![0; SCRATCH],
            inflated: 0,
            output,
            inflaters: Inflaters::new(&config.compression),
            pubsub,
            wheel,
            timeouts,
            due: Vec::new(),
            handler,
            config,
            shared,
            next_generation: 1,
            shutdown: None,
            // Room from the start: the first connection to spend its read budget
            // must not allocate on the reactor thread (tests/zero_alloc_reactor.rs
            // saw it 1 run in 10, whenever the warm-up had not spent one).
            deferred: Vec::with_capacity(64),
            deferred_spare: Vec::with_capacity(64),
            accept_pending: true,
            accept_paused: false,
            commands: VecDeque::new(),
            commands_pending: true,
            broadcast_keys: Vec::new(),
            batched_spare: Vec::new(),
            answer_now: None,
            handoffs: handoff::Handoffs::new(),
            history_sweep,
            #[cfg(feature = "metrics")]
            exporter: crate::observe::Exporter::new(index),
        })
    }

    /// Runs until shut down and every connection is gone. From then on (or if the
    /// thread panics) the reactor's command queue refuses everything. Returns
    /// `false` if the reactor ended on a panic (see the `fault` module).
    pub(crate) fn run(mut self) -> bool {
        let shared = self.shared.clone();
        let _closed = commands::CloseOnExit(&shared);
        let mut events = Events::with_capacity(1024);
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.turn(&mut events))) {
                Ok(true) => {}
                Ok(false) => return true,
                Err(_) => {
                    self.died();
                    return false;
                }
            }
        }
    }

    /// One turn of the loop; `false` once the reactor is done.
    fn turn(&mut self, events: &mut Events) -> bool {
        // Publications batched after the turn's flush (by an on_drain run while the
        // turn settled) leave in the next turn, not at the next tick.
        let busy = !self.deferred.is_empty()
            || self.accept_pending
            || self.commands_pending
            || !self.pubsub.batched.is_empty();
        let timeout = if busy {
            Duration::ZERO
        } else {
            self.wheel.until_next_tick(Instant::now())
        };
        if let Err(e) = self.poll.poll(events, Some(timeout))
            && e.kind() != io::ErrorKind::Interrupted
        {
            // The poll itself failed: nothing can be served any more.
            self.drop_all();
            return false;
        }
        self.output.stats.turns += 1;
        // Deadlines set in this turn count from now, not from the last tick the
        // timers saw: the poll may have returned late, on a busy machine.
        self.wheel.observe(Instant::now());
        for event in events.iter() {
            match event.token() {
                LISTENER | LISTENER_TLS => self.accept_pending = true,
                WAKER => self.commands_pending = true,
                Token(token) => {
                    let key = token & 0xffff_ffff;
                    let generation = (token >> 32) as u32;
                    if self
                        .conns
                        .get(key)
                        .is_none_or(|c| c.generation as u32 != generation)
                    {
                        continue; // a stale event for a reused slot
                    }
                    let closed = event.is_read_closed() || event.is_error();
                    if event.is_readable() || closed {
                        self.guard(key, |r| r.readable(key, closed));
                    } else if event.is_writable() {
                        self.guard(key, |r| r.writable(key));
                    }
                }
            }
        }
        let spare = std::mem::take(&mut self.deferred_spare);
        let mut deferred = std::mem::replace(&mut self.deferred, spare);
        for key in deferred.drain(..) {
            self.guard(key, |r| r.readable(key, false));
        }
        self.deferred_spare = deferred;
        if self.commands_pending {
            self.run_commands();
        }
        if self.accept_pending {
            self.accept();
        }
        self.flush_batched();
        self.timers();
        self.handoffs.expire();
        if let Some(at) = self.history_sweep {
            let now = Instant::now();
            if now >= at {
                self.pubsub.counts.sweep_histories();
                self.history_sweep = Some(crate::config::deadline(now, HISTORY_SWEEP));
            }
        }
        self.settle();
        self.output.stats.tls_idle_records = self.output.tls.idle_dropped;
        self.output.stats.tls_handshakes = self.output.tls.handshakes;
        self.output.stats.tls_resumed = self.output.tls.resumed;
        self.output.stats.topics = self.pubsub.topics.len() as u64;
        self.output.stats.subscriptions = self.pubsub.topics.subscriptions;
        self.shared
            .stats
            .publish(&self.output.stats, self.conns.len());
        #[cfg(feature = "metrics")]
        {
            self.exporter.record(&self.output.stats, self.conns.len());
            #[cfg(feature = "redis")]
            if self.index == 0 {
                let bridge = self.pubsub.counts.bridge().map(|link| link.stats());
                self.exporter.record_bridge(bridge);
            }
        }
        if let Some(deadline) = self.shutdown {
            if self.conns.is_empty() {
                return false;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.drop_all();
                self.shared.stats.publish(&self.output.stats, 0);
                return false;
            }
        }
        true
    }

    // ---- accepting -------------------------------------------------------------

    fn accept(&mut self) {
        self.accept_pending = false;
        if self.accept_paused {
            return;
        }
        // Each listener gets the budget: a flood on one does not starve the other.
        let mut more = false;
        for second in [false, true] {
            let mut budget_spent = true;
            for _ in 0..ACCEPT_BUDGET {
                let (listener, tls) = match (second, &self.listener, &self.tls_listener) {
                    (false, Some(listener), _) => (listener, self.listener_tls.as_ref()),
                    (true, Some(_), Some((listener, tls))) => (listener, Some(tls)),
                    _ => {
                        budget_spent = false;
                        break;
                    }
                };
                match listener.accept() {
                    Ok((stream, _)) => {
                        let tls = tls.cloned();
                        self.add(stream, tls.as_ref());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        budget_spent = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                    Err(_) => {
                        // Out of file descriptors (or memory): retry at the next tick
                        // rather than spin. Pending connections wait in the backlog.
                        self.accept_paused = true;
                        return;
                    }
                }
            }
            more |= budget_spent;
        }
        self.accept_pending = more;
    }

    fn add(&mut self, stream: TcpStream, tls: Option<&TlsConfig>) {
        let generation = self.next_generation;
        #[cfg(not(test))]
        let step = 1;
        #[cfg(test)]
        let step = self.config.generation_step;
        self.next_generation += step;
        let Some(key) = self.register(stream, generation) else {
            return;
        };
        let conn = &mut self.conns[key];
        if let Some(tls) = tls {
            if !self.output.tls.start(key, generation, tls) {
                self.conns.remove(key);
                return;
            }
            conn.set(conn::flag::TLS);
        }
        self.output.stats.accepted += 1;
        if let Some(ticks) = self.timeouts.handshake {
            self.set_deadline(key, ticks);
        }
    }
}

impl<H: Handler> Reactor<H> {
    /// Registers `stream` with the poll and gives it a slot as connection
    /// `generation` (in its handshake); its slab key, or `None` when it is refused
    /// (the stream is closed as it drops).
    pub(super) fn register(
        &mut self,
        mut stream: TcpStream,
        generation: conn::Generation,
    ) -> Option<usize> {
        // Messages are written whole and corked: Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= u32::MAX as usize {
            return None; // four billion connections in one reactor: refuse
        }
        // The token keeps the generation's low 32 bits: enough to tell a stale
        // event of a reused slot within one poll's batch.
        let token = Token(key | ((generation as u32 as usize) << 32));
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut stream, token, interest)
            .ok()?;
        entry.insert(Conn::new(stream, generation));
        Some(key)
    }
}

/// A reactor's listening sockets: the first (plain, or TLS with its configuration)
/// and an optional second one serving wss beside a plain first.
pub(crate) struct Listeners {
    pub(crate) first: std::net::TcpListener,
    pub(crate) first_tls: Option<TlsConfig>,
    pub(crate) second: Option<(std::net::TcpListener, TlsConfig)>,
}

/// One read, retrying on EINTR.
fn read(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}
