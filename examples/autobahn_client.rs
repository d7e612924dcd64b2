//! The client that the Autobahn TestSuite's fuzzing server (`wstest -m fuzzingserver`)
//! drives: blocking sockets on wsreactor's sans-IO client role.
//!
//! ```text
//! cargo run --release --example autobahn_client -- --addr 127.0.0.1:9001 --agent wsreactor
//! ```
//!
//! It asks the suite how many cases it has (`/getCaseCount`), runs each one
//! (`/runCase?case=N&agent=AGENT`), echoing every text and binary message as it arrived,
//! then has the suite write its reports (`/updateReports?agent=AGENT`). The grades are in
//! those reports, which tests/autobahn/check.py reads: this program exits non-zero only
//! when it cannot talk to the suite at all. `--case N` runs one case, for debugging.

use std::error::Error;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wsreactor::proto::handshake::{EMPTY_HEADER, encode_key, parse_response, write_request};
use wsreactor::proto::{Connection, Decoded, Event, Limits, Message};

/// Exactly the suite's largest message (16 MiB, cases 9.1.6 and 9.2.6), so an
/// off-by-one in the limit check fails those cases.
const MAX_MESSAGE: usize = 16 << 20;
/// The longest the suite may stay silent within a case; its own pauses are a few seconds.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait, after the close handshake, for the server to close TCP first
/// (RFC 6455 §7.1.1) before closing it ourselves.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The first size of the input buffer; it doubles while a large message arrives.
const INITIAL_BUFFER: usize = 64 * 1024;

fn main() {
    if let Err(e) = run() {
        eprintln!("autobahn_client: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut addr = String::from("127.0.0.1:9001");
    let mut agent = String::from("wsreactor");
    let mut only_case: Option<u32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--agent" => agent = value()?,
            "--case" => only_case = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("usage: autobahn_client [--addr HOST:PORT] [--agent NAME] [--case N]");
                return Ok(());
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    // The agent goes into a query string and a report file name unescaped.
    if agent.is_empty()
        || !agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!("agent {agent:?}: use letters, digits, '-', '_' and '.'").into());
    }

    let started = Instant::now();
    let mut count = None;
    session(&addr, "/getCaseCount", &mut |_, _, message| {
        count = std::str::from_utf8(message.as_bytes())
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok());
        Ok(())
    })
    .map_err(|e| format!("getCaseCount: {e}"))?;
    let count = count.ok_or("getCaseCount: no case count in the suite's answer")?;

    let cases = match only_case {
        Some(case) => case..=case,
        None => 1..=count,
    };
    let mut errors = 0;
    for case in cases.clone() {
        let path = format!("/runCase?case={case}&agent={agent}");
        if let Err(e) = session(&addr, &path, &mut |conn, out, message| {
            conn.write_message(out, message)
                .map_err(|e| io::Error::other(format!("echo refused: {e}")))
        }) {
            // The report grades the case; the error is printed to tell why.
            eprintln!("case {case}: {e}");
            errors += 1;
        }
    }

    session(
        &addr,
        &format!("/updateReports?agent={agent}"),
        &mut |_, _, _| Ok(()),
    )
    .map_err(|e| format!("updateReports: {e}"))?;
    println!(
        "ran {} of {count} cases in {:.1}s, {errors} ended in a transport error",
        cases.count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What a session does with each message it receives: it may write replies to `out`.
type OnMessage<'a> = dyn FnMut(&mut Connection, &mut Vec<u8>, Message<'_>) -> io::Result<()> + 'a;

