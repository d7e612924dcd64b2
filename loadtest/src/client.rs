//! One client connection: connect, upgrade, then frames through wsreactor's sans-IO
//! client role (or raw bytes, for the TCP ceiling).

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Read, Write};
use std::time::Instant;

use mio::net::TcpStream;

use crate::tls::Session;
use wsreactor::proto::deflate::{ClientDeflate, Inflater, PerMessageDeflate};
use wsreactor::proto::frame::Role;
use wsreactor::proto::handshake::{self, EMPTY_HEADER};
use wsreactor::proto::{CloseCode, Connection, Decoded, Event, Limits, Message};

/// permessage-deflate on a client connection: what was agreed, and the decompressor
/// (made on the first compressed message).
struct Deflate {
    agreed: PerMessageDeflate,
    inflater: Option<Inflater>,
    inflated: Vec<u8>,
}

/// Where a client connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Handshaking,
    Open,
    Closed,
}

/// Why a connection failed, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Handshake,
    Reset,
    Closed,
    Protocol,
}

/// What the caller should do after feeding a client its input.
pub enum Received<'a> {
    /// A complete message.
    Message(Message<'a>),
}

pub struct Client {
    pub stream: TcpStream,
    pub phase: Phase,
    proto: Connection,
    key: [u8; 24],
    /// Bytes received and not yet consumed (a partial frame or response).
    input: Vec<u8>,
    /// Bytes the kernel has not taken yet.
    output: Vec<u8>,
    /// Send (or scheduled) times of the messages in flight, oldest first.
    pub inflight: VecDeque<Instant>,
    pub started: Instant,
    /// Raw mode: bytes of the current echo received so far.
    pub raw_pending: usize,
    /// The code of the server's close frame, once one arrived (1005 when it carried
    /// none): what the soak's abusive clients check.
    pub close_code: Option<u16>,
    /// Offer permessage-deflate in the upgrade.
    pub offer_deflate: bool,
    deflate: Option<Box<Deflate>>,
    /// Messages received (the echo scenario checks each against what it sent).
    pub received: u64,
    /// Messages sent from the echo scenario's stream.
    pub sent: u64,
    /// wss://: the TLS session between the socket and the protocol.
    pub tls: Option<Session>,
}

