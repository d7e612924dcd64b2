//! The seed corpora: small valid and broken inputs for every target, built with the crate's
//! own encoders so they stay right. `cargo run --bin seeds` writes them to `corpus/`.

use wsreactor::proto::frame::{FrameHeader, OpCode};
use wsreactor::proto::handshake;
use wsreactor::proto::mask::apply_mask_plain;

use crate::conn::CONFIG_LEN;

/// One seed: its target, a file name that says what it is, and its bytes.
pub struct Seed {
    pub target: &'static str,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    handshake_request(&mut seeds);
    handshake_response(&mut seeds);
    frame_header(&mut seeds);
    conn(&mut seeds);
    deflate(&mut seeds);
    tls(&mut seeds);
    seeds
}

fn push(seeds: &mut Vec<Seed>, target: &'static str, name: &str, bytes: Vec<u8>) {
    seeds.push(Seed {
        target,
        name: name.to_string(),
        bytes,
    });
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(extra: &str) -> String {
    format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn handshake_request(seeds: &mut Vec<Seed>) {
    let t = "handshake_request";
    // Byte 0: limit index (0 is the default 8 KiB), byte 1: header slots, byte 2: prefix cut.
    let with = |config: [u8; 3], head: &str| [&config[..], head.as_bytes()].concat();
    let d = [0, 64, 128];
    push(seeds, t, "rfc6455_sample", with(d, &request("")));
    push(
        seeds,
        t,
        "protocols_extensions_origin",
        with(
            d,
            &request(
                "Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
                 Sec-WebSocket-Protocol: \"v2\"\r\nSec-WebSocket-Extensions: permessage-deflate; \
                 client_max_window_bits, x-webkit-deflate-frame; a=\"b;c\"\r\n",
            ),
        ),
    );
    push(
        seeds,
        t,
        "frames_after_head",
        [
            with(d, &request("")),
            client_frame(OpCode::Text, true, b"hi"),
        ]
        .concat(),
    );
    push(
        seeds,
        t,
        "plain_get",
        with(d, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    );
    push(
        seeds,
        t,
        "post_upgrade",
        with(d, &request("").replacen("GET", "POST", 1)),
    );
    push(
        seeds,
        t,
        "http_1_0",
        with(d, &request("").replacen("HTTP/1.1", "HTTP/1.0", 1)),
    );
    push(seeds, t, "two_hosts", with(d, &request("Host: b\r\n")));
    push(
        seeds,
        t,
        "no_host",
        with(
            d,
            &request("").replacen("Host: server.example.com\r\n", "", 1),
        ),
    );
    push(
        seeds,
        t,
        "two_keys",
        with(d, &request(&format!("Sec-WebSocket-Key: {KEY}\r\n"))),
    );
    push(
        seeds,
        t,
        "bad_key",
        with(d, &request("").replacen("Q==", "R==", 1)),
    );
    push(
        seeds,
        t,
        "version_8",
        with(d, &request("").replacen(": 13", ": 8", 1)),
    );
    push(seeds, t, "body", with(d, &request("Content-Length: 5\r\n")));
    push(
        seeds,
        t,
        "chunked",
        with(d, &request("Transfer-Encoding: chunked\r\n")),
    );
    push(
        seeds,
        t,
        "no_connection_upgrade",
        with(
            d,
            &request("").replacen("Connection: Upgrade", "Connection: keep-alive", 1),
        ),
    );
    push(
        seeds,
        t,
        "two_origins",
        with(d, &request("Origin: a\r\nOrigin: b\r\n")),
    );
    push(
        seeds,
        t,
        "bare_lf",
        with(d, &request("").replace("\r\n", "\n")),
    );
    push(
        seeds,
        t,
        "too_many_headers",
        with([0, 3, 128], &request("")),
    );
    push(seeds, t, "too_large", with([1, 64, 128], &request("")));
    push(seeds, t, "partial", with(d, &request("")[..40]));
    push(
        seeds,
        t,
        "tls_hello",
        [&d[..], b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"].concat(),
    );
    // Bit 7 of byte 0: a client request round trip; the fields are separated by NUL.
    push(
        seeds,
        t,
        "round_trip",
        [
            &[0x80, 64, 0][..],
            b"example.com\0chat?room=1\0http://example.com\0chat\0superchat",
        ]
        .concat(),
    );
}

fn handshake_response(seeds: &mut Vec<Seed>) {
    let t = "handshake_response";
    let nonce = *b"the sample nonce";
    let key = handshake::encode_key(nonce);
    let mut accept = Vec::new();
    handshake::write_accept(&mut accept, &key, None, None);
    let mut chat = Vec::new();
    handshake::write_accept(&mut chat, &key, Some("chat"), None);
    let accept_text = String::from_utf8_lossy(&accept).into_owned();
    // Bytes 0–15: the nonce, byte 16: offered subprotocols (bit 0: chat, 1: superchat).
    let with = |offer: u8, response: &[u8]| [&nonce[..], &[offer], response].concat();
    push(seeds, t, "accept", with(0, &accept));
    push(seeds, t, "accept_chat", with(3, &chat));
    push(seeds, t, "unoffered_chat", with(2, &chat));
    push(
        seeds,
        t,
        "accept_then_frame",
        [with(0, &accept), server_frame(OpCode::Text, true, b"hi")].concat(),
    );
    push(
        seeds,
        t,
        "refused_400",
        with(0, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
    );
    push(
        seeds,
        t,
        "no_upgrade",
        with(
            0,
            accept_text
                .replacen("Upgrade: websocket\r\n", "", 1)
                .as_bytes(),
        ),
    );
    push(
        seeds,
        t,
        "bad_accept",
        with(
            0,
            accept_text.replacen("Accept: ", "Accept: x", 1).as_bytes(),
        ),
    );
    push(
        seeds,
        t,
        "extensions",
        with(
            0,
            accept_text
                .replacen(
                    "\r\n\r\n",
                    "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
                    1,
                )
                .as_bytes(),
        ),
    );
    push(
        seeds,
        t,
        "http_1_0",
        with(
            0,
            accept_text.replacen("HTTP/1.1", "HTTP/1.0", 1).as_bytes(),
        ),
    );
    push(seeds, t, "partial", with(0, &accept[..50]));
}

/// A masked frame as a client sends it, with a fixed key.
fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// An unmasked frame as a server sends it.
fn server_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, payload, None)
}

fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut bytes = header.encode().as_bytes().to_vec();
    let at = bytes.len();
    bytes.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask_plain(&mut bytes[at..], key, 0);
    }
    bytes
}

fn frame_header(seeds: &mut Vec<Seed>) {
    let t = "frame_header";
    // Byte 0: bit 0 client, bits 1–3 allowed RSV, bits 4–5 mask offset.
    let server = |name: &str, bytes: Vec<u8>, seeds: &mut Vec<Seed>| {
        push(seeds, t, name, [&[0x30][..], &bytes].concat())
    };
    let client = |name: &str, bytes: Vec<u8>, seeds: &mut Vec<Seed>| {
        push(seeds, t, name, [&[0x01][..], &bytes].concat())
    };
    server(
        "masked_text",
        client_frame(OpCode::Text, true, b"Hello"),
        seeds,
    );
    server(
        "masked_16bit",
        client_frame(OpCode::Binary, true, &[7; 300]),
        seeds,
    );
    server(
        "masked_64bit_nonminimal",
        vec![0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 9, 9, 9],
        seeds,
    );
    server(
        "length_overflow",
        vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
        seeds,
    );
    server(
        "control_too_long",
        vec![0x89, 0xfe, 0, 126, 1, 2, 3, 4],
        seeds,
    );
    server("fragmented_ping", vec![0x09, 0x80, 1, 2, 3, 4], seeds);
    server("reserved_opcode", vec![0x83, 0x80, 1, 2, 3, 4], seeds);
    server("unmasked", server_frame(OpCode::Text, true, b"x"), seeds);
    push(
        seeds,
        t,
        "rsv1_allowed",
        [&[0x02][..], &[0xc1, 0x80, 1, 2, 3, 4, 5]].concat(),
    );
    client(
        "unmasked_text",
        server_frame(OpCode::Text, true, b"Hello"),
        seeds,
    );
    client(
        "unmasked_64bit",
        vec![0x82, 0x7f, 0, 0, 0, 1, 0, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd],
        seeds,
    );
    client("masked", client_frame(OpCode::Text, true, b"x"), seeds);
}

/// The 9-byte configuration of the conn targets (see `conn.rs`).
fn config(
    max_frame: u8,
    max_message: u8,
    rsv: u8,
    reads: [u8; 4],
    sends: [u8; 2],
) -> [u8; CONFIG_LEN] {
    let [r0, r1, r2, r3] = reads;
    [
        max_frame,
        max_message,
        rsv,
        r0,
        r1,
        r2,
        r3,
        sends[0],
        sends[1],
    ]
}

/// Index of 16 MiB (the default) and of 64 bytes in `conn::SIZES`.
const DEFAULT: u8 = 13;
const SMALL: u8 = 5;

fn conn(seeds: &mut Vec<Seed>) {
    use OpCode::{Binary, Close, Continuation, Ping, Pong, Text};
    let whole = config(DEFAULT, DEFAULT, 0, [0; 4], [0; 2]);
    let split = config(DEFAULT, DEFAULT, 0, [1, 3, 7, 2], [0; 2]);
    // (name, configuration, frames); the same streams go to both roles, masked for the server.
    type Frames = Vec<(OpCode, bool, Vec<u8>)>;
    let streams: Vec<(&str, [u8; CONFIG_LEN], Frames)> = vec![
        ("text", whole, vec![(Text, true, b"Hello".to_vec())]),
        (
            "fragmented_text_ping_between",
            split,
            vec![
                (Text, false, "héllo ".as_bytes().to_vec()),
                (Ping, true, b"p".to_vec()),
                (Continuation, true, "wörld".as_bytes().to_vec()),
            ],
        ),
        (
            "fragmented_binary_pong_between",
            config(DEFAULT, DEFAULT, 0, [5, 0, 0, 0], [0; 2]),
            vec![
                (Binary, false, vec![1; 20]),
                (Pong, true, vec![]),
                (Continuation, false, vec![2; 20]),
                (Continuation, true, vec![3; 20]),
            ],
        ),
        (
            "binary_16bit_length",
            split,
            vec![(Binary, true, vec![0xab; 300])],
        ),
        (
            "close_with_reason",
            whole,
            vec![(Close, true, b"\x03\xe8bye".to_vec())],
        ),
        ("close_empty", whole, vec![(Close, true, vec![])]),
        ("close_one_byte", whole, vec![(Close, true, vec![3])]),
        (
            "close_code_1005",
            whole,
            vec![(Close, true, b"\x03\xed".to_vec())],
        ),
        (
            "close_reason_not_utf8",
            whole,
            vec![(Close, true, b"\x03\xe8\xff".to_vec())],
        ),
        (
            "text_invalid_utf8_across_fragments",
            split,
            vec![
                (Text, false, b"ok\xce".to_vec()),
                (Continuation, true, b"\xba\xff".to_vec()),
            ],
        ),
        (
            "continuation_without_message",
            whole,
            vec![(Continuation, true, b"x".to_vec())],
        ),
        (
            "message_inside_message",
            whole,
            vec![(Text, false, b"a".to_vec()), (Text, true, b"b".to_vec())],
        ),
        (
            "frame_over_limit",
            config(SMALL, DEFAULT, 0, [0; 4], [0; 2]),
            vec![(Binary, true, vec![0; 65])],
        ),
        (
            "message_over_limit_in_fragments",
            config(DEFAULT, SMALL, 0, [9, 0, 0, 0], [0; 2]),
            vec![
                (Text, false, vec![b'a'; 40]),
                (Continuation, true, vec![b'b'; 40]),
            ],
        ),
        (
            "pings",
            config(DEFAULT, DEFAULT, 0, [2, 0, 0, 0], [0; 2]),
            (0..8)
                .map(|i| (Ping, true, vec![i; usize::from(i) * 17]))
                .collect(),
        ),
        ("ping_125", whole, vec![(Ping, true, vec![b'p'; 125])]),
        (
            "messages_then_close",
            whole,
            vec![
                (Text, true, b"one".to_vec()),
                (Binary, true, b"two".to_vec()),
                (Close, true, b"\x03\xe8".to_vec()),
                (Text, true, b"after close".to_vec()),
            ],
        ),
        (
            // Sends: text before read 0, ping before read 1, close before read 2.
            "we_close_first",
            config(DEFAULT, DEFAULT, 0, [4, 4, 0, 0], [0x10, 0x62]),
            vec![
                (Text, true, b"data".to_vec()),
                (Ping, true, b"late".to_vec()),
                (Close, true, b"\x03\xe8".to_vec()),
            ],
        ),
        (
            "close_with_code_from_stream",
            config(DEFAULT, DEFAULT, 0, [3, 0, 0, 0], [0x50, 0x31]),
            vec![(Close, true, b"\x0b\xb8app".to_vec())],
        ),
        (
            "sends_after_the_stream",
            config(DEFAULT, DEFAULT, 0, [0; 4], [0x7f, 0x9f]),
            vec![(Binary, true, b"payload".to_vec())],
        ),
    ];
    for (name, config, frames) in &streams {
        for (target, client_frames) in [("conn_server", true), ("conn_client", false)] {
            let mut bytes = config.to_vec();
            for (opcode, fin, payload) in frames {
                bytes.extend(if client_frames {
                    client_frame(*opcode, *fin, payload)
                } else {
                    server_frame(*opcode, *fin, payload)
                });
            }
            push(seeds, target, name, bytes);
        }
    }
    // Streams that only make sense as raw bytes.
    let rsv1 = config(DEFAULT, DEFAULT, 1, [0; 4], [0; 2]);
    push(
        seeds,
        "conn_server",
        "rsv1_allowed",
        [&rsv1[..], &[0xc1, 0x81, 1, 2, 3, 4, b'a' ^ 1]].concat(),
    );
    push(
        seeds,
        "conn_server",
        "rsv1_refused",
        [&whole[..], &[0xc1, 0x81, 1, 2, 3, 4, b'a' ^ 1]].concat(),
    );
    push(
        seeds,
        "conn_server",
        "unmasked",
        [&whole[..], &server_frame(Text, true, b"x")].concat(),
    );
    push(
        seeds,
        "conn_server",
        "reserved_opcode",
        [&whole[..], &[0x83, 0x80, 1, 2, 3, 4]].concat(),
    );
    push(
        seeds,
        "conn_server",
        "length_64bit_nonminimal",
        [
            &split[..],
            &[0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4, 9, 9, 9],
        ]
        .concat(),
    );
    push(
        seeds,
        "conn_server",
        "length_overflow",
        [&whole[..], &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]].concat(),
    );
    push(
        seeds,
        "conn_client",
        "masked",
        [&whole[..], &client_frame(Text, true, b"x")].concat(),
    );
    push(
        seeds,
        "conn_client",
        "length_64bit",
        [
            &split[..],
            &[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4],
        ]
        .concat(),
    );
}

