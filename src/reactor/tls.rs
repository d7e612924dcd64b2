//! TLS between the socket and proto (feature `tls`): a filter, not a new path.
//!
//! A wss connection is a plain slot with [`flag::TLS`](super::conn::flag::TLS) set;
//! its rustls session lives out of line, boxed in a map keyed by slot (with the
//! slot's generation to check), so that plain connections pay nothing: not a byte
//! in the slot, not a branch beyond the flag test.
//!
//! The session is rustls' *unbuffered* one: records pass through two buffers the
//! reactor shares between its wss connections, and a connection keeps only what is
//! left over: a partial record between reads, records the kernel refused between
//! writes. An idle wss connection holds no buffer. (rustls' buffered connection
//! keeps a 4 KiB read buffer for each connection as long as it lives: measured at
//! 7.8 KiB per idle connection against 2.3 KiB for this one; docs/BENCHMARKS.md.)
//!
//! Reads: records from the socket land in the shared buffer behind any held
//! partial record, and their plaintext is written into the same scratch (or held)
//! buffer a plain read fills, so proto never knows. Writes: the cork and the queue
//! are plaintext, as for a plain connection; the [`Sink`] they are written to
//! gathers small pieces into shared records, encrypts into the shared buffer and
//! writes at once. What the kernel refuses stays as records in the session, and no
//! more plaintext is taken until it is written: plaintext waits in the
//! connection's queue, under the usual backpressure limit.

#[cfg(feature = "tls")]
use std::io::Read;
use std::io::{self, IoSlice, Write};

use mio::net::TcpStream;

use super::conn::Generation;
#[cfg(feature = "tls")]
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
#[cfg(feature = "tls")]
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus,
};

/// The TLS configuration a listener serves with.
#[cfg(feature = "tls")]
pub(crate) type TlsConfig = std::sync::Arc<rustls::ServerConfig>;

/// Without the `tls` feature no listener serves TLS: the type has no value.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(crate) enum TlsConfig {}

/// One connection's TLS state: rustls' unbuffered session, whose records pass
/// through the reactor's shared buffers, and what is left between reads and
/// writes. An idle connection holds neither: both vectors are empty and
/// unallocated.
#[cfg(feature = "tls")]
struct Session {
    tls: UnbufferedServerConnection,
    generation: Generation,
    /// Received bytes not yet used: a partial record, or the records of a
    /// handshake message not yet whole.
    incoming: Vec<u8>,
    /// Records made and not yet taken by the kernel (at most what one write made,
    /// plus rustls' own: handshake flights, alerts, key updates).
    outgoing: Vec<u8>,
    /// Bytes of records received since the last plaintext, once the handshake is
    /// done (see [`IDLE_RECORDS`]).
    idle_wire: u32,
    /// The peer's stream ended (close_notify, or a TCP close without it).
    ended: bool,
    /// close_notify is made.
    notified: bool,
    /// The finished handshake is counted.
    counted: bool,
}

/// How many bytes of records without application data a connection may send in
/// a row once its handshake is done: 64 KiB, some 2,500 empty records or key
/// updates, where a client has reason for a few (a key update now and then,
/// close_notify). Records that decrypt to nothing cost the reactor work and give
/// the read budget nothing to count, and rustls' own limits on empty records and
/// key updates reset each other ("31 empty records, then a key update", repeated,
/// is accepted forever), so past this the connection is dropped and counted
/// ([`Stats::tls_idle_records`](crate::Stats::tls_idle_records)).
#[cfg(feature = "tls")]
pub(crate) const IDLE_RECORDS: u32 = 64 * 1024;

/// The most bytes of an unfinished handshake message a connection may hold: one
/// whole record (16 KiB and its header). A ClientHello is about 2 KiB, so this is
/// room to spare, where rustls alone would hold up to 64 KiB until the handshake
/// timeout (eight times the 8 KiB a plain upgrade request may take). A client
/// certificate chain over 16 KiB (client authentication, configured by the user)
/// is refused.
#[cfg(feature = "tls")]
const HANDSHAKE_HELD: usize = 16 * 1024 + 256 + 5;

