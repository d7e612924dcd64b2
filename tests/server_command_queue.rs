//! The `Sender` command queue: bounded, honest about what it refused, closed after
//! shutdown, and run under a per-turn budget so that a flood of commands does not
//! starve reads.

#[path = "util/server.rs"]
mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use server::{Client, Register, connect, start, test_config};
use tungstenite::Message as T;
use wsreactor::{CloseCode, ConnId, Handler, Message, QueueStatus, Socket};

/// Registers ids; a "stall" message blocks the reactor for 600 ms (deliberately:
/// it lets the test fill the queue); anything else is echoed.
#[derive(Clone)]
struct Stall(Register);

impl Handler for Stall {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        self.0.on_open(ws);
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        if message.as_bytes() == b"stall" {
            std::thread::sleep(Duration::from_millis(600));
        } else {
            let _ = ws.send(message);
        }
    }
}

fn open(addr: std::net::SocketAddr, ids: &mpsc::Receiver<ConnId>) -> (Client, ConnId) {
    let client = connect(addr, "/");
    let id = ids.recv_timeout(Duration::from_secs(5)).unwrap();
    (client, id)
}

#[test]
fn a_full_queue_refuses_and_everything_it_queued_arrives_in_order() {
    const LIMIT: usize = 64 * 1024;
    const SIZE: usize = 1000;
    let (register, ids) = Register::new();
    let config = test_config().with_max_queued_command_bytes(LIMIT);
    let server = start(config, Stall(register));
    let (mut client, id) = open(server.local_addr(), &ids);
    let sender = server.sender();

    client.send(T::text("stall")).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // the reactor is now asleep
    let mut queued = 0u32;
    let status = loop {
        let mut payload = vec![0u8; SIZE];
        payload[..4].copy_from_slice(&queued.to_be_bytes());
        match sender.send(id, Message::Binary(&payload)) {
            QueueStatus::Queued => queued += 1,
            other => break other,
        }
        assert!(queued < 10_000, "the queue never filled");
    };
    assert_eq!(status, QueueStatus::Full);
    // Each command counts its frame (1000 bytes and a 4-byte header) and 64 more.
    assert_eq!(queued as usize, LIMIT / (SIZE + 4 + 64));
    // A broadcast is refused whole, and so is a close.
    assert_eq!(
        sender.broadcast(Message::Binary(&[0; SIZE])),
        QueueStatus::Full
    );
    assert_eq!(
        sender.close(id, CloseCode::NORMAL, &"r".repeat(4096)),
        QueueStatus::Full
    );

    // Nothing queued is lost: every one arrives, in order, once the reactor wakes.
    for seq in 0..queued {
        match client.read().unwrap() {
            T::Binary(b) => {
                assert_eq!(b.len(), SIZE);
                assert_eq!(b[..4], seq.to_be_bytes(), "out of order");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The queue has room again.
    assert_eq!(sender.send(id, Message::Text("more")), QueueStatus::Queued);
    assert_eq!(client.read().unwrap(), T::text("more"));
}

fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// Regression: the queue outlived the server, and a million broadcasts after
/// shutdown grew a process from 2.5 MiB to 247 MiB without an error.
#[test]
fn after_shutdown_every_command_is_refused_as_closed() {
    let (register, ids) = Register::new();
    let server = start(test_config(), register);
    let (_client, id) = open(server.local_addr(), &ids);
    let sender = server.sender();
    server.shutdown(Duration::from_millis(200)).unwrap();

    assert_eq!(sender.send(id, Message::Text("late")), QueueStatus::Closed);
    assert_eq!(sender.broadcast(Message::Text("late")), QueueStatus::Closed);
    assert_eq!(
        sender.close(id, CloseCode::NORMAL, "late"),
        QueueStatus::Closed
    );
    let before = resident_bytes();
    let payload = [b'x'; 200];
    for _ in 0..200_000 {
        assert_eq!(
            sender.broadcast(Message::Binary(&payload)),
            QueueStatus::Closed
        );
    }
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 8 << 20, "grew by {grown} bytes");
}

#[test]
fn a_dropped_handle_closes_the_queues() {
    let (register, _ids) = Register::new();
    let sender = start(test_config(), register).sender();
    // The handle was dropped at the end of the statement: the server stopped.
    assert_eq!(sender.broadcast(Message::Text("x")), QueueStatus::Closed);
}

/// Regression: `shutdown(Duration::MAX)` overflowed `Instant + Duration` and
/// panicked. It now waits for the close handshakes without a deadline.
#[test]
fn shutdown_with_the_longest_timeout_waits_for_the_close_handshake() {
    let (register, ids) = Register::new();
    let server = start(test_config(), register);
    let (mut client, _) = open(server.local_addr(), &ids);
    let reader = std::thread::spawn(move || {
        // tungstenite answers the server's close frame, then the read fails.
        let mut saw_close = false;
        while let Ok(message) = client.read() {
            saw_close |= matches!(message, T::Close(Some(ref f)) if u16::from(f.code) == 1001);
        }
        saw_close
    });
    let start = Instant::now();
    server.shutdown(Duration::MAX).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(reader.join().unwrap(), "the client got close 1001");
}

/// Regression: a reactor ran every queued command in one turn, so a producer
/// flooding the queue held up every read on that reactor.
#[test]
fn a_flood_of_commands_does_not_starve_reads() {
    let (register, ids) = Register::new();
    let server = start(test_config(), Stall(register));
    let (mut target, target_id) = open(server.local_addr(), &ids);
    let (mut echo, _) = open(server.local_addr(), &ids);
    let stop = Arc::new(AtomicBool::new(false));

    // The target reads everything it is sent, so the flood is never dropped.
    let drain = std::thread::spawn(move || {
        let mut n = 0u64;
        while target.read().is_ok() {
            n += 1;
        }
        n
    });
    let sender = server.sender();
    let flooding = stop.clone();
    let flooder = std::thread::spawn(move || {
        let mut queued = 0u64;
        while !flooding.load(Ordering::Relaxed) {
            if sender.send(target_id, Message::Binary(b"flood")) == QueueStatus::Queued {
                queued += 1;
            }
        }
        queued
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let text = format!("echo {i}");
        let start = Instant::now();
        echo.send(T::text(text.clone())).unwrap();
        assert_eq!(echo.read().unwrap(), T::text(text));
        slowest = slowest.max(start.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let queued = flooder.join().unwrap();
    assert!(queued > 10_000, "the flood was not one: {queued} commands");
    assert!(
        slowest < Duration::from_millis(500),
        "an echo took {slowest:?} behind {queued} commands"
    );
    server.shutdown(Duration::from_secs(1)).unwrap();
    assert!(drain.join().unwrap() > 0);
}
