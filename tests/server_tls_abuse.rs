//! Hostile peers at a wss:// listener (feature `tls`): plain HTTP, random bytes, a
//! ClientHello cut short then silence, a ClientHello byte by byte, many stalled
//! handshakes, a record header announcing more than TLS allows, and a flood of
//! records (pings and key updates) from a peer that never reads. Each scenario
//! checks what the bad peer gets, that a good wss client is served meanwhile, and
//! that the heap stays under a bound stated in the test.
//!
//! The heap is the process's, counted by `util/live_alloc.rs`: the clients share
//! it, so a bound that holds for it holds for the server. Scenarios run one at a
//! time (`SERIAL`).
#![cfg(feature = "tls")]

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use tls::{Certs, PATIENCE, certs, frame, read_frame, start_tls, tls_ws, try_tls_ws};
use wsreactor::{Config, Handler, Message, ServerHandle, Socket};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const KIB: usize = 1024;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How much earlier than configured a timeout may fire: the timer wheel's tick (the
/// shortest timeout, here the 500 ms close timeout, over 8).
const TICK: Duration = Duration::from_micros(500_000 / 8);

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// A server whose handshake timeout is the point of the test.
fn start(certs: &Certs) -> ServerHandle {
    start_with(certs, Some(HANDSHAKE_TIMEOUT))
}

/// A server with `handshake_timeout`: `None` where what must close a peer is what it
/// sends, so that nothing else can.
fn start_with(certs: &Certs, handshake_timeout: Option<Duration>) -> ServerHandle {
    let config = Config::default()
        .with_reactors(1)
        .with_handshake_timeout(handshake_timeout)
        .with_close_timeout(Duration::from_millis(500))
        .with_backpressure(256 * KIB, wsreactor::BackpressurePolicy::Drop);
    start_tls(config, certs, Echo)
}

