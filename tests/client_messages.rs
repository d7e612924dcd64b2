//! `wsreactor::client` against wsreactor's server: pings both ways, subprotocols and
//! headers, and senders on many threads whose frames never interleave. (Messages of
//! every size and the close handshake with our server are in `server_echo.rs`.)

#[path = "util/server.rs"]
mod server;

use std::sync::{Arc, Mutex};
use std::thread;

use server::{Echo, PATIENCE, start, test_config};
use wsreactor::client::{self, ClientBuilder, Incoming};
use wsreactor::{Handler, Message, Request, Socket, Upgrade};

fn url(server: &wsreactor::ServerHandle) -> String {
    format!("ws://{}/", server.local_addr())
}

#[test]
fn control_payloads_over_125_bytes_are_refused_and_the_connection_goes_on() {
    let server = start(test_config(), Echo);
    let mut client = client::connect(url(&server)).unwrap();
    assert!(matches!(
        client.ping(&[0; 126]),
        Err(client::Error::Send(client::SendError::ControlTooLong))
    ));
    client.ping(&[7; 125]).unwrap();
    assert_eq!(client.recv().unwrap(), Incoming::Pong(&[7; 125]));
}

/// Pings every client on open, and tells it what pong came back.
#[derive(Clone)]
struct PingOnOpen;

impl Handler for PingOnOpen {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        let _ = ws.ping(b"are you there");
    }
    fn on_pong(&mut self, ws: &mut Socket<'_, ()>, payload: &[u8]) {
        let text = format!("pong: {}", String::from_utf8_lossy(payload));
        let _ = ws.send_text(&text);
    }
}

#[test]
fn the_servers_ping_is_answered_by_recv() {
    let server = start(test_config(), PingOnOpen);
    let mut client = client::connect(url(&server)).unwrap();
    assert_eq!(client.recv().unwrap(), Incoming::Ping(b"are you there"));
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("pong: are you there"))
    );
}

/// Accepts the second subprotocol offered and sends back what it saw of the request.
#[derive(Clone)]
struct ShowRequest {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Handler for ShowRequest {
    type Session = ();
    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<()> {
        let mut seen = self.seen.lock().unwrap();
        seen.push(format!("path {}", request.http().target()));
        seen.push(format!("origin {:?}", request.origin()));
        seen.push(format!(
            "x-token {:?}",
            request.header("x-token").map(String::from_utf8_lossy)
        ));
        let offered: Vec<&str> = request.subprotocols().collect();
        seen.push(format!("offered {offered:?}"));
        match offered.get(1) {
            Some(protocol) => Upgrade::accept(()).with_protocol(protocol.to_string()),
            None => Upgrade::accept(()),
        }
    }
}

#[test]
fn subprotocols_origin_and_headers_reach_the_server() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = start(
        test_config(),
        ShowRequest {
            seen: Arc::clone(&seen),
        },
    );
    let client = ClientBuilder::new(format!("ws://{}/room?id=7", server.local_addr()))
        .protocol("chat.v2")
        .protocol("chat.v1")
        .origin("http://example.test")
        .header("X-Token", "abc 123")
        .connect()
        .expect("connects");
    assert_eq!(client.protocol(), Some("chat.v1"));
    assert_eq!(
        client.response_header("sec-websocket-protocol"),
        Some(&b"chat.v1"[..])
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "path /room?id=7",
            "origin Some(\"http://example.test\")",
            "x-token Some(\"abc 123\")",
            "offered [\"chat.v2\", \"chat.v1\"]",
        ]
    );
}