/// Streams on a connection that negotiated permessage-deflate (configuration bit 3): a
/// compressed message whole and in fragments, and RSV1 where it is not allowed.
fn deflate(seeds: &mut Vec<Seed>) {
    use wsreactor::proto::deflate::{Deflater, Direction};
    let config = config(DEFAULT, DEFAULT, 8, [0; 4], [0; 2]);
    let split = config_with_reads(config, [3, 5, 0, 0]);
    let mut compressed = Vec::new();
    let context_free = Direction {
        window_bits: 15,
        context_takeover: false,
    };
    Deflater::new(context_free, 6).compress(b"hello hello hello, h\xc3\xa9llo", &mut compressed);
    let (head, tail) = compressed.split_at(compressed.len() / 2);
    let rsv1 = |mut frame: Vec<u8>| {
        frame[0] |= 0x40;
        frame
    };
    for (target, client) in [("conn_server", true), ("conn_client", false)] {
        let f = |opcode, fin, payload: &[u8]| {
            if client {
                client_frame(opcode, fin, payload)
            } else {
                server_frame(opcode, fin, payload)
            }
        };
        let streams: Vec<(&str, [u8; CONFIG_LEN], Vec<u8>)> = vec![
            (
                "deflate_text",
                config,
                rsv1(f(OpCode::Text, true, &compressed)),
            ),
            (
                "deflate_fragments_ping_between",
                split,
                [
                    rsv1(f(OpCode::Binary, false, head)),
                    f(OpCode::Ping, true, b"p"),
                    f(OpCode::Continuation, true, tail),
                ]
                .concat(),
            ),
            (
                "deflate_rsv1_on_continuation",
                config,
                [
                    f(OpCode::Text, false, b"a"),
                    rsv1(f(OpCode::Continuation, true, b"b")),
                ]
                .concat(),
            ),
            (
                "deflate_rsv1_on_ping",
                config,
                rsv1(f(OpCode::Ping, true, b"")),
            ),
            (
                "deflate_corrupt",
                config,
                rsv1(f(OpCode::Binary, true, &[0xff, 0xff, 0xff])),
            ),
        ];
        for (name, config, stream) in streams {
            push(seeds, target, name, [&config[..], &stream].concat());
        }
    }
}

