//! A one-connection server whose every byte the test writes, for the client's tests:
//! it reads the upgrade request, sends what the test says, then hands the socket to
//! the test's script (in its own thread) and returns what the script returns.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use wsreactor::proto::handshake::accept_key;

use super::server::PATIENCE;

/// A scripted server; `join` waits for its script's result.
pub struct Scripted<T> {
    pub addr: SocketAddr,
    thread: JoinHandle<T>,
}

impl<T> Scripted<T> {
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    pub fn join(self) -> T {
        self.thread.join().expect("the scripted server panicked")
    }
}

/// Accepts one connection, reads the request head, writes `respond(head)`, then runs
/// `script` on the socket.
pub fn serve<T: Send + 'static>(
    respond: impl FnOnce(&str) -> Vec<u8> + Send + 'static,
    script: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> Scripted<T> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let thread = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let head = read_head(&mut stream);
        stream.write_all(&respond(&head)).expect("respond");
        script(stream)
    });
    Scripted { addr, thread }
}

/// A correct `101 Switching Protocols` for `head`, plus `extra` header lines.
pub fn accept(head: &str, extra: &str) -> Vec<u8> {
    let key = header(head, "sec-websocket-key").expect("the request has a key");
    let accept = accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
        std::str::from_utf8(&accept).unwrap()
    )
    .into_bytes()
}

/// The value of the first header called `name` in a request head.
pub fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads an HTTP head, up to and including the blank line.
pub fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An unmasked server frame.
pub fn frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![first_byte];
    match payload.len() {
        n @ 0..=125 => bytes.push(n as u8),
        n @ 126..=65535 => {
            bytes.push(126);
            bytes.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            bytes.push(127);
            bytes.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    bytes.extend_from_slice(payload);
    bytes
}

/// Reads one masked client frame: (first byte, unmasked payload), or `None` at the
/// end of the stream.
pub fn read_client_frame(stream: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h).ok()?;
    assert!(h[1] & 0x80 != 0, "a client frame must be masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    stream.read_exact(&mut key).ok()?;
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).ok()?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    Some((h[0], payload))
}

/// Reads client frames until a close frame; returns its code (1005 for none), or
/// `None` if the stream ended first.
pub fn read_client_close(stream: &mut TcpStream) -> Option<u16> {
    while let Some((first, payload)) = read_client_frame(stream) {
        if first & 0x0f == 0x8 {
            return Some(match payload.get(..2) {
                Some(code) => u16::from_be_bytes([code[0], code[1]]),
                None => 1005,
            });
        }
    }
    None
}

/// Whether the client closed TCP: the next read ends the stream or is reset, rather
/// than bringing a byte or timing out.
pub fn client_closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}
