//! TLS between the socket and proto (feature `tls`): a filter, not a new path.
//!
//! A wss connection is a plain slot with [`flag::TLS`](super::conn::flag::TLS) set;
//! its rustls session lives out of line, boxed in a map keyed by slot (with the
//! slot's generation to check), so that plain connections pay nothing: not a byte
//! in the slot, not a branch beyond the flag test.
//!
//! Reads: ciphertext goes from the socket into rustls, plaintext comes out into the
//! same scratch (or held) buffer a plain read would fill, and proto never knows.
//! Writes: the cork and the queue are plaintext, as for a plain connection; the
//! [`Sink`] they are written to encrypts into rustls and writes the records to the
//! socket. rustls keeps at most [`SEALED_LIMIT`] bytes of records the kernel did not
//! take; past that it takes no more plaintext, which then waits in the connection's
//! queue, under the usual backpressure limit.

use std::io::{self, IoSlice, Write};

use mio::net::TcpStream;

/// The TLS configuration a listener serves with.
#[cfg(feature = "tls")]
pub(crate) type TlsConfig = std::sync::Arc<rustls::ServerConfig>;

/// Without the `tls` feature no listener serves TLS: the type has no value.
#[cfg(not(feature = "tls"))]
#[derive(Clone, Debug)]
pub(crate) enum TlsConfig {}

/// Encrypted bytes rustls may hold for a connection beyond what the kernel took,
/// before it refuses more plaintext (which then waits in the connection's queue).
#[cfg(feature = "tls")]
const SEALED_LIMIT: usize = 32 * 1024;

/// One connection's TLS state.
#[cfg(feature = "tls")]
struct Session {
    tls: rustls::ServerConnection,
    generation: u32,
}

/// The TLS sessions of a reactor's wss connections.
#[derive(Default)]
pub(crate) struct Sessions {
    #[cfg(feature = "tls")]
    map: std::collections::HashMap<u32, Box<Session>>,
}

/// What a connection's bytes are written to: its socket, or its TLS session.
pub(crate) enum Sink<'a> {
    Plain(&'a mut TcpStream),
    #[cfg(feature = "tls")]
    Tls(&'a mut rustls::ServerConnection, &'a mut TcpStream),
}

#[cfg(feature = "tls")]
impl Sessions {
    /// Starts a TLS session for slot `key`. `false` if rustls refuses (it does not
    /// for a valid configuration).
    pub(crate) fn start(&mut self, key: usize, generation: u32, config: &TlsConfig) -> bool {
        let Ok(mut tls) = rustls::ServerConnection::new(config.clone()) else {
            return false;
        };
        tls.set_buffer_limit(Some(SEALED_LIMIT));
        self.map
            .insert(key as u32, Box::new(Session { tls, generation }));
        true
    }

    /// Forgets the session of slot `key`.
    pub(crate) fn end(&mut self, key: usize) {
        self.map.remove(&(key as u32));
    }

    fn get(&mut self, key: usize, generation: u32) -> Option<&mut rustls::ServerConnection> {
        self.map
            .get_mut(&(key as u32))
            .filter(|s| s.generation == generation)
            .map(|s| &mut s.tls)
    }

    /// Reads plaintext into `buf`: from what rustls already decrypted, else from the
    /// socket. Returns the result and how much a read that drained the socket stays
    /// under (`buf.len()`, or the count itself when the peer's end is pending and
    /// must be read next, since it raises no edge of its own). `Ok(0)` is the end of
    /// the stream: the peer's close_notify, or a TCP close without one. A TLS error
    /// answers with its alert (best effort) and is `InvalidData`.
    pub(crate) fn read(
        &mut self,
        key: usize,
        generation: u32,
        stream: &mut TcpStream,
        buf: &mut [u8],
    ) -> (io::Result<usize>, usize) {
        let Some(tls) = self.get(key, generation) else {
            return (Err(io::ErrorKind::NotConnected.into()), buf.len());
        };
        let mut filled = 0;
        loop {
            // Plaintext first: rustls takes no more records while it holds 16 KiB.
            match io::Read::read(&mut tls.reader(), &mut buf[filled..]) {
                Ok(0) => return (Ok(filled), filled), // close_notify: the end is next
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return (Ok(filled), buf.len());
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP stream ended without close_notify.
                Err(_) => return (Ok(filled), filled),
            }
            match tls.read_tls(stream) {
                Ok(0) => {
                    // The end of the TCP stream: the reader reports it next round.
                    if let Err(e) = tls.process_new_packets() {
                        return fail(tls, stream, e);
                    }
                }
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        return fail(tls, stream, e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if filled > 0 {
                        return (Ok(filled), buf.len());
                    }
                    return (Err(e), buf.len());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf.len()),
            }
        }
    }

