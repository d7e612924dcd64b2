//! In steady state, an echoed message allocates nothing on the reactor thread: once a
//! connection has echoed a few hundred messages (small text and 8 KiB binary, one at a
//! time and in pipelined bursts, and bursts of small text alone), more of the same cost
//! no allocation at all.
//!
//! The reactor runs on a thread of its own, so a per-thread count cannot see it: the
//! handler's `on_open`, which runs on that thread, marks it for a counting allocator.
//! The client (tungstenite, on the test thread) is not counted.
//!
//! When it fails, `MARKED_ALLOC_BACKTRACES=3 cargo test --test zero_alloc_reactor --
//! --nocapture` prints where the first allocations after the warm-up come from.
//!
//! "The same" must be the same on the wire, whatever the machine's load. A read that
//! comes up short inside a frame is a slow peer's, and its tail is held in a buffer
//! of its size (by design: a slow peer costs what it sent); a pipelining client that
//! a busy machine stops in the middle of its burst looks just like one. So each burst
//! is written whole into the kernel while the reactor is held in a callback (without
//! allocating), and read back only once the reactor has queued every echo: its reads
//! are then full until the burst's end, and its queue as long as it can be.

#[path = "util/marked_alloc.rs"]
mod marked_alloc;
#[path = "util/server.rs"]
mod server;
mod util;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use marked_alloc::{Counter, Marked, trace_from_now, trace_label};
use server::{Client, PATIENCE, connect, start, test_config, wait_for_stats, wait_for_turns};
use tungstenite::Message as T;
use util::client_frame;
use wsreactor::proto::frame::OpCode;
use wsreactor::{Handler, Message, ServerHandle, Socket};

#[global_allocator]
static GLOBAL: Marked = Marked;

/// Small enough for one read and one write.
const SMALL: &str = "the quick brown fox, once more";
/// A mid-size binary message: several of them fill a read and get cut between reads.
const BINARY: usize = 8 * 1024;
/// Messages of each kind in a pipelined burst of both kinds (about 520 KiB: more than
/// the reactor reads from one connection in one turn).
const BURST: usize = 64;
/// Messages in a pipelined burst of small texts only (about 140 KiB: several reads,
/// most of them ending inside a frame).
const TEXT_BURST: usize = 4096;

/// Echoes every message, and counts the allocations of the thread it runs on. On the
/// text "allocate" it also allocates, to show that the count sees it; on "hold" it
/// holds the reactor until the test lets it go.
#[derive(Clone)]
struct MarkedEcho {
    counter: Counter,
    gate: Gate,
}

/// A reactor held in a callback, told with atomics and sleeps, which allocate
/// nothing.
#[derive(Clone, Default)]
struct Gate {
    held: Arc<AtomicBool>,
    release: Arc<AtomicBool>,
}

impl Handler for MarkedEcho {
    type Session = ();

    fn on_open(&mut self, _ws: &mut Socket<'_, ()>) {
        self.counter.mark_this_thread();
    }

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        if message.as_bytes() == b"allocate" {
            std::hint::black_box(Box::new([0u8; 64]));
        }
        if message.as_bytes() == b"hold" {
            self.gate.held.store(true, Ordering::Release);
            // A hang guard: the test lets go as soon as it has written.
            let held = Instant::now();
            while !self.gate.release.swap(false, Ordering::AcqRel) && held.elapsed() < PATIENCE {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.gate.held.store(false, Ordering::Release);
        }
        let _ = ws.send(message);
    }
}

fn binary() -> Vec<u8> {
    (0..BINARY).map(|i| (i * 31 % 251) as u8).collect()
}

/// One message in flight at a time: `n` small texts and `n` binaries, alternately.
fn closed_loop(ws: &mut Client, n: usize, binary: &[u8]) {
    for _ in 0..n {
        ws.send(T::text(SMALL)).expect("send text");
        assert_eq!(ws.read().expect("read text"), T::text(SMALL));
        ws.send(T::binary(binary.to_vec())).expect("send binary");
        assert_eq!(ws.read().expect("read binary"), T::binary(binary.to_vec()));
    }
}

/// Writes `wire` (whole frames, `messages` of them) in one write while the reactor is
/// held, then lets it go and waits until it has queued every echo (and the echo of
/// "hold"), the client reading nothing meanwhile. The kernel takes the whole burst at
/// once (the send buffer grows to 4 MiB by default), so the reactor finds it all
/// there and reads it in full reads, whenever it runs.
fn pipelined(ws: &mut Client, server: &ServerHandle, gate: &Gate, wire: &[u8], messages: u64) {
    let before = server.stats().messages_out;
    ws.send(T::text("hold")).expect("send hold");
    let began = Instant::now();
    while !gate.held.load(Ordering::Acquire) {
        assert!(began.elapsed() < PATIENCE, "the reactor was never held");
        std::thread::sleep(Duration::from_millis(1));
    }
    match ws.get_mut() {
        tungstenite::stream::MaybeTlsStream::Plain(s) => s.write_all(wire).expect("the burst"),
        _ => unreachable!("a ws:// client"),
    }
    gate.release.store(true, Ordering::Release);
    // Every echo of the burst, and that of "hold".
    let echoes = messages + 1;
    wait_for_stats(server, PATIENCE, |s| s.messages_out >= before + echoes);
    assert_eq!(ws.read().expect("read hold"), T::text("hold"));
}

