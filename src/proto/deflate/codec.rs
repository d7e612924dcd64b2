//! Compressing and inflating one message (RFC 7692 §7.2), over flate2's raw deflate
//! streams (zlib-rs: safe Rust, windows of 9 to 15 bits).

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::Direction;
use crate::proto::close::CloseCode;
use crate::proto::message::{Message, valid_utf8_prefix};

/// What a sync flush ends with; RFC 7692 §7.2.1 removes it from the frame and the
/// receiver puts it back (§7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The first output reservation of an inflate, and the least step of its growth.
const INFLATE_STEP: usize = 4096;

/// One direction's compressor: a raw deflate stream that keeps its context between
/// messages, or is reset after each.
pub struct Deflater {
    compress: Compress,
    direction: Direction,
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor for `direction` at zlib `level` (0–9; 1 is fastest).
    #[must_use]
    pub fn new(direction: Direction, level: u32) -> Deflater {
        Deflater {
            compress: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                direction.window_bits,
            ),
            direction,
        }
    }

    /// The window and context rule this compressor follows.
    #[must_use]
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Compresses one whole message, appending the frame payload to `out`. The
    /// context is kept for the next message only when the direction says so.
    ///
    /// Returns `false` if the compressor failed (it cannot on valid state; the caller
    /// then sends the message uncompressed); the compressor is reset either way.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        let start = out.len();
        // Text compresses to well under half; a reservation that proves short grows.
        out.reserve(payload.len() / 2 + 64);
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve((out.len() - start).max(256));
            }
            let before = self.compress.total_in();
            let status = self.compress.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(self.compress.total_in() - before) as usize..];
            match status {
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) | Err(_) => {
                    self.compress.reset();
                    out.truncate(start);
                    return false;
                }
            }
            // A sync flush is complete when output space is left over.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
        if !self.direction.context_takeover {
            self.compress.reset();
        }
        true
    }

    /// Forgets the context: the next message is compressed without history (a peer
    /// may always read that). Needed when the peer's window took in bytes this
    /// compressor did not produce.
    pub fn reset(&mut self) {
        self.compress.reset();
    }
}

/// Why a compressed message could not be inflated. The peer's fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message passed the size limit: close 1009.
    TooBig,
    /// The payload is not a valid deflate stream: close 1007 (the data in the
    /// message is not consistent with its type, RFC 6455 §7.4.1).
    Corrupt,
    /// Inflated text is not valid UTF-8: close 1007.
    InvalidUtf8,
}

impl InflateError {
    /// The close code that fails the connection.
    #[must_use]
    pub fn code(self) -> CloseCode {
        match self {
            InflateError::TooBig => CloseCode::MESSAGE_TOO_BIG,
            InflateError::Corrupt | InflateError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
        }
    }

    /// The close reason.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            InflateError::TooBig => "message too big",
            InflateError::Corrupt => "invalid deflate data",
            InflateError::InvalidUtf8 => "text message is not valid UTF-8",
        }
    }
}

impl fmt::Display for InflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for InflateError {}

/// One direction's decompressor.
pub struct Inflater {
    decompress: Decompress,
    direction: Direction,
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor for the peer's `direction`.
    #[must_use]
    pub fn new(direction: Direction) -> Inflater {
        Inflater {
            decompress: Decompress::new_with_window_bits(false, direction.window_bits),
            direction,
        }
    }

    /// The window and context rule of the peer's compressor.
    #[must_use]
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Inflates one message's payload into `out` (cleared first) and returns it.
    ///
    /// The inflated size is checked against `max` as the output grows, so a bomb
    /// costs at most `max` bytes (plus one growth step) before it is refused; text is
    /// validated as it comes out, failing at the first impossible byte. The context
    /// is kept for the next message only when the direction says so, and never after
    /// an error.
    ///
    /// # Errors
    ///
    /// [`InflateError`], the peer's fault in every case.
    pub fn inflate<'o>(
        &mut self,
        payload: &[u8],
        text: bool,
        max: usize,
        out: &'o mut Vec<u8>,
    ) -> Result<Message<'o>, InflateError> {
        let result = self.inflate_into(payload, text, max, out);
        if result.is_err() || !self.direction.context_takeover {
            self.decompress.reset(false);
        }
        result?;
        let bytes: &'o [u8] = out;
        if !text {
            return Ok(Message::Binary(bytes));
        }
        // Validated piecewise above; once more whole, which costs far less than
        // the inflate did, to hand out a `&str` without unsafe code.
        simdutf8::basic::from_utf8(bytes)
            .map(Message::Text)
            .map_err(|_| InflateError::InvalidUtf8)
    }

    fn inflate_into(
        &mut self,
        payload: &[u8],
        text: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        out.clear();
        let cap = max.saturating_add(1);
        let mut validated = 0;
        let mut input = payload;
        let mut tail = &SYNC_TAIL[..];
        loop {
            if out.len() == out.capacity() {
                // Double, from a first step, but never past the limit and one byte
                // (the byte that tells a message of exactly `max` from a larger one).
                let step = out.capacity().max(INFLATE_STEP).min(cap - out.len());
                if step == 0 {
                    return Err(InflateError::TooBig);
                }
                out.reserve_exact(step);
            }
            let feeding_tail = input.is_empty();
            let src = if feeding_tail { tail } else { input };
            let before_in = self.decompress.total_in();
            let before_out = out.len();
            let status = self
                .decompress
                .decompress_vec(src, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            let used = (self.decompress.total_in() - before_in) as usize;
            if feeding_tail {
                tail = &tail[used..];
            } else {
                input = &input[used..];
            }
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            if text && out.len() > before_out {
                validated +=
                    valid_utf8_prefix(&out[validated..]).map_err(|()| InflateError::InvalidUtf8)?;
            }
            match status {
                Status::StreamEnd => {
                    // The peer ended the stream (BFINAL): nothing of the message may
                    // follow, and the next message starts a new stream.
                    if !input.is_empty() {
                        return Err(InflateError::Corrupt);
                    }
                    self.decompress.reset(false);
                    break;
                }
                Status::Ok | Status::BufError => {}
            }
            let progress = used > 0 || out.len() > before_out;
            if input.is_empty() && tail.is_empty() && out.len() < out.capacity() {
                break;
            }
            if !progress && out.len() < out.capacity() {
                // Neither input taken nor output made with room to spare: the
                // stream cannot go on.
                return Err(InflateError::Corrupt);
            }
        }
        if text && validated != out.len() {
            return Err(InflateError::InvalidUtf8); // ends inside a character
        }
        Ok(())
    }
}
