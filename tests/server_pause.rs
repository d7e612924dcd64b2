//! `BackpressurePolicy::Pause`, the default: what a connection's own callbacks send
//! is queued, never dropped; past the limit the connection is not read, so TCP holds
//! the peer back, and reading resumes once the queue is down to half the limit.
//! Sends from other threads meet the limit as under `Drop`, counted. The timeouts
//! still apply to a paused connection.

#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use server::{
    PATIENCE, UPGRADE, raw, read_frame, read_head, start, test_config, wait_for_stats, wait_until,
};
use wsreactor::{BackpressurePolicy, CloseCode, ConnId, Handler, Message, SendStatus, Socket};

/// The backpressure limit of these tests: small, so that a few hundred KiB pause.
const LIMIT: usize = 256 * 1024;
/// The most one read takes in: the spare room of the buffer it lands in, the
/// reactor's 64 KiB scratch buffer or a connection's held buffer, which is at most
/// 256 KiB when it comes from the pool (a message larger than that grows its own).
const ONE_READ: usize = 256 * 1024;

/// Echoes every message, and keeps what the connection's queue reached and every
/// status a send returned.
#[derive(Clone, Default)]
struct Echo {
    max_buffered: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
    ids: Arc<Mutex<Vec<ConnId>>>,
    closes: Arc<Mutex<Vec<(u16, String)>>>,
}

impl Handler for Echo {
    type Session = ();

    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        self.ids.lock().unwrap().push(ws.id());
    }

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        match ws.send(message) {
            SendStatus::Sent | SendStatus::Backpressure => {}
            SendStatus::Dropped => {
                self.dropped.fetch_add(1, SeqCst);
            }
            SendStatus::Closed => {}
        }
        self.max_buffered.fetch_max(ws.buffered_amount(), SeqCst);
    }

    fn on_close(&mut self, _: ConnId, _: (), code: CloseCode, reason: &str) {
        self.closes
            .lock()
            .unwrap()
            .push((code.0, reason.to_owned()));
    }
}

/// A masked binary frame with the zero key (legal, and it leaves the payload as
/// it is, so that 100 MiB cost the client no masking).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

/// Message `seq` of `size` bytes: its number, then bytes that depend on it.
fn payload(seq: u32, size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..size).map(|i| (i as u32 ^ seq) as u8).collect();
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p
}

fn upgraded(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = raw(addr);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    s
}

/// Writes `count` messages of `size` bytes from another thread, as fast as the
/// server takes them; the thread ends with the first write error.
fn pipeline(s: &TcpStream, count: u32, size: usize) -> thread::JoinHandle<std::io::Result<()>> {
    let mut w = s.try_clone().unwrap();
    thread::spawn(move || {
        for seq in 0..count {
            w.write_all(&frame(&payload(seq, size)))?;
        }
        Ok(())
    })
}

/// Reads `count` echoes and checks each is message `seq`, in order, byte for byte.
fn read_echoes(s: &mut TcpStream, count: u32, size: usize, mut between: impl FnMut()) {
    for seq in 0..count {
        let (op, got) = read_frame(s).unwrap_or_else(|| panic!("echo {seq} of {count}"));
        assert_eq!(op, 0x2, "echo {seq}");
        assert!(got == payload(seq, size), "echo {seq} differs");
        between();
    }
}

