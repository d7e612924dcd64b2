//! The send side, shared by a [`Client`](super::Client) and all its
//! [`Sender`](super::Sender)s.
//!
//! Two locks, always taken in this order when both are held:
//!
//! - `writer` owns the socket's write half and is held for as long as a thread writes,
//!   so one frame's bytes are never interleaved with another's;
//! - `state` owns the protocol state (and the TLS session). Every frame, from any
//!   thread, is encoded (and encrypted) under it and appended to `pending`: the order
//!   of `pending` is the order of the wire, which keeps TLS record sequence numbers
//!   and the rule "nothing after our close frame" true across threads.
//!
//! Whoever holds `writer` writes `pending` until it is empty, and lets go of `writer`
//! while it still holds `state`. The reader, which decodes under `state` and may queue
//! a pong or a close reply, only *tries* to take `writer`: if a sender holds it, that
//! sender sees the reply in its final look at `pending` (it cannot have looked yet, as
//! the reader holds `state`). So a reader never waits behind a sender's long write to
//! answer a ping, and no reply is left behind.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use super::error::{Error, Phase, Result, io_error};
use crate::proto::deflate::{Deflater, PerMessageDeflate};
use crate::proto::frame::Role;
use crate::proto::frame::{MAX_CONTROL_PAYLOAD, OpCode};
use crate::proto::{CloseCode, Connection, Decoded, Event, Limits, Message, SendError};

/// A write buffer larger than this is dropped after use rather than kept for the
/// next frame, so one large message does not pin its size for the connection's life.
const KEEP_BUFFER: usize = 1 << 20;

pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    writer: Mutex<Writer>,
    /// A handle on the socket for shutting it down from any thread.
    socket: TcpStream,
    close_timeout: Duration,
}

struct Writer {
    stream: TcpStream,
    /// The bytes being written, swapped with `State::pending`.
    buf: Vec<u8>,
}

/// permessage-deflate on the send side: the compressor (its context follows what
/// was negotiated) and where a message is compressed.
pub(crate) struct SendDeflate {
    pub(crate) deflater: Deflater,
    /// Messages shorter than this go uncompressed.
    pub(crate) threshold: usize,
    buf: Vec<u8>,
}

impl SendDeflate {
    /// The compressor for what was `agreed`: level 1; with our context kept, a
    /// threshold of 64 bytes, else 160 (where deflate starts to pay without one:
    /// docs/BENCHMARKS.md, "Choosing the deflate crate").
    pub(crate) fn new(agreed: PerMessageDeflate) -> SendDeflate {
        let direction = agreed.compressor(Role::Client);
        SendDeflate {
            deflater: Deflater::new(direction, 1),
            threshold: if direction.context_takeover { 64 } else { 160 },
            buf: Vec::new(),
        }
    }
}

/// Everything the reader and the senders share, under one lock.
pub(crate) struct State {
    pub(crate) conn: Connection,
    /// The compressor, when permessage-deflate was negotiated.
    pub(crate) deflate: Option<Box<SendDeflate>>,
    /// Wire bytes encoded in order and not yet taken by a writer.
    pending: Vec<u8>,
    /// The payload of the latest ping not yet answered: at most one pong waits,
    /// encoded when a writer next looks at `pending` (RFC 6455 §5.5.3 lets a pong
    /// answer only the most recent ping). A reader that keeps receiving pings while
    /// a sender is blocked writing so holds one pong, not one per ping.
    owed_pong: Option<([u8; MAX_CONTROL_PAYLOAD], u8)>,
    /// Where decoding writes the replies proto makes, before they are queued.
    replies: Vec<u8>,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<rustls::ClientConnection>>,
    /// Plain frames on their way into `tls`.
    #[cfg(feature = "tls")]
    plain: Vec<u8>,
    /// A write failed: the stream may end inside a frame, so nothing more is sent.
    broken: bool,
    /// When our close frame was queued, the time by which the server must answer.
    pub(crate) close_deadline: Option<Instant>,
    /// The reader is blocked in a read that started without that deadline.
    pub(crate) reader_blocked: bool,
    /// The close watchdog shut the socket down: the server did not answer in time.
    pub(crate) close_expired: bool,
    /// The reader has closed the connection; the watchdog has nothing to do.
    pub(crate) finished: bool,
}

