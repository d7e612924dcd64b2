//! The close handshake, from either side.

mod util;

use util::{Driver, Ev, client_frame, parse_frames};
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::{CloseCode, CloseState, Connection, SendError};

const KEY: [u8; 4] = [9, 9, 9, 9];

#[test]
fn a_peer_initiated_close_is_echoed_and_finishes_the_connection() {
    let mut d = Driver::new(Connection::server());
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    d.feed(&client_frame(OpCode::Close, true, &payload, KEY));
    assert_eq!(d.events, vec![Ev::Close(Some((1000, "bye".into())))]);
    assert_eq!(
        parse_frames(&d.out),
        vec![(OpCode::Close, true, vec![0x03, 0xe8])]
    );
    assert!(d.conn.is_closed());
    assert_eq!(
        d.conn
            .write_message(&mut d.out, wsreactor::proto::Message::Text("x")),
        Err(SendError::Closed)
    );
}

#[test]
fn an_empty_close_is_answered_with_an_empty_close() {
    let mut d = Driver::new(Connection::server());
    d.feed(&client_frame(OpCode::Close, true, &[], KEY));
    assert_eq!(d.events, vec![Ev::Close(None)]);
    assert_eq!(parse_frames(&d.out), vec![(OpCode::Close, true, vec![])]);
}

#[test]
fn a_close_we_initiate_waits_for_the_reply_and_still_delivers_messages() {
    let mut d = Driver::new(Connection::server());
    d.conn
        .close(&mut d.out, CloseCode::GOING_AWAY, "shutdown")
        .unwrap();
    assert_eq!(d.conn.close_state(), CloseState::SentClose);
    assert_eq!(
        d.conn.close(&mut d.out, CloseCode::NORMAL, ""),
        Err(SendError::Closed)
    );
    d.feed(&client_frame(OpCode::Text, true, b"late", KEY));
    d.feed(&client_frame(OpCode::Ping, true, b"p", KEY));
    d.feed(&client_frame(
        OpCode::Close,
        true,
        &1001u16.to_be_bytes(),
        KEY,
    ));
    assert_eq!(
        d.events,
        vec![
            Ev::Text("late".into()),
            Ev::Ping(b"p".to_vec()),
            Ev::Close(Some((1001, String::new())))
        ]
    );
    // Only our close frame went out: no pong after closing, no second close.
    let mut reason = 1001u16.to_be_bytes().to_vec();
    reason.extend_from_slice(b"shutdown");
    assert_eq!(parse_frames(&d.out), vec![(OpCode::Close, true, reason)]);
    assert!(d.conn.is_closed());
}

#[test]
fn codes_that_may_not_be_sent_are_refused() {
    let mut out = Vec::new();
    let mut conn = Connection::server();
    assert_eq!(
        conn.close(&mut out, CloseCode::ABNORMAL, ""),
        Err(SendError::InvalidCloseCode)
    );
    assert!(out.is_empty());
    conn.close(&mut out, CloseCode::NO_STATUS, "").unwrap();
    assert_eq!(parse_frames(&out), vec![(OpCode::Close, true, vec![])]);
}
