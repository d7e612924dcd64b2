//! Hostile peers against a real server on 127.0.0.1, with raw TCP clients. Every
//! scenario checks three things: the bad peers get what RFC 6455 and the
//! configuration say (a status, a close code, a dropped connection); a well-behaved
//! client is served during and after; and the server's memory stays under a bound
//! stated in the test.
//!
//! Memory is the process's live heap, counted by a global allocator
//! (`util/live_alloc.rs`). The clients live in the same process, so the figure is
//! the server's heap plus the clients' few buffers: a bound that holds for it holds
//! for the server. File descriptors are counted in /proc/self/fd. Both are
//! process-wide, so the scenarios run one at a time (`SERIAL`).
//!
//! Nothing here is timed against this machine's speed: a scenario runs until what
//! it waits for has happened (the server paused, dropped, closed), with
//! [`PATIENCE`] only as the guard against a hang.

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/server.rs"]
mod server;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use server::{
    Client, Echo, PATIENCE, UPGRADE, assert_echo, connect, raw, raw_ws, read_close_code,
    read_frame, read_head, read_until_closed, start, wait_for_stats,
};
use socket2::SockRef;
use wsreactor::{
    BackpressurePolicy, CloseCode, Config, ConnId, Handler, Message, QueueStatus, ServerHandle,
    Socket,
};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

/// One scenario at a time: heap and descriptor counts are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// Two reactors, as on this two-core machine; short close timeout so that
/// misbehaving peers are let go quickly.
fn config() -> Config {
    Config::default()
        .with_reactors(2)
        .with_close_timeout(Duration::from_millis(500))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// A masked client frame with any first byte (FIN, RSV and opcode).
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x5a, 0x13, 0xc7, 0x81];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
}

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const FIN: u8 = 0x80;

/// Resets the connection when dropped: SO_LINGER 0, so close sends an RST.
fn reset(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// A raw WebSocket connection whose reads wait up to the hang guard.
fn patient_ws(addr: SocketAddr) -> TcpStream {
    let s = raw_ws(addr);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

/// The well-behaved client, echoed before, during and after each scenario.
struct Good(Client);

impl Good {
    fn connect(server: &ServerHandle) -> Good {
        let mut ws = connect(server.local_addr(), "/");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(PATIENCE)).unwrap();
        }
        assert_echo(&mut ws, "before");
        Good(ws)
    }

    fn echo(&mut self, text: &str) {
        assert_echo(&mut self.0, text);
    }
}

/// Counts opens and closes, and echoes.
#[derive(Clone, Default)]
struct Counting {
    opened: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
}

