//! `BackpressurePolicy::Pause` over wss: reading pauses at the limit, and the TLS
//! layer's own records still flow: a key update the peer asks for while the
//! connection is paused is answered once it reads again, and a close while paused
//! ends with the close frame and close_notify behind every echo.
//!
//! The client is rustls over a non-blocking socket, driven by hand, so that one
//! thread can keep writing while it does not read.
#![cfg(feature = "tls")]

#[path = "util/server.rs"]
mod server;
#[path = "util/tls.rs"]
mod tls;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use rustls::ClientConnection;
use server::{PATIENCE, test_config};
use tls::{TlsStream, certs, frame, start_tls, tls_ws};
use wsreactor::{BackpressurePolicy, Config, Handler, Message, ServerHandle, Socket};

const LIMIT: usize = 256 * 1024;
const SIZE: usize = 16 * 1024;
/// Far more than the limit and the kernel's buffers hold while the client does
/// not read.
const COUNT: u32 = 512;

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        // Pause: never dropped.
        let _ = ws.send(message);
    }
}

fn config() -> Config {
    test_config()
        .with_backpressure(LIMIT, BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 * 1024))
        // Not the subject: the client takes its time to read what is queued.
        .with_close_timeout(PATIENCE)
}

fn payload(seq: u32) -> Vec<u8> {
    let mut p: Vec<u8> = (0..SIZE).map(|i| (i as u32 ^ seq) as u8).collect();
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p
}

/// A wss client driven by hand over a non-blocking socket.
struct Client {
    conn: ClientConnection,
    sock: TcpStream,
    /// Plaintext to send, not yet taken by rustls.
    out: Vec<u8>,
    /// Plaintext received and not yet parsed.
    got: Vec<u8>,
    /// The server sent close_notify.
    ended: bool,
}

impl Client {
    fn connect(server: &ServerHandle, certs: &tls::Certs) -> Client {
        let TlsStream { conn, sock } = tls_ws(server.local_addr(), &certs.client_config());
        sock.set_nonblocking(true).unwrap();
        Client {
            conn,
            sock,
            out: Vec::new(),
            got: Vec::new(),
            ended: false,
        }
    }

    /// Writes what the socket takes now; reads too if `read`. Returns whether
    /// anything moved.
    fn pump(&mut self, read: bool) -> bool {
        let mut moved = false;
        if !self.out.is_empty() {
            let n = self.conn.writer().write(&self.out).unwrap();
            self.out.drain(..n);
            moved |= n > 0;
        }
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(n) => moved |= n > 0,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        if read && !self.ended {
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => panic!("the server closed without close_notify"),
                Ok(_) => moved = true,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
            self.conn.process_new_packets().expect("valid records");
            let mut buf = [0u8; 16 * 1024];
            loop {
                match self.conn.reader().read(&mut buf) {
                    Ok(0) => {
                        self.ended = true;
                        break;
                    }
                    Ok(n) => self.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("plaintext: {e}"),
                }
            }
        }
        moved
    }

    /// Pumps until `done` holds; panics after `PATIENCE` without it.
    fn pump_until(&mut self, read: bool, mut done: impl FnMut(&mut Client) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < PATIENCE,
                "no progress within {PATIENCE:?}"
            );
            if !self.pump(read) {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// The next whole server frame received, if any: (opcode byte, payload).
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let (head, len) = match *self.got.get(1)? & 0x7f {
            126 if self.got.len() >= 4 => {
                (4, u16::from_be_bytes([self.got[2], self.got[3]]) as usize)
            }
            127 if self.got.len() >= 10 => (
                10,
                u64::from_be_bytes(self.got[2..10].try_into().unwrap()) as usize,
            ),
            126 | 127 => return None,
            n => (2, n as usize),
        };
        if self.got.len() < head + len {
            return None;
        }
        let op = self.got[0];
        let payload = self.got[head..head + len].to_vec();
        self.got.drain(..head + len);
        Some((op, payload))
    }

    /// Reads until `count` echoes have come, checking each.
    fn echoes(&mut self, from: u32, count: u32) {
        let mut seq = from;
        self.pump_until(true, |c| {
            while let Some((op, p)) = c.frame() {
                assert_eq!(op, 0x82, "echo {seq}");
                assert!(p == payload(seq), "echo {seq} differs");
                seq += 1;
            }
            seq == from + count
        });
    }
}

/// Queues every message and writes without reading until the server has paused.
fn pipeline_until_paused(client: &mut Client, server: &ServerHandle) {
    for seq in 0..COUNT {
        client
            .out
            .extend_from_slice(&frame(0x2, true, &payload(seq)));
    }
    client.pump_until(false, |_| server.stats().read_pauses > 0);
}

#[test]
fn a_key_update_asked_for_while_paused_is_answered_and_every_echo_arrives() {
    let certs = certs();
    let server = start_tls(config(), &certs, Echo);
    let mut client = Client::connect(&server, &certs);
    pipeline_until_paused(&mut client, &server);
    // Asks the server to update its keys too: its answer is a record of the TLS
    // layer's own, written while the connection's queue is over the limit.
    client.conn.refresh_traffic_keys().unwrap();
    client.echoes(0, COUNT);
    // Both sides' keys moved on: one more echo decrypts with the new ones.
    client
        .out
        .extend_from_slice(&frame(0x2, true, &payload(COUNT)));
    client.echoes(COUNT, 1);
    let stats = server.stats();
    assert_eq!((stats.dropped, stats.open), (0, 1), "{stats:?}");
}

#[test]
fn a_shutdown_while_paused_sends_the_close_and_close_notify_behind_every_echo() {
    let certs = certs();
    let server = start_tls(config(), &certs, Echo);
    let mut client = Client::connect(&server, &certs);
    pipeline_until_paused(&mut client, &server);
    // Returns at once; the reactor closes the connection with 1001.
    server.sender().shutdown(PATIENCE);
    // Every echo the server had read comes first, then the close.
    let mut echoed = 0;
    let mut close = None;
    client.pump_until(true, |c| {
        while let Some((op, p)) = c.frame() {
            if op == 0x88 {
                close = Some(p);
                return true;
            }
            assert!(p == payload(echoed), "echo {echoed} differs");
            echoed += 1;
        }
        false
    });
    assert_eq!(&close.unwrap()[..2], &1001u16.to_be_bytes());
    assert!(echoed > 0, "echoes came before the close");
    // The client answers; the server's TLS layer ends with close_notify.
    client
        .out
        .extend_from_slice(&frame(0x8, true, &1000u16.to_be_bytes()));
    client.pump_until(true, |c| c.ended);
    server.wait().unwrap();
    assert_eq!(server.stats().dropped, 0);
}
