//! What permessage-deflate asks of a deflate library, as two small traits, and the libraries
//! measured.
//!
//! RFC 7692 §7.2.1: a message is compressed as raw deflate (no zlib header), flushed so that
//! the output ends with an empty stored block, and the stream's last four bytes
//! `00 00 ff ff` are removed. The receiver appends them again before inflating (§7.2.2).

use crate::{c_libs, rust_libs};

/// The four bytes a sync flush ends with, removed from every payload (RFC 7692 §7.2.1).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compresses messages into RFC 7692 payloads.
pub trait Deflater {
    /// Writes the payload of `message` at the start of `out` and returns its length.
    ///
    /// # Panics
    ///
    /// If `out` is too small (the caller sizes it from the largest message) or the library
    /// reports an error: this is a measuring program.
    fn compress(&mut self, message: &[u8], out: &mut [u8]) -> usize;

    /// Forgets the history, so the next message is compressed as if it were the first (no
    /// context takeover).
    fn reset(&mut self);
}

/// Inflates RFC 7692 payloads.
pub trait Inflater {
    /// Writes the message of `payload` (the tail appended again) at the start of `out` and
    /// returns its length.
    ///
    /// # Panics
    ///
    /// If `out` is too small or the data is corrupt.
    fn decompress(&mut self, payload: &[u8], out: &mut [u8]) -> usize;

    /// Forgets the window, for a peer that does not take over its context.
    fn reset(&mut self);
}

/// The compressor's settings; a library that cannot set one ignores it (see [`Lib`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// 1 (fast) or 6 (zlib's default) in the tables.
    pub level: u32,
    /// LZ77 window of 2^bits bytes, 9..=15 (zlib refuses 8 for raw deflate).
    pub window_bits: u8,
    /// zlib's memLevel, 1..=9: the hash table and the literal buffer grow with it.
    pub mem_level: u8,
}

impl Setting {
    /// zlib's defaults at `level`: window 15, memLevel 8.
    pub const fn default_at(level: u32) -> Self {
        Setting {
            level,
            window_bits: 15,
            mem_level: 8,
        }
    }
}

/// The libraries compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lib {
    /// flate2 1.1 with its `zlib-rs` backend, default features off.
    Flate2ZlibRs,
    /// flate2's default backend, miniz_oxide, driven as flate2 drives it.
    Flate2Miniz,
    /// zlib-rs' own safe API (`zlib_rs::Deflate`, `zlib_rs::Inflate`).
    ZlibRs,
    /// C zlib through libz-sys, bundled source.
    Zlib,
    /// libdeflate through libdeflater: whole buffers only.
    Libdeflate,
}

impl Lib {
    /// Every library, in table order.
    pub const ALL: [Lib; 5] = [
        Lib::Flate2ZlibRs,
        Lib::Flate2Miniz,
        Lib::ZlibRs,
        Lib::Zlib,
        Lib::Libdeflate,
    ];

    /// The name the tables use.
    pub fn name(self) -> &'static str {
        match self {
            Lib::Flate2ZlibRs => "flate2 + zlib-rs",
            Lib::Flate2Miniz => "flate2 + miniz_oxide",
            Lib::ZlibRs => "zlib-rs (own API)",
            Lib::Zlib => "libz-sys (C zlib)",
            Lib::Libdeflate => "libdeflater",
        }
    }

    /// Whether the window size can be chosen (miniz_oxide always uses 32 KiB, libdeflate
    /// has no streaming window at all).
    pub fn sets_window_bits(self) -> bool {
        matches!(self, Lib::Flate2ZlibRs | Lib::ZlibRs | Lib::Zlib)
    }

    /// Whether memLevel can be chosen (flate2 fixes it at 8).
    pub fn sets_mem_level(self) -> bool {
        matches!(self, Lib::ZlibRs | Lib::Zlib)
    }

    /// Whether the library can keep a context across messages (context takeover).
    pub fn streams(self) -> bool {
        self != Lib::Libdeflate
    }

    /// A compressor with `setting` (the parts this library can set).
    pub fn deflater(self, setting: Setting) -> Box<dyn Deflater> {
        match self {
            Lib::Flate2ZlibRs => Box::new(rust_libs::Flate2Deflater::new(setting)),
            Lib::Flate2Miniz => Box::new(rust_libs::MinizDeflater::new(setting)),
            Lib::ZlibRs => Box::new(rust_libs::ZlibRsDeflater::new(setting)),
            Lib::Zlib => Box::new(c_libs::ZlibDeflater::new(setting)),
            Lib::Libdeflate => Box::new(c_libs::LibdeflateDeflater::new(setting)),
        }
    }

    /// A decompressor for a window of 2^`window_bits` bytes (where settable).
    pub fn inflater(self, window_bits: u8) -> Box<dyn Inflater> {
        match self {
            Lib::Flate2ZlibRs => Box::new(rust_libs::Flate2Inflater::new(window_bits)),
            Lib::Flate2Miniz => Box::new(rust_libs::MinizInflater::new()),
            Lib::ZlibRs => Box::new(rust_libs::ZlibRsInflater::new(window_bits)),
            Lib::Zlib => Box::new(c_libs::ZlibInflater::new(window_bits)),
            Lib::Libdeflate => Box::new(c_libs::LibdeflateInflater::new()),
        }
    }
}

/// Runs a streaming compressor's `step` (which returns bytes read and written) until the
/// whole message is in and the sync flush is complete, then removes the tail.
pub fn drive_deflate(
    message: &[u8],
    out: &mut [u8],
    mut step: impl FnMut(&[u8], &mut [u8]) -> (usize, usize),
) -> usize {
    let (mut read, mut written) = (0, 0);
    loop {
        let (r, w) = step(&message[read..], &mut out[written..]);
        read += r;
        written += w;
        // A flush that still had room left in the output is complete.
        if read == message.len() && written < out.len() {
            break;
        }
        assert!(
            written < out.len(),
            "output buffer too small for {} bytes",
            message.len()
        );
    }
    strip_tail(out, written)
}

/// The payload length once the sync flush's `00 00 ff ff` is removed.
pub fn strip_tail(out: &[u8], len: usize) -> usize {
    assert!(
        len >= 4 && out[len - 4..len] == TAIL,
        "a sync flush ends with 00 00 ff ff"
    );
    len - 4
}

/// Runs a streaming decompressor's `step` (bytes read, written, stream ended) over the
/// payload and then the tail. A stream may end early: a compressor without sync flush
/// (libdeflate) ends each message with a final block (RFC 7692 §7.2.3.4).
pub fn drive_inflate(
    payload: &[u8],
    out: &mut [u8],
    mut step: impl FnMut(&[u8], &mut [u8]) -> (usize, usize, bool),
) -> usize {
    let mut written = 0;
    for part in [payload, &TAIL[..]] {
        let mut read = 0;
        while read < part.len() {
            let (r, w, ended) = step(&part[read..], &mut out[written..]);
            read += r;
            written += w;
            if ended {
                return written;
            }
            assert!(r + w > 0, "inflate made no progress");
        }
    }
    assert!(written < out.len(), "output buffer too small");
    written
}
