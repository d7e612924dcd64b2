//! A client that never reads: sends meet backpressure, then the limit, where the
//! policy applies; memory stays bounded; `on_drain` fires once the client reads.

#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use server::{read_frame, start, test_config, wait_for_stats, wait_until};
use wsreactor::{BackpressurePolicy, Handler, Message, SendStatus, Socket};

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

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn a_reader_that_stops_reading_hits_the_limit_and_memory_stays_bounded() {
    let flood = Flood::default();
    let config = test_config().with_backpressure(LIMIT, BackpressurePolicy::Drop);
    let server = start(config, flood.clone());
    let mut client = server::raw_ws(server.local_addr());
    let before = resident_bytes();
    // 100 MiB asked for, in one callback, while the client reads nothing.
    client.write_all(&masked_text("100000")).unwrap();
    wait_until(Duration::from_secs(10), || {
        flood.sent.load(SeqCst) + flood.backpressured.load(SeqCst) + flood.dropped.load(SeqCst)
            == 100_000
    });
    let grown = resident_bytes().saturating_sub(before);
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
    assert!(grown < 32 << 20, "resident memory grew by {grown} bytes");
    // The counters are published when the loop turn ends, just after the callback.
    let dropped = flood.dropped.load(SeqCst) as u64;
    wait_for_stats(&server, Duration::from_secs(5), |s| s.dropped == dropped);

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
    wait_until(Duration::from_secs(5), || flood.drains.load(SeqCst) >= 1);
    // And the connection still works.
    client.write_all(&masked_text("1")).unwrap();
    assert_eq!(
        read_frame(&mut client).map(|(op, p)| (op, p.len())),
        Some((0x2, MESSAGE))
    );
}

#[test]
fn the_close_policy_closes_with_1008_at_the_limit() {
    let flood = Flood::default();
    let config = test_config().with_backpressure(LIMIT, BackpressurePolicy::Close);
    let server = start(config, flood.clone());
    let mut client = server::raw_ws(server.local_addr());
    client.write_all(&masked_text("100000")).unwrap();
    wait_until(Duration::from_secs(10), || flood.dropped.load(SeqCst) == 1);
    // Only one message is dropped: the connection is closing, later sends see it closed.
    assert!(flood.sent.load(SeqCst) + flood.backpressured.load(SeqCst) < 100_000);
    // The client never answers the close: the close timeout ends the connection,
    // reported with the code the server closed with.
    wait_until(Duration::from_secs(10), || {
        server.stats().closed_with(1008) == 1
    });
    assert_eq!(server.stats().open, 0);
    drop(client);
}
