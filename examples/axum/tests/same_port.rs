//! The axum example end to end, on one port: REST routes, WebSockets handed over to
//! wsreactor after hyper's upgrade (messages published between them and from a
//! REST route), a refusal from axum and one from the engine, and an upgrade on a
//! connection that served a REST request first, with a frame right behind it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tungstenite::Message;

/// A guard against a hang, never a measure.
const PATIENCE: Duration = Duration::from_secs(60);

struct Service {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_axum-service"))
        .args(["--addr", "127.0.0.1:0", "--threads", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    Service { child, addr }
}

/// One HTTP/1.1 request on `stream` (kept alive); the status and body.
fn request(stream: &mut TcpStream, method: &str, path: &str, body: &str) -> (u16, String) {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let head = read_head(stream);
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the head ends early");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn connect(
    addr: SocketAddr,
    query: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>> {
    let (mut ws, response) =
        tungstenite::connect(format!("ws://{addr}/ws?{query}")).expect("the upgrade");
    assert_eq!(response.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    assert_eq!(
        ws.read().unwrap(),
        Message::text(format!("joined {}", room_of(query)))
    );
    ws
}

fn room_of(query: &str) -> &str {
    query
        .split('&')
        .find_map(|p| p.strip_prefix("room="))
        .unwrap_or("lobby")
}

fn http(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

#[test]
fn rest_and_websockets_share_one_port() {
    let service = start();
    let addr = service.addr;
    let mut alice = connect(addr, "room=r1&token=demo");
    let mut bob = connect(addr, "room=r1&token=demo");
    let mut carol = connect(addr, "room=r2&token=demo");
    // What a WebSocket sends reaches the others in its room, through the engine.
    alice.send(Message::text("hello r1")).unwrap();
    assert_eq!(bob.read().unwrap(), Message::text("hello r1"));
    // A REST route publishes into a room; the room's subscribers are counted.
    let mut rest = http(addr);
    let (status, body) = request(&mut rest, "POST", "/api/rooms/r2", "from REST");
    assert_eq!((status, body.as_str()), (200, "{\"forwarded\":1}"));
    assert_eq!(carol.read().unwrap(), Message::text("from REST"));
    // The engine's counters, which its reactors publish at the end of a loop turn.
    let started = std::time::Instant::now();
    loop {
        let (status, body) = request(&mut rest, "GET", "/api/health", "");
        assert_eq!(status, 200);
        if body.starts_with("{\"open\":3,\"handoffs\":3,") {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "{body}");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The other way round, and alice got nothing of her own message.
    bob.send(Message::text("to alice")).unwrap();
    assert_eq!(alice.read().unwrap(), Message::text("to alice"));
}

#[test]
fn refusals_come_from_axum_or_the_engine() {
    let service = start();
    let addr = service.addr;
    // No token: axum refuses before the engine sees anything.
    match tungstenite::connect(format!("ws://{addr}/ws?room=r1")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("{:?}", other.map(|(_, r)| r.status())),
    }
    // The engine's on_upgrade refuses the room: its body reaches the client.
    let long = "x".repeat(65);
    match tungstenite::connect(format!("ws://{addr}/ws?token=demo&room={long}")) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            assert_eq!(response.body().as_deref(), Some(&b"bad room\n"[..]));
        }
        other => panic!("{:?}", other.map(|(_, r)| r.status())),
    }
    // A plain GET of the WebSocket route.
    let (status, _) = request(&mut http(addr), "GET", "/ws?token=demo", "");
    assert_eq!(status, 426);
}

#[test]
fn a_connection_that_served_rest_first_upgrades_with_a_frame_behind_its_request() {
    let service = start();
    let addr = service.addr;
    let mut watcher = connect(addr, "room=r3&token=demo");
    let mut stream = http(addr);
    let (status, _) = request(&mut stream, "GET", "/api/health", "");
    assert_eq!(status, 200);
    // The upgrade on the same (kept-alive) connection, a text frame right behind
    // it: hyper reads it with the request and hands it over in its read buffer.
    let key = [1u8, 2, 3, 4];
    let text = b"behind the request";
    let mut bytes = b"GET /ws?room=r3&token=demo HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend_from_slice(&[0x81, 0x80 | text.len() as u8]);
    bytes.extend_from_slice(&key);
    bytes.extend(text.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    stream.write_all(&bytes).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=\r\n"),
        "{head}"
    );
    assert_eq!(watcher.read().unwrap(), Message::text("behind the request"));
    // And the connection stays a WebSocket: its "joined" greeting came first.
    let mut frame = [0u8; 2];
    stream.read_exact(&mut frame).unwrap();
    assert_eq!(frame, [0x81, 9]);
    let mut greeting = [0u8; 9];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"joined r3");
}
