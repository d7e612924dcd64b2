//! Errors: what went wrong, and whose fault it was.

use std::fmt;
use std::io;

pub use crate::proto::conn::{ProtocolError, SendError};
pub use crate::proto::handshake::HandshakeError;

/// The result type of fallible server operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from building, starting or stopping a server.
///
/// Errors on single connections (a peer breaking the protocol, a send refused) never
/// surface here: they close that connection with the right code and are counted in
/// [`Stats`](crate::Stats). See [`ProtocolError`], [`HandshakeError`] and
/// [`SendError`] for those.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Binding, listening or creating the event loop failed (the environment's
    /// fault: the address is in use, a limit was reached).
    Io(io::Error),
    /// The configuration is inconsistent (the caller's fault).
    Config(&'static str),
    /// A reactor thread panicked outside any user callback (our fault).
    ReactorPanicked,
    /// rustls refused the TLS configuration (feature `tls`).
    #[cfg(feature = "tls")]
    Tls(rustls::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "i/o error: {e}"),
            Error::Config(what) => write!(f, "invalid configuration: {what}"),
            Error::ReactorPanicked => f.write_str("a reactor thread panicked"),
            #[cfg(feature = "tls")]
            Error::Tls(e) => write!(f, "tls: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            #[cfg(feature = "tls")]
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}
