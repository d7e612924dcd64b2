//! wss:// served by the reactors (feature `tls`): echo through wsreactor's client
//! and through tungstenite over rustls (the oracle), large messages across many
//! records, fragments, pings, the close handshake followed by close_notify, a
//! peer's close_notify or bare TCP close (1006), the handshake timeout over the
//! TLS handshake, backpressure, and ws:// and wss:// on one server.
#![cfg(feature = "tls")]

#[path = "util/echo_round.rs"]
mod echo_round;
#[path = "util/tls.rs"]
mod tls;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use tls::{PATIENCE, certs, frame, read_frame, read_to_end, start_tls, tls_ws, try_tls_raw};
use wsreactor::client::{ClientBuilder, Incoming};
use wsreactor::proto::CloseFrame;
use wsreactor::{CloseCode, Config, ConnId, Handler, Message, SendStatus, Server, Socket};

/// One reactor, and handshake and close timeouts that only a hang reaches: a test
/// about one of them sets its own.
fn config() -> Config {
    Config::default()
        .with_reactors(1)
        .with_handshake_timeout(Some(PATIENCE))
        .with_close_timeout(PATIENCE)
}

/// Echoes messages; reports each close code; answers "flood" by sending until the
/// backpressure limit refuses, reporting the most it saw buffered.
#[derive(Clone)]
struct Probe {
    closes: Arc<Mutex<mpsc::Sender<u16>>>,
    buffered: Arc<Mutex<mpsc::Sender<(usize, SendStatus)>>>,
}

impl Probe {
    fn new() -> (
        Probe,
        mpsc::Receiver<u16>,
        mpsc::Receiver<(usize, SendStatus)>,
    ) {
        let (closes, closed) = mpsc::channel();
        let (buffered, most) = mpsc::channel();
        let probe = Probe {
            closes: Arc::new(Mutex::new(closes)),
            buffered: Arc::new(Mutex::new(buffered)),
        };
        (probe, closed, most)
    }
}

impl Handler for Probe {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        if message == Message::Text("flood") {
            let chunk = vec![7u8; 60 * 1024];
            let mut most = 0;
            let mut status = SendStatus::Sent;
            for _ in 0..1000 {
                status = ws.send(Message::Binary(&chunk));
                most = most.max(ws.buffered_amount());
                if status == SendStatus::Dropped {
                    break;
                }
            }
            let _ = self.buffered.lock().unwrap().send((most, status));
            return;
        }
        let _ = ws.send(message);
    }

    fn on_close(&mut self, _: ConnId, _: (), code: CloseCode, _: &str) {
        let _ = self.closes.lock().unwrap().send(code.0);
    }
}

/// Whether the counters come to satisfy `f` (they are published at the end of a
/// loop turn, after the peer may have seen its answer), waiting up to [`PATIENCE`].
fn counted(server: &wsreactor::ServerHandle, f: impl Fn(&wsreactor::Stats) -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while !f(&server.stats()) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn wss_echoes_large_messages_text_pings_and_the_close_handshake() {
    let certs = certs();
    let (probe, closed, _) = Probe::new();
    let server = start_tls(config(), &certs, probe);
    let mut client = ClientBuilder::new(format!("wss://localhost:{}/", server.local_addr().port()))
        .root_certificates(certs.roots.clone())
        .read_timeout(Some(PATIENCE))
        .connect()
        .expect("connects over TLS");
    // Past a 16 KiB record, the scratch buffer (64 KiB), a 64 KiB encryption chunk.
    echo_round::sizes_text_and_ping(&mut client, &[0, 125, 16_384, 70_000, 1 << 20, 4 << 20]);
    client.close(CloseCode(4321), "done").unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Close(Some(CloseFrame {
            code: CloseCode(4321),
            reason: ""
        }))
    );
    assert_eq!(closed.recv_timeout(PATIENCE), Ok(4321));
    assert!(counted(&server, |s| s.accepted == 1));
}

#[test]
fn tungstenite_over_rustls_agrees() {
    let certs = certs();
    let (probe, _, _) = Probe::new();
    let server = start_tls(config(), &certs, probe);
    let tcp = TcpStream::connect(server.local_addr()).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = StreamOwned::new(
        ClientConnection::new(certs.client_config(), name).unwrap(),
        tcp,
    );
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let (mut ws, response) = tungstenite::client(url, tls).expect("tungstenite upgrades");
    assert_eq!(response.status(), 101);
    for size in [1, 200, 65_536, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
        ws.send(tungstenite::Message::binary(payload.clone()))
            .unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::binary(payload));
    }
    ws.send(tungstenite::Message::text("oracle")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("oracle"));
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(_)) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            other => panic!("expected the end of the close handshake, got {other:?}"),
        }
    }
}

