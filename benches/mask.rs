//! Unmasking payloads in place: ours (fast and plain) beside fastwebsockets' `unmask`.
//!
//! tungstenite's `apply_mask` lives in a private module (`protocol::frame::mask` is not
//! `pub` in 0.30), so it cannot be called from here; its copy in fastwebsockets
//! (`unmask_fallback`, the same 4-byte `align_to_mut` loop) stands for both.
//!
//! The `variant-*` lines (in `unmask_variants`, and `variant-aligned-head` in
//! `unmask_after_header`) are candidate fast paths that exist only in this file, to
//! decide whether a wider or `unsafe` loop in `src/proto/mask.rs` would pay. Each is
//! checked against `apply_mask_plain` before anything is timed. docs/BENCHMARKS.md has
//! the figures.
//!
//! Run: `cargo bench --bench mask` (add `-- --quick` for a smoke run).

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use wsreactor::proto::mask::{apply_mask, apply_mask_plain};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Payload sizes: a tiny message, the largest control frame, a typical message, the
/// read-buffer size class, and a large upload.
const SIZES: [(usize, &str); 5] = [
    (16, "16B"),
    (125, "125B"),
    (1024, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn unmask(c: &mut Criterion) {
    let mut group = c.benchmark_group("unmask");
    for (len, label) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = payload(len);
        // XOR is its own inverse: masking the same buffer again and again is a fair
        // steady state, with no copy to reset it.
        group.bench_function(BenchmarkId::new("wsreactor", label), |b| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0));
        });
        group.bench_function(BenchmarkId::new("wsreactor-plain", label), |b| {
            b.iter(|| apply_mask_plain(black_box(&mut buf), black_box(KEY), 0));
        });
        group.bench_function(BenchmarkId::new("fastwebsockets", label), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut buf), black_box(KEY)));
        });
    }
    group.finish();
}

/// A payload as it sits in a read buffer: right after its frame header, so not on an
/// 8- or 16-byte boundary. 14 bytes is the header of a masked frame over 64 KiB.
fn unmask_after_header(c: &mut Criterion) {
    const HEADER: usize = 14;
    let mut group = c.benchmark_group("unmask_after_header");
    for (len, label) in [SIZES[2], SIZES[3]] {
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = payload(HEADER + len);
        let body = &mut buf[HEADER..];
        group.bench_function(BenchmarkId::new("wsreactor", label), |b| {
            b.iter(|| apply_mask(black_box(&mut *body), black_box(KEY), 0));
        });
        group.bench_function(BenchmarkId::new("fastwebsockets", label), |b| {
            b.iter(|| fastwebsockets::unmask(black_box(&mut *body), black_box(KEY)));
        });
        group.bench_function(BenchmarkId::new("variant-aligned-head", label), |b| {
            b.iter(|| variants::aligned_head(black_box(&mut *body), black_box(KEY), 0));
        });
    }
    group.finish();
}

fn unmask_variants(c: &mut Criterion) {
    variants::check_all();
    let mut group = c.benchmark_group("unmask_variants");
    for (len, label) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        let mut buf = payload(len);
        // Each is passed as its own function item, not through `variants::ALL`: an
        // indirect call would keep it from being inlined, as `apply_mask` is.
        let id = |name| BenchmarkId::new(name, label);
        bench_variant(&mut group, id("wsreactor"), &mut buf, apply_mask);
        bench_variant(
            &mut group,
            id("variant-u128"),
            &mut buf,
            variants::u128_chunks,
        );
        bench_variant(
            &mut group,
            id("variant-u64x4"),
            &mut buf,
            variants::u64x4_chunks,
        );
        bench_variant(
            &mut group,
            id("variant-block64"),
            &mut buf,
            variants::block64,
        );
        bench_variant(
            &mut group,
            id("variant-align_to"),
            &mut buf,
            variants::align_to_u128,
        );
    }
    group.finish();
}

fn bench_variant(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    buf: &mut [u8],
    variant: impl Fn(&mut [u8], [u8; 4], usize),
) {
    group.bench_function(id, |b| {
        b.iter(|| variant(black_box(&mut *buf), black_box(KEY), 0));
    });
}

/// Candidate fast paths, with the signature of `apply_mask`. Scratch code for the
/// measurement only: the crate's own implementation is `src/proto/mask.rs`.
mod variants {
    use super::apply_mask_plain;

    type Variant = fn(&mut [u8], [u8; 4], usize);

    pub const ALL: [(&str, Variant); 6] = [
        ("wsreactor", super::apply_mask),
        ("variant-u128", u128_chunks),
        ("variant-u64x4", u64x4_chunks),
        ("variant-block64", block64),
        ("variant-align_to", align_to_u128),
        ("variant-aligned-head", aligned_head),
    ];