impl Handler for Counting {
    type Session = ();
    fn on_open(&mut self, _: &mut Socket<'_, ()>) {
        self.opened.fetch_add(1, SeqCst);
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
    fn on_close(&mut self, _: ConnId, _: (), _: CloseCode, _: &str) {
        self.closed.fetch_add(1, SeqCst);
    }
}

/// Stops `server`, then checks that the process is back to the descriptors it had
/// before the scenario.
fn stop(server: ServerHandle, fds_before: usize) {
    server
        .shutdown(Duration::from_secs(5))
        .expect("the server shuts down");
    drop(server);
    let started = Instant::now();
    while open_fds() > fds_before {
        if started.elapsed() > PATIENCE {
            let left: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            panic!("{} descriptors before, {left:?} after", fds_before);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ---- slowloris ----------------------------------------------------------------------

const SLOWLORIS: usize = 5_000;

#[test]
fn slowloris_5000_connections_trickling_a_byte_a_second_are_all_dropped_at_the_handshake_timeout() {
    let _serial = serial();
    const TIMEOUT: Duration = Duration::from_secs(2);
    let fds_before = open_fds();
    let server = start(config().with_handshake_timeout(Some(TIMEOUT)), Echo);
    let addr = server.local_addr();
    let mut good = Good::connect(&server);
    let heap_before = live_alloc::reset_peak();

    let started = Instant::now();
    let mut conns: Vec<Option<TcpStream>> = (0..SLOWLORIS)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nonblocking(true).expect("nonblocking");
            Some(s)
        })
        .collect();
    let opened = started.elapsed();
    let mut sent = 0; // bytes of the request each connection has sent
    let mut next_byte = started;
    let mut dropped_at = Vec::with_capacity(SLOWLORIS);
    let mut answered = 0;
    let mut echoed_during = false;
    let mut buf = [0u8; 512];
    // At a byte a second the request is never complete within the hang guard: a
    // server that let each byte extend the timeout would keep them all past it.
    assert!(PATIENCE.as_secs() < UPGRADE.len() as u64);
    while dropped_at.len() < SLOWLORIS {
        let now = started.elapsed();
        assert!(
            now < PATIENCE,
            "{} of {SLOWLORIS} connections still open after {now:?} and {sent} bytes each",
            SLOWLORIS - dropped_at.len()
        );
        let write = Instant::now() >= next_byte;
        if write {
            next_byte += Duration::from_secs(1);
            sent += 1;
        }
        for slot in conns.iter_mut() {
            let Some(s) = slot else { continue };
            let gone = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => {
                    answered += 1; // the server may say 408 before it goes
                    false
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    write && s.write(&UPGRADE.as_bytes()[sent - 1..sent]).is_err()
                }
                Err(_) => true,
            };
            if gone {
                dropped_at.push(now);
                *slot = None;
            }
        }
        if !echoed_during && now > TIMEOUT / 2 {
            good.echo("during the slowloris");
            echoed_during = true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let heap_peak = live_alloc::peak() - heap_before;
    good.echo("after the slowloris");

    let first = dropped_at.iter().min().copied().unwrap_or_default();
    let last = dropped_at.iter().max().copied().unwrap_or_default();
    eprintln!(
        "slowloris: {SLOWLORIS} connections opened in {opened:?}, {sent} bytes each, dropped \
         between {first:?} and {last:?}; {answered} answers; heap peak +{heap_peak} B \
         ({} B per connection)",
        heap_peak / SLOWLORIS
    );
    assert!(echoed_during);
    assert!(
        first >= TIMEOUT,
        "a connection was dropped after {first:?}, before the {TIMEOUT:?} timeout"
    );
    // The slot, the partial request and the timer: well under 1 KiB a connection.
    assert!(
        heap_peak < SLOWLORIS * KIB + MIB,
        "heap grew by {heap_peak} B for {SLOWLORIS} handshakes in progress"
    );
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 1);
    assert!(stats.rejected >= SLOWLORIS as u64, "{stats:?}");
    drop(good);
    stop(server, fds_before);
}

// ---- handshakes -----------------------------------------------------------------------

/// Sends `request` (the server may close before it has all of it) and returns the
/// status of the answer.
fn status_for(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut s = raw(addr);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    for chunk in request.chunks(16 * KIB) {
        if s.write_all(chunk).is_err() {
            break; // the server has answered and closed
        }
    }
    let head = read_head(&mut s);
    let _ = read_until_closed(&mut s);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

#[test]
fn oversized_and_header_flooded_handshakes_get_431_and_garbage_gets_400() {
    let _serial = serial();
    let fds_before = open_fds();
    let config = config();
    let limit = config.max_header_bytes;
    let server = start(config, Echo);
    let addr = server.local_addr();
    let mut good = Good::connect(&server);
    let heap_before = live_alloc::reset_peak();

    // 1 MiB of headers, streamed: refused at the limit, never buffered whole.
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    while huge.len() < MIB {
        huge.extend_from_slice(
            b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    // 5,000 tiny headers: within a few KiB of bytes for some, but far too many.
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..5_000 {
        many.extend_from_slice(format!("a{i}:1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    // One long header line with no end.
    let mut line = b"GET / HTTP/1.1\r\nX: ".to_vec();
    line.resize(limit * 4, b'a');

    let mut garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    garbage[..4].copy_from_slice(b"\x16\x03\x01\x02"); // a TLS ClientHello's start
    let cases: [(&str, &[u8], u16); 6] = [
        ("1 MiB of headers", &huge, 431),
        ("5,000 headers", &many, 431),
        ("a header line longer than the limit", &line, 431),
        ("binary garbage", &garbage, 400),
        (
            "a request line that is not HTTP",
            b"HELLO THERE\r\n\r\n",
            400,
        ),
        (
            "a NUL in a header",
            b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n",
            400,
        ),
    ];
    for round in 0..20 {
        for (what, request, status) in cases {
            assert_eq!(status_for(addr, request), status, "{what}");
        }
        if round == 10 {
            good.echo("during the bad handshakes");
        }
    }
    let heap_peak = live_alloc::peak() - heap_before;
    good.echo("after the bad handshakes");
    eprintln!("bad handshakes: heap peak +{heap_peak} B (limit {limit} B)");
    // The clients' own 1 MiB request and a few header-limit buffers; never a
    // request held whole.
    assert!(
        heap_peak < 2 * MIB + 8 * limit,
        "heap grew by {heap_peak} B"
    );
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 1);
    assert_eq!(stats.rejected, 20 * cases.len() as u64, "{stats:?}");
    drop(good);
    stop(server, fds_before);
}

// ---- giant and trickled frames ----------------------------------------------------------

#[test]
fn a_frame_announcing_2_pow_63_minus_1_bytes_is_closed_with_1009_from_its_header() {
    let _serial = serial();
    let fds_before = open_fds();
    let server = start(config(), Echo);
    let mut good = Good::connect(&server);
    let heap_before = live_alloc::reset_peak();
    for opcode in [TEXT, BINARY] {
        let mut s = patient_ws(server.local_addr());
        let mut header = vec![FIN | opcode, 0x80 | 127];
        header.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        // The header alone, not one payload byte: the answer must come from it.
        s.write_all(&header).unwrap();
        assert_eq!(read_close_code(&mut s), Some(1009));
        read_until_closed(&mut s);
    }
    let heap_peak = live_alloc::peak() - heap_before;
    good.echo("after the giant frame");
    eprintln!("2^63-1 frame: heap peak +{heap_peak} B");
    assert!(heap_peak < 256 * KIB, "heap grew by {heap_peak} B");
    wait_for_stats(&server, PATIENCE, |s| s.closed_with(1009) == 2);
    drop(good);
    stop(server, fds_before);
}

#[test]
fn a_message_trickled_in_1_byte_frames_past_the_limit_is_closed_with_1009() {
    let _serial = serial();
    const LIMIT: usize = 256 * KIB;
    let fds_before = open_fds();
    let server = start(config().with_max_message_size(LIMIT), Echo);
    let mut good = Good::connect(&server);
    let heap_before = live_alloc::reset_peak();

    let mut s = patient_ws(server.local_addr());
    let reader = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || read_close_code(&mut s))
    };
    let mut frames = masked(BINARY, b"x"); // FIN clear: the first fragment
    let one = masked(0x0, b"x"); // a continuation, FIN clear
    let mut fragments = 1;
    let mut burst = Vec::new();
    while fragments <= LIMIT + 1 {
        burst.clear();
        burst.append(&mut frames);
        for _ in 0..1_000 {
            burst.extend_from_slice(&one);
        }
        fragments += 1_000;
        if s.write_all(&burst).is_err() {
            break; // closed by the server
        }
        if fragments % 100_000 < 1_000 {
            good.echo("during the trickle");
        }
    }
    assert_eq!(reader.join().unwrap(), Some(1009));
    let heap_peak = live_alloc::peak() - heap_before;
    drop(s);
    good.echo("after the trickle");
    eprintln!("1-byte fragments: {fragments} sent, heap peak +{heap_peak} B (limit {LIMIT} B)");
    // The message being assembled (at most the limit, in a buffer that grows by
    // doubling) and the read scratch.
    assert!(
        heap_peak < 2 * LIMIT + 512 * KIB,
        "heap grew by {heap_peak} B"
    );
    // Counters are published at the end of a loop turn, which may still be reading
    // (and discarding) the rest of the trickle.
    wait_for_stats(&server, PATIENCE, |s| s.closed_with(1009) == 1);
    drop(good);
    stop(server, fds_before);
}

// ---- pings -----------------------------------------------------------------------------

fn ping(seq: u64) -> Vec<u8> {
    masked(FIN | PING, &seq.to_be_bytes())
}

/// Reads pongs until `last` arrives: their payloads must rise, with none unasked-for.
fn read_pongs(s: &mut TcpStream, last: u64) -> u64 {
    let mut count = 0;
    let mut previous = None;
    loop {
        let (op, payload) = read_frame(s).expect("a pong");
        assert_eq!(op, 0xA, "a pong");
        let seq = u64::from_be_bytes(payload.try_into().expect("an 8-byte payload"));
        assert!(
            previous < Some(seq) && seq <= last,
            "pong {seq} after {previous:?}"
        );
        previous = Some(seq);
        count += 1;
        if seq == last {
            return count;
        }
    }
}

#[test]
fn ten_thousand_pings_in_one_burst_are_answered_in_order() {
    let _serial = serial();
    const PINGS: u64 = 10_000;
    let fds_before = open_fds();
    let server = start(config(), Echo);
    let mut good = Good::connect(&server);
    let heap_before = live_alloc::reset_peak();
    let mut s = patient_ws(server.local_addr());
    let burst: Vec<u8> = (0..PINGS).flat_map(ping).collect();
    s.write_all(&burst).unwrap();
    good.echo("during the burst");
    let answered = read_pongs(&mut s, PINGS - 1);
    let heap_peak = live_alloc::peak() - heap_before;
    // The same connection still works.
    s.write_all(&masked(FIN | TEXT, b"still here")).unwrap();
    assert_eq!(read_frame(&mut s), Some((TEXT, b"still here".to_vec())));
    drop(s);
    good.echo("after the burst");
    eprintln!("ping burst: {answered} pongs for {PINGS} pings; heap peak +{heap_peak} B");
    // RFC 6455 5.5.3 lets a server answer only the latest of pings it has not
    // answered yet; this one answers them all.
    assert_eq!(answered, PINGS);
    assert!(heap_peak < 2 * MIB, "heap grew by {heap_peak} B");
    drop(good);
    stop(server, fds_before);
}

#[test]
fn a_client_that_floods_pings_and_never_reads_is_not_read_past_the_backpressure_limit() {
    let _serial = serial();
    const LIMIT: usize = 256 * KIB;
    let fds_before = open_fds();
    let config = config()
        .with_backpressure(LIMIT, BackpressurePolicy::Drop)
        // This client stops reading on purpose: the write timeout would end it.
        .with_write_timeout(None);
    let budget = config.read_budget;
    let server = start(config, Echo);
    let mut good = Good::connect(&server);
    let heap_before = live_alloc::reset_peak();

    let mut s = patient_ws(server.local_addr());
    s.set_nonblocking(true).unwrap();
    // 125-byte pings until the server has paused reading this client (its pongs
    // queued past the limit) and TCP pushes back: it must stop reading rather
    // than queue pongs nobody reads.
    let payload = [7u8; 125];
    let frame = masked(FIN | PING, &payload);
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 512)
        .collect();
    let started = Instant::now();
    let mut sent = 0usize;
    let mut pos = 0;
    loop {
        assert!(
            started.elapsed() < PATIENCE,
            "the server read {sent} B of pings from a client that reads nothing: {:?}",
            server.stats()
        );
        match s.write(&burst[pos..]) {
            Ok(n) => {
                sent += n;
                pos = (pos + n) % burst.len();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if server.stats().read_pauses > 0 {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the flood's connection failed: {e}"),
        }
    }
    good.echo("during the ping flood");
    let heap_peak = live_alloc::peak() - heap_before;
    eprintln!(
        "ping flood: {sent} B of pings sent in {:?} before the server stopped reading; \
         heap peak +{heap_peak} B (limit {LIMIT} B, read budget {budget} B)",
        started.elapsed()
    );
    // The queue may pass the limit by what one turn's reads answer.
    assert!(
        heap_peak < LIMIT + 2 * budget + 512 * KIB,
        "heap grew by {heap_peak} B"
    );

    // Once the client reads, every ping is answered, and the connection goes on.
    s.set_nonblocking(false).unwrap();
    let cut = sent % frame.len();
    let pings = sent / frame.len() + usize::from(cut > 0);
    let reading = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || {
            for i in 0..pings {
                let (op, body) = read_frame(&mut s)
                    .unwrap_or_else(|| panic!("pong {i} of {pings} did not come"));
                assert_eq!((op, body.as_slice()), (0xA, &payload[..]));
            }
        })
    };
    if cut > 0 {
        // Finish the frame cut in the middle.
        s.write_all(&frame[cut..])
            .expect("the rest of the last ping");
    }
    reading.join().expect("a pong for every ping");
    s.write_all(&masked(FIN | TEXT, b"still here")).unwrap();
    assert_eq!(read_frame(&mut s), Some((TEXT, b"still here".to_vec())));
    good.echo("after the ping flood");
    drop(s);
    drop(good);
    stop(server, fds_before);
}

// ---- a sender that never stops ----------------------------------------------------------

#[test]
fn clients_flooding_messages_without_reading_do_not_starve_their_reactor() {
    let _serial = serial();
    const LIMIT: usize = 256 * KIB;
    const FLOODERS: usize = 4;
    let fds_before = open_fds();
    // One reactor: the flooders and the good client share it.
    let config = config()
        .with_reactors(1)
        .with_backpressure(LIMIT, BackpressurePolicy::Drop)
        // The flooders never read on purpose: the write timeout would end them.
        .with_write_timeout(None);
    let server = start(config, Echo);
    let addr = server.local_addr();
    let mut good = Good::connect(&server);
    let heap_before = live_alloc::reset_peak();

    // Each writes 64 KiB binary messages as fast as the server takes them and
    // reads nothing, until told to stop: the echoes meet the limit and are dropped.
    let flooding = Arc::new(AtomicBool::new(true));
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let mut s = patient_ws(addr);
            s.set_write_timeout(Some(PATIENCE)).unwrap();
            let flooding = flooding.clone();
            thread::spawn(move || {
                let message = masked(FIN | BINARY, &[0x42; 64 * KIB]);
                let mut sent = 0usize;
                while flooding.load(SeqCst) {
                    if let Err(e) = s.write_all(&message) {
                        panic!("the server stopped taking a flood after {sent} messages: {e}");
                    }
                    sent += 1;
                }
                (s, sent)
            })
        })
        .collect();
    // Once the floods have met the limit, the good client is echoed again and
    // again while they go on: however long each echo takes, it comes.
    let stats = wait_for_stats(&server, PATIENCE, |s| s.dropped > 0);
    let mut echoes = 0;
    while echoes < 10 {
        good.echo("between the floods");
        echoes += 1;
    }
    flooding.store(false, SeqCst);
    let mut sent = 0;
    let mut streams = Vec::new();
    for f in flooders {
        let (s, n) = f.join().expect("the flood went on throughout");
        sent += n;
        streams.push(s);
    }
    let heap_peak = live_alloc::peak() - heap_before;
    good.echo("after the floods");
    eprintln!(
        "floods: {FLOODERS} clients sent {sent} messages of 64 KiB ({} echoes dropped when the \
         good client began); the good client was echoed {echoes} times meanwhile; heap peak \
         +{heap_peak} B",
        stats.dropped
    );
    // Each flooder's queue, plus a read buffer and the cork.
    assert!(
        heap_peak < FLOODERS * LIMIT + 2 * MIB,
        "heap grew by {heap_peak} B"
    );
    drop(streams);
    drop(good);
    stop(server, fds_before);
}

// ---- broadcast to clients that never read -----------------------------------------------

const NON_READERS: usize = 1_000;

/// Connects a client whose receive buffer is small, so that the server's queue,
/// not the kernel, holds what it does not read.
fn non_reader(addr: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4 * KIB).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// `config` for clients that neither read nor send on purpose: no write timeout
/// (only the backpressure policy may act on them) and no idle timeout.
fn silent_clients(config: Config) -> Config {
    config.with_write_timeout(None).with_idle_timeout(None)
}

/// A broadcast message: 4 KiB starting with its sequence number.
fn numbered(seq: u64) -> Vec<u8> {
    let mut m = vec![0u8; 4 * KIB];
    m[..8].copy_from_slice(&seq.to_be_bytes());
    m
}

#[test]
fn non_reading_clients_under_broadcast_are_closed_with_1008_at_the_limit() {
    let _serial = serial();
    const LIMIT: usize = 256 * KIB;
    let fds_before = open_fds();
    let server = start(
        silent_clients(config()).with_backpressure(LIMIT, BackpressurePolicy::Close),
        Echo,
    );
    let addr = server.local_addr();
    let heap_before = live_alloc::reset_peak();
    let clients: Vec<TcpStream> = (0..NON_READERS).map(|_| non_reader(addr)).collect();
    wait_for_stats(&server, PATIENCE, |s| s.open == NON_READERS as u64);

    let sender = server.sender();
    let started = Instant::now();
    let mut sent = 0u64;
    // The hang guard runs from the last close.
    let mut progress = (0, Instant::now());
    loop {
        let closed = server.stats().closed_with(1008);
        if closed == NON_READERS as u64 {
            break;
        }
        if closed != progress.0 {
            progress = (closed, Instant::now());
        }
        assert!(
            progress.1.elapsed() < PATIENCE,
            "after {sent} broadcasts: {:?}",
            server.stats()
        );
        for _ in 0..8 {
            sender.broadcast(Message::Binary(&numbered(sent)));
            sent += 1;
        }
        thread::sleep(Duration::from_millis(2));
    }
    let heap_peak = live_alloc::peak() - heap_before;
    eprintln!(
        "broadcast, close policy: {NON_READERS} clients closed with 1008 after {sent} \
         broadcasts of 4 KiB in {:?}; heap peak +{heap_peak} B (bound {} B)",
        started.elapsed(),
        NON_READERS * LIMIT + 4 * MIB
    );
    assert!(heap_peak < NON_READERS * LIMIT + 4 * MIB);
    drop((clients, sender));
    wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    let mut good = Good::connect(&server);
    good.echo("after the broadcast");
    drop(good);
    stop(server, fds_before);
}

#[test]
fn non_reading_clients_under_broadcast_lose_messages_not_memory_and_a_reader_loses_nothing() {
    let _serial = serial();
    const LIMIT: usize = 256 * KIB;
    const BROADCASTS: u64 = 4_000;
    let fds_before = open_fds();
    let server = start(
        silent_clients(config()).with_backpressure(LIMIT, BackpressurePolicy::Drop),
        Echo,
    );
    let addr = server.local_addr();
    let heap_before = live_alloc::reset_peak();
    let clients: Vec<TcpStream> = (0..NON_READERS).map(|_| non_reader(addr)).collect();
    // The reader: every broadcast must reach it, in order.
    let mut reader = patient_ws(addr);
    wait_for_stats(&server, PATIENCE, |s| s.open == NON_READERS as u64 + 1);
    let received = Arc::new(AtomicU64::new(0));
    let reading = {
        let received = received.clone();
        thread::spawn(move || {
            for seq in 0..BROADCASTS {
                let (op, payload) = read_frame(&mut reader).expect("a broadcast");
                assert_eq!(op, BINARY);
                assert_eq!(payload, numbered(seq), "broadcast {seq}");
                received.store(seq + 1, SeqCst);
            }
            reader
        })
    };

    // The broadcasts go no further ahead of the reader than a window well under
    // the limit, so that its queue never meets the limit, however slowly it runs;
    // a broadcast a reactor's command queue has no room for is retried.
    const WINDOW: u64 = (LIMIT / (8 * KIB)) as u64;
    let sender = server.sender();
    let started = Instant::now();
    // The hang guard runs from the reader's last progress.
    let mut progress = (0, Instant::now());
    for seq in 0..BROADCASTS {
        let message = numbered(seq);
        loop {
            let read = received.load(SeqCst);
            if read != progress.0 {
                progress = (read, Instant::now());
            }
            assert!(
                progress.1.elapsed() < PATIENCE,
                "broadcast {seq}, {read} read: {:?}",
                server.stats()
            );
            if reading.is_finished() {
                break; // it failed: its join says why
            }
            if seq >= read + WINDOW {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            match sender.broadcast(Message::Binary(&message)) {
                QueueStatus::Queued => break,
                QueueStatus::Full => thread::sleep(Duration::from_millis(1)),
                QueueStatus::Closed => panic!("the server has gone"),
            }
        }
    }
    let mut reader = reading.join().expect("the reader got every broadcast");
    // Each broadcast to each connection was sent or dropped.
    let all = BROADCASTS * (NON_READERS as u64 + 1);
    let stats = wait_for_stats(&server, PATIENCE, |s| s.messages_out + s.dropped >= all);
    let heap_peak = live_alloc::peak() - heap_before;
    eprintln!(
        "broadcast, drop policy: {BROADCASTS} broadcasts of 4 KiB to {NON_READERS} non-readers \
         and one reader in {:?}; {} dropped; heap peak +{heap_peak} B (bound {} B)",
        started.elapsed(),
        stats.dropped,
        NON_READERS * LIMIT + 4 * MIB
    );
    // The non-readers met the limit: each could take at most LIMIT plus what the
    // kernel holds (its send buffer grows to a few MiB on loopback), less than the
    // 16 MiB broadcast.
    assert!(
        stats.dropped >= NON_READERS as u64 * (BROADCASTS / 4),
        "{stats:?}"
    );
    assert!(heap_peak < NON_READERS * LIMIT + 4 * MIB);
    assert_eq!(stats.open, NON_READERS as u64 + 1);
    reader
        .write_all(&masked(FIN | TEXT, b"still here"))
        .unwrap();
    assert_eq!(
        read_frame(&mut reader),
        Some((TEXT, b"still here".to_vec()))
    );
    drop((clients, reader, sender));
    wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    stop(server, fds_before);
}

// ---- connection storm ------------------------------------------------------------------

#[test]
fn a_storm_of_10000_connects_and_resets_leaves_no_connection_and_no_descriptor_behind() {
    let _serial = serial();
    const STORM: usize = 10_000;
    const THREADS: usize = 4;
    let fds_before = open_fds();
    let handler = Counting::default();
    let server = start(config(), handler.clone());
    let addr = server.local_addr();
    let mut good = Good::connect(&server);
    let fds_serving = open_fds();
    let heap_before = live_alloc::live();

    let storm: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in (t..STORM).step_by(THREADS) {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    // Reset at every stage: at once, mid-request, after the upgrade,
                    // mid-frame.
                    let _ = match i % 4 {
                        0 => Ok(()),
                        1 => s.write_all(&UPGRADE.as_bytes()[..40]),
                        2 => s.write_all(UPGRADE.as_bytes()),
                        _ => s
                            .write_all(UPGRADE.as_bytes())
                            .and_then(|()| s.write_all(&masked(FIN | TEXT, &[b'x'; 300])[..100])),
                    };
                    reset(s);
                }
            })
        })
        .collect();
    for (i, t) in storm.into_iter().enumerate() {
        t.join().expect("storm thread");
        if i == THREADS / 2 {
            good.echo("during the storm");
        }
    }
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 1);
    server::wait_until(PATIENCE, || {
        handler.closed.load(SeqCst) == handler.opened.load(SeqCst) - 1
    });
    good.echo("after the storm");
    // The last connects of the storm may still be on their way through the backlog
    // and the reactors (accepted, read, seen reset, closed): every descriptor is
    // waited for, with PATIENCE as the only bound.
    let waited = Instant::now();
    while open_fds() != fds_serving && waited.elapsed() < PATIENCE {
        thread::sleep(Duration::from_millis(5));
    }
    let fds_after = open_fds();
    let heap_after = live_alloc::live();
    eprintln!(
        "storm: {} accepted, {} opened and closed; descriptors {fds_serving} -> {fds_after}; \
         heap {heap_before} -> {heap_after} B",
        stats.accepted,
        handler.opened.load(SeqCst) - 1
    );
    // Every connect reached the server (a reset one still waits in the backlog).
    assert!(stats.accepted >= STORM as u64 / 2, "{stats:?}");
    assert_eq!(fds_after, fds_serving, "descriptors left behind");
    // What stays is capacity: the slab and the pooled buffers, not connections.
    assert!(
        heap_after < heap_before + 2 * MIB,
        "heap {heap_before} -> {heap_after} B"
    );
    drop(good);
    stop(server, fds_before);
}