/// The case: a client pipelines 100 MiB of echoes while it reads slowly.
/// Every byte comes back in order; the server's queue for it never passes the
/// limit plus what one read asks for (the read's echoes, and the message that
/// read completes); nothing is dropped, and reading paused.
#[test]
fn a_client_that_pipelines_100_mib_and_reads_slowly_gets_every_echo_in_order() {
    const SIZE: usize = 32 * 1024;
    const COUNT: u32 = (100 << 20) / SIZE as u32;
    let echo = Echo::default();
    let config = test_config().with_backpressure(LIMIT, BackpressurePolicy::Pause);
    let server = start(config, echo.clone());
    let mut s = upgraded(server.local_addr());
    let writer = pipeline(&s, COUNT, SIZE);
    // The client reads nothing until the server has paused it (its queue past the
    // limit, behind the kernels' full buffers: 100 MiB is far more than they
    // hold), whatever the machine's speed; then it reads slowly, a pause every 64
    // echoes (2 MiB), so that the server pauses it again and again.
    wait_for_stats(&server, PATIENCE, |s| s.read_pauses > 0);
    let mut n = 0;
    read_echoes(&mut s, COUNT, SIZE, || {
        n += 1;
        if n % 64 == 0 {
            thread::sleep(Duration::from_millis(5));
        }
    });
    writer.join().unwrap().unwrap();
    let stats = wait_for_stats(&server, PATIENCE, |s| s.messages_out == u64::from(COUNT));
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(echo.dropped.load(SeqCst), 0);
    assert!(stats.read_pauses > 0, "the reader paused: {stats:?}");
    let max = echo.max_buffered.load(SeqCst);
    let bound = LIMIT + ONE_READ + SIZE + 64;
    assert!(max <= bound, "queued {max} B, over {bound} B");
    assert!(max > LIMIT / 2, "the queue was used: {max} B");
}

/// A paused connection answers the ping it was sent while paused, once it reads
/// again, after the echoes that came before it.
#[test]
fn a_ping_sent_to_a_paused_connection_is_answered_once_it_reads_again() {
    const SIZE: usize = 16 * 1024;
    // Far more than the limit and the kernel's buffers on both sides hold.
    const COUNT: u32 = 2048;
    let config = test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 * 1024));
    let server = start(config, Echo::default());
    let mut s = upgraded(server.local_addr());
    let writer = pipeline(&s, COUNT, SIZE);
    wait_for_stats(&server, PATIENCE, |s| s.read_pauses > 0);
    let mut w = s.try_clone().unwrap();
    let ping = thread::spawn(move || {
        writer.join().unwrap().unwrap();
        w.write_all(&[0x89, 0x82, 0, 0, 0, 0, b'h', b'i']).unwrap();
    });
    read_echoes(&mut s, COUNT, SIZE, || {});
    assert_eq!(read_frame(&mut s), Some((0xA, b"hi".to_vec())), "the pong");
    ping.join().unwrap();
    let stats = server.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
}

/// Sends from another thread to a paused connection meet the limit as under
/// `Drop`: refused there and counted, while the connection's own echoes are all
/// delivered.
#[test]
fn sends_from_other_threads_to_a_paused_connection_are_dropped_and_counted() {
    const SIZE: usize = 16 * 1024;
    const COUNT: u32 = 512;
    let echo = Echo::default();
    let config = test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 * 1024));
    let server = start(config, echo.clone());
    let mut s = upgraded(server.local_addr());
    let writer = pipeline(&s, COUNT, SIZE);
    // Paused: the queue is over the limit, and stays above nothing while the
    // client reads nothing, so a send the size of the limit cannot fit.
    wait_for_stats(&server, PATIENCE, |s| s.read_pauses > 0);
    let id = echo.ids.lock().unwrap()[0];
    let big = vec![9u8; LIMIT];
    assert_eq!(
        server.sender().send(id, Message::Binary(&big)),
        wsreactor::QueueStatus::Queued
    );
    wait_for_stats(&server, PATIENCE, |s| s.dropped == 1);
    read_echoes(&mut s, COUNT, SIZE, || {});
    writer.join().unwrap().unwrap();
    assert_eq!(echo.dropped.load(SeqCst), 0, "no echo was dropped");
    let stats = wait_for_stats(&server, PATIENCE, |s| s.messages_out == u64::from(COUNT));
    assert_eq!(stats.dropped, 1, "{stats:?}");
}

