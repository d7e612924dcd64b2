//! A blocking WebSocket client on the sans-IO client role of [`proto`](crate::proto).
//!
//! For tools, bots, bridges, tests and service-to-service links: one `std::net`
//! socket, no runtime, no thread of its own.
//!
//! ```no_run
//! use wsreactor::Message;
//! use wsreactor::client::{self, Incoming};
//!
//! let mut client = client::connect("ws://127.0.0.1:9001/")?;
//! client.send(Message::Text("hello"))?;
//! match client.recv()? {
//!     Incoming::Message(Message::Text(text)) => println!("{text}"),
//!     other => println!("{other:?}"),
//! }
//! client.close(wsreactor::CloseCode::NORMAL, "bye")?;
//! while !matches!(client.recv()?, Incoming::Close(_)) {}
//! # Ok::<(), wsreactor::client::Error>(())
//! ```
//!
//! # Receiving: borrowed, until the next call
//!
//! [`Client::recv`] returns an [`Incoming`] that borrows the client's input buffer,
//! as the server's callbacks do: a message that arrives whole is handed out where it
//! was read, unmasked in place, without a copy. It lives until the next call to
//! `recv`; keep what you need with `to_owned()`. To answer while holding a message,
//! send through a [`Sender`] ([`Client::sender`]).
//!
//! Pings are answered with pongs by `recv` itself, as they are decoded, so a client
//! that does not call `recv` answers none (as with any blocking client); `recv` also
//! hands the ping out, for information.
//!
//! # Sending from other threads
//!
//! [`Sender`] is `Clone + Send + Sync`: any number of threads may send while one
//! thread receives. Each send blocks until the kernel has taken its frame, and sends
//! are serialized: a frame is never interleaved with another, and frames go out in
//! the order their sends took the send lock. The reader never waits behind a long
//! send to answer a ping (see `write.rs` for how).
//!
//! # Closing
//!
//! [`Client::close`] (or [`Sender::close`]) sends a close frame; `recv` goes on
//! returning messages the server sent before its reply, then returns
//! [`Incoming::Close`] with the server's code, once the server has closed TCP (RFC
//! 6455 §7.1.1: the server closes first) or the close timeout has passed. A server
//! that does not answer within the close timeout gets `Error::Timeout(Phase::Close)`.
//! When the server closes first, `recv` answers, waits for the TCP close the same
//! way, and returns [`Incoming::Close`]. A server that breaks the protocol gets a
//! close frame with the code (1002, 1007, 1009) and [`Error::Protocol`] reports it.
//! After any of these, every call fails with [`Error::Closed`].
//!
//! Dropping the [`Client`] closes TCP at once (the server sees 1006); close first
//! for a clean end. [`Sender`]s then fail.
//!
//! # Refusals
//!
//! A server that answers the upgrade with another status than 101 is reported as
//! [`Error::Rejected`] with a [`Rejection`]: the status, the headers and the body (up
//! to [`MAX_REJECTION_BODY`]), so that a client learns why it was refused; its
//! `Display` is the status and the body's first line.
//!
//! # What it does not do
//!
//! - Redirects are not followed: a `3xx` is [`Error::Rejected`], its `Location` header
//!   in the [`Rejection`].
//! - HTTP proxies (`CONNECT`) are not supported.
//! - `wss://` needs the `tls` feature, and a root of trust given explicitly (no
//!   system roots): `ClientBuilder::root_certificates`, `ca_file`, `tls_config`, or
//!   for tests `danger_accept_invalid_certs`.
//! - Messages are sent whole, as one frame each.

use std::sync::Arc;

use crate::proto::{CloseCode, CloseFrame, Message};

mod builder;
mod error;
mod read;
mod rejection;
#[cfg(feature = "tls")]
mod tls;
mod url;
mod write;

pub use builder::ClientBuilder;
pub use error::{ClientHandshakeError, Error, Phase, ProtocolError, Result, SendError};
pub use rejection::{MAX_REJECTION_BODY, Rejection};
#[cfg(feature = "tls")]
pub use rustls;
#[cfg(feature = "tls")]
pub use tls::crypto_provider;

use read::Reader;
use write::Shared;

