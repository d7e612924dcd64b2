//! What a subscription costs the server's heap: each connection subscribes to one
//! topic, then to nine more; the live heap before and after, over the subscriptions.
//! The registry's goal is 32 bytes or less per subscription (docs/BENCHMARKS.md has
//! the resident figures from `wsload idle`).

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::net::TcpStream;

use server::{PATIENCE, raw_ws, read_frame, start, test_config, wait_for_stats, wait_for_turns};
use wsreactor::{Handler, Message, Socket};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

const CONNECTIONS: usize = 1000;
const MORE: usize = 9;

/// On "sub N FIRST", subscribes to topics FIRST..FIRST+N (shared by every
/// connection) and answers "ok".
#[derive(Clone)]
struct Subscriber;

impl Handler for Subscriber {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let mut words = text
            .split(' ')
            .skip(1)
            .map(|w| w.parse::<usize>().unwrap_or(0));
        let (n, first) = (words.next().unwrap_or(0), words.next().unwrap_or(0));
        for t in first..first + n {
            let _ = ws.subscribe(format!("topic-{t}"));
        }
        let _ = ws.send_text("ok");
    }
}

fn ask(s: &mut TcpStream, text: &str) {
    let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(text.as_bytes());
    s.write_all(&frame).unwrap();
    assert_eq!(read_frame(s).unwrap().1, b"ok");
}

#[test]
fn a_subscription_costs_the_heap_32_bytes_or_less() {
    // No handshake or idle deadline: the timer wheel's entries for the connections
    // would expire (and its list of due entries grow) while the heap is measured, as
    // fast as the machine connected them.
    let config = test_config()
        .with_handshake_timeout(None)
        .with_idle_timeout(None);
    let server = start(config, Subscriber);
    let mut clients: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let s = raw_ws(server.local_addr());
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s
        })
        .collect();
    wait_for_stats(&server, PATIENCE, |s| s.open == CONNECTIONS as u64);
    // Each figure is read once the reactor has ended the turn that answered the last
    // "ok", so that nothing it held for that turn alone is counted.
    wait_for_turns(&server);
    let before = live_alloc::live();
    for s in clients.iter_mut() {
        ask(s, "sub 1 0");
    }
    wait_for_turns(&server);
    let first = live_alloc::live() as f64 - before as f64;
    for s in clients.iter_mut() {
        ask(s, &format!("sub {MORE} 1"));
    }
    wait_for_turns(&server);
    let more = live_alloc::live() as f64 - before as f64 - first;
    let first = first / CONNECTIONS as f64;
    let more = more / (CONNECTIONS * MORE) as f64;
    eprintln!(
        "heap: {first:.1} B for a connection's first subscription, {more:.1} B for each further one"
    );
    assert_eq!(server.subscribers("topic-5"), CONNECTIONS);
    assert!(first <= 64.0, "{first:.1} B for the first subscription");
    assert!(more <= 32.0, "{more:.1} B per further subscription");
}
