//! The HTTP/1.1 upgrade that opens a WebSocket (RFC 6455 §4), both roles, sans-IO.
//!
//! Server side: [`parse_http_request`] parses a request head in place with `httparse` (no copy,
//! no allocation), [`Request::from_http`] checks it as a WebSocket opening handshake, and
//! [`write_accept`], [`write_error`], [`write_status`] or [`write_http_response`] write the
//! answer into a buffer the caller owns. [`parse_request`] does the first two steps at once.
//!
//! Client side (the load harness and tests): [`encode_key`], [`write_request`] and
//! [`parse_response`].
//!
//! Too little input is not an error: the parsers return `Ok(None)` and consume nothing, and the
//! caller retries with more bytes. On success they also return the length of the head; the
//! bytes after it already belong to the WebSocket stream.
//!
//! # Order of the checks
//!
//! A request that does not ask for `Upgrade: websocket` at all is not a WebSocket handshake, so
//! it is [`HandshakeError::NotUpgrade`] whatever its method or version: the engine answers it
//! with 426, or hands the [`HttpRequest`] to its plain-HTTP hook. Requests that do ask for the
//! upgrade are then checked in this order: method `GET` (405), `HTTP/1.1` (400), exactly one
//! `Host` (400), no request body (400), `Connection: upgrade` (400), `Sec-WebSocket-Version: 13`
//! (426), exactly one valid `Sec-WebSocket-Key` (400), at most one `Origin` (400).
//!
//! # Examples
//!
//! ```
//! use wsreactor::proto::handshake::{self, EMPTY_HEADER, HandshakeError, Request};
//!
//! let input = b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
//!     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
//!     Sec-WebSocket-Version: 13\r\n\r\n";
//! let mut headers = [EMPTY_HEADER; handshake::DEFAULT_MAX_HEADERS];
//! let mut out = Vec::with_capacity(256);
//! match handshake::parse_http_request(input, &mut headers, handshake::DEFAULT_MAX_HEADER_BYTES) {
//!     Ok(None) => { /* read more bytes, then call again with the whole head so far */ }
//!     Ok(Some((http, _consumed))) => match Request::from_http(http) {
//!         Ok(req) => {
//!             assert_eq!(req.path(), "/chat");
//!             handshake::write_accept(&mut out, req.key().as_bytes(), None, None);
//!         }
//!         // Plain HTTP: `http` is still here for a hook that serves a page.
//!         Err(HandshakeError::NotUpgrade) if http.path() == "/" => {
//!             handshake::write_http_response(&mut out, 200, "text/plain", b"hello\n");
//!         }
//!         Err(e) => handshake::write_error(&mut out, &e), // 426 for NotUpgrade
//!     },
//!     Err(e) => handshake::write_error(&mut out, &e),
//! }
//! assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::BufMut;
use sha1::{Digest, Sha1};

pub use httparse::{EMPTY_HEADER, Header};

/// The GUID that RFC 6455 §1.3 appends to the client's key before hashing it.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Default limit on the length of a request head, in bytes.
///
/// 8 KiB is what nginx and most servers allow per header buffer; browsers' upgrade requests
/// are well under 1 KiB, even with cookies they rarely pass 4 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8192;

/// Default number of header slots, which is the limit on the number of request headers.
///
/// A browser sends 10 to 20; 64 leaves room for proxies' additions while the slot array
/// (32 bytes a slot) stays at 2 KiB on the stack.
pub const DEFAULT_MAX_HEADERS: usize = 64;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a request is not a WebSocket opening handshake the server can accept.
///
/// Every variant is the peer's fault (or, for [`NotUpgrade`](Self::NotUpgrade), simply a request
/// of another kind); none is ours. [`status`](Self::status) is the HTTP status to answer with,
/// and [`write_error`] writes that answer.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The request does not ask for `Upgrade: websocket`: it is plain HTTP. Peer's choice;
    /// answered with 426, or handed to the plain-HTTP hook. Re-use the [`HttpRequest`] from
    /// [`parse_http_request`] to see it.
    NotUpgrade,
    /// The request asks for the upgrade but breaks HTTP or RFC 6455; the text says which rule.
    /// Peer's fault; 400.
    BadRequest(&'static str),
    /// The upgrade was asked with a method other than `GET`. Peer's fault; 405 with `Allow: GET`,
    /// which tells the client exactly what to change (400 would not).
    MethodNotAllowed,
    /// `Sec-WebSocket-Version` is missing or is not 13. Peer's fault; 426 with
    /// `Sec-WebSocket-Version: 13`, as RFC 6455 §4.4 asks.
    UnsupportedVersion,
    /// The request head is longer than the caller's limit. Peer's fault; 431.
    HeaderTooLarge,
    /// The request has more headers than the caller gave slots for. Peer's fault; 431.
    TooManyHeaders,
}

