//! The soak's churning clients, on one thread with its own `mio::Poll`: idle
//! connections that open, hold, close and reopen ([`idle`]), and abusive ones, each
//! slot cycling through every kind of [`Abuse`] ([`abusive`]).
//!
//! Every connection has one deadline, checked on each turn of the loop: the end of
//! an idle hold, the next byte of a slowloris, the time an answer is overdue.

mod abusive;
mod idle;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use wsreactor::proto::Limits;

use super::abuse::{ANSWER_TIMEOUT, Abuse, NEVER_READS_WINDOW, Observed};
use crate::client::{Client, Failure, Phase};
use crate::net;

/// Connections started per turn of the loop, so a thousand idle slots ramp up
/// without a burst of a thousand SYNs.
const STARTS_PER_TURN: usize = 64;
/// Source addresses the churning clients spread over (127.0.0.1 ..= 127.0.0.8):
/// thousands of short connections a minute, each leaving a TIME_WAIT behind.
const SOURCES: usize = 8;
/// The most of an HTTP response kept, for its status line.
const RESPONSE_KEEP: usize = 1024;

/// One churning thread's share of the soak.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: SocketAddr,
    pub host: String,
    pub path: String,
    pub idle: usize,
    /// The mean time an idle connection stays open (each hold is 0.5 to 1.5 times it).
    pub idle_hold: Duration,
    pub abusers: usize,
    /// The kinds the abusive slots cycle through (not empty).
    pub kinds: Vec<Abuse>,
    /// Every abusive slot begins as a client that never reads (when that kind is
    /// in the cycle): the most the mix can make the server hold at once, for the
    /// warm-up round.
    pub prime: bool,
}

/// What the churning thread and the main thread share: the stop signal and live
/// figures for the samples.
#[derive(Default)]
pub struct Shared {
    pub stop: AtomicBool,
    pub idle_open: AtomicU64,
    pub abuses: AtomicU64,
}

/// What the churning clients saw.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Idle connections that opened, held, and closed with the close handshake
    /// answered (1000) and the TCP connection closed by the server.
    pub idle_cycles: u64,
    /// Idle connections that went wrong, by what went wrong.
    pub idle_errors: BTreeMap<String, u64>,
    /// Each abuse's observations.
    pub abuses: BTreeMap<Abuse, BTreeMap<Observed, u64>>,
    /// Connections still connecting or upgrading when a round ended: not counted.
    pub cut_short: u64,
    /// Bytes sent by the clients that never read.
    pub never_reads_bytes: u64,
    /// Ticks on which a client that never read could not hand the kernel its next
    /// message (the server had stopped reading it).
    pub never_reads_stalls: u64,
}

