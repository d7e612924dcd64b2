//! The C libraries: C zlib through libz-sys (raw FFI, so `unsafe`: allowed in this measuring
//! program only, never in wsreactor's library) and libdeflate through libdeflater's safe
//! wrapper.

use crate::codec::{Deflater, Inflater, Setting, TAIL, drive_deflate, drive_inflate};
use libz_sys as z;
use std::alloc::{Layout, alloc, dealloc};
use std::ffi::{CStr, c_int};
use std::ptr;

/// Bytes in front of each zlib allocation that remember its size for `zfree`; a multiple of
/// 16 so the block stays aligned as malloc's would be.
const SIZE_HEADER: usize = 16;

/// zlib's allocation hook: through Rust's global allocator, so the counting allocator sees
/// C zlib's state too (16 bytes more per allocation; zlib makes four or five).
unsafe extern "C" fn zalloc(_opaque: z::voidpf, items: z::uInt, size: z::uInt) -> z::voidpf {
    let Some(bytes) = (items as usize).checked_mul(size as usize) else {
        return ptr::null_mut();
    };
    let Ok(layout) = Layout::from_size_align(bytes + SIZE_HEADER, SIZE_HEADER) else {
        return ptr::null_mut();
    };
    // SAFETY: the layout has a non-zero size (it includes the header).
    let base = unsafe { alloc(layout) };
    if base.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `base` is valid for `SIZE_HEADER` bytes and aligned for a usize; the block
    // handed to zlib starts after the header, inside the same allocation.
    unsafe {
        base.cast::<usize>().write(layout.size());
        base.add(SIZE_HEADER).cast()
    }
}

/// zlib's free hook, the inverse of `zalloc`.
unsafe extern "C" fn zfree(_opaque: z::voidpf, address: z::voidpf) {
    if address.is_null() {
        return;
    }
    // SAFETY: `address` came from `zalloc`, so the header with the allocation's size sits
    // `SIZE_HEADER` bytes before it, and that size and alignment formed a valid layout.
    unsafe {
        let base = address.cast::<u8>().sub(SIZE_HEADER);
        let size = base.cast::<usize>().read();
        dealloc(base, Layout::from_size_align_unchecked(size, SIZE_HEADER));
    }
}

/// A `z_stream` with our allocator hooks and no state yet. It is boxed because zlib keeps a
/// pointer back to it and refuses a stream that moved.
fn new_stream() -> Box<z::z_stream> {
    Box::new(z::z_stream {
        next_in: ptr::null_mut(),
        avail_in: 0,
        total_in: 0,
        next_out: ptr::null_mut(),
        avail_out: 0,
        total_out: 0,
        msg: ptr::null_mut(),
        state: ptr::null_mut(),
        zalloc,
        zfree,
        opaque: ptr::null_mut(),
        data_type: 0,
        adler: 0,
        reserved: 0,
    })
}

fn zlib_error(what: &str, rc: c_int, strm: &z::z_stream) -> ! {
    let msg = if strm.msg.is_null() {
        "(no message)".to_owned()
    } else {
        // SAFETY: zlib sets `msg` to a static NUL-terminated string.
        unsafe { CStr::from_ptr(strm.msg) }
            .to_string_lossy()
            .into_owned()
    };
    panic!("{what} returned {rc}: {msg}");
}

/// The version of the C zlib linked in.
pub fn zlib_version() -> String {
    // SAFETY: zlibVersion returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(z::zlibVersion()) }
        .to_string_lossy()
        .into_owned()
}

/// C zlib's deflate: window bits and memLevel both settable.
pub struct ZlibDeflater(Box<z::z_stream>);

impl ZlibDeflater {
    pub fn new(setting: Setting) -> Self {
        let mut strm = new_stream();
        // SAFETY: `strm` is a fresh stream with valid hooks; version and size are those of
        // the header libz-sys was written against, as deflateInit2 expects.
        let rc = unsafe {
            z::deflateInit2_(
                &mut *strm,
                setting.level as c_int,
                z::Z_DEFLATED,
                -c_int::from(setting.window_bits),
                c_int::from(setting.mem_level),
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                size_of::<z::z_stream>() as c_int,
            )
        };
        if rc != z::Z_OK {
            zlib_error("deflateInit2", rc, &strm);
        }
        ZlibDeflater(strm)
    }
}

impl Deflater for ZlibDeflater {
    fn compress(&mut self, message: &[u8], out: &mut [u8]) -> usize {
        let strm = &mut *self.0;
        drive_deflate(message, out, |input, output| {
            strm.next_in = input.as_ptr().cast_mut();
            strm.avail_in = input.len() as z::uInt;
            strm.next_out = output.as_mut_ptr();
            strm.avail_out = output.len() as z::uInt;
            // SAFETY: the stream was initialised by deflateInit2 and not moved; next_in and
            // next_out point into live slices of the lengths given, cleared below before
            // the slices go away.
            let rc = unsafe { z::deflate(strm, z::Z_SYNC_FLUSH) };
            if rc != z::Z_OK && rc != z::Z_BUF_ERROR {
                zlib_error("deflate", rc, strm);
            }
            let step = (
                input.len() - strm.avail_in as usize,
                output.len() - strm.avail_out as usize,
            );
            strm.next_in = ptr::null_mut();
            strm.next_out = ptr::null_mut();
            step
        })
    }

