//! UTF-8 validation of text payloads: ours beside std and the peers' public paths.
//!
//! - `wsreactor`: `valid_utf8_prefix`, run on every read of a text message that has not
//!   arrived whole (simdutf8's `compat` flavour, which reports where an error is).
//! - `wsreactor-whole`: `simdutf8::basic::from_utf8`, what the crate runs on a message
//!   that arrives whole (the `basic` flavour only says yes or no).
//! - `std`: `std::str::from_utf8`.
//! - `tungstenite`: `Utf8Bytes::try_from(Bytes)`, how tungstenite 0.30 checks a text
//!   message (`std::str::from_utf8` inside, plus a reference-count bump here for the
//!   `Bytes` it takes by value). Its incremental decoder (`StringCollector`, over the
//!   vendored `utf8` module) is private.
//! - `fastwebsockets`: `Frame::is_utf8`, simdutf8's `basic` flavour with its `simd`
//!   feature on.
//!
//! `utf8_fragmented_*`: a large text message in fragments, decoded by
//! `Connection::decode` (server role, masked frames), which unmasks the fragments, moves
//! them together and validates the text. Two shapes of input:
//!
//! - `one-read`: the whole message is in the buffer at once (copied in first, as a socket
//!   read would; `copy-only` is that copy alone);
//! - `reads-64KiB`: it arrives in 64 KiB reads, as the reactor reads it: each read is
//!   appended to the held bytes and `decode` runs over them all (the held payload and the
//!   new bytes), as the buffer contract asks.
//!
//! Run: `cargo bench --bench utf8` (add `-- --quick` for a smoke run).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastwebsockets::{Frame, Payload};
use tungstenite::Utf8Bytes;
use wsreactor::proto::frame::{FrameHeader, OpCode};
use wsreactor::proto::mask::apply_mask;
use wsreactor::proto::message::valid_utf8_prefix;
use wsreactor::proto::{Connection, Decoded, Event, Limits, Message};

const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (64 << 10, "64KiB")];

/// Chat-like text in several scripts: 1-, 2-, 3- and 4-byte characters.
const MIXED: &str = "Hello, wörld! Ça va? Привет, мир. 你好，世界。こんにちは 🎉🚀 ";

/// `len` bytes of valid UTF-8: `pattern` repeated, padded with ASCII to the exact
/// length so that no character is cut.
fn text(pattern: &str, len: usize) -> Vec<u8> {
    let mut out = String::with_capacity(len);
    for ch in pattern.chars().cycle() {
        if out.len() + ch.len_utf8() > len {
            break;
        }
        out.push(ch);
    }
    while out.len() < len {
        out.push('.');
    }
    out.into_bytes()
}

fn validate(c: &mut Criterion) {
    for (kind, pattern) in [
        ("ascii", "The quick brown fox jumps over the lazy dog. "),
        ("mixed", MIXED),
    ] {
        let mut group = c.benchmark_group(format!("utf8_{kind}"));
        for (len, label) in SIZES {
            let input = text(pattern, len);
            assert_eq!(input.len(), len);
            assert_eq!(valid_utf8_prefix(&input), Ok(len));
            let shared = Bytes::from(input.clone());
            let frame = Frame::text(Payload::Borrowed(&input));
            assert!(frame.is_utf8());
            group.throughput(Throughput::Bytes(len as u64));

            group.bench_function(BenchmarkId::new("wsreactor", label), |b| {
                b.iter(|| valid_utf8_prefix(black_box(&input)));
            });
            group.bench_function(BenchmarkId::new("wsreactor-whole", label), |b| {
                b.iter(|| simdutf8::basic::from_utf8(black_box(&input)).is_ok());
            });
            group.bench_function(BenchmarkId::new("std", label), |b| {
                b.iter(|| std::str::from_utf8(black_box(&input)).is_ok());
            });
            group.bench_function(BenchmarkId::new("tungstenite", label), |b| {
                b.iter(|| Utf8Bytes::try_from(black_box(&shared).clone()));
            });
            group.bench_function(BenchmarkId::new("fastwebsockets", label), |b| {
                b.iter(|| black_box(&frame).is_utf8());
            });
        }
        group.finish();
    }
}

