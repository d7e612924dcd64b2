//! The per-reactor pool of read buffers.
//!
//! A connection holds a read buffer only while a frame or message is partly
//! received; the buffer comes from here and goes back as soon as the message
//! completes, so an idle connection holds none. Buffers stay initialised (their
//! `Vec` length is their capacity), so reading into one never zeroes memory twice.

/// A read buffer: `data` is initialised up to its length, `filled` bytes are input.
#[derive(Debug, Default)]
pub struct ReadBuf {
    data: Vec<u8>,
    filled: usize,
}

impl ReadBuf {
    /// The bytes received and not yet consumed.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// The whole initialised buffer.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The input bytes.
    pub fn input_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.filled]
    }

    /// Room to read into, grown to at least `min` bytes (and doubling, so a large
    /// message costs O(log n) growths).
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        if self.data.len() - self.filled < min {
            let want = (self.filled + min).max(self.data.len() * 2);
            self.data.resize(want, 0);
        }
        &mut self.data[self.filled..]
    }

    /// Marks `n` more bytes as received (after reading into [`spare`](Self::spare)).
    pub fn advance(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.data.len());
    }

    /// Keeps only `range` of the input, moved to the front.
    pub fn keep(&mut self, range: std::ops::Range<usize>) {
        let len = range.len();
        if range.start > 0 {
            self.data.copy_within(range, 0);
        }
        self.filled = len;
    }

    /// Replaces the input with a copy of `bytes`.
    pub fn fill_from(&mut self, bytes: &[u8]) {
        self.filled = 0;
        let room = self.spare(bytes.len());
        room[..bytes.len()].copy_from_slice(bytes);
        self.filled = bytes.len();
    }

    /// The initialised size (the memory this buffer holds).
    pub fn capacity(&self) -> usize {
        self.data.len()
    }
}

/// A bounded free list of read buffers.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<ReadBuf>,
    max_free: usize,
    initial: usize,
    max_pooled_size: usize,
}

impl BufferPool {
    /// A pool that keeps at most `max_free` idle buffers. New buffers start at
    /// `initial` bytes; buffers grown past `max_pooled_size` (by a large message) are
    /// freed rather than kept.
    pub fn new(max_free: usize, initial: usize, max_pooled_size: usize) -> BufferPool {
        BufferPool {
            free: Vec::new(),
            max_free,
            initial,
            max_pooled_size,
        }
    }

    /// An empty buffer, reused if one is free.
    pub fn take(&mut self) -> ReadBuf {
        match self.free.pop() {
            Some(buf) => buf,
            None => ReadBuf {
                data: vec![0; self.initial],
                filled: 0,
            },
        }
    }

    /// Returns a buffer to the pool.
    pub fn give(&mut self, mut buf: ReadBuf) {
        if self.free.len() < self.max_free && buf.data.len() <= self.max_pooled_size {
            buf.filled = 0;
            self.free.push(buf);
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
    fn buffers_are_reused_and_bounded() {
        let mut pool = BufferPool::new(2, 16, 1024);
        let a = pool.take();
        let b = pool.take();
        let c = pool.take();
        pool.give(a);
        pool.give(b);
        pool.give(c);
        assert_eq!(pool.idle(), 2);
        let mut big = pool.take();
        big.spare(4096);
        pool.give(big);
        assert_eq!(pool.idle(), 1, "a grown buffer is not kept");
    }

    #[test]
    fn keep_spare_and_fill() {
        let mut buf = BufferPool::new(1, 8, 64).take();
        buf.fill_from(b"abcdef");
        assert_eq!(buf.input_mut(), b"abcdef");
        buf.keep(2..5);
        assert_eq!(buf.input_mut(), b"cde");
        let room = buf.spare(100);
        assert!(room.len() >= 100);
        room[..2].copy_from_slice(b"fg");
        buf.advance(2);
        assert_eq!(buf.input_mut(), b"cdefg");
    }
}