    /// Whether encrypted bytes wait for the kernel.
    pub(crate) fn sealed(&self, key: usize) -> bool {
        self.map
            .get(&(key as u32))
            .is_some_and(|s| s.tls.wants_write())
    }

    /// Writes the encrypted bytes waiting for the kernel. `Ok(true)` when none are
    /// left.
    pub(crate) fn flush(
        &mut self,
        key: usize,
        generation: u32,
        stream: &mut TcpStream,
    ) -> io::Result<bool> {
        match self.get(key, generation) {
            Some(tls) => write_sealed(tls, stream),
            None => Ok(true),
        }
    }

    /// Queues close_notify (once), to leave with the next flush.
    pub(crate) fn close_notify(&mut self, key: usize, generation: u32) {
        if let Some(tls) = self.get(key, generation) {
            tls.send_close_notify();
        }
    }

    /// The sink of a connection: its TLS session when it has one.
    pub(crate) fn sink<'a>(
        &'a mut self,
        key: usize,
        generation: u32,
        tls: bool,
        stream: &'a mut TcpStream,
    ) -> Sink<'a> {
        if tls && let Some(session) = self.get(key, generation) {
            return Sink::Tls(session, stream);
        }
        Sink::Plain(stream)
    }
}

/// A TLS error: the alert rustls queued goes out if the kernel takes it.
#[cfg(feature = "tls")]
fn fail(
    tls: &mut rustls::ServerConnection,
    stream: &mut TcpStream,
    error: rustls::Error,
) -> (io::Result<usize>, usize) {
    let _ = write_sealed(tls, stream);
    (Err(io::Error::new(io::ErrorKind::InvalidData, error)), 0)
}

/// Writes what rustls holds encrypted until the kernel refuses. `Ok(true)` when it
/// holds nothing more.
#[cfg(feature = "tls")]
fn write_sealed(tls: &mut rustls::ServerConnection, stream: &mut TcpStream) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(not(feature = "tls"))]
impl Sessions {
    pub(crate) fn start(&mut self, _: usize, _: u32, config: &TlsConfig) -> bool {
        match *config {}
    }

    pub(crate) fn end(&mut self, _: usize) {}

    pub(crate) fn read(
        &mut self,
        _: usize,
        _: u32,
        _: &mut TcpStream,
        buf: &mut [u8],
    ) -> (io::Result<usize>, usize) {
        (Err(io::ErrorKind::Unsupported.into()), buf.len())
    }

    pub(crate) fn sealed(&self, _: usize) -> bool {
        false
    }

    pub(crate) fn flush(&mut self, _: usize, _: u32, _: &mut TcpStream) -> io::Result<bool> {
        Ok(true)
    }

    pub(crate) fn close_notify(&mut self, _: usize, _: u32) {}

    pub(crate) fn sink<'a>(
        &'a mut self,
        _: usize,
        _: u32,
        _: bool,
        stream: &'a mut TcpStream,
    ) -> Sink<'a> {
        Sink::Plain(stream)
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Plain: the socket's writev. TLS: what rustls holds encrypted goes first; if
    /// the kernel takes all of it, plaintext is encrypted (up to the sealed limit)
    /// and written. Returns the plaintext taken; `WouldBlock` when none could be.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::Plain(stream) => stream.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Sink::Tls(tls, stream) => {
                if !write_sealed(tls, stream)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let taken = tls.writer().write_vectored(bufs)?;
                write_sealed(tls, stream)?;
                if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(taken)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
