//! The write timeout: a peer that stops reading is dropped once its queue has not
//! moved for `write_timeout`, and `on_close` says so; a reader that keeps reading is
//! not, however far behind it is.
//!
//! The timeout is checked from below (never before it is due: a busy machine only
//! delays it) and for happening at all within [`PATIENCE`], a hang guard.

#[path = "util/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use server::{PATIENCE, UPGRADE, read_head, start, test_config, wait_for_stats};
use wsreactor::{CloseCode, Config, ConnId, Handler, Message, SendStatus, Socket};

const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// The write timeout for a reader that must keep up: many times its pauses, so
/// that a busy machine, which may stall a thread for a good part of a second,
/// never makes it late.
const LENIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// On "stream", sends 16 KiB messages until backpressure, and again at every
/// drain, for as long as the connection lives; reports every close.
#[derive(Clone)]
struct Stream {
    closes: Arc<Mutex<mpsc::Sender<(u16, String, Instant)>>>,
}

fn fill(ws: &mut Socket<'_, bool>) {
    while *ws.session() && ws.send_binary(&[b'x'; 16 * 1024]) == SendStatus::Sent {}
}

impl Handler for Stream {
    type Session = bool;
    fn on_message(&mut self, ws: &mut Socket<'_, bool>, message: Message<'_>) {
        *ws.session_mut() = message.as_bytes() == b"stream";
        fill(ws);
    }
    fn on_drain(&mut self, ws: &mut Socket<'_, bool>) {
        fill(ws);
    }
    fn on_close(&mut self, _: ConnId, _: bool, code: CloseCode, reason: &str) {
        let _ = self
            .closes
            .lock()
            .unwrap()
            .send((code.0, reason.to_owned(), Instant::now()));
    }
}

fn setup(
    write_timeout: Duration,
) -> (
    wsreactor::ServerHandle,
    mpsc::Receiver<(u16, String, Instant)>,
) {
    let (tx, rx) = mpsc::channel();
    let handler = Stream {
        closes: Arc::new(Mutex::new(tx)),
    };
    let config: Config = test_config()
        .with_idle_timeout(None)
        .with_write_timeout(Some(write_timeout));
    (start(config, handler), rx)
}

/// A raw client with a small receive window, upgraded, that asks for a stream.
fn streaming(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    s.write_all(&[0x81, 0x86, 0, 0, 0, 0]).unwrap();
    s.write_all(b"stream").unwrap();
    s
}

#[test]
fn a_peer_that_stops_reading_is_dropped_and_on_close_says_why() {
    let (server, closes) = setup(WRITE_TIMEOUT);
    // Before the connection exists: the queue cannot have stalled before this.
    let asked = Instant::now();
    let _never_reads = streaming(server.local_addr());
    let (code, reason, at) = closes
        .recv_timeout(PATIENCE)
        .expect("dropped by the write timeout");
    assert_eq!((code, reason.as_str()), (1008, "write timeout"));
    let after = at - asked;
    assert!(after >= WRITE_TIMEOUT, "dropped after {after:?}");
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.write_timeouts, stats.closed_with(1008)), (1, 1));
}

#[test]
fn a_reader_that_keeps_reading_is_not_dropped() {
    const TIMEOUT: Duration = LENIENT_WRITE_TIMEOUT;
    let (server, closes) = setup(TIMEOUT);
    let mut reader = streaming(server.local_addr());
    // Reads in bursts with pauses a twentieth of the write timeout, for at least
    // three times the timeout and at least 1 MiB: its queue never empties (the
    // server refills it at every drain), but it keeps moving. How long that takes
    // does not matter; only the pauses must stay short of the timeout.
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    let mut longest_pause = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < TIMEOUT * 3 || total <= 1 << 20 {
        assert!(
            start.elapsed() < PATIENCE,
            "read only {total} bytes in {:?}",
            start.elapsed()
        );
        let burst = Instant::now();
        while burst.elapsed() < Duration::from_millis(30) {
            let n = reader.read(&mut buf).unwrap_or_else(|e| {
                panic!("the connection failed (longest pause {longest_pause:?}): {e}")
            });
            assert!(
                n > 0,
                "the server closed on a reader that reads (longest pause {longest_pause:?})"
            );
            total += n;
        }
        let paused = Instant::now();
        std::thread::sleep(TIMEOUT / 20);
        longest_pause = longest_pause.max(paused.elapsed());
    }
    assert!(
        closes.try_recv().is_err(),
        "closed while the peer was reading (longest pause {longest_pause:?})"
    );
    assert_eq!(server.stats().write_timeouts, 0);
}