    fn reset(&mut self) {
        // SAFETY: an initialised stream.
        let rc = unsafe { z::deflateReset(&mut *self.0) };
        if rc != z::Z_OK {
            zlib_error("deflateReset", rc, &self.0);
        }
    }
}

impl Drop for ZlibDeflater {
    fn drop(&mut self) {
        // SAFETY: an initialised stream, ended once.
        unsafe { z::deflateEnd(&mut *self.0) };
    }
}

/// C zlib's inflate. Its window (2^bits bytes) is allocated on the first inflate.
pub struct ZlibInflater(Box<z::z_stream>);

impl ZlibInflater {
    pub fn new(window_bits: u8) -> Self {
        let mut strm = new_stream();
        // SAFETY: as for deflateInit2.
        let rc = unsafe {
            z::inflateInit2_(
                &mut *strm,
                -c_int::from(window_bits),
                z::zlibVersion(),
                size_of::<z::z_stream>() as c_int,
            )
        };
        if rc != z::Z_OK {
            zlib_error("inflateInit2", rc, &strm);
        }
        ZlibInflater(strm)
    }
}

impl Inflater for ZlibInflater {
    fn decompress(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        let strm = &mut *self.0;
        drive_inflate(payload, out, |input, output| {
            strm.next_in = input.as_ptr().cast_mut();
            strm.avail_in = input.len() as z::uInt;
            strm.next_out = output.as_mut_ptr();
            strm.avail_out = output.len() as z::uInt;
            // SAFETY: as in deflate.
            let rc = unsafe { z::inflate(strm, z::Z_SYNC_FLUSH) };
            if rc != z::Z_OK && rc != z::Z_BUF_ERROR && rc != z::Z_STREAM_END {
                zlib_error("inflate", rc, strm);
            }
            let step = (
                input.len() - strm.avail_in as usize,
                output.len() - strm.avail_out as usize,
                rc == z::Z_STREAM_END,
            );
            strm.next_in = ptr::null_mut();
            strm.next_out = ptr::null_mut();
            step
        })
    }

    fn reset(&mut self) {
        // SAFETY: an initialised stream. inflateReset keeps the window size and its memory.
        let rc = unsafe { z::inflateReset(&mut *self.0) };
        if rc != z::Z_OK {
            zlib_error("inflateReset", rc, &self.0);
        }
    }
}

impl Drop for ZlibInflater {
    fn drop(&mut self) {
        // SAFETY: an initialised stream, ended once.
        unsafe { z::inflateEnd(&mut *self.0) };
    }
}

/// libdeflate compresses a whole buffer into a complete deflate stream (its last block has
/// BFINAL set): RFC 7692 §7.2.3.4 allows that, and the payload is then that stream plus the
/// one byte left of the empty stored block once its `00 00 ff ff` is removed. Without
/// streaming there is no context takeover; `reset` has nothing to do.
pub struct LibdeflateDeflater(libdeflater::Compressor);

impl LibdeflateDeflater {
    pub fn new(setting: Setting) -> Self {
        let level = match libdeflater::CompressionLvl::new(setting.level as i32) {
            Ok(l) => l,
            Err(e) => panic!("libdeflate level {}: {e:?}", setting.level),
        };
        LibdeflateDeflater(libdeflater::Compressor::new(level))
    }
}

impl Deflater for LibdeflateDeflater {
    fn compress(&mut self, message: &[u8], out: &mut [u8]) -> usize {
        let last = out.len() - 1;
        let n = match self.0.deflate_compress(message, &mut out[..last]) {
            Ok(n) => n,
            Err(e) => panic!("libdeflate compress: {e:?}"),
        };
        // The empty stored block's first byte (BFINAL 0, BTYPE 00, padding).
        out[n] = 0x00;
        n + 1
    }

    fn reset(&mut self) {}
}

/// libdeflate inflates a whole deflate stream into a buffer that must hold the whole message.
/// A payload from a sync-flushing compressor has no final block, so one is appended: the
/// tail, then an empty fixed-Huffman block with BFINAL set (`03 00`). That needs a copy of the
/// payload (a server could append these six bytes to its read buffer instead).
pub struct LibdeflateInflater {
    inner: libdeflater::Decompressor,
    input: Vec<u8>,
}

/// The empty final block appended after the tail.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

impl LibdeflateInflater {
    pub fn new() -> Self {
        LibdeflateInflater {
            inner: libdeflater::Decompressor::new(),
            input: Vec::new(),
        }
    }
}

impl Inflater for LibdeflateInflater {
    fn decompress(&mut self, payload: &[u8], out: &mut [u8]) -> usize {
        self.input.clear();
        self.input.extend_from_slice(payload);
        self.input.extend_from_slice(&TAIL);
        self.input.extend_from_slice(&FINAL_BLOCK);
        match self.inner.deflate_decompress(&self.input, out) {
            Ok(n) => n,
            Err(e) => panic!("libdeflate decompress: {e:?}"),
        }
    }

    fn reset(&mut self) {}
}
