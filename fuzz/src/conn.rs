//! `conn_server` and `conn_client`: the whole sans-IO state machine, `Connection`, fed a
//! stream in reads of fuzz-chosen sizes under fuzz-chosen limits, with sends in between,
//! and compared read by read with a plain reference model of RFC 6455.
//!
//! Input: a 9-byte configuration, then the stream.
//!
//! | byte | meaning |
//! |------|---------|
//! | 0, 1 | `max_frame_size`, `max_message_size`: an index into [`SIZES`] (low 4 bits) |
//! | 2    | `allowed_rsv` (low 3 bits); bit 3: permessage-deflate negotiated (without context takeover) |
//! | 3–6  | read sizes, used in turn; 0 reads all the rest |
//! | 7, 8 | sends: the high nibble picks one (see [`send`]), the low nibble the read it goes before (past the last read: after it) |
//!
//! With permessage-deflate, RSV1 is legal on the first frame of a data message only, and a
//! compressed message is reported as such (its text is checked once inflated). The driver
//! inflates it as the reactor does and checks the result: within the limit, valid UTF-8 for
//! text, and the same bytes as miniz_oxide's inflate (another implementation) whenever both
//! accept the stream.
//!
//! The driver follows the buffer contract exactly as the reactor does
//! (`src/reactor/read.rs`): after an event it drops `consumed` bytes; on `NeedMore` it keeps
//! only `buf[keep]`, copied into a fresh buffer so that nothing outside `keep` survives.

use wsreactor::proto::deflate::{Inflater, PerMessageDeflate};
use wsreactor::proto::frame::{OpCode, Role};
use wsreactor::proto::{CloseCode, Connection, Decoded, Event, Limits, Message, SendError};

use crate::reference::{self, is_sendable_code, is_utf8_prefix, parse_header, unmask};

/// Bytes of configuration before the stream.
pub const CONFIG_LEN: usize = 9;

/// The sizes the limits are chosen from: around every length-form boundary, small enough to
/// hit often, and the defaults and the 32-bit cap.
pub const SIZES: [usize; 16] = [
    0,
    1,
    2,
    3,
    7,
    64,
    125,
    126,
    127,
    200,
    0xffff,
    0x1_0000,
    1 << 20,
    16 << 20,
    u32::MAX as usize,
    usize::MAX,
];

/// Configuration byte 2: permessage-deflate negotiated.
const DEFLATE: u8 = 8;

/// The most a compressed message may inflate to here, whatever the message limit, so
/// that a bomb costs the fuzzer no more than this.
const MAX_INFLATE: usize = 1 << 20;

/// Both directions without context: one inflater serves every message, as the reactor's
/// shared one does.
const NO_CONTEXT: PerMessageDeflate = PerMessageDeflate {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: 15,
    client_max_window_bits: 15,
};

/// The largest close reason, so that a close frame stays a control frame.
const MAX_REASON_LEN: usize = 123;

pub fn conn_server(data: &[u8]) {
    run(data, false);
}

pub fn conn_client(data: &[u8]) {
    run(data, true);
}

/// An event, owned, so the connection's and the model's can be compared.
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

/// A frame the connection must have written: opcode, fin and payload; a close frame that
/// fails the connection is known by its code only (its reason is free text for logs).
#[derive(Clone, Debug)]
enum Written {
    Frame(u8, bool, Vec<u8>),
    FailClose(u16),
}

