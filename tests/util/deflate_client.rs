//! A blocking test client on proto's client role with permessage-deflate: offers
//! it, sends compressed or plain messages (or raw frames), and reports whether
//! each message it receives came compressed.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use wsreactor::proto::deflate::{ClientDeflate, Deflater, Inflater, PerMessageDeflate};
use wsreactor::proto::frame::{FrameHeader, OpCode, RSV1, Role};
use wsreactor::proto::handshake::{self, EMPTY_HEADER};
use wsreactor::proto::{Connection, Decoded, Event, Limits, Message};

use super::server::PATIENCE;

/// What arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    /// A message: its bytes, whether text, whether it came compressed.
    Message(Vec<u8>, bool, bool),
    Ping(Vec<u8>),
    Close(Option<u16>),
    /// The server closed the TCP connection (or the read timed out).
    End,
}

pub struct DeflateClient {
    pub stream: TcpStream,
    pub conn: Connection,
    pub deflate: Option<PerMessageDeflate>,
    /// The `Sec-WebSocket-Extensions` value of the 101, if any.
    pub extensions: Option<String>,
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
    input: Vec<u8>,
    inflated: Vec<u8>,
    /// The payload of the last pong received.
    pong: Option<Vec<u8>>,
}

impl DeflateClient {
    /// Connects to `addr` offering `offer` (raw extension header text; `None`: no offer).
    pub fn connect(addr: SocketAddr, offer: Option<&str>) -> DeflateClient {
        DeflateClient::connect_to(addr, "/", offer)
    }

    /// As [`connect`](Self::connect), at `path`.
    pub fn connect_to(addr: SocketAddr, path: &str, offer: Option<&str>) -> DeflateClient {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let key = handshake::encode_key([7; 16]);
        let mut request = Vec::new();
        let extra: Vec<(&str, &str)> = offer
            .map(|o| vec![("Sec-WebSocket-Extensions", o)])
            .unwrap_or_default();
        handshake::write_request(&mut request, "localhost", path, &key, &[], &extra);
        stream.write_all(&request).unwrap();
        let mut input = Vec::new();
        let mut chunk = [0u8; 4096];
        let (deflate, extensions, consumed) = loop {
            let n = stream.read(&mut chunk).expect("read the 101");
            assert!(n > 0, "closed during the handshake");
            input.extend_from_slice(&chunk[..n]);
            let mut headers = [EMPTY_HEADER; 32];
            // Accept any answer here: the tests check it themselves.
            let client = ClientDeflate::default();
            let parsed = handshake::parse_response_with_deflate(
                &input,
                &mut headers,
                &key,
                &[],
                offer.map(|_| &client),
            );
            match parsed {
                Ok(None) => continue,
                Ok(Some((response, consumed))) => {
                    let extensions = response
                        .header("sec-websocket-extensions")
                        .map(|v| String::from_utf8_lossy(v).into_owned());
                    break (response.deflate(), extensions, consumed);
                }
                Err(e) => panic!("handshake: {e}"),
            }
        };
        input.drain(..consumed);
        let mut conn = Connection::client(0x1234_5678_9abc);
        conn.set_deflate(deflate);
        DeflateClient {
            stream,
            conn,
            deflate,
            extensions,
            deflater: deflate.map(|d| Deflater::new(d.compressor(Role::Client), 6)),
            inflater: deflate.map(|d| Inflater::new(d.decompressor(Role::Client))),
            input,
            inflated: Vec::new(),
            pong: None,
        }
    }

    /// Sends a message, compressed if `compress` (and negotiated).
    pub fn send(&mut self, message: Message<'_>, compress: bool) {
        let mut out = Vec::new();
        match (&mut self.deflater, compress) {
            (Some(deflater), true) => {
                let mut payload = Vec::new();
                assert!(deflater.compress(message.as_bytes(), &mut payload));
                self.conn
                    .write_compressed(&mut out, message.is_text(), &payload)
                    .unwrap();
            }
            _ => self.conn.write_message(&mut out, message).unwrap(),
        }
        self.stream.write_all(&out).unwrap();
    }