/// `config` with other read sizes.
fn config_with_reads(mut config: [u8; CONFIG_LEN], reads: [u8; 4]) -> [u8; CONFIG_LEN] {
    config[3..7].copy_from_slice(&reads);
    config
}

/// Scripts for `tls_server` (pairs of an operation and its argument; fuzz/src/tls.rs).
fn tls(seeds: &mut Vec<Seed>) {
    // The client's records out, all written, one server read, the client receives.
    const STEP: [u8; 8] = [1, 0, 2, 255, 3, 0, 4, 0];
    let steps = |n: usize| STEP.repeat(n);
    let mut both_ways = steps(3);
    both_ways.extend([0, 200]); // the client sends 19,400 bytes
    both_ways.extend(steps(2));
    both_ways.extend([5, 100, 5, 3]); // the server writes 13,100 and 393 bytes
    both_ways.extend(steps(2));
    push(seeds, "tls_server", "both_ways", both_ways);

    // Application data right behind the client's Finished, in one read.
    let mut behind = steps(1);
    behind.extend([0, 255, 1, 0, 2, 255, 3, 0, 3, 0, 4, 0]);
    push(seeds, "tls_server", "data_behind_finished", behind);

    // The ClientHello a byte at a time, a read after each.
    let mut trickled = vec![1, 0];
    for _ in 0..40 {
        trickled.extend([2, 0, 3, 0]);
    }
    trickled.extend(steps(3));
    push(seeds, "tls_server", "trickled_hello", trickled);

    // Key updates from the client between messages; the server answers each.
    let mut updates = steps(3);
    for len in [10, 0, 90] {
        updates.extend([6, 0, 0, len]);
        updates.extend(steps(1));
        updates.extend([5, len]);
        updates.extend(steps(1));
    }
    push(seeds, "tls_server", "key_updates", updates);

    // A flipped bit in the client's application data.
    let mut flipped = steps(3);
    flipped.extend([0, 50, 1, 0, 7 | 3 << 5, 9, 2, 255, 3, 0, 3, 0]);
    push(seeds, "tls_server", "flipped_record", flipped);

    // The client's sending side taken over (after a key update of rustls'): data,
    // runs of empty records, key updates that ask for none, and data again.
    let mut idle = steps(3);
    idle.extend([0, 10, 6, 0, 0, 5]);
    idle.extend(steps(1));
    idle.extend([6, 255, 0, 7, 6, 31, 6, 128 | 31, 6, 130, 0, 9]);
    idle.extend(steps(2));
    push(seeds, "tls_server", "idle_records", idle);
}
