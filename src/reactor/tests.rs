//! Reactor tests that need the crate's internals: a timer wheel started near the
//! 32-bit edge, and the cork's bound with real sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::output::{CORK_LIMIT, Output, Owner};
use crate::config::{BackpressurePolicy, Config};
use crate::handler::Handler;
use crate::server::Server;

#[derive(Clone)]
struct Nothing;

impl Handler for Nothing {
    type Session = ();
}

/// Reads until the server closes the connection; returns how long that took.
fn closed_after(mut stream: TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).ok()?;
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(start.elapsed());
            }
            Err(_) => return None,
        }
    }
}

/// Regression: wheel time was 32 bits and saturated after 2^32 ticks (248 days at
/// the 5 ms tick): timeouts stopped and the poll timeout was always zero, so the
/// loop spun at full CPU. The wheel starts 100 ticks before the edge here.
#[test]
fn timeouts_fire_across_the_32_bit_tick_edge_and_the_idle_loop_sleeps() {
    let mut config = Config::default()
        .with_reactors(1)
        .with_handshake_timeout(Some(Duration::from_millis(100)));
    let tick = config.timer_tick();
    assert_eq!(tick, Duration::from_micros(12_500));
    config.timer_origin = u64::from(u32::MAX) - 100;
    let server = Server::bind("127.0.0.1:0", config)
        .and_then(|s| s.spawn(Nothing))
        .expect("server starts");
    let addr = server.local_addr();

    // Before the edge (100 ticks = 1.25 s away).
    let first = TcpStream::connect(addr).expect("connects");
    let took = closed_after(first, Duration::from_secs(3)).expect("dropped by the timeout");
    assert!(took >= Duration::from_millis(90), "fired early: {took:?}");
    // Wait until the wheel has crossed the edge, then once more after it.
    std::thread::sleep(Duration::from_millis(1400));
    let second = TcpStream::connect(addr).expect("connects");
    let took = closed_after(second, Duration::from_secs(3)).expect("dropped after the edge");
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_secs(1),
        "{took:?}"
    );

    // Idle now: about one turn per tick (80 a second), not a spinning loop.
    let before = server.stats().loop_turns;
    std::thread::sleep(Duration::from_secs(1));
    let turns = server.stats().loop_turns - before;
    assert!(turns < 400, "{turns} loop turns in an idle second");
    server.shutdown(Duration::from_secs(1)).expect("stops");
}

/// A connected pair: a mio stream (the server's side) and a std stream.
pub(crate) fn pair() -> (mio::net::TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connects");
    let (server, _) = listener.accept().expect("accepts");
    server.set_nonblocking(true).expect("nonblocking");
    (mio::net::TcpStream::from_std(server), client)
}

#[test]
fn the_cork_is_written_and_shrunk_after_a_turn_that_grew_it() {
    let (stream, mut client) = pair();
    let mut conn: Conn<()> = Conn::new(stream, 1);
    let owner = Owner::of(0, &conn);
    let mut output = Output::new(1 << 20, BackpressurePolicy::Drop);
    // Replies to a read full of pings, staged past the limit in one go.
    output.cork(owner).extend_from_slice(&[7u8; 5 * CORK_LIMIT]);
    output.flush(owner, &mut conn).expect("flushes");
    assert!(output.cork(owner).capacity() <= 2 * CORK_LIMIT);
    // And every byte reaches the peer, once (the rest through the queue).
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    while got < 5 * CORK_LIMIT {
        let n = client.read(&mut buf).expect("reads");
        assert!(buf[..n].iter().all(|&b| b == 7));
        got += n;
        let _ = output.flush(owner, &mut conn);
    }
    assert_eq!(got, 5 * CORK_LIMIT);
    client.write_all(b"x").expect("still open");
}