fn run(data: &[u8], client: bool) {
    let Some((config, stream)) = data.split_first_chunk::<CONFIG_LEN>() else {
        return;
    };
    let mut limits = Limits::new(
        SIZES[usize::from(config[0] & 15)],
        SIZES[usize::from(config[1] & 15)],
    );
    limits.allowed_rsv = config[2] & 7;
    let reads = [config[3], config[4], config[5], config[6]];
    let sends = [config[7], config[8]];
    let mut conn = if client {
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&config[1..]);
        Connection::client(u64::from_le_bytes(seed))
    } else {
        Connection::server()
    };
    let deflate = config[2] & DEFLATE != 0;
    if deflate {
        conn.set_deflate(Some(NO_CONTEXT));
    }
    let role = if client { Role::Client } else { Role::Server };
    let mut driver = Driver {
        conn,
        limits,
        input: Vec::new(),
        out: Vec::new(),
        inflater: deflate.then(|| Inflater::new(NO_CONTEXT.decompressor(role))),
        inflated: Vec::new(),
    };
    let mut model = Model {
        client,
        deflate,
        limits,
        raw: Vec::new(),
        message: None,
        held: Vec::new(),
        tail: 0,
        sent_close: false,
        closed: false,
        written: Vec::new(),
    };

    let (mut at, mut read) = (0, 0);
    while at < stream.len() {
        let size = match reads[read % 4] {
            0 => stream.len() - at,
            n => usize::from(n).min(stream.len() - at),
        };
        let chunk = &stream[at..at + size];
        for &s in &sends {
            if usize::from(s & 15) == read {
                send(s >> 4, chunk, &mut driver, &mut model);
            }
        }
        let events = driver.feed(chunk);
        let expected = model.feed(chunk);
        assert_eq!(
            events, expected,
            "events of read {read} ({size} bytes at {at})"
        );
        if !driver.conn.is_closed() {
            // What is kept is the message so far, unmasked and in one piece, then at most
            // one partial header or control frame: nothing else, and nothing more.
            let held = driver.conn.held();
            assert_eq!(&driver.input[..held], &model.held[..], "held payload");
            assert_eq!(driver.input.len(), held + model.tail, "bytes kept");
        }
        at += size;
        read += 1;
    }
    for &s in &sends {
        if usize::from(s & 15) >= read {
            send(s >> 4, stream, &mut driver, &mut model);
        }
    }

    let written = reference::parse_output(&driver.out, client);
    assert_eq!(
        written.len(),
        model.written.len(),
        "frames written: {written:02x?}, expected {:02x?}",
        model.written
    );
    for (frame, expected) in written.iter().zip(&model.written) {
        match expected {
            Written::Frame(opcode, fin, payload) => {
                assert_eq!(frame, &(*opcode, *fin, payload.clone()))
            }
            Written::FailClose(code) => {
                let (opcode, _fin, payload) = frame;
                assert_eq!(*opcode, 8, "a failure writes a close frame");
                assert_eq!(payload.get(..2), Some(&code.to_be_bytes()[..]));
                assert!(payload.len() <= 2 + MAX_REASON_LEN);
                assert!(std::str::from_utf8(&payload[2..]).is_ok());
            }
        }
    }
}

/// Drives a `Connection` as the reactor does.
struct Driver {
    conn: Connection,
    limits: Limits,
    /// Bytes received and not consumed.
    input: Vec<u8>,
    /// Everything the connection wrote.
    out: Vec<u8>,
    inflater: Option<Inflater>,
    inflated: Vec<u8>,
}

impl Driver {
    /// Inflates a compressed message as the reactor does, and checks the result.
    fn inflate(&mut self, text: bool, payload: &[u8]) {
        let Some(inflater) = self.inflater.as_mut() else {
            panic!("a compressed message without deflate negotiated");
        };
        let limit = self.limits.max_message_size.min(MAX_INFLATE);
        let ours = inflater
            .inflate(payload, text, limit, &mut self.inflated)
            .map(|m| m.as_bytes().to_vec());
        assert!(
            self.inflated.capacity() <= limit + 1 + 4096 + limit.max(4096),
            "inflate buffer of {} for a limit of {limit}",
            self.inflated.capacity()
        );
        let Ok(ours) = ours else {
            return;
        };
        assert!(ours.len() <= limit);
        if text {
            assert!(std::str::from_utf8(&ours).is_ok());
        }
        let input = [payload, &[0, 0, 0xff, 0xff]].concat();
        let reference = miniz_inflate(&input, limit);
        if let Some(reference) = reference {
            assert_eq!(ours, reference, "inflated bytes differ from miniz_oxide's");
        }
    }
    /// One read: decodes until `NeedMore`, checking every output on the way.
    fn feed(&mut self, bytes: &[u8]) -> Vec<Ev> {
        self.input.extend_from_slice(bytes);
        let mut events = Vec::new();
        // Every event takes a frame of at least two bytes, so this many calls is plenty;
        // more means the state machine is going round in circles.
        let max_calls = self.input.len() / 2 + 2;
        for _ in 0..max_calls {
            let was_closed = self.conn.is_closed();
            let len = self.input.len();
            match self
                .conn
                .decode(&mut self.input, &mut self.out, &self.limits)
            {
                Decoded::Event { consumed, event } => {
                    assert!(
                        !was_closed,
                        "an event after the connection closed: {event:?}"
                    );
                    assert!(consumed <= len, "consumed {consumed} of {len} bytes");
                    let ev = own(&event, &self.limits);
                    if let Ev::Compressed(text, payload) = &ev {
                        self.inflate(*text, payload);
                    }
                    let ends = matches!(ev, Ev::Close(_) | Ev::Error(_));
                    assert_eq!(self.conn.is_closed(), ends, "closed after {ev:?}");
                    assert!(!(ends && self.conn.can_send()), "can send after {ev:?}");
                    events.push(ev);
                    self.input.drain(..consumed);
                }
                Decoded::NeedMore { keep } => {
                    assert!(
                        keep.start <= keep.end && keep.end <= len,
                        "keep {keep:?} of {len}"
                    );
                    if was_closed {
                        assert_eq!(keep, 0..0, "a closed connection keeps nothing");
                    }
                    self.input = self.input[keep].to_vec();
                    return events;
                }
            }
        }
        panic!("no NeedMore after {max_calls} calls to decode");
    }
}

