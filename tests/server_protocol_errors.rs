//! A peer that breaks RFC 6455 after the upgrade gets a close frame with the right
//! code, then the server closes the TCP connection; a well-behaved client on the
//! same reactor is echoed before and after, and the counters record each close.

#[path = "util/server.rs"]
mod server;
mod util;

use std::io::Write;
use std::net::TcpStream;

use server::{
    Client, Echo, PATIENCE, assert_echo, connect, raw_ws, read_close_code, read_frame,
    read_until_closed, start, test_config, wait_for_stats,
};
use util::{client_frame, frame};
use wsreactor::proto::frame::{FrameHeader, OpCode};
use wsreactor::{Config, ServerHandle};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const LIMIT: usize = 1024;

/// A server with one well-behaved client, which must be echoed before and after
/// every misbehaving connection.
struct Bench {
    // Dropped before the server, so that its shutdown has no close handshake to wait for.
    good: Client,
    server: ServerHandle,
}

impl Bench {
    fn start(config: Config) -> Bench {
        let server = start(config, Echo);
        let mut good = connect(server.local_addr(), "/");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = good.get_ref() {
            s.set_read_timeout(Some(PATIENCE)).unwrap();
        }
        assert_echo(&mut good, "before");
        Bench { good, server }
    }

    /// A raw connection past the upgrade; a read that times out is a hang.
    fn raw(&self) -> TcpStream {
        let s = raw_ws(self.server.local_addr());
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    }

    /// The code of the close frame the server sends on `s`, after checking that
    /// nothing follows it, that the server then closes the connection, and that the
    /// good client is still served.
    fn close_code(&mut self, s: &mut TcpStream) -> u16 {
        let code = read_close_code(s).expect("the server sends a close frame");
        let after = read_until_closed(s);
        assert!(after.is_empty(), "bytes after the close frame: {after:?}");
        assert_echo(&mut self.good, "still here");
        code
    }

    /// Sends `bytes` on a fresh raw connection and returns the close code it gets.
    fn close_code_after(&mut self, bytes: &[u8]) -> u16 {
        let mut s = self.raw();
        s.write_all(bytes).unwrap();
        self.close_code(&mut s)
    }

    /// Waits until `n` connections have closed with `code`, none with another code,
    /// and only the good client is open.
    fn assert_closes(&self, code: u16, n: u64) {
        let stats = wait_for_stats(&self.server, PATIENCE, |s| {
            s.closed_with(code) == n && s.open == 1
        });
        assert_eq!(stats.closed(), n, "closes with other codes: {stats:?}");
    }
}

/// A masked frame header announcing `len` payload bytes, without the payload.
fn header_only(opcode: OpCode, fin: bool, len: u64) -> Vec<u8> {
    FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask: Some(KEY),
        payload_len: len,
    }
    .encode()
    .as_bytes()
    .to_vec()
}

fn text(fin: bool, payload: &[u8]) -> Vec<u8> {
    client_frame(OpCode::Text, fin, payload, KEY)
}

fn continuation(fin: bool, payload: &[u8]) -> Vec<u8> {
    client_frame(OpCode::Continuation, fin, payload, KEY)
}

fn close(payload: &[u8]) -> Vec<u8> {
    client_frame(OpCode::Close, true, payload, KEY)
}

fn with_first_byte(mut frame: Vec<u8>, first: u8) -> Vec<u8> {
    frame[0] = first;
    frame
}

#[test]
fn bad_frames_are_closed_with_1002() {
    let mut bench = Bench::start(test_config());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "reserved data opcode 0x3",
            with_first_byte(text(true, b"hi"), 0x83),
        ),
        (
            "reserved control opcode 0xB",
            with_first_byte(text(true, b"hi"), 0x8b),
        ),
        (
            "RSV1 without an extension",
            with_first_byte(text(true, b"hi"), 0xc1),
        ),
        ("RSV2", with_first_byte(text(true, b"hi"), 0xa1)),
        ("RSV3", with_first_byte(text(true, b"hi"), 0x91)),
        (
            "unmasked client frame",
            frame(OpCode::Text, true, b"hi", None),
        ),
        (
            "fragmented ping",
            frame(OpCode::Ping, false, b"hi", Some(KEY)),
        ),
        (
            "ping longer than 125 bytes",
            client_frame(OpCode::Ping, true, &[b'p'; 126], KEY),
        ),
        ("continuation without a start", continuation(true, b"hi")),
        (
            "new message inside a fragmented one",
            [text(false, b"one"), text(true, b"two")].concat(),
        ),
    ];
    for (what, bytes) in &cases {
        assert_eq!(bench.close_code_after(bytes), 1002, "{what}");
    }
    bench.assert_closes(1002, cases.len() as u64);
}

