//! Timeouts on a real server: a client that never finishes its upgrade request is
//! dropped at the handshake timeout, however it trickles; an idle WebSocket client
//! is pinged, and closed with 1001 only if it stays silent.
//!
//! A timeout is checked from below (never before the configured time: a busy
//! machine only delays it) and for happening at all (within [`PATIENCE`], a hang
//! guard). Each clock starts before the client connects, so that the server's
//! timer, which starts when it accepts, cannot have started first.

#[path = "util/server.rs"]
mod server;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use server::{
    Echo, PATIENCE, UPGRADE, assert_echo, connect, raw, raw_ws, read_frame, read_until_closed,
    start, test_config, wait_for_stats,
};
use tungstenite::Message as T;
use tungstenite::stream::MaybeTlsStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(200);
const IDLE_TIMEOUT: Duration = Duration::from_millis(300);
/// A timeout within which a well-behaved client must act (finish its upgrade,
/// answer a ping): many times what it needs, so that a busy machine, which may
/// stall a thread for a good part of a second, never makes it late.
const LENIENT: Duration = Duration::from_secs(2);

#[test]
fn half_an_upgrade_request_is_dropped_at_the_handshake_timeout() {
    let server = start(
        test_config().with_handshake_timeout(Some(HANDSHAKE_TIMEOUT)),
        Echo,
    );
    let start = Instant::now();
    let mut s = raw(server.local_addr());
    // A read that times out means the server kept the connection: a hang.
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(&UPGRADE.as_bytes()[..UPGRADE.len() / 2])
        .unwrap();
    let answer = read_until_closed(&mut s);
    let after = start.elapsed();
    assert!(
        after >= HANDSHAKE_TIMEOUT,
        "dropped after {after:?}, before the timeout"
    );
    assert!(
        !answer.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.accepted, stats.rejected, stats.closed()), (1, 1, 0));
}

#[test]
fn a_slowloris_client_is_dropped_at_the_handshake_timeout() {
    let server = start(
        test_config().with_handshake_timeout(Some(HANDSHAKE_TIMEOUT)),
        Echo,
    );
    // A request that never ends: one header value, a byte every 50 ms. Each byte
    // is activity, none of it may extend the timeout: a server that let it would
    // keep this client past the hang guard (the header limit is minutes away).
    let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Trickle: ";
    let start = Instant::now();
    let mut s = raw(server.local_addr());
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut sent = 0;
    let mut buf = [0u8; 256];
    let after = loop {
        let after = start.elapsed();
        assert!(
            after < PATIENCE,
            "still open after {after:?} and {sent} bytes: the trickle keeps it"
        );
        let byte = request.get(sent).unwrap_or(&b'a');
        if s.write_all(std::slice::from_ref(byte)).is_err() {
            break after; // reset: the server has gone
        }
        sent += 1;
        match s.read(&mut buf) {
            Ok(0) => break start.elapsed(),
            Ok(n) => panic!(
                "an answer to half a request: {}",
                String::from_utf8_lossy(&buf[..n])
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break start.elapsed(),
        }
    };
    assert!(
        after >= HANDSHAKE_TIMEOUT,
        "dropped after {after:?}, before the timeout"
    );
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.accepted, stats.rejected), (1, 1));
}

#[test]
fn the_handshake_timeout_ends_at_the_upgrade() {
    let config = test_config()
        .with_handshake_timeout(Some(LENIENT))
        .with_idle_timeout(None);
    let server = start(config, Echo);
    let mut ws = connect(server.local_addr(), "/");
    // A witness: half a request, accepted after the upgrade on the same reactor, so
    // its handshake timer runs out no earlier than the upgraded one's would have.
    // Once the witness is dropped, a timer the upgrade failed to end has fired too.
    let mut witness = raw(server.local_addr());
    witness.set_read_timeout(Some(PATIENCE)).unwrap();
    witness
        .write_all(&UPGRADE.as_bytes()[..UPGRADE.len() / 2])
        .unwrap();
    read_until_closed(&mut witness);
    wait_for_stats(&server, PATIENCE, |s| s.rejected == 1);
    assert_echo(&mut ws, "still open");
    let stats = server.stats();
    assert_eq!((stats.open, stats.rejected, stats.closed()), (1, 1, 0));
}

#[test]
fn a_silent_client_is_pinged_then_closed_with_1001() {
    let config = test_config()
        .with_idle_timeout(Some(IDLE_TIMEOUT))
        .with_close_timeout(IDLE_TIMEOUT);
    let server = start(config, Echo);
    let start = Instant::now();
    let mut s = raw_ws(server.local_addr());
    s.set_read_timeout(Some(PATIENCE)).unwrap();

    assert_eq!(read_frame(&mut s), Some((0x9, vec![])), "a ping");
    let pinged = start.elapsed();
    assert!(
        pinged >= IDLE_TIMEOUT,
        "pinged after {pinged:?}, before the idle timeout"
    );

    // No answer: the next frame is the close, a whole idle timeout after the ping,
    // which itself came no earlier than one after the upgrade. (The gap between
    // the two as this client sees them says nothing: a client that reads late
    // finds both at once.)
    let (opcode, payload) = read_frame(&mut s).expect("a close frame");
    let closed = start.elapsed();
    assert_eq!(opcode, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    assert!(
        closed >= 2 * IDLE_TIMEOUT,
        "closed after {closed:?}, less than two idle timeouts (pinged after {pinged:?})"
    );

    // The client does not answer the close either: the server drops it at the close
    // timeout.
    let after = read_until_closed(&mut s);
    assert!(after.is_empty(), "bytes after the close frame: {after:?}");
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.closed_with(1001), stats.closed()), (1, 1));
}

#[test]
fn a_client_that_answers_pings_stays_open() {
    const PINGS: usize = 2;
    // A ping it has not answered within the idle timeout would close it.
    let server = start(test_config().with_idle_timeout(Some(LENIENT)), Echo);
    let mut ws = connect(server.local_addr(), "/");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    }
    // tungstenite answers each ping with a pong on its next read. A client that
    // answers is pinged again an idle timeout later, never closed: it outlives
    // several pings, however long they take to come.
    let start = Instant::now();
    let mut pings = 0;
    while pings < PINGS {
        assert!(
            start.elapsed() < PATIENCE,
            "only {pings} pings in {:?}",
            start.elapsed()
        );
        match ws.read() {
            Ok(T::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the connection failed after {:?}: {e}", start.elapsed()),
        }
    }
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    assert_echo(&mut ws, "alive");
    let stats = server.stats();
    assert_eq!((stats.open, stats.closed()), (1, 0));
}
