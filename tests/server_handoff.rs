//! Connections another server accepted (`Sender::upgrade`, `Accepted::attach`): a
//! plain std server here reads the request, writes the 101 the engine composed and
//! hands over the socket, as hyper does in examples/axum. The handed-over
//! connection is served like the engine's own: the handler, frames sent right
//! behind the request, permessage-deflate, pub/sub. Misuse gets clear errors and
//! leaks no session.

#[path = "util/deflate_client.rs"]
mod deflate_client;
#[path = "util/server.rs"]
mod server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use deflate_client::{DeflateClient, Got};
use server::{PATIENCE, UPGRADE, raw, read_frame, read_head, start, test_config, wait_until};
use wsreactor::proto::frame::OpCode;
use wsreactor::server::Accepted;
use wsreactor::{
    Compression, Handler, HandoffAnswer, HandoffError, HandoffRequest, HttpResponse, Message,
    Request, Sender, Socket, Upgrade,
};

/// Counts the sessions dropped.
#[derive(Default)]
struct Tracked(Option<Arc<AtomicUsize>>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(dropped) = &self.0 {
            dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Echoes; refuses `/private` with a body, answers `/later` later (which a
/// hand-off cannot wait for), publishes `/room` messages to the room.
#[derive(Clone)]
struct Service {
    dropped: Arc<AtomicUsize>,
}

impl Handler for Service {
    type Session = Tracked;

    fn on_upgrade(&mut self, request: &Request) -> Upgrade<Tracked> {
        match request.path() {
            "/private" => {
                Upgrade::reject_with(HttpResponse::new(403, "text/plain", "members only\n"))
            }
            "/later" => Upgrade::later(),
            _ => Upgrade::accept(Tracked(Some(self.dropped.clone())))
                .with_header("X-Served-By", "wsreactor"),
        }
    }

    fn on_open(&mut self, ws: &mut Socket<'_, Tracked>) {
        let _ = ws.subscribe("room");
    }

    fn on_message(&mut self, ws: &mut Socket<'_, Tracked>, message: Message<'_>) {
        if message.as_bytes().starts_with(b"to room: ") {
            ws.publish("room", message);
        } else {
            let _ = ws.send(message);
        }
    }
}

/// Reads a request head with httparse, as another server would.
fn read_request(stream: &mut TcpStream) -> (HandoffRequest, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).expect("the request");
        assert!(n > 0, "the client hung up before its request");
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(len) = parsed.parse(&buf).expect("valid HTTP") {
            let mut request = HandoffRequest::new(parsed.method.unwrap(), parsed.path.unwrap());
            for header in parsed.headers.iter() {
                request.push_header(header.name, header.value);
            }
            let peer = stream.peer_addr().unwrap();
            return (request.with_peer_addr(peer), buf[len..].to_vec());
        }
    }
}

/// Writes the 101 the engine composed.
fn write_101(stream: &mut TcpStream, accepted: &Accepted) {
    let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in accepted.headers() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
}

/// The other server: accepts `n` connections and hands each over (or sends the
/// engine's refusal).
fn front(sender: Sender, n: usize) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut stream, _) = listener.accept().unwrap();
            let (request, rest) = read_request(&mut stream);
            match sender.upgrade(request).wait() {
                Ok(HandoffAnswer::Accept(accepted)) => {
                    write_101(&mut stream, &accepted);
                    accepted.attach(stream, &rest).expect("attached");
                }
                Ok(HandoffAnswer::Reject(response)) => {
                    let head = format!(
                        "HTTP/1.1 {} Refused\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        response.status,
                        response.body.len()
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    stream.write_all(&response.body).unwrap();
                }
                Err(e) => panic!("hand-off failed: {e}"),
            }
        }
    });
    (addr, thread)
}

fn service() -> (Service, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    (
        Service {
            dropped: dropped.clone(),
        },
        dropped,
    )
}