/// Connects to `url` (`ws://` or, with the `tls` feature, `wss://`) with the default
/// settings. See [`ClientBuilder`] for headers, subprotocols, timeouts and TLS.
///
/// # Errors
///
/// As [`ClientBuilder::connect`].
pub fn connect(url: impl Into<String>) -> Result<Client> {
    ClientBuilder::new(url).connect()
}

/// What [`Client::recv`] returns, borrowing the client until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A complete message (text is valid UTF-8).
    Message(Message<'a>),
    /// A ping; the pong has been sent already.
    Ping(&'a [u8]),
    /// A pong, answering a [`Client::ping`] (or unsolicited).
    Pong(&'a [u8]),
    /// The server's close frame (`None` when it carried no code: 1005). The close
    /// handshake is over and TCP is closed.
    Close(Option<CloseFrame<'a>>),
}

/// An open WebSocket connection: receives, and sends.
///
/// `Client` is `Send`: it may move to another thread. Only it receives; for sending
/// from other threads at the same time, see [`Client::sender`].
pub struct Client {
    shared: Arc<Shared>,
    reader: Reader,
    protocol: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
}

impl Client {
    /// Receives the next message, ping, pong or close frame, blocking until one
    /// arrives (or the read timeout passes). See the module docs.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] with [`Phase::Read`] when the read timeout passes: nothing
    /// is lost, call again. [`Error::Protocol`] when the server broke the protocol
    /// (the code sent is in it), [`Error::AbnormalClosure`] when it closed TCP without
    /// a close frame, [`Error::Timeout`] with [`Phase::Close`] when it did not answer
    /// our close, `Error::Tls` for a TLS failure, [`Error::Io`] for a reset; after
    /// those and after [`Incoming::Close`], [`Error::Closed`].
    pub fn recv(&mut self) -> Result<Incoming<'_>> {
        self.reader.recv(&self.shared)
    }

    /// Sends a message as one frame, blocking until the kernel has taken it.
    ///
    /// # Errors
    ///
    /// [`Error::Send`] with [`SendError::Closed`] once a close frame has been sent or
    /// received; [`Error::Timeout`] with [`Phase::Write`] or [`Error::Io`] when the
    /// write fails, after which nothing more can be sent ([`Error::Closed`]).
    pub fn send(&self, message: Message<'_>) -> Result<()> {
        self.shared.send(message)
    }

    /// Sends a ping (at most 125 bytes); the server's pong arrives through `recv`.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and [`SendError::ControlTooLong`].
    pub fn ping(&self, payload: &[u8]) -> Result<()> {
        self.shared.ping(payload)
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes);
    /// [`recv`](Self::recv) then returns the server's [`Incoming::Close`].
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), and [`SendError::InvalidCloseCode`] for a code that
    /// may not be sent (1005 sends a close frame without a code).
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        self.shared.close(code, reason)
    }

    /// A handle for sending from any thread while this one receives.
    pub fn sender(&self) -> Sender {
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The subprotocol the server chose among those offered, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The value of the first header of the server's 101 response called `name`
    /// (case-insensitive).
    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.reader.is_ended() {
            self.shared.shut_down();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("protocol", &self.protocol)
            .field("ended", &self.reader.is_ended())
            .finish_non_exhaustive()
    }
}

/// Sends on a [`Client`]'s connection from any thread; cheap to clone.
///
/// Sends from all senders and the client are serialized (see the module docs).
#[derive(Clone)]
pub struct Sender {
    shared: Arc<Shared>,
}

impl Sender {
    /// As [`Client::send`].
    ///
    /// # Errors
    ///
    /// As [`Client::send`].
    pub fn send(&self, message: Message<'_>) -> Result<()> {
        self.shared.send(message)
    }

    /// As [`Client::ping`].
    ///
    /// # Errors
    ///
    /// As [`Client::ping`].
    pub fn ping(&self, payload: &[u8]) -> Result<()> {
        self.shared.ping(payload)
    }

    /// As [`Client::close`]. If the client's thread is blocked in `recv` at that
    /// moment, a short-lived thread ends the connection should the server not answer
    /// within the close timeout (a blocked read cannot be given a new deadline).
    ///
    /// # Errors
    ///
    /// As [`Client::close`].
    pub fn close(&self, code: CloseCode, reason: &str) -> Result<()> {
        self.shared.close(code, reason)
    }
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}