/// The reactor's shared TLS buffer: reads land in it and records are made in it.
/// Large enough for a handshake message at rustls' limit (64 KiB) and a read.
#[cfg(feature = "tls")]
const CIPHER: usize = 128 * 1024 + 1024;

/// Plaintext encrypted per call: whole 16 KiB records, and room in `CIPHER` for
/// their headers and tags.
#[cfg(feature = "tls")]
const CHUNK: usize = 64 * 1024;

/// Small plaintext pieces (a cork, a frame header and its payload) are gathered up
/// to this before they are encrypted, so that they share a record.
#[cfg(feature = "tls")]
const GATHER: usize = 16 * 1024;

/// The TLS sessions of a reactor's wss connections.
#[derive(Default)]
pub(crate) struct Sessions {
    #[cfg(feature = "tls")]
    map: std::collections::HashMap<u32, Box<Session>>,
    /// Allocated by the first wss connection: a plain reactor pays nothing.
    #[cfg(feature = "tls")]
    cipher: Vec<u8>,
    #[cfg(feature = "tls")]
    gather: Vec<u8>,
    /// When the thread's pool of expanded traffic keys is next swept.
    #[cfg(feature = "tls")]
    next_sweep: Option<std::time::Instant>,
    /// How often it is swept (`Config::tls_key_release`): a key unused between two
    /// sweeps is let go, so an idle wss connection holds only its keys' bytes from
    /// one to two of these after its last record (crate::tls's `keys` module).
    #[cfg(feature = "tls")]
    key_release: std::time::Duration,
    /// Connections dropped for records without application data past
    /// [`IDLE_RECORDS`].
    pub(crate) idle_dropped: u64,
    /// Handshakes finished: all, and the resumed ones.
    pub(crate) handshakes: u64,
    pub(crate) resumed: u64,
}

/// What one TLS read did.
pub(crate) struct TlsRead {
    /// Plaintext written into the buffer (`Ok(0)`: the end of the stream), or the
    /// error: `WouldBlock` when the socket is drained and nothing came of it,
    /// `Interrupted` when the wire budget ran out before any plaintext did (more
    /// may wait: read again in a later turn), `InvalidData` for a TLS error (its
    /// alert is sent, best effort) or records past [`IDLE_RECORDS`].
    pub(crate) result: io::Result<usize>,
    /// As for a plain read: a read that drained the socket stays under this.
    pub(crate) asked: usize,
    /// Bytes taken from the socket: what the read budget counts.
    pub(crate) wire: usize,
}

/// What a connection's bytes are written to: its socket, or its TLS session.
pub(crate) enum Sink<'a> {
    Plain(&'a mut TcpStream),
    #[cfg(feature = "tls")]
    Tls(Writer<'a>),
    /// A TLS connection without its session (a bug of ours): every write fails,
    /// which closes the connection. A wss peer never gets a plaintext byte.
    Lost,
}

/// The write side of a TLS session, with the reactor's buffers.
#[cfg(feature = "tls")]
pub(crate) struct Writer<'a> {
    session: &'a mut Session,
    cipher: &'a mut Vec<u8>,
    gather: &'a mut Vec<u8>,
    stream: &'a mut TcpStream,
}

#[cfg(feature = "tls")]
impl Sessions {
    /// Starts a TLS session for slot `key`. `false` if rustls refuses (it does not
    /// for a valid configuration).
    pub(crate) fn start(&mut self, key: usize, generation: Generation, config: &TlsConfig) -> bool {
        let Ok(tls) = UnbufferedServerConnection::new(config.clone()) else {
            return false;
        };
        if self.cipher.is_empty() {
            self.cipher = vec![0; CIPHER];
            self.gather = Vec::with_capacity(GATHER);
        }
        let session = Session {
            tls,
            generation,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            idle_wire: 0,
            ended: false,
            notified: false,
            counted: false,
        };
        self.map.insert(key as u32, Box::new(session));
        true
    }

    pub(crate) fn set_key_release(&mut self, after: std::time::Duration) {
        self.key_release = after;
    }

    /// Lets go the expanded traffic keys unused since the last sweep, once per
    /// `key_release`, on a reactor that has served wss.
    pub(crate) fn sweep(&mut self, now: std::time::Instant) {
        if self.cipher.is_empty() || self.next_sweep.is_some_and(|next| now < next) {
            return;
        }
        self.next_sweep = Some(crate::config::deadline(now, self.key_release));
        crate::tls::sweep_keys();
    }

