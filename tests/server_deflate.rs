//! permessage-deflate against a real server: negotiation in both modes, compressed
//! echoes both ways, the threshold and the per-message choice, broadcasts
//! compressed once and interleaved with a connection's own compressor, dedicated
//! compressors released when quiet, and bad compressed input closed with the right
//! code.

#[path = "util/deflate_client.rs"]
mod deflate_client;
#[path = "util/server.rs"]
mod server;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use deflate_client::{COMPRESSED, DeflateClient, Got};
use server::{PATIENCE, start, test_config, wait_for_stats};
use wsreactor::proto::frame::OpCode;
use wsreactor::{Compress, Compression, ConnId, Deflate, Handler, Message, Sender, Socket};

/// Echoes; "never:..." and "always:..." choose the compression; "bcast:..." is
/// broadcast through a `Sender` (compressed once, without context) by the test.
#[derive(Clone)]
struct Echo {
    opened: mpsc::Sender<ConnId>,
}

impl Handler for Echo {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        let _ = self.opened.send(ws.id());
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = match message {
            Message::Text(t) if t.starts_with("never:") => ws.send_with(message, Compress::Never),
            Message::Text(t) if t.starts_with("always:") => ws.send_with(message, Compress::Always),
            _ => ws.send(message),
        };
    }
}

fn echo_server(compression: Compression) -> (wsreactor::ServerHandle, mpsc::Receiver<ConnId>) {
    let (tx, rx) = mpsc::channel();
    let config = test_config().with_compression(compression);
    (start(config, Echo { opened: tx }), rx)
}

fn json(i: usize) -> String {
    format!(
        r#"{{"type":"quote","symbol":"SYM{}","bid":{}.{:02},"ask":{}.{:02},"seq":{i}}}"#,
        i % 5,
        100 + i % 9,
        i % 100,
        101 + i % 9,
        (i * 7) % 100
    )
    .repeat(3)
}

#[test]
fn compression_off_declines_every_offer() {
    let (server, _rx) = echo_server(Compression::Off);
    let mut c = DeflateClient::connect(server.local_addr(), Some("permessage-deflate"));
    assert_eq!(c.extensions, None);
    assert_eq!(c.deflate, None);
    // RSV1 without the extension is a protocol error.
    c.send_raw(
        OpCode::Text,
        true,
        COMPRESSED,
        &DeflateClient::deflated(b"hello"),
    );
    assert_eq!(c.close_code(), Some(1002));
}

