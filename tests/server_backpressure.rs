//! A client that never reads: sends meet backpressure, then the limit, where the
//! policy applies; memory stays bounded; `on_drain` fires once the client reads.
//!
//! Memory is the server's live heap, counted by the allocator
//! (tests/util/live_alloc.rs), not the process's RSS: the tests take turns.

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use server::{PATIENCE, read_frame, start, test_config, wait_for_stats, wait_until};
use wsreactor::{BackpressurePolicy, Handler, Message, SendStatus, Socket};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

/// The live heap is the process's: one test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the reactor stages a turn's writes in before they reach a queue.
const CORK: usize = 64 * 1024;

const LIMIT: usize = 256 * 1024;
const MESSAGE: usize = 1024;

#[derive(Clone, Default)]
struct Flood {
    sent: Arc<AtomicUsize>,
    backpressured: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    max_buffered: Arc<AtomicUsize>,
    drains: Arc<AtomicUsize>,
}

impl Handler for Flood {
    type Session = ();

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let Message::Text(count) = message else {
            return;
        };
        let count: usize = count.parse().unwrap_or(0);
        for seq in 0..count as u32 {
            let mut payload = vec![0u8; MESSAGE];
            payload[..4].copy_from_slice(&seq.to_be_bytes());
            let counter = match ws.send_binary(&payload) {
                SendStatus::Sent => &self.sent,
                SendStatus::Backpressure => &self.backpressured,
                SendStatus::Dropped => &self.dropped,
                SendStatus::Closed => break,
            };
            counter.fetch_add(1, SeqCst);
            self.max_buffered.fetch_max(ws.buffered_amount(), SeqCst);
        }
    }

    fn on_drain(&mut self, _: &mut Socket<'_, ()>) {
        self.drains.fetch_add(1, SeqCst);
    }
}

fn masked_text(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    frame
}

#[test]
fn a_reader_that_stops_reading_hits_the_limit_and_memory_stays_bounded() {
    let _serial = serial();
    let flood = Flood::default();
    let config = test_config().with_backpressure(LIMIT, BackpressurePolicy::Drop);
    let server = start(config, flood.clone());
    let mut client = server::raw_ws(server.local_addr());
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let before = live_alloc::reset_peak();
    // 100 MiB asked for, in one callback, while the client reads nothing.
    client.write_all(&masked_text("100000")).unwrap();
    wait_until(PATIENCE, || {
        flood.sent.load(SeqCst) + flood.backpressured.load(SeqCst) + flood.dropped.load(SeqCst)
            == 100_000
    });
    // The heap's peak over the flood: the queue at its limit, in a buffer grown by
    // doubling (under twice the limit), the reactor's cork, and as much again for
    // the queue's bookkeeping and the message in hand.
    let grown = live_alloc::peak() - before;
    let bound = 2 * LIMIT + 2 * CORK;
    eprintln!("heap peak +{grown} B over 100 MiB sent at a {LIMIT} B limit (at most {bound})");
    let accepted = flood.sent.load(SeqCst) + flood.backpressured.load(SeqCst);
    assert!(flood.backpressured.load(SeqCst) > 0, "the queue was used");
    assert!(
        flood.dropped.load(SeqCst) > 90_000,
        "most of 100 MiB was dropped"
    );
    assert!(
        flood.max_buffered.load(SeqCst) <= LIMIT,
        "never above the limit"
    );
    assert!(grown <= bound, "the heap grew by {grown} bytes");
    // The counters are published when the loop turn ends, just after the callback.
    let dropped = flood.dropped.load(SeqCst) as u64;
    wait_for_stats(&server, PATIENCE, |s| s.dropped == dropped);

    // Now the client reads: every accepted message arrives, in order, and the
    // handler hears that the queue drained.
    let mut last = None;
    for _ in 0..accepted {
        let (op, payload) = read_frame(&mut client).expect("a frame");
        assert_eq!((op, payload.len()), (0x2, MESSAGE));
        let seq = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        assert!(last.is_none_or(|l| seq > l), "in order");
        last = Some(seq);
    }
    wait_until(PATIENCE, || flood.drains.load(SeqCst) >= 1);
    // And the connection still works.
    client.write_all(&masked_text("1")).unwrap();
    assert_eq!(
        read_frame(&mut client).map(|(op, p)| (op, p.len())),
        Some((0x2, MESSAGE))
    );
}

#[test]
fn the_close_policy_closes_with_1008_at_the_limit() {
    let _serial = serial();
    let flood = Flood::default();
    // The close timeout is the point: 500 ms, which no busy machine makes early.
    let config = test_config()
        .with_close_timeout(Duration::from_millis(500))
        .with_backpressure(LIMIT, BackpressurePolicy::Close);
    let server = start(config, flood.clone());
    let mut client = server::raw_ws(server.local_addr());
    client.write_all(&masked_text("100000")).unwrap();
    wait_until(PATIENCE, || flood.dropped.load(SeqCst) == 1);
    // Only one message is dropped: the connection is closing, later sends see it closed.
    assert!(flood.sent.load(SeqCst) + flood.backpressured.load(SeqCst) < 100_000);
    // The client never answers the close: the close timeout ends the connection,
    // reported with the code the server closed with.
    wait_until(PATIENCE, || server.stats().closed_with(1008) == 1);
    assert_eq!(server.stats().open, 0);
    drop(client);
}