/// miniz_oxide's raw inflate of a whole message (the sync-flush tail appended), or
/// `None` where it refuses the stream or passes `limit`.
fn miniz_inflate(mut input: &[u8], limit: usize) -> Option<Vec<u8>> {
    use miniz_oxide::inflate::stream::{InflateState, inflate};
    use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        let r = inflate(&mut state, input, &mut chunk, MZFlush::Sync);
        out.extend_from_slice(&chunk[..r.bytes_written]);
        input = &input[r.bytes_consumed..];
        if out.len() > limit {
            return None;
        }
        match r.status {
            Ok(MZStatus::StreamEnd) => return Some(out),
            Ok(_) if input.is_empty() && r.bytes_written < chunk.len() => return Some(out),
            Ok(_) if r.bytes_consumed == 0 && r.bytes_written == 0 => return None,
            Ok(_) => {}
            // No progress possible: all the input is in, and all its output out.
            Err(MZError::Buf) if input.is_empty() => return Some(out),
            Err(_) => return None,
        }
    }
}

/// Copies an event out of the buffer, checking what it promises on the way.
fn own(event: &Event<'_>, limits: &Limits) -> Ev {
    let max_message = limits.max_message_size.min(u32::MAX as usize);
    match event {
        Event::Message(message) => {
            assert!(
                message.len() <= max_message,
                "message of {} bytes",
                message.len()
            );
            match message {
                Message::Text(text) => {
                    assert!(std::str::from_utf8(text.as_bytes()).is_ok());
                    Ev::Text(text.to_string())
                }
                Message::Binary(bytes) => Ev::Binary(bytes.to_vec()),
            }
        }
        Event::Ping(payload) | Event::Pong(payload) => {
            assert!(payload.len() <= 125);
            match event {
                Event::Ping(_) => Ev::Ping(payload.to_vec()),
                _ => Ev::Pong(payload.to_vec()),
            }
        }
        Event::Close(frame) => Ev::Close(frame.map(|f| {
            assert!(is_sendable_code(f.code.0) && f.reason.len() <= MAX_REASON_LEN);
            (f.code.0, f.reason.to_string())
        })),
        Event::Compressed(c) => {
            assert!(c.payload.len() <= max_message);
            Ev::Compressed(c.text, c.payload.to_vec())
        }
        Event::Error(error) => {
            assert!(
                matches!(error.code.0, 1002 | 1007 | 1008 | 1009),
                "protocol error with close code {}",
                error.code
            );
            Ev::Error(error.code.0)
        }
    }
}

/// RFC 6455 read naively: the whole unprocessed stream is parsed again after every read,
/// and a frame is handled only once all of it has arrived.
struct Model {
    client: bool,
    /// permessage-deflate negotiated: RSV1 marks a compressed message.
    deflate: bool,
    limits: Limits,
    /// Received bytes from the first frame not yet complete.
    raw: Vec<u8>,
    /// The fragmented message in progress: whether it is text, whether it is
    /// compressed, and its payload so far.
    message: Option<(bool, bool, Vec<u8>)>,
    /// After a read: the payload the connection holds (the message so far and the part of
    /// the current data frame that has arrived), and the bytes of an incomplete header or
    /// control frame after it.
    held: Vec<u8>,
    tail: usize,
    sent_close: bool,
    closed: bool,
    /// Every frame the connection must have written, in order.
    written: Vec<Written>,
}

