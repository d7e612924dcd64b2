//! The read side: one input buffer, decoded in place by proto, events handed out as
//! borrows of it; and the end of a connection, done the way RFC 6455 §7 asks.

use std::io::{self, Read};
use std::net::TcpStream;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::Incoming;
use super::error::{Error, Phase, Result};
use super::write::{Shared, lock};
use crate::proto::deflate::{Inflater, PerMessageDeflate};
use crate::proto::frame::Role;
use crate::proto::{CloseCode, CloseFrame, Decoded, Event, Limits, Message};

/// The input buffer's first size; it doubles while a large message arrives.
const INITIAL_INPUT: usize = 16 * 1024;
/// An idle input buffer larger than this goes back to the first size.
const KEEP_INPUT: usize = 1 << 20;

/// Bytes `start..end` of `bytes` are received and not yet consumed. `bytes` stays
/// initialized to its full length, so reads need no zeroing.
pub(crate) struct Input {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl Input {
    pub(crate) fn new() -> Input {
        Input {
            bytes: vec![0; INITIAL_INPUT],
            start: 0,
            end: 0,
        }
    }

    /// The received bytes not yet consumed.
    pub(crate) fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    /// Drops the first `n` unconsumed bytes (the handshake's response head).
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Keeps exactly the unconsumed bytes `keep` (relative to `start`), moved to the
    /// front: proto's buffer contract for `Decoded::NeedMore`.
    fn keep(&mut self, keep: Range<usize>) {
        let (from, to) = (self.start + keep.start, self.start + keep.end);
        if from == to && self.bytes.len() > KEEP_INPUT {
            self.bytes = vec![0; INITIAL_INPUT];
        } else {
            self.bytes.copy_within(from..to, 0);
        }
        self.start = 0;
        self.end = to - from;
    }

    /// The free space after the unconsumed bytes, made at least a little: the
    /// consumed prefix is dropped, and a full buffer doubles.
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.bytes.len() {
            let doubled = self.bytes.len() * 2;
            self.bytes.resize(doubled, 0);
        }
        &mut self.bytes[self.end..]
    }

    /// Counts `n` bytes written into [`spare`](Self::spare) as received.
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
    }
}

/// An event located in the input buffer, so that it can be handed out after the loop
/// that reads and decodes (the borrow checker cannot return a borrow from one turn of
/// a loop that mutates the buffer in another).
enum Ready {
    Text(Range<usize>),
    Binary(Range<usize>),
    Ping(Range<usize>),
    Pong(Range<usize>),
    Close(Option<(CloseCode, Range<usize>)>),
    /// A compressed message, inflated into the reader's `Inflate::out`: text or not.
    Inflated(bool),
}

/// permessage-deflate on the read side: the decompressor, made on the first
/// compressed message, and where messages are inflated.
struct Inflate {
    agreed: PerMessageDeflate,
    inflater: Option<Inflater>,
    out: Vec<u8>,
}

pub(crate) struct Reader {
    stream: TcpStream,
    input: Input,
    inflate: Option<Box<Inflate>>,
    /// TLS records as read from the socket (empty without TLS).
    #[cfg(feature = "tls")]
    raw: Vec<u8>,
    /// rustls has seen the end of the TLS stream.
    #[cfg(feature = "tls")]
    tls_ended: bool,
    limits: Limits,
    read_timeout: Option<Duration>,
    /// The socket's read timeout as last set, so it is set only when it changes.
    socket_timeout: Option<Duration>,
    /// The connection is over: every `recv` fails with [`Error::Closed`].
    ended: bool,
}