    /// Forgets the session of slot `key`.
    pub(crate) fn end(&mut self, key: usize) {
        self.map.remove(&(key as u32));
    }

    /// Reads plaintext into `buf`, taking at most about `wire_budget` bytes from the
    /// socket (one read past it at most) while no plaintext comes: see [`TlsRead`].
    /// `asked` is how much a read that drained the socket stays under: `buf.len()`,
    /// or the count itself when more may wait (the socket was not drained, or the
    /// end of the stream is next and raises no edge of its own). `Ok(0)` is the end
    /// of the stream: the peer's close_notify, or a TCP close without one. `buf`
    /// must hold a whole record's plaintext (16 KiB; the reactor's scratch buffer is
    /// 64 KiB).
    pub(crate) fn read(
        &mut self,
        key: usize,
        generation: Generation,
        stream: &mut TcpStream,
        buf: &mut [u8],
        wire_budget: usize,
    ) -> TlsRead {
        let read = self.read_records(key, generation, stream, buf, wire_budget);
        if let Some(session) = self.map.get_mut(&(key as u32))
            && !session.counted
            && !session.tls.is_handshaking()
        {
            session.counted = true;
            self.handshakes += 1;
            if session.tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                self.resumed += 1;
            }
        }
        read
    }

    fn read_records(
        &mut self,
        key: usize,
        generation: Generation,
        stream: &mut TcpStream,
        buf: &mut [u8],
        wire_budget: usize,
    ) -> TlsRead {
        let Some(session) = self
            .map
            .get_mut(&(key as u32))
            .filter(|s| s.generation == generation)
        else {
            return TlsRead {
                result: Err(io::ErrorKind::NotConnected.into()),
                asked: buf.len(),
                wire: 0,
            };
        };
        let cipher = &mut self.cipher;
        let mut filled = 0;
        let mut wire = 0;
        let done = |result, asked, wire| TlsRead {
            result,
            asked,
            wire,
        };
        loop {
            if session.ended {
                return done(Ok(filled), filled, wire);
            }
            if filled == 0 && wire >= wire_budget {
                // Records that made no plaintext, as much as the budget allows:
                // the reactor serves the others before it reads more.
                return done(Err(io::ErrorKind::Interrupted.into()), buf.len(), wire);
            }
            // What is held goes first, the socket's bytes after it. Plaintext is
            // never longer than its records, so reading no more than `buf` has room
            // for keeps it in `buf`: the held bytes count too once they may be
            // application data (during the handshake they are handshake records,
            // which may add up to rustls' 64 KiB limit for one message).
            let held = session.incoming.len();
            cipher[..held].copy_from_slice(&session.incoming);
            let room = buf.len() - filled;
            let handshaking = session.tls.is_handshaking();
            let room = if handshaking {
                room
            } else {
                room.saturating_sub(held)
            };
            let asked = room.min(CIPHER - held);
            if asked == 0 {
                if filled > 0 {
                    return done(Ok(filled), filled, wire);
                }
                // A handshake message past rustls' own limit: it refuses it first.
                return done(Err(io::ErrorKind::InvalidData.into()), 0, wire);
            }
            let n = match stream.read(&mut cipher[held..held + asked]) {
                Ok(0) => {
                    session.ended = true;
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 {
                        done(Ok(filled), buf.len(), wire)
                    } else {
                        done(Err(e), buf.len(), wire)
                    };
                }
                Err(e) => return done(Err(e), buf.len(), wire),
            };
            wire += n;
            let end = held + n;
            let result = records(
                &mut session.tls,
                &mut cipher[..end],
                &mut buf[filled..],
                &mut session.outgoing,
            );
            match result {
                Ok(records) => {
                    keep(&mut session.incoming, &cipher[records.consumed..end]);
                    filled += records.plain;
                    session.ended |= records.closed;
                    if records.plain > 0 || handshaking {
                        session.idle_wire = 0;
                    } else {
                        session.idle_wire = session.idle_wire.saturating_add(n as u32);
                    }
                }
                Err(Failed { consumed, error }) => {
                    let rest = &mut cipher[consumed.min(end)..end];
                    alert(&mut session.tls, rest, &mut session.outgoing);
                    let _ = write_out(&mut session.outgoing, stream);
                    let error = io::Error::new(io::ErrorKind::InvalidData, error);
                    return done(Err(error), 0, wire);
                }
            }
            if handshaking && session.incoming.len() > HANDSHAKE_HELD {
                // A handshake message still arriving past what any client needs:
                // refused now, not held until the handshake timeout.
                let error =
                    io::Error::new(io::ErrorKind::InvalidData, "TLS handshake message too long");
                return done(Err(error), 0, wire);
            }
            if session.idle_wire > IDLE_RECORDS {
                self.idle_dropped += 1;
                let error = io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS records without application data past the allowance",
                );
                return done(Err(error), 0, wire);
            }
            if session.ended {
                return done(Ok(filled), filled, wire);
            }
            if n < asked {
                // A short read: the socket is drained.
                return if filled > 0 {
                    done(Ok(filled), buf.len(), wire)
                } else {
                    done(Err(io::ErrorKind::WouldBlock.into()), buf.len(), wire)
                };
            }
            if filled > 0 {
                return done(Ok(filled), filled, wire);
            }
        }
    }

    /// Whether records wait for the kernel.
    pub(crate) fn sealed(&self, key: usize) -> bool {
        self.map
            .get(&(key as u32))
            .is_some_and(|s| !s.outgoing.is_empty())
    }

    /// Writes the records waiting for the kernel. `Ok(true)` when none are left.
    pub(crate) fn flush(
        &mut self,
        key: usize,
        generation: Generation,
        stream: &mut TcpStream,
    ) -> io::Result<bool> {
        match self
            .map
            .get_mut(&(key as u32))
            .filter(|s| s.generation == generation)
        {
            Some(session) => write_out(&mut session.outgoing, stream),
            // Flushed only for TLS connections: one without its session is broken.
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Makes close_notify (once), to leave with the next flush.
    pub(crate) fn close_notify(&mut self, key: usize, generation: Generation) {
        let Some(session) = self
            .map
            .get_mut(&(key as u32))
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        if session.notified || write_traffic(session).is_err() {
            return;
        }
        session.notified = true;
        let Session {
            tls,
            incoming,
            outgoing,
            ..
        } = &mut **session;
        let UnbufferedStatus { discard, state } = tls.process_tls_records(incoming);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let _ = grow_into(outgoing, |out| {
                traffic.queue_close_notify(out).map_err(|e| match e {
                    EncryptError::InsufficientSize(s) => Some(s.required_size),
                    _ => None,
                })
            });
        }
        incoming.drain(..discard);
    }

    /// The sink of a connection: its TLS session when it has one.
    pub(crate) fn sink<'a>(
        &'a mut self,
        key: usize,
        generation: Generation,
        tls: bool,
        stream: &'a mut TcpStream,
    ) -> Sink<'a> {
        if tls
            && let Some(session) = self
                .map
                .get_mut(&(key as u32))
                .filter(|s| s.generation == generation)
        {
            return Sink::Tls(Writer {
                session,
                cipher: &mut self.cipher,
                gather: &mut self.gather,
                stream,
            });
        }
        if tls { Sink::Lost } else { Sink::Plain(stream) }
    }
}

