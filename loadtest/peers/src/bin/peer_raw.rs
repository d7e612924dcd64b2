//! `peer-raw`: a raw TCP echo over mio with no WebSocket framing, for benchmarking only.
//!
//! It is the ceiling a WebSocket server on this machine can approach: the same syscalls per
//! message (one read, one write) with no parsing, unmasking or encoding. Each of `--threads`
//! threads has its own `Poll` and its own `SO_REUSEPORT` listener on the same port, as
//! wsreactor's reactors do, and one 64 KiB read buffer shared by all its connections.

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpListener as StdTcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use peers::{Usage, announce, listen, log_dropped};
use signal_hook::consts::{SIGINT, SIGTERM};
use slab::Slab;

const NAME: &str = "peer-raw";

/// The listener's token; connections use their slab key, which never gets this high.
const LISTENER: Token = Token(usize::MAX);

/// The read buffer per thread: the same 64 KiB class as wsreactor's scratch buffer.
const READ_BUFFER: usize = 64 * 1024;

/// Past this many queued bytes a connection is not read until its queue drains, so a
/// client that sends without reading cannot grow the server without bound.
const MAX_QUEUED: usize = 1024 * 1024;

/// A queue that grew past this is freed once it drains, so a burst does not keep its
/// memory on an idle connection.
const KEEP_QUEUE_CAPACITY: usize = 64 * 1024;

/// Events taken from one `poll` call.
const EVENTS_PER_POLL: usize = 1024;

/// The longest a thread sleeps before checking the stop flag: a signal interrupts only one
/// thread's `epoll_wait`, and the others notice within this time.
const STOP_CHECK: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let usage = Usage {
        name: NAME,
        about: "raw TCP echo over mio (no WebSocket framing): the ceiling",
        has_runtime: false,
        default_threads: 1,
    };
    let args = usage.parse_env();
    match run(args.addr, args.threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(addr: std::net::SocketAddr, threads: usize) -> io::Result<()> {
    // The flag is set before the `listening on` line, so a harness that stops the peer as
    // soon as it has read that line finds the handlers in place.
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(SIGTERM, Arc::clone(&stop))?;

    // Every listener is bound before the line is printed, so each thread already takes its
    // share of connections when the harness starts; with port 0 the first one picks the port.
    let first = listen(addr, true)?;
    let local = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(listen(local, true)?);
    }
    announce(
        local,
        format_args!("{NAME}, event-loop threads: {threads}, one SO_REUSEPORT listener each"),
    )?;

    let mut running = Vec::with_capacity(threads);
    for (index, listener) in listeners.into_iter().enumerate() {
        let stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(format!("{NAME}-{index}"))
            .spawn(move || event_loop(listener, &stop))?;
        running.push(thread);
    }
    let mut result = Ok(());
    for thread in running {
        let outcome = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("an event-loop thread panicked")));
        if let Err(error) = outcome {
            // One thread failing stops the others too: a peer serving on some threads only
            // would skew the benchmark without saying so.
            stop.store(true, Ordering::Relaxed);
            result = Err(error);
        }
    }
    if result.is_ok() {
        eprintln!("{NAME}: stopped on a signal");
    }
    result
}

fn event_loop(listener: StdTcpListener, stop: &AtomicBool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    let mut listener = TcpListener::from_std(listener);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut connections: Slab<Connection> = Slab::new();
    let mut buffer = vec![0; READ_BUFFER];

    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(STOP_CHECK)) {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, &mut connections, poll.registry());
                continue;
            }
            let key = event.token().0;
            let Some(connection) = connections.get_mut(key) else {
                continue;
            };
            let open = connection.ready(
                event.is_readable(),
                event.is_read_closed() || event.is_error(),
                &mut buffer,
            );
            if !open {
                let mut connection = connections.remove(key);
                // Closing the socket deregisters it too; this only keeps the order explicit.
                let _ = poll.registry().deregister(&mut connection.stream);
            }
        }
    }
    Ok(())
}

