//! A load-generating thread: its own `mio::Poll` and its share of the connections.
//!
//! The main thread moves every worker through the same phases (ramp, warm-up,
//! measure, drain, stop) by one shared atomic; workers count into local integers and
//! publish them once per loop turn.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use wsreactor::proto::deflate::{Deflater, Direction};
use wsreactor::proto::frame::{FrameHeader, OpCode, RSV1};
use wsreactor::proto::mask::apply_mask;
use wsreactor::proto::{Limits, Message};

use crate::client::{Client, Failure, Phase, Received};
use crate::net;

pub mod fanout;
pub mod topic;

pub const RAMP: u8 = 0;
pub const WARMUP: u8 = 1;
pub const MEASURE: u8 = 2;
pub const DRAIN: u8 = 3;
pub const STOP: u8 = 4;

/// Connections being opened at once per worker during the ramp.
const MAX_CONNECTING: usize = 256;

/// What a worker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Closed loop: every echo triggers the next message.
    Echo,
    /// Open loop at a fixed rate; latency from the scheduled send time.
    Rate,
    /// Open connections and hold them.
    Idle,
    /// Handshakes, as many as possible, at a fixed concurrency.
    Connect,
    /// Receivers, and one sender whose messages carry their send time.
    Broadcast,
    /// Every client sends, every client receives every message, in rounds.
    Fanout,
    /// Subscribers to one topic, and one publisher (maybe on another node) at a
    /// fixed rate: the pubsub example's protocol.
    Topic,
}

/// One worker's share of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub scenario: Scenario,
    pub target: SocketAddr,
    pub host: String,
    pub path: String,
    /// This worker's connections (for connect: its concurrency).
    pub connections: usize,
    /// Every worker's connections: the deliveries a fanout round waits for.
    pub total_connections: usize,
    /// The global index of this worker's first connection (for source addresses).
    pub first_index: usize,
    pub sources: usize,
    pub raw: bool,
    /// Offer permessage-deflate; echo: a JSON-like stream, compressed if negotiated.
    pub deflate: bool,
    pub text: bool,
    pub payload: usize,
    pub pipeline: usize,
    /// Messages per second this worker sends (rate; broadcast sender).
    pub rate: f64,
    /// Broadcast: this worker's first connection is the sender.
    pub sender: bool,
    /// The clock all workers share, for timestamps inside broadcast payloads.
    pub base: Instant,
    /// wss://: how each client makes its TLS session.
    pub tls: Option<crate::tls::Options>,
}

/// What workers and the main thread share.
#[derive(Default)]
pub struct Control {
    pub phase: AtomicU8,
    pub opened: AtomicU64,
    pub failed: AtomicU64,
    /// Messages received while measuring (broadcast: deliveries).
    pub measured: AtomicU64,
    /// Handshakes completed while measuring (connect).
    pub handshakes: AtomicU64,
    /// Messages sent and received over the whole run (fanout: how much is in flight).
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// Counted failures.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct Errors {
    pub connect: u64,
    pub handshake: u64,
    pub reset: u64,
    pub closed: u64,
    pub protocol: u64,
    pub mismatch: u64,
    pub lost: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect
            + self.handshake
            + self.reset
            + self.closed
            + self.protocol
            + self.mismatch
            + self.lost
    }

    pub fn add(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.handshake += o.handshake;
        self.reset += o.reset;
        self.closed += o.closed;
        self.protocol += o.protocol;
        self.mismatch += o.mismatch;
        self.lost += o.lost;
    }

    fn count(&mut self, f: Failure) {
        match f {
            Failure::Connect => self.connect += 1,
            Failure::Handshake => self.handshake += 1,
            Failure::Reset => self.reset += 1,
            Failure::Closed => self.closed += 1,
            Failure::Protocol => self.protocol += 1,
        }
    }
}

/// What a worker reports at the end.
pub struct Outcome {
    /// Latencies in nanoseconds, of messages received while measuring.
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub received: u64,
    pub errors: Errors,
}

