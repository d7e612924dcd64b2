//! Helpers for tests against a real server on 127.0.0.1: start one on port 0 with
//! short timeouts, connect tungstenite clients or raw TCP clients.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex, mpsc};

use wsreactor::{Config, ConnId, Handler, Message, Server, ServerHandle, Socket};

/// How long a test waits for something that must happen before it calls it a hang.
/// A guard against hanging forever, never a measure: a busy machine may take many
/// times longer than an idle one, and a verdict must not depend on that.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A configuration for tests: one reactor, and handshake and close timeouts only a
/// hang reaches, since a busy machine can stall a client between its connect and
/// its request (or its close reply) for longer than any short timeout. A test of
/// those timeouts, or one that relies on them to end a connection, sets its own.
pub fn test_config() -> Config {
    Config::default()
        .with_reactors(1)
        .with_handshake_timeout(Some(PATIENCE))
        .with_close_timeout(PATIENCE)
}

/// Starts `handler` on 127.0.0.1:0.
pub fn start<H: Handler>(config: Config, handler: H) -> ServerHandle {
    Server::bind("127.0.0.1:0", config)
        .and_then(|s| s.spawn(handler))
        .expect("server starts")
}

pub type Client = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A tungstenite client connected to `addr` at `path`.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    let (ws, response) =
        tungstenite::connect(format!("ws://{addr}{path}")).expect("client connects");
    assert_eq!(response.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    ws
}

/// A raw TCP connection with a read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("tcp connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

pub const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A raw TCP connection that has completed the upgrade (the 101 is read).
pub fn raw_ws(addr: SocketAddr) -> TcpStream {
    let mut s = raw(addr);
    s.write_all(UPGRADE.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// Reads an HTTP response head (up to the blank line).
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads everything until the server closes the connection (or the timeout).
pub fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one unmasked server frame: (opcode byte, payload).
pub fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).ok()?;
    Some((h[0] & 0x0f, payload))
}

/// Reads frames until a close frame, returning its code (1005 for none), or `None`
/// if the connection ended without one.
pub fn read_close_code(s: &mut TcpStream) -> Option<u16> {
    while let Some((op, payload)) = read_frame(s) {
        if op == 0x8 {
            return Some(if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            });
        }
    }
    None
}

/// Waits until `f` holds, polling, or panics after `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads until the server closes the connection and returns the bytes that came
/// before the end. A reset counts as a close too; a read that times out panics,
/// since it means the server kept the connection open.
pub fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "the server kept the connection open (read timed out after {} bytes)",
                    all.len()
                )
            }
            Err(_) => return all, // reset by the server
        }
    }
}

/// Sends `text` on `ws` and asserts that the server echoes it back. A ping or pong
/// before the echo is passed over (tungstenite answers pings itself): a server's
/// idle ping may come whenever the machine was slow enough for it.
pub fn assert_echo(ws: &mut Client, text: &str) {
    ws.send(tungstenite::Message::text(text)).expect("send");
    let reply = loop {
        match ws.read().expect("read the echo") {
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => break other,
        }
    };
    assert_eq!(reply, tungstenite::Message::text(text), "echo of {text:?}");
}

/// Waits until the server's counters satisfy `f` and returns them; panics with the
/// last counters seen after `timeout`.
pub fn wait_for_stats(
    server: &ServerHandle,
    timeout: Duration,
    f: impl Fn(&wsreactor::Stats) -> bool,
) -> wsreactor::Stats {
    let start = Instant::now();
    loop {
        let stats = server.stats();
        if f(&stats) {
            return stats;
        }
        assert!(
            start.elapsed() < timeout,
            "counters not as expected within {timeout:?}: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Echoes every message as received.
#[derive(Clone)]
pub struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// Reports each connection's id as it opens.
#[derive(Clone)]
pub struct Register {
    ids: Arc<Mutex<mpsc::Sender<ConnId>>>,
}

impl Register {
    /// The handler, and the receiving end of the ids it reports.
    pub fn new() -> (Register, mpsc::Receiver<ConnId>) {
        let (tx, rx) = mpsc::channel();
        (
            Register {
                ids: Arc::new(Mutex::new(tx)),
            },
            rx,
        )
    }
}

impl Handler for Register {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        let _ = self.ids.lock().unwrap().send(ws.id());
    }
}

/// Shuts `server` down (closing connections within `grace`) and waits at most
/// `timeout` for its reactor threads: `None` if they did not end, so that a stuck
/// reactor fails a test rather than hanging it.
pub fn shutdown_within(
    server: ServerHandle,
    grace: Duration,
    timeout: Duration,
) -> Option<wsreactor::Result<()>> {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(server.shutdown(grace));
    });
    result.recv_timeout(timeout).ok()
}

/// A `wsreactor::client` connected to `addr` at `path`, with a 20 s read timeout.
pub fn ws_client(addr: SocketAddr, path: &str) -> wsreactor::client::Client {
    wsreactor::client::ClientBuilder::new(format!("ws://{addr}{path}"))
        .read_timeout(Some(Duration::from_secs(20)))
        .connect()
        .expect("client connects")
}

/// Waits until every reactor of `server` has ended the loop turn it was in when this
/// was called, so that whatever it was doing then (the turn that wrote a reply the
/// test has just read, with the buffers it held) is over. A reactor counts a turn
/// when its wait for events returns and publishes the count when the turn ends; an
/// idle one turns at least once a timer tick (at most 250 ms).
pub fn wait_for_turns(server: &ServerHandle) {
    let started = Instant::now();
    let before: Vec<u64> = server
        .reactor_stats()
        .iter()
        .map(|s| s.loop_turns)
        .collect();
    while !server
        .reactor_stats()
        .iter()
        .zip(&before)
        .all(|(now, &then)| now.loop_turns > then)
    {
        assert!(started.elapsed() < PATIENCE, "a reactor stopped turning");
        std::thread::sleep(Duration::from_millis(1));
    }
}
