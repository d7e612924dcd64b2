//! `BackpressurePolicy::DropOldest`, the market-data policy: a reader that stalls
//! and then resumes gets the newest messages, every one a whole frame (never a
//! torn one), with the replies the protocol owes it (pongs); every message it did
//! not get is counted as dropped. Whether the flood comes from a callback, from a
//! `Sender` on another thread, or as publications on a topic.
//! `Config::send_buffer_size` keeps the kernel from holding stale bytes in front.
//! With permessage-deflate, no message that later ones need to inflate is dropped.
//! Every test here runs under `DropOldest` and checks `Stats::dropped` against what
//! arrived.

#[path = "util/deflate_client.rs"]
mod deflate_client;
#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deflate_client::{DeflateClient, Got};
use server::{
    PATIENCE, UPGRADE, read_frame, read_head, start, test_config, wait_for_stats, wait_until,
};
use wsreactor::compression::Compression;
use wsreactor::{BackpressurePolicy, Config, ConnId, Handler, Message, QueueStatus, Socket};

/// What a client may have queued for it.
const LIMIT: usize = 256 * 1024;
/// Messages in a flood: about 40 MiB, far more than the limit and the kernel hold.
const FLOOD: u32 = 25_000;

/// Message `seq`: its number, then its low byte repeated, to a length that varies
/// with `seq` (100 to 3,099 bytes), so a torn or misframed message cannot pass.
fn tick(seq: u32) -> Vec<u8> {
    let len = 100 + (seq as usize * 37) % 3000;
    let mut payload = vec![seq as u8; len];
    payload[..4].copy_from_slice(&seq.to_be_bytes());
    payload
}

fn check_tick(payload: &[u8]) -> u32 {
    assert!(payload.len() >= 100, "a message of {} bytes", payload.len());
    let seq = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    assert!(
        payload == tick(seq),
        "message {seq} ({} bytes) is torn or not its own",
        payload.len()
    );
    seq
}

/// Text message `seq`: its number, then one of four phrases of 300 letters with no
/// repeats inside them, so that a compressor with context refers to the message that
/// carried the same phrase before rather than to the message itself.
fn quote(seq: u32) -> String {
    let mut state = u64::from(seq % 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) + 1;
    let phrase: String = (0..300)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    format!("{seq:08} {phrase}")
}

fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// Sends the flood from the callback when asked (`flood`), subscribes to `ticks`
/// (`sub`), and reports each connection's id and each ping it read.
#[derive(Clone, Default)]
struct Feed {
    ids: Arc<Mutex<Vec<ConnId>>>,
    pings: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Feed {
    /// Waits until the server has read the ping carrying `payload` (its pong is
    /// then queued).
    fn wait_for_ping(&self, payload: &[u8]) {
        wait_until(PATIENCE, || {
            self.pings.lock().unwrap().iter().any(|p| p == payload)
        });
    }
}

impl Handler for Feed {
    type Session = ();

    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        self.ids.lock().unwrap().push(ws.id());
    }

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        match message.as_bytes() {
            b"flood" => {
                for seq in 0..FLOOD {
                    let _ = ws.send_binary(&tick(seq));
                }
            }
            b"quotes" => {
                for seq in 0..FLOOD {
                    let _ = ws.send_text(&quote(seq));
                }
            }
            b"sub" => {
                ws.subscribe("ticks").unwrap();
                let _ = ws.send_text("subscribed");
            }
            _ => {}
        }
    }

    fn on_ping(&mut self, _: &mut Socket<'_, ()>, payload: &[u8]) {
        self.pings.lock().unwrap().push(payload.to_vec());
    }
}

fn config() -> Config {
    test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::DropOldest)
        .with_send_buffer_size(Some(8 * 1024))
}

/// A client with a 4 KiB receive window that has completed the upgrade.
fn small_window_client(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    s
}

/// What a resumed reader got.
struct Received {
    seqs: Vec<u32>,
    bytes: usize,
    pongs: Vec<Vec<u8>>,
}

