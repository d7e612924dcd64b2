//! The event loop: one thread, one `mio::Poll`, one slab of connections.
//!
//! This is the only module that touches mio. Each turn of the loop:
//!
//! 1. waits for readiness (or the next timer tick);
//! 2. accepts new connections, up to a budget;
//! 3. serves each ready connection: reads until the socket is drained (a short read
//!    or `WouldBlock`) or its read budget is spent, hands the bytes to proto, calls
//!    the handler for each event, then flushes what the callbacks sent in one write;
//! 4. runs the commands other threads queued (sends, broadcasts, closes, shutdown);
//! 5. fires the timers that are due, and publishes the counters.

pub(crate) mod conn;
mod lifecycle;
pub(crate) mod output;
mod read;
pub(crate) mod timer;

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::buf::{BufferPool, ReadBuf};
use crate::config::Config;
use crate::handler::{ConnId, Handler};
use crate::proto::CloseCode;
use crate::stats::SharedStats;
use conn::{Conn, Phase};
use output::Output;
use timer::{Entry, Tick, TimerWheel};

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// The size of the shared read buffer.
const SCRATCH: usize = 64 * 1024;
/// The size of a pooled read buffer.
const POOLED: usize = 16 * 1024;
/// Connections accepted per turn before others are served.
const ACCEPT_BUDGET: usize = 256;
/// The most headers parsed on the stack; a larger configured limit uses the heap.
const STACK_HEADERS: usize = 64;

/// A request from another thread.
pub(crate) enum Command {
    Send {
        id: ConnId,
        frame: Bytes,
    },
    Broadcast {
        frame: Bytes,
        except: Option<ConnId>,
    },
    Close {
        id: ConnId,
        code: CloseCode,
        reason: String,
    },
    Shutdown {
        deadline: Instant,
    },
}

/// What a reactor shares with the rest of the process.
pub(crate) struct Shared {
    pub(crate) commands: Mutex<Vec<Command>>,
    /// Set while commands wait, so that senders wake the reactor once, not per
    /// command.
    pending: AtomicBool,
    waker: Waker,
    pub(crate) stats: SharedStats,
}

impl Shared {
    pub(crate) fn new(poll: &Poll) -> io::Result<Shared> {
        Ok(Shared {
            commands: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            waker: Waker::new(poll.registry(), WAKER)?,
            stats: SharedStats::default(),
        })
    }

    /// Queues a command and wakes the reactor if it was not already woken.
    pub(crate) fn push(&self, command: Command) {
        match self.commands.lock() {
            Ok(mut queue) => queue.push(command),
            Err(poisoned) => poisoned.into_inner().push(command),
        }
        if !self.pending.swap(true, Ordering::AcqRel) {
            // A failed wake means the reactor is gone; there is nobody to tell.
            let _ = self.waker.wake();
        }
    }
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
    conns: Slab<Conn<H::Session>>,
    inputs: Slab<ReadBuf>,
    pool: BufferPool,
    scratch: Vec<u8>,
    output: Output,
    wheel: TimerWheel,
    due: Vec<(Entry, Tick)>,
    handler: H,
    config: Config,
    shared: Arc<Shared>,
    next_generation: u32,
    shutdown: Option<Instant>,
    /// Connections whose read budget ran out: read again next turn (edge-triggered
    /// readiness will not report them again).
    deferred: Vec<usize>,
    accept_pending: bool,
    accept_paused: bool,
    commands: Vec<Command>,
}

impl<H: Handler> Reactor<H> {
    pub(crate) fn new(
        index: u16,
        poll: Poll,
        listener: std::net::TcpListener,
        handler: H,
        config: Config,
        shared: Arc<Shared>,
    ) -> io::Result<Reactor<H>> {
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let wheel = TimerWheel::new(config.timer_tick(), Instant::now());
        let max_pooled = 4 * SCRATCH;
        Ok(Reactor {
            index,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            inputs: Slab::new(),
            pool: BufferPool::new(config.pooled_buffers, POOLED, max_pooled),
            scratch: vec![0; SCRATCH],
            output: Output::new(config.max_backpressure, config.backpressure_policy),
            wheel,
            due: Vec::new(),
            handler,
            config,
            shared,
            next_generation: 1,
            shutdown: None,
            deferred: Vec::new(),
            accept_pending: true,
            accept_paused: false,
            commands: Vec::new(),
        })
    }