#[test]
fn invalid_utf8_in_text_is_closed_with_1007() {
    let mut bench = Bench::start(test_config());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a lone 0xFF", text(true, b"ok \xff")),
        ("an overlong slash", text(true, b"\xc0\xaf")),
        ("a surrogate", text(true, b"\xed\xa0\x80")),
        ("ends inside a character", text(true, b"caf\xc3")),
        (
            "bad continuation byte in the next fragment",
            [text(false, b"caf\xc3"), continuation(true, b"(")].concat(),
        ),
        (
            "surrogate split across fragments",
            [text(false, b"\xed"), continuation(true, b"\xa0\x80")].concat(),
        ),
        (
            "last fragment leaves a character unfinished",
            [text(false, b"\xe2\x82"), continuation(true, b"")].concat(),
        ),
    ];
    for (what, bytes) in &cases {
        assert_eq!(bench.close_code_after(bytes), 1007, "{what}");
    }
    bench.assert_closes(1007, cases.len() as u64);
}

#[test]
fn invalid_utf8_is_refused_before_the_message_ends() {
    let mut bench = Bench::start(test_config());
    // The first fragment is already impossible: the close must not wait for the rest.
    assert_eq!(bench.close_code_after(&text(false, b"ok \xff")), 1007);
    bench.assert_closes(1007, 1);
}

#[test]
fn a_character_split_across_fragments_is_reassembled() {
    let bench = Bench::start(test_config());
    let mut s = bench.raw();
    s.write_all(&[text(false, b"\xe2\x82"), continuation(true, b"\xac")].concat())
        .unwrap();
    assert_eq!(read_frame(&mut s), Some((0x1, "€".as_bytes().to_vec())));
}

#[test]
fn a_frame_announcing_more_than_the_limit_is_refused_at_its_header() {
    let mut bench = Bench::start(test_config().with_max_message_size(LIMIT));
    // A message of exactly the limit is fine.
    assert_echo(&mut bench.good, &"x".repeat(LIMIT));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "text, 16-bit length one past the limit",
            header_only(OpCode::Text, true, LIMIT as u64 + 1),
        ),
        (
            "binary, 16-bit length",
            header_only(OpCode::Binary, true, 60_000),
        ),
        (
            "binary, 64-bit length of 1 TiB",
            header_only(OpCode::Binary, true, 1 << 40),
        ),
        (
            "a continuation that would take the message past the limit",
            [
                client_frame(OpCode::Binary, false, &[7; 1000], KEY),
                header_only(OpCode::Continuation, true, 25),
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in &cases {
        // Only the header is sent: a server that waited for the payload would time out.
        assert_eq!(bench.close_code_after(bytes), 1009, "{what}");
    }
    bench.assert_closes(1009, cases.len() as u64);
}

#[test]
fn a_message_trickled_in_one_byte_fragments_past_the_limit_is_closed_with_1009() {
    let mut bench = Bench::start(test_config().with_max_message_size(LIMIT));
    let mut s = bench.raw();
    let trickle = |s: &mut TcpStream, bytes: usize, fin_on_last: bool| {
        s.write_all(&text(false, b"a")).unwrap();
        for i in 1..bytes {
            let fin = fin_on_last && i == bytes - 1;
            s.write_all(&continuation(fin, b"a")).unwrap();
        }
    };
    // The limit counts a message, not the connection: a message of exactly the limit
    // comes back whole.
    trickle(&mut s, LIMIT, true);
    assert_eq!(read_frame(&mut s), Some((0x1, vec![b'a'; LIMIT])));
    // One byte more is refused when that byte's frame header arrives.
    trickle(&mut s, LIMIT + 1, false);
    assert_eq!(bench.close_code(&mut s), 1009);
    // The server has closed its side; closing ours ends the connection.
    drop(s);
    bench.assert_closes(1009, 1);
}

#[test]
fn bad_close_frames_are_closed_with_1002() {
    let mut bench = Bench::start(test_config());
    let mut cases: Vec<(String, Vec<u8>)> = vec![("a 1-byte payload".to_owned(), close(&[0x03]))];
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        cases.push((format!("code {code}"), close(&code.to_be_bytes())));
    }
    for (what, bytes) in &cases {
        assert_eq!(bench.close_code_after(bytes), 1002, "{what}");
    }
    bench.assert_closes(1002, cases.len() as u64);
}

#[test]
fn a_close_reason_that_is_not_utf8_is_closed_with_1007() {
    let mut bench = Bench::start(test_config());
    let payload = [&1000u16.to_be_bytes()[..], b"bye \xff"].concat();
    assert_eq!(bench.close_code_after(&close(&payload)), 1007);
    bench.assert_closes(1007, 1);
}

#[test]
fn valid_close_codes_are_echoed_and_counted() {
    let mut bench = Bench::start(test_config());
    let codes = [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4999];
    for code in codes {
        let payload = [&code.to_be_bytes()[..], "fin ✓".as_bytes()].concat();
        assert_eq!(bench.close_code_after(&close(&payload)), code);
    }
    let stats = wait_for_stats(&bench.server, PATIENCE, |s| {
        s.closed() == codes.len() as u64 && s.open == 1
    });
    assert_eq!(
        (
            stats.closed_with(1000),
            stats.closed_with(1011),
            stats.closed_with(1002)
        ),
        (1, 1, 0)
    );
}