pub fn histogram() -> Histogram<u64> {
    // 1 ns to 100 s at three significant digits.
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

/// A message received: when, its latency if known, whether its content was right.
type Arrival = (Instant, Option<u64>, bool);

struct Worker {
    plan: Plan,
    control: Arc<Control>,
    poll: Poll,
    clients: Slab<Client>,
    limits: Limits,
    /// The masked frame every echo and rate message sends (a fixed mask, as
    /// uWebSockets' load generator: the client's CPU goes to the server's work).
    frame: Vec<u8>,
    /// The payload the server must echo back.
    expected: Vec<u8>,
    /// With --deflate: the messages sent in turn, as (plain frame, compressed frame,
    /// payload).
    stream: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    started: usize,
    connecting: usize,
    phase: u8,
    outcome: Outcome,
    measured: u64,
    handshakes: u64,
    opened: u64,
    failed: u64,
    next_send: Instant,
    sends_scheduled: u64,
    round_robin: usize,
    sender_key: Option<usize>,
    /// Reused to send several messages in one write.
    batch: Vec<u8>,
    /// Fanout: each client's rounds, by slab key.
    peers: Vec<Option<fanout::Peer>>,
    /// Topic: each subscriber's state, by slab key.
    subscribers: Vec<Option<topic::Subscriber>>,
    /// Topic: reused for the publisher's messages.
    text: String,
    /// `outcome.sent` and `outcome.received` as last added to `control`.
    published: (u64, u64),
}

pub fn run(plan: Plan, control: Arc<Control>) -> std::io::Result<Outcome> {
    let poll = Poll::new()?;
    let expected: Vec<u8> = if plan.text {
        (0..plan.payload).map(|i| b'a' + (i % 26) as u8).collect()
    } else {
        (0..plan.payload).map(|i| (i * 31 + 7) as u8).collect()
    };
    let frame = if plan.raw {
        expected.clone()
    } else {
        masked_frame(&expected, plan.text)
    };
    let mut worker = Worker {
        control,
        poll,
        clients: Slab::new(),
        limits: Limits::new(64 << 20, 64 << 20),
        stream: if plan.deflate {
            market_data(plan.payload)
        } else {
            Vec::new()
        },
        frame,
        expected,
        started: 0,
        connecting: 0,
        phase: RAMP,
        outcome: Outcome {
            latency: histogram(),
            sent: 0,
            received: 0,
            errors: Errors::default(),
        },
        measured: 0,
        handshakes: 0,
        opened: 0,
        failed: 0,
        next_send: Instant::now(),
        sends_scheduled: 0,
        round_robin: 0,
        sender_key: None,
        batch: Vec::new(),
        peers: Vec::new(),
        subscribers: Vec::new(),
        text: String::new(),
        published: (0, 0),
        plan,
    };
    worker.run()?;
    Ok(worker.outcome)
}

/// 16 JSON-like quotes of about `size` bytes each (a market-data feed: the same
/// fields, other symbols and numbers), each as a plain frame and as a frame
/// compressed without context (so it is valid in any order, on any connection that
/// negotiated permessage-deflate without a client window below 15).
fn market_data(size: usize) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    const SYMBOLS: [&str; 8] = [
        "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "AVGO",
    ];
    let context_free = Direction {
        window_bits: 15,
        context_takeover: false,
    };
    (0..16u64)
        .map(|i| {
            let mut text = String::new();
            let mut n = 0u64;
            while text.len() < size.max(1) {
                n += 1;
                let x = i * 7919 + n * 104_729;
                text.push_str(&format!(
                    r#"{{"type":"quote","symbol":"{}","bid":{}.{:02},"ask":{}.{:02},"size":{},"seq":{}}},"#,
                    SYMBOLS[(x % 8) as usize],
                    100 + x % 400,
                    x % 100,
                    101 + x % 400,
                    (x / 7) % 100,
                    x % 5000,
                    x
                ));
            }
            text.truncate(size.max(1));
            let payload = text.into_bytes();
            let mut compressed = Vec::new();
            Deflater::new(context_free, 1).compress(&payload, &mut compressed);
            (
                masked_frame(&payload, true),
                masked_frame_rsv(&compressed, true, RSV1),
                payload,
            )
        })
        .collect()
}

/// A client frame with a fixed mask, ready to send again and again.
fn masked_frame(payload: &[u8], text: bool) -> Vec<u8> {
    masked_frame_rsv(payload, text, 0)
}