// ---- replies never cross connections ---------------------------------------------------

#[test]
fn the_replies_to_a_client_reset_in_the_middle_of_a_turn_reach_nobody_else() {
    let _serial = serial();
    const ROUNDS: usize = 300;
    let fds_before = open_fds();
    // One reactor: the flooder and the good client take turns on it.
    let server = start(config().with_reactors(1), Echo);
    let addr = server.local_addr();
    let mut good = patient_ws(addr);
    // More than one 64 KiB read of small messages, then a reset: the server reads,
    // answers into its cork, and the next read fails with the reset.
    let flood: Vec<u8> = (0..1_500)
        .flat_map(|_| masked(FIN | BINARY, &[0xee; 60]))
        .collect();
    for round in 0..ROUNDS {
        let mut flooder = patient_ws(addr);
        flooder.write_all(&flood).unwrap();
        reset(flooder);
        let mine = format!("round {round}");
        good.write_all(&masked(FIN | TEXT, mine.as_bytes()))
            .unwrap();
        let got = read_frame(&mut good).expect("the good client's echo");
        assert_eq!(
            got,
            (TEXT, mine.into_bytes()),
            "round {round}: the good client got someone else's reply"
        );
    }
    drop(good);
    wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    stop(server, fds_before);
}

// ---- half-open clients -----------------------------------------------------------------

