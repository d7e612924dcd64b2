//! Upgrades answered later (`Upgrade::later`, `Sender::answer_upgrade`): from
//! another thread, as an acceptance or a whole refusal; 10,000 waiting at once in
//! bounded memory; one never answered, closed by the handshake timeout; an answer
//! for a connection that has gone.

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/server.rs"]
mod server;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use server::{
    PATIENCE, UPGRADE, raw, read_frame, read_head, read_until_closed, start, test_config,
    wait_for_stats, wait_until,
};
use wsreactor::proto::frame::OpCode;
use wsreactor::{
    ConnId, Handler, HttpResponse, Message, QueueStatus, Request, Sender, Socket, Upgrade,
};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

/// Counts what happened to the sessions the test hands out.
#[derive(Default)]
struct Counts {
    opened: AtomicUsize,
    closed: AtomicUsize,
    dropped: AtomicUsize,
}

/// A session that counts its own drop.
#[derive(Default)]
struct Tracked(Option<Arc<Counts>>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(counts) = &self.0 {
            counts.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Defers every upgrade to the test, which answers through a `Sender`.
#[derive(Clone)]
struct Gate {
    asked: mpsc::Sender<ConnId>,
    counts: Arc<Counts>,
}

impl Handler for Gate {
    type Session = Tracked;

    fn on_upgrade(&mut self, request: &Request) -> Upgrade<Tracked> {
        let Some(id) = request.id() else {
            return Upgrade::reject(500);
        };
        match self.asked.send(id) {
            Ok(()) => Upgrade::later(),
            Err(_) => Upgrade::reject(503),
        }
    }

    fn on_open(&mut self, _ws: &mut Socket<'_, Tracked>) {
        self.counts.opened.fetch_add(1, Ordering::SeqCst);
    }

    fn on_message(&mut self, ws: &mut Socket<'_, Tracked>, message: Message<'_>) {
        let _ = ws.send(message);
    }

    fn on_close(&mut self, _id: ConnId, _s: Tracked, _c: wsreactor::CloseCode, _r: &str) {
        self.counts.closed.fetch_add(1, Ordering::SeqCst);
    }
}

fn gate(
    config: wsreactor::Config,
) -> (wsreactor::ServerHandle, mpsc::Receiver<ConnId>, Arc<Counts>) {
    let (asked, requests) = mpsc::channel();
    let counts = Arc::new(Counts::default());
    let server = start(
        config,
        Gate {
            asked,
            counts: counts.clone(),
        },
    );
    (server, requests, counts)
}

fn masked_text(text: &str) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

fn accept(counts: &Arc<Counts>) -> Upgrade<Tracked> {
    Upgrade::accept(Tracked(Some(counts.clone())))
}

#[test]
fn an_upgrade_answered_later_by_another_thread_opens_and_serves_what_came_behind_it() {
    let (server, requests, counts) = gate(test_config());
    let sender = server.sender();
    let answering = std::thread::spawn({
        let counts = counts.clone();
        move || {
            let id = requests
                .recv_timeout(PATIENCE)
                .expect("the upgrade is asked");
            // The auth service takes its time.
            std::thread::sleep(Duration::from_millis(50));
            let answer = accept(&counts).with_header("X-Checked", "later");
            assert_eq!(sender.answer_upgrade(id, answer), QueueStatus::Queued);
        }
    });
    let mut client = raw(server.local_addr());
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // A frame right behind the request: held with it until the answer.
    let mut request = UPGRADE.as_bytes().to_vec();
    request.extend(masked_text("behind the request"));
    client.write_all(&request).unwrap();
    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("X-Checked: later\r\n"), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_eq!(
        read_frame(&mut client),
        Some((OpCode::Text as u8, b"behind the request".to_vec()))
    );
    client.write_all(&masked_text("and after it")).unwrap();
    assert_eq!(
        read_frame(&mut client),
        Some((OpCode::Text as u8, b"and after it".to_vec()))
    );
    answering.join().unwrap();
    let stats = server.stats();
    assert_eq!(stats.deferred_upgrades, 1, "{stats:?}");
    assert_eq!(counts.opened.load(Ordering::SeqCst), 1);
}

#[test]
fn a_refusal_given_later_reaches_the_peer_whole() {
    let (server, requests, _counts) = gate(test_config());
    let mut client = raw(server.local_addr());
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(UPGRADE.as_bytes()).unwrap();
    let id = requests.recv_timeout(PATIENCE).unwrap();
    let refusal = HttpResponse::new(403, "text/plain", "invalid token for sensor 7\n");
    let answer: Upgrade<Tracked> = Upgrade::reject_with(refusal);
    assert_eq!(
        server.sender().answer_upgrade(id, answer),
        QueueStatus::Queued
    );
    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert_eq!(
        read_until_closed(&mut client),
        b"invalid token for sensor 7\n"
    );
}

#[test]
fn an_answer_of_another_session_type_is_refused_with_500() {
    let (server, requests, counts) = gate(test_config());
    let mut client = raw(server.local_addr());
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(UPGRADE.as_bytes()).unwrap();
    let id = requests.recv_timeout(PATIENCE).unwrap();
    // The handler's session is `Tracked`, not a number.
    let _ = server.sender().answer_upgrade(id, Upgrade::accept(7u64));
    let head = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 500"), "{head}");
    assert_eq!(counts.opened.load(Ordering::SeqCst), 0);
}

#[test]
fn an_upgrade_never_answered_is_closed_by_the_handshake_timeout() {
    let config = test_config().with_handshake_timeout(Some(Duration::from_millis(300)));
    let (server, requests, counts) = gate(config);
    let mut client = raw(server.local_addr());
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(UPGRADE.as_bytes()).unwrap();
    let id = requests.recv_timeout(PATIENCE).unwrap();
    // Nothing is answered: the timeout closes the connection without a response.
    assert!(read_until_closed(&mut client).is_empty());
    wait_for_stats(&server, PATIENCE, |s| s.open == 0 && s.rejected == 1);
    // An answer after the timeout reaches nobody; its session is dropped.
    let _ = server.sender().answer_upgrade(id, accept(&counts));
    wait_until(PATIENCE, || counts.dropped.load(Ordering::SeqCst) == 1);
    assert_eq!(counts.opened.load(Ordering::SeqCst), 0);
    assert_eq!(counts.closed.load(Ordering::SeqCst), 0);
}

#[test]
fn an_answer_for_a_connection_that_has_gone_reaches_nobody() {
    let (server, requests, counts) = gate(test_config());
    let mut client = raw(server.local_addr());
    client.write_all(UPGRADE.as_bytes()).unwrap();
    let id = requests.recv_timeout(PATIENCE).unwrap();
    wait_for_stats(&server, PATIENCE, |s| s.deferred_upgrades == 1);
    // The peer hangs up while its upgrade waits: the hang-up ends the wait.
    drop(client);
    wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    let _ = server.sender().answer_upgrade(id, accept(&counts));
    wait_until(PATIENCE, || counts.dropped.load(Ordering::SeqCst) == 1);
    assert_eq!(counts.opened.load(Ordering::SeqCst), 0);
    assert_eq!(counts.closed.load(Ordering::SeqCst), 0);
    // The server goes on serving.
    let mut next = raw(server.local_addr());
    next.set_read_timeout(Some(PATIENCE)).unwrap();
    next.write_all(UPGRADE.as_bytes()).unwrap();
    let id = requests.recv_timeout(PATIENCE).unwrap();
    let _ = server.sender().answer_upgrade(id, accept(&counts));
    assert!(read_head(&mut next).starts_with("HTTP/1.1 101"));
}

/// A client process (Python, so that its sockets do not count against this
/// process's open-file limit): opens `N` connections, sends an upgrade request on
/// each, says "sent", waits for a line on stdin, then reads every response head and
/// prints how many were 101s.
const CLIENTS: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
request = (b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
socks = []
for i in range(n):
    # Spread over source addresses, as every load here is.
    s = socket.socket()
    s.bind(("127.0.0.%d" % (2 + i % 200), 0))
    s.settimeout(60)
    s.connect((host, port))
    s.sendall(request)
    socks.append(s)
print("sent", flush=True)
sys.stdin.readline()
upgraded = 0
for s in socks:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    if head.startswith(b"HTTP/1.1 101"):
        upgraded += 1
print(upgraded, flush=True)
"#;

#[test]
fn ten_thousand_upgrades_wait_at_once_in_bounded_memory() {
    const N: usize = 10_000;
    let (server, requests, counts) = gate(test_config());
    let addr = server.local_addr();
    let sender: Sender = server.sender();
    let before = live_alloc::live();
    let mut clients = Command::new("python3")
        .args([
            "-c",
            CLIENTS,
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .arg(N.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut out = BufReader::new(clients.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "sent");
    let mut ids = Vec::with_capacity(N);
    while ids.len() < N {
        ids.push(
            requests
                .recv_timeout(PATIENCE)
                .expect("every upgrade is asked"),
        );
    }
    let stats = wait_for_stats(&server, PATIENCE, |s| s.deferred_upgrades == N as u64);
    assert_eq!(stats.open, N as u64);
    let held = live_alloc::live().saturating_sub(before) - ids.capacity() * size_of::<ConnId>();
    let each = held / N;
    println!("{each} bytes of heap per upgrade waiting for its answer");
    // The slot, the request held at its size, the slabs' spare room: no buffer
    // from the pool (16 KiB) and nothing read beyond the request.
    assert!(each < 1536, "{each} bytes per waiting upgrade");
    for id in ids {
        loop {
            match sender.answer_upgrade(id, accept(&counts)) {
                QueueStatus::Queued => break,
                // The reactor's command queue is bounded: wait for room.
                QueueStatus::Full => std::thread::sleep(Duration::from_millis(1)),
                QueueStatus::Closed => panic!("the server stopped"),
            }
        }
    }
    writeln!(clients.stdin.take().unwrap(), "read").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), N.to_string(), "101s read by the clients");
    assert!(clients.wait().unwrap().success());
    wait_until(PATIENCE, || counts.opened.load(Ordering::SeqCst) == N);
}