/// [`masked_frame`] with the RSV bits `rsv`.
fn masked_frame_rsv(payload: &[u8], text: bool, rsv: u8) -> Vec<u8> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let header = FrameHeader {
        fin: true,
        rsv,
        opcode: if text { OpCode::Text } else { OpCode::Binary },
        mask: Some(key),
        payload_len: payload.len() as u64,
    }
    .encode();
    let mut frame = header.as_bytes().to_vec();
    let at = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[at..], key, 0);
    frame
}

impl Worker {
    fn run(&mut self) -> std::io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut scratch = vec![0u8; 64 * 1024];
        let mut arrivals = Vec::new();
        loop {
            let phase = self.control.phase.load(Relaxed);
            if phase != self.phase {
                self.enter(phase);
            }
            if phase == STOP {
                break;
            }
            self.open_more();
            let now = Instant::now();
            if self.sending() {
                self.send_due(now);
            }
            let timeout = if self.sending() && self.plan.rate > 0.0 {
                self.next_send
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(10))
            } else {
                Duration::from_millis(10)
            };
            self.poll.poll(&mut events, Some(timeout))?;
            for event in events.iter() {
                let key = event.token().0;
                if event.is_writable() {
                    self.writable(key);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.readable(key, &mut scratch, &mut arrivals);
                }
            }
            self.publish();
        }
        // Whatever is still in flight after the drain is lost.
        if matches!(self.plan.scenario, Scenario::Echo | Scenario::Rate) {
            let lost: usize = self.clients.iter().map(|(_, c)| c.inflight.len()).sum();
            self.outcome.errors.lost += lost as u64;
        }
        self.publish();
        Ok(())
    }

    fn publish(&mut self) {
        self.control
            .measured
            .fetch_add(std::mem::take(&mut self.measured), Relaxed);
        self.control
            .handshakes
            .fetch_add(std::mem::take(&mut self.handshakes), Relaxed);
        self.control
            .opened
            .fetch_add(std::mem::take(&mut self.opened), Relaxed);
        self.control
            .failed
            .fetch_add(std::mem::take(&mut self.failed), Relaxed);
        let (sent, received) = (self.outcome.sent, self.outcome.received);
        self.control
            .sent
            .fetch_add(sent - self.published.0, Relaxed);
        self.control
            .received
            .fetch_add(received - self.published.1, Relaxed);
        self.published = (sent, received);
    }

    /// Whether new messages go out in this phase.
    fn sending(&self) -> bool {
        matches!(self.phase, WARMUP | MEASURE)
    }

    fn enter(&mut self, phase: u8) {
        let was_sending = self.sending();
        self.phase = phase;
        // Sending starts with the warm-up, or with the measurement when a short
        // warm-up passed between two turns of this loop.
        if !was_sending && self.sending() {
            self.next_send = Instant::now();
            if matches!(self.plan.scenario, Scenario::Echo | Scenario::Fanout) {
                let keys: Vec<usize> = self.clients.iter().map(|(k, _)| k).collect();
                for key in keys {
                    match self.plan.scenario {
                        Scenario::Echo => self.start_echo(key),
                        _ => self.start_round(key),
                    }
                }
            }
        }
    }

    /// Opens connections up to the plan, a bounded number at a time.
    fn open_more(&mut self) {
        let target = if self.plan.scenario == Scenario::Connect {
            if !self.sending() {
                return;
            }
            // Keep `connections` handshakes going; `started` never stops.
            usize::MAX
        } else {
            self.plan.connections
        };
        let limit = if self.plan.scenario == Scenario::Connect {
            self.plan.connections
        } else {
            MAX_CONNECTING
        };
        while self.started < target && self.connecting < limit {
            let index = self.plan.first_index + self.started;
            self.started += 1;
            let source = Some(net::source_for(index, self.plan.sources));
            let stream = match net::connect(self.plan.target, source) {
                Ok(s) => s,
                Err(_) => {
                    self.fail_count(Failure::Connect);
                    continue;
                }
            };
            let entry = self.clients.vacant_entry();
            let key = entry.key();
            let mut client = Client::new(stream, index as u64 + 1, Instant::now());
            client.offer_deflate = self.plan.deflate;
            if let Some(options) = &self.plan.tls {
                match crate::tls::Session::new(options) {
                    Ok(session) => client.tls = Some(session),
                    Err(_) => {
                        self.fail_count(Failure::Connect);
                        continue;
                    }
                }
            }
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self
                .poll
                .registry()
                .register(&mut client.stream, Token(key), interest)
                .is_err()
            {
                self.fail_count(Failure::Connect);
                continue;
            }
            entry.insert(client);
            self.connecting += 1;
            if self.plan.scenario == Scenario::Fanout {
                if self.peers.len() <= key {
                    self.peers.resize_with(key + 1, || None);
                }
                self.peers[key] = Some(fanout::Peer::new(index, self.plan.total_connections));
            }
        }
    }

    fn fail_count(&mut self, failure: Failure) {
        self.outcome.errors.count(failure);
        self.failed += 1;
    }

    fn writable(&mut self, key: usize) {
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.phase == Phase::Connecting {
            let (host, path, raw) = (&self.plan.host, &self.plan.path, self.plan.raw);
            match client.connected(host, path, raw) {
                Ok(()) if raw => self.opened_one(key),
                Ok(()) => {}
                Err(f) => self.drop_client(key, f),
            }
            return;
        }
        if client.flush().is_err() {
            self.drop_client(key, Failure::Reset);
        }
    }

    fn readable(&mut self, key: usize, scratch: &mut [u8], arrivals: &mut Vec<Arrival>) {
        if self.plan.scenario == Scenario::Fanout {
            return self.readable_fanout(key, scratch);
        }
        if self.plan.scenario == Scenario::Topic {
            return self.readable_topic(key, scratch);
        }
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.phase == Phase::Connecting {
            return; // the writable event comes with it
        }
        let was_handshaking = client.phase == Phase::Handshaking;
        let raw_payload = self.plan.raw.then_some(self.plan.payload);
        arrivals.clear();
        let expected = &self.expected;
        let stream = &self.stream;
        let scenario = self.plan.scenario;
        let base = self.plan.base;
        let result = client.receive(scratch, &self.limits, raw_payload, |client, received| {
            let Received::Message(message) = received;
            let now = Instant::now();
            match scenario {
                Scenario::Broadcast => {
                    let sent = message.as_bytes().get(..8).map(|b| {
                        let mut ts = [0u8; 8];
                        ts.copy_from_slice(b);
                        u64::from_le_bytes(ts)
                    });
                    let latency = sent
                        .map(|s| (now.duration_since(base).as_nanos() as u64).saturating_sub(s));
                    arrivals.push((now, latency, true));
                }
                _ => {
                    let expected = match stream.len() {
                        0 => &expected[..],
                        n => &stream[(client.received as usize + n - 1) % n].2[..],
                    };
                    let ok = raw_payload.is_some() || message.as_bytes() == expected;
                    let latency = client
                        .inflight
                        .pop_front()
                        .map(|sent| now.duration_since(sent).as_nanos() as u64);
                    arrivals.push((now, latency, ok));
                }
            }
        });
        let opened_now = was_handshaking && client.phase == Phase::Open;
        if opened_now {
            self.opened_one(key);
        }
        let answers_inflight = matches!(self.plan.scenario, Scenario::Echo | Scenario::Rate);
        let mut answered = 0;
        for &(_, latency, ok) in arrivals.iter() {
            self.outcome.received += 1;
            // A reply with nothing in flight is one too many (a server that sent
            // someone else's messages here, say): wrong, whatever its bytes.
            let extra = answers_inflight && latency.is_none();
            if !ok || extra {
                self.outcome.errors.mismatch += 1;
            }
            answered += usize::from(!extra);
            if self.phase == MEASURE {
                self.measured += 1;
                if let Some(latency) = latency {
                    let _ = self.outcome.latency.record(latency.max(1));
                }
            }
        }
        // Echo: one message back for each reply to one in flight, in one write; an
        // extra reply does not raise the number in flight.
        if self.plan.scenario == Scenario::Echo && self.sending() {
            self.send_echoes(key, answered);
        }
        if let Err(failure) = result {
            // A close or reset after the run stopped is the end of the test, not an error.
            if self.phase == STOP {
                return;
            }
            self.drop_client(key, failure);
        }
    }

    fn opened_one(&mut self, key: usize) {
        self.connecting = self.connecting.saturating_sub(1);
        if self.plan.scenario == Scenario::Connect {
            if let Some(client) = self.clients.try_remove(key) {
                if self.phase == MEASURE {
                    self.handshakes += 1;
                    let latency = client.started.elapsed().as_nanos() as u64;
                    let _ = self.outcome.latency.record(latency.max(1));
                }
                net::abort(client.stream);
            }
            return;
        }
        self.opened += 1;
        if self.plan.scenario == Scenario::Broadcast
            && self.plan.sender
            && self.sender_key.is_none()
        {
            self.sender_key = Some(key);
        }
        if self.plan.scenario == Scenario::Echo && self.sending() {
            self.start_echo(key);
        }
        if self.plan.scenario == Scenario::Fanout && self.sending() {
            self.start_round(key);
        }
    }

    fn drop_client(&mut self, key: usize, failure: Failure) {
        if let Some(client) = self.clients.try_remove(key) {
            if matches!(client.phase, Phase::Connecting | Phase::Handshaking) {
                self.connecting = self.connecting.saturating_sub(1);
            }
            if matches!(self.plan.scenario, Scenario::Echo | Scenario::Rate) {
                self.outcome.errors.lost += client.inflight.len() as u64;
            }
        }
        if self.sender_key == Some(key) {
            self.sender_key = None;
        }
        if let Some(peer) = self.peers.get_mut(key) {
            *peer = None;
        }
        if let Some(subscriber) = self.subscribers.get_mut(key) {
            *subscriber = None;
        }
        self.fail_count(failure);
    }

    /// Puts `pipeline` messages in flight on a connection.
    fn start_echo(&mut self, key: usize) {
        self.send_echoes(key, self.plan.pipeline.max(1));
    }

    /// Sends `count` messages to one connection in a single write.
    fn send_echoes(&mut self, key: usize, count: usize) {
        if count == 0 {
            return;
        }
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        if client.phase != Phase::Open {
            return;
        }
        let now = Instant::now();
        for _ in 0..count {
            client.inflight.push_back(now);
        }
        self.outcome.sent += count as u64;
        let result = if !self.stream.is_empty() {
            self.batch.clear();
            for _ in 0..count {
                let (plain, compressed, _) = &self.stream[client.sent as usize % self.stream.len()];
                client.sent += 1;
                let frame = if client.deflated() { compressed } else { plain };
                self.batch.extend_from_slice(frame);
            }
            client.send(&self.batch)
        } else if count == 1 {
            client.send(&self.frame)
        } else {
            self.batch.clear();
            for _ in 0..count {
                self.batch.extend_from_slice(&self.frame);
            }
            client.send(&self.batch)
        };
        if result.is_err() {
            self.drop_client(key, Failure::Reset);
        }
    }

    /// Open loop: sends every message whose scheduled time has come, each timed
    /// from its schedule, not from when it could go out.
    fn send_due(&mut self, now: Instant) {
        if self.plan.rate <= 0.0 {
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / self.plan.rate);
        let mut budget = 10_000;
        while self.next_send <= now && budget > 0 {
            budget -= 1;
            let scheduled = self.next_send;
            self.sends_scheduled += 1;
            self.next_send = scheduled + interval;
            match self.plan.scenario {
                Scenario::Rate => self.send_scheduled(scheduled),
                Scenario::Broadcast => self.send_broadcast(now),
                Scenario::Topic => self.send_publication(scheduled),
                _ => return,
            }
        }
    }

    fn send_scheduled(&mut self, scheduled: Instant) {
        let keys = self.clients.len();
        if keys == 0 {
            return;
        }
        // The next open connection, round robin.
        for _ in 0..keys {
            self.round_robin = (self.round_robin + 1) % self.clients.capacity().max(1);
            let key = self.round_robin;
            let Some(client) = self.clients.get_mut(key) else {
                continue;
            };
            if client.phase != Phase::Open {
                continue;
            }
            client.inflight.push_back(scheduled);
            self.outcome.sent += 1;
            if client.send(&self.frame).is_err() {
                self.drop_client(key, Failure::Reset);
            }
            return;
        }
    }

    fn send_broadcast(&mut self, now: Instant) {
        let Some(key) = self.sender_key else {
            return;
        };
        let Some(client) = self.clients.get_mut(key) else {
            return;
        };
        let mut payload = self.expected.clone();
        payload.resize(payload.len().max(8), 0);
        let ts = now.duration_since(self.plan.base).as_nanos() as u64;
        payload[..8].copy_from_slice(&ts.to_le_bytes());
        self.outcome.sent += 1;
        if client.send_message(Message::Binary(&payload)).is_err() {
            self.drop_client(key, Failure::Reset);
        }
    }
}
