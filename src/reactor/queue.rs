//! A connection's output queue: the bytes the kernel has not taken yet.
//!
//! Under [`BackpressurePolicy::DropOldest`](crate::BackpressurePolicy::DropOldest)
//! the queue also knows which of its segments are whole messages that have not
//! started on the wire: each is a segment of its own, marked droppable, and loses
//! the mark as soon as the kernel takes its first byte. Only those are ever dropped,
//! so the peer never sees a torn frame.

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
            queue.droppable = 0;
            self.spare.push(queue);
        }
    }
}

/// Bytes waiting for the kernel, in order: shared segments (a broadcast frame is one
/// `Bytes` shared by every queue it is in) and, at the end, a buffer that small
/// frames sent behind the queue are copied into once.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    segments: VecDeque<Segment>,
    /// Bytes copied in after the last segment, not yet frozen into one.
    tail: BytesMut,
    len: usize,
    /// The bytes of the segments marked droppable.
    droppable: usize,
}

/// A run of queued bytes.
#[derive(Debug)]
struct Segment {
    bytes: Bytes,
    /// One whole message, not started on the wire: it may be dropped.
    droppable: bool,
}

impl Segment {
    fn kept(bytes: Bytes) -> Segment {
        Segment {
            bytes,
            droppable: false,
        }
    }
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
        self.segments.push_back(Segment::kept(bytes));
    }

    /// Queues one whole message that may be dropped until it starts on the wire,
    /// without a copy.
    pub(crate) fn push_message(&mut self, frame: Bytes) {
        self.freeze_tail();
        self.len += frame.len();
        self.droppable += frame.len();
        self.segments.push_back(Segment {
            bytes: frame,
            droppable: true,
        });
    }

    /// Queues a copy of one whole message (its header and payload) that may be
    /// dropped until it starts on the wire: a segment of its own.
    pub(crate) fn push_message_copy(&mut self, header: &[u8], payload: &[u8]) {
        self.freeze_tail();
        self.tail.extend_from_slice(header);
        self.tail.extend_from_slice(payload);
        let frame = self.tail.split().freeze();
        self.push_message(frame);
    }

    /// The bytes of the messages that may still be dropped.
    pub(crate) fn droppable(&self) -> usize {
        self.droppable
    }

    /// Drops the oldest droppable messages until at least `need` bytes are freed or
    /// none is left. Returns how many were dropped.
    pub(crate) fn drop_oldest(&mut self, need: usize) -> usize {
        let (mut freed, mut dropped, mut i) = (0, 0, 0);
        // The oldest are at the front, behind at most the frame being written and
        // a few runs of kept bytes: removing near the front moves little.
        while freed < need && i < self.segments.len() {
            if self.segments[i].droppable {
                if let Some(segment) = self.segments.remove(i) {
                    freed += segment.bytes.len();
                    dropped += 1;
                }
            } else {
                i += 1;
            }
        }
        self.len -= freed;
        self.droppable -= freed;
        dropped
    }

    /// Queues a copy of `bytes` (the one copy a borrowed payload costs).
    pub(crate) fn push_copy(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        self.tail.extend_from_slice(bytes);
    }

    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            let bytes = self.tail.split().freeze();
            self.segments.push_back(Segment::kept(bytes));
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
                *slot = IoSlice::new(&seg.bytes);
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
            if front.droppable {
                // Started on the wire (or gone): never dropped from now on.
                front.droppable = false;
                self.droppable -= front.bytes.len();
            }
            if front.bytes.len() <= n {
                n -= front.bytes.len();
                self.segments.pop_front();
            } else {
                front.bytes.advance(n);
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
        assert_eq!(&q.segments[0].bytes[..], b"efg");
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
        let all: Vec<u8> = q.segments.iter().flat_map(|s| s.bytes.to_vec()).collect();
        assert_eq!(all, b"abcDEf");
        assert_eq!(q.len(), 6);
        assert_eq!(
            q.segments.len(),
            3,
            "copies made in a row share one segment"
        );
    }

    fn contents(q: &mut OutQueue) -> Vec<u8> {
        q.freeze_tail();
        q.segments.iter().flat_map(|s| s.bytes.to_vec()).collect()
    }

    #[test]
    fn the_oldest_whole_messages_go_first_and_kept_bytes_stay() {
        let mut q = OutQueue::default();
        q.push_copy(b"<kept>");
        q.push_message(Bytes::from_static(b"[m1]"));
        q.push_message_copy(b"[", b"m2]");
        q.push_copy(b"<pong>");
        q.push_message(Bytes::from_static(b"[m3]"));
        assert_eq!((q.len(), q.droppable()), (24, 12));
        assert_eq!(q.drop_oldest(5), 2, "two messages free at least 5 bytes");
        assert_eq!(contents(&mut q), b"<kept><pong>[m3]");
        assert_eq!((q.len(), q.droppable()), (16, 4));
        assert_eq!(q.drop_oldest(100), 1, "all there is");
        assert_eq!(contents(&mut q), b"<kept><pong>");
        assert_eq!((q.len(), q.droppable()), (12, 0));
    }

    #[test]
    fn a_message_the_kernel_started_is_never_dropped() {
        let mut q = OutQueue::default();
        q.push_message(Bytes::from_static(b"[m1]"));
        q.push_message(Bytes::from_static(b"[m2]"));
        q.consume(1);
        assert_eq!(q.droppable(), 4, "only [m2] is whole and unstarted");
        assert_eq!(q.drop_oldest(1), 1);
        assert_eq!(contents(&mut q), b"m1]");
        q.consume(3);
        assert_eq!((q.len(), q.droppable()), (0, 0));
    }
}