impl Model {
    fn open(&self) -> bool {
        !self.sent_close && !self.closed
    }

    fn feed(&mut self, bytes: &[u8]) -> Vec<Ev> {
        let mut events = Vec::new();
        if self.closed {
            return events;
        }
        self.raw.extend_from_slice(bytes);
        let mut pos = 0;
        let (max_frame, max_message) = (
            self.limits.max_frame_size.min(u32::MAX as usize) as u64,
            self.limits.max_message_size.min(u32::MAX as usize) as u64,
        );
        loop {
            let so_far = self.message.as_ref().map_or(&[][..], |(_, _, m)| &m[..]);
            self.held = so_far.to_vec();
            self.tail = self.raw.len() - pos;
            let allowed = self.limits.allowed_rsv | if self.deflate { 4 } else { 0 };
            let h = match parse_header(&self.raw[pos..], !self.client, allowed) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => return self.fail(1002, events),
            };
            // RSV1 under permessage-deflate: on the first frame of a data message only.
            let rsv1 = self.deflate && h.rsv & 4 != 0;
            if rsv1 && (h.opcode >= 8 || h.opcode == 0) {
                return self.fail(1002, events);
            }
            let start = pos + h.len;
            let arrived = &self.raw[start..];
            if h.opcode >= 8 {
                let len = h.payload_len as usize;
                if arrived.len() < len {
                    break;
                }
                let payload = unmask(&arrived[..len], h.mask, 0);
                pos = start + len;
                match h.opcode {
                    9 => {
                        if self.open() {
                            self.written.push(Written::Frame(10, true, payload.clone()));
                        }
                        events.push(Ev::Ping(payload));
                    }
                    10 => events.push(Ev::Pong(payload)),
                    _ => {
                        let frame = match payload[..] {
                            [] => None,
                            [_] => return self.fail(1002, events),
                            [hi, lo, ref reason @ ..] => {
                                let code = u16::from_be_bytes([hi, lo]);
                                if !is_sendable_code(code) {
                                    return self.fail(1002, events);
                                }
                                match String::from_utf8(reason.to_vec()) {
                                    Ok(reason) => Some((code, reason)),
                                    Err(_) => return self.fail(1007, events),
                                }
                            }
                        };
                        if self.open() {
                            let echo = frame
                                .as_ref()
                                .map_or(Vec::new(), |(c, _)| c.to_be_bytes().to_vec());
                            self.written.push(Written::Frame(8, true, echo));
                        }
                        events.push(Ev::Close(frame));
                        self.closed = true;
                        return events;
                    }
                }
                continue;
            }

            // A data frame: it must continue a message exactly when one is in progress,
            // and fit the limits, before any of its payload is read.
            let continuation = h.opcode == 0;
            if continuation != self.message.is_some() {
                return self.fail(1002, events);
            }
            let (text, compressed) = self
                .message
                .as_ref()
                .map_or((h.opcode == 1, rsv1), |(text, compressed, _)| {
                    (*text, *compressed)
                });
            if h.payload_len > max_frame || so_far.len() as u64 + h.payload_len > max_message {
                return self.fail(1009, events);
            }
            let len = h.payload_len as usize;
            let mut payload = so_far.to_vec();
            payload.extend(unmask(&arrived[..len.min(arrived.len())], h.mask, 0));
            // Text fails as soon as what has arrived cannot begin valid UTF-8 (compressed
            // text once it is inflated).
            if text && !compressed && !is_utf8_prefix(&payload) {
                return self.fail(1007, events);
            }
            if arrived.len() < len {
                self.held = payload;
                self.tail = 0;
                break;
            }
            pos = start + len;
            if !h.fin {
                self.message = Some((text, compressed, payload));
                continue;
            }
            self.message = None;
            if compressed {
                events.push(Ev::Compressed(text, payload));
            } else if text {
                match String::from_utf8(payload) {
                    Ok(text) => events.push(Ev::Text(text)),
                    Err(_) => return self.fail(1007, events),
                }
            } else {
                events.push(Ev::Binary(payload));
            }
        }
        self.raw.drain(..pos);
        events
    }

    fn fail(&mut self, code: u16, mut events: Vec<Ev>) -> Vec<Ev> {
        if self.open() {
            self.written.push(Written::FailClose(code));
        }
        events.push(Ev::Error(code));
        self.closed = true;
        events
    }
}

