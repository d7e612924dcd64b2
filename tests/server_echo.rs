//! Echo through a real server: text and binary from 0 B to 16 MiB, ping and pong, the
//! close handshake, with `wsreactor::client` as the peer; fragmented messages with
//! tungstenite's client (ours sends every message as one frame).

#[path = "util/server.rs"]
mod server;

use server::{Echo, connect, start, test_config, ws_client};
use tungstenite::Message as T;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use wsreactor::client::{Error, Incoming};
use wsreactor::{CloseCode, Message};

#[test]
fn text_and_binary_of_every_size_come_back_exactly() {
    let server = start(test_config(), Echo);
    let mut ws = ws_client(server.local_addr(), "/");
    let sizes = [
        0,
        1,
        125,
        126,
        127,
        65_535,
        65_536,
        100_000,
        1 << 20,
        16 << 20,
    ];
    for &size in &sizes {
        let binary: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        ws.send(Message::Binary(&binary)).unwrap();
        assert_eq!(
            ws.recv().unwrap(),
            Incoming::Message(Message::Binary(&binary)),
            "binary of {size} bytes"
        );
        let text: String = "aé€𝄞"
            .chars()
            .cycle()
            .scan(0, |n, c| {
                *n += c.len_utf8();
                (*n <= size).then_some(c)
            })
            .collect();
        ws.send(Message::Text(&text)).unwrap();
        assert_eq!(
            ws.recv().unwrap(),
            Incoming::Message(Message::Text(&text)),
            "text of about {size} bytes"
        );
    }
    let stats = server.stats();
    assert!(stats.messages_in >= 2 * sizes.len() as u64);
}

#[test]
fn fragmented_messages_are_reassembled() {
    let server = start(test_config(), Echo);
    let mut ws = connect(server.local_addr(), "/");
    let parts: [&[u8]; 4] = [b"frag", b"", b"mented ", "tëxt".as_bytes()];
    for (i, part) in parts.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.to_vec(), op, i == parts.len() - 1);
        ws.write(T::Frame(frame)).unwrap();
        if i == 1 {
            ws.write(T::Ping(b"between".to_vec().into())).unwrap();
        }
    }
    ws.flush().unwrap();
    // The pong for the ping between fragments comes first.
    assert_eq!(ws.read().unwrap(), T::Pong(b"between".to_vec().into()));
    assert_eq!(ws.read().unwrap(), T::text("fragmented tëxt"));
}

#[test]
fn a_ping_gets_a_pong_with_its_payload() {
    let server = start(test_config(), Echo);
    let mut ws = ws_client(server.local_addr(), "/");
    ws.ping(b"hello?").unwrap();
    assert_eq!(ws.recv().unwrap(), Incoming::Pong(b"hello?"));
}

#[test]
fn a_client_close_is_answered_and_reported() {
    let server = start(test_config(), Echo);
    let mut ws = ws_client(server.local_addr(), "/");
    ws.close(CloseCode::NORMAL, "done").unwrap();
    // recv returns the server's reply once the server has closed TCP.
    match ws.recv().unwrap() {
        Incoming::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::NORMAL),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(ws.recv(), Err(Error::Closed)));
    server::wait_until(server::PATIENCE, || {
        server.stats().closed_with(1000) == 1 && server.stats().open == 0
    });
}