/// Reads until the last message of the flood, checking every one.
fn read_until_last(client: &mut TcpStream) -> Received {
    let mut got = Received {
        seqs: Vec::new(),
        bytes: 0,
        pongs: Vec::new(),
    };
    while got.seqs.last() != Some(&(FLOOD - 1)) {
        let (opcode, payload) = read_frame(client).expect("the newest message arrives");
        match opcode {
            0x2 => {
                let seq = check_tick(&payload);
                assert!(got.seqs.last().is_none_or(|&l| seq > l), "in order");
                got.bytes += payload.len();
                got.seqs.push(seq);
            }
            0xa => got.pongs.push(payload),
            0x1 => {} // "subscribed"
            other => panic!("unexpected opcode {other}"),
        }
    }
    got
}

/// Checks what a stalled reader got once it resumed, against the server's count.
fn assert_newest_kept(got: &Received, server: &wsreactor::ServerHandle) {
    let received = got.seqs.len() as u64;
    // The newest messages arrive together at the end: a run up to the last one
    // holding at least half of what the queue may hold.
    let mut run = 0;
    for (i, &seq) in got.seqs.iter().enumerate().rev() {
        if seq != FLOOD - 1 - (got.seqs.len() - 1 - i) as u32 {
            break;
        }
        run += tick(seq).len();
    }
    assert!(
        run >= LIMIT / 2,
        "only {run} bytes of the newest messages, of {} received",
        got.bytes
    );
    // Stale bytes in front are bounded: the queue, one cork and the small kernel
    // buffers, not the several MiB Linux would grow the send buffer to.
    assert!(got.bytes < 2 * LIMIT, "{} bytes received", got.bytes);
    // Every message is received or counted as dropped.
    let stats = wait_for_stats(server, PATIENCE, |s| {
        s.dropped + received >= u64::from(FLOOD)
    });
    assert_eq!(stats.dropped + received, u64::from(FLOOD), "{stats:?}");
    assert!(stats.open >= 1, "the connection stays open");
}

/// DropOldest, a flood from one callback: the newest messages arrive whole, every
/// other one is counted in `Stats::dropped`, and a ping read after the flood is
/// answered behind it.
#[test]
fn a_flood_from_a_callback_leaves_the_newest_whole_messages() {
    let feed = Feed::default();
    let server = start(config(), feed.clone());
    let mut client = small_window_client(server.local_addr());
    client.write_all(&masked(0x2, b"flood")).unwrap();
    // Stalled while the callback sends everything; then the ping comes after, and
    // is read (its pong queued behind the full queue) before the client reads.
    wait_for_stats(&server, PATIENCE, |s| s.dropped > 0);
    client.write_all(&masked(0x9, b"are you there")).unwrap();
    feed.wait_for_ping(b"are you there");
    let got = read_until_last(&mut client);
    assert_newest_kept(&got, &server);
    // The pong is queued behind the flood: it arrives once the reader catches up.
    let (opcode, payload) = read_frame(&mut client).expect("the pong");
    assert_eq!((opcode, &payload[..]), (0xa, &b"are you there"[..]));
}

/// Sends the flood from this thread, retrying while the reactor's command queue is
/// full, pinging from the client halfway through (and going on once the server has
/// read the ping, so that its pong is queued among the flood); returns once the
/// reactor has run every command: a probe connection gets a message sent after them
/// (commands from one thread to one reactor run in order).
fn flood_from_another_thread(
    server: &wsreactor::ServerHandle,
    feed: &Feed,
    probe: (ConnId, &mut TcpStream),
    client: &mut TcpStream,
    mut send: impl FnMut(&[u8]) -> QueueStatus,
) {
    for seq in 0..FLOOD {
        if seq == FLOOD / 2 {
            client.write_all(&masked(0x9, b"halfway")).unwrap();
            feed.wait_for_ping(b"halfway");
        }
        let payload = tick(seq);
        loop {
            match send(&payload) {
                QueueStatus::Queued => break,
                QueueStatus::Full => std::thread::sleep(Duration::from_millis(1)),
                QueueStatus::Closed => panic!("the server closed"),
            }
        }
    }
    let (id, stream) = probe;
    let sent = server.sender().send(id, Message::Text("done"));
    assert_eq!(sent, QueueStatus::Queued);
    assert_eq!(read_frame(stream).unwrap().1, b"done");
}