impl Client {
    pub fn new(stream: TcpStream, seed: u64, now: Instant) -> Client {
        // std's RandomState is seeded from the OS: enough for handshake nonces and
        // mask keys of a load generator.
        let random = RandomState::new();
        let (a, b) = (random.hash_one(seed), random.hash_one(!seed));
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&a.to_le_bytes());
        nonce[8..].copy_from_slice(&b.to_le_bytes());
        Client {
            stream,
            phase: Phase::Connecting,
            proto: Connection::client(a ^ b.rotate_left(17)),
            key: handshake::encode_key(nonce),
            input: Vec::new(),
            output: Vec::new(),
            inflight: VecDeque::new(),
            started: now,
            raw_pending: 0,
            close_code: None,
            offer_deflate: false,
            deflate: None,
            received: 0,
            sent: 0,
            tls: None,
        }
    }

    /// The connect finished (the socket became writable): check it, and send the
    /// upgrade request (or, raw, be open at once).
    pub fn connected(&mut self, host: &str, path: &str, raw: bool) -> Result<(), Failure> {
        match self.stream.take_error() {
            Ok(None) => {}
            _ => return Err(Failure::Connect),
        }
        if self.stream.peer_addr().is_err() {
            return Err(Failure::Connect);
        }
        if raw {
            self.phase = Phase::Open;
            return Ok(());
        }
        let offer = ClientDeflate::default().offer();
        let extra: &[(&str, &str)] = if self.offer_deflate {
            &[("Sec-WebSocket-Extensions", &offer)]
        } else {
            &[]
        };
        handshake::write_request(&mut self.output, host, path, &self.key, &[], extra);
        self.phase = Phase::Handshaking;
        self.flush().map_err(|_| Failure::Reset)
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflated(&self) -> bool {
        self.deflate.is_some()
    }

    /// Writes `bytes`, queueing what the kernel does not take.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            return tls.send(&mut self.stream, bytes);
        }
        if !self.output.is_empty() {
            self.output.extend_from_slice(bytes);
            return Ok(());
        }
        let written = match self.stream.write(bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        self.output.extend_from_slice(&bytes[written..]);
        Ok(())
    }

    /// Writes a message through the client role (masked with a fresh key).
    pub fn send_message(&mut self, message: Message<'_>) -> io::Result<()> {
        let mut frame = Vec::with_capacity(message.len() + 14);
        if self.proto.write_message(&mut frame, message).is_err() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.send(&frame)
    }

    /// Writes a ping through the client role.
    pub fn ping(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        if self.proto.ping(&mut frame, payload).is_err() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.send(&frame)
    }

    /// Starts the close handshake with `code`.
    pub fn close(&mut self, code: u16) -> io::Result<()> {
        let mut frame = Vec::with_capacity(16);
        if self.proto.close(&mut frame, CloseCode(code), "").is_err() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.send(&frame)
    }

    /// Bytes written but not yet taken by the kernel.
    pub fn queued(&self) -> usize {
        let sealed = self.tls.as_ref().is_some_and(Session::waiting);
        self.output.len() + usize::from(sealed)
    }

    /// Flushes queued bytes (on a writable event).
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            // Bytes the role wrote itself (the upgrade request, pongs, the close).
            let output = std::mem::take(&mut self.output);
            return tls.send(&mut self.stream, &output);
        }
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what has arrived into `scratch` and hands each message to `on_message`.
    /// Returns `Ok(true)` while the connection is usable.
    pub fn receive(
        &mut self,
        scratch: &mut [u8],
        limits: &Limits,
        raw_payload: Option<usize>,
        mut on_message: impl FnMut(&mut Client, Received<'_>),
    ) -> Result<(), Failure> {
        loop {
            let read = match &mut self.tls {
                Some(tls) => tls.read(&mut self.stream, scratch),
                None => self.stream.read(scratch),
            };
            let n = match read {
                Ok(0) => {
                    return Err(if self.phase == Phase::Handshaking {
                        Failure::Handshake
                    } else {
                        Failure::Closed
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(Failure::Reset),
            };
            if let Some(size) = raw_payload {
                self.raw_pending += n;
                while self.raw_pending >= size.max(1) {
                    self.raw_pending -= size.max(1);
                    on_message(self, Received::Message(Message::Binary(&[])));
                }
            } else {
                self.input.extend_from_slice(&scratch[..n]);
                let mut input = std::mem::take(&mut self.input);
                let result = self.process(&mut input, limits, &mut on_message);
                self.input = input;
                result?;
                if !self.output.is_empty() {
                    self.flush().map_err(|_| Failure::Reset)?;
                }
            }
            // A TLS read stops at a record: only `WouldBlock` says the socket is
            // drained (its edge-triggered readiness will not come again otherwise).
            if n < scratch.len() && self.tls.is_none() {
                return Ok(());
            }
        }
    }

    /// Handles the input: the upgrade response, then frames.
    fn process(
        &mut self,
        input: &mut Vec<u8>,
        limits: &Limits,
        on_message: &mut impl FnMut(&mut Client, Received<'_>),
    ) -> Result<(), Failure> {
        let mut pos = 0;
        if self.phase == Phase::Handshaking {
            let mut headers = [EMPTY_HEADER; 32];
            let offer = ClientDeflate::default();
            let offered = self.offer_deflate.then_some(&offer);
            match handshake::parse_response_with_deflate(
                input,
                &mut headers,
                &self.key,
                &[],
                offered,
            ) {
                Ok(None) => return Ok(()),
                Ok(Some((response, consumed))) => {
                    pos = consumed;
                    self.phase = Phase::Open;
                    self.proto.set_deflate(response.deflate());
                    self.deflate = response.deflate().map(|agreed| {
                        Box::new(Deflate {
                            agreed,
                            inflater: None,
                            inflated: Vec::new(),
                        })
                    });
                }
                Err(_) => return Err(Failure::Handshake),
            }
        }
        loop {
            match self
                .proto
                .decode(&mut input[pos..], &mut self.output, limits)
            {
                Decoded::NeedMore { keep } => {
                    let (start, end) = (pos + keep.start, pos + keep.end);
                    input.copy_within(start..end, 0);
                    input.truncate(end - start);
                    return Ok(());
                }
                Decoded::Event { consumed, event } => {
                    match event {
                        Event::Message(message) => {
                            // The message borrows `input`, not `self`.
                            self.received += 1;
                            on_message(self, Received::Message(message));
                        }
                        Event::Compressed(compressed) => {
                            let Some(mut deflate) = self.deflate.take() else {
                                return Err(Failure::Protocol);
                            };
                            let Deflate {
                                agreed,
                                inflater,
                                inflated,
                            } = &mut *deflate;
                            let inflater = inflater.get_or_insert_with(|| {
                                Inflater::new(agreed.decompressor(Role::Client))
                            });
                            let max = limits.max_message_size;
                            match inflater.inflate(
                                compressed.payload,
                                compressed.text,
                                max,
                                inflated,
                            ) {
                                Ok(message) => {
                                    self.received += 1;
                                    on_message(self, Received::Message(message));
                                }
                                Err(_) => {
                                    self.phase = Phase::Closed;
                                    return Err(Failure::Protocol);
                                }
                            }
                            self.deflate = Some(deflate);
                        }
                        Event::Ping(_) | Event::Pong(_) => {}
                        Event::Close(frame) => {
                            self.close_code = Some(frame.map_or(1005, |f| f.code.0));
                            self.phase = Phase::Closed;
                            let _ = self.flush();
                            return Err(Failure::Closed);
                        }
                        Event::Error(_) => {
                            self.phase = Phase::Closed;
                            let _ = self.flush();
                            return Err(Failure::Protocol);
                        }
                    }
                    pos += consumed;
                }
            }
        }
    }
}
