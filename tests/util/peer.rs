//! A client for model tests. The test drives its writing side (commands as masked
//! text frames, pauses, a close or a reset); a reader thread parses everything the
//! server sends with tungstenite, the oracle, and keeps what each message says about
//! itself (see `tagged.rs`).
#![allow(dead_code)]

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tungstenite::protocol::{Role, WebSocket};
use tungstenite::{Error as WsError, Message as WsMessage};

use super::server::PATIENCE;
use super::tagged::{self, Tagged};

/// How the server's stream ended, as the reader saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// A close frame, then the end of the stream: the only good end.
    Closed,
    /// The end of the stream without a close frame.
    NoCloseFrame,
    /// The test reset the connection.
    Reset,
    /// Still open at the deadline: the server stopped serving it.
    TimedOut,
    /// tungstenite refused what the server sent, or the socket failed.
    Failed(String),
}

/// Everything the server sent to one connection.
#[derive(Debug)]
pub struct Received {
    pub messages: Vec<Tagged>,
    /// The code of the server's close frame (1005 when it had none).
    pub close: Option<u16>,
    /// Messages whose header or body was wrong (the first few).
    pub malformed: Vec<String>,
    pub end: End,
}

/// The writing side of a connection, and its reader thread.
pub struct Peer {
    stream: TcpStream,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    reader: JoinHandle<Received>,
    masks: u32,
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl Peer {
    /// Connects and upgrades at `path`; the reader gives up at `deadline`.
    pub fn connect(addr: SocketAddr, path: &str, deadline: Instant) -> io::Result<Peer> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        // Hang guards: a busy machine may take long to answer the upgrade or to read
        // a command, and that is no failure.
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_write_timeout(Some(PATIENCE))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes())?;
        // Byte by byte, so that the first frames stay in the socket for the reader.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte)? == 0 {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        if !head.starts_with("HTTP/1.1 101") || !head.contains(ACCEPT) {
            let first = head.lines().next().unwrap_or_default();
            return Err(io::Error::other(format!("not upgraded: {first:?}")));
        }
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stream = stream.try_clone()?;
            let (paused, stop) = (paused.clone(), stop.clone());
            thread::spawn(move || read_all(stream, &paused, &stop, deadline))
        };
        Ok(Peer {
            stream,
            paused,
            stop,
            reader,
            masks: 0,
        })
    }

    /// Sends `text` as one masked text frame.
    pub fn command(&mut self, text: &str) -> io::Result<()> {
        let frame = self.masked(0x1, text.as_bytes());
        self.stream.write_all(&frame)
    }

    /// Stops or resumes reading.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, SeqCst);
    }

    /// Starts the close handshake with `code` and reads to the end of the stream.
    pub fn close(mut self, code: u16) -> Received {
        self.pause(false);
        let frame = self.masked(0x8, &code.to_be_bytes());
        // A write error shows in what the reader saw.
        let _ = self.stream.write_all(&frame);
        self.reader.join().expect("the reader thread")
    }

    /// Sends `last` and resets the connection (SO_LINGER 0, then close) at once, so
    /// that the reset reaches the server while it answers. Returns what was read
    /// until then.
    pub fn reset_after(mut self, last: &str) -> Received {
        let frame = self.masked(0x1, last.as_bytes());
        // The reader holds the socket too: a shutdown of the reading side ends it,
        // and leaves this handle the last one.
        self.stop.store(true, SeqCst);
        let _ = self.stream.shutdown(Shutdown::Read);
        let mut received = self.reader.join().expect("the reader thread");
        received.end = End::Reset;
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER");
        // The server may have closed first (its close frame is unread here).
        let _ = self.stream.write_all(&frame);
        drop(self.stream);
        received
    }

    fn masked(&mut self, opcode: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126, "commands are short");
        self.masks = self.masks.wrapping_add(0x9e37_79b9);
        let key = self.masks.to_be_bytes();
        let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }
}

/// The reader's side of the socket for tungstenite: reads from the socket, and
/// drops what tungstenite would write (its close reply: the test sends its own).
struct Wire(TcpStream);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn read_all(
    stream: TcpStream,
    paused: &AtomicBool,
    stop: &AtomicBool,
    deadline: Instant,
) -> Received {
    let mut received = Received {
        messages: Vec::new(),
        close: None,
        malformed: Vec::new(),
        end: End::TimedOut,
    };
    // Short, so that the flags and the deadline are seen; tungstenite keeps a
    // partial frame across a timed-out read.
    if let Err(e) = stream.set_read_timeout(Some(Duration::from_millis(5))) {
        received.end = End::Failed(e.to_string());
        return received;
    }
    let mut ws = WebSocket::from_raw_socket(Wire(stream), Role::Client, None);
    received.end = loop {
        if stop.load(SeqCst) {
            break End::Reset;
        }
        if Instant::now() > deadline {
            break End::TimedOut;
        }
        if paused.load(SeqCst) {
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        let decoded = match ws.read() {
            Ok(WsMessage::Text(text)) => tagged::decode(text.as_bytes(), true),
            Ok(WsMessage::Binary(bytes)) => tagged::decode(&bytes, false),
            Ok(WsMessage::Close(frame)) => {
                received.close = Some(frame.map_or(1005, |f| f.code.into()));
                continue;
            }
            Ok(other) => Err(format!("an unexpected {other:?}")),
            Err(WsError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                continue;
            }
            Err(WsError::ConnectionClosed) => break End::Closed,
            Err(WsError::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => {
                break End::NoCloseFrame;
            }
            Err(e) => break End::Failed(e.to_string()),
        };
        match decoded {
            Ok(tagged) => received.messages.push(tagged),
            Err(e) if received.malformed.len() < 4 => received.malformed.push(e),
            Err(_) => {}
        }
    };
    received
}
