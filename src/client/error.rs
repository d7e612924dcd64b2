//! The client's errors: what happened, and whose fault it was.

use std::fmt;
use std::io;
use std::net::SocketAddr;

pub use crate::proto::conn::{ProtocolError, SendError};
pub use crate::proto::handshake::ClientHandshakeError;

/// The result type of the client's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// The TCP connect ([`ClientBuilder::connect_timeout`](super::ClientBuilder::connect_timeout)).
    Connect,
    /// The TLS handshake and the HTTP upgrade together
    /// ([`ClientBuilder::handshake_timeout`](super::ClientBuilder::handshake_timeout)).
    Handshake,
    /// Waiting for the next message ([`ClientBuilder::read_timeout`](super::ClientBuilder::read_timeout)).
    /// The client is still usable: call [`recv`](super::Client::recv) again.
    Read,
    /// Writing a frame ([`ClientBuilder::write_timeout`](super::ClientBuilder::write_timeout)).
    /// A frame may be half written, so nothing more can be sent.
    Write,
    /// Waiting for the server's close frame, or for it to close TCP, after the close
    /// frames ([`ClientBuilder::close_timeout`](super::ClientBuilder::close_timeout)).
    /// The connection has been closed.
    Close,
}

/// An error from connecting, sending or receiving.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The URL cannot be used: not `ws://` or `wss://`, no host, a fragment, user
    /// information. The caller's fault.
    Url(String),
    /// A builder setting cannot be sent: a header with bytes HTTP forbids, a header the
    /// client writes itself, a subprotocol that is not a token, a CA file without a
    /// certificate. The caller's fault.
    Config(String),
    /// Something this build of the client does not do: `wss://` without the `tls`
    /// feature. The caller's choice.
    Unsupported(&'static str),
    /// The host name did not resolve to an address.
    Resolve {
        /// The host as given in the URL.
        host: String,
        /// Why, from the resolver.
        source: io::Error,
    },
    /// TCP could not connect to any address of the host; this is the last one tried.
    /// `source.kind()` is `ConnectionRefused` when nothing listens there.
    Connect {
        /// The address tried last.
        addr: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// An operation took longer than its timeout; [`Phase`] says which.
    Timeout(Phase),
    /// TLS failed: the server's certificate is not trusted or not valid for the host,
    /// the handshake failed, or the server sent an alert or a corrupt record.
    #[cfg(feature = "tls")]
    Tls(rustls::Error),
    /// The server answered the upgrade with another status than 101 (a refusal, an
    /// error, a redirect, which is not followed): its status, headers and body, so
    /// that the caller learns why ("invalid token"). The server's refusal.
    Rejected(Box<super::Rejection>),
    /// The server's `101 Switching Protocols` is not an acceptable one:
    /// [`ClientHandshakeError::BadAccept`] a wrong `Sec-WebSocket-Accept`, a missing
    /// `Upgrade`, an extension or subprotocol not offered, a malformed head. The
    /// server's fault. ([`ClientHandshakeError::Status`] only for a refusal whose head
    /// could not be read again, which does not happen with a head the client parsed.)
    Handshake(ClientHandshakeError),
    /// The server broke RFC 6455 (or a limit such as the maximum message size); the
    /// client sent a close frame with [`ProtocolError::code`] (1002, 1007 or 1009) and
    /// closed the connection. The server's fault.
    Protocol(ProtocolError),
    /// The server closed TCP without a close handshake (what RFC 6455 reports as
    /// 1006, abnormal closure).
    AbnormalClosure,
    /// A frame cannot be sent: a close frame has crossed already
    /// ([`SendError::Closed`]), a control payload is over 125 bytes, or a close code
    /// may not be sent. The caller's fault, or a race with the server's close.
    Send(SendError),
    /// The connection is over: `recv` after the close handshake or an error, or a
    /// send after an earlier write failed.
    Closed,
    /// Any other failure of the socket (a reset, a broken pipe).
    Io(io::Error),
}

impl Error {
    /// The close code the server sent or the client failed the connection with, when
    /// the error is about a close: [`Error::Protocol`] gives its code, and
    /// [`Error::AbnormalClosure`] 1006.
    pub fn close_code(&self) -> Option<crate::CloseCode> {
        match self {
            Error::Protocol(e) => Some(e.code),
            Error::AbnormalClosure => Some(crate::CloseCode::ABNORMAL),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Url(why) => write!(f, "unusable URL: {why}"),
            Error::Config(why) => write!(f, "invalid client setting: {why}"),
            Error::Unsupported(what) => write!(f, "not supported: {what}"),
            Error::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            Error::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            Error::Timeout(phase) => write!(f, "timed out ({phase:?})"),
            #[cfg(feature = "tls")]
            Error::Tls(e) => write!(f, "TLS failed: {e}"),
            Error::Rejected(r) => write!(f, "{r}"),
            Error::Handshake(e) => write!(f, "WebSocket upgrade failed: {e}"),
            Error::Protocol(e) => write!(f, "the server broke the protocol: {e}"),
            Error::AbnormalClosure => {
                f.write_str("the server closed the connection without a close handshake (1006)")
            }
            Error::Send(e) => write!(f, "cannot send: {e}"),
            Error::Closed => f.write_str("the connection is closed"),
            Error::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Resolve { source, .. } | Error::Connect { source, .. } => Some(source),
            #[cfg(feature = "tls")]
            Error::Tls(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Send(e) => Some(e),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        Error::Send(e)
    }
}

impl From<ClientHandshakeError> for Error {
    fn from(e: ClientHandshakeError) -> Self {
        Error::Handshake(e)
    }
}

/// Maps a socket error during `phase`: a timeout becomes [`Error::Timeout`] and, with
/// TLS, an error rustls raised inside an I/O call becomes [`Error::Tls`].
pub(crate) fn io_error(e: io::Error, phase: Phase) -> Error {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return Error::Timeout(phase);
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return Error::Tls(tls.clone());
    }
    Error::Io(e)
}
