//! Timeouts on a real server: a client that never finishes its upgrade request is
//! dropped at the handshake timeout, however it trickles; an idle WebSocket client
//! is pinged, and closed with 1001 only if it stays silent.

#[path = "util/server.rs"]
mod server;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use server::{
    Echo, UPGRADE, assert_echo, connect, raw, raw_ws, read_frame, read_until_closed, start,
    test_config, wait_for_stats,
};
use tungstenite::Message as T;
use tungstenite::stream::MaybeTlsStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(200);
const IDLE_TIMEOUT: Duration = Duration::from_millis(300);
/// Timeouts never fire early; this allows for the clocks of client and server
/// starting at slightly different moments.
const EARLY: Duration = Duration::from_millis(40);
/// Generous, for a loaded machine: the wheel itself fires within a tick.
const LATE: Duration = Duration::from_secs(2);

#[test]
fn half_an_upgrade_request_is_dropped_at_the_handshake_timeout() {
    let server = start(
        test_config().with_handshake_timeout(Some(HANDSHAKE_TIMEOUT)),
        Echo,
    );
    let mut s = raw(server.local_addr());
    s.set_read_timeout(Some(LATE)).unwrap();
    let start = Instant::now();
    s.write_all(&UPGRADE.as_bytes()[..UPGRADE.len() / 2])
        .unwrap();
    let answer = read_until_closed(&mut s);
    let after = start.elapsed();
    assert!(
        after >= HANDSHAKE_TIMEOUT - EARLY,
        "dropped after {after:?}, before the timeout"
    );
    assert!(after < LATE, "dropped only after {after:?}");
    assert!(
        !answer.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let stats = wait_for_stats(&server, LATE, |s| s.open == 0);
    assert_eq!((stats.accepted, stats.rejected, stats.closed()), (1, 1, 0));
}

#[test]
fn a_slowloris_client_is_dropped_at_the_handshake_timeout() {
    let server = start(
        test_config().with_handshake_timeout(Some(HANDSHAKE_TIMEOUT)),
        Echo,
    );
    let mut s = raw(server.local_addr());
    // One byte every 50 ms: each byte is activity, none of it may extend the timeout.
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let start = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 256];
    let after = loop {
        let after = start.elapsed();
        assert!(after < LATE, "still open after {after:?} and {sent} bytes");
        if s.write_all(&UPGRADE.as_bytes()[sent..=sent]).is_err() {
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
        after >= HANDSHAKE_TIMEOUT - EARLY,
        "dropped after {after:?}, before the timeout"
    );
    assert!(sent < UPGRADE.len(), "the request was completed");
    let stats = wait_for_stats(&server, LATE, |s| s.open == 0);
    assert_eq!((stats.accepted, stats.rejected), (1, 1));
}

#[test]
fn the_handshake_timeout_ends_at_the_upgrade() {
    let config = test_config()
        .with_handshake_timeout(Some(HANDSHAKE_TIMEOUT))
        .with_idle_timeout(None);
    let server = start(config, Echo);
    let mut ws = connect(server.local_addr(), "/");
    std::thread::sleep(HANDSHAKE_TIMEOUT * 3);
    assert_echo(&mut ws, "still open");
    let stats = server.stats();
    assert_eq!((stats.open, stats.rejected, stats.closed()), (1, 0, 0));
}

#[test]
fn a_silent_client_is_pinged_then_closed_with_1001() {
    let config = test_config()
        .with_idle_timeout(Some(IDLE_TIMEOUT))
        .with_close_timeout(IDLE_TIMEOUT);
    let server = start(config, Echo);
    let mut s = raw_ws(server.local_addr());
    s.set_read_timeout(Some(LATE)).unwrap();
    let start = Instant::now();

    assert_eq!(read_frame(&mut s), Some((0x9, vec![])), "a ping");
    let pinged = start.elapsed();
    assert!(
        pinged >= IDLE_TIMEOUT - EARLY,
        "pinged after {pinged:?}, before the idle timeout"
    );
    assert!(pinged < LATE, "pinged only after {pinged:?}");

    // No answer: the next frame is the close.
    let (opcode, payload) = read_frame(&mut s).expect("a close frame");
    let closed = start.elapsed();
    assert_eq!(opcode, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    assert!(
        closed - pinged >= IDLE_TIMEOUT - EARLY,
        "closed {:?} after the ping",
        closed - pinged
    );

    // The client does not answer the close either: the server drops it at the close
    // timeout.
    let after = read_until_closed(&mut s);
    assert!(after.is_empty(), "bytes after the close frame: {after:?}");
    let stats = wait_for_stats(&server, LATE, |s| s.open == 0);
    assert_eq!((stats.closed_with(1001), stats.closed()), (1, 1));
}

#[test]
fn a_client_that_answers_pings_stays_open() {
    let server = start(test_config().with_idle_timeout(Some(IDLE_TIMEOUT)), Echo);
    let mut ws = connect(server.local_addr(), "/");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    }
    // tungstenite answers each ping with a pong on its next read.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < IDLE_TIMEOUT * 4 {
        match ws.read() {
            Ok(T::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("the connection failed after {:?}: {e}", start.elapsed()),
        }
    }
    assert!(pings >= 2, "only {pings} pings in {:?}", start.elapsed());
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(LATE)).unwrap();
    }
    assert_echo(&mut ws, "alive");
    let stats = server.stats();
    assert_eq!((stats.open, stats.closed()), (1, 0));
}