    /// Sends a frame built by hand (masked here), with the RSV bits `rsv`.
    pub fn send_raw(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: &[u8]) {
        let key = [1, 2, 3, 4];
        let mut header = FrameHeader::outgoing(opcode, fin, payload.len(), Some(key));
        header.rsv = rsv;
        let mut frame = header.encode().as_bytes().to_vec();
        let start = frame.len();
        frame.extend_from_slice(payload);
        wsreactor::proto::mask::apply_mask_plain(&mut frame[start..], key, 0);
        let _ = self.stream.write_all(&frame);
    }

    /// The compressed payload of `bytes`, made with a fresh context-free compressor.
    pub fn deflated(bytes: &[u8]) -> Vec<u8> {
        let direction = wsreactor::proto::deflate::Direction {
            window_bits: 15,
            context_takeover: false,
        };
        let mut out = Vec::new();
        assert!(Deflater::new(direction, 9).compress(bytes, &mut out));
        out
    }

    /// The next message, ping, close or the end (pongs are passed over).
    pub fn recv(&mut self) -> Got {
        loop {
            if let Some(got) = self.next_event() {
                return got;
            }
        }
    }

    /// Sends a ping carrying `payload` and returns what arrives before its pong:
    /// the server queues the pong behind what it had queued already, so this is
    /// everything the server had for us when it read the ping. A stream that ends
    /// first ends the list with [`Got::End`].
    pub fn before_pong(&mut self, payload: &[u8]) -> Vec<Got> {
        self.pong = None;
        self.send_raw(OpCode::Ping, true, 0, payload);
        let mut before = Vec::new();
        loop {
            match self.next_event() {
                None if self.pong.as_deref() == Some(payload) => return before,
                None => {}
                Some(Got::End) => {
                    before.push(Got::End);
                    return before;
                }
                Some(got) => before.push(got),
            }
        }
    }

    /// The next event: `None` for a pong (its payload kept in `self.pong`).
    fn next_event(&mut self) -> Option<Got> {
        let limits = Limits::default();
        loop {
            let mut out = Vec::new();
            let decoded = self.conn.decode(&mut self.input, &mut out, &limits);
            if !out.is_empty() {
                let _ = self.stream.write_all(&out);
            }
            match decoded {
                Decoded::Event { consumed, event } => {
                    let got = match event {
                        Event::Message(m) => {
                            Some(Got::Message(m.as_bytes().to_vec(), m.is_text(), false))
                        }
                        Event::Compressed(c) => {
                            let inflater = self.inflater.as_mut().expect("negotiated");
                            match inflater.inflate(c.payload, c.text, 1 << 30, &mut self.inflated) {
                                Ok(m) => {
                                    Some(Got::Message(m.as_bytes().to_vec(), m.is_text(), true))
                                }
                                Err(e) => panic!("the server's compressed message: {e}"),
                            }
                        }
                        Event::Ping(p) => Some(Got::Ping(p.to_vec())),
                        Event::Pong(p) => {
                            self.pong = Some(p.to_vec());
                            None
                        }
                        Event::Close(f) => Some(Got::Close(f.map(|f| f.code.0))),
                        Event::Error(e) => panic!("the server broke the protocol: {e}"),
                    };
                    self.input.drain(..consumed);
                    return got;
                }
                Decoded::NeedMore { keep } => {
                    let kept = self.input[keep].to_vec();
                    self.input = kept;
                    let mut chunk = [0u8; 65536];
                    match self.stream.read(&mut chunk) {
                        Ok(0) | Err(_) => return Some(Got::End),
                        Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        }
    }

    /// The next message as (text, compressed); panics on anything else.
    pub fn recv_text(&mut self) -> (String, bool) {
        match self.recv() {
            Got::Message(bytes, true, compressed) => {
                (String::from_utf8(bytes).unwrap(), compressed)
            }
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Reads until the close frame; returns its code.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.recv() {
                Got::Close(code) => return code,
                Got::End => return None,
                _ => {}
            }
        }
    }
}

/// RSV1, for raw frames.
pub const COMPRESSED: u8 = RSV1;
