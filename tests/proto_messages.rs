//! Messages through the server-role state machine: whole, fragmented, interleaved
//! with control frames, and split across reads at every point.

mod util;

use util::{Driver, Ev, client_frame, parse_frames, server_events};
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::{Connection, Decoded, Event, Limits, Message};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

#[test]
fn a_whole_text_message_is_delivered_from_the_input_buffer_itself() {
    let mut bytes = client_frame(OpCode::Text, true, "héllo".as_bytes(), KEY);
    let base = bytes.as_ptr() as usize;
    let mut conn = Connection::server();
    let mut out = Vec::new();
    match conn.decode(&mut bytes, &mut out, &Limits::default()) {
        Decoded::Event {
            consumed,
            event: Event::Message(Message::Text(text)),
        } => {
            assert_eq!(text, "héllo");
            assert_eq!(consumed, 2 + 4 + 6);
            // Zero copy: the text points into the input buffer, after the header.
            assert_eq!(text.as_ptr() as usize, base + 6);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(out.is_empty());
    assert_eq!(conn.held(), 0);
}

#[test]
fn binary_and_empty_messages() {
    let mut bytes = client_frame(OpCode::Binary, true, &[0, 1, 2, 255], KEY);
    bytes.extend(client_frame(OpCode::Text, true, b"", KEY));
    bytes.extend(client_frame(OpCode::Binary, true, b"", KEY));
    assert_eq!(
        server_events(&bytes),
        vec![
            Ev::Binary(vec![0, 1, 2, 255]),
            Ev::Text(String::new()),
            Ev::Binary(vec![])
        ]
    );
}

#[test]
fn lengths_across_the_16_and_64_bit_boundaries() {
    for len in [125, 126, 127, 65535, 65536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let bytes = client_frame(OpCode::Binary, true, &payload, KEY);
        assert_eq!(
            server_events(&bytes),
            vec![Ev::Binary(payload)],
            "len {len}"
        );
    }
}

#[test]
fn fragments_with_control_frames_between_them_are_reassembled() {
    let mut bytes = client_frame(OpCode::Text, false, b"Hel", KEY);
    bytes.extend(client_frame(OpCode::Ping, true, b"p1", KEY));
    bytes.extend(client_frame(OpCode::Continuation, false, b"", KEY));
    bytes.extend(client_frame(OpCode::Pong, true, b"", KEY));
    bytes.extend(client_frame(OpCode::Continuation, false, b"lo, ", KEY));
    bytes.extend(client_frame(OpCode::Ping, true, b"p2", KEY));
    bytes.extend(client_frame(OpCode::Continuation, true, b"world", KEY));
    bytes.extend(client_frame(OpCode::Binary, true, b"next", KEY));
    let expected = vec![
        Ev::Ping(b"p1".to_vec()),
        Ev::Pong(vec![]),
        Ev::Ping(b"p2".to_vec()),
        Ev::Text("Hello, world".into()),
        Ev::Binary(b"next".to_vec()),
    ];
    let mut d = Driver::new(Connection::server());
    d.feed(&bytes);
    assert_eq!(d.events, expected);
    // Both pings were answered, in order, unmasked.
    let replies = parse_frames(&d.out);
    assert_eq!(
        replies,
        vec![
            (OpCode::Pong, true, b"p1".to_vec()),
            (OpCode::Pong, true, b"p2".to_vec())
        ]
    );
    assert_eq!(d.input.len(), 0);
}

#[test]
fn every_split_point_gives_the_same_events_as_one_read() {
    let mut bytes = client_frame(OpCode::Binary, false, &[7; 300], KEY);
    bytes.extend(client_frame(OpCode::Ping, true, b"ping", KEY));
    bytes.extend(client_frame(OpCode::Continuation, true, &[9; 70], KEY));
    bytes.extend(client_frame(OpCode::Text, true, "κόσμε".as_bytes(), KEY));
    let whole = server_events(&bytes);
    assert_eq!(whole.len(), 3);
    for a in 0..=bytes.len() {
        let mut d = Driver::new(Connection::server());
        d.feed_split(&bytes, &[a]);
        assert_eq!(d.events, whole, "split at {a}");
    }
    // And one byte at a time.
    let mut d = Driver::new(Connection::server());
    for b in &bytes {
        d.feed(std::slice::from_ref(b));
    }
    assert_eq!(d.events, whole);
}

#[test]
fn an_idle_connection_keeps_nothing_and_a_partial_frame_keeps_only_its_payload() {
    let bytes = client_frame(OpCode::Binary, true, &[5; 1000], KEY);
    let mut conn = Connection::server();
    let mut out = Vec::new();
    let limits = Limits::default();
    let mut first = bytes[..500].to_vec();
    let keep = match conn.decode(&mut first, &mut out, &limits) {
        Decoded::NeedMore { keep } => keep,
        other => panic!("unexpected {other:?}"),
    };
    // The 8-byte header is dropped; the 492 payload bytes that arrived are kept, unmasked.
    assert_eq!(keep, 8..500);
    assert!(first[keep.clone()].iter().all(|&b| b == 5));
    let mut next = first[keep].to_vec();
    next.extend_from_slice(&bytes[500..]);
    match conn.decode(&mut next, &mut out, &limits) {
        Decoded::Event {
            consumed,
            event: Event::Message(m),
        } => {
            assert_eq!(m.as_bytes(), &[5; 1000][..]);
            assert_eq!(consumed, 1000);
        }
        other => panic!("unexpected {other:?}"),
    }
    let mut empty = Vec::new();
    assert!(matches!(
        conn.decode(&mut empty, &mut out, &limits),
        Decoded::NeedMore { keep } if keep.is_empty()
    ));
}

#[test]
fn a_client_connection_reads_unmasked_server_frames_and_masks_its_replies() {
    let mut bytes = util::server_frame(OpCode::Ping, true, b"abc");
    bytes.extend(util::server_frame(OpCode::Text, true, b"hi"));
    let mut d = Driver::new(Connection::client(42));
    d.feed(&bytes);
    assert_eq!(
        d.events,
        vec![Ev::Ping(b"abc".to_vec()), Ev::Text("hi".into())]
    );
    // The pong is masked (bit 0x80 of byte 1) and carries the ping's payload.
    assert_eq!(d.out[1] & 0x80, 0x80);
    assert_eq!(
        parse_frames(&d.out),
        vec![(OpCode::Pong, true, b"abc".to_vec())]
    );
}

#[test]
fn messages_written_by_each_role_are_read_by_the_other() {
    for role_is_server in [true, false] {
        let (mut writer, reader) = if role_is_server {
            (Connection::server(), Connection::client(7))
        } else {
            (Connection::client(7), Connection::server())
        };
        let mut wire = Vec::new();
        writer
            .write_message(&mut wire, Message::Text("one"))
            .unwrap();
        writer
            .write_frame(&mut wire, OpCode::Binary, false, &[1, 2])
            .unwrap();
        writer.ping(&mut wire, b"x").unwrap();
        writer
            .write_frame(&mut wire, OpCode::Continuation, true, &[3])
            .unwrap();
        let mut d = Driver::new(reader);
        d.feed(&wire);
        assert_eq!(
            d.events,
            vec![
                Ev::Text("one".into()),
                Ev::Ping(b"x".to_vec()),
                Ev::Binary(vec![1, 2, 3])
            ]
        );
    }
}
