//! Read buffers for connections that hold a partial message, and their pool.
//!
//! Every read lands in the reactor's shared scratch buffer. A connection gets a
//! buffer of its own only while a frame or message is partly received, and gives it
//! back as soon as the message completes, so an idle connection holds none. Small
//! holds (a partial header, a trickled handshake) get a buffer of just their size, so
//! thousands of slow clients cost what they sent, not a buffer each; holds of 4 KiB
//! and more reuse buffers from a bounded pool.

use std::ops::Range;

/// Holds smaller than this get an exact-size buffer instead of a pooled one.
const POOLED_FROM: usize = 4 * 1024;

/// The bytes a connection keeps between reads.
///
/// `data[..len]` is held; `data[len..]` is initialised spare room that a read can
/// land in directly ([`spare_mut`](Self::spare_mut)), so a large message arriving
/// over many reads is not read elsewhere and copied in.
#[derive(Debug, Default)]
pub struct ReadBuf {
    data: Vec<u8>,
    len: usize,
}

impl ReadBuf {
    /// How many bytes are held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The held bytes.
    pub fn input_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }

    /// Appends newly read bytes (the buffer doubles as it grows, so a large message
    /// costs O(log n) growths).
    pub fn append(&mut self, bytes: &[u8]) {
        self.data.truncate(self.len);
        self.data.extend_from_slice(bytes);
        self.len = self.data.len();
    }

    /// Room for a read after the held bytes: the spare capacity, grown (doubling)
    /// when less than `min` is left. Bytes read into it are held once
    /// [`commit`](Self::commit)ted.
    pub fn spare_mut(&mut self, min: usize) -> &mut [u8] {
        if self.data.capacity() - self.len < min {
            self.data.truncate(self.len);
            self.data.reserve(min.max(self.len));
        }
        // Initialise the room once: a buffer reused from the pool already is.
        self.data.resize(self.data.capacity(), 0);
        &mut self.data[self.len..]
    }

    /// Holds the first `n` bytes of the room [`spare_mut`](Self::spare_mut) gave.
    pub fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.data.len());
    }

    /// Keeps only `range` of the held bytes, moved to the front.
    pub fn keep(&mut self, range: Range<usize>) {
        let end = range.end.min(self.len);
        let start = range.start.min(end);
        self.data.copy_within(start..end, 0);
        self.len = end - start;
    }

    /// The memory this buffer holds.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }
}

/// A bounded free list of read buffers.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    max_free: usize,
    pooled_size: usize,
    max_pooled_size: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_free` idle buffers of `pooled_size` bytes
    /// or more; buffers grown past `max_pooled_size` (by a large message) are freed
    /// rather than kept.
    pub fn new(max_free: usize, pooled_size: usize, max_pooled_size: usize) -> BufferPool {
        BufferPool {
            free: Vec::new(),
            max_free,
            pooled_size: pooled_size.max(POOLED_FROM),
            max_pooled_size,
        }
    }

    /// A buffer holding a copy of `bytes`: pooled if `bytes` is 4 KiB or more,
    /// exactly sized otherwise.
    pub fn take_with(&mut self, bytes: &[u8]) -> ReadBuf {
        let mut data = if bytes.len() < POOLED_FROM {
            Vec::with_capacity(bytes.len())
        } else {
            self.free
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(self.pooled_size.max(bytes.len())))
        };
        // A pooled buffer stays initialised: overwrite its start.
        if data.len() < bytes.len() {
            data.resize(bytes.len(), 0);
        }
        data[..bytes.len()].copy_from_slice(bytes);
        ReadBuf {
            data,
            len: bytes.len(),
        }
    }

    /// Returns a buffer. It is kept for reuse if the pool has room and its size is
    /// between the pooled size and the largest kept; otherwise it is freed.
    pub fn give(&mut self, buf: ReadBuf) {
        let data = buf.data;
        let capacity = data.capacity();
        if self.free.len() < self.max_free
            && capacity >= self.pooled_size
            && capacity <= self.max_pooled_size
        {
            self.free.push(data);
        }
    }

    /// How many buffers are idle in the pool.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_holds_are_exact_and_large_ones_reuse_pooled_buffers() {
        let mut pool = BufferPool::new(2, 16 * 1024, 256 * 1024);
        let small = pool.take_with(b"GET / HT");
        assert_eq!((small.len(), small.capacity()), (8, 8));
        pool.give(small);
        assert_eq!(pool.idle(), 0, "small buffers are not pooled");

        let big = pool.take_with(&[7; 5000]);
        assert!(big.capacity() >= 16 * 1024);
        let ptr = big.data.as_ptr();
        pool.give(big);
        assert_eq!(pool.idle(), 1);
        let again = pool.take_with(&[1; 4096]);
        assert_eq!(again.data.as_ptr(), ptr, "reused");
        assert_eq!(again.len(), 4096);
    }

    #[test]
    fn the_pool_is_bounded_and_drops_grown_buffers() {
        let mut pool = BufferPool::new(2, 16 * 1024, 64 * 1024);
        let bufs: Vec<_> = (0..3).map(|_| pool.take_with(&[0; 5000])).collect();
        for b in bufs {
            pool.give(b);
        }
        assert_eq!(pool.idle(), 2);
        let mut grown = pool.take_with(&[0; 5000]);
        grown.append(&[0; 100_000]);
        pool.give(grown);
        assert_eq!(pool.idle(), 1, "a buffer grown past the maximum is freed");
    }

    #[test]
    fn keep_and_append() {
        let mut pool = BufferPool::new(1, 16 * 1024, 64 * 1024);
        let mut buf = pool.take_with(b"abcdef");
        buf.keep(2..5);
        assert_eq!(buf.input_mut(), b"cde");
        buf.append(b"fg");
        assert_eq!(buf.input_mut(), b"cdefg");
        buf.keep(5..5);
        assert!(buf.is_empty());
    }

    #[test]
    fn reads_land_in_the_spare_room_and_grow_it_by_doubling() {
        let mut pool = BufferPool::new(1, 16 * 1024, 64 * 1024);
        let mut buf = pool.take_with(&[1; 5000]);
        let room = buf.spare_mut(4096);
        assert!(room.len() >= 16 * 1024 - 5000);
        room[..3].copy_from_slice(b"abc");
        buf.commit(3);
        assert_eq!(buf.len(), 5003);
        assert_eq!(&buf.input_mut()[4999..], &[1, b'a', b'b', b'c']);
        // Fill it: the next room doubles the buffer, keeping what is held.
        let rest = buf.spare_mut(1).len();
        buf.commit(rest);
        let before = buf.capacity();
        assert!(buf.spare_mut(4096).len() >= 4096);
        assert!(buf.capacity() >= 2 * before - 1);
        assert_eq!(&buf.input_mut()[4999..5003], &[1, b'a', b'b', b'c']);
        // Kept bytes move to the front; the room after them is reused.
        buf.keep(5000..5003);
        assert_eq!(buf.input_mut(), b"abc");
        buf.append(b"de");
        assert_eq!(buf.input_mut(), b"abcde");
    }
}
