//! The hot paths allocate nothing: parsing an upgrade request and writing the 101 (or
//! a refusal), decoding a message that arrives whole, in either role, and writing
//! messages and replies into a buffer with room for them.

#[path = "util/counting_alloc.rs"]
mod counting_alloc;
mod util;

use counting_alloc::{Counting, allocations_in};
use util::client_frame;
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::handshake::{
    self, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, EMPTY_HEADER,
};
use wsreactor::proto::{Connection, Decoded, Event, Limits, Message};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_counter_sees_allocations() {
    let (n, v) = allocations_in(|| vec![1u8; 10]);
    assert_eq!(n, 1);
    drop(v);
}

#[test]
fn decoding_whole_messages_and_control_frames_allocates_nothing() {
    let key = [7, 7, 7, 7];
    let mut wire = client_frame(OpCode::Text, true, "héllo wörld".as_bytes(), key);
    wire.extend(client_frame(OpCode::Binary, true, &[1; 70_000], key));
    wire.extend(client_frame(OpCode::Ping, true, b"are you there", key));
    wire.extend(client_frame(OpCode::Text, false, b"frag", key));
    wire.extend(client_frame(OpCode::Continuation, true, b"ment", key));
    let limits = Limits::default();
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut conn = Connection::server();
    let (n, seen) = allocations_in(|| {
        let mut seen = [0usize; 3];
        let mut buf = &mut wire[..];
        loop {
            match conn.decode(buf, &mut out, &limits) {
                Decoded::Event { consumed, event } => {
                    match event {
                        Event::Message(Message::Text(t)) => seen[0] += t.len(),
                        Event::Message(Message::Binary(b)) => seen[1] += b.len(),
                        Event::Ping(p) => seen[2] += p.len(),
                        other => panic!("unexpected {other:?}"),
                    }
                    buf = &mut std::mem::take(&mut buf)[consumed..];
                }
                Decoded::NeedMore { keep } => {
                    assert!(keep.is_empty());
                    break;
                }
            }
        }
        seen
    });
    assert_eq!(seen, [13 + 8, 70_000, 13]);
    assert_eq!(n, 0, "allocations while decoding");
    assert_eq!(out.len(), 2 + 13, "the pong was written");
}

#[test]
fn writing_messages_into_a_buffer_with_room_allocates_nothing() {
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    for mut conn in [Connection::server(), Connection::client(9)] {
        out.clear();
        let (n, ()) = allocations_in(|| {
            conn.write_message(&mut out, Message::Text("hello"))
                .unwrap();
            conn.write_message(&mut out, Message::Binary(&[0; 1000]))
                .unwrap();
            conn.ping(&mut out, b"p").unwrap();
        });
        assert_eq!(n, 0);
        assert!(out.len() > 1000);
    }
}

const BROWSER_REQUEST: &[u8] = b"GET /socket?room=lobby HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

#[test]
fn parse_request_and_write_accept_allocate_nothing() {
    let mut out = Vec::with_capacity(512);
    let (count, ()) = allocations_in(|| {
        let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
        let parsed =
            handshake::parse_request(BROWSER_REQUEST, &mut headers, DEFAULT_MAX_HEADER_BYTES);
        let Ok(Some((req, consumed))) = parsed else {
            panic!("the request is valid");
        };
        assert_eq!(consumed, BROWSER_REQUEST.len());
        let protocol = req.subprotocols().find(|p| *p == "superchat");
        let deflate = req
            .extensions()
            .any(|offer| offer.name() == "permessage-deflate");
        assert!(deflate);
        handshake::write_accept(&mut out, req.key().as_bytes(), protocol, None);
        std::hint::black_box(&out);
    });
    assert_eq!(count, 0, "the handshake path allocated");
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));

    // The refusal paths are allocation-free as well.
    let (count, ()) = allocations_in(|| {
        out.clear();
        let mut headers = [EMPTY_HEADER; 4];
        if let Err(e) = handshake::parse_request(BROWSER_REQUEST, &mut headers, 8192) {
            handshake::write_error(&mut out, &e);
        }
        handshake::write_status(&mut out, 403);
    });
    assert_eq!(count, 0, "the refusal path allocated");
    assert!(out.starts_with(b"HTTP/1.1 431 "));
}
