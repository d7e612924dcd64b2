//! A global allocator that counts the allocations made on threads a test has marked,
//! for a path that runs on a thread the test does not own (a reactor thread: code the
//! test runs there, such as a handler's `on_open`, marks it). Each test takes its own
//! counter, so tests in one binary can run at once. Include it with
//! `#[path = "util/marked_alloc.rs"] mod marked_alloc;` in one test file only.
//!
//! To see what allocates, call [`trace_from_now`]: with the environment variable
//! `MARKED_ALLOC_BACKTRACES=n`, the first `n` counted allocations after it print a
//! backtrace to stderr.
#![allow(unsafe_code)]
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How many counters there are: one per test that marks threads.
const COUNTERS: usize = 16;

static COUNTS: [AtomicU64; COUNTERS] = [const { AtomicU64::new(0) }; COUNTERS];
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Backtraces still to print (set by `trace_from_now`).
static TRACES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The counter this thread's allocations go to, plus one (0: not marked).
    static MARK: Cell<usize> = const { Cell::new(0) };
    /// Set while a backtrace is taken, so that its own allocations are not counted.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

/// A counter of allocations on the threads marked with it.
#[derive(Clone, Copy, Debug)]
pub struct Counter(usize);

impl Counter {
    /// A counter of its own.
    ///
    /// # Panics
    ///
    /// If more than `COUNTERS` are taken in one process.
    pub fn new() -> Counter {
        let index = NEXT.fetch_add(1, Relaxed);
        assert!(index < COUNTERS, "more counters than {COUNTERS}");
        Counter(index)
    }

    /// Counts the current thread's allocations from now on (and stops counting them
    /// for any other counter).
    pub fn mark_this_thread(self) {
        MARK.with(|m| m.set(self.0 + 1));
    }

    /// Allocations made so far on the threads marked with this counter.
    pub fn get(self) -> u64 {
        COUNTS[self.0].load(Relaxed)
    }
}

/// Prints a backtrace for each of the next `MARKED_ALLOC_BACKTRACES` counted
/// allocations (none when the variable is unset).
pub fn trace_from_now() {
    let n = std::env::var("MARKED_ALLOC_BACKTRACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    TRACES.store(n, Relaxed);
}

/// Prints `label` to stderr when backtraces are asked for, to tell which part of a
/// test the backtraces after it belong to.
pub fn trace_label(label: &str) {
    if std::env::var_os("MARKED_ALLOC_BACKTRACES").is_some() {
        eprintln!("=== {label}");
    }
}

fn count(size: usize) {
    let mark = MARK.with(Cell::get);
    if mark == 0 || TRACING.with(Cell::get) {
        return;
    }
    COUNTS[mark - 1].fetch_add(1, Relaxed);
    if TRACES.load(Relaxed) > 0
        && TRACES
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    {
        // Taking and printing the backtrace allocates: those allocations come back
        // here and are skipped.
        TRACING.with(|t| t.set(true));
        let trace = std::backtrace::Backtrace::force_capture();
        eprintln!("counted allocation of {size} bytes:\n{trace}");
        TRACING.with(|t| t.set(false));
    }
}

/// Counts `alloc`, `alloc_zeroed` and `realloc` calls on marked threads, then defers to
/// the system allocator.
pub struct Marked;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold. The counting touches atomics and const-initialised
// thread-local `Cell`s, which never allocate; the optional backtrace allocates through
// this allocator again, which the `TRACING` flag turns into a plain forward.
unsafe impl GlobalAlloc for Marked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded unchanged; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
