//! The reactor's permessage-deflate objects: compressors on the write path,
//! decompressors on the read path.
//!
//! A connection holds none of them in its slot. Context-free compressors and
//! decompressors are the reactor's, one per window size, created when first needed
//! and reset after every message. A connection that keeps its context (dedicated
//! mode, or a client allowed to keep its own) has its compressor or decompressor in
//! a map beside the slab, keyed by slot and generation: an idle connection in shared
//! mode, or a quiet one in dedicated mode, holds nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::conn::Generation;
use bytes::{BufMut, Bytes, BytesMut};

use super::output::Owner;
use crate::compression::{Compress, Compression};
use crate::proto::deflate::{Deflater, Direction, InflateError, Inflater, PerMessageDeflate};
use crate::proto::frame::{FrameHeader, OpCode, RSV1, Role};
use crate::proto::{Compressed, Message};

/// Window sizes 9 to 15.
const WINDOWS: usize = 7;

/// The least level for frames compressed once for many connections (publishes,
/// broadcasts, `Sender` sends): their cost is paid once per message, not once per
/// delivery, and on small JSON messages compressed alone zlib-rs' level 1 saves
/// next to nothing where level 6 saves 8 to 27 % (`cargo bench -p
/// wsreactor-benches --bench compression_ratio`; docs/BENCHMARKS.md).
const SHARED_FRAME_LEVEL: u32 = 6;

/// After a larger message, the compress and inflate buffers are shrunk to this.
const KEEP_BUFFER: usize = 64 * 1024;

fn window_index(bits: u8) -> usize {
    usize::from(bits.clamp(9, 15) - 9)
}

/// A connection's own compressor.
struct Own {
    generation: Generation,
    deflater: Deflater,
    /// Used since the last sweep.
    used: bool,
}

/// The write path's compressors.
pub(crate) struct Compressors {
    level: u32,
    threshold: usize,
    release_after: Duration,
    next_sweep: Instant,
    shared: [Option<Deflater>; WINDOWS],
    /// For frames compressed once for many connections, at [`SHARED_FRAME_LEVEL`]
    /// or the configured level if higher.
    once: [Option<Deflater>; WINDOWS],
    own: HashMap<u32, Own>,
    /// The compressed form of shared frames sent in this turn (`None`: not worth
    /// compressing), by the frame's identity (address and length) and window,
    /// with the frame it was made from (kept alive, so its address cannot be
    /// reused by another frame while the entry exists). Cleared at the end of
    /// every turn. A map: a turn may publish a thousand frames to a thousand
    /// subscribers, and each delivery looks its frame up.
    cache: HashMap<(usize, usize, u8), (Bytes, Option<Bytes>)>,
    /// Where a message is compressed before it is framed.
    pub(crate) buf: Vec<u8>,
}

impl Compressors {
    pub(crate) fn new(compression: &Compression) -> Option<Box<Compressors>> {
        let settings = compression.settings()?;
        Some(Box::new(Compressors {
            level: settings.level,
            threshold: settings.threshold,
            release_after: settings.release_after,
            next_sweep: crate::config::deadline(Instant::now(), settings.release_after),
            shared: Default::default(),
            once: Default::default(),
            own: HashMap::new(),
            cache: HashMap::new(),
            buf: Vec::new(),
        }))
    }

    /// Whether a message of `len` bytes is to be compressed.
    pub(crate) fn wants(&self, len: usize, compress: Compress) -> bool {
        match compress {
            Compress::Auto => len >= self.threshold,
            Compress::Always => true,
            Compress::Never => false,
        }
    }

    /// The compressor for a message of `owner`: its own if its context is kept
    /// (created now if it has none; reset first if `reset`), else the reactor's.
    fn deflater(&mut self, owner: Owner, direction: Direction, reset: bool) -> &mut Deflater {
        if !direction.context_takeover {
            let level = self.level;
            return self.shared[window_index(direction.window_bits)]
                .get_or_insert_with(|| Deflater::new(direction, level));
        }
        let level = self.level;
        let own = self.own.entry(owner.key).or_insert_with(|| Own {
            generation: owner.generation,
            deflater: Deflater::new(direction, level),
            used: true,
        });
        if own.generation != owner.generation {
            // A connection gone without `forget` (it cannot happen: `release` calls it).
            *own = Own {
                generation: owner.generation,
                deflater: Deflater::new(direction, level),
                used: true,
            };
        } else if reset {
            own.deflater.reset();
        }
        own.used = true;
        &mut own.deflater
    }