/// What [`records`] did with a read's bytes.
#[cfg(feature = "tls")]
struct Records {
    /// Bytes used from the front (the rest is kept for the next read).
    consumed: usize,
    /// Plaintext written.
    plain: usize,
    /// The peer sent close_notify.
    closed: bool,
}

/// Runs the received bytes through rustls: handshake messages answered into
/// `outgoing`, application data decrypted into `plain`.
#[cfg(feature = "tls")]
fn records(
    tls: &mut UnbufferedServerConnection,
    incoming: &mut [u8],
    plain: &mut [u8],
    outgoing: &mut Vec<u8>,
) -> Result<Records, Failed> {
    let mut done = Records {
        consumed: 0,
        plain: 0,
        closed: false,
    };
    loop {
        let UnbufferedStatus { discard, state } =
            tls.process_tls_records(&mut incoming[done.consumed..]);
        let failed = |error| Failed {
            consumed: done.consumed + discard,
            error,
        };
        let mut more = true;
        match state.map_err(failed)? {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let payload = record.map_err(failed)?.payload;
                    let Some(room) = plain.get_mut(done.plain..done.plain + payload.len()) else {
                        // Cannot happen (reads are sized for it): refuse rather than lose.
                        let error = rustls::Error::General("plaintext past the buffer".into());
                        return Err(failed(error));
                    };
                    room.copy_from_slice(payload);
                    done.plain += payload.len();
                }
            }
            ConnectionState::EncodeTlsData(mut data) => encode(&mut data, outgoing),
            // Written when the reactor flushes the connection, before anything else.
            ConnectionState::TransmitTlsData(data) => data.done(),
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                done.closed = true;
                more = false;
            }
            // Early data is not enabled: rustls refuses it before this.
            ConnectionState::ReadEarlyData(_) => {
                return Err(failed(rustls::Error::General("early data".into())));
            }
            _ => more = false, // waits for bytes: BlockedHandshake, WriteTraffic
        }
        done.consumed += discard;
        if !more {
            return Ok(done);
        }
    }
}