#[test]
fn fragments_with_a_ping_between_them_are_one_message() {
    let certs = certs();
    let (probe, _, _) = Probe::new();
    let server = start_tls(config(), &certs, probe);
    let mut s = tls_ws(server.local_addr(), &certs.client_config());
    let big = vec![b'z'; 40_000];
    let mut bytes = frame(0x1, false, b"hel");
    bytes.extend(frame(0x9, true, b"between"));
    bytes.extend(frame(0x0, false, b"lo "));
    bytes.extend(frame(0x0, true, &big));
    // One write: the fragments share records, and one spans several.
    s.write_all(&bytes).unwrap();
    s.flush().unwrap();
    assert_eq!(read_frame(&mut s), Some((0x8a, b"between".to_vec())));
    let (opcode, payload) = read_frame(&mut s).unwrap();
    assert_eq!(opcode, 0x81);
    assert_eq!(&payload[..6], b"hello ");
    assert_eq!(payload.len(), 6 + big.len());
}

/// After the WebSocket close the server sends close_notify, then its FIN: the peer
/// sees a clean TLS end (not a truncation).
#[test]
fn close_notify_follows_the_websocket_close() {
    let certs = certs();
    let (probe, closed, _) = Probe::new();
    let server = start_tls(config(), &certs, probe);
    let mut s = tls_ws(server.local_addr(), &certs.client_config());
    s.write_all(&frame(0x8, true, &1000u16.to_be_bytes()))
        .unwrap();
    s.flush().unwrap();
    let (opcode, payload) = read_frame(&mut s).unwrap();
    assert_eq!((opcode, &payload[..2]), (0x88, &1000u16.to_be_bytes()[..]));
    let rest = read_to_end(&mut s).expect("a clean end: close_notify before the FIN");
    assert!(rest.is_empty());
    assert_eq!(closed.recv_timeout(PATIENCE), Ok(1000));
}

/// A close the server starts (here, the backpressure policy's) ends with
/// close_notify too.
#[test]
fn a_close_the_server_starts_ends_with_close_notify() {
    let certs = certs();
    let (probe, closed, _) = Probe::new();
    let config = config().with_backpressure(64 * 1024, wsreactor::BackpressurePolicy::Close);
    let server = start_tls(config, &certs, probe);
    let mut s = tls_ws(server.local_addr(), &certs.client_config());
    s.write_all(&frame(0x1, true, b"flood")).unwrap();
    s.flush().unwrap();
    // Read everything: the data frames, then the close frame 1008.
    let mut last = None;
    while let Some((opcode, payload)) = read_frame(&mut s) {
        if opcode == 0x88 {
            last = Some(u16::from_be_bytes([payload[0], payload[1]]));
            break;
        }
    }
    assert_eq!(last, Some(1008));
    s.write_all(&frame(0x8, true, &1008u16.to_be_bytes()))
        .unwrap();
    s.flush().unwrap();
    assert!(read_to_end(&mut s).is_ok(), "close_notify before the FIN");
    assert_eq!(closed.recv_timeout(PATIENCE), Ok(1008));
}

/// A peer's close_notify without a WebSocket close, and a TCP close without either,
/// both end the connection as abnormal (1006); others are served meanwhile.
#[test]
fn a_peer_close_notify_or_a_bare_tcp_close_is_1006() {
    let certs = certs();
    let (probe, closed, _) = Probe::new();
    let server = start_tls(config(), &certs, probe);
    let client_config = certs.client_config();
    let mut notify = tls_ws(server.local_addr(), &client_config);
    notify.conn.send_close_notify();
    notify.flush().unwrap();
    assert_eq!(closed.recv_timeout(PATIENCE), Ok(1006));
    let bare = tls_ws(server.local_addr(), &client_config);
    drop(bare);
    assert_eq!(closed.recv_timeout(PATIENCE), Ok(1006));
    let mut other = tls_ws(server.local_addr(), &client_config);
    other.write_all(&frame(0x2, true, b"still here")).unwrap();
    other.flush().unwrap();
    assert_eq!(read_frame(&mut other), Some((0x82, b"still here".to_vec())));
}