impl Reader {
    pub(crate) fn new(
        stream: TcpStream,
        input: Input,
        deflate: Option<PerMessageDeflate>,
        limits: Limits,
        read_timeout: Option<Duration>,
        #[cfg(feature = "tls")] tls: bool,
    ) -> Reader {
        Reader {
            stream,
            input,
            inflate: deflate.map(|agreed| {
                Box::new(Inflate {
                    agreed,
                    inflater: None,
                    out: Vec::new(),
                })
            }),
            #[cfg(feature = "tls")]
            raw: if tls { vec![0; 18 * 1024] } else { Vec::new() },
            #[cfg(feature = "tls")]
            tls_ended: false,
            limits,
            read_timeout,
            socket_timeout: read_timeout,
            ended: false,
        }
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next event; see [`Client::recv`](super::Client::recv).
    pub(crate) fn recv(&mut self, shared: &Shared) -> Result<Incoming<'_>> {
        if self.ended {
            return Err(Error::Closed);
        }
        let ready = loop {
            let mut state = lock(&shared.state);
            let base = self.input.bytes.as_ptr() as usize;
            let buf = &mut self.input.bytes[self.input.start..self.input.end];
            let decoded = match state.decode(buf, &self.limits) {
                Ok(decoded) => decoded,
                Err(e) => {
                    drop(state);
                    return Err(self.end(shared, e));
                }
            };
            // Where a slice of the event lies in `input.bytes`.
            let at = |part: &[u8]| {
                let from = part.as_ptr() as usize - base;
                from..from + part.len()
            };
            match decoded {
                Decoded::NeedMore { keep } => {
                    drop(state);
                    self.input.keep(keep);
                    self.fill(shared)?;
                }
                Decoded::Event { consumed, event } => {
                    self.input.start += consumed;
                    let ready = match event {
                        Event::Message(Message::Text(text)) => Ready::Text(at(text.as_bytes())),
                        Event::Message(Message::Binary(data)) => Ready::Binary(at(data)),
                        Event::Ping(payload) => Ready::Ping(at(payload)),
                        Event::Pong(payload) => Ready::Pong(at(payload)),
                        Event::Compressed(compressed) => {
                            let max = self.limits.max_message_size;
                            let inflated = match self.inflate.as_deref_mut() {
                                Some(Inflate {
                                    agreed,
                                    inflater,
                                    out,
                                }) => inflater
                                    .get_or_insert_with(|| {
                                        Inflater::new(agreed.decompressor(Role::Client))
                                    })
                                    .inflate(compressed.payload, compressed.text, max, out)
                                    .map(|_| ()),
                                // proto reports compressed messages only where
                                // deflate was negotiated, which gave us an Inflate.
                                None => Err(crate::proto::deflate::InflateError::Corrupt),
                            };
                            match inflated {
                                Ok(()) => Ready::Inflated(compressed.text),
                                Err(e) => {
                                    let failed = state.queue(|conn, out| {
                                        conn.fail_with(out, e.code(), e.reason())
                                    });
                                    drop(state);
                                    self.finish(shared);
                                    return Err(match failed {
                                        Ok(error) => Error::Protocol(error),
                                        Err(error) => error,
                                    });
                                }
                            }
                        }
                        Event::Close(frame) => {
                            let frame = frame.map(|f| (f.code, at(f.reason.as_bytes())));
                            drop(state);
                            self.finish(shared);
                            break Ready::Close(frame);
                        }
                        Event::Error(e) => {
                            drop(state);
                            self.finish(shared);
                            return Err(Error::Protocol(e));
                        }
                    };
                    // A pong goes out now. If the write fails the send side is broken,
                    // which senders are told; this read goes on to the socket's end.
                    let _ = shared.flush_soon(state);
                    break ready;
                }
            }
        };
        self.incoming(ready)
    }

