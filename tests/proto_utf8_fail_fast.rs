//! Text is validated as it arrives: invalid UTF-8 fails the connection as soon as the
//! bytes seen so far cannot begin valid UTF-8, even in the middle of a frame whose
//! payload is still arriving (Autobahn 6.4.1–6.4.4).

mod util;

use util::{Driver, Ev, client_frame};
use wsreactor::proto::Connection;
use wsreactor::proto::frame::OpCode;

const KEY: [u8; 4] = [0x80, 0x7f, 0x01, 0xfe];

/// κόσμε followed by U+110000 encoded as f4 90 80 80, then "edited".
const PART1: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
const PART2: &[u8] = b"\xf4\x90\x80\x80";
const PART3: &[u8] = b"\x65\x64\x69\x74\x65\x64";

fn payload() -> Vec<u8> {
    [PART1, PART2, PART3].concat()
}

#[test]
fn autobahn_6_4_3_fails_inside_a_frame_still_arriving() {
    // One frame; its first 13 payload bytes (PART1 and f4 90) arrive, the rest never does.
    let frame = client_frame(OpCode::Text, true, &payload(), KEY);
    let header_len = 6;
    let mut d = Driver::new(Connection::server());
    d.feed(&frame[..header_len + PART1.len()]);
    assert!(d.events.is_empty(), "valid so far");
    d.feed(&frame[header_len + PART1.len()..header_len + PART1.len() + 2]);
    assert_eq!(d.events, vec![Ev::Error(1007)]);
}

#[test]
fn autobahn_6_4_4_fails_on_the_first_impossible_byte() {
    let frame = client_frame(OpCode::Text, true, &payload(), KEY);
    let header_len = 6;
    let mut d = Driver::new(Connection::server());
    // f4 alone could still begin a character: wait.
    d.feed(&frame[..header_len + PART1.len() + 1]);
    assert!(d.events.is_empty());
    // f4 90 cannot: fail now, without waiting for the frame's end.
    d.feed(&frame[header_len + PART1.len() + 1..header_len + PART1.len() + 2]);
    assert_eq!(d.events, vec![Ev::Error(1007)]);
}

#[test]
fn autobahn_6_4_1_fails_on_the_fragment_that_breaks_it() {
    let mut d = Driver::new(Connection::server());
    d.feed(&client_frame(OpCode::Text, false, PART1, KEY));
    assert!(d.events.is_empty());
    d.feed(&client_frame(OpCode::Continuation, false, PART2, KEY));
    assert_eq!(d.events, vec![Ev::Error(1007)]);
}

#[test]
fn a_character_split_across_reads_and_fragments_is_accepted() {
    let text = "€𝄞κόσμε";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        let mut wire = client_frame(OpCode::Text, false, &bytes[..cut], KEY);
        wire.extend(client_frame(OpCode::Continuation, true, &bytes[cut..], KEY));
        let mut d = Driver::new(Connection::server());
        for b in &wire {
            d.feed(std::slice::from_ref(b));
        }
        assert_eq!(d.events, vec![Ev::Text(text.into())], "cut {cut}");
    }
}
