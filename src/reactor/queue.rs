//! A connection's output queue: the bytes the kernel has not taken yet.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes, BytesMut};
use slab::Slab;

/// The most segments handed to one `writev`.
const MAX_IOVECS: usize = 64;

/// Emptied queues kept for reuse, and the largest segment capacity kept with one.
const SPARE_QUEUES: usize = 256;
const SPARE_SEGMENTS: usize = 64;

/// Every connection's queue, and emptied queues kept with their capacity, so that a
/// subscriber that gets a batch every loop turn does not allocate a queue every turn.
#[derive(Default)]
pub(crate) struct Queues {
    slab: Slab<OutQueue>,
    spare: Vec<OutQueue>,
}

impl Queues {
    pub(crate) fn get(&self, index: usize) -> Option<&OutQueue> {
        self.slab.get(index)
    }

    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut OutQueue> {
        self.slab.get_mut(index)
    }

    /// The queue at `*index`, or a new empty one whose index is stored there.
    pub(crate) fn get_or_insert(&mut self, index: &mut u32) -> &mut OutQueue {
        if !self.slab.contains(*index as usize) {
            let queue = self.spare.pop().unwrap_or_default();
            let entry = self.slab.vacant_entry();
            *index = entry.key() as u32;
            return entry.insert(queue);
        }
        &mut self.slab[*index as usize]
    }

    /// Frees queue `index` (kept for reuse while there is room).
    pub(crate) fn remove(&mut self, index: usize) {
        if let Some(mut queue) = self.slab.try_remove(index)
            && self.spare.len() < SPARE_QUEUES
            && queue.segments.capacity() <= SPARE_SEGMENTS
        {
            queue.segments.clear();
            queue.tail.clear();
            queue.len = 0;
            self.spare.push(queue);
        }
    }
}

/// Bytes waiting for the kernel, in order: shared segments (a broadcast frame is one
/// `Bytes` shared by every queue it is in) and, at the end, a buffer that small
/// frames sent behind the queue are copied into once.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    segments: VecDeque<Bytes>,
    /// Bytes copied in after the last segment, not yet frozen into one.
    tail: BytesMut,
    len: usize,
}

impl OutQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Queues a shared segment, without a copy.
    pub(crate) fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.freeze_tail();
        self.len += bytes.len();
        self.segments.push_back(bytes);
    }

    /// Queues a copy of `bytes` (the one copy a borrowed payload costs).
    pub(crate) fn push_copy(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        self.tail.extend_from_slice(bytes);
    }

    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            self.segments.push_back(self.tail.split().freeze());
        }
    }

    /// Writes as much as the kernel takes, with vectored writes. Returns `Ok(true)`
    /// when the queue is empty afterwards.
    pub(crate) fn flush(&mut self, stream: &mut impl Write) -> io::Result<bool> {
        self.freeze_tail();
        while !self.segments.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, seg) in slices.iter_mut().zip(self.segments.iter()) {
                *slot = IoSlice::new(seg);
                count += 1;
            }
            match stream.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.segments.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// Writes `bufs` once (vectored), retrying on EINTR. Returns how much was taken;
/// `WouldBlock` counts as zero.
pub(crate) fn write_once(stream: &mut impl Write, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    loop {
        // One buffer (the usual cork) goes through write(2): writev(2) costs more in
        // the kernel for the same bytes.
        let result = match bufs {
            [one] => stream.write(one),
            _ => stream.write_vectored(bufs),
        };
        match result {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_walks_across_segments() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"defg"));
        assert_eq!(q.len(), 7);
        q.consume(4);
        assert_eq!(q.len(), 3);
        assert_eq!(q.segments.len(), 1);
        assert_eq!(&q.segments[0][..], b"efg");
        q.consume(3);
        assert!(q.len() == 0 && q.segments.is_empty());
    }

    #[test]
    fn copies_and_shared_segments_keep_their_order() {
        let mut q = OutQueue::default();
        q.push_copy(b"ab");
        q.push_copy(b"c");
        q.push(Bytes::from_static(b"DE"));
        q.push_copy(b"f");
        q.freeze_tail();
        let all: Vec<u8> = q.segments.iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(all, b"abcDEf");
        assert_eq!(q.len(), 6);
        assert_eq!(
            q.segments.len(),
            3,
            "copies made in a row share one segment"
        );
    }
}
