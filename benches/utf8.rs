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
//! Run: `cargo bench --bench utf8` (add `-- --quick` for a smoke run).

use std::hint::black_box;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastwebsockets::{Frame, Payload};
use tungstenite::Utf8Bytes;
use wsreactor::proto::message::valid_utf8_prefix;

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

criterion_group!(benches, validate);
criterion_main!(benches);