    /// Compresses one message of `owner` into `out`. `false` if it failed (then
    /// it is sent uncompressed).
    pub(crate) fn compress(
        &mut self,
        owner: Owner,
        params: PerMessageDeflate,
        reset: bool,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> bool {
        let direction = params.compressor(Role::Server);
        self.deflater(owner, direction, reset)
            .compress(payload, out)
    }

    /// The compressed form of a shared, encoded frame (a broadcast, a publish, a
    /// send from another thread) for a connection with `params`: compressed once
    /// per window size and turn, without context. `None` when the frame is not a
    /// whole uncompressed data message at least as long as the threshold.
    pub(crate) fn shared_frame(
        &mut self,
        params: PerMessageDeflate,
        frame: &Bytes,
    ) -> Option<Bytes> {
        let bits = params.compressor(Role::Server).window_bits;
        let identity = (frame.as_ptr() as usize, frame.len(), bits);
        if let Some((_, compressed)) = self.cache.get(&identity) {
            return compressed.clone();
        }
        let compressed = self.compress_shared(bits, frame);
        self.cache
            .insert(identity, (frame.clone(), compressed.clone()));
        compressed
    }

    /// `frame` compressed without context for a window of `bits`, if it is a whole
    /// data message at least as long as the threshold that compresses to fewer
    /// bytes than it has.
    fn compress_shared(&mut self, bits: u8, frame: &Bytes) -> Option<Bytes> {
        // Frames from this crate's `encode` (or a caller's own): server frames,
        // read as a client reads them.
        let (header, header_len) = FrameHeader::parse(frame, Role::Client, 0).ok()??;
        let text = match header.opcode {
            OpCode::Text => true,
            OpCode::Binary => false,
            _ => return None,
        };
        let payload = frame.get(header_len..)?;
        if !header.fin
            || payload.len() as u64 != header.payload_len
            || payload.len() < self.threshold
        {
            return None;
        }
        let direction = Direction {
            window_bits: bits,
            context_takeover: false,
        };
        let level = self.level.max(SHARED_FRAME_LEVEL);
        let deflater =
            self.once[window_index(bits)].get_or_insert_with(|| Deflater::new(direction, level));
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        // No context to keep in step: a frame that would not shrink goes as it is.
        let shrinks = deflater.compress(payload, &mut buf) && buf.len() < payload.len();
        let compressed = shrinks.then(|| {
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            let mut header = FrameHeader::outgoing(opcode, true, buf.len(), None);
            header.rsv = RSV1;
            let encoded = header.encode();
            let mut out = BytesMut::with_capacity(encoded.as_bytes().len() + buf.len());
            out.put_slice(encoded.as_bytes());
            out.put_slice(&buf);
            out.freeze()
        });
        self.restore(buf);
        compressed
    }

    /// Puts the compress buffer back, shrunk if a large message grew it.
    pub(crate) fn restore(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > KEEP_BUFFER {
            buf.clear();
            buf.shrink_to(KEEP_BUFFER);
        }
        self.buf = buf;
    }

    /// Drops the connection's own compressor.
    pub(crate) fn forget(&mut self, owner: Owner) {
        if self
            .own
            .get(&owner.key)
            .is_some_and(|o| o.generation == owner.generation)
        {
            self.own.remove(&owner.key);
        }
    }

    /// The end of a loop turn: the shared frames' compressed forms are let go.
    pub(crate) fn end_turn(&mut self) {
        self.cache.clear();
        if self.cache.capacity() > 1024 {
            self.cache.shrink_to(64);
        }
    }

    /// Releases the compressors unused since the last sweep, once per
    /// `release_after`.
    pub(crate) fn sweep(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.next_sweep = crate::config::deadline(now, self.release_after);
            self.own.retain(|_, own| std::mem::take(&mut own.used));
            if self.own.capacity() > 2 * self.own.len() + 16 {
                self.own.shrink_to_fit();
            }
        }
    }

