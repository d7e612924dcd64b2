//! Graceful shutdown: every client gets close 1001 after everything queued for it,
//! and nothing queued is lost; new connections are refused.

#[path = "util/server.rs"]
mod server;

use std::time::{Duration, Instant};

use server::{Register, start, test_config, ws_client};
use wsreactor::client::{Error, Incoming};
use wsreactor::{CloseCode, Message};

const CLIENTS: usize = 5;
const MESSAGES: u32 = 300;
const SIZE: usize = 8 * 1024;

#[test]
fn shutdown_delivers_everything_queued_then_1001_to_every_client() {
    let (register, ids) = Register::new();
    let config = test_config().with_backpressure(8 << 20, wsreactor::BackpressurePolicy::Drop);
    let server = start(config, register);
    let addr = server.local_addr();
    let mut clients = Vec::new();
    let mut conn_ids = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(ws_client(addr, "/"));
        conn_ids.push(ids.recv_timeout(Duration::from_secs(5)).unwrap());
    }
    // 2.4 MiB for each client, more than the kernel buffers: much of it is still
    // queued in the server when the shutdown begins.
    let sender = server.sender();
    for seq in 0..MESSAGES {
        let mut payload = vec![seq as u8; SIZE];
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        for id in &conn_ids {
            sender.send(*id, Message::Binary(&payload));
        }
    }
    let started = Instant::now();
    let stopper = std::thread::spawn(move || {
        server.shutdown(Duration::from_secs(10)).unwrap();
        server
    });
    for mut client in clients {
        for seq in 0..MESSAGES {
            match client.recv().unwrap() {
                Incoming::Message(Message::Binary(b)) => {
                    assert_eq!(b.len(), SIZE);
                    assert_eq!(u32::from_be_bytes([b[0], b[1], b[2], b[3]]), seq);
                }
                other => panic!("message {seq}: unexpected {other:?}"),
            }
        }
        // The client answers the close, and returns it once the server has closed TCP.
        match client.recv().unwrap() {
            Incoming::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GOING_AWAY),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(client.recv(), Err(Error::Closed)));
    }
    let server = stopper.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "finished by handshakes, not the deadline"
    );
    let stats = server.stats();
    assert_eq!(stats.closed_with(1001), CLIENTS as u64);
    assert_eq!(stats.open, 0);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}
