//! Read buffers for connections that hold a partial message, and their pool.
//!
//! Every read lands in the reactor's shared scratch buffer. A connection gets a
//! buffer of its own only while a frame or message is partly received, and gives it
//! back as soon as the message completes, so an idle connection holds none. Small
//! holds (a partial header, a trickled handshake) get a buffer of just their size, so
//! thousands of slow clients cost what they sent, not a buffer each; holds of 4 KiB
//! and more reuse buffers from a bounded pool.

use std::io;
use std::ops::Range;
use std::os::fd::AsFd;

mod spare;

/// Holds smaller than this get an exact-size buffer instead of a pooled one.
const POOLED_FROM: usize = 4 * 1024;

/// The bytes a connection keeps between reads.
#[derive(Debug, Default)]
pub struct ReadBuf {
    data: Vec<u8>,
}

impl ReadBuf {
    /// How many bytes are held.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The held bytes.
    pub fn input_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Appends newly read bytes (the buffer doubles as it grows, so a large message
    /// costs O(log n) growths).
    pub fn append(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Reads from `socket` straight after the held bytes, into the buffer's spare
    /// room (grown by doubling when less than `min` is left), without a copy.
    /// Returns the bytes read and the room offered.
    ///
    /// # Errors
    ///
    /// The socket's error, as `read` would return it (`WouldBlock` included).
    pub(crate) fn read_from<S: AsFd>(
        &mut self,
        socket: &S,
        min: usize,
    ) -> (io::Result<usize>, usize) {
        if self.data.capacity() - self.data.len() < min {
            self.data.reserve(min.max(self.data.len()));
        }
        let room = self.data.capacity() - self.data.len();
        (spare::read_into_spare(socket, &mut self.data), room)
    }

    /// Keeps only `range` of the held bytes, moved to the front.
    pub fn keep(&mut self, range: Range<usize>) {
        let end = range.end.min(self.data.len());
        let start = range.start.min(end);
        if start > 0 {
            self.data.copy_within(start..end, 0);
        }
        self.data.truncate(end - start);
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

    /// A buffer holding a copy of `bytes`: pooled if `pooled` is set (the holder is
    /// busy and will read into it again at once) or `bytes` is 4 KiB or more,
    /// exactly sized otherwise (a slow holder costs what it sent).
    pub fn take_with(&mut self, bytes: &[u8], pooled: bool) -> ReadBuf {
        let mut data = if bytes.len() < POOLED_FROM && !pooled {
            Vec::with_capacity(bytes.len())
        } else {
            self.free
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(self.pooled_size.max(bytes.len())))
        };
        data.extend_from_slice(bytes);
        ReadBuf { data }
    }

    /// Returns a buffer. It is kept for reuse if the pool has room and its size is
    /// between the pooled size and the largest kept; otherwise it is freed.
    pub fn give(&mut self, buf: ReadBuf) {
        let mut data = buf.data;
        let capacity = data.capacity();
        if self.free.len() < self.max_free
            && capacity >= self.pooled_size
            && capacity <= self.max_pooled_size
        {
            data.clear();
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
        let small = pool.take_with(b"GET / HT", false);
        assert_eq!((small.len(), small.capacity()), (8, 8));
        pool.give(small);
        assert_eq!(pool.idle(), 0, "small buffers are not pooled");
        let busy = pool.take_with(b"GET / HT", true);
        assert!(busy.capacity() >= 16 * 1024, "unless their holder is busy");
        pool.give(busy);
        assert_eq!(pool.idle(), 1);

        let big = pool.take_with(&[7; 5000], false);
        assert!(big.capacity() >= 16 * 1024);
        let ptr = big.data.as_ptr();
        pool.give(big);
        assert_eq!(pool.idle(), 1);
        let again = pool.take_with(&[1; 4096], false);
        assert_eq!(again.data.as_ptr(), ptr, "reused");
        assert_eq!(again.len(), 4096);
    }

    #[test]
    fn the_pool_is_bounded_and_drops_grown_buffers() {
        let mut pool = BufferPool::new(2, 16 * 1024, 64 * 1024);
        let bufs: Vec<_> = (0..3).map(|_| pool.take_with(&[0; 5000], false)).collect();
        for b in bufs {
            pool.give(b);
        }
        assert_eq!(pool.idle(), 2);
        let mut grown = pool.take_with(&[0; 5000], false);
        grown.append(&[0; 100_000]);
        pool.give(grown);
        assert_eq!(pool.idle(), 1, "a buffer grown past the maximum is freed");
    }

    #[test]
    fn keep_and_append() {
        let mut pool = BufferPool::new(1, 16 * 1024, 64 * 1024);
        let mut buf = pool.take_with(b"abcdef", false);
        buf.keep(2..5);
        assert_eq!(buf.input_mut(), b"cde");
        buf.append(b"fg");
        assert_eq!(buf.input_mut(), b"cdefg");
        buf.keep(5..5);
        assert!(buf.is_empty());
    }

    #[test]
    fn reads_land_after_the_held_bytes_and_grow_the_buffer_by_doubling() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tx = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (rx, _) = listener.accept().unwrap();
        let mut pool = BufferPool::new(1, 16 * 1024, 64 * 1024);
        let mut buf = pool.take_with(&[1; 5000], false);
        tx.write_all(b"abc").unwrap();
        let (n, room) = buf.read_from(&rx, 4096);
        assert_eq!(n.unwrap(), 3);
        assert!(room >= 16 * 1024 - 5000);
        assert_eq!(&buf.input_mut()[4999..], &[1, b'a', b'b', b'c']);
        // Fill the room: the next read doubles the buffer, keeping what is held.
        tx.write_all(&vec![2; room - 3]).unwrap();
        let mut got = 0;
        while got < room - 3 {
            got += buf.read_from(&rx, 1).0.unwrap();
        }
        let before = buf.capacity();
        tx.write_all(b"d").unwrap();
        let (n, room) = buf.read_from(&rx, 4096);
        assert_eq!(n.unwrap(), 1);
        assert!(room >= 4096 && buf.capacity() >= 2 * before);
        assert_eq!(&buf.input_mut()[4999..5003], &[1, b'a', b'b', b'c']);
        assert_eq!(buf.input_mut().last(), Some(&b'd'));
    }
}