/// A TLS error, and how much of the input rustls was done with when it came:
/// rustls is called once more (for its alert) with the rest.
#[cfg(feature = "tls")]
struct Failed {
    consumed: usize,
    error: rustls::Error,
}

/// Appends the record rustls asks to send to `outgoing`.
#[cfg(feature = "tls")]
fn encode(data: &mut EncodeTlsData<'_, ServerConnectionData>, outgoing: &mut Vec<u8>) {
    let _ = grow_into(outgoing, |out| {
        data.encode(out).map_err(|e| match e {
            EncodeError::InsufficientSize(s) => Some(s.required_size),
            EncodeError::AlreadyEncoded => None,
        })
    });
}

/// Runs `make` on the spare room at the end of `out`, growing it to the size asked
/// for once if it is too small. `make` returns the bytes written, or the room it
/// needs (`None`: it failed otherwise).
#[cfg(feature = "tls")]
fn grow_into(
    out: &mut Vec<u8>,
    mut make: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), ()> {
    let len = out.len();
    let need = match make(&mut []) {
        Ok(_) => return Ok(()),
        Err(Some(need)) => need,
        Err(None) => return Err(()),
    };
    out.resize(len + need, 0);
    match make(&mut out[len..]) {
        Ok(n) => {
            out.truncate(len + n);
            Ok(())
        }
        Err(_) => {
            out.truncate(len);
            Err(())
        }
    }
}

/// After a TLS error rustls has queued its alert: made into `outgoing`. `rest` is
/// the input rustls was not done with (it may hold offsets into it).
#[cfg(feature = "tls")]
fn alert(tls: &mut UnbufferedServerConnection, rest: &mut [u8], outgoing: &mut Vec<u8>) {
    let status = tls.process_tls_records(rest);
    if let Ok(ConnectionState::EncodeTlsData(mut data)) = status.state {
        encode(&mut data, outgoing);
    }
}

/// Keeps `rest` as the held input, releasing the allocation when nothing is left.
#[cfg(feature = "tls")]
fn keep(held: &mut Vec<u8>, rest: &[u8]) {
    if rest.is_empty() {
        *held = Vec::new();
    } else {
        held.clear();
        held.extend_from_slice(rest);
    }
}