/// Message and fragment sizes: 1 MiB in 16 KiB fragments, and 16 MiB (the largest
/// message Autobahn sends, 9.1.6 and 9.2.6, though in one frame) in 64 KiB fragments (the
/// fragment size of 9.3.6, which sends 4 MiB).
const FRAGMENTED: [(usize, usize, &str); 2] = [
    (1 << 20, 16 << 10, "1MiB-in-16KiB"),
    (16 << 20, 64 << 10, "16MiB-in-64KiB"),
];

/// The reactor's read size (its scratch buffer).
const READ: usize = 64 << 10;

/// `payload` as masked client frames of `fragment` bytes: a text frame, then
/// continuations, the last with FIN.
fn fragmented_text(payload: &[u8], fragment: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(payload.len() + payload.len() / fragment * 14 + 14);
    let chunks = payload.len().div_ceil(fragment);
    for (i, chunk) in payload.chunks(fragment).enumerate() {
        let key = [0x37, 0xfa, 0x21, i as u8];
        let header = FrameHeader {
            fin: i + 1 == chunks,
            rsv: 0,
            opcode: if i == 0 {
                OpCode::Text
            } else {
                OpCode::Continuation
            },
            mask: Some(key),
            payload_len: chunk.len() as u64,
        };
        wire.extend_from_slice(header.encode().as_bytes());
        let at = wire.len();
        wire.extend_from_slice(chunk);
        apply_mask(&mut wire[at..], key, 0);
    }
    wire
}

/// Decodes `buf`, which holds a whole message, and returns its length.
fn decode_one_read(conn: &mut Connection, buf: &mut [u8], out: &mut Vec<u8>) -> usize {
    match conn.decode(buf, out, &Limits::default()) {
        Decoded::Event {
            event: Event::Message(Message::Text(text)),
            ..
        } => text.len(),
        other => panic!("unexpected {other:?}"),
    }
}

/// Feeds `wire` in `READ`-byte reads into `held`, as the reactor does, and returns the
/// message's length.
fn decode_in_reads(
    conn: &mut Connection,
    wire: &[u8],
    held: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> usize {
    held.clear();
    for read in wire.chunks(READ) {
        held.extend_from_slice(read);
        match conn.decode(held, out, &Limits::default()) {
            Decoded::NeedMore { keep } => {
                if keep.start > 0 {
                    held.copy_within(keep.clone(), 0);
                }
                held.truncate(keep.len());
            }
            Decoded::Event {
                event: Event::Message(Message::Text(text)),
                ..
            } => return text.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("the message did not complete");
}

fn fragmented(c: &mut Criterion) {
    for (kind, pattern) in [
        ("ascii", "The quick brown fox jumps over the lazy dog. "),
        ("mixed", MIXED),
    ] {
        let mut group = c.benchmark_group(format!("utf8_fragmented_{kind}"));
        group.sample_size(10);
        for (len, fragment, label) in FRAGMENTED {
            let payload = text(pattern, len);
            let wire = fragmented_text(&payload, fragment);
            let mut conn = Connection::server();
            let mut out = Vec::new();
            let mut buf = wire.clone();
            assert_eq!(decode_one_read(&mut conn, &mut buf, &mut out), len);
            let mut held = Vec::with_capacity(wire.len());
            assert_eq!(decode_in_reads(&mut conn, &wire, &mut held, &mut out), len);
            group.throughput(Throughput::Bytes(len as u64));

            group.bench_function(BenchmarkId::new("copy-only", label), |b| {
                b.iter(|| {
                    buf.copy_from_slice(black_box(&wire));
                    black_box(&mut buf);
                });
            });
            group.bench_function(BenchmarkId::new("one-read", label), |b| {
                b.iter(|| {
                    buf.copy_from_slice(black_box(&wire));
                    decode_one_read(&mut conn, &mut buf, &mut out)
                });
            });
            group.bench_function(BenchmarkId::new("reads-64KiB", label), |b| {
                b.iter(|| decode_in_reads(&mut conn, black_box(&wire), &mut held, &mut out));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, validate, fragmented);
criterion_main!(benches);