/// One send between reads, with a payload taken from the stream; the result must be what
/// the docs promise for the connection's state, and the frame must be in the output.
fn send(kind: u8, payload: &[u8], driver: &mut Driver, model: &mut Model) {
    let payload = &payload[..payload.len().min(300)];
    let open = model.open();
    assert_eq!(driver.conn.can_send(), open);
    let out = &mut driver.out;
    let conn = &mut driver.conn;
    let control_ok = |len: usize| match (open, len <= 125) {
        (false, _) => Err(SendError::Closed),
        (true, false) => Err(SendError::ControlTooLong),
        (true, true) => Ok(()),
    };
    let data_ok = if open { Ok(()) } else { Err(SendError::Closed) };
    let mut expect =
        |result: Result<(), SendError>, expected: Result<(), SendError>, frames: &[Written]| {
            assert_eq!(result, expected, "send {kind}");
            if result.is_ok() {
                model.written.extend_from_slice(frames);
            }
        };
    match kind {
        1 => {
            let text = String::from_utf8_lossy(payload);
            let r = conn.write_message(out, Message::Text(&text));
            expect(
                r,
                data_ok,
                &[Written::Frame(1, true, text.as_bytes().to_vec())],
            );
        }
        2 => {
            let r = conn.write_message(out, Message::Binary(payload));
            expect(r, data_ok, &[Written::Frame(2, true, payload.to_vec())]);
        }
        3 => {
            let r = conn.ping(out, payload);
            expect(
                r,
                control_ok(payload.len()),
                &[Written::Frame(9, true, payload.to_vec())],
            );
        }
        4 => {
            let r = conn.write_frame(out, OpCode::Pong, true, payload);
            expect(
                r,
                control_ok(payload.len()),
                &[Written::Frame(10, true, payload.to_vec())],
            );
        }
        5 | 6 => {
            let (code, reason) = match (kind, payload) {
                (5, [hi, lo, reason @ ..]) => (
                    u16::from_be_bytes([*hi, *lo]),
                    String::from_utf8_lossy(reason),
                ),
                _ => (1000, "".into()),
            };
            let r = conn.close(out, CloseCode(code), &reason);
            let mut end = reason.len().min(MAX_REASON_LEN);
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            let (expected, frame) = match code {
                _ if !open => (Err(SendError::Closed), Vec::new()),
                1005 => (Ok(()), Vec::new()),
                c if is_sendable_code(c) => (
                    Ok(()),
                    [&c.to_be_bytes()[..], &reason.as_bytes()[..end]].concat(),
                ),
                _ => (Err(SendError::InvalidCloseCode), Vec::new()),
            };
            expect(r, expected, &[Written::Frame(8, true, frame)]);
            if r.is_ok() {
                model.sent_close = true;
            }
        }
        7 => {
            let (a, b) = payload.split_at(payload.len() / 2);
            let first = conn.write_frame(out, OpCode::Binary, false, a);
            expect(first, data_ok, &[Written::Frame(2, false, a.to_vec())]);
            let last = conn.write_frame(out, OpCode::Continuation, true, b);
            expect(last, data_ok, &[Written::Frame(0, true, b.to_vec())]);
        }
        8 => {
            // Close frames go through `close` only.
            let r = conn.write_frame(out, OpCode::Close, true, &[]);
            expect(r, Err(SendError::Closed), &[]);
            let r = conn.write_frame(out, OpCode::Ping, false, &[]);
            expect(r, control_ok(126), &[]);
        }
        9 => match conn.frame_header(OpCode::Text, true, payload.len()) {
            Ok((header, mask)) => {
                assert!(open);
                assert_eq!(mask, header.mask);
                assert_eq!(mask.is_some(), model.client, "only clients mask");
                assert_eq!(
                    (header.payload_len, header.fin, header.opcode),
                    (payload.len() as u64, true, OpCode::Text)
                );
            }
            Err(e) => assert_eq!((open, e), (false, SendError::Closed)),
        },
        _ => {}
    }
}