#[test]
fn half_open_clients_are_cleaned_up() {
    let _serial = serial();
    const EACH: usize = 300;
    // Long beside the good client's pauses (an eighth of it), so that a busy
    // machine, which may stall a thread for a good part of a second, never makes
    // it look idle.
    const IDLE: Duration = Duration::from_secs(2);
    let fds_before = open_fds();
    let handler = Counting::default();
    let server = start(config().with_idle_timeout(Some(IDLE)), handler.clone());
    let addr = server.local_addr();
    let mut good = Good::connect(&server);

    // Gone with a FIN and no close frame; reset in the middle of a frame; silent
    // (a peer whose host vanished looks like this: the idle timeout finds it).
    let mut silent = Vec::new();
    for i in 0..3 * EACH {
        let mut s = patient_ws(addr);
        match i % 3 {
            0 => drop(s),
            1 => {
                s.write_all(&masked(FIN | BINARY, &[1u8; 1000])[..500])
                    .unwrap();
                reset(s);
            }
            _ => silent.push(s),
        }
    }
    // Until every half-open one is gone, the good client is busy (a message every
    // eighth of the idle timeout), so the idle timeout never closes it.
    let started = Instant::now();
    while server.stats().open > 1 {
        assert!(
            started.elapsed() < PATIENCE,
            "half-open clients left: {:?}",
            server.stats()
        );
        good.echo("while the half-open are found");
        thread::sleep(IDLE / 8);
    }
    let stats = server.stats();
    good.echo("after the half-open");
    eprintln!(
        "half-open: 1006 x{}, 1001 x{}",
        stats.closed_with(1006),
        stats.closed_with(1001)
    );
    assert_eq!(stats.closed_with(1006), 2 * EACH as u64, "{stats:?}");
    assert_eq!(stats.closed_with(1001), EACH as u64, "{stats:?}");
    assert_eq!(handler.closed.load(SeqCst), 3 * EACH as u64);
    // The silent ones were pinged, then closed with 1001.
    for mut s in silent {
        let (op, _) = read_frame(&mut s).expect("the idle ping");
        assert_eq!(op, PING);
        assert_eq!(read_close_code(&mut s), Some(1001));
    }
    drop(good);
    stop(server, fds_before);
}

