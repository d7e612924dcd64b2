//! The scripts of the write-path model test (`tests/write_path_model.rs`): what each
//! client tells the handler to do, what it does itself, what the `Sender` thread
//! does, the proptest strategies that generate them, and the client that plays one.
#![allow(dead_code)]

use std::fmt;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use wsreactor::BackpressurePolicy;

use super::peer::{Peer, Received};
use super::tagged::HEADER;

/// `count` messages of `size` bytes.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Burst {
    pub count: u32,
    pub size: usize,
    pub text: bool,
}

/// Chunks until a send is not `Sent`, then a short text, now and in the next
/// `rounds` calls of `on_drain`; after each, the handler works for `think_us`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    pub rounds: u32,
    pub chunk: usize,
    pub think_us: u64,
}

/// What a client asks of the handler, in one text message.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Send a burst now.
    Send(Burst),
    /// Stream now and in `on_drain`.
    Stream(Stream),
    /// Send a burst, then panic.
    Panic(Burst),
    /// Panic in the next `on_drain`.
    PanicOnDrain,
    /// Send a burst, then close with this code.
    Close(u16, Burst),
}

fn kind(text: bool) -> &'static str {
    if text { "t" } else { "b" }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Send(b) => write!(f, "send {} {} {}", b.count, b.size, kind(b.text)),
            Command::Stream(s) => write!(f, "stream {} {} {}", s.rounds, s.chunk, s.think_us),
            Command::Panic(b) => write!(f, "panic {} {} {}", b.count, b.size, kind(b.text)),
            Command::PanicOnDrain => write!(f, "drainpanic"),
            Command::Close(code, b) => {
                write!(f, "close {code} {} {} {}", b.count, b.size, kind(b.text))
            }
        }
    }
}

impl Command {
    pub fn parse(text: &str) -> Option<Command> {
        let words: Vec<&str> = text.split(' ').collect();
        let number = |i: usize| words.get(i)?.parse::<u64>().ok();
        let burst = |at: usize| {
            Some(Burst {
                count: number(at)? as u32,
                size: number(at + 1)? as usize,
                text: *words.get(at + 2)? == "t",
            })
        };
        Some(match words[0] {
            "send" => Command::Send(burst(1)?),
            "stream" => Command::Stream(Stream {
                rounds: number(1)? as u32,
                chunk: number(2)? as usize,
                think_us: number(3)?,
            }),
            "panic" => Command::Panic(burst(1)?),
            "drainpanic" => Command::PanicOnDrain,
            "close" => Command::Close(number(1)? as u16, burst(2)?),
            _ => return None,
        })
    }
}

/// One step of a client's script.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Command(Command),
    /// This many one-message sends, 100 µs apart: keeps the connection being served.
    Chatter(u32),
    /// Stop reading for this many milliseconds.
    Pause(u64),
    /// Read on for this many milliseconds.
    Sleep(u64),
}

#[derive(Clone, Debug)]
pub struct ClientPlan {
    /// What `on_open` sends after the hello.
    pub open: Burst,
    /// Whether `on_open` then panics.
    pub open_panics: bool,
    pub acts: Vec<Act>,
    /// Instead of closing with 1000 after the last act, ask for this burst and
    /// reset at once.
    pub reset: Option<Burst>,
}

/// One step of the `Sender` thread (clients by index, modulo their number).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SenderAct {
    SendTo(usize, Burst),
    Broadcast(usize, bool),
    Close(usize, u16),
}

#[derive(Clone, Debug)]
pub struct Case {
    pub limit: usize,
    pub policy: BackpressurePolicy,
    pub clients: Vec<ClientPlan>,
    /// (delay in ms, act)
    pub sender: Vec<(u64, SenderAct)>,
}

/// What one client saw.
pub struct Outcome {
    pub received: Received,
    pub reset: bool,
    pub write_error: Option<String>,
}

/// Connects as client `index`, plays its script, and closes or resets.
pub fn run_client(
    addr: SocketAddr,
    index: usize,
    plan: &ClientPlan,
    deadline: Instant,
) -> Result<Outcome, String> {
    let open = plan.open;
    let path = format!(
        "/{index}/{}/{}/{}/{}",
        open.count,
        open.size,
        kind(open.text),
        u8::from(plan.open_panics)
    );
    let mut peer = Peer::connect(addr, &path, deadline)
        .map_err(|e| format!("client {index}: connect: {e}"))?;
    let mut write_error = None;
    for act in &plan.acts {
        let written = match act {
            Act::Command(command) => {
                let written = peer.command(&command.to_string());
                if let Command::Stream(stream) = command {
                    // A client that asks for a stream reads it for a while.
                    thread::sleep(Duration::from_millis(2 * u64::from(stream.rounds)));
                }
                written
            }
            Act::Chatter(count) => (0..*count).try_for_each(|i| {
                let size = HEADER + i as usize % 64;
                thread::sleep(Duration::from_micros(100));
                peer.command(
                    &Command::Send(Burst {
                        count: 1,
                        size,
                        text: true,
                    })
                    .to_string(),
                )
            }),
            Act::Pause(ms) => {
                peer.pause(true);
                thread::sleep(Duration::from_millis(*ms));
                peer.pause(false);
                Ok(())
            }
            Act::Sleep(ms) => {
                thread::sleep(Duration::from_millis(*ms));
                Ok(())
            }
        };
        if let Err(e) = written {
            write_error = Some(e.to_string());
            break;
        }
    }
    let received = match plan.reset {
        Some(burst) => peer.reset_after(&Command::Send(burst).to_string()),
        None => peer.close(1000),
    };
    Ok(Outcome {
        received,
        reset: plan.reset.is_some(),
        write_error,
    })
}

