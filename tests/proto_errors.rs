//! Each protocol violation fails the connection with the right close code, written
//! to the peer before anything else happens, and nothing is read after it.

mod util;

use util::{Driver, Ev, client_frame, close_code_sent};
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::{Connection, Limits};

const KEY: [u8; 4] = [1, 2, 3, 4];

/// Feeds `bytes` to a server connection and returns (events, close code sent).
fn fail_with(bytes: &[u8], limits: Limits) -> (Vec<Ev>, Option<u16>) {
    let mut d = Driver::with_limits(Connection::server(), limits);
    d.feed(bytes);
    assert!(
        d.conn.is_closed(),
        "connection not closed after {:?}",
        d.events
    );
    // Nothing more is read once the connection failed.
    d.feed(&client_frame(OpCode::Text, true, b"after", KEY));
    (d.events, close_code_sent(&d.out))
}

fn assert_fails(bytes: &[u8], code: u16) {
    let (events, sent) = fail_with(bytes, Limits::default());
    assert_eq!(events.last(), Some(&Ev::Error(code)), "events {events:?}");
    assert_eq!(sent, Some(code));
}

#[test]
fn bad_frames_close_with_1002() {
    // Reserved opcode, RSV bit without extension, unmasked client frame,
    // fragmented ping, 126-byte ping, 64-bit length with the top bit set.
    assert_fails(&[0x83, 0x80, 0, 0, 0, 0], 1002);
    assert_fails(&[0xc1, 0x80, 0, 0, 0, 0], 1002);
    assert_fails(&[0x81, 0x00], 1002);
    assert_fails(&[0x09, 0x80, 0, 0, 0, 0], 1002);
    assert_fails(&[0x89, 0xfe, 0, 126], 1002);
    assert_fails(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0], 1002);
}

#[test]
fn broken_fragment_sequences_close_with_1002() {
    // A continuation with no message, and a new message inside a fragmented one.
    assert_fails(&client_frame(OpCode::Continuation, true, b"x", KEY), 1002);
    let mut bytes = client_frame(OpCode::Text, false, b"a", KEY);
    bytes.extend(client_frame(OpCode::Text, true, b"b", KEY));
    assert_fails(&bytes, 1002);
}

#[test]
fn a_frame_over_the_limit_closes_with_1009_before_its_payload_arrives() {
    let limits = Limits::new(1000, 4000);
    // Only the header: 1001 bytes announced, none sent.
    let header = &client_frame(OpCode::Binary, true, &[0; 1001], KEY)[..8];
    let (events, sent) = fail_with(header, limits);
    assert_eq!((events, sent), (vec![Ev::Error(1009)], Some(1009)));
    // 2^63 - 1 bytes announced.
    let huge = [
        0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
    ];
    assert_eq!(fail_with(&huge, Limits::default()).1, Some(1009));
}

#[test]
fn a_message_growing_past_the_limit_in_small_frames_closes_with_1009() {
    let limits = Limits::new(1000, 4000);
    let mut d = Driver::with_limits(Connection::server(), limits);
    d.feed(&client_frame(OpCode::Binary, false, &[0; 1000], KEY));
    for _ in 0..2 {
        d.feed(&client_frame(OpCode::Continuation, false, &[0; 1000], KEY));
    }
    d.feed(&client_frame(OpCode::Continuation, false, &[0; 999], KEY));
    assert!(d.events.is_empty());
    // 3999 bytes held; a 2-byte frame would make 4001.
    d.feed(&client_frame(OpCode::Continuation, true, &[0; 2], KEY)[..6]);
    assert_eq!(d.events, vec![Ev::Error(1009)]);
    assert_eq!(close_code_sent(&d.out), Some(1009));
    // Exactly at the limit is fine.
    let mut d = Driver::with_limits(Connection::server(), limits);
    d.feed(&client_frame(OpCode::Binary, false, &[0; 1000], KEY));
    for _ in 0..3 {
        d.feed(&client_frame(OpCode::Continuation, false, &[0; 1000], KEY));
    }
    d.feed(&client_frame(OpCode::Continuation, true, &[], KEY));
    assert_eq!(d.events, vec![Ev::Binary(vec![0; 4000])]);
}

#[test]
fn a_message_trickled_in_one_byte_frames_past_the_limit_closes_with_1009() {
    let limits = Limits::new(16, 64);
    let mut d = Driver::with_limits(Connection::server(), limits);
    d.feed(&client_frame(OpCode::Text, false, b"a", KEY));
    for _ in 0..63 {
        d.feed(&client_frame(OpCode::Continuation, false, b"a", KEY));
    }
    assert!(d.events.is_empty());
    d.feed(&client_frame(OpCode::Continuation, false, b"a", KEY));
    assert_eq!(d.events, vec![Ev::Error(1009)]);
}

#[test]
fn invalid_utf8_closes_with_1007() {
    assert_fails(&client_frame(OpCode::Text, true, b"\xff", KEY), 1007);
    // Split across fragments: each fragment alone is not the problem.
    let mut bytes = client_frame(OpCode::Text, false, b"\xce", KEY);
    bytes.extend(client_frame(OpCode::Continuation, true, b"\xba\xe1", KEY));
    assert_fails(&bytes, 1007);
    // A truncated character at the end of the message.
    assert_fails(&client_frame(OpCode::Text, true, b"ok\xe1\xbd", KEY), 1007);
}

#[test]
fn bad_close_payloads() {
    assert_fails(&client_frame(OpCode::Close, true, &[3], KEY), 1002);
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        assert_fails(
            &client_frame(OpCode::Close, true, &code.to_be_bytes(), KEY),
            1002,
        );
    }
    assert_fails(
        &client_frame(OpCode::Close, true, &[0x03, 0xe8, 0xff], KEY),
        1007,
    );
}

#[test]
fn a_client_rejects_masked_server_frames() {
    let mut d = Driver::new(Connection::client(1));
    d.feed(&client_frame(OpCode::Text, true, b"masked", KEY));
    assert_eq!(d.events, vec![Ev::Error(1002)]);
    assert_eq!(close_code_sent(&d.out), Some(1002));
}