/// The handshake timeout runs from accept to the upgrade: through a TLS handshake
/// never started, and one done with no upgrade request after it. Each connection is
/// closed, and not before the timeout has passed since its connect (less the timer
/// wheel's tick, the shortest timeout over 8: its granularity).
#[test]
fn the_handshake_timeout_covers_the_tls_handshake_and_the_upgrade() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    const EARLIEST: Duration = Duration::from_millis(500 - 500 / 8);
    let certs = certs();
    let (probe, _, _) = Probe::new();
    let server = start_tls(
        config().with_handshake_timeout(Some(TIMEOUT)),
        &certs,
        probe,
    );
    let started = Instant::now();
    let mut silent = TcpStream::connect(server.local_addr()).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut byte = [0u8; 1];
    // The end of the stream or a reset; the read timeout would mean it was kept.
    let ended = silent.read(&mut byte);
    let kept = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    assert!(
        matches!(&ended, Ok(0)) || matches!(&ended, Err(e) if !kept(e)),
        "the server kept a silent connection open: {ended:?}"
    );
    let waited = started.elapsed();
    assert!(waited >= EARLIEST, "the silent one closed after {waited:?}");

    // The TLS handshake must be over before the timeout for this one to wait in the
    // upgrade: a machine busy enough to take longer gets it dropped in the TLS
    // handshake (as above), rightly, and it tries again.
    let mut dropped_in_tls = 0;
    let (mut tls_only, started) = loop {
        let started = Instant::now();
        match try_tls_raw(server.local_addr(), &certs.client_config()) {
            Ok(s) => break (s, started),
            Err(e) => {
                let took = started.elapsed();
                assert!(
                    took >= EARLIEST && dropped_in_tls < 10,
                    "the TLS handshake failed after {took:?}: {e}"
                );
                dropped_in_tls += 1;
            }
        }
    };
    let ended = read_to_end(&mut tls_only);
    assert!(
        matches!(&ended, Err(e) if e.kind() == ErrorKind::UnexpectedEof)
            || matches!(&ended, Ok(b) if b.is_empty()),
        "{ended:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= EARLIEST,
        "the upgrade-less one closed after {waited:?}"
    );
    assert!(counted(&server, |s| s.rejected == 2 + dropped_in_tls));
}

/// Sends the peer does not read are bounded by the backpressure limit, whatever
/// TLS holds: under the `Drop` policy (the lossless default would queue what the
/// handler sends), the queue stops at the limit and the sends are refused past it,
/// each one counted.
#[test]
fn backpressure_bounds_what_waits_for_a_wss_peer() {
    let certs = certs();
    let (probe, _, most) = Probe::new();
    let limit = 256 * 1024;
    let config = config().with_backpressure(limit, wsreactor::BackpressurePolicy::Drop);
    let server = start_tls(config, &certs, probe);
    let mut s = tls_ws(server.local_addr(), &certs.client_config());
    s.write_all(&frame(0x1, true, b"flood")).unwrap();
    s.flush().unwrap();
    let (buffered, status) = most.recv_timeout(PATIENCE).unwrap();
    assert_eq!(status, SendStatus::Dropped);
    assert!(buffered <= limit, "{buffered} bytes buffered");
    // The flood stops at its first refused send: one message dropped.
    assert!(counted(&server, |s| s.dropped == 1));
    // The peer reads it all and is still served.
    let mut got = 0;
    while got < buffered {
        let (opcode, payload) = read_frame(&mut s).unwrap();
        assert_eq!(opcode, 0x82);
        got += payload.len();
    }
    s.write_all(&frame(0x1, true, b"after")).unwrap();
    s.flush().unwrap();
    loop {
        let (opcode, payload) = read_frame(&mut s).unwrap();
        if opcode == 0x81 {
            assert_eq!(payload, b"after");
            break;
        }
    }
}