impl HandshakeError {
    /// The HTTP status code to answer this error with.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::NotUpgrade | Self::UnsupportedVersion => 426,
            Self::BadRequest(_) => 400,
            Self::MethodNotAllowed => 405,
            Self::HeaderTooLarge | Self::TooManyHeaders => 431,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUpgrade => f.write_str("not a WebSocket upgrade request"),
            Self::BadRequest(why) => write!(f, "bad WebSocket upgrade request: {why}"),
            Self::MethodNotAllowed => f.write_str("WebSocket upgrade with a method other than GET"),
            Self::UnsupportedVersion => f.write_str("Sec-WebSocket-Version is not 13"),
            Self::HeaderTooLarge => f.write_str("request head longer than the limit"),
            Self::TooManyHeaders => f.write_str("more request headers than the limit"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Why a server's answer to our opening handshake is refused (client side).
///
/// Every variant is the server's fault, or its refusal; none is ours.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientHandshakeError {
    /// The response head is not valid HTTP/1.1, too long or has too many headers.
    Malformed(&'static str),
    /// The server answered with this status instead of 101: it refused the upgrade.
    Status(u16),
    /// `Upgrade: websocket` or `Connection: upgrade` is missing from the 101 response.
    NotUpgrade,
    /// `Sec-WebSocket-Accept` is missing, repeated or does not match our key.
    BadAccept,
    /// The server chose a subprotocol we did not offer, or sent several.
    UnofferedProtocol,
    /// The server enabled extensions, and we offer none.
    UnexpectedExtensions,
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed handshake response: {why}"),
            Self::Status(code) => write!(f, "server refused the upgrade with status {code}"),
            Self::NotUpgrade => f.write_str("101 response without Upgrade/Connection: websocket"),
            Self::BadAccept => f.write_str("Sec-WebSocket-Accept does not match our key"),
            Self::UnofferedProtocol => f.write_str("server chose a subprotocol we did not offer"),
            Self::UnexpectedExtensions => f.write_str("server enabled extensions we did not offer"),
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

fn syntax_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key ++ [`GUID`])).
///
/// `key` is the header value as sent (the base64 text, not the decoded nonce). No allocation.
#[must_use]
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID.as_bytes());
    let mut out = [0; 28];
    // A 20-byte digest always encodes to exactly 28 bytes, so this cannot fail.
    let written = STANDARD.encode_slice(sha1.finalize(), &mut out);
    debug_assert_eq!(written, Ok(28));
    out
}

/// The `Sec-WebSocket-Key` for a 16-byte nonce; the caller supplies the randomness.
#[must_use]
pub fn encode_key(nonce: [u8; 16]) -> [u8; 24] {
    let mut out = [0; 24];
    // 16 bytes always encode to exactly 24 bytes, so this cannot fail.
    let written = STANDARD.encode_slice(nonce, &mut out);
    debug_assert_eq!(written, Ok(24));
    out
}

/// A key is valid when it is base64 of exactly 16 bytes (RFC 6455 §4.2.1 item 5).
fn is_valid_key(key: &[u8]) -> bool {
    // Room for the decoder's estimate (18 bytes for 24 characters); only 16 is right.
    let mut nonce = [0; 18];
    key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut nonce), Ok(16))
}

mod client;
mod query;
pub(crate) mod request;
mod response;
#[cfg(test)]
mod tests;

pub use client::*;
pub use request::*;
pub use response::*;