/// A good wss client: upgrades, and gets its message back. A server with a handshake
/// `timeout` may rightly drop one that took longer than that to upgrade (a busy
/// machine can make it): it tries again; an upgrade that fails sooner, or at a
/// server without the timeout, is the server's fault.
fn assert_served(addr: SocketAddr, config: &Arc<ClientConfig>, timeout: Option<Duration>) {
    let mut attempts = 0;
    let mut s = loop {
        let started = Instant::now();
        match try_tls_ws(addr, config) {
            Ok(s) => break s,
            Err(e) => {
                let took = started.elapsed();
                attempts += 1;
                assert!(
                    timeout.is_some_and(|t| took >= t - TICK) && attempts < 10,
                    "a good client was not served (after {took:?}): {e}"
                );
            }
        }
    };
    s.write_all(&frame(0x1, true, b"good")).unwrap();
    s.flush().unwrap();
    assert_eq!(read_frame(&mut s), Some((0x81, b"good".to_vec())));
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Whether a read error is the read timeout: the server kept the connection.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Reads until the server closes (a FIN or a reset); returns what it sent and when
/// it closed. Panics if the read times out: the server kept the connection open.
fn until_closed(s: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (all, Instant::now()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                assert!(!timed_out(&e), "the server kept the connection open");
                return (all, Instant::now());
            }
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The first flight of a client: its ClientHello record(s).
fn client_hello(config: &Arc<ClientConfig>) -> (ClientConnection, Vec<u8>) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(config.clone(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    (conn, hello)
}

/// A TLS alert record (content type 21), as rustls sends before closing.
fn is_alert(bytes: &[u8]) -> bool {
    bytes.first() == Some(&21)
}

#[test]
fn plain_http_and_random_bytes_at_the_tls_port_get_an_alert_and_are_closed() {
    let _serial = serial();
    let certs = certs();
    // No handshake timeout: only their bytes can close these peers.
    let server = start_with(&certs, None);
    let addr = server.local_addr();
    let config = certs.client_config();
    assert_served(addr, &config, None);
    let before = live_alloc::live();
    let mut http = tcp(addr);
    http.write_all(tls::UPGRADE.as_bytes()).unwrap();
    let mut random = tcp(addr);
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    random.write_all(&noise).unwrap();
    let (got, _) = until_closed(&mut http);
    assert!(is_alert(&got), "{got:?}");
    let (got, _) = until_closed(&mut random);
    assert!(got.is_empty() || is_alert(&got), "{got:?}");
    assert_served(addr, &config, None);
    let grown = live_alloc::live().saturating_sub(before);
    println!("plain HTTP and noise: heap +{grown} B after");
    assert!(grown < 64 * KIB);
}

#[test]
fn a_record_announcing_more_than_tls_allows_is_refused_without_waiting_for_it() {
    let _serial = serial();
    let certs = certs();
    // No handshake timeout: only the record can close these peers.
    let server = start_with(&certs, None);
    let addr = server.local_addr();
    let mut huge = tcp(addr);
    // A handshake record of 65,535 bytes (TLS allows 16 KiB + 256), and some of it.
    let mut record = vec![22, 3, 1, 0xff, 0xff];
    record.extend(std::iter::repeat_n(0u8, 1000));
    huge.write_all(&record).unwrap();
    // Closed without the rest of the record (it never comes).
    until_closed(&mut huge);
    // After the handshake too: an application-data record too long.
    let config = certs.client_config();
    let mut s = tls_ws(addr, &config);
    s.sock.write_all(&[23, 3, 3, 0x48, 0x01]).unwrap();
    s.sock.write_all(&[0u8; 512]).unwrap();
    let mut buf = Vec::new();
    let ended = s.read_to_end(&mut buf);
    assert!(
        matches!(&ended, Err(e) if !timed_out(e)),
        "ends with an alert, without waiting for the record: {ended:?}"
    );
    assert_served(addr, &config, None);
}

/// A handshake message that keeps coming (a ClientHello announced at 40,000
/// bytes, sent in whole records) is refused once the server holds a record's
/// worth of it, not held (rustls would keep up to 64 KiB) until the handshake
/// timeout: with none, the old server held it for ever.
#[test]
fn a_handshake_message_longer_than_a_record_is_refused_not_held() {
    let _serial = serial();
    let certs = certs();
    let server = start_with(&certs, None);
    let addr = server.local_addr();
    let mut long = tcp(addr);
    // ClientHello (type 1) announced at 40,000 bytes; its first 16,380 bytes in a
    // record of 16 KiB, then another record of it.
    let mut first = vec![22, 3, 1, 0x40, 0x00, 1, 0x00, 0x9c, 0x40];
    first.extend(std::iter::repeat_n(0u8, 16 * KIB - 4));
    let mut second = vec![22, 3, 1, 0x40, 0x00];
    second.extend(std::iter::repeat_n(0u8, 16 * KIB));
    long.write_all(&first).unwrap();
    let _ = long.write_all(&second); // may meet the close
    let (got, _) = until_closed(&mut long);
    assert!(got.is_empty() || is_alert(&got), "{got:?}");
    assert_served(addr, &certs.client_config(), None);
}

#[test]
fn a_cut_client_hello_then_silence_is_dropped_at_the_handshake_timeout() {
    let _serial = serial();
    let certs = certs();
    let server = start(&certs);
    let addr = server.local_addr();
    let config = certs.client_config();
    let timeout = Some(HANDSHAKE_TIMEOUT);
    let (_, hello) = client_hello(&config);
    let start = Instant::now();
    let mut cut = tcp(addr);
    cut.write_all(&hello[..hello.len() / 2]).unwrap();
    // Served meanwhile.
    assert_served(addr, &config, timeout);
    let (got, closed) = until_closed(&mut cut);
    assert!(got.is_empty(), "no answer to half a hello: {got:?}");
    let waited = closed - start;
    println!("cut ClientHello: dropped after {waited:?}");
    assert!(
        waited >= HANDSHAKE_TIMEOUT - TICK,
        "dropped after {waited:?}"
    );
    assert!(wait_rejected(&server, 1));
}

/// Whether at least `n` handshakes come to be counted as rejected within [`PATIENCE`].
fn wait_rejected(server: &ServerHandle, n: u64) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while server.stats().rejected < n {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn a_client_hello_sent_byte_by_byte_completes_the_handshake() {
    let _serial = serial();
    let certs = certs();
    // No handshake timeout: a busy machine may take seconds over the bytes' pauses.
    let server = start_with(&certs, None);
    let config = certs.client_config();
    let (mut conn, hello) = client_hello(&config);
    let mut sock = tcp(server.local_addr());
    for byte in &hello {
        sock.write_all(std::slice::from_ref(byte)).unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .expect("the handshake completes");
    }
    let mut s = rustls::StreamOwned::new(conn, sock);
    s.write_all(tls::UPGRADE.as_bytes()).unwrap();
    let head = tls::read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(&frame(0x2, true, b"slowly")).unwrap();
    s.flush().unwrap();
    assert_eq!(read_frame(&mut s), Some((0x82, b"slowly".to_vec())));
}

/// Stalled handshakes cost the server a bounded amount each, all of it returned at
/// the handshake timeout; a good client is served throughout. Measured on a server
/// without the timeout, so that all of them are held at once however long a busy
/// machine takes to connect them; let go on one with it.
#[test]
fn many_stalled_handshakes_are_bounded_and_let_go() {
    const STALLED: usize = 2000;
    let _serial = serial();
    let certs = certs();
    let config = certs.client_config();
    let (_, hello) = client_hello(&config);
    let stall = |addr: SocketAddr| -> Vec<TcpStream> {
        (0..STALLED)
            .map(|_| {
                let mut s = tcp(addr);
                s.write_all(&hello[..hello.len() - 10]).unwrap();
                s
            })
            .collect()
    };

    let server = start_with(&certs, None);
    let addr = server.local_addr();
    assert_served(addr, &config, None);
    let before = live_alloc::live();
    let stalled = stall(addr);
    assert_served(addr, &config, None);
    // Every stalled one accepted, the good ones gone.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stats = server.stats();
        if stats.accepted == STALLED as u64 + 2 && stats.open == STALLED as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let during = live_alloc::live();
    let each = during.saturating_sub(before) / STALLED;
    println!("{each} bytes per stalled TLS handshake");
    assert!(each < 16 * KIB, "{each} bytes per stalled handshake");
    drop(stalled);
    drop(server);

    let server = start(&certs);
    let addr = server.local_addr();
    let timeout = Some(HANDSHAKE_TIMEOUT);
    assert_served(addr, &config, timeout);
    let before = live_alloc::live();
    let stalled = stall(addr);
    assert_served(addr, &config, timeout);
    assert!(wait_rejected(&server, STALLED as u64));
    drop(stalled);
    assert_served(addr, &config, timeout);
    let after = live_alloc::live();
    println!(
        "after the stalled handshakes: heap +{} B",
        after.saturating_sub(before)
    );
    // What stays is capacity kept for reuse: the slab's slots (under 128 bytes
    // each) and the session map's buckets.
    assert!(
        after < before + 64 * KIB + STALLED * 256,
        "{} bytes left after the stalled handshakes ended",
        after.saturating_sub(before)
    );
}

/// A peer that sends records and never reads: pings (each answered) and key updates
/// (each asking for one back). Its answers wait under the backpressure limit and
/// the reading stops; the heap stays bounded; others are served.
#[test]
fn a_record_flood_from_a_peer_that_never_reads_stays_bounded() {
    let _serial = serial();
    let certs = certs();
    let server = start_with(&certs, None);
    let addr = server.local_addr();
    let config = certs.client_config();
    assert_served(addr, &config, None);
    let before = live_alloc::live();
    let mut s = tls_ws(addr, &config);
    s.sock.set_nonblocking(true).unwrap();
    let ping = frame(0x9, true, &[b'p'; 125]);
    let start = Instant::now();
    let mut sent = 0usize;
    // Each write a record of its own; a key update every 16 pings.
    'flood: while start.elapsed() < Duration::from_secs(3) {
        for i in 0..16 {
            if i == 0 {
                let _ = s.conn.refresh_traffic_keys();
            }
            let _ = s.conn.writer().write(&ping);
        }
        loop {
            match s.conn.write_tls(&mut s.sock) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break 'flood,
                Err(_) => break 'flood,
            }
            if !s.conn.wants_write() {
                break;
            }
        }
    }
    println!(
        "{} KiB of records sent before the server stopped reading",
        sent / KIB
    );
    assert_served(addr, &config, None);
    let grown = live_alloc::live().saturating_sub(before);
    println!(
        "record flood: heap +{} KiB while the peer does not read",
        grown / KIB
    );
    // The queue under the limit (256 KiB), what one read answers, records the
    // kernel refused (about 128 KiB at most), our client's own buffers.
    assert!(grown < 1024 * KIB, "{} KiB grew", grown / KIB);
    drop(s);
    assert_served(addr, &config, None);
}