fn masked_text(text: &str) -> Vec<u8> {
    let key = [9, 8, 7, 6];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

#[test]
fn a_handed_over_connection_is_served_with_what_came_behind_its_request() {
    let (handler, _) = service();
    let engine = start(test_config(), handler);
    let (addr, front) = front(engine.sender(), 2);
    let mut client = raw(addr);
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = UPGRADE.as_bytes().to_vec();
    request.extend(masked_text("right behind"));
    client.write_all(&request).unwrap();
    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(head.contains("X-Served-By: wsreactor\r\n"), "{head}");
    assert_eq!(
        read_frame(&mut client),
        Some((OpCode::Text as u8, b"right behind".to_vec()))
    );
    // A second, with tungstenite: pub/sub reaches the first across the hand-off.
    let (mut second, response) =
        tungstenite::connect(format!("ws://{addr}/")).expect("tungstenite connects");
    assert_eq!(response.status(), 101);
    server::wait_for_stats(&engine, PATIENCE, |s| s.handoffs == 2);
    second
        .send(tungstenite::Message::text("to room: hello"))
        .unwrap();
    assert_eq!(
        read_frame(&mut client),
        Some((OpCode::Text as u8, b"to room: hello".to_vec()))
    );
    front.join().unwrap();
    assert_eq!(engine.stats().open, 2);
}

#[test]
fn permessage_deflate_is_negotiated_on_a_handed_over_connection() {
    let (handler, _) = service();
    let config = test_config().with_compression(Compression::dedicated());
    let engine = start(config, handler);
    let (addr, front) = front(engine.sender(), 1);
    let mut client = DeflateClient::connect(addr, Some("permessage-deflate"));
    assert!(client.deflate.is_some(), "{:?}", client.extensions);
    let text = "a reading, a reading, a reading, a reading, a reading".repeat(4);
    client.send(Message::Text(&text), true);
    assert_eq!(client.recv(), Got::Message(text.into_bytes(), true, true));
    front.join().unwrap();
}

#[test]
fn refusals_and_misuse_are_answered_plainly_and_leak_no_session() {
    let (handler, dropped) = service();
    let engine = start(test_config(), handler);
    let sender = engine.sender();
    let upgrade = |target: &str| {
        UPGRADE
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .fold(HandoffRequest::new("GET", target), |r, (n, v)| {
                r.header(n, v)
            })
    };
    // The handler's refusal, whole.
    match sender.upgrade(upgrade("/private")).wait() {
        Ok(HandoffAnswer::Reject(response)) => {
            assert_eq!(response.status, 403);
            assert_eq!(&response.body[..], b"members only\n");
        }
        other => panic!("{other:?}"),
    }
    // "Later" cannot be waited for on a hand-off.
    match sender.upgrade(upgrade("/later")).wait() {
        Ok(HandoffAnswer::Reject(response)) => assert_eq!(response.status, 500),
        other => panic!("{other:?}"),
    }
    // Not an upgrade: the other server serves it itself.
    let plain = HandoffRequest::new("GET", "/").header("Host", "h");
    assert!(matches!(
        sender.upgrade(plain).wait(),
        Err(HandoffError::NotUpgrade)
    ));
    // A bad upgrade gets the engine's refusal; an injected header never reaches it.
    let bad_key = upgrade("/").header("Sec-WebSocket-Key", "again");
    match sender.upgrade(bad_key).wait() {
        Ok(HandoffAnswer::Reject(response)) => assert_eq!(response.status, 400),
        other => panic!("{other:?}"),
    }
    let injected = upgrade("/").header("X-Note", "a\r\nX-Admin: yes");
    assert!(!injected.is_well_formed());
    match sender.upgrade(injected).wait() {
        Ok(HandoffAnswer::Reject(response)) => assert_eq!(response.status, 400),
        other => panic!("{other:?}"),
    }
    // A stream that is not a connected socket.
    let accepted = match sender.upgrade(upgrade("/")).wait() {
        Ok(HandoffAnswer::Accept(accepted)) => accepted,
        other => panic!("{other:?}"),
    };
    let unconnected: TcpStream =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .unwrap()
            .into();
    assert!(matches!(
        accepted.attach(unconnected, b""),
        Err(HandoffError::Socket(_))
    ));
    // An accepted upgrade dropped without its socket.
    let accepted = sender.upgrade(upgrade("/")).wait();
    assert!(matches!(accepted, Ok(HandoffAnswer::Accept(_))));
    drop(accepted);
    // Both sessions are dropped on the reactor; nothing opened.
    wait_until(PATIENCE, || dropped.load(Ordering::SeqCst) == 2);
    assert_eq!(engine.stats().handoffs, 0);
    // A stopped server.
    engine.shutdown(PATIENCE).unwrap();
    assert!(matches!(
        sender.upgrade(upgrade("/")).wait(),
        Err(HandoffError::Stopped)
    ));
}

#[test]
fn an_upgrade_not_attached_within_the_handshake_timeout_is_forgotten() {
    let (handler, dropped) = service();
    let timeout = Duration::from_millis(200);
    let engine = start(test_config().with_handshake_timeout(Some(timeout)), handler);
    let (other, _) = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        (listener.accept().unwrap().0, client)
    };
    let request = UPGRADE
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .fold(HandoffRequest::new("GET", "/"), |r, (n, v)| r.header(n, v));
    let asked = Instant::now();
    let accepted = match engine.upgrade(request).wait() {
        Ok(HandoffAnswer::Accept(accepted)) => accepted,
        other => panic!("{other:?}"),
    };
    // Past the deadline (whatever the machine's speed, it is a deadline that passes).
    while asked.elapsed() <= timeout {
        std::thread::sleep(timeout);
    }
    assert!(matches!(
        accepted.attach(other, b""),
        Err(HandoffError::Expired)
    ));
    wait_until(PATIENCE, || dropped.load(Ordering::SeqCst) == 1);
    assert_eq!(engine.stats().open, 0);
}