    /// Connections holding a compressor of their own.
    pub(crate) fn own_count(&self) -> u64 {
        self.own.len() as u64
    }
}

/// The read path's decompressors.
pub(crate) struct Inflaters {
    shared: [Option<Inflater>; WINDOWS],
    own: HashMap<u32, (Generation, Inflater)>,
    /// Where messages are inflated.
    out: Vec<u8>,
}

impl Inflaters {
    pub(crate) fn new(compression: &Compression) -> Option<Box<Inflaters>> {
        compression.settings()?;
        Some(Box::new(Inflaters {
            shared: Default::default(),
            own: HashMap::new(),
            out: Vec::new(),
        }))
    }

    /// Inflates a message of connection (`key`, `generation`).
    pub(crate) fn inflate(
        &mut self,
        key: usize,
        generation: Generation,
        params: PerMessageDeflate,
        message: Compressed<'_>,
        max: usize,
    ) -> Result<Message<'_>, InflateError> {
        let direction = params.decompressor(Role::Server);
        let inflater = if direction.context_takeover {
            let entry = self
                .own
                .entry(key as u32)
                .or_insert_with(|| (generation, Inflater::new(direction)));
            if entry.0 != generation {
                *entry = (generation, Inflater::new(direction));
            }
            &mut entry.1
        } else {
            self.shared[window_index(direction.window_bits)]
                .get_or_insert_with(|| Inflater::new(direction))
        };
        inflater.inflate(message.payload, message.text, max, &mut self.out)
    }

    /// After a message: a buffer a large one grew is let go.
    pub(crate) fn trim(&mut self) {
        if self.out.capacity() > KEEP_BUFFER {
            self.out = Vec::new();
        }
    }

    /// Drops the connection's own decompressor.
    pub(crate) fn forget(&mut self, key: usize, generation: Generation) {
        if self
            .own
            .get(&(key as u32))
            .is_some_and(|o| o.0 == generation)
        {
            self.own.remove(&(key as u32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::encode;

    /// A frame compressed once for many connections is compressed at least at
    /// [`SHARED_FRAME_LEVEL`], whatever the (per-send) level configured: on a small
    /// JSON message that is what makes compressing it worth anything.
    #[test]
    fn a_frame_for_many_is_compressed_at_the_shared_frame_level() {
        let chat = r#"{"type":"message","room":"general","user":"user42","text":"the build is green again today, how are you there","ts":1765000123}"#;
        let settings = crate::Deflate::default().with_threshold(64);
        let compressors = Compressors::new(&Compression::Shared(settings));
        let mut compressors = compressors.expect("compression is on");
        let params = PerMessageDeflate {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        };
        let frame = encode(Message::Text(chat));
        let shared = compressors
            .shared_frame(params, &frame)
            .expect("it compresses");
        let direction = Direction {
            window_bits: 15,
            context_takeover: false,
        };
        let alone = |level| {
            let mut out = Vec::new();
            assert!(Deflater::new(direction, level).compress(chat.as_bytes(), &mut out));
            out
        };
        // A two-byte header, then the payload as level 6 makes it.
        assert_eq!(&shared[2..], &alone(SHARED_FRAME_LEVEL)[..]);
        assert!(alone(SHARED_FRAME_LEVEL).len() < alone(1).len());
        // A message that deflate cannot shrink (random bytes) goes as it is.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut deflated = Vec::new();
        assert!(Deflater::new(direction, SHARED_FRAME_LEVEL).compress(&noise, &mut deflated));
        assert!(deflated.len() >= noise.len(), "random bytes do not shrink");
        let incompressible = encode(Message::Binary(&noise));
        assert_eq!(compressors.shared_frame(params, &incompressible), None);
    }
}