/// A pipelined burst: `BURST` texts and `BURST` binaries written back to back in one
/// write, then all the echoes read.
fn burst(ws: &mut Client, server: &ServerHandle, gate: &Gate, binary: &[u8]) {
    let mut wire = Vec::new();
    for _ in 0..BURST {
        wire.extend(client_frame(OpCode::Text, true, SMALL.as_bytes(), KEY));
        wire.extend(client_frame(OpCode::Binary, true, binary, KEY));
    }
    pipelined(ws, server, gate, &wire, 2 * BURST as u64);
    for _ in 0..BURST {
        assert_eq!(ws.read().expect("read text"), T::text(SMALL));
        assert_eq!(ws.read().expect("read binary"), T::binary(binary.to_vec()));
    }
}

/// A pipelined burst of `TEXT_BURST` small texts.
fn text_burst(ws: &mut Client, server: &ServerHandle, gate: &Gate) {
    let mut wire = Vec::new();
    for _ in 0..TEXT_BURST {
        wire.extend(client_frame(OpCode::Text, true, SMALL.as_bytes(), KEY));
    }
    pipelined(ws, server, gate, &wire, TEXT_BURST as u64);
    for _ in 0..TEXT_BURST {
        assert_eq!(ws.read().expect("read text"), T::text(SMALL));
    }
}

/// The bursts' masking key.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A server whose reactor thread is counted by a fresh counter, and a client that has
/// echoed enough to reach steady state.
fn warmed_up() -> (ServerHandle, Client, Counter, Gate, Vec<u8>) {
    let counter = Counter::new();
    let gate = Gate::default();
    // No handshake or idle deadline: the timer wheel's slots and its list of due entries
    // grow on first use, which the few seconds of this test cannot get past, and which
    // no message causes.
    let config = test_config()
        .with_reactors(1)
        .with_handshake_timeout(None)
        .with_idle_timeout(None);
    let server = start(
        config,
        MarkedEcho {
            counter,
            gate: gate.clone(),
        },
    );
    let mut ws = connect(server.local_addr(), "/");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    let binary = binary();
    closed_loop(&mut ws, 100, &binary);
    burst(&mut ws, &server, &gate, &binary);
    burst(&mut ws, &server, &gate, &binary);
    text_burst(&mut ws, &server, &gate);
    text_burst(&mut ws, &server, &gate);
    closed_loop(&mut ws, 100, &binary);
    // Counted once the turn that wrote the last echo is over, not while it runs.
    wait_for_turns(&server);
    assert!(counter.get() > 0, "the reactor thread is marked");
    (server, ws, counter, gate, binary)
}

#[test]
fn the_counter_sees_allocations_on_marked_threads_only() {
    let counter = Counter::new();
    let marked = std::thread::spawn(move || {
        counter.mark_this_thread();
        std::hint::black_box(vec![1u8; 10]).len()
    });
    assert_eq!(marked.join().unwrap(), 10);
    let seen = counter.get();
    assert!(seen >= 1, "the marked thread's allocation was counted");
    std::hint::black_box(vec![1u8; 10]);
    assert_eq!(counter.get(), seen, "this thread is not marked");
}

#[test]
fn the_counter_sees_an_allocation_in_a_handler_on_the_reactor_thread() {
    let (server, mut ws, counter, _, _) = warmed_up();
    let before = counter.get();
    ws.send(T::text("allocate")).expect("send");
    assert_eq!(ws.read().expect("read"), T::text("allocate"));
    wait_for_turns(&server);
    assert!(counter.get() > before, "the handler's Box was counted");
    ws.close(None).ok();
    server.shutdown(Duration::from_secs(5)).expect("shutdown");
}

#[test]
fn echoing_in_steady_state_allocates_nothing_on_the_reactor_thread() {
    let (server, mut ws, counter, gate, binary) = warmed_up();
    trace_from_now();
    // Allocations during each phase, counted once the reactor has finished its turn.
    let mut phase = |label: &str, run: &mut dyn FnMut(&mut Client)| {
        trace_label(label);
        let before = counter.get();
        run(&mut ws);
        wait_for_turns(&server);
        counter.get() - before
    };
    let closed = phase("closed loop", &mut |ws| closed_loop(ws, 500, &binary));
    let bursts = phase("bursts", &mut |ws| {
        (0..3).for_each(|_| burst(ws, &server, &gate, &binary))
    });
    let text_bursts = phase("text bursts", &mut |ws| {
        (0..3).for_each(|_| text_burst(ws, &server, &gate))
    });
    trace_label("end");

    ws.close(None).ok();
    server.shutdown(Duration::from_secs(5)).expect("shutdown");
    assert_eq!(
        (closed, bursts, text_bursts),
        (0, 0, 0),
        "allocations on the reactor thread in steady state: (closed loop, bursts of text \
         and binary, bursts of small text). MARKED_ALLOC_BACKTRACES=3 and --nocapture \
         show where they come from"
    );
}