/// Four threads send messages of mixed sizes at once through clones of one
/// `Sender` while the client's thread receives the echoes: any two frames
/// interleaved would be a protocol error at the server (and the connection would
/// close), and each thread's messages must come back whole and in its order. The
/// server's policy is the lossless default (`Pause`): an echo is never dropped, so
/// a gap can only be a fault.
#[test]
fn senders_on_many_threads_never_interleave_frames() {
    const THREADS: usize = 4;
    const MESSAGES: usize = 60;
    let server = start(test_config(), Echo);
    let mut client = ClientBuilder::new(url(&server))
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    let payload = |thread: usize, i: usize| -> Vec<u8> {
        // Sizes from a few bytes to 300 KB, so some writes take many syscalls.
        let size = 8 + (i * 7919 + thread * 104_729) % 300_000;
        let mut bytes = vec![(thread * MESSAGES + i) as u8; size];
        bytes[..8].copy_from_slice(&((thread << 32 | i) as u64).to_be_bytes());
        bytes
    };
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let sender = client.sender();
            thread::spawn(move || {
                for i in 0..MESSAGES {
                    sender.send(Message::Binary(&payload(t, i))).expect("send");
                }
            })
        })
        .collect();
    let mut next = [0usize; THREADS];
    for _ in 0..THREADS * MESSAGES {
        let Incoming::Message(Message::Binary(bytes)) = client.recv().expect("recv") else {
            panic!("expected a binary echo");
        };
        let tag = u64::from_be_bytes(bytes[..8].try_into().unwrap());
        let (t, i) = ((tag >> 32) as usize, (tag & 0xffff_ffff) as usize);
        assert_eq!(i, next[t], "thread {t}'s messages out of order");
        assert!(
            bytes == payload(t, i),
            "message {i} of thread {t} corrupted"
        );
        next[t] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
    let stats = server.stats();
    assert_eq!(
        (stats.open, stats.closed(), stats.dropped),
        (1, 0, 0),
        "{stats:?}"
    );
}

/// Pings the client for every message it receives, and reports each pong.
#[derive(Clone)]
struct PingBack;

impl Handler for PingBack {
    /// Messages received.
    type Session = u32;
    fn on_message(&mut self, ws: &mut Socket<'_, u32>, _: Message<'_>) {
        let n = *ws.session();
        *ws.session_mut() += 1;
        let _ = ws.ping(&n.to_be_bytes());
    }
    fn on_pong(&mut self, ws: &mut Socket<'_, u32>, payload: &[u8]) {
        let answered = <[u8; 4]>::try_from(payload).map(u32::from_be_bytes);
        let _ = ws.send_text(&format!("pong seen {answered:?}"));
    }
    fn on_upgrade(&mut self, _: &wsreactor::Request<'_, '_>) -> wsreactor::Upgrade<u32> {
        wsreactor::Upgrade::accept(0)
    }
}

/// The reader answers pings while another thread is in the middle of long sends:
/// a pong owed while the sender holds the socket goes out with the sender's bytes,
/// and none is left behind when the sends stop. Pings that come while a pong is
/// still owed share one (RFC 6455 §5.5.3: the latest ping's), so the server sees
/// pongs in order, at most one per ping, the last for the last ping.
#[test]
fn pings_are_answered_while_another_thread_sends() {
    const MESSAGES: usize = 40;
    let server = start(test_config(), PingBack);
    let mut client = ClientBuilder::new(url(&server))
        .read_timeout(Some(PATIENCE))
        .connect()
        .unwrap();
    let sender = client.sender();
    let sending = thread::spawn(move || {
        let big = vec![1u8; 256 * 1024];
        for _ in 0..MESSAGES {
            sender.send(Message::Binary(&big)).unwrap();
        }
    });
    let last = MESSAGES as u32 - 1;
    let (mut pings, mut pongs) = (0u32, Vec::new());
    while pongs.last() != Some(&last) {
        match client
            .recv()
            .expect("the last ping's pong reaches the server")
        {
            Incoming::Ping(p) => {
                assert_eq!(p, pings.to_be_bytes(), "pings in order");
                pings += 1;
            }
            Incoming::Message(Message::Text(seen)) => {
                let answered = seen
                    .strip_prefix("pong seen Ok(")
                    .and_then(|n| n.strip_suffix(')'))
                    .and_then(|n| n.parse::<u32>().ok());
                pongs.push(answered.unwrap_or_else(|| panic!("{seen}")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    sending.join().unwrap();
    assert_eq!(pings as usize, MESSAGES);
    // At most one pong per ping, each for a later ping than the one before.
    assert!(pongs.windows(2).all(|w| w[0] < w[1]), "{pongs:?}");
}