#[test]
fn shared_mode_echoes_compressed_both_ways() {
    let (server, _rx) = echo_server(Compression::shared());
    let mut c = DeflateClient::connect(
        server.local_addr(),
        Some("permessage-deflate; client_max_window_bits"),
    );
    assert_eq!(
        c.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    for i in 0..50 {
        let text = json(i);
        c.send(Message::Text(&text), i % 2 == 0);
        assert_eq!(c.recv_text(), (text, true), "message {i}");
    }
    // Under the threshold: uncompressed; the per-message choice overrides it.
    c.send(Message::Text("short"), true);
    assert_eq!(c.recv_text(), ("short".to_string(), false));
    c.send(Message::Text("always:x"), false);
    assert_eq!(c.recv_text(), ("always:x".to_string(), true));
    let long = format!("never:{}", "y".repeat(1000));
    c.send(Message::Text(&long), true);
    assert_eq!(c.recv_text(), (long, false));
    // Binary too, and a large message over many reads.
    let big: Vec<u8> = (0..1_000_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    c.send(Message::Binary(&big), true);
    assert_eq!(c.recv(), Got::Message(big, false, true));
    // Counters are published once per loop turn: the last echo's may trail.
    let stats = wait_for_stats(&server, PATIENCE, |s| s.compressed_out >= 52);
    assert_eq!(
        stats.compressors, 0,
        "shared mode holds no compressor per connection"
    );
}

#[test]
fn dedicated_mode_keeps_context_and_releases_a_quiet_compressor() {
    const RELEASE_AFTER: Duration = Duration::from_millis(300);
    let settings = Deflate::default().with_release_after(RELEASE_AFTER);
    let (server, _rx) = echo_server(Compression::Dedicated(settings));
    let mut c = DeflateClient::connect(
        server.local_addr(),
        Some("permessage-deflate; client_max_window_bits"),
    );
    assert_eq!(
        c.extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    let before = server.stats().bytes_out;
    // When the server last had a message to compress: no earlier than this.
    let mut last_sent = Instant::now();
    for i in 0..100 {
        let text = json(i);
        last_sent = Instant::now();
        c.send(Message::Text(&text), true);
        assert_eq!(c.recv_text(), (text, true), "message {i}");
    }
    let plain: usize = (0..100).map(|i| json(i).len()).sum();
    let stats = wait_for_stats(&server, PATIENCE, |s| s.messages_out >= 100);
    let sent = stats.bytes_out - before;
    // With context, similar messages shrink to a fraction.
    assert!(sent * 4 < plain as u64, "{sent} bytes for {plain}");
    // Held while in use: only a connection quiet for `release_after` loses it (a
    // busy machine may have let that much time pass since the last message).
    let held = server.stats().compressors;
    let quiet = last_sent.elapsed();
    assert!(
        held == 1 || quiet >= RELEASE_AFTER,
        "{held} compressors after {quiet:?} of quiet"
    );
    // Quiet: the compressor is released, not before `release_after`, and the next
    // message starts afresh.
    wait_for_stats(&server, PATIENCE, |s| s.compressors == 0);
    let quiet = last_sent.elapsed();
    assert!(quiet >= RELEASE_AFTER, "released after {quiet:?} of quiet");
    for i in 100..110 {
        let text = json(i);
        c.send(Message::Text(&text), true);
        assert_eq!(c.recv_text(), (text, true), "message {i} after the release");
    }
    // Closing frees it at once.
    drop(c);
    wait_for_stats(&server, PATIENCE, |s| s.open == 0 && s.compressors == 0);
}

#[test]
fn a_broadcast_between_own_messages_resets_the_dedicated_compressor() {
    let (server, rx) = echo_server(Compression::dedicated());
    let sender: Sender = server.sender();
    let mut dedicated = DeflateClient::connect(server.local_addr(), Some("permessage-deflate"));
    let a = rx.recv().unwrap();
    let mut shared_peer = DeflateClient::connect(
        server.local_addr(),
        Some("permessage-deflate; server_no_context_takeover"),
    );
    let _b = rx.recv().unwrap();
    let mut plain = DeflateClient::connect(server.local_addr(), None);
    let _c = rx.recv().unwrap();
    for round in 0..20 {
        // Own messages, with context...
        for i in 0..3 {
            let text = json(round * 10 + i);
            dedicated.send(Message::Text(&text), true);
            assert_eq!(dedicated.recv_text(), (text, true));
        }
        // ...then a frame compressed once for everyone, without context...
        let news = format!("bcast:{}", json(1000 + round));
        assert_eq!(
            sender.broadcast(Message::Text(&news)),
            wsreactor::QueueStatus::Queued
        );
        assert_eq!(dedicated.recv_text(), (news.clone(), true));
        assert_eq!(shared_peer.recv_text(), (news.clone(), true));
        assert_eq!(plain.recv_text(), (news.clone(), false));
        // ...and a frame from another thread to one connection: the same rules.
        let direct = json(2000 + round);
        sender.send(a, Message::Text(&direct));
        assert_eq!(dedicated.recv_text(), (direct, true));
        // The next own message must not refer to history the peer's window lost.
        let text = json(round * 10);
        dedicated.send(Message::Text(&text), true);
        assert_eq!(dedicated.recv_text(), (text, true), "round {round}");
    }
    assert!(server.stats().compressed_out > 100);
}

#[test]
fn a_deflate_bomb_is_closed_with_1009_at_once() {
    let config = test_config()
        .with_compression(Compression::shared())
        .with_max_message_size(1 << 20);
    let (tx, _rx) = mpsc::channel();
    let server = start(config, Echo { opened: tx });
    let mut c = DeflateClient::connect(server.local_addr(), Some("permessage-deflate"));
    let bomb = DeflateClient::deflated(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 128 << 10, "{} bytes on the wire", bomb.len());
    c.send_raw(OpCode::Binary, true, COMPRESSED, &bomb);
    assert_eq!(c.close_code(), Some(1009));
    wait_for_stats(&server, PATIENCE, |s| s.closed_with(1009) == 1);
}

#[test]
fn bad_compressed_input_closes_with_the_right_code() {
    let (server, _rx) = echo_server(Compression::shared());
    let addr = server.local_addr();
    type Send = Box<dyn Fn(&mut DeflateClient)>;
    let cases: Vec<(&str, Send, u16)> = vec![
        (
            "corrupt deflate data",
            Box::new(|c| c.send_raw(OpCode::Binary, true, COMPRESSED, &[0xff, 0xff, 0xff])),
            1007,
        ),
        (
            "text that inflates to invalid UTF-8",
            Box::new(|c| {
                let bad = DeflateClient::deflated(b"caf\xc3\x28 and more");
                c.send_raw(OpCode::Text, true, COMPRESSED, &bad)
            }),
            1007,
        ),
        (
            "RSV1 on a continuation frame",
            Box::new(|c| {
                c.send_raw(OpCode::Text, false, 0, b"a");
                c.send_raw(OpCode::Continuation, true, COMPRESSED, b"b");
            }),
            1002,
        ),
        (
            "RSV1 on a ping",
            Box::new(|c| c.send_raw(OpCode::Ping, true, COMPRESSED, b"")),
            1002,
        ),
        (
            "RSV2",
            Box::new(|c| c.send_raw(OpCode::Text, true, 0b010, b"a")),
            1002,
        ),
    ];
    for (what, send, code) in cases {
        let mut c = DeflateClient::connect(addr, Some("permessage-deflate"));
        send(&mut c);
        assert_eq!(c.close_code(), Some(code), "{what}");
    }
    // A compressed message in fragments is fine: RSV1 on the first frame only.
    let mut c = DeflateClient::connect(addr, Some("permessage-deflate"));
    let payload = DeflateClient::deflated(json(1).as_bytes());
    let (head, tail) = payload.split_at(payload.len() / 2);
    c.send_raw(OpCode::Text, false, COMPRESSED, head);
    c.send_raw(OpCode::Ping, true, 0, b"between");
    c.send_raw(OpCode::Continuation, true, 0, tail);
    // (The pong for the ping is skipped by the client.)
    assert_eq!(c.recv_text(), (json(1), true));
}

#[test]
fn a_client_allowed_to_keep_its_context_gets_a_decompressor_of_its_own() {
    let settings = Deflate::default().with_client_context_takeover(10);
    let (server, _rx) = echo_server(Compression::Dedicated(settings));
    let mut a = DeflateClient::connect(
        server.local_addr(),
        Some("permessage-deflate; client_max_window_bits"),
    );
    // The server asks for a 1 KiB window and lets the client keep its context.
    assert_eq!(
        a.extensions.as_deref(),
        Some("permessage-deflate; client_max_window_bits=10")
    );
    // A second client, interleaved: each has its own history on the server.
    let mut b = DeflateClient::connect(server.local_addr(), Some("permessage-deflate"));
    assert_eq!(b.extensions.as_deref(), Some("permessage-deflate"));
    for i in 0..60 {
        for (c, offset) in [(&mut a, 0), (&mut b, 1000)] {
            let text = json(i + offset);
            c.send(Message::Text(&text), true);
            assert_eq!(c.recv_text(), (text, true), "message {i}");
        }
    }
}

/// On "flood N FROM": sends N similar quotes at once, numbered from FROM.
#[derive(Clone)]
struct Flood;

impl Handler for Flood {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        if let Message::Text(t) = message
            && let Some(args) = t.strip_prefix("flood ")
        {
            let mut args = args.split(' ').map(|a| a.parse().unwrap_or(0));
            let (n, from) = (args.next().unwrap_or(0), args.next().unwrap_or(0));
            for i in from..from + n {
                // Noise after the quote, so that each message stays large compressed.
                let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                let noise: String = (0..64)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        char::from(b'a' + (x % 26) as u8)
                    })
                    .collect();
                let _ = ws.send_text(&format!("{}{noise}", json(i)));
            }
        }
    }
}