/// DropOldest, a flood of `Sender` sends: the newest messages arrive whole, every
/// other one is counted in `Stats::dropped`, and the pong queued among them is kept.
#[test]
fn a_flood_from_a_sender_leaves_the_newest_whole_messages_and_the_pong() {
    let feed = Feed::default();
    let server = start(config(), feed.clone());
    let mut client = small_window_client(server.local_addr());
    let mut probe = server::raw_ws(server.local_addr());
    wait_until(PATIENCE, || feed.ids.lock().unwrap().len() == 2);
    let [id, probe_id] = feed.ids.lock().unwrap()[..] else {
        panic!("two connections");
    };
    let sender = server.sender();
    flood_from_another_thread(&server, &feed, (probe_id, &mut probe), &mut client, |p| {
        sender.send(id, Message::Binary(p))
    });
    let got = read_until_last(&mut client);
    assert_newest_kept(&got, &server);
    // The pong sent halfway through was kept while messages around it were dropped.
    assert_eq!(got.pongs, vec![b"halfway".to_vec()]);
}

/// DropOldest, a flood of publications: the newest messages arrive whole, every
/// other one is counted in `Stats::dropped`, and the pong queued among them is kept.
#[test]
fn a_flood_of_publications_leaves_the_newest_whole_messages_and_the_pong() {
    let feed = Feed::default();
    let server = start(config(), feed.clone());
    let mut client = small_window_client(server.local_addr());
    client.write_all(&masked(0x2, b"sub")).unwrap();
    assert_eq!(read_frame(&mut client).unwrap().1, b"subscribed");
    let mut probe = server::raw_ws(server.local_addr());
    wait_until(PATIENCE, || feed.ids.lock().unwrap().len() == 2);
    let probe_id = feed.ids.lock().unwrap()[1];
    let sender = server.sender();
    flood_from_another_thread(
        &server,
        &feed,
        (probe_id, &mut probe),
        &mut client,
        |p| match sender.publish("ticks", Message::Binary(p)) {
            p if p.refused > 0 => QueueStatus::Full,
            p => {
                assert_eq!(p.forwarded, 1);
                QueueStatus::Queued
            }
        },
    );
    let got = read_until_last(&mut client);
    assert_newest_kept(&got, &server);
    assert_eq!(got.pongs, vec![b"halfway".to_vec()]);
}

/// DropOldest with a dedicated compressor: what arrives inflates, in order, and
/// every message is received or counted in `Stats::dropped`.
#[test]
fn with_permessage_deflate_every_message_that_arrives_inflates_whole() {
    // Each connection's own compressor keeps its context: a message it compressed
    // may be what the next one refers to, so it is never dropped once queued.
    let config = config().with_compression(Compression::dedicated());
    let server = start(config, Feed::default());
    let mut client = DeflateClient::connect(server.local_addr(), Some("permessage-deflate"));
    assert!(client.deflate.is_some(), "negotiated");
    client.send(Message::Binary(b"quotes"), false);
    // The flood is one callback: once a drop is published, it is over.
    let dropped = wait_for_stats(&server, PATIENCE, |s| s.dropped > 0).dropped;
    let (mut last, mut compressed) = (None, 0);
    for _ in 0..u64::from(FLOOD) - dropped {
        match client.recv() {
            Got::Message(bytes, true, was_compressed) => {
                let text = String::from_utf8(bytes).unwrap();
                let seq: u32 = text[..8].parse().unwrap();
                assert!(text == quote(seq), "message {seq} is whole and its own");
                assert!(last.is_none_or(|l| seq > l), "in order");
                last = Some(seq);
                compressed += usize::from(was_compressed);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(compressed > 1000, "{compressed} came compressed");
    // Nothing more: every message was received or counted as dropped. The pong to a
    // ping sent now comes behind whatever the server still had queued.
    assert_eq!(client.before_pong(b"anything more?"), Vec::new(), "silence");
    assert_eq!(server.stats().open, 1);
}