/// One WebSocket connection to `path`: the handshake, then frames until the close
/// handshake ends (or the connection is failed), then the TCP close.
fn session(addr: &str, path: &str, on_message: &mut OnMessage<'_>) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;

    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&random_u64().to_ne_bytes());
    nonce[8..].copy_from_slice(&random_u64().to_ne_bytes());
    let key = encode_key(nonce);
    let mut out = Vec::with_capacity(INITIAL_BUFFER);
    write_request(&mut out, addr, path, &key, &[], &[]);
    stream.write_all(&out)?;
    out.clear();

    let mut input = Input::new();
    // Frames may arrive in the same read as the end of the 101's head.
    let head_len = loop {
        if input.read_from(&mut stream)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed during the handshake",
            ));
        }
        let mut headers = [EMPTY_HEADER; 32];
        match parse_response(input.data(), &mut headers, &key, &[]) {
            Ok(Some((_, len))) => break len,
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    };
    input.start = head_len;
    match frames(&mut stream, &mut input, &mut out, on_message) {
        Ok(()) => {}
        // The server dropped TCP before the close handshake ended: some cases do that
        // on purpose, and the report grades it.
        Err(e) if dropped(&e) => return Ok(()),
        Err(e) => return Err(e),
    }

    // The server closes TCP first; then so do we (by dropping the stream). wstest's
    // server aborts the connection (RST) once it has our close reply, so a reset
    // counts as its close.
    stream.set_read_timeout(Some(CLOSE_TIMEOUT))?;
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return Ok(()),
            Ok(_) => {} // nothing is read after the close frame
            Err(e) if dropped(&e) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the server did not close TCP after the close handshake",
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The frames of one connection, until the close handshake ends or the connection is
/// failed (our close frame written), or the server closes TCP.
fn frames(
    stream: &mut TcpStream,
    input: &mut Input,
    out: &mut Vec<u8>,
    on_message: &mut OnMessage<'_>,
) -> io::Result<()> {
    let mut conn = Connection::client(random_u64());
    let limits = Limits::new(MAX_MESSAGE, MAX_MESSAGE);
    loop {
        let finished = decode_all(&mut conn, input, out, &limits, on_message)?;
        // Everything one read produced goes out together; the order of frames is kept.
        if !out.is_empty() {
            stream.write_all(out)?;
            out.clear();
        }
        if finished || input.read_from(stream)? == 0 {
            return Ok(());
        }
    }
}

/// Whether an error means the server closed or aborted the TCP connection.
fn dropped(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Feeds every complete frame in `input` to `conn`, following the buffer contract of
/// [`wsreactor::proto::conn`]. Returns whether the connection is finished (a close
/// frame arrived, or the server broke the protocol and our close frame is in `out`).
fn decode_all(
    conn: &mut Connection,
    input: &mut Input,
    out: &mut Vec<u8>,
    limits: &Limits,
    on_message: &mut OnMessage<'_>,
) -> io::Result<bool> {
    loop {
        match conn.decode(&mut input.bytes[input.start..input.end], out, limits) {
            Decoded::Event { consumed, event } => {
                let finished = match event {
                    Event::Message(message) => {
                        on_message(conn, out, message)?;
                        false
                    }
                    // The pong is in `out` already.
                    Event::Ping(_) | Event::Pong(_) => false,
                    Event::Close(_) | Event::Error(_) => true,
                    // Never negotiated here: fail as for any reserved bit.
                    Event::Compressed(_) => {
                        let code = wsreactor::proto::CloseCode::PROTOCOL_ERROR;
                        conn.fail_with(out, code, "permessage-deflate not negotiated");
                        true
                    }
                };
                input.start += consumed;
                if finished {
                    return Ok(true);
                }
            }
            Decoded::NeedMore { keep } => {
                input.keep(keep.start, keep.end);
                return Ok(false);
            }
        }
    }
}

/// The input buffer: bytes `start..end` of `bytes` are received and not yet consumed.
/// `bytes` stays initialized to its full length, so reads need no zeroing.
struct Input {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl Input {
    fn new() -> Input {
        Input {
            bytes: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Keeps exactly the unconsumed bytes `from..to` (relative to `start`), moved to the
    /// front of the buffer.
    fn keep(&mut self, from: usize, to: usize) {
        self.bytes
            .copy_within(self.start + from..self.start + to, 0);
        self.start = 0;
        self.end = to - from;
    }

    /// Reads what has arrived after the unconsumed bytes. Returns 0 at end of stream.
    fn read_from(&mut self, stream: &mut TcpStream) -> io::Result<usize> {
        if self.start > 0 {
            self.keep(0, self.end - self.start);
        }
        if self.end == self.bytes.len() {
            let doubled = self.bytes.len() * 2;
            self.bytes.resize(doubled, 0);
        }
        loop {
            match stream.read(&mut self.bytes[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// 64 unpredictable bits for the handshake key and the masking keys, from the
/// randomly keyed hasher that std seeds from the OS (no rand crate needed here).
fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}