/// Locks, ignoring poison: no code of ours panics while holding these locks, and a
/// user's panic elsewhere must not make the connection unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl State {
    /// Runs `encode` against the protocol state with the buffer frames go to, and
    /// queues what it wrote (encrypted first, with TLS) for the wire.
    pub(crate) fn queue<T>(
        &mut self,
        encode: impl FnOnce(&mut Connection, &mut Vec<u8>) -> T,
    ) -> Result<T> {
        #[cfg(feature = "tls")]
        if let Some(tls) = self.tls.as_deref_mut() {
            let result = encode(&mut self.conn, &mut self.plain);
            let sealed = seal(tls, &self.plain, &mut self.pending);
            self.plain.clear();
            if self.plain.capacity() > KEEP_BUFFER {
                self.plain = Vec::new();
            }
            return sealed.map(|()| result);
        }
        Ok(encode(&mut self.conn, &mut self.pending))
    }

    /// Decodes `buf` (see [`Connection::decode`]), queueing the replies it writes,
    /// but for a pong, which is owed (see `owed_pong`).
    pub(crate) fn decode<'b>(&mut self, buf: &'b mut [u8], limits: &Limits) -> Result<Decoded<'b>> {
        let mut replies = std::mem::take(&mut self.replies);
        replies.clear();
        let decoded = self.conn.decode(buf, &mut replies, limits);
        let queued = match &decoded {
            Decoded::Event {
                event: Event::Ping(payload),
                ..
            } => {
                if !replies.is_empty() {
                    let mut owed = [0; MAX_CONTROL_PAYLOAD];
                    owed[..payload.len()].copy_from_slice(payload);
                    self.owed_pong = Some((owed, payload.len() as u8));
                }
                Ok(())
            }
            _ if replies.is_empty() => Ok(()),
            _ => self.queue(|_, out| out.extend_from_slice(&replies)),
        };
        self.replies = replies;
        queued.map(|()| decoded)
    }

    /// Encodes the owed pong, if any, behind what is pending.
    fn queue_owed_pong(&mut self) -> Result<()> {
        let Some((payload, len)) = self.owed_pong.take() else {
            return Ok(());
        };
        // Refused once our close frame is out: no pong after it.
        let _ = self.queue(|conn, out| {
            conn.write_frame(out, OpCode::Pong, true, &payload[..usize::from(len)])
        })?;
        Ok(())
    }

    /// With TLS: queues what rustls has to send on its own (alerts, key updates,
    /// `close_notify`).
    #[cfg(feature = "tls")]
    pub(crate) fn queue_tls_output(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            while tls.wants_write() {
                if tls.write_tls(&mut self.pending).is_err() {
                    break;
                }
            }
        }
    }
}

/// Encrypts `plain` into TLS records appended to `out`, in pieces no larger than what
/// rustls buffers (64 KiB by default), so a message of any size goes through.
#[cfg(feature = "tls")]
fn seal(tls: &mut rustls::ClientConnection, plain: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut rest = plain;
    while !rest.is_empty() {
        let taken = tls.writer().write(rest).map_err(Error::Io)?;
        rest = &rest[taken..];
        let mut moved = false;
        while tls.wants_write() {
            tls.write_tls(out).map_err(Error::Io)?;
            moved = true;
        }
        if taken == 0 && !moved {
            return Err(Error::Io(std::io::Error::other(
                "TLS session refuses data (closed)",
            )));
        }
    }
    Ok(())
}

impl Shared {
    pub(crate) fn new(
        conn: Connection,
        deflate: Option<PerMessageDeflate>,
        stream: TcpStream,
        close_timeout: Duration,
        #[cfg(feature = "tls")] tls: Option<Box<rustls::ClientConnection>>,
    ) -> std::io::Result<Shared> {
        Ok(Shared {
            state: Mutex::new(State {
                conn,
                deflate: deflate.map(|agreed| Box::new(SendDeflate::new(agreed))),
                pending: Vec::new(),
                owed_pong: None,
                replies: Vec::new(),
                #[cfg(feature = "tls")]
                tls,
                #[cfg(feature = "tls")]
                plain: Vec::new(),
                broken: false,
                close_deadline: None,
                reader_blocked: false,
                close_expired: false,
                finished: false,
            }),
            writer: Mutex::new(Writer {
                stream: stream.try_clone()?,
                buf: Vec::new(),
            }),
            socket: stream,
            close_timeout,
        })
    }

    pub(crate) fn close_timeout(&self) -> Duration {
        self.close_timeout
    }

    /// Encodes one frame with `encode` and writes it (and whatever was queued before
    /// it), blocking until the kernel has taken it.
    fn send_with(
        &self,
        encode: impl FnOnce(&mut Connection, &mut Vec<u8>) -> Result<(), SendError>,
    ) -> Result<()> {
        let writer = lock(&self.writer);
        {
            let mut state = lock(&self.state);
            if state.broken {
                return Err(Error::Closed);
            }
            state.queue(encode)??;
        }
        self.write_pending(writer)
    }