    /// The event at its place in the buffer. Text is validated again here (simdutf8,
    /// at many GB/s): proto validated it while decoding, but a `&str` cannot be
    /// carried out of the loop in `recv` without `unsafe`.
    fn incoming(&self, ready: Ready) -> Result<Incoming<'_>> {
        let bytes = &self.input.bytes;
        Ok(match ready {
            Ready::Text(at) => match simdutf8::basic::from_utf8(&bytes[at]) {
                Ok(text) => Incoming::Message(Message::Text(text)),
                Err(_) => return Err(Error::Io(io::Error::other("text changed in the buffer"))),
            },
            Ready::Binary(at) => Incoming::Message(Message::Binary(&bytes[at])),
            Ready::Inflated(text) => {
                let out = self.inflate.as_deref().map_or(&[][..], |i| &i.out[..]);
                if !text {
                    Incoming::Message(Message::Binary(out))
                } else {
                    match simdutf8::basic::from_utf8(out) {
                        Ok(text) => Incoming::Message(Message::Text(text)),
                        Err(_) => return Err(Error::Io(io::Error::other("inflated text changed"))),
                    }
                }
            }
            Ready::Ping(at) => Incoming::Ping(&bytes[at]),
            Ready::Pong(at) => Incoming::Pong(&bytes[at]),
            Ready::Close(frame) => Incoming::Close(frame.map(|(code, at)| CloseFrame {
                code,
                reason: std::str::from_utf8(&bytes[at]).unwrap_or_default(),
            })),
        })
    }

    /// Reads until at least one more byte of WebSocket stream has arrived.
    fn fill(&mut self, shared: &Shared) -> Result<()> {
        #[cfg(feature = "tls")]
        if !self.raw.is_empty() {
            return self.fill_tls(shared);
        }
        self.arm(shared)?;
        let read = read_some(&mut self.stream, self.input.spare());
        lock(&shared.state).reader_blocked = false;
        match read {
            Ok(0) => Err(self.eof(shared)),
            Ok(n) => {
                self.input.filled(n);
                Ok(())
            }
            Err(e) => Err(self.read_failed(shared, e)),
        }
    }

    /// As `fill`, through TLS: reads records until they hold some plaintext.
    #[cfg(feature = "tls")]
    fn fill_tls(&mut self, shared: &Shared) -> Result<()> {
        loop {
            // What rustls decrypted earlier and the input could not take (the
            // handshake's last read can leave some) comes first: the socket may have
            // nothing more to say.
            if self.open(shared, 0)? {
                return Ok(());
            }
            if self.tls_ended {
                return Err(self.eof(shared));
            }
            self.arm(shared)?;
            let read = read_some(&mut self.stream, &mut self.raw);
            lock(&shared.state).reader_blocked = false;
            match read {
                Ok(0) => return Err(self.eof(shared)),
                Ok(n) => {
                    if self.open(shared, n)? {
                        return Ok(());
                    }
                }
                Err(e) => return Err(self.read_failed(shared, e)),
            }
        }
    }

    /// With TLS: passes the first `n` bytes of `raw` (TLS records) to rustls, and
    /// moves all the plaintext it holds into the input. Returns whether any arrived.
    #[cfg(feature = "tls")]
    fn open(&mut self, shared: &Shared, n: usize) -> Result<bool> {
        let mut state = lock(&shared.state);
        let Some(tls) = state.tls.as_deref_mut() else {
            return Ok(false);
        };
        let mut records = &self.raw[..n];
        let mut arrived = false;
        let failed = loop {
            // Plaintext first, so rustls' buffer of it never fills.
            match take_plaintext(tls, &mut self.input) {
                Ok((got, ended)) => {
                    arrived |= got;
                    self.tls_ended |= ended;
                }
                Err(e) => break Some(Error::Io(e)),
            }
            if self.tls_ended || records.is_empty() {
                break None;
            }
            if let Err(e) = tls.read_tls(&mut records) {
                break Some(Error::Io(e));
            }
            if let Err(e) = tls.process_new_packets() {
                break Some(Error::Tls(e));
            }
        };
        // An alert for the error, or what rustls sends on its own (a key update).
        state.queue_tls_output();
        let _ = shared.flush_soon(state);
        match failed {
            Some(e) => Err(self.end(shared, e)),
            None => Ok(arrived),
        }
    }

    /// Sets the socket's read timeout for the next read: the read timeout, cut short
    /// by the close deadline once our close frame is out.
    fn arm(&mut self, shared: &Shared) -> Result<()> {
        let timeout = {
            let mut state = lock(&shared.state);
            match state.close_deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        drop(state);
                        return Err(self.end(shared, Error::Timeout(Phase::Close)));
                    }
                    Some(self.read_timeout.map_or(left, |t| t.min(left)))
                }
                None => {
                    // A close sent from another thread during this read starts a watchdog.
                    state.reader_blocked = true;
                    self.read_timeout
                }
            }
        };
        self.set_timeout(timeout);
        Ok(())
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) {
        if timeout != self.socket_timeout {
            // Fails only for a zero duration, which is never passed.
            let _ = self.stream.set_read_timeout(timeout);
            self.socket_timeout = timeout;
        }
    }

    /// The server closed TCP (or TLS) without finishing the close handshake, or the
    /// close watchdog shut the socket down.
    fn eof(&mut self, shared: &Shared) -> Error {
        let error = if lock(&shared.state).close_expired {
            Error::Timeout(Phase::Close)
        } else {
            Error::AbnormalClosure
        };
        self.end(shared, error)
    }

    fn read_failed(&mut self, shared: &Shared, e: io::Error) -> Error {
        let (expired, closing) = {
            let state = lock(&shared.state);
            (
                state.close_expired,
                state.close_deadline.is_some_and(|d| Instant::now() >= d),
            )
        };
        if expired || closing {
            return self.end(shared, Error::Timeout(Phase::Close));
        }
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            // Nothing is lost: the next `recv` goes on where this one stopped.
            return Error::Timeout(Phase::Read);
        }
        self.end(shared, Error::Io(e))
    }

    /// Closes the connection at once and reports `error`.
    fn end(&mut self, shared: &Shared, error: Error) -> Error {
        self.ended = true;
        shared.shut_down();
        error
    }

    /// The close handshake is over, or we failed the connection: our close frame
    /// (or reply) goes out, then we wait for the server to close TCP first (RFC 6455
    /// §7.1.1), up to the close timeout, and close our side.
    fn finish(&mut self, shared: &Shared) {
        #[cfg(feature = "tls")]
        {
            let mut state = lock(&shared.state);
            if let Some(tls) = state.tls.as_deref_mut() {
                tls.send_close_notify();
            }
            state.queue_tls_output();
        }
        let _ = shared.flush();
        let deadline = crate::config::deadline(Instant::now(), shared.close_timeout());
        let mut sink = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.set_timeout(Some(left));
            match self.stream.read(&mut sink) {
                // Nothing after the close frames is read.
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The end of the stream, a reset or the timeout: done either way.
                _ => break,
            }
        }
        self.ended = true;
        shared.shut_down();
    }
}

/// Moves the plaintext rustls holds into `input`. Returns whether any arrived, and
/// whether the TLS stream has ended (`close_notify`, or TCP closed without one).
#[cfg(feature = "tls")]
fn take_plaintext(
    tls: &mut rustls::ClientConnection,
    input: &mut Input,
) -> io::Result<(bool, bool)> {
    let mut arrived = false;
    loop {
        match tls.reader().read(input.spare()) {
            Ok(0) => return Ok((arrived, true)),
            Ok(got) => {
                input.filled(got);
                arrived = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((arrived, false)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((arrived, true)),
            Err(e) => return Err(e),
        }
    }
}

/// One read, retried when interrupted by a signal.
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}