// One line each, so that a failing case reads as a script.

impl fmt::Debug for Burst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} x {} B {}", self.count, self.size, kind(self.text))
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Stream {
            rounds,
            chunk,
            think_us,
        } = self;
        write!(
            f,
            "{rounds} rounds of {chunk} B chunks, think {think_us} us"
        )
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Send(b) => write!(f, "send {b:?}"),
            Command::Stream(s) => write!(f, "stream {s:?}"),
            Command::Panic(b) => write!(f, "send {b:?}, panic"),
            Command::PanicOnDrain => write!(f, "panic in the next on_drain"),
            Command::Close(code, b) => write!(f, "send {b:?}, close {code}"),
        }
    }
}

impl fmt::Debug for Act {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Act::Command(c) => write!(f, "{c:?}"),
            Act::Chatter(n) => write!(f, "chatter {n}"),
            Act::Pause(ms) => write!(f, "stop reading {ms} ms"),
            Act::Sleep(ms) => write!(f, "read {ms} ms"),
        }
    }
}

impl fmt::Debug for SenderAct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SenderAct::SendTo(c, b) => write!(f, "send to client {c}: {b:?}"),
            SenderAct::Broadcast(size, text) => write!(f, "broadcast {size} B {}", kind(*text)),
            SenderAct::Close(c, code) => write!(f, "close client {c} with {code}"),
        }
    }
}

/// Small (corked), medium, and large enough to skip the cork.
pub fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => HEADER..=200usize,
        2 => 1024..=8192usize,
        1 => 16 * 1024..=40 * 1024usize,
    ]
}

pub fn burst(counts: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = Burst> {
    (counts, size(), any::<bool>()).prop_map(|(count, size, text)| Burst { count, size, text })
}

pub fn stream() -> impl Strategy<Value = Stream> {
    let chunk = prop_oneof![8 * 1024..=12 * 1024usize, 16 * 1024..=24 * 1024usize];
    let think_us = prop_oneof![1 => Just(0u64), 3 => Just(200u64), 1 => Just(1000u64)];
    (1u32..=8, chunk, think_us).prop_map(|(rounds, chunk, think_us)| Stream {
        rounds,
        chunk,
        think_us,
    })
}

pub fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => burst(1..=6).prop_map(Command::Send),
        4 => stream().prop_map(Command::Stream),
        1 => burst(0..=3).prop_map(Command::Panic),
        1 => Just(Command::PanicOnDrain),
        1 => (4000u16..=4099, burst(0..=3)).prop_map(|(code, b)| Command::Close(code, b)),
    ]
}

pub fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => command().prop_map(Act::Command),
        3 => (10u32..=120).prop_map(Act::Chatter),
        2 => (5u64..=60).prop_map(Act::Pause),
        2 => (1u64..=20).prop_map(Act::Sleep),
    ]
}

pub fn client() -> impl Strategy<Value = ClientPlan> {
    (
        burst(0..=4),
        prop::bool::weighted(0.08),
        prop::collection::vec(act(), 1..=6),
        prop::option::weighted(0.15, burst(1..=6)),
    )
        .prop_map(|(open, open_panics, acts, reset)| ClientPlan {
            open,
            open_panics,
            acts,
            reset,
        })
}

pub fn sender_act() -> impl Strategy<Value = SenderAct> {
    prop_oneof![
        3 => (0..6usize, burst(1..=4)).prop_map(|(c, b)| SenderAct::SendTo(c, b)),
        2 => (size(), any::<bool>()).prop_map(|(size, text)| SenderAct::Broadcast(size, text)),
        1 => (0..6usize, 4000u16..=4099).prop_map(|(c, code)| SenderAct::Close(c, code)),
    ]
}

pub fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(vec![64 * 1024, 192 * 1024]),
        prop_oneof![
            Just(BackpressurePolicy::Drop),
            Just(BackpressurePolicy::Close)
        ],
        prop::collection::vec(client(), 4..=6),
        prop::collection::vec((0u64..=15, sender_act()), 0..=12),
    )
        .prop_map(|(limit, policy, clients, sender)| Case {
            limit,
            policy,
            clients,
            sender,
        })
}
