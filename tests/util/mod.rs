//! Helpers shared by the integration tests: a driver that follows the proto buffer
//! contract the way a reactor does, owned copies of events, and a frame builder.
#![allow(dead_code)]

use wsreactor::proto::frame::{FrameHeader, OpCode};
use wsreactor::proto::mask::apply_mask_plain;
use wsreactor::proto::{Connection, Decoded, Event, Limits, Message};

/// An event, copied out of the buffer it borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Error(u16),
    /// A compressed message: text or not, and its deflate payload.
    Compressed(bool, Vec<u8>),
}

impl Ev {
    pub fn from_event(event: &Event<'_>) -> Ev {
        match event {
            Event::Message(Message::Text(t)) => Ev::Text(t.to_string()),
            Event::Message(Message::Binary(b)) => Ev::Binary(b.to_vec()),
            Event::Ping(p) => Ev::Ping(p.to_vec()),
            Event::Pong(p) => Ev::Pong(p.to_vec()),
            Event::Close(f) => Ev::Close(f.map(|f| (f.code.0, f.reason.to_string()))),
            Event::Error(e) => Ev::Error(e.code.0),
            Event::Compressed(c) => Ev::Compressed(c.text, c.payload.to_vec()),
        }
    }
}

/// Drives a [`Connection`] over one growable input buffer, as a reactor would.
pub struct Driver {
    pub conn: Connection,
    pub limits: Limits,
    /// Bytes received and not consumed.
    pub input: Vec<u8>,
    /// Everything the connection wrote back.
    pub out: Vec<u8>,
    pub events: Vec<Ev>,
}

impl Driver {
    pub fn new(conn: Connection) -> Driver {
        Driver::with_limits(conn, Limits::default())
    }

    pub fn with_limits(conn: Connection, limits: Limits) -> Driver {
        Driver {
            conn,
            limits,
            input: Vec::new(),
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Feeds bytes as one read, and processes everything it completes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
        loop {
            match self
                .conn
                .decode(&mut self.input, &mut self.out, &self.limits)
            {
                Decoded::Event { consumed, event } => {
                    self.events.push(Ev::from_event(&event));
                    self.input.drain(..consumed);
                }
                Decoded::NeedMore { keep } => {
                    self.input.truncate(keep.end);
                    self.input.drain(..keep.start);
                    break;
                }
            }
        }
    }

    /// Feeds `bytes` cut at the given split points (each read is a separate feed).
    pub fn feed_split(&mut self, bytes: &[u8], splits: &[usize]) {
        let mut cuts: Vec<usize> = splits.iter().map(|&s| s.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut from = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            self.feed(&bytes[from..cut]);
            from = cut;
        }
    }
}

/// Events from feeding `bytes` to a fresh server connection in one read.
pub fn server_events(bytes: &[u8]) -> Vec<Ev> {
    let mut d = Driver::new(Connection::server());
    d.feed(bytes);
    d.events
}

/// A frame as a client sends it: masked with `key`, payload copied and masked.
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    frame(opcode, fin, payload, Some(key))
}

/// A frame as a server sends it: unmasked.
pub fn server_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    frame(opcode, fin, payload, None)
}

pub fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    let mut bytes = header.encode().as_bytes().to_vec();
    let at = bytes.len();
    bytes.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask_plain(&mut bytes[at..], key, 0);
    }
    bytes
}

/// Parses the frames a connection wrote to `out` (unmasking client frames), as
/// (opcode, fin, payload) triples.
pub fn parse_frames(mut out: &[u8]) -> Vec<(OpCode, bool, Vec<u8>)> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        let (h, n) = match wsreactor::proto::frame::FrameHeader::parse(
            out,
            if out[1] & 0x80 != 0 {
                wsreactor::proto::Role::Server
            } else {
                wsreactor::proto::Role::Client
            },
            0,
        ) {
            Ok(Some(x)) => x,
            other => panic!("bad frame in output: {other:?}"),
        };
        let len = h.payload_len as usize;
        let mut payload = out[n..n + len].to_vec();
        if let Some(key) = h.mask {
            apply_mask_plain(&mut payload, key, 0);
        }
        frames.push((h.opcode, h.fin, payload));
        out = &out[n + len..];
    }
    frames
}

/// The close code of the single close frame a connection wrote, if any.
pub fn close_code_sent(out: &[u8]) -> Option<u16> {
    parse_frames(out)
        .into_iter()
        .find(|(op, _, _)| *op == OpCode::Close)
        .map(|(_, _, p)| {
            if p.len() >= 2 {
                u16::from_be_bytes([p[0], p[1]])
            } else {
                1005
            }
        })
}
