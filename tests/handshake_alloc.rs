//! The server's handshake path allocates nothing: parsing the request in place and writing
//! the 101 into a buffer that already has the capacity touch no heap.
// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wsreactor::proto::handshake::{
    self, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, EMPTY_HEADER,
};

thread_local! {
    // Per thread, so that the test harness and other tests running at the same time do not
    // count; `const` so that touching it never allocates.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's own arguments, so `System`'s
// guarantees are ours; counting touches only a thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `alloc`'s contract, which is `System.alloc`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `alloc_zeroed`'s contract, which is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: `ptr` and `layout` came from this allocator, hence from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` and `layout` came from this allocator, hence from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// How many allocations `f` makes on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

const BROWSER_REQUEST: &[u8] = b"GET /socket?room=lobby HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

#[test]
fn parse_request_and_write_accept_allocate_nothing() {
    let mut out = Vec::with_capacity(512);
    // The counter itself works: a Box is counted.
    assert_eq!(
        allocations_in(|| drop(std::hint::black_box(Box::new(1u64)))),
        1
    );

    let count = allocations_in(|| {
        let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
        let parsed =
            handshake::parse_request(BROWSER_REQUEST, &mut headers, DEFAULT_MAX_HEADER_BYTES);
        let Ok(Some((req, consumed))) = parsed else {
            panic!("the request is valid");
        };
        assert_eq!(consumed, BROWSER_REQUEST.len());
        let protocol = req.subprotocols().find(|p| *p == "superchat");
        let deflate = req
            .extensions()
            .any(|offer| offer.name() == "permessage-deflate");
        assert!(deflate);
        handshake::write_accept(&mut out, req.key().as_bytes(), protocol, None);
        std::hint::black_box(&out);
    });
    assert_eq!(count, 0, "the handshake path allocated");
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));

    // The refusal paths are allocation-free as well.
    let count = allocations_in(|| {
        out.clear();
        let mut headers = [EMPTY_HEADER; 4];
        if let Err(e) = handshake::parse_request(BROWSER_REQUEST, &mut headers, 8192) {
            handshake::write_error(&mut out, &e);
        }
        handshake::write_status(&mut out, 403);
    });
    assert_eq!(count, 0, "the refusal path allocated");
    assert!(out.starts_with(b"HTTP/1.1 431 "));
}
