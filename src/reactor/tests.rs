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

/// How long a test waits for what must happen before it calls it a hang: a guard,
/// never a measure (a busy machine may be many times slower than an idle one).
const PATIENCE: Duration = Duration::from_secs(60);

/// Connects to `addr` and reads until the server closes the connection; returns
/// how long that took from before the connect (the server's timers cannot have
/// started earlier), or `None` if it did not close within [`PATIENCE`].
fn closed_after(addr: std::net::SocketAddr) -> Option<Duration> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream.set_read_timeout(Some(PATIENCE)).ok()?;
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
    const TO_EDGE: u32 = 100;
    let mut config = Config::default()
        .with_reactors(1)
        .with_handshake_timeout(Some(Duration::from_millis(100)));
    let tick = config.timer_tick();
    assert_eq!(tick, Duration::from_micros(12_500));
    config.timer_origin = u64::from(u32::MAX) - u64::from(TO_EDGE);
    let server = Server::bind("127.0.0.1:0", config)
        .and_then(|s| s.spawn(Nothing))
        .expect("server starts");
    let addr = server.local_addr();

    // Before the edge (100 ticks = 1.25 s away from the wheel's start).
    let took = closed_after(addr).expect("dropped by the timeout");
    assert!(took >= Duration::from_millis(100), "fired early: {took:?}");
    // The wheel started before it served that connection, so the edge is at most
    // 100 ticks from now: wait until the clock is two ticks past it, then time
    // another connection out after it.
    std::thread::sleep(tick * (TO_EDGE + 2));
    let took = closed_after(addr).expect("dropped after the edge");
    assert!(took >= Duration::from_millis(100), "fired early: {took:?}");

    // Idle now: about one turn per tick (80 a second), not a spinning loop. The
    // bound is per tick of the time actually measured, which load only lengthens.
    let before = server.stats().loop_turns;
    let measuring = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let turns = server.stats().loop_turns - before;
    let ticks = measuring.elapsed().as_nanos() / tick.as_nanos();
    assert!(
        u128::from(turns) < 5 * (ticks + 1),
        "{turns} loop turns in an idle {ticks} ticks"
    );
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
    client.set_read_timeout(Some(PATIENCE)).expect("timeout");
    while got < 5 * CORK_LIMIT {
        let n = client.read(&mut buf).expect("reads");
        assert!(buf[..n].iter().all(|&b| b == 7));
        got += n;
        let _ = output.flush(owner, &mut conn);
    }
    assert_eq!(got, 5 * CORK_LIMIT);
    client.write_all(b"x").expect("still open");
}

/// Ids are never reused: a reactor's generations are 64 bits, so an id kept after
/// its connection closed reaches nobody, even when its slot's new connection has
/// the same low 32 bits of generation (as after 2^32 accepts, about ten days at
/// 5,000 a second: with 32-bit generations the stale id reached the newcomer).
#[test]
fn a_stale_id_reaches_nobody_across_the_32_bit_edge_of_generations() {
    use std::sync::{Mutex, mpsc};
    #[derive(Clone)]
    struct Register(std::sync::Arc<Mutex<mpsc::Sender<crate::ConnId>>>);
    impl Handler for Register {
        type Session = ();
        fn on_open(&mut self, ws: &mut crate::Socket<'_, ()>) {
            let _ = self.0.lock().unwrap().send(ws.id());
        }
    }
    let (tx, ids) = mpsc::channel();
    let mut config = Config::default().with_reactors(1);
    config.generation_step = 1 << 32;
    let server = Server::bind("127.0.0.1:0", config)
        .unwrap()
        .spawn(Register(std::sync::Arc::new(Mutex::new(tx))))
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let patience = Duration::from_secs(60);
    let (first, _) = tungstenite::connect(&url).unwrap();
    let stale = ids.recv_timeout(patience).unwrap();
    drop(first);
    let start = Instant::now();
    while server.stats().open > 0 {
        assert!(start.elapsed() < patience);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (mut second, _) = tungstenite::connect(&url).unwrap();
    let fresh = ids.recv_timeout(patience).unwrap();
    assert_eq!(fresh.slot, stale.slot, "the slot was reused");
    assert_eq!(fresh.generation as u32, stale.generation as u32);
    assert_ne!(fresh, stale);
    let sender = server.sender();
    let _ = sender.send(stale, crate::Message::Text("for the closed one"));
    let _ = sender.close(stale, crate::CloseCode::NORMAL, "for the closed one");
    let _ = sender.send(fresh, crate::Message::Text("for the new one"));
    assert_eq!(
        second.read().unwrap(),
        tungstenite::Message::text("for the new one"),
        "the stale id's send and close reached nobody"
    );
    assert_eq!(server.stats().open, 1);
}