/// One server, one handler, the same reactors: ws:// on one port and wss:// on
/// another; a publish from a ws:// client reaches a wss:// subscriber.
#[test]
fn ws_and_wss_listeners_share_the_reactors_and_the_handler() {
    #[derive(Clone)]
    struct Chat;
    impl Handler for Chat {
        type Session = ();
        fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
            ws.subscribe("room").unwrap();
        }
        fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
            ws.publish("room", message);
        }
    }
    let certs = certs();
    let server = Server::builder()
        .config(config().with_reactors(2))
        .tls_listener("127.0.0.1:0".parse().unwrap(), certs.server_config())
        .bind("127.0.0.1:0")
        .and_then(|s| s.spawn(Chat))
        .unwrap();
    let tls_addr = server.tls_addr().expect("a wss listener");
    assert_ne!(tls_addr, server.local_addr());
    let mut secure = ClientBuilder::new(format!("wss://localhost:{}/", tls_addr.port()))
        .root_certificates(certs.roots.clone())
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    let mut plain = ClientBuilder::new(format!("ws://{}/", server.local_addr()))
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while server.subscribers("room") < 2 {
        assert!(
            Instant::now() < deadline,
            "the subscriptions did not arrive"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    plain.send(Message::Text("from ws")).unwrap();
    assert_eq!(
        secure.recv().unwrap(),
        Incoming::Message(Message::Text("from ws"))
    );
    // A publish reaches the other subscribers, not its publisher.
    secure.send(Message::Text("from wss")).unwrap();
    assert_eq!(
        plain.recv().unwrap(),
        Incoming::Message(Message::Text("from wss"))
    );
    // A TLS client at the plain port, and a plain one at the TLS port, fail.
    assert!(
        ClientBuilder::new(format!("wss://localhost:{}/", server.local_addr().port()))
            .root_certificates(certs.roots.clone())
            .connect()
            .is_err()
    );
    assert!(
        ClientBuilder::new(format!("ws://{tls_addr}/"))
            .connect()
            .is_err()
    );
}

#[test]
fn a_server_config_loads_from_pem_files() {
    let certs = certs();
    let dir = std::env::temp_dir();
    let cert = dir.join(format!("wsreactor-{}-cert.pem", std::process::id()));
    let key = dir.join(format!("wsreactor-{}-key.pem", std::process::id()));
    std::fs::write(&cert, &certs.cert_pem).unwrap();
    std::fs::write(&key, &certs.key_pem).unwrap();
    let loaded = wsreactor::tls::load_server_config(&cert, &key);
    let swapped = wsreactor::tls::load_server_config(&key, &cert);
    let missing = wsreactor::tls::load_server_config(dir.join("nonexistent.pem"), &key);
    let _ = std::fs::remove_file(&cert);
    let _ = std::fs::remove_file(&key);
    let loaded = loaded.expect("loads");
    assert!(swapped.is_err() && missing.is_err());
    let (probe, _, _) = Probe::new();
    let server = Server::builder()
        .config(config())
        .tls(loaded)
        .bind("127.0.0.1:0")
        .and_then(|s| s.spawn(probe))
        .unwrap();
    assert_eq!(server.tls_addr(), Some(server.local_addr()));
    let mut client = ClientBuilder::new(format!("wss://localhost:{}/", server.local_addr().port()))
        .root_certificates(certs.roots.clone())
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    client.send(Message::Text("pem")).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("pem"))
    );
}

/// A peer's key update asks for ours: the server's records after it are under its
/// new keys, and its key update must reach the peer before them.
#[test]
fn key_updates_both_ways_keep_the_echo_going() {
    let certs = certs();
    let (probe, _, _) = Probe::new();
    let server = start_tls(config(), &certs, probe);
    let mut s = tls_ws(server.local_addr(), &certs.client_config());
    for round in 0..5u8 {
        s.conn.refresh_traffic_keys().unwrap();
        let payload = vec![round; 100 + 7000 * round as usize];
        s.write_all(&frame(0x2, true, &payload)).unwrap();
        s.flush().unwrap();
        assert_eq!(read_frame(&mut s), Some((0x82, payload)), "round {round}");
    }
}

/// A client that sends its upgrade request and a large message behind its last
/// handshake message, without waiting: a read may take the client's Finished and
/// application data together, and all of it is served.
#[test]
fn a_large_message_right_behind_the_handshake_is_served() {
    let certs = certs();
    let (probe, _, _) = Probe::new();
    let server = start_tls(config(), &certs, probe);
    let tcp = TcpStream::connect(server.local_addr()).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(certs.client_config(), name).unwrap();
    conn.set_buffer_limit(None);
    // Written before the handshake: rustls sends it right behind its Finished.
    let payload = vec![9u8; 200_000];
    let mut early = tls::UPGRADE.as_bytes().to_vec();
    early.extend(frame(0x2, true, &payload));
    conn.writer().write_all(&early).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    s.flush().unwrap();
    let head = tls::read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(read_frame(&mut s), Some((0x82, payload)));
}