// ---- random input ---------------------------------------------------------------------

/// xorshift64*: a fixed, seedable stream of bytes for the tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A valid client stream (messages, fragments, pings) with a few bytes mutated.
fn mutated_stream(rng: &mut Rng) -> Vec<u8> {
    let mut stream = Vec::new();
    for _ in 0..1 + rng.below(8) {
        let len = rng.below(300);
        let payload: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
        match rng.below(4) {
            0 => stream.extend(masked(FIN | TEXT, &payload)),
            1 => stream.extend(masked(FIN | BINARY, &payload)),
            2 => stream.extend(masked(FIN | PING, &payload[..len.min(125)])),
            _ => {
                stream.extend(masked(TEXT, &payload[..len / 2]));
                stream.extend(masked(FIN | PING, b"p"));
                stream.extend(masked(FIN, &payload[len / 2..]));
            }
        }
    }
    for _ in 0..rng.below(4) {
        let i = rng.below(stream.len());
        stream[i] = rng.next() as u8;
    }
    stream
}

#[test]
fn mutated_and_random_streams_after_the_upgrade_never_take_down_a_reactor() {
    let _serial = serial();
    const CONNECTIONS: usize = 1_000;
    let fds_before = open_fds();
    let server = start(
        config().with_max_message_size(64 * KIB),
        Counting::default(),
    );
    let addr = server.local_addr();
    let mut good = Good::connect(&server);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut open = Vec::new();
    for i in 0..CONNECTIONS {
        let mut s = patient_ws(addr);
        let bytes: Vec<u8> = if i % 2 == 0 {
            mutated_stream(&mut rng)
        } else {
            (0..1 + rng.below(2048)).map(|_| rng.next() as u8).collect()
        };
        // Split at a random point, as reads would.
        let cut = rng.below(bytes.len());
        let _ = s
            .write_all(&bytes[..cut])
            .and_then(|()| s.write_all(&bytes[cut..]));
        open.push(s);
        if i % 250 == 0 {
            good.echo("among the random streams");
        }
    }
    // Every connection ends: either the server closed it, or the client does now.
    drop(open);
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 1);
    good.echo("after the random streams");
    let by_code: Vec<(u16, u64)> = [1000, 1002, 1005, 1006, 1007, 1009]
        .into_iter()
        .map(|c| (c, stats.closed_with(c)))
        .collect();
    eprintln!("random streams: closes by code {by_code:?}");
    assert_eq!(stats.closed(), CONNECTIONS as u64, "{stats:?}");
    assert!(
        stats.closed_with(1002) > CONNECTIONS as u64 / 4,
        "{stats:?}"
    );
    drop(good);
    stop(server, fds_before);
}