    /// Sends a message: compressed when permessage-deflate was negotiated and it
    /// is at least the threshold long.
    pub(crate) fn send(&self, message: Message<'_>) -> Result<()> {
        let writer = lock(&self.writer);
        {
            let mut state = lock(&self.state);
            if state.broken {
                return Err(Error::Closed);
            }
            let compressed = match state.deflate.as_deref_mut() {
                Some(d) if message.len() >= d.threshold => {
                    let mut buf = std::mem::take(&mut d.buf);
                    buf.clear();
                    d.deflater
                        .compress(message.as_bytes(), &mut buf)
                        .then_some(buf)
                }
                _ => None,
            };
            match compressed {
                Some(buf) => {
                    let text = message.is_text();
                    let sent = state.queue(|conn, out| conn.write_compressed(out, text, &buf));
                    if let Some(d) = state.deflate.as_deref_mut() {
                        d.buf = buf;
                        if d.buf.capacity() > KEEP_BUFFER {
                            d.buf = Vec::new();
                        }
                    }
                    sent??;
                }
                None => state.queue(|conn, out| conn.write_message(out, message))??,
            }
        }
        self.write_pending(writer)
    }

    pub(crate) fn ping(&self, payload: &[u8]) -> Result<()> {
        self.send_with(|conn, out| conn.ping(out, payload))
    }

    /// Sends our close frame and starts the close timer. A reader blocked in a read
    /// that began before it gets a watchdog, since a blocked read cannot be given a
    /// new timeout: if the server has not answered in time, the socket is shut down.
    pub(crate) fn close(self: &Arc<Self>, code: CloseCode, reason: &str) -> Result<()> {
        let writer = lock(&self.writer);
        let watch = {
            let mut state = lock(&self.state);
            if state.broken {
                return Err(Error::Closed);
            }
            state.queue(|conn, out| conn.close(out, code, reason))??;
            state.close_deadline =
                Some(crate::config::deadline(Instant::now(), self.close_timeout));
            state.reader_blocked
        };
        let written = self.write_pending(writer);
        if watch {
            let shared = Arc::clone(self);
            // Without a thread the close is still bounded by the read timeout, if set.
            let _ = std::thread::Builder::new()
                .name("wsreactor-close-watch".into())
                .spawn(move || {
                    std::thread::sleep(shared.close_timeout);
                    let mut state = lock(&shared.state);
                    if !state.finished && !state.conn.is_closed() {
                        state.close_expired = true;
                        let _ = shared.socket.shutdown(Shutdown::Both);
                    }
                });
        }
        written
    }

    /// Writes `pending` until it is empty, then lets go of the writer while holding
    /// the state (see the module docs).
    fn write_pending(&self, mut writer: MutexGuard<'_, Writer>) -> Result<()> {
        loop {
            let mut state = lock(&self.state);
            if !state.broken {
                state.queue_owed_pong()?;
            }
            if state.pending.is_empty() || state.broken {
                drop(writer);
                return Ok(());
            }
            let Writer { stream, buf } = &mut *writer;
            std::mem::swap(&mut state.pending, buf);
            drop(state);
            let written = stream.write_all(buf);
            buf.clear();
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new();
            }
            if let Err(e) = written {
                let mut state = lock(&self.state);
                state.broken = true;
                state.pending = Vec::new();
                return Err(io_error(e, Phase::Write));
            }
        }
    }

    /// From the reader, with the state held: gets queued replies written without
    /// waiting for a busy writer, which will write them itself before it lets go.
    pub(crate) fn flush_soon(&self, state: MutexGuard<'_, State>) -> Result<()> {
        if state.pending.is_empty() && state.owed_pong.is_none() {
            return Ok(());
        }
        let writer = match self.writer.try_lock() {
            Ok(writer) => writer,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(()),
        };
        drop(state);
        self.write_pending(writer)
    }

    /// Writes everything queued, waiting for the writer: before the connection is
    /// closed, when the close frames must be out.
    pub(crate) fn flush(&self) -> Result<()> {
        self.write_pending(lock(&self.writer))
    }

    /// Ends the TCP connection (both directions) and marks the state finished.
    pub(crate) fn shut_down(&self) {
        let mut state = lock(&self.state);
        state.finished = true;
        let _ = self.socket.shutdown(Shutdown::Both);
    }
}