/// Accepts until the backlog is empty (edge-triggered: no second notice comes otherwise).
fn accept_all(listener: &TcpListener, connections: &mut Slab<Connection>, registry: &Registry) {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => {
                // EMFILE and the like: what is left in the backlog waits for the next
                // connection's edge rather than spinning here.
                return log_dropped(NAME, "accept", error);
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            log_dropped(NAME, "TCP_NODELAY", error);
            continue;
        }
        let entry = connections.vacant_entry();
        let token = Token(entry.key());
        match registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE) {
            Ok(()) => {
                entry.insert(Connection::new(stream));
            }
            Err(error) => log_dropped(NAME, "register", error),
        }
    }
}

/// One client: its socket and the bytes the kernel has not yet taken.
struct Connection {
    stream: TcpStream,
    /// Echoed bytes not yet written, from `queued_from` on.
    queued: Vec<u8>,
    queued_from: usize,
    /// Reading stopped at `MAX_QUEUED` and resumes once the queue drains.
    read_paused: bool,
    /// The client shut down its side; close once the queue drains.
    read_closed: bool,
}

impl Connection {
    fn new(stream: TcpStream) -> Self {
        Connection {
            stream,
            queued: Vec::new(),
            queued_from: 0,
            read_paused: false,
            read_closed: false,
        }
    }

    fn queued_len(&self) -> usize {
        self.queued.len() - self.queued_from
    }

    /// Handles one readiness event; returns whether the connection stays open.
    ///
    /// `closed` (the client's FIN or an error came with this event) turns off the short-read
    /// shortcut: no further edge would come for what is already there.
    fn ready(&mut self, readable: bool, closed: bool, buffer: &mut [u8]) -> bool {
        if self.queued_len() > 0 {
            // A write-only edge: flush, and on a drained queue resume a paused read.
            if !self.flush() {
                return false;
            }
        }
        if self.read_closed {
            return self.queued_len() > 0;
        }
        let resume = self.read_paused && self.queued_len() < MAX_QUEUED;
        if readable || closed || resume {
            self.read_paused = false;
            // After a pause the edges that came meanwhile are lost, so drain fully too.
            return self.read_and_echo(buffer, closed || resume);
        }
        true
    }

    /// Reads until `WouldBlock` (or a short read, unless `until_would_block`) and writes
    /// back what was read.
    fn read_and_echo(&mut self, buffer: &mut [u8], until_would_block: bool) -> bool {
        loop {
            if self.queued_len() >= MAX_QUEUED {
                self.read_paused = true;
                return true;
            }
            match self.stream.read(buffer) {
                Ok(0) => {
                    self.read_closed = true;
                    return self.queued_len() > 0;
                }
                Ok(read) => {
                    if !self.echo(&buffer[..read]) {
                        return false;
                    }
                    if read < buffer.len() && !until_would_block {
                        // A short read drained the socket, saving the read that would
                        // return WouldBlock; data arriving later brings a new edge.
                        return true;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    log_dropped(NAME, "read", error);
                    return false;
                }
            }
        }
    }

    /// Writes `bytes` now if nothing is queued ahead of them, and queues what is left.
    fn echo(&mut self, bytes: &[u8]) -> bool {
        let mut written = 0;
        if self.queued_len() == 0 {
            while written < bytes.len() {
                match self.stream.write(&bytes[written..]) {
                    Ok(0) => return false,
                    Ok(n) => written += n,
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(error) => {
                        log_dropped(NAME, "write", error);
                        return false;
                    }
                }
            }
        }
        self.queued.extend_from_slice(&bytes[written..]);
        true
    }

    /// Writes the queue until it is empty or the kernel stops taking it.
    fn flush(&mut self) -> bool {
        while self.queued_len() > 0 {
            match self.stream.write(&self.queued[self.queued_from..]) {
                Ok(0) => return false,
                Ok(n) => self.queued_from += n,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return true,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    log_dropped(NAME, "write", error);
                    return false;
                }
            }
        }
        if self.queued.capacity() > KEEP_QUEUE_CAPACITY {
            self.queued = Vec::new();
        } else {
            self.queued.clear();
        }
        self.queued_from = 0;
        true
    }
}