/// Writes `outgoing` until the kernel refuses; `Ok(true)` when it is all written
/// (and its allocation released).
#[cfg(feature = "tls")]
fn write_out(outgoing: &mut Vec<u8>, stream: &mut TcpStream) -> io::Result<bool> {
    let mut written = 0;
    while written < outgoing.len() {
        match stream.write(&outgoing[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if written == outgoing.len() {
        *outgoing = Vec::new();
        return Ok(true);
    }
    outgoing.drain(..written);
    Ok(false)
}

/// Brings the session to where application data may be encrypted, making what
/// rustls wants sent first (session tickets, a key update) into `outgoing`.
/// `WouldBlock` while the handshake is not done.
#[cfg(feature = "tls")]
fn write_traffic(session: &mut Session) -> io::Result<()> {
    loop {
        let Session {
            tls,
            incoming,
            outgoing,
            ..
        } = session;
        // The held bytes, not an empty buffer: rustls keeps the bounds of a
        // handshake message still arriving (a ClientHello or a KeyUpdate split
        // across records) as offsets into them, and panics if they are gone.
        let UnbufferedStatus { discard, state } = tls.process_tls_records(incoming);
        let done = match state {
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut data, outgoing);
                None
            }
            Ok(ConnectionState::TransmitTlsData(data)) => {
                data.done();
                None
            }
            Ok(ConnectionState::WriteTraffic(_)) => Some(Ok(())),
            Ok(ConnectionState::PeerClosed) => None,
            Ok(ConnectionState::BlockedHandshake) => Some(Err(io::ErrorKind::WouldBlock.into())),
            Ok(_) => Some(Err(io::ErrorKind::BrokenPipe.into())),
            Err(e) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
        };
        incoming.drain(..discard);
        if let Some(done) = done {
            return done;
        }
    }
}

#[cfg(feature = "tls")]
impl Writer<'_> {
    /// Encrypts and writes `bufs`: records the kernel refused first; then the
    /// plaintext, small pieces gathered into shared records, made in the shared
    /// buffer and written at once, until all is taken or the kernel refuses part
    /// (kept as records, and no more plaintext taken). Returns the plaintext
    /// taken; `WouldBlock` when none could be.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !write_out(&mut self.session.outgoing, self.stream)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        write_traffic(self.session)?;
        if !write_out(&mut self.session.outgoing, self.stream)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut taken = 0;
        let mut made = 0;
        self.gather.clear();
        for buf in bufs {
            let mut data: &[u8] = buf;
            while !data.is_empty() {
                if data.len() < GATHER && self.gather.len() + data.len() <= GATHER {
                    self.gather.extend_from_slice(data);
                    taken += data.len();
                    break;
                }
                made = self.seal_gathered(made)?;
                let chunk = &data[..data.len().min(CHUNK)];
                made = self.seal(made, chunk)?;
                taken += chunk.len();
                data = &data[chunk.len()..];
                if made >= CHUNK && !self.send(&mut made)? {
                    return Ok(taken);
                }
            }
        }
        made = self.seal_gathered(made)?;
        self.send(&mut made)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Encrypts the gathered plaintext after the `made` bytes of records.
    fn seal_gathered(&mut self, made: usize) -> io::Result<usize> {
        if self.gather.is_empty() {
            return Ok(made);
        }
        let gathered = std::mem::take(self.gather);
        let result = self.seal(made, &gathered);
        *self.gather = gathered;
        self.gather.clear();
        result
    }

    /// Encrypts `plain` into the shared buffer after the `made` bytes of records
    /// there, writing those out first if there is no room. Records rustls made on
    /// its own go out before the new ones.
    fn seal(&mut self, mut made: usize, plain: &[u8]) -> io::Result<usize> {
        for _ in 0..4 {
            let Session {
                tls,
                incoming,
                outgoing,
                ..
            } = &mut *self.session;
            // The held bytes, as in `write_traffic`.
            let UnbufferedStatus { discard, state } = tls.process_tls_records(incoming);
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    match traffic.encrypt(plain, &mut self.cipher[made..]) {
                        Ok(n) => Some(Ok(made + n)),
                        Err(EncryptError::InsufficientSize(_)) if made > 0 => {
                            // Room is made by writing what is there; what the
                            // kernel refuses of it is kept, in order.
                            let sent = send(&self.cipher[..made], outgoing, self.stream);
                            made = 0;
                            sent.err().map(Err)
                        }
                        Err(e) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    let sent = send(&self.cipher[..made], outgoing, self.stream);
                    made = 0;
                    encode(&mut data, outgoing);
                    sent.err().map(Err)
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    data.done();
                    None
                }
                _ => Some(Err(io::ErrorKind::BrokenPipe.into())),
            };
            incoming.drain(..discard);
            if let Some(done) = done {
                return done;
            }
        }
        Err(io::ErrorKind::InvalidData.into())
    }

    /// Writes the `made` bytes of records (see [`send`]); `Ok(false)` if the
    /// kernel refused some.
    fn send(&mut self, made: &mut usize) -> io::Result<bool> {
        let records = &self.cipher[..std::mem::take(made)];
        send(records, &mut self.session.outgoing, self.stream)
    }
}

