//! What an idle wss:// connection costs the server's heap (feature `tls`): the
//! slot, the session's box in the map, and what rustls keeps after the handshake
//! (the key schedule, the traffic keys' bytes), but no buffer and no expanded key.
//!
//! The clients do their TLS handshake and upgrade, then drop their TLS state and
//! keep only the socket: the server cannot tell, and the heap delta is the server's.
#![cfg(feature = "tls")]

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/tls.rs"]
mod tls;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tls::{PATIENCE, certs, frame, read_frame, start_tls, tls_ws};
use wsreactor::{Config, Handler, Message, Socket};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

#[test]
fn an_idle_wss_connection_holds_no_buffer() {
    const CONNECTIONS: usize = 1000;
    let certs = certs();
    // Keys unused for 100 ms go at the next sweep (on the timer tick: 250 ms here).
    let config = Config::default()
        .with_reactors(1)
        .with_tls_key_release(Duration::from_millis(100));
    let server = start_tls(config, &certs, Echo);
    let addr = server.local_addr();
    let config = certs.client_config();
    // The reactor's shared TLS buffers are made by its first wss connection, and
    // one echo grows what echoes use: not the idle figure.
    let mut first = tls_ws(addr, &config);
    first.write_all(&frame(0x2, true, b"warm")).unwrap();
    first.flush().unwrap();
    assert_eq!(read_frame(&mut first), Some((0x82, b"warm".to_vec())));
    let before = live_alloc::live();
    let sockets: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let s = tls_ws(addr, &config);
            s.sock
        })
        .collect();
    // Counters are published at the end of a loop turn.
    let deadline = Instant::now() + PATIENCE;
    while server.stats().open < CONNECTIONS as u64 + 1 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let fresh = live_alloc::live().saturating_sub(before) / CONNECTIONS;
    // After two sweeps, the keys of a connection quiet since are let go. A second of
    // quiet is four ticks; the reactor's own turns (an idle one makes one a tick)
    // make sure it ran them, however busy the machine kept it.
    let turns = server.stats().loop_turns;
    std::thread::sleep(Duration::from_secs(1));
    let deadline = Instant::now() + PATIENCE;
    while server.stats().loop_turns < turns + 4 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let each = live_alloc::live().saturating_sub(before) / CONNECTIONS;
    println!(
        "{each} bytes of server heap per idle wss connection ({fresh} just after its handshake)"
    );
    // Measured 2,530 B: the slot and map entry (~100 B), the session's box (1,144
    // B: rustls' connection, mostly), rustls' handshake deframer (640 B, kept from
    // the start), its traffic state and key schedule (224 B), two emptied record
    // queues (2 x 96 B), the two keys' bytes (2 x 72 B), the SNI name. The keys in
    // ring's working form add 2 x 560 B while in use (and did for the connection's
    // life before the pool). rustls' buffered connection adds a 4 KiB read buffer.
    // Without the sweep (the keys kept expanded) it is 3.5 KiB.
    assert!(each < 2816, "{each} bytes per idle wss connection");
    drop(sockets);
}