    /// Runs until shut down and every connection is gone.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let busy = !self.deferred.is_empty() || self.accept_pending;
            let timeout = if busy {
                Duration::ZERO
            } else {
                self.wheel.until_next_tick(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                // The poll itself failed: nothing can be served any more.
                self.drop_all();
                return;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_pending = true,
                    WAKER => self.run_commands(),
                    Token(token) => {
                        let key = token & 0xffff_ffff;
                        let generation = (token >> 32) as u32;
                        if self
                            .conns
                            .get(key)
                            .is_none_or(|c| c.generation != generation)
                        {
                            continue; // a stale event for a reused slot
                        }
                        let closed = event.is_read_closed() || event.is_error();
                        if event.is_readable() || closed {
                            self.readable(key, closed);
                        } else if event.is_writable() {
                            self.writable(key);
                        }
                    }
                }
            }
            for key in std::mem::take(&mut self.deferred) {
                self.readable(key, false);
            }
            if self.accept_pending {
                self.accept();
            }
            self.timers();
            self.shared
                .stats
                .publish(&self.output.stats, self.conns.len());
            if let Some(deadline) = self.shutdown {
                if self.conns.is_empty() {
                    return;
                }
                if Instant::now() >= deadline {
                    self.drop_all();
                    self.shared.stats.publish(&self.output.stats, 0);
                    return;
                }
            }
        }
    }

    // ---- accepting -------------------------------------------------------------

    fn accept(&mut self) {
        self.accept_pending = false;
        if self.accept_paused {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => self.add(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
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
        self.accept_pending = true;
    }

    fn add(&mut self, mut stream: TcpStream) {
        // Messages are written whole and corked: Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if key >= u32::MAX as usize {
            return; // four billion connections in one reactor: refuse
        }
        let token = Token(key | ((generation as usize) << 32));
        let interest = Interest::READABLE | Interest::WRITABLE;
        if self
            .poll
            .registry()
            .register(&mut stream, token, interest)
            .is_err()
        {
            return;
        }
        entry.insert(Conn::new(stream, generation));
        self.output.stats.accepted += 1;
        if let Some(timeout) = self.config.handshake_timeout {
            self.set_deadline(key, timeout);
        }
    }

    // ---- commands from other threads -----------------------------------------------

    fn conn_key(&self, id: ConnId) -> Option<usize> {
        let key = id.slot as usize;
        let conn = self.conns.get(key)?;
        (id.reactor == self.index && conn.generation == id.generation).then_some(key)
    }

    fn run_commands(&mut self) {
        self.shared.pending.store(false, Ordering::Release);
        let mut commands = std::mem::take(&mut self.commands);
        match self.shared.commands.lock() {
            Ok(mut queue) => std::mem::swap(&mut *queue, &mut commands),
            Err(poisoned) => std::mem::swap(&mut *poisoned.into_inner(), &mut commands),
        }
        for command in commands.drain(..) {
            match command {
                Command::Send { id, frame } => {
                    if let Some(key) = self.conn_key(id) {
                        self.send_shared(key, &frame);
                    }
                }
                Command::Broadcast { frame, except } => {
                    let except = except.and_then(|id| self.conn_key(id));
                    let keys: Vec<usize> = self
                        .conns
                        .iter()
                        .filter(|(k, c)| c.phase == Phase::Open && Some(*k) != except)
                        .map(|(k, _)| k)
                        .collect();
                    for key in keys {
                        self.send_shared(key, &frame);
                    }
                }
                Command::Close { id, code, reason } => {
                    if let Some(key) = self.conn_key(id) {
                        if let Some(conn) = self.conns.get_mut(key) {
                            self.output.close(conn, code, &reason);
                        }
                        self.after_callback(key);
                        self.finish_turn(key);
                    }
                }
                Command::Shutdown { deadline } => self.begin_shutdown(deadline),
            }
        }
        self.commands = commands;
    }

    fn send_shared(&mut self, key: usize, frame: &Bytes) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let _ = self.output.send_shared(conn, frame);
        if !self.output.cork.is_empty() {
            // The backpressure policy closed the connection.
            self.after_callback(key);
            self.finish_turn(key);
        }
    }

    /// Stops accepting, closes every connection with 1001, and lets the loop end
    /// once they are gone or the deadline passes.
    fn begin_shutdown(&mut self, deadline: Instant) {
        self.shutdown = Some(self.shutdown.map_or(deadline, |d| d.min(deadline)));
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_pending = false;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.phase {
                Phase::Handshake => self.remove(key),
                Phase::Open => {
                    self.output
                        .close(conn, CloseCode::GOING_AWAY, "server shutting down");
                    self.after_callback(key);
                    self.finish_turn(key);
                }
                Phase::Closing | Phase::Draining => {}
            }
        }
    }
}

/// Whether `text` can be sent as a header value (no CR, LF or NUL to split the
/// response).
fn is_header_text(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
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
