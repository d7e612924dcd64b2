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
pub(crate) mod output;
pub(crate) mod timer;

use std::io::{self, Read};
use std::net::Shutdown;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::buf::{BufferPool, ReadBuf};
use crate::config::Config;
use crate::handler::{ConnId, Handler, Socket, Upgrade};
use crate::proto::handshake::{self, HandshakeError, Request};
use crate::proto::{CloseCode, CloseState, Decoded, Event};
use crate::stats::SharedStats;
use conn::{Conn, NONE, Phase, flag};
use output::{Flushed, Output};
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
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.readable(key);
                        } else if event.is_writable() {
                            self.writable(key);
                        }
                    }
                }
            }
            for key in std::mem::take(&mut self.deferred) {
                self.readable(key);
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

    // ---- reading ----------------------------------------------------------------

    fn readable(&mut self, key: usize) {
        let mut budget = self.config.read_budget;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            // Every read lands in the scratch buffer; a connection holding a
            // partial message gets the new bytes appended to its own buffer.
            let mut scratch = std::mem::take(&mut self.scratch);
            let result = read(&mut conn.stream, &mut scratch);
            let asked = scratch.len();
            let n = *result.as_ref().unwrap_or(&0);
            let input = if conn.input == NONE {
                Input::Scratch(scratch, n)
            } else {
                let mut held = std::mem::take(&mut self.inputs[conn.input as usize]);
                held.append(&scratch[..n]);
                self.scratch = scratch;
                Input::Held(held)
            };
            match result {
                Ok(0) => {
                    self.restore(key, input, None);
                    self.peer_gone(key);
                    return;
                }
                Ok(n) => {
                    self.process(key, input);
                    if self.conns.get(key).is_none() {
                        return;
                    }
                    budget = budget.saturating_sub(n);
                    if n < asked {
                        break; // the socket is drained: the next byte raises a new edge
                    }
                    if budget == 0 {
                        self.deferred.push(key);
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.restore(key, input, None);
                    break;
                }
                Err(_) => {
                    self.restore(key, input, None);
                    self.peer_gone(key);
                    return;
                }
            }
        }
        self.finish_turn(key);
    }

    /// Puts the input buffer back: the scratch buffer to the reactor, a held buffer
    /// to its connection (keeping `keep`, or all its bytes when `keep` is `None`) or
    /// to the pool when nothing is kept.
    fn restore(&mut self, key: usize, input: Input, keep: Option<Range<usize>>) {
        match input {
            Input::Scratch(scratch, _) => {
                if let Some(keep) = keep.filter(|k| !k.is_empty())
                    && let Some(conn) = self.conns.get_mut(key)
                {
                    let held = self.pool.take_with(&scratch[keep]);
                    conn.input = self.inputs.insert(held) as u32;
                }
                self.scratch = scratch;
            }
            Input::Held(mut held) => {
                if let Some(keep) = keep {
                    held.keep(keep);
                }
                let slot = self.conns.get(key).map_or(NONE, |c| c.input);
                if held.is_empty() || slot == NONE {
                    if slot != NONE {
                        self.inputs.try_remove(slot as usize);
                        if let Some(conn) = self.conns.get_mut(key) {
                            conn.input = NONE;
                        }
                    }
                    self.pool.give(held);
                } else {
                    self.inputs[slot as usize] = held;
                }
            }
        }
    }

    /// Handles the bytes of one read.
    fn process(&mut self, key: usize, mut input: Input) {
        let phase = match self.conns.get(key) {
            Some(conn) => conn.phase,
            None => return,
        };
        let bytes: &mut [u8] = match &mut input {
            Input::Scratch(scratch, n) => &mut scratch[..*n],
            Input::Held(held) => held.input_mut(),
        };
        let keep = match phase {
            Phase::Handshake => self.handshake(key, bytes),
            Phase::Open | Phase::Closing => {
                self.touch(key);
                self.frames(key, bytes)
            }
            Phase::Draining => 0..0,
        };
        self.restore(key, input, Some(keep));
    }

    /// Any input counts as life: push the idle deadline back (a store, no wheel
    /// operation) and forget an unanswered idle ping.
    fn touch(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && conn.phase == Phase::Open
        {
            conn.clear(flag::PINGED);
            if let Some(idle) = self.config.idle_timeout {
                conn.deadline = self.wheel.deadline(idle);
            }
        }
    }

    /// Reads the upgrade request. Returns the bytes to keep.
    fn handshake(&mut self, key: usize, bytes: &mut [u8]) -> Range<usize> {
        let max_headers = self.config.max_headers;
        let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut on_heap = Vec::new();
        let headers: &mut [httparse::Header<'_>] = if max_headers <= STACK_HEADERS {
            &mut on_stack[..max_headers]
        } else {
            on_heap.resize(max_headers, httparse::EMPTY_HEADER);
            &mut on_heap
        };
        let parsed = handshake::parse_http_request(bytes, headers, self.config.max_header_bytes);
        let (http, consumed) = match parsed {
            Ok(None) => return 0..bytes.len(),
            Ok(Some(parsed)) => parsed,
            Err(error) => {
                handshake::write_error(&mut self.output.cork, &error);
                self.reject(key);
                return 0..0;
            }
        };
        let request = match Request::from_http(http) {
            Ok(request) => request,
            Err(HandshakeError::NotUpgrade) => {
                let handler = &mut self.handler;
                let response = catch_unwind(AssertUnwindSafe(|| handler.on_http(&http)));
                let cork = &mut self.output.cork;
                match response {
                    Ok(Some(r))
                        if (200..=599).contains(&r.status) && is_header_text(r.content_type) =>
                    {
                        handshake::write_http_response(cork, r.status, r.content_type, &r.body);
                        // Served, not refused: only drain.
                        self.drain(key);
                        return 0..0;
                    }
                    // A response HTTP cannot carry is the handler's bug: answer 500.
                    Ok(Some(_)) | Err(_) => handshake::write_status(cork, 500),
                    Ok(None) => handshake::write_error(cork, &HandshakeError::NotUpgrade),
                }
                self.reject(key);
                return 0..0;
            }
            Err(error) => {
                handshake::write_error(&mut self.output.cork, &error);
                self.reject(key);
                return 0..0;
            }
        };
        let handler = &mut self.handler;
        match catch_unwind(AssertUnwindSafe(|| handler.on_upgrade(&request))) {
            Ok(Upgrade::Accept { session, protocol }) => {
                // Only a subprotocol the client offered may be confirmed.
                let protocol = protocol.filter(|p| request.subprotocols().any(|o| o == *p));
                handshake::write_accept(
                    &mut self.output.cork,
                    request.key().as_bytes(),
                    protocol,
                    None,
                );
                let Some(conn) = self.conns.get_mut(key) else {
                    return 0..0;
                };
                conn.session = Some(session);
                conn.phase = Phase::Open;
                conn.set(flag::OPENED);
            }
            Ok(Upgrade::Reject(status)) => {
                // Only an error status refuses; anything else is the handler's bug.
                let status = if (300..=599).contains(&status) {
                    status
                } else {
                    500
                };
                handshake::write_status(&mut self.output.cork, status);
                self.reject(key);
                return 0..0;
            }
            Err(_) => {
                handshake::write_status(&mut self.output.cork, 500);
                self.reject(key);
                return 0..0;
            }
        }
        match self.config.idle_timeout {
            Some(idle) => self.set_deadline(key, idle),
            None => self.clear_deadline(key),
        }
        self.callback(key, |h, ws| h.on_open(ws));
        // Frames sent right behind the request are in this read already.
        let rest = self.frames(key, &mut bytes[consumed..]);
        rest.start + consumed..rest.end + consumed
    }

    /// Answers a refused handshake: the response is corked; flush it and drain.
    fn reject(&mut self, key: usize) {
        self.output.stats.rejected += 1;
        self.drain(key);
    }

    /// Hands frames to proto and events to the handler. Returns the bytes to keep.
    fn frames(&mut self, key: usize, bytes: &mut [u8]) -> Range<usize> {
        let limits = self.config.limits;
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return 0..0;
            };
            if conn.phase == Phase::Draining {
                return 0..0;
            }
            let decoded = conn
                .proto
                .decode(&mut bytes[pos..], &mut self.output.cork, &limits);
            let (consumed, event) = match decoded {
                Decoded::NeedMore { keep } => return pos + keep.start..pos + keep.end,
                Decoded::Event { consumed, event } => (consumed, event),
            };
            match event {
                Event::Message(message) => {
                    self.output.stats.messages_in += 1;
                    self.output.stats.bytes_in += message.len() as u64;
                    self.callback(key, |h, ws| h.on_message(ws, message));
                }
                Event::Ping(payload) => self.callback(key, |h, ws| h.on_ping(ws, payload)),
                Event::Pong(payload) => self.callback(key, |h, ws| h.on_pong(ws, payload)),
                Event::Close(frame) => {
                    let (code, reason) =
                        frame.map_or((CloseCode::NO_STATUS, ""), |f| (f.code, f.reason));
                    self.report_close(key, code, reason);
                    self.drain(key);
                    return 0..0;
                }
                Event::Error(error) => {
                    self.report_close(key, error.code, error.reason);
                    self.drain(key);
                    return 0..0;
                }
            }
            pos += consumed;
            self.after_callback(key);
        }
    }

    /// Calls the handler with a socket for connection `key`. A panic closes the
    /// connection with 1011.
    fn callback(&mut self, key: usize, f: impl FnOnce(&mut H, &mut Socket<'_, H::Session>)) {
        let index = self.index;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.session.is_none() {
            return;
        }
        let id = ConnId {
            reactor: index,
            slot: key as u32,
            generation: conn.generation,
        };
        let handler = &mut self.handler;
        let mut socket = Socket {
            conn,
            output: &mut self.output,
            id,
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| f(handler, &mut socket)));
        if outcome.is_err()
            && let Some(conn) = self.conns.get_mut(key)
        {
            self.output
                .close(conn, CloseCode::INTERNAL_ERROR, "internal error");
        }
        self.after_callback(key);
    }

    /// Notices a close the handler (or the backpressure policy) started.
    fn after_callback(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Open && conn.proto.close_state() == CloseState::SentClose {
            conn.phase = Phase::Closing;
            let timeout = self.config.close_timeout;
            self.set_deadline(key, timeout);
        }
    }

    // ---- writing ----------------------------------------------------------------

    fn writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        let waiting =
            conn.output != NONE || (conn.phase == Phase::Draining && !conn.has(flag::WRITE_SHUT));
        if waiting {
            self.finish_turn(key);
        }
    }

    /// Flushes the cork and the queue of `key`; calls `on_drain` when a queue that
    /// met backpressure empties; shuts down our side once a draining connection has
    /// written everything.
    fn finish_turn(&mut self, key: usize) {
        for _ in 0..2 {
            let Some(conn) = self.conns.get_mut(key) else {
                self.output.cork.clear();
                return;
            };
            match self.output.flush(conn) {
                Ok(Flushed::Partly) => return,
                Ok(Flushed::All) => {}
                Err(_) => {
                    self.peer_gone(key);
                    return;
                }
            }
            if conn.phase == Phase::Draining {
                if !conn.has(flag::WRITE_SHUT) {
                    conn.set(flag::WRITE_SHUT);
                    if conn.stream.shutdown(Shutdown::Write).is_err() {
                        self.remove(key);
                    }
                }
                return;
            }
            if !conn.has(flag::WANTS_DRAIN) {
                return;
            }
            conn.clear(flag::WANTS_DRAIN);
            self.callback(key, |h, ws| h.on_drain(ws));
            // Flush again what on_drain sent.
        }
    }

    /// Moves a connection to draining: nothing more is read; what is queued is
    /// flushed, then our side is shut down and the peer's FIN awaited.
    fn drain(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.phase = Phase::Draining;
        let timeout = self.config.close_timeout;
        self.set_deadline(key, timeout);
    }

    // ---- closing ----------------------------------------------------------------

    /// Calls `on_close` once for an opened connection.
    fn report_close(&mut self, key: usize, code: CloseCode, reason: &str) {
        let index = self.index;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.has(flag::OPENED) {
            return;
        }
        conn.clear(flag::OPENED);
        conn.close_code = code.0;
        self.output.stats.count_close(code.0);
        let id = ConnId {
            reactor: index,
            slot: key as u32,
            generation: conn.generation,
        };
        if let Some(session) = conn.session.take() {
            let handler = &mut self.handler;
            // A panic in on_close has nothing left to close.
            let _ = catch_unwind(AssertUnwindSafe(|| {
                handler.on_close(id, session, code, reason)
            }));
        }
    }

    /// The peer closed the TCP connection or it failed.
    fn peer_gone(&mut self, key: usize) {
        self.remove(key);
    }

    /// Drops a connection and everything it holds.
    fn remove(&mut self, key: usize) {
        let code = match self.conns.get(key) {
            Some(conn) => conn.close_code,
            None => return,
        };
        self.report_close(key, CloseCode(code), "");
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        self.output.release(&mut conn);
        if conn.input != NONE
            && let Some(held) = self.inputs.try_remove(conn.input as usize)
        {
            self.pool.give(held);
        }
        // Dropping the stream closes the socket, which also removes it from epoll.
    }

    fn drop_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove(key);
        }
    }

    // ---- timers -----------------------------------------------------------------

    fn set_deadline(&mut self, key: usize, after: Duration) {
        let deadline = self.wheel.deadline(after);
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.deadline = deadline;
        if conn.timer_at == 0 || deadline < conn.timer_at {
            conn.timer_at = self.wheel.schedule(deadline, (key as u32, conn.generation));
        }
    }

    fn clear_deadline(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.deadline = 0;
        }
    }

    fn timers(&mut self) {
        let now = self.wheel.tick_of(Instant::now());
        if now <= self.wheel.now() {
            return;
        }
        self.accept_paused = false;
        if self.listener.is_some() {
            self.accept_pending = true;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(now, &mut due);
        for ((key, generation), tick) in due.drain(..) {
            let key = key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation || conn.timer_at != tick {
                continue; // a superseded entry
            }
            conn.timer_at = 0;
            if conn.deadline == 0 {
                continue;
            }
            if conn.deadline > now {
                conn.timer_at = self.wheel.schedule(conn.deadline, (key as u32, generation));
                continue;
            }
            conn.deadline = 0;
            self.timeout(key);
        }
        self.due = due;
    }

    fn timeout(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.phase {
            Phase::Handshake => {
                self.output.stats.rejected += 1;
                self.remove(key);
            }
            Phase::Open => {
                let Some(idle) = self.config.idle_timeout else {
                    return;
                };
                if conn.has(flag::PINGED) {
                    self.output
                        .close(conn, CloseCode::GOING_AWAY, "idle timeout");
                    self.after_callback(key);
                } else {
                    conn.set(flag::PINGED);
                    let _ = self.output.send(conn, crate::proto::OpCode::Ping, b"");
                    self.set_deadline(key, idle);
                }
                self.finish_turn(key);
            }
            Phase::Closing | Phase::Draining => self.remove(key),
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