    /// Every variant must agree with the byte loop on every length, offset and
    /// alignment that a short frame can have, before its figures mean anything.
    pub fn check_all() {
        let key = [0x9a, 0x01, 0xfe, 0x37];
        for (name, variant) in ALL {
            for len in 0..=300 {
                for offset in 0..4 {
                    for start in 0..16 {
                        let mut fast = super::payload(start + len + 3);
                        let mut plain = fast.clone();
                        variant(&mut fast[start..start + len], key, offset);
                        apply_mask_plain(&mut plain[start..start + len], key, offset);
                        assert_eq!(
                            fast, plain,
                            "{name}: len {len} offset {offset} start {start}"
                        );
                    }
                }
            }
        }
    }

    fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
        let mut rotated = key;
        rotated.rotate_left(offset & 3);
        rotated
    }

    /// The key repeated to fill `N` bytes (`N` a multiple of 4).
    fn key_block<const N: usize>(key: [u8; 4]) -> [u8; N] {
        let mut block = [0u8; N];
        for quad in block.chunks_exact_mut(4) {
            quad.copy_from_slice(&key);
        }
        block
    }

    /// Byte loop for a tail that starts at key index 0.
    fn tail(buf: &mut [u8], key: [u8; 4]) {
        for (byte, k) in buf.iter_mut().zip(key.iter().cycle()) {
            *byte ^= k;
        }
    }

    /// 16 bytes per step through `u128` loads and stores.
    #[inline]
    pub fn u128_chunks(buf: &mut [u8], key: [u8; 4], offset: usize) {
        let key = rotate_key(key, offset);
        let word = u128::from_ne_bytes(key_block(key));
        let mut chunks = buf.chunks_exact_mut(16);
        for chunk in &mut chunks {
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(chunk);
            chunk.copy_from_slice(&(u128::from_ne_bytes(bytes) ^ word).to_ne_bytes());
        }
        tail(chunks.into_remainder(), key);
    }

    /// 32 bytes per step as four independent `u64`s.
    #[inline]
    pub fn u64x4_chunks(buf: &mut [u8], key: [u8; 4], offset: usize) {
        let key = rotate_key(key, offset);
        let word = u64::from_ne_bytes(key_block(key));
        let mut chunks = buf.chunks_exact_mut(32);
        for chunk in &mut chunks {
            for lane in chunk.chunks_exact_mut(8) {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(lane);
                lane.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
            }
        }
        tail(chunks.into_remainder(), key);
    }

    /// 64 bytes per step as a fixed-size byte array XORed with a 64-byte key block:
    /// a loop of known length that LLVM turns into whole vector registers. The rest
    /// goes eight bytes at a time, then byte by byte. Safe code only.
    #[inline]
    pub fn block64(buf: &mut [u8], key: [u8; 4], offset: usize) {
        let key = rotate_key(key, offset);
        let block: [u8; 64] = key_block(key);
        let mut chunks = buf.chunks_exact_mut(64);
        for chunk in &mut chunks {
            for (b, k) in chunk.iter_mut().zip(block.iter()) {
                *b ^= k;
            }
        }
        let rest = chunks.into_remainder();
        let word = u64::from_ne_bytes(key_block(key));
        let mut words = rest.chunks_exact_mut(8);
        for lane in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(lane);
            lane.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
        }
        tail(words.into_remainder(), key);
    }

    /// `apply_mask` after a byte loop up to the next 16-byte boundary, so that the
    /// vector loop's loads and stores never straddle a cache line. Still safe code:
    /// `align_offset` only looks at the address.
    #[inline]
    pub fn aligned_head(buf: &mut [u8], key: [u8; 4], offset: usize) {
        let head_len = buf.as_ptr().align_offset(16).min(buf.len());
        let (head, body) = buf.split_at_mut(head_len);
        apply_mask_plain(head, key, offset);
        // Rotated as a `u32`: `[u8]::rotate_left` by a run-time amount is a call.
        let shift = 8 * ((offset + head_len) & 3) as u32;
        let body_key = u32::from_le_bytes(key).rotate_right(shift).to_le_bytes();
        super::apply_mask(body, body_key, 0);
    }

    /// The tungstenite/fastwebsockets shape, widened to `u128`: an unaligned head byte
    /// by byte, aligned 16-byte words, a tail byte by byte.
    #[allow(unsafe_code)]
    #[inline]
    pub fn align_to_u128(buf: &mut [u8], key: [u8; 4], offset: usize) {
        let key = rotate_key(key, offset);
        // SAFETY: every bit pattern is a valid `u128` and a valid `u8`, so viewing the
        // aligned middle of a byte slice as `u128`s and writing through it is sound;
        // `align_to_mut` guarantees the middle slice is aligned and in bounds.
        let (head, words, rest) = unsafe { buf.align_to_mut::<u128>() };
        let head_len = head.len();
        tail(head, key);
        let key = rotate_key(key, head_len);
        let word = u128::from_ne_bytes(key_block(key));
        for w in words.iter_mut() {
            *w ^= word;
        }
        tail(rest, key);
    }
}

criterion_group!(benches, unmask, unmask_after_header, unmask_variants);
criterion_main!(benches);