/// Drives a connection past the limit with a client that then reads nothing, and
/// returns the client and what it wrote (the writer thread may be blocked: the
/// server stopped reading).
fn paused_and_stuck(server: &wsreactor::ServerHandle) -> TcpStream {
    let s = upgraded(server.local_addr());
    let mut w = s.try_clone().unwrap();
    thread::spawn(move || {
        // Until the server closes the connection, whenever that is.
        for seq in 0.. {
            if w.write_all(&frame(&payload(seq, 16 * 1024))).is_err() {
                return;
            }
        }
    });
    wait_for_stats(server, PATIENCE, |s| s.read_pauses > 0);
    s
}

/// A paused peer that never reads is still dropped by the write timeout.
#[test]
fn the_write_timeout_ends_a_paused_connection_whose_peer_never_reads() {
    let echo = Echo::default();
    let config = test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 * 1024))
        .with_write_timeout(Some(Duration::from_millis(300)));
    let server = start(config, echo.clone());
    let _s = paused_and_stuck(&server);
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(stats.write_timeouts, 1, "{stats:?}");
    assert_eq!(
        *echo.closes.lock().unwrap(),
        [(1008, "write timeout".to_owned())]
    );
}

/// Without a write timeout, the idle timeout ends a paused peer that never reads:
/// its ping and its close cannot reach the peer, and the close timeout follows.
#[test]
fn the_idle_and_close_timeouts_end_a_paused_connection_without_a_write_timeout() {
    let echo = Echo::default();
    let config = test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 * 1024))
        .with_write_timeout(None)
        .with_idle_timeout(Some(Duration::from_millis(300)))
        .with_close_timeout(Duration::from_millis(300));
    let server = start(config, echo.clone());
    let _s = paused_and_stuck(&server);
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(stats.write_timeouts, 0, "{stats:?}");
    // The peer never answered: on_close has the code the server closed with.
    assert_eq!(*echo.closes.lock().unwrap(), [(1001, String::new())]);
}

/// A close asked for while the connection is paused goes out behind the queued
/// echoes; a peer that never answers is dropped by the close timeout.
#[test]
fn a_close_while_paused_is_bounded_by_the_close_timeout() {
    let echo = Echo::default();
    let config = test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 * 1024))
        .with_write_timeout(None)
        .with_close_timeout(Duration::from_millis(300));
    let server = start(config, echo.clone());
    let _s = paused_and_stuck(&server);
    let id = echo.ids.lock().unwrap()[0];
    let _ = server.sender().close(id, CloseCode::NORMAL, "bye");
    wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(*echo.closes.lock().unwrap(), [(1000, String::new())]);
}

/// The close reaches a paused peer that reads again: after every echo queued
/// before it.
#[test]
fn a_paused_peer_that_reads_again_gets_every_echo_then_the_close() {
    const SIZE: usize = 16 * 1024;
    const COUNT: u32 = 512;
    let echo = Echo::default();
    let config = test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 * 1024))
        // Not the subject here: the client takes its time to read what is queued.
        .with_close_timeout(PATIENCE);
    let server = start(config, echo.clone());
    let mut s = upgraded(server.local_addr());
    let writer = pipeline(&s, COUNT, SIZE);
    wait_for_stats(&server, PATIENCE, |s| s.read_pauses > 0);
    // Asked for while paused: it goes out behind the echoes already queued.
    let id = echo.ids.lock().unwrap()[0];
    let _ = server.sender().close(id, CloseCode::NORMAL, "done");
    let mut echoed = 0;
    loop {
        let (op, got) = read_frame(&mut s).expect("an echo or the close");
        if op == 0x8 {
            assert_eq!(&got[..2], &1000u16.to_be_bytes());
            break;
        }
        assert!(got == payload(echoed, SIZE), "echo {echoed} differs");
        echoed += 1;
    }
    assert!(
        echoed > 0 && echoed <= COUNT,
        "{echoed} echoes before the close"
    );
    // Its writes may fail once the connection is gone: only its end matters.
    let _ = writer.join();
    // The client read the close and answers it by closing the TCP connection.
    drop(s);
    wait_until(PATIENCE, || server.stats().open == 0);
    assert_eq!(server.stats().dropped, 0);
    assert_eq!(*echo.closes.lock().unwrap(), [(1000, String::new())]);
}