/// Writes `records` after those in `outgoing` (directly when there are none); what
/// the kernel refuses is kept in `outgoing`. `Ok(false)` if it refused some.
#[cfg(feature = "tls")]
fn send(records: &[u8], outgoing: &mut Vec<u8>, stream: &mut TcpStream) -> io::Result<bool> {
    let mut written = 0;
    if outgoing.is_empty() {
        while written < records.len() {
            match stream.write(&records[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    outgoing.extend_from_slice(&records[written..]);
    Ok(outgoing.is_empty())
}

#[cfg(not(feature = "tls"))]
impl Sessions {
    pub(crate) fn start(&mut self, _: usize, _: Generation, config: &TlsConfig) -> bool {
        match *config {}
    }

    pub(crate) fn end(&mut self, _: usize) {}

    pub(crate) fn set_key_release(&mut self, _: std::time::Duration) {}

    pub(crate) fn sweep(&mut self, _: std::time::Instant) {}

    pub(crate) fn read(
        &mut self,
        _: usize,
        _: Generation,
        _: &mut TcpStream,
        buf: &mut [u8],
        _: usize,
    ) -> TlsRead {
        TlsRead {
            result: Err(io::ErrorKind::Unsupported.into()),
            asked: buf.len(),
            wire: 0,
        }
    }

    pub(crate) fn sealed(&self, _: usize) -> bool {
        false
    }

    pub(crate) fn flush(&mut self, _: usize, _: Generation, _: &mut TcpStream) -> io::Result<bool> {
        // Without the feature no connection is TLS: nothing calls this.
        Err(io::ErrorKind::NotConnected.into())
    }

    pub(crate) fn close_notify(&mut self, _: usize, _: Generation) {}

    pub(crate) fn sink<'a>(
        &'a mut self,
        _: usize,
        _: Generation,
        tls: bool,
        stream: &'a mut TcpStream,
    ) -> Sink<'a> {
        if tls { Sink::Lost } else { Sink::Plain(stream) }
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Plain: the socket's writev. TLS: see [`Writer`].
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::Plain(stream) => stream.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Sink::Tls(writer) => writer.write_vectored(bufs),
            Sink::Lost => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One wss connection's TLS filter over a socket, driven as a reactor drives it:
/// for the fuzz targets (feature `fuzzing`), which hold the peer's side. Not an API.
#[cfg(feature = "fuzzing")]
pub struct FuzzSession {
    sessions: Sessions,
    stream: TcpStream,
}

#[cfg(feature = "fuzzing")]
impl FuzzSession {
    /// A session for the server side of `stream` (made non-blocking here).
    pub fn new(config: TlsConfig, stream: std::net::TcpStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        let mut sessions = Sessions::default();
        if !sessions.start(0, 1, &config) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        Ok(Self {
            sessions,
            stream: TcpStream::from_std(stream),
        })
    }

    /// A reactor's read: plaintext into `buf` (at least 16 KiB), `Ok(0)` at the end,
    /// `Interrupted` when `wire_budget` bytes of records made no plaintext.
    pub fn read(&mut self, buf: &mut [u8], wire_budget: usize) -> io::Result<usize> {
        self.sessions
            .read(0, 1, &mut self.stream, buf, wire_budget)
            .result
    }

    /// Writes waiting records; `Ok(true)` when none are left.
    pub fn flush(&mut self) -> io::Result<bool> {
        self.sessions.flush(0, 1, &mut self.stream)
    }

    /// Whether records wait for the kernel (the reactor reads no more meanwhile).
    pub fn sealed(&self) -> bool {
        self.sessions.sealed(0)
    }

    /// A reactor's write of plaintext pieces through the connection's sink.
    pub fn write(&mut self, pieces: &[IoSlice<'_>]) -> io::Result<usize> {
        self.sessions
            .sink(0, 1, true, &mut self.stream)
            .write_vectored(pieces)
    }

    /// Makes close_notify, to leave with the next flush.
    pub fn close_notify(&mut self) {
        self.sessions.close_notify(0, 1);
    }
}

#[cfg(all(test, feature = "tls"))]
#[path = "tls_tests.rs"]
mod tests;
