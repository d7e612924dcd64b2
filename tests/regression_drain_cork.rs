//! Regression: what `on_drain` sent in its second chance of a turn stayed in the
//! reactor's shared cork after the turn ended, and the next connection served on that
//! reactor wrote it out as its own bytes. One connection's bytes reached another (in a
//! release build); a debug build's cork assertion panicked the reactor thread instead,
//! and every client of that reactor hung.
//!
//! The shape: a handler whose `on_drain` streams chunks until `send` reports
//! backpressure and then sends a short text, a client that reads that stream as fast
//! as it can, and an echo client on the same (single) reactor that checks every echo
//! until the streaming connection has been through [`DRAINS`] drains, however long
//! that takes.

#[path = "util/server.rs"]
mod server;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use server::{PATIENCE, raw_ws, read_frame, shutdown_within, start, test_config};
use wsreactor::{Handler, Message, SendStatus, Socket};

/// Under 16 KiB, so chunks are corked and the cork is written as it passes 64 KiB.
const CHUNK: usize = 8 * 1024;
const MARKER: &str = "marker from the streaming connection";
/// How long the handler works after its last send in `on_drain`.
const THINK: Duration = Duration::from_micros(200);
/// Drains of the streaming connection the echo client waits through: each gives
/// `on_drain` its second chance (a second of an idle run makes some hundreds).
const DRAINS: usize = 200;
/// How long an echo may take before the reactor counts as dead: a hang guard.
const ECHO_TIMEOUT: Duration = PATIENCE;

/// Streams to a connection that asked for it ("stream"), in every `on_drain`, until
/// a send meets backpressure, then sends [`MARKER`]. Echoes everything else.
#[derive(Clone, Default)]
struct DrainStreamer {
    drains: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Streaming(bool);

impl DrainStreamer {
    fn stream(ws: &mut Socket<'_, Streaming>) {
        let chunk = [0xa5u8; CHUNK];
        // Ends when the kernel refuses: the client stops reading at the end.
        loop {
            match ws.send_binary(&chunk) {
                SendStatus::Sent => {}
                SendStatus::Backpressure => {
                    let _ = ws.send_text(MARKER);
                    // A little work before returning, as a handler preparing its next
                    // batch would do. Meanwhile the client reads, so the reactor's next
                    // flush in this turn takes everything and gives on_drain its second
                    // chance every time, not once in some hundreds of drains.
                    thread::sleep(THINK);
                    return;
                }
                SendStatus::Dropped | SendStatus::Closed => return,
            }
        }
    }
}

impl Handler for DrainStreamer {
    type Session = Streaming;

    fn on_message(&mut self, ws: &mut Socket<'_, Streaming>, message: Message<'_>) {
        if message.as_bytes() == b"stream" {
            ws.session_mut().0 = true;
            Self::stream(ws);
        } else {
            let _ = ws.send(message);
        }
    }

    fn on_drain(&mut self, ws: &mut Socket<'_, Streaming>) {
        if ws.session().0 {
            self.drains.fetch_add(1, SeqCst);
            Self::stream(ws);
        }
    }
}

/// A masked client text frame (payload under 126 bytes).
fn client_text(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Reads and discards everything until `stop` or the end: fast, but slower than the
/// reactor can write (64 KiB, then a pause of 100 µs), so that the stream meets
/// backpressure. A reader faster than the writer would never let `on_drain`'s loop
/// meet it, and that callback would never return.
fn drain_fast(mut stream: TcpStream, stop: Arc<AtomicBool>) -> u64 {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while !stop.load(SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                thread::sleep(Duration::from_micros(100));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    total
}

/// Echoes until the streaming connection has been through [`DRAINS`] drains (or,
/// should the stream stall, until [`PATIENCE`] has passed). Returns the rounds
/// done, or what went wrong.
fn echo_rounds(mut echo: TcpStream, drains: &AtomicUsize) -> Result<usize, String> {
    echo.set_read_timeout(Some(ECHO_TIMEOUT)).unwrap();
    let start = Instant::now();
    let mut round = 0;
    while drains.load(SeqCst) < DRAINS && start.elapsed() < PATIENCE {
        let text = format!("echo {round}");
        echo.write_all(&client_text(&text))
            .map_err(|e| format!("round {round}: the echo connection failed: {e}"))?;
        match read_frame(&mut echo) {
            Some((0x1, payload)) if payload == text.as_bytes() => {}
            Some((opcode, payload)) => {
                let shown = String::from_utf8_lossy(&payload[..payload.len().min(60)]);
                return Err(format!(
                    "round {round}: the echo connection received another connection's \
                     bytes: opcode {opcode:#x}, {} bytes {shown:?}, instead of {text:?}",
                    payload.len()
                ));
            }
            None => {
                return Err(format!(
                    "round {round}: no echo (the connection ended, or was silent for \
                     {ECHO_TIMEOUT:?}): the reactor stopped serving"
                ));
            }
        }
        round += 1;
    }
    Ok(round)
}

#[test]
fn what_on_drain_sends_in_its_second_chance_never_reaches_another_connection() {
    let streamer = DrainStreamer::default();
    let server = start(test_config(), streamer.clone());
    let addr = server.local_addr();

    let mut streaming = raw_ws(addr);
    let echo = raw_ws(addr);
    streaming.write_all(&client_text("stream")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let stream = streaming.try_clone().unwrap();
        thread::spawn(move || drain_fast(stream, stop))
    };
    let outcome = echo_rounds(echo, &streamer.drains);
    stop.store(true, SeqCst);
    let streamed = reader.join().unwrap();
    let drains = streamer.drains.load(SeqCst);
    let stopped = match shutdown_within(server, Duration::from_millis(500), ECHO_TIMEOUT) {
        Some(Ok(())) => "",
        Some(Err(_)) => "; the reactor thread panicked",
        None => "; the reactor thread is stuck",
    };
    match outcome {
        Ok(rounds) => {
            assert!(
                drains >= DRAINS,
                "the stream stalled ({drains} drains in {PATIENCE:?}, {streamed} bytes): the \
                 test tested too little"
            );
            assert!(stopped.is_empty(), "{rounds} echoes were right{stopped}");
            eprintln!("{rounds} echoes right, {drains} drains, {streamed} bytes streamed");
        }
        Err(failure) => panic!(
            "{failure}{stopped} (after {drains} drains of the streaming connection, \
             {streamed} bytes streamed)"
        ),
    }
}
