//! The pure-Rust libraries, each through its safe API only: this module has no `unsafe`
//! (denied below), which is the answer to "usable without unsafe".

#![deny(unsafe_code)]

use crate::codec::{Deflater, Inflater, Setting, drive_deflate, drive_inflate};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::inflate::stream::{FullReset, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

/// flate2's `Compress` on its zlib-rs backend. Its window bits are settable, memLevel is not (8).
pub struct Flate2Deflater(Compress);

impl Flate2Deflater {
    pub fn new(setting: Setting) -> Self {
        Flate2Deflater(Compress::new_with_window_bits(
            Compression::new(setting.level),
            false,
            setting.window_bits,
        ))
    }
}

impl Deflater for Flate2Deflater {
    fn compress(&mut self, message: &[u8], out: &mut [u8]) -> usize {
        let c = &mut self.0;
        drive_deflate(message, out, |input, output| {
            let (in0, out0) = (c.total_in(), c.total_out());
            if let Err(e) = c.compress(input, output, FlushCompress::Sync) {
                panic!("flate2 deflate: {e}");
            }
            (
                (c.total_in() - in0) as usize,
                (c.total_out() - out0) as usize,
            )
        })
    }

    fn reset(&mut self) {
        self.0.reset();
    }
}

/// flate2's `Decompress` on its zlib-rs backend.
pub struct Flate2Inflater(Decompress);

impl Flate2Inflater {
    pub fn new(window_bits: u8) -> Self {
        Flate2Inflater(Decompress::new_with_window_bits(false, window_bits))
    }
}

impl Inflater for Flate2Inflater {
    fn decompress(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        let d = &mut self.0;
        drive_inflate(payload, out, |input, output| {
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = match d.decompress(input, output, FlushDecompress::Sync) {
                Ok(s) => s,
                Err(e) => panic!("flate2 inflate: {e}"),
            };
            let ended = status == flate2::Status::StreamEnd;
            (
                (d.total_in() - in0) as usize,
                (d.total_out() - out0) as usize,
                ended,
            )
        })
    }

    fn reset(&mut self) {
        // Below 15 window bits flate2 builds a new zlib-rs state here (zlib-rs' own reset
        // would restore 15): an allocation per reset.
        self.0.reset(false);
    }
}

/// miniz_oxide as flate2's default backend holds it: a boxed `CompressorOxide`. Its window is
/// always 32 KiB and its tables fixed, so the setting's window bits and memLevel are ignored.
pub struct MinizDeflater(Box<CompressorOxide>);

impl MinizDeflater {
    pub fn new(setting: Setting) -> Self {
        let mut c: Box<CompressorOxide> = Box::default();
        c.set_format_and_level(DataFormat::Raw, setting.level as u8);
        MinizDeflater(c)
    }
}

impl Deflater for MinizDeflater {
    fn compress(&mut self, message: &[u8], out: &mut [u8]) -> usize {
        let c = &mut self.0;
        drive_deflate(message, out, |input, output| {
            let r = miniz_oxide::deflate::stream::deflate(c, input, output, MZFlush::Sync);
            if let Err(e) = r.status {
                panic!("miniz_oxide deflate: {e:?}");
            }
            (r.bytes_consumed, r.bytes_written)
        })
    }

    fn reset(&mut self) {
        self.0.reset();
    }
}

/// miniz_oxide's inflater as flate2 holds it: a boxed `InflateState` (32 KiB window inside).
pub struct MinizInflater(Box<InflateState>);

impl MinizInflater {
    pub fn new() -> Self {
        MinizInflater(InflateState::new_boxed(DataFormat::Raw))
    }
}

impl Inflater for MinizInflater {
    fn decompress(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        let d = &mut self.0;
        drive_inflate(payload, out, |input, output| {
            let r = miniz_oxide::inflate::stream::inflate(d, input, output, MZFlush::Sync);
            let ended = match r.status {
                Ok(MZStatus::StreamEnd) => true,
                Ok(_) => false,
                // No progress possible: the caller's check reports it.
                Err(miniz_oxide::MZError::Buf) => false,
                Err(e) => panic!("miniz_oxide inflate: {e:?}"),
            };
            (r.bytes_consumed, r.bytes_written, ended)
        })
    }

    fn reset(&mut self) {
        self.0.reset_as(FullReset(DataFormat::Raw));
    }
}

/// zlib-rs' safe API, where memLevel is settable too (`DeflateConfig`).
pub struct ZlibRsDeflater(zlib_rs::Deflate);

impl ZlibRsDeflater {
    pub fn new(setting: Setting) -> Self {
        let config = zlib_rs::DeflateConfig {
            level: setting.level as i32,
            method: zlib_rs::Method::Deflated,
            window_bits: -i32::from(setting.window_bits),
            mem_level: i32::from(setting.mem_level),
            strategy: zlib_rs::Strategy::Default,
        };
        ZlibRsDeflater(zlib_rs::Deflate::new_with_config(config))
    }
}

impl Deflater for ZlibRsDeflater {
    fn compress(&mut self, message: &[u8], out: &mut [u8]) -> usize {
        let c = &mut self.0;
        drive_deflate(message, out, |input, output| {
            let (in0, out0) = (c.total_in(), c.total_out());
            if let Err(e) = c.compress(input, output, zlib_rs::DeflateFlush::SyncFlush) {
                panic!("zlib-rs deflate: {e:?}");
            }
            (
                (c.total_in() - in0) as usize,
                (c.total_out() - out0) as usize,
            )
        })
    }

    fn reset(&mut self) {
        self.0.reset();
    }
}

/// zlib-rs' safe inflater.
pub struct ZlibRsInflater {
    inner: zlib_rs::Inflate,
    window_bits: u8,
}

impl ZlibRsInflater {
    pub fn new(window_bits: u8) -> Self {
        ZlibRsInflater {
            inner: zlib_rs::Inflate::new(false, window_bits),
            window_bits,
        }
    }
}

impl Inflater for ZlibRsInflater {
    fn decompress(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        let d = &mut self.inner;
        drive_inflate(payload, out, |input, output| {
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = match d.decompress(input, output, zlib_rs::InflateFlush::SyncFlush) {
                Ok(s) => s,
                Err(e) => panic!("zlib-rs inflate: {e:?}"),
            };
            let ended = status == zlib_rs::Status::StreamEnd;
            (
                (d.total_in() - in0) as usize,
                (d.total_out() - out0) as usize,
                ended,
            )
        })
    }

    fn reset(&mut self) {
        if self.window_bits == 15 {
            self.inner.reset(false);
        } else {
            // `Inflate::reset` restores the default window of 15 bits (it takes no window
            // size), so a smaller window needs a new state, as flate2 does.
            self.inner = zlib_rs::Inflate::new(false, self.window_bits);
        }
    }
}