// ---- a close that comes with the last bytes ----------------------------------------------

#[test]
fn a_close_arriving_with_the_last_bytes_is_seen_without_waiting_for_a_timeout() {
    let _serial = serial();
    const CLIENTS: usize = 300;
    let fds_before = open_fds();
    // No idle timeout: only the close itself may end these connections.
    let server = start(config().with_idle_timeout(None), Counting::default());
    let addr = server.local_addr();
    let mut good = Good::connect(&server);
    let half_frame = masked(FIN | BINARY, &[9u8; 1000]);
    for i in 0..CLIENTS {
        let mut s = patient_ws(addr);
        // Part of a frame, and at once a FIN or a reset: one readiness event for both.
        let ending = &half_frame[..1 + i % 500];
        if i % 2 == 0 {
            s.write_all(ending).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            drop(s);
        } else {
            s.write_all(ending).unwrap();
            reset(s);
        }
    }
    // With no timeout configured, only seeing the close ends them.
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 1);
    good.echo("after the closes");
    assert_eq!(stats.closed_with(1006), CLIENTS as u64, "{stats:?}");
    drop(good);
    stop(server, fds_before);
}

// ---- protocol violations --------------------------------------------------------------

#[test]
fn protocol_violations_get_the_right_close_codes() {
    let _serial = serial();
    let fds_before = open_fds();
    let server = start(config(), Echo);
    let addr = server.local_addr();
    let mut good = Good::connect(&server);
    let close = |code: u16| masked(FIN | CLOSE, &code.to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "invalid UTF-8 split across fragments",
            [masked(TEXT, &[0xe2, 0x82]), masked(FIN, &[0x28])].concat(),
            1007,
        ),
        (
            "a truncated character at the end of a fragmented message",
            [masked(TEXT, b"ok"), masked(FIN, &[0xf0, 0x9f, 0x98])].concat(),
            1007,
        ),
        (
            "a close frame with a 1-byte payload",
            masked(FIN | CLOSE, &[3]),
            1002,
        ),
        ("close code 999", close(999), 1002),
        ("reserved close code 1004", close(1004), 1002),
        ("close code 1005 on the wire", close(1005), 1002),
        ("close code 1006 on the wire", close(1006), 1002),
        ("close code 1015 on the wire", close(1015), 1002),
        ("unassigned close code 1016", close(1016), 1002),
        ("unassigned close code 2999", close(2999), 1002),
        ("close code 5000", close(5000), 1002),
        ("close code 1000", close(1000), 1000),
        ("close code 3000", close(3000), 3000),
        ("close code 4999", close(4999), 4999),
        ("an unmasked frame", vec![FIN | TEXT, 1, b'x'], 1002),
        ("a fragmented ping", masked(PING, b"x"), 1002),
        (
            "a continuation with nothing to continue",
            masked(FIN, b"x"),
            1002,
        ),
    ];
    for (what, bytes, code) in &cases {
        let mut s = patient_ws(addr);
        s.write_all(bytes).unwrap();
        assert_eq!(read_close_code(&mut s), Some(*code), "{what}");
        read_until_closed(&mut s);
    }
    // A split character that is valid is reassembled.
    let mut s = patient_ws(addr);
    s.write_all(&[masked(TEXT, &[0xe2, 0x82]), masked(FIN, &[0xac])].concat())
        .unwrap();
    assert_eq!(read_frame(&mut s), Some((TEXT, "€".as_bytes().to_vec())));
    good.echo("after the violations");
    drop(good);
    drop(s);
    stop(server, fds_before);
}