impl Outcome {
    pub fn add(&mut self, other: &Outcome) {
        self.idle_cycles += other.idle_cycles;
        for (what, n) in &other.idle_errors {
            *self.idle_errors.entry(what.clone()).or_default() += n;
        }
        for (kind, seen) in &other.abuses {
            let mine = self.abuses.entry(*kind).or_default();
            for (observed, n) in seen {
                *mine.entry(*observed).or_default() += n;
            }
        }
        self.cut_short += other.cut_short;
        self.never_reads_bytes += other.never_reads_bytes;
        self.never_reads_stalls += other.never_reads_stalls;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Job {
    Idle,
    Abuse { kind: Abuse, variant: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The TCP connect is in progress.
    Connecting,
    /// The upgrade request is out; the 101 has not arrived.
    Upgrading,
    /// Idle: open and silent. Slowloris: trickling. Never-reads: sending.
    Holding,
    /// An abuser waits for the server's answer: an HTTP status or a close frame.
    Answer,
    /// Idle: our close frame is out; the server's has not arrived.
    Closing,
    /// Idle: the close handshake is done; the server's FIN has not arrived.
    AwaitEof,
}

/// How a connection ended, for the outcome.
enum Ending {
    /// An idle connection's cycle completed cleanly.
    Cycle,
    /// An idle connection went wrong, and how.
    Failed(String),
    /// What the server did to an abusive connection.
    Saw(Observed),
}

impl Ending {
    /// A failure before the connection could do its job: connect, upgrade, timeouts.
    fn early(job: Job, observed: Observed) -> Ending {
        match job {
            Job::Idle => Ending::Failed(observed.to_string()),
            Job::Abuse { .. } => Ending::Saw(observed),
        }
    }
}

struct Conn {
    client: Client,
    slot: usize,
    job: Job,
    state: State,
    deadline: Instant,
    /// When the current state began (slowloris and never-reads run for a time).
    since: Instant,
    /// What a raw client has received (the start of an HTTP response).
    response: Vec<u8>,
    /// Slowloris: the request, and how much of it has gone out.
    trickle: Vec<u8>,
    trickled: usize,
}

struct Slot {
    job: Job,
    active: bool,
    next_start: Instant,
    cycle: u64,
}

/// How a raw read ended.
enum RawRead {
    Open,
    Eof,
    Reset,
}

struct Churn {
    plan: Plan,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Slab<Conn>,
    slots: Vec<Slot>,
    limits: Limits,
    outcome: Outcome,
    rng: u64,
    stopping: bool,
    /// Connections started, for the source address rotation and the nonces.
    started: usize,
}

pub fn run(plan: Plan, shared: Arc<Shared>) -> io::Result<Outcome> {
    let now = Instant::now();
    let mut slots = Vec::with_capacity(plan.idle + plan.abusers);
    slots.extend((0..plan.idle).map(|_| Slot {
        job: Job::Idle,
        active: false,
        next_start: now,
        cycle: 0,
    }));
    let prime = plan.prime && plan.kinds.contains(&Abuse::NeverReads);
    slots.extend((0..plan.abusers).map(|i| Slot {
        // Slot i begins with kind i, so every kind runs from the first second on.
        job: if prime {
            Job::Abuse {
                kind: Abuse::NeverReads,
                variant: 0,
            }
        } else {
            abuse_for(&plan.kinds, i, 0)
        },
        active: false,
        next_start: now,
        cycle: 0,
    }));
    let mut churn = Churn {
        poll: Poll::new()?,
        conns: Slab::new(),
        slots,
        // The server sends nothing large to these clients.
        limits: Limits::new(1 << 20, 1 << 20),
        outcome: Outcome::default(),
        rng: RandomState::new().hash_one(0x50a4u64) | 1,
        stopping: false,
        started: 0,
        plan,
        shared,
    };
    churn.run()?;
    Ok(churn.outcome)
}

/// What abuse slot `index` runs on its `cycle`-th connection: the next kind, and
/// the next variant of it once every kind has had its turn.
fn abuse_for(kinds: &[Abuse], index: usize, cycle: u64) -> Job {
    let n = kinds.len().max(1) as u64;
    let turn = index as u64 + cycle;
    Job::Abuse {
        kind: kinds
            .get((turn % n) as usize)
            .copied()
            .unwrap_or(Abuse::Vanish),
        variant: turn / n,
    }
}

impl Churn {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        let mut due = Vec::new();
        let mut hard_stop = None;
        loop {
            let now = Instant::now();
            if !self.stopping && self.shared.stop.load(Relaxed) {
                self.stop(now);
                // Answers already awaited get their timeout, and a second.
                hard_stop = Some(now + ANSWER_TIMEOUT + Duration::from_secs(1));
            }
            if self.stopping && (self.conns.is_empty() || hard_stop.is_some_and(|at| now >= at)) {
                break;
            }
            if !self.stopping {
                self.start_due(now);
            }
            self.poll
                .poll(&mut events, Some(Duration::from_millis(10)))?;
            for event in events.iter() {
                let key = event.token().0;
                if event.is_writable() {
                    self.writable(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.readable(key, &mut scratch);
                }
            }
            let now = Instant::now();
            due.clear();
            let mut idle_open = 0;
            for (key, conn) in self.conns.iter() {
                if conn.deadline <= now {
                    due.push(key);
                }
                if conn.job == Job::Idle && conn.state == State::Holding {
                    idle_open += 1;
                }
            }
            self.shared.idle_open.store(idle_open, Relaxed);
            for &key in &due {
                self.timer(key, now, &mut scratch);
            }
        }
        // What the hard stop cut off.
        self.outcome.cut_short += self.conns.len() as u64;
        self.conns.clear();
        self.shared.idle_open.store(0, Relaxed);
        Ok(())
    }

    /// A uniform number in [0, 1), from an xorshift generator.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn start_due(&mut self, now: Instant) {
        let mut budget = STARTS_PER_TURN;
        for slot in 0..self.slots.len() {
            if budget == 0 {
                return;
            }
            let s = &self.slots[slot];
            if s.active || s.next_start > now {
                continue;
            }
            budget -= 1;
            self.start(slot, now);
        }
    }

    fn start(&mut self, slot: usize, now: Instant) {
        let job = self.slots[slot].job;
        self.slots[slot].active = true;
        let source = net::source_for(self.started, SOURCES);
        self.started += 1;
        let small_window = matches!(
            job,
            Job::Abuse {
                kind: Abuse::NeverReads | Abuse::FloodReset,
                ..
            }
        );
        let window = small_window.then_some(NEVER_READS_WINDOW);
        let stream = match net::connect_with_receive_buffer(self.plan.target, Some(source), window)
        {
            Ok(stream) => stream,
            Err(_) => return self.end_slot(slot, job, Ending::early(job, Observed::ConnectFailed)),
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut client = Client::new(stream, self.started as u64, now);
        let registered = self.poll.registry().register(
            &mut client.stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_err() {
            return self.end_slot(slot, job, Ending::early(job, Observed::ConnectFailed));
        }
        entry.insert(Conn {
            client,
            slot,
            job,
            state: State::Connecting,
            deadline: now + ANSWER_TIMEOUT,
            since: now,
            response: Vec::new(),
            trickle: Vec::new(),
            trickled: 0,
        });
    }

    /// A slot's connection is over: count how it ended and schedule the next one.
    fn end_slot(&mut self, slot: usize, job: Job, ending: Ending) {
        match ending {
            Ending::Cycle => self.outcome.idle_cycles += 1,
            Ending::Failed(what) => *self.outcome.idle_errors.entry(what).or_default() += 1,
            Ending::Saw(observed) => {
                if let Job::Abuse { kind, .. } = job {
                    let seen = self.outcome.abuses.entry(kind).or_default();
                    *seen.entry(observed).or_default() += 1;
                    self.shared.abuses.fetch_add(1, Relaxed);
                }
            }
        }
        let pause = match job {
            Job::Idle => Duration::from_millis(100 + (self.random() * 200.0) as u64),
            Job::Abuse { .. } => Duration::from_millis(50),
        };
        let index = slot.wrapping_sub(self.plan.idle);
        let s = &mut self.slots[slot];
        s.active = false;
        s.cycle += 1;
        s.next_start = Instant::now() + pause;
        if let Job::Abuse { .. } = s.job {
            s.job = abuse_for(&self.plan.kinds, index, s.cycle);
        }
    }

    /// Ends connection `key`. Its socket closes with a FIN, or with a reset when
    /// bytes are left unread.
    fn finish(&mut self, key: usize, ending: Ending) {
        if let Some(conn) = self.conns.try_remove(key) {
            self.end_slot(conn.slot, conn.job, ending);
        }
    }

    /// The round is over: no new connections. Those still connecting are dropped
    /// uncounted; the rest end as their job says (see `idle_stop`, `abuse_stop`).
    fn stop(&mut self, now: Instant) {
        self.stopping = true;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            match (conn.state, conn.job) {
                (State::Connecting | State::Upgrading, _) => {
                    self.outcome.cut_short += 1;
                    self.conns.remove(key);
                }
                (_, Job::Idle) => self.idle_stop(key, now),
                (_, Job::Abuse { kind, .. }) => self.abuse_stop(key, kind),
            }
        }
    }

    fn writable(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state == State::Connecting {
            return self.connected(key);
        }
        // Flush what the kernel did not take. A failure shows on the next read,
        // except to a client that never reads, which sees it here.
        if let (Err(e), Job::Abuse { kind, .. }) = (conn.client.flush(), conn.job) {
            self.abuse_write_failed(key, kind, &e);
        }
    }

    /// The TCP connect finished: upgrade, or misbehave at once.
    fn connected(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let job = conn.job;
        let upgrades = match job {
            Job::Idle => true,
            Job::Abuse { kind, .. } => kind.upgrades(),
        };
        match conn
            .client
            .connected(&self.plan.host, &self.plan.path, !upgrades)
        {
            Ok(()) => {}
            Err(Failure::Connect) => {
                return self.finish(key, Ending::early(job, Observed::ConnectFailed));
            }
            Err(_) => return self.finish(key, Ending::early(job, Observed::HandshakeFailed)),
        }
        let now = Instant::now();
        conn.since = now;
        match job {
            _ if upgrades => {
                conn.state = State::Upgrading;
                conn.deadline = now + ANSWER_TIMEOUT;
            }
            Job::Abuse { kind, variant } => self.abuse_connected(key, kind, variant, now),
            Job::Idle => {}
        }
    }

    fn readable(&mut self, key: usize, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        match (conn.state, conn.job) {
            (State::Connecting, _) => {} // the writable event comes with it
            (State::Upgrading, _) => self.upgrading(key, scratch),
            (_, Job::Idle) => self.idle_readable(key, scratch),
            (_, Job::Abuse { kind, .. }) => self.abuse_readable(key, kind, scratch),
        }
    }

    /// Reads the 101; then idle connections hold, and abusers misbehave.
    fn upgrading(&mut self, key: usize, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        // Nothing but the 101 may arrive before the client speaks.
        let mut early = 0;
        let result = conn
            .client
            .receive(scratch, &self.limits, None, |_, _| early += 1);
        let job = conn.job;
        if conn.client.phase != Phase::Open || early > 0 {
            if result.is_err() || early > 0 {
                self.finish(key, Ending::early(job, Observed::HandshakeFailed));
            }
            return;
        }
        let now = Instant::now();
        conn.since = now;
        match job {
            Job::Idle => self.idle_opened(key, now),
            Job::Abuse { kind, variant } => self.abuse_opened(key, kind, variant, now),
        }
    }

    fn timer(&mut self, key: usize, now: Instant, scratch: &mut [u8]) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.deadline > now {
            return;
        }
        match (conn.state, conn.job) {
            (State::Connecting, job) => {
                self.finish(key, Ending::early(job, Observed::ConnectFailed));
            }
            (State::Upgrading, job) => {
                self.finish(key, Ending::early(job, Observed::HandshakeFailed));
            }
            (_, Job::Idle) => self.idle_timer(key, now),
            (_, Job::Abuse { kind, .. }) => self.abuse_timer(key, kind, now, scratch),
        }
    }
}

/// Reads everything available (edge-triggered: until it would block), keeping the
/// first [`RESPONSE_KEEP`] bytes in `keep`.
fn read_raw(client: &mut Client, keep: &mut Vec<u8>, scratch: &mut [u8]) -> RawRead {
    loop {
        match client.stream.read(scratch) {
            Ok(0) => return RawRead::Eof,
            Ok(n) => {
                let room = RESPONSE_KEEP.saturating_sub(keep.len()).min(n);
                keep.extend_from_slice(&scratch[..room]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return RawRead::Open,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return RawRead::Reset,
        }
    }
}
