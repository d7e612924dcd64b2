//! The write timeout: a peer that stops reading is dropped once its queue has not
//! moved for `write_timeout`, and `on_close` says so; a reader that keeps reading is
//! not, however far behind it is.

#[path = "util/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use server::{UPGRADE, read_head, start, test_config, wait_for_stats};
use wsreactor::{CloseCode, Config, ConnId, Handler, Message, SendStatus, Socket};

const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

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

fn setup() -> (
    wsreactor::ServerHandle,
    mpsc::Receiver<(u16, String, Instant)>,
) {
    let (tx, rx) = mpsc::channel();
    let handler = Stream {
        closes: Arc::new(Mutex::new(tx)),
    };
    let config: Config = test_config()
        .with_idle_timeout(None)
        .with_write_timeout(Some(WRITE_TIMEOUT));
    (start(config, handler), rx)
}

/// A raw client with a small receive window, upgraded, that asks for a stream.
fn streaming(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    s.write_all(&[0x81, 0x86, 0, 0, 0, 0]).unwrap();
    s.write_all(b"stream").unwrap();
    s
}

#[test]
fn a_peer_that_stops_reading_is_dropped_and_on_close_says_why() {
    let (server, closes) = setup();
    let asked = Instant::now();
    let _never_reads = streaming(server.local_addr());
    let (code, reason, at) = closes
        .recv_timeout(Duration::from_secs(5))
        .expect("dropped by the write timeout");
    assert_eq!((code, reason.as_str()), (1008, "write timeout"));
    let after = at - asked;
    assert!(
        after >= WRITE_TIMEOUT && after < WRITE_TIMEOUT * 6,
        "{after:?}"
    );
    let stats = wait_for_stats(&server, Duration::from_secs(2), |s| s.open == 0);
    assert_eq!((stats.write_timeouts, stats.closed_with(1008)), (1, 1));
}

#[test]
fn a_reader_that_keeps_reading_is_not_dropped() {
    let (server, closes) = setup();
    let mut reader = streaming(server.local_addr());
    // Reads in bursts with pauses shorter than the write timeout, for three times
    // the timeout: its queue never empties (the server refills it at every
    // drain), but it keeps moving.
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    let start = Instant::now();
    while start.elapsed() < WRITE_TIMEOUT * 3 {
        let burst = Instant::now();
        while burst.elapsed() < Duration::from_millis(30) {
            let n = reader.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed on a reader that reads");
            total += n;
        }
        std::thread::sleep(WRITE_TIMEOUT / 4);
    }
    assert!(total > 1 << 20, "read {total} bytes");
    assert!(
        closes.try_recv().is_err(),
        "closed while the peer was reading"
    );
    assert_eq!(server.stats().write_timeouts, 0);
}