/// DropOldest with a dedicated compressor that keeps its context: what arrives
/// inflates, in order, and every message is received or counted in `Stats::dropped`.
#[test]
fn drop_oldest_never_drops_a_message_a_kept_context_refers_to() {
    const FIRST: usize = 3000;
    const SECOND: usize = 20_000;
    let config = test_config()
        .with_compression(Compression::dedicated())
        .with_backpressure(256 * 1024, wsreactor::BackpressurePolicy::DropOldest)
        .with_send_buffer_size(Some(4096));
    let server = start(config, Flood);
    let mut c = DeflateClient::connect(server.local_addr(), Some("permessage-deflate"));
    // The first flood fills the socket and starts the queue; the second is queued
    // message by message, where DropOldest could drop them.
    c.send(Message::Text(&format!("flood {FIRST} 0")), false);
    // Counters are published at the end of a loop turn: once the command is
    // counted, its callback is over.
    wait_for_stats(&server, PATIENCE, |s| s.messages_in == 1);
    c.send(Message::Text(&format!("flood {SECOND} {FIRST}")), false);
    // Read nothing until both floods are over; the server has had to drop.
    let stats = wait_for_stats(&server, PATIENCE, |s| s.messages_in == 2);
    assert!(stats.dropped > 0, "{stats:?}");
    // Every message that arrives inflates (a dropped message that later ones refer
    // to would make the rest unreadable), in order.
    let mut last = None;
    for _ in 0..(FIRST + SECOND) as u64 - stats.dropped {
        let text = match c.recv() {
            Got::Message(bytes, true, _) => String::from_utf8(bytes).unwrap(),
            other => panic!("{other:?} after {last:?}"),
        };
        let seq: usize = text
            .split("\"seq\":")
            .nth(1)
            .and_then(|s| s.split('}').next())
            .and_then(|s| s.parse().ok())
            .expect("a quote");
        assert!(last.is_none_or(|l| seq > l), "{seq} after {last:?}");
        last = Some(seq);
    }
    // Nothing more: every message was received or counted as dropped.
    assert_eq!(
        c.before_pong(b"anything more?"),
        Vec::new(),
        "after {last:?}"
    );
}
