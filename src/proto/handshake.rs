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

// ---------------------------------------------------------------------------------------------
// Server: parsing
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.x request head, borrowed from the read buffer; not yet checked as a WebSocket
/// handshake. Plain-HTTP hooks see this.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'h, 'b> {
    method: &'b str,
    target: &'b str,
    minor_version: u8,
    headers: &'h [Header<'b>],
}

/// Parses an HTTP/1.x request head in place, checking only syntax and size.
///
/// The number of headers allowed is `headers.len()`. Returns `Ok(None)` while the head is
/// incomplete (nothing is consumed), or the request and the length of its head.
///
/// # Errors
///
/// [`HandshakeError::HeaderTooLarge`] when the head is longer than `max_header_bytes`, even
/// before it is complete; [`HandshakeError::TooManyHeaders`] when it has more headers than
/// `headers` has slots; [`HandshakeError::BadRequest`] when it is not valid HTTP/1.x.
pub fn parse_http_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    max_header_bytes: usize,
) -> Result<Option<(HttpRequest<'h, 'b>, usize)>, HandshakeError> {
    // Parse no further than the limit: a head still open there is too large whatever follows,
    // and a peer cannot make us rescan megabytes on every read.
    let window = &buf[..buf.len().min(max_header_bytes)];
    let mut req = httparse::Request::new(headers);
    let len = match req.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max_header_bytes => {
            return Err(HandshakeError::HeaderTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(e) => return Err(HandshakeError::BadRequest(syntax_reason(e))),
    };
    let httparse::Request {
        method,
        path,
        version,
        headers,
    } = req;
    match (method, path, version) {
        (Some(method), Some(target), Some(minor_version)) => Ok(Some((
            HttpRequest {
                method,
                target,
                minor_version,
                headers,
            },
            len,
        ))),
        // httparse fills all three on a complete head; this arm only avoids a panic path.
        _ => Err(HandshakeError::BadRequest("incomplete request line")),
    }
}

/// Parses and checks a WebSocket opening handshake: [`parse_http_request`] then
/// [`Request::from_http`].
///
/// Returns `Ok(None)` while the head is incomplete (nothing is consumed), or the request and
/// the length of its head; bytes after the head belong to the WebSocket stream.
///
/// # Errors
///
/// Any [`HandshakeError`]; see the module docs for the order of the checks. On
/// [`HandshakeError::NotUpgrade`], a caller that wants to see the plain request uses
/// [`parse_http_request`] and [`Request::from_http`] instead, which keep it.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    max_header_bytes: usize,
) -> Result<Option<(Request<'h, 'b>, usize)>, HandshakeError> {
    match parse_http_request(buf, headers, max_header_bytes)? {
        None => Ok(None),
        Some((http, len)) => Ok(Some((Request::from_http(http)?, len))),
    }
}

impl<'h, 'b> HttpRequest<'h, 'b> {
    /// The method, such as `GET` (case-sensitive, as HTTP says).
    #[must_use]
    pub fn method(&self) -> &'b str {
        self.method
    }

    /// The request target as sent: path and query.
    #[must_use]
    pub fn target(&self) -> &'b str {
        self.target
    }

    /// The target up to `?`. An absolute-form target (`http://host/p`) is returned whole.
    #[must_use]
    pub fn path(&self) -> &'b str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    /// The target after the first `?`, if there is one.
    #[must_use]
    pub fn query(&self) -> Option<&'b str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    /// The minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    #[must_use]
    pub fn minor_version(&self) -> u8 {
        self.minor_version
    }

    /// The value of the first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        header_value(self.headers, name)
    }

    /// All headers in the order they came, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + Clone + use<'h, 'b> {
        self.headers.iter().map(|h| (h.name, h.value))
    }
}

/// A checked WebSocket opening handshake, borrowed from the read buffer: nothing is copied.
#[derive(Debug, Clone, Copy)]
pub struct Request<'h, 'b> {
    http: HttpRequest<'h, 'b>,
    host: &'b str,
    origin: Option<&'b str>,
    key: &'b str,
}

/// What one pass over the headers finds; counts catch the headers that must appear once.
#[derive(Default)]
struct Found<'b> {
    upgrade_websocket: bool,
    connection_upgrade: bool,
    has_body: bool,
    hosts: usize,
    host: &'b [u8],
    origins: usize,
    origin: &'b [u8],
    keys: usize,
    key: &'b [u8],
    versions: usize,
    version_13: bool,
}

impl<'h, 'b> Request<'h, 'b> {
    /// Checks a parsed request as a WebSocket opening handshake (RFC 6455 §4.2.1).
    ///
    /// `http` is `Copy`, so on [`HandshakeError::NotUpgrade`] the caller still has it to hand
    /// to a plain-HTTP hook.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::NotUpgrade`] when there is no `Upgrade: websocket`; otherwise the first
    /// rule broken, in the order given in the module docs.
    pub fn from_http(http: HttpRequest<'h, 'b>) -> Result<Self, HandshakeError> {
        use HandshakeError::{BadRequest, MethodNotAllowed, NotUpgrade, UnsupportedVersion};
        let mut f = Found::default();
        for h in http.headers {
            let (name, value) = (h.name.as_bytes(), h.value);
            // Dispatch on length first: most headers are then dismissed by one compare.
            match name.len() {
                4 if eq_lowercase(name, b"host") => {
                    f.hosts += 1;
                    f.host = value;
                }
                6 if eq_lowercase(name, b"origin") => {
                    f.origins += 1;
                    f.origin = value;
                }
                7 if eq_lowercase(name, b"upgrade") => {
                    f.upgrade_websocket |= has_token(value, b"websocket");
                }
                10 if eq_lowercase(name, b"connection") => {
                    f.connection_upgrade |= has_token(value, b"upgrade");
                }
                // A body would be read as WebSocket frames: refuse rather than mis-frame.
                14 if eq_lowercase(name, b"content-length") => f.has_body |= value != b"0",
                17 if eq_lowercase(name, b"transfer-encoding") => f.has_body = true,
                17 if eq_lowercase(name, b"sec-websocket-key") => {
                    f.keys += 1;
                    f.key = value;
                }
                21 if eq_lowercase(name, b"sec-websocket-version") => {
                    f.versions += 1;
                    f.version_13 = value == b"13";
                }
                _ => {}
            }
        }
        if !f.upgrade_websocket {
            return Err(NotUpgrade);
        }
        if http.method != "GET" {
            return Err(MethodNotAllowed);
        }
        if http.minor_version != 1 {
            return Err(BadRequest("WebSocket needs HTTP/1.1"));
        }
        let host = match f.hosts {
            0 => return Err(BadRequest("missing Host")),
            1 => std::str::from_utf8(f.host).map_err(|_| BadRequest("invalid Host"))?,
            _ => return Err(BadRequest("more than one Host")),
        };
        if f.has_body {
            return Err(BadRequest("upgrade request with a body"));
        }
        if !f.connection_upgrade {
            return Err(BadRequest("Connection lacks the upgrade token"));
        }
        if f.versions != 1 || !f.version_13 {
            return Err(UnsupportedVersion);
        }
        let key = match f.keys {
            0 => return Err(BadRequest("missing Sec-WebSocket-Key")),
            1 if is_valid_key(f.key) => {
                std::str::from_utf8(f.key).map_err(|_| BadRequest("invalid Sec-WebSocket-Key"))?
            }
            1 => return Err(BadRequest("invalid Sec-WebSocket-Key")),
            _ => return Err(BadRequest("more than one Sec-WebSocket-Key")),
        };
        // Two origins, or one that is not text, could slip past an origin check: refuse them.
        let origin = match f.origins {
            0 => None,
            1 => Some(std::str::from_utf8(f.origin).map_err(|_| BadRequest("invalid Origin"))?),
            _ => return Err(BadRequest("more than one Origin")),
        };
        Ok(Request {
            http,
            host,
            origin,
            key,
        })
    }

    /// The request as plain HTTP.
    #[must_use]
    pub fn http(&self) -> &HttpRequest<'h, 'b> {
        &self.http
    }

    /// The target up to `?`, such as `/chat`.
    #[must_use]
    pub fn path(&self) -> &'b str {
        self.http.path()
    }

    /// The target after the first `?`, if there is one.
    #[must_use]
    pub fn query(&self) -> Option<&'b str> {
        self.http.query()
    }

    /// The `Host` header (exactly one is present).
    #[must_use]
    pub fn host(&self) -> &'b str {
        self.host
    }

    /// The `Origin` header, which browsers always send and other clients usually do not.
    #[must_use]
    pub fn origin(&self) -> Option<&'b str> {
        self.origin
    }

    /// The `Sec-WebSocket-Key` as sent (24 base64 characters); pass it to [`write_accept`].
    #[must_use]
    pub fn key(&self) -> &'b str {
        self.key
    }

    /// The value of the first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.http.header(name)
    }

    /// All headers in the order they came, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + Clone + use<'h, 'b> {
        self.http.headers()
    }

    /// The subprotocols offered in all `Sec-WebSocket-Protocol` headers, in order: values are
    /// split at commas and trimmed; empty items and values that are not UTF-8 are skipped.
    pub fn subprotocols(&self) -> impl Iterator<Item = &'b str> + Clone + use<'h, 'b> {
        header_values(self.http.headers, "sec-websocket-protocol")
            .filter_map(|value| std::str::from_utf8(value).ok())
            .flat_map(|value| value.split(','))
            .map(trim_ows)
            .filter(|protocol| !protocol.is_empty())
    }

    /// The extensions offered in all `Sec-WebSocket-Extensions` headers, in order (RFC 6455
    /// §9.1). Parsing is lenient and never fails: malformed pieces are skipped.
    pub fn extensions(&self) -> impl Iterator<Item = ExtensionOffer<'b>> + Clone + use<'h, 'b> {
        header_values(self.http.headers, "sec-websocket-extensions")
            .filter_map(|value| std::str::from_utf8(value).ok())
            .flat_map(|value| SplitUnquoted::new(value, b','))
            .filter_map(ExtensionOffer::parse)
    }
}

/// One offer from `Sec-WebSocket-Extensions`, such as
/// `permessage-deflate; client_max_window_bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionOffer<'b> {
    name: &'b str,
    params: &'b str,
}

impl<'b> ExtensionOffer<'b> {
    fn parse(offer: &'b str) -> Option<Self> {
        let (name, params) = split_unquoted(offer, b';');
        let name = trim_ows(name);
        (!name.is_empty()).then_some(ExtensionOffer {
            name,
            params: params.unwrap_or(""),
        })
    }

    /// The extension's name, such as `permessage-deflate`.
    #[must_use]
    pub fn name(&self) -> &'b str {
        self.name
    }

    /// The parameters as (name, value), in order. Values given as quoted strings come without
    /// their quotes; a parameter without `=` has no value; empty parameters are skipped.
    pub fn params(&self) -> impl Iterator<Item = (&'b str, Option<&'b str>)> + Clone + use<'b> {
        SplitUnquoted::new(self.params, b';').filter_map(|param| {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name, Some(unquote(trim_ows(value)))),
                None => (param, None),
            };
            let name = trim_ows(name);
            (!name.is_empty()).then_some((name, value))
        })
    }
}

/// Splits `s` at `sep` outside quoted strings (RFC 9110 §5.6.4, `\` escapes honoured).
#[derive(Debug, Clone)]
struct SplitUnquoted<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> SplitUnquoted<'a> {
    fn new(s: &'a str, sep: u8) -> Self {
        SplitUnquoted { rest: Some(s), sep }
    }
}

impl<'a> Iterator for SplitUnquoted<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let (item, rest) = split_unquoted(self.rest?, self.sep);
        self.rest = rest;
        Some(item)
    }
}

/// The text before the first `sep` outside quotes, and the text after it if there is one.
/// An unterminated quote runs to the end.
fn split_unquoted(s: &str, sep: u8) -> (&str, Option<&str>) {
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == sep {
            // `sep` is ASCII, so both sides of it are char boundaries.
            return (&s[..i], Some(&s[i + 1..]));
        }
    }
    (s, None)
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

/// Trims HTTP's optional whitespace (space and tab), not Unicode's.
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn header_value<'b>(headers: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn header_values<'h, 'b>(
    headers: &'h [Header<'b>],
    name: &'static str,
) -> impl Iterator<Item = &'b [u8]> + Clone + use<'h, 'b> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Whether a comma-separated header value holds `token` (case-insensitive), as in
/// `Connection: keep-alive, Upgrade`. `token` is lowercase letters.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| eq_lowercase(item.trim_ascii(), token))
}

/// ASCII case-insensitive equality with `lower`, which must hold only lowercase letters and `-`.
///
/// Setting bit 5 maps exactly the two cases of a letter to that letter, so letters compare
/// exactly; a `-` in `lower` also accepts CR, which httparse never lets into a header name.
/// Inlined, this beats the general `eq_ignore_ascii_case` on the handshake's hot path.
#[inline]
fn eq_lowercase(bytes: &[u8], lower: &[u8]) -> bool {
    bytes.len() == lower.len() && bytes.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l)
}

// ---------------------------------------------------------------------------------------------
// Server: responses
// ---------------------------------------------------------------------------------------------

/// Writes the complete `101 Switching Protocols` response for a client's key.
///
/// `key` is [`Request::key`]. `protocol` is the chosen subprotocol (one the client offered) and
/// `extensions` the negotiated `Sec-WebSocket-Extensions` value. Allocation-free when `out` has
/// the capacity (about 130 bytes plus the options).
///
/// # Panics
///
/// If `protocol` or `extensions` contains CR, LF or NUL (that would split the response; values
/// taken from a parsed request never do), or if `out` cannot grow and is too small.
pub fn write_accept<B: BufMut>(
    out: &mut B,
    key: &[u8],
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    out.put_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: ",
    );
    out.put_slice(&accept_key(key));
    out.put_slice(b"\r\n");
    if let Some(protocol) = protocol {
        put_header(out, "Sec-WebSocket-Protocol", protocol.as_bytes());
    }
    if let Some(extensions) = extensions {
        put_header(out, "Sec-WebSocket-Extensions", extensions.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// Writes the answer to a refused handshake, after which the connection is closed.
///
/// 426 carries `Upgrade: websocket` and `Sec-WebSocket-Version: 13` (RFC 6455 §4.4, RFC 9110
/// §15.5.22), 405 carries `Allow: GET`; all carry `Content-Length: 0`.
///
/// # Panics
///
/// Only if `out` cannot grow and is too small.
pub fn write_error<B: BufMut>(out: &mut B, error: &HandshakeError) {
    let status = error.status();
    put_status_line(out, status);
    match status {
        // An Upgrade header needs the `upgrade` connection option beside it (RFC 9110 §7.8).
        426 => out.put_slice(
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\
              Connection: Upgrade, close\r\n\r\n",
        ),
        405 => out.put_slice(b"Allow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        _ => out.put_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// Writes an empty response with any status, such as 403 for a refused origin, with
/// `Content-Length: 0` and `Connection: close`.
///
/// Meant for refusals: 1xx, 204 and 304 must not carry `Content-Length`, so do not use it
/// for those.
///
/// # Panics
///
/// If `status` is not in `100..=999`, or if `out` cannot grow and is too small.
pub fn write_status<B: BufMut>(out: &mut B, status: u16) {
    put_status_line(out, status);
    out.put_slice(b"Content-Length: 0\r\nConnection: close\r\n\r\n");
}

/// Writes a complete plain-HTTP response with a body, for a hook that serves a page.
///
/// The connection is closed after it (`Connection: close`): the engine is not an HTTP server
/// and does not keep plain connections alive. For `HEAD` requests pass an empty body.
///
/// # Panics
///
/// If `status` is not in `100..=999`, if `content_type` contains CR, LF or NUL, or if `out`
/// cannot grow and is too small.
pub fn write_http_response<B: BufMut>(out: &mut B, status: u16, content_type: &str, body: &[u8]) {
    put_status_line(out, status);
    put_header(out, "Content-Type", content_type.as_bytes());
    out.put_slice(b"Content-Length: ");
    put_decimal(out, body.len());
    out.put_slice(b"\r\nConnection: close\r\n\r\n");
    out.put_slice(body);
}

/// The reason phrase for the common statuses, or `""` (which HTTP allows) for the rest.
#[must_use]
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn put_status_line<B: BufMut>(out: &mut B, status: u16) {
    assert!(
        (100..=999).contains(&status),
        "HTTP status {status} is not three digits"
    );
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(out, usize::from(status));
    out.put_u8(b' ');
    out.put_slice(reason_phrase(status).as_bytes());
    out.put_slice(b"\r\n");
}

fn put_header<B: BufMut>(out: &mut B, name: &str, value: &[u8]) {
    assert_header_text(value);
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Refuses bytes that would end a header line early and let text become headers or a body.
fn assert_header_text(text: &[u8]) {
    assert!(
        !text.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
        "header text contains CR, LF or NUL"
    );
}

/// Decimal digits without `format!`, so the response paths stay allocation-free.
fn put_decimal<B: BufMut>(out: &mut B, mut n: usize) {
    let mut digits = [0; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// Writes a client's opening handshake request.
///
/// `key` comes from [`encode_key`]; `protocols` are offered in order, in one
/// `Sec-WebSocket-Protocol` header; `extra_headers` (such as `Origin`) follow as given.
///
/// # Panics
///
/// If `path_and_query` contains whitespace, if any other text contains CR, LF or NUL, or if an
/// extra header name contains `:` or whitespace — all caller errors that would corrupt the
/// request — or if `out` cannot grow and is too small.
pub fn write_request<B: BufMut>(
    out: &mut B,
    host: &str,
    path_and_query: &str,
    key: &[u8; 24],
    protocols: &[&str],
    extra_headers: &[(&str, &str)],
) {
    assert!(
        !path_and_query
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == 0),
        "request target contains whitespace"
    );
    out.put_slice(b"GET ");
    out.put_slice(path_and_query.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    put_header(out, "Host", host.as_bytes());
    out.put_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.put_slice(key);
    out.put_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
    if !protocols.is_empty() {
        out.put_slice(b"Sec-WebSocket-Protocol: ");
        for (i, protocol) in protocols.iter().enumerate() {
            assert_header_text(protocol.as_bytes());
            if i > 0 {
                out.put_slice(b", ");
            }
            out.put_slice(protocol.as_bytes());
        }
        out.put_slice(b"\r\n");
    }
    for (name, value) in extra_headers {
        assert!(
            !name.is_empty() && !name.bytes().any(|b| b == b':' || b <= b' ' || b >= 0x7f),
            "invalid header name {name:?}"
        );
        put_header(out, name, value.as_bytes());
    }
    out.put_slice(b"\r\n");
}

/// A server's checked `101 Switching Protocols` response, borrowed from the read buffer.
#[derive(Debug, Clone, Copy)]
pub struct Response<'h, 'b> {
    status: u16,
    protocol: Option<&'b str>,
    headers: &'h [Header<'b>],
}

impl<'h, 'b> Response<'h, 'b> {
    /// The status code: always 101 once checked.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The subprotocol the server chose among those offered, if it chose one.
    #[must_use]
    pub fn protocol(&self) -> Option<&'b str> {
        self.protocol
    }

    /// The value of the first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        header_value(self.headers, name)
    }

    /// All headers in the order they came, as (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + Clone + use<'h, 'b> {
        self.headers.iter().map(|h| (h.name, h.value))
    }
}

/// Parses and checks a server's answer to our opening handshake (RFC 6455 §4.1).
///
/// Returns `Ok(None)` while the head is incomplete (nothing is consumed), or the response and
/// the length of its head; bytes after it are WebSocket frames. The head may be at most
/// [`DEFAULT_MAX_HEADER_BYTES`] long. A server may decline every offered subprotocol; then
/// [`Response::protocol`] is `None` and the caller decides whether to go on.
///
/// # Errors
///
/// [`ClientHandshakeError::Status`] for any status but 101, and the other variants for a 101
/// that breaks RFC 6455: missing upgrade tokens, a wrong accept key, an unoffered subprotocol,
/// or any extension (we offer none yet).
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    key: &[u8; 24],
    offered_protocols: &[&str],
) -> Result<Option<(Response<'h, 'b>, usize)>, ClientHandshakeError> {
    use ClientHandshakeError::{BadAccept, Malformed, NotUpgrade, UnofferedProtocol};
    let window = &buf[..buf.len().min(DEFAULT_MAX_HEADER_BYTES)];
    let mut res = httparse::Response::new(headers);
    let len = match res.parse(window) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > DEFAULT_MAX_HEADER_BYTES => {
            return Err(Malformed("response head too long"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Malformed(syntax_reason(e))),
    };
    let httparse::Response {
        version,
        code,
        headers,
        ..
    } = res;
    let status = code.ok_or(Malformed("missing status"))?;
    if status != 101 {
        return Err(ClientHandshakeError::Status(status));
    }
    if version != Some(1) {
        return Err(Malformed("101 needs HTTP/1.1"));
    }
    let expected_accept = accept_key(key);
    let (mut upgrade, mut connection, mut accepts, mut protocols) = (false, false, 0, 0);
    let mut protocol = None;
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, b"websocket");
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, b"upgrade");
        } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepts += 1;
            if h.value != expected_accept {
                return Err(BadAccept);
            }
        } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
            protocols += 1;
            protocol = std::str::from_utf8(h.value).ok();
        } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && !h.value.trim_ascii().is_empty()
        {
            return Err(ClientHandshakeError::UnexpectedExtensions);
        }
    }
    if !upgrade || !connection {
        return Err(NotUpgrade);
    }
    if accepts != 1 {
        return Err(BadAccept);
    }
    let protocol = match (protocols, protocol) {
        (0, _) => None,
        (1, Some(p)) if offered_protocols.contains(&p) => Some(p),
        _ => return Err(UnofferedProtocol),
    };
    Ok(Some((
        Response {
            status,
            protocol,
            headers,
        },
        len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn request_with(lines: &[&str]) -> Vec<u8> {
        let mut head = lines.join("\r\n");
        head.push_str("\r\n\r\n");
        head.into_bytes()
    }

    /// A header line to swap in, by the prefix of the line it replaces; `None` drops it.
    type Edit<'a> = (&'a str, Option<&'a str>);
    /// An extension offer, owned: name and (name, value) parameters.
    type Offer = (String, Vec<(String, Option<String>)>);

    /// A valid upgrade request with `replace` swapped in for the line that starts the same way
    /// (up to the colon, or the first word for the request line); `None` drops that line.
    fn request_except(replace: &[Edit<'_>]) -> Vec<u8> {
        let base = [
            "GET /chat?room=1&x=2 HTTP/1.1",
            "Host: server.example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Origin: http://example.com",
            "Sec-WebSocket-Protocol: chat, superchat",
            "Sec-WebSocket-Version: 13",
        ];
        let mut lines: Vec<String> = Vec::new();
        for line in base {
            let prefix = line.split([':', ' ']).next().unwrap_or(line);
            match replace.iter().find(|(p, _)| *p == prefix) {
                Some((_, Some(new))) => lines.push((*new).to_owned()),
                Some((_, None)) => {}
                None => lines.push(line.to_owned()),
            }
        }
        for (p, new) in replace {
            if !base.iter().any(|l| l.starts_with(p)) {
                lines.extend(new.map(str::to_owned));
            }
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        request_with(&refs)
    }

    fn parse(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
        parse_request(buf, &mut headers, DEFAULT_MAX_HEADER_BYTES).map(|r| r.map(|(_, n)| n))
    }

    fn error_of(replace: &[Edit<'_>]) -> HandshakeError {
        match parse(&request_except(replace)) {
            Err(e) => e,
            other => panic!("expected an error for {replace:?}, got {other:?}"),
        }
    }

    fn accept_response(key: &[u8], protocol: Option<&str>, extensions: Option<&str>) -> String {
        let mut out = Vec::new();
        write_accept(&mut out, key, protocol, extensions);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc_6455_example_accept_key() {
        assert_eq!(&accept_key(KEY.as_bytes()), ACCEPT.as_bytes());
    }

    #[test]
    fn encode_key_is_base64_of_the_nonce() {
        assert_eq!(&encode_key(*b"the sample nonce"), KEY.as_bytes());
    }

    #[test]
    fn valid_request_exposes_its_parts_without_copying() {
        let buf = request_except(&[]);
        let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
        let (req, n) = parse_request(&buf, &mut headers, DEFAULT_MAX_HEADER_BYTES)
            .unwrap()
            .unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), Some("room=1&x=2"));
        assert_eq!(req.host(), "server.example.com");
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.key(), KEY);
        assert_eq!(req.header("sec-websocket-VERSION"), Some(&b"13"[..]));
        assert_eq!(req.header("X-Missing"), None);
        assert_eq!(req.headers().count(), 7);
        assert_eq!(
            req.headers().next(),
            Some(("Host", &b"server.example.com"[..]))
        );
        assert_eq!(req.http().method(), "GET");
        assert_eq!(req.http().target(), "/chat?room=1&x=2");
        assert_eq!(req.http().minor_version(), 1);
        assert_eq!(
            req.subprotocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        assert_eq!(req.extensions().count(), 0);
        // Zero copy: the path points into the read buffer.
        assert!(buf.as_ptr_range().contains(&req.path().as_ptr()));
    }

    #[test]
    fn path_without_query_and_origin_are_optional() {
        let buf = request_except(&[("GET", Some("GET / HTTP/1.1")), ("Origin", None)]);
        let mut headers = [EMPTY_HEADER; 16];
        let (req, _) = parse_request(&buf, &mut headers, 4096).unwrap().unwrap();
        assert_eq!((req.path(), req.query(), req.origin()), ("/", None, None));
    }

    #[test]
    fn bytes_after_the_head_are_not_consumed() {
        let mut buf = request_except(&[]);
        let head = buf.len();
        buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, 5]);
        assert_eq!(parse(&buf), Ok(Some(head)));
    }

    #[test]
    fn every_strict_prefix_is_partial() {
        let buf = request_except(&[]);
        for end in 0..buf.len() {
            assert_eq!(parse(&buf[..end]), Ok(None), "prefix of {end} bytes");
        }
        let mut headers = [EMPTY_HEADER; 16];
        for end in 0..buf.len() {
            assert!(matches!(
                parse_http_request(&buf[..end], &mut headers, 8192),
                Ok(None)
            ));
        }
    }

    #[test]
    fn each_broken_rule_has_its_error_and_status() {
        use HandshakeError::*;
        let cases: &[(&[Edit<'_>], HandshakeError, u16)] = &[
            (&[("Upgrade", None)], NotUpgrade, 426),
            (&[("Upgrade", Some("Upgrade: h2c"))], NotUpgrade, 426),
            (&[("Upgrade", Some("Upgrade: websockets"))], NotUpgrade, 426),
            (
                &[("GET", Some("POST /chat HTTP/1.1"))],
                MethodNotAllowed,
                405,
            ),
            (
                &[("GET", Some("get /chat HTTP/1.1"))],
                MethodNotAllowed,
                405,
            ),
            (
                &[("GET", Some("GET /chat HTTP/1.0"))],
                BadRequest("WebSocket needs HTTP/1.1"),
                400,
            ),
            (&[("Host", None)], BadRequest("missing Host"), 400),
            (
                &[("X", Some("host: again"))],
                BadRequest("more than one Host"),
                400,
            ),
            (
                &[("X", Some("Content-Length: 5"))],
                BadRequest("upgrade request with a body"),
                400,
            ),
            (
                &[("X", Some("Transfer-Encoding: chunked"))],
                BadRequest("upgrade request with a body"),
                400,
            ),
            (
                &[("Connection", None)],
                BadRequest("Connection lacks the upgrade token"),
                400,
            ),
            (
                &[("Connection", Some("Connection: keep-alive"))],
                BadRequest("Connection lacks the upgrade token"),
                400,
            ),
            (
                &[("Connection", Some("Connection: upgrades"))],
                BadRequest("Connection lacks the upgrade token"),
                400,
            ),
            (&[("Sec-WebSocket-Version", None)], UnsupportedVersion, 426),
            (
                &[("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8"))],
                UnsupportedVersion,
                426,
            ),
            (
                &[(
                    "Sec-WebSocket-Version",
                    Some("Sec-WebSocket-Version: 13, 8"),
                )],
                UnsupportedVersion,
                426,
            ),
            (
                &[("X", Some("Sec-WebSocket-Version: 13"))],
                UnsupportedVersion,
                426,
            ),
            (
                &[("Sec-WebSocket-Key", None)],
                BadRequest("missing Sec-WebSocket-Key"),
                400,
            ),
            (
                &[("X", Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="))],
                BadRequest("more than one Sec-WebSocket-Key"),
                400,
            ),
            (
                &[(
                    "Sec-WebSocket-Key",
                    Some("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"),
                )],
                BadRequest("invalid Sec-WebSocket-Key"),
                400,
            ),
            // 24 characters that decode to 17 bytes, and ones that are not base64 at all.
            (
                &[(
                    "Sec-WebSocket-Key",
                    Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="),
                )],
                BadRequest("invalid Sec-WebSocket-Key"),
                400,
            ),
            (
                &[(
                    "Sec-WebSocket-Key",
                    Some("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="),
                )],
                BadRequest("invalid Sec-WebSocket-Key"),
                400,
            ),
            (
                &[("X", Some("Origin: http://evil.example"))],
                BadRequest("more than one Origin"),
                400,
            ),
            (
                &[("GET", Some("GET /chat HTTP/2.0"))],
                BadRequest("invalid HTTP version"),
                400,
            ),
            (
                &[("X", Some("Bad Name: x"))],
                BadRequest("invalid header name"),
                400,
            ),
        ];
        for (replace, error, status) in cases {
            assert_eq!(error_of(replace), *error, "{replace:?}");
            assert_eq!(error.status(), *status, "{replace:?}");
        }
    }

    #[test]
    fn host_and_origin_must_be_utf8() {
        for (name, reason) in [("Host: ", "invalid Host"), ("Origin: ", "invalid Origin")] {
            let mut buf = request_except(&[]);
            let at = buf
                .windows(name.len())
                .position(|w| w == name.as_bytes())
                .unwrap();
            buf[at + name.len()] = 0xff;
            assert_eq!(parse(&buf), Err(HandshakeError::BadRequest(reason)));
        }
    }

    #[test]
    fn an_empty_body_is_allowed() {
        let buf = request_except(&[("X", Some("Content-Length: 0"))]);
        assert_eq!(parse(&buf), Ok(Some(buf.len())));
    }

    #[test]
    fn the_first_broken_rule_wins() {
        // Not an upgrade at all: whatever else is wrong, it goes to the plain-HTTP path.
        let plain = request_with(&["POST /form HTTP/1.0"]);
        assert_eq!(parse(&plain), Err(HandshakeError::NotUpgrade));
        // Wrong method and missing key: the method is reported.
        let e = error_of(&[("GET", Some("PUT / HTTP/1.1")), ("Sec-WebSocket-Key", None)]);
        assert_eq!(e, HandshakeError::MethodNotAllowed);
    }

    #[test]
    fn a_plain_request_stays_available_after_not_upgrade() {
        let buf = request_with(&["GET /index.html?v=3 HTTP/1.0", "Accept: text/html"]);
        let mut headers = [EMPTY_HEADER; 8];
        let (http, n) = parse_http_request(&buf, &mut headers, 1024)
            .unwrap()
            .unwrap();
        assert_eq!(n, buf.len());
        assert_eq!(
            Request::from_http(http).unwrap_err(),
            HandshakeError::NotUpgrade
        );
        assert_eq!(
            (http.method(), http.path(), http.query()),
            ("GET", "/index.html", Some("v=3"))
        );
        assert_eq!(http.minor_version(), 0);
        assert_eq!(http.header("accept"), Some(&b"text/html"[..]));
        assert_eq!(http.headers().count(), 1);
    }

    #[test]
    fn connection_and_upgrade_tokens_are_lists_and_case_insensitive() {
        for connection in [
            &["Connection: keep-alive, Upgrade"][..],
            &["Connection: UPGRADE"],
            &["connection: upgrade"],
            &["Connection: keep-alive", "Connection: Upgrade"],
            &["Connection: ,, upgrade ,"],
            &["Connection:\tUpgrade\t,close"],
        ] {
            let mut lines = vec![
                "GET / HTTP/1.1",
                "Host: h",
                "Upgrade: WebSocket",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ];
            lines.extend_from_slice(connection);
            assert!(parse(&request_with(&lines)).is_ok(), "{connection:?}");
        }
        for upgrade in ["Upgrade: h2c, websocket", "UPGRADE: WEBSOCKET"] {
            assert!(
                parse(&request_except(&[("Upgrade", Some(upgrade))])).is_ok(),
                "{upgrade}"
            );
        }
    }

    #[test]
    fn oversized_heads_are_431_complete_or_not() {
        let buf = request_except(&[]);
        let n = buf.len();
        let mut headers = [EMPTY_HEADER; 16];
        // Exactly at the limit is fine.
        assert!(parse_request(&buf, &mut headers, n).unwrap().is_some());
        // One byte over, complete.
        let e = parse_request(&buf, &mut headers, n - 1).unwrap_err();
        assert_eq!((e, e.status()), (HandshakeError::HeaderTooLarge, 431));
        // Still partial but already over the limit.
        let e = parse_request(&buf[..n - 3], &mut headers, 100).unwrap_err();
        assert_eq!(e, HandshakeError::HeaderTooLarge);
        // Partial and within the limit: wait for more.
        assert!(
            parse_request(&buf[..100], &mut headers, 100)
                .unwrap()
                .is_none()
        );
        // A huge junk-free stream of header bytes is refused without scanning all of it.
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(1 << 20, b'a');
        assert_eq!(parse(&long), Err(HandshakeError::HeaderTooLarge));
    }

    #[test]
    fn too_many_headers_is_431() {
        let buf = request_except(&[]);
        let mut headers = [EMPTY_HEADER; 3];
        let e = parse_request(&buf, &mut headers, 8192).unwrap_err();
        assert_eq!((e, e.status()), (HandshakeError::TooManyHeaders, 431));
        let mut headers = [EMPTY_HEADER; 7];
        assert!(parse_request(&buf, &mut headers, 8192).is_ok());
    }

    #[test]
    fn syntax_errors_are_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"\x00",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}: {e}");
        }
    }

    fn offers(lines: &[&str]) -> Vec<Offer> {
        let mut all = vec![
            "GET / HTTP/1.1",
            "Host: h",
            "Upgrade: websocket",
            "Connection: upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        all.extend_from_slice(lines);
        let buf = request_with(&all);
        let mut headers = [EMPTY_HEADER; 16];
        let (req, _) = parse_request(&buf, &mut headers, 8192).unwrap().unwrap();
        req.extensions()
            .map(|o| {
                let params = o
                    .params()
                    .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)));
                (o.name().to_owned(), params.collect())
            })
            .collect()
    }

    fn offer(name: &str, params: &[(&str, Option<&str>)]) -> Offer {
        let params = params
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)));
        (name.to_owned(), params.collect())
    }

    #[test]
    fn extension_offers_are_parsed() {
        let got = offers(&[
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; \
             server_max_window_bits=10, permessage-deflate",
        ]);
        assert_eq!(
            got,
            [
                offer(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", None),
                        ("server_max_window_bits", Some("10"))
                    ]
                ),
                offer("permessage-deflate", &[]),
            ]
        );
    }

    #[test]
    fn extension_offers_with_quotes_whitespace_and_empty_items() {
        let got = offers(&[
            "Sec-WebSocket-Extensions: ,  a ;x=\"10\" ;; y = \"p;q,r\" ,, b;\tz",
            "sec-websocket-extensions: c; k=\"esc\\\"aped,\"; m=\"",
            "Sec-WebSocket-Extensions: ; orphan=1, d;=nameless",
        ]);
        assert_eq!(
            got,
            [
                offer("a", &[("x", Some("10")), ("y", Some("p;q,r"))]),
                offer("b", &[("z", None)]),
                offer("c", &[("k", Some("esc\\\"aped,")), ("m", Some("\""))]),
                offer("d", &[]),
            ]
        );
    }

    #[test]
    fn subprotocols_across_headers_with_odd_whitespace() {
        let buf = request_except(&[
            (
                "Sec-WebSocket-Protocol",
                Some("Sec-WebSocket-Protocol: ,a,\t b ,, "),
            ),
            ("X", Some("sec-websocket-protocol: c")),
            ("Y", Some("Sec-WebSocket-Protocol:")),
        ]);
        let mut headers = [EMPTY_HEADER; 16];
        let (req, _) = parse_request(&buf, &mut headers, 8192).unwrap().unwrap();
        assert_eq!(req.subprotocols().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn accept_response_bytes_are_exact() {
        assert_eq!(
            accept_response(KEY.as_bytes(), None, None),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert_eq!(
            accept_response(KEY.as_bytes(), Some("chat"), Some("permessage-deflate")),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        );
        let mut out = bytes::BytesMut::new();
        write_accept(&mut out, KEY.as_bytes(), None, None);
        assert_eq!(
            &out[..],
            accept_response(KEY.as_bytes(), None, None).as_bytes()
        );
    }

    #[test]
    #[should_panic(expected = "CR, LF or NUL")]
    fn accept_refuses_response_splitting() {
        write_accept(
            &mut Vec::new(),
            KEY.as_bytes(),
            Some("x\r\nSet-Cookie: a=b"),
            None,
        );
    }

    fn error_response(e: HandshakeError) -> String {
        let mut out = Vec::new();
        write_error(&mut out, &e);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn error_response_bytes_are_exact() {
        let upgrade_required = "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n\
            Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\nConnection: Upgrade, close\r\n\r\n";
        assert_eq!(
            error_response(HandshakeError::UnsupportedVersion),
            upgrade_required
        );
        assert_eq!(error_response(HandshakeError::NotUpgrade), upgrade_required);
        assert_eq!(
            error_response(HandshakeError::BadRequest("missing Host")),
            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            error_response(HandshakeError::MethodNotAllowed),
            "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let too_large = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\
            Connection: close\r\n\r\n";
        assert_eq!(error_response(HandshakeError::HeaderTooLarge), too_large);
        assert_eq!(error_response(HandshakeError::TooManyHeaders), too_large);
    }

    #[test]
    fn status_and_http_response_bytes_are_exact() {
        let mut out = Vec::new();
        write_status(&mut out, 403);
        assert_eq!(
            out,
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_status(&mut out, 599);
        assert_eq!(
            out,
            b"HTTP/1.1 599 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_http_response(&mut out, 200, "text/html; charset=utf-8", b"<h1>hi</h1>");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 11\r\n\
             Connection: close\r\n\r\n<h1>hi</h1>"
        );
        let mut out = Vec::new();
        write_http_response(&mut out, 404, "text/plain", &[b'x'; 1234]);
        assert!(out.starts_with(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n"
        ));
    }

    #[test]
    #[should_panic(expected = "not three digits")]
    fn status_must_have_three_digits() {
        write_status(&mut Vec::new(), 42);
    }

    #[test]
    fn eq_lowercase_matches_eq_ignore_ascii_case_except_cr_for_dash() {
        for l in (b'a'..=b'z').chain([b'-']) {
            for b in 0..=255u8 {
                let expected = [b].eq_ignore_ascii_case(&[l]) || (b == b'\r' && l == b'-');
                assert_eq!(
                    eq_lowercase(&[b], &[l]),
                    expected,
                    "{b:#x} vs {}",
                    l as char
                );
            }
        }
        assert!(eq_lowercase(b"Sec-WebSocket-Key", b"sec-websocket-key"));
        assert!(!eq_lowercase(b"Sec-WebSocket-Ke", b"sec-websocket-key"));
    }

    #[test]
    fn decimal_digits() {
        for n in [0, 7, 10, 99, 100, 65_535, usize::MAX] {
            let mut out = Vec::new();
            put_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn error_display_and_statuses() {
        assert_eq!(
            HandshakeError::BadRequest("missing Host").to_string(),
            "bad WebSocket upgrade request: missing Host"
        );
        assert_eq!(
            ClientHandshakeError::Status(403).to_string(),
            "server refused the upgrade with status 403"
        );
        let e: &dyn std::error::Error = &HandshakeError::NotUpgrade;
        assert!(!e.to_string().is_empty());
    }

    fn client_request(protocols: &[&str], key: &[u8; 24]) -> Vec<u8> {
        let mut out = Vec::new();
        write_request(
            &mut out,
            "example.com:8080",
            "/ws?token=abc",
            key,
            protocols,
            &[("Origin", "http://example.com")],
        );
        out
    }

    #[test]
    fn client_request_bytes_are_exact() {
        let key = encode_key(*b"the sample nonce");
        assert_eq!(
            String::from_utf8(client_request(&["chat", "v2"], &key)).unwrap(),
            "GET /ws?token=abc HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, v2\r\n\
             Origin: http://example.com\r\n\r\n"
        );
    }

    #[test]
    fn client_round_trip() {
        let key = encode_key([7; 16]);
        let offered = ["chat", "v2"];
        let request = client_request(&offered, &key);
        let mut headers = [EMPTY_HEADER; 16];
        let (req, n) = parse_request(&request, &mut headers, 8192)
            .unwrap()
            .unwrap();
        assert_eq!(n, request.len());
        assert_eq!(
            (req.path(), req.query(), req.host()),
            ("/ws", Some("token=abc"), "example.com:8080")
        );
        assert_eq!(req.origin(), Some("http://example.com"));
        let chosen = req.subprotocols().find(|p| *p == "v2");
        let mut response = Vec::new();
        write_accept(&mut response, req.key().as_bytes(), chosen, None);
        response.extend_from_slice(b"\x81\x02hi");

        let mut headers = [EMPTY_HEADER; 16];
        for end in 0..response.len() - 4 {
            assert!(
                parse_response(&response[..end], &mut headers, &key, &offered)
                    .unwrap()
                    .is_none()
            );
        }
        let (res, n) = parse_response(&response, &mut headers, &key, &offered)
            .unwrap()
            .unwrap();
        assert_eq!(&response[n..], b"\x81\x02hi");
        assert_eq!((res.status(), res.protocol()), (101, Some("v2")));
        assert_eq!(res.header("upgrade"), Some(&b"websocket"[..]));
        assert_eq!(res.headers().count(), 4);
    }

    fn client_error(response: &str, offered: &[&str]) -> ClientHandshakeError {
        let key = encode_key(*b"the sample nonce");
        let mut headers = [EMPTY_HEADER; 16];
        parse_response(response.as_bytes(), &mut headers, &key, offered).unwrap_err()
    }

    #[test]
    fn client_rejects_bad_responses() {
        use ClientHandshakeError::*;
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
        let key = encode_key(*b"the sample nonce");
        let mut headers = [EMPTY_HEADER; 16];
        let whole = format!("{ok}\r\n");
        assert!(
            parse_response(whole.as_bytes(), &mut headers, &key, &[])
                .unwrap()
                .is_some()
        );
        let cases = [
            (format!("{ok}\r\n").replace("s3pP", "s4pP"), BadAccept),
            (
                format!("{ok}Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
                BadAccept,
            ),
            (
                format!("{ok}\r\n").replace("Sec-WebSocket-Accept", "X-Accept"),
                BadAccept,
            ),
            (
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_owned(),
                Status(403),
            ),
            ("HTTP/1.0 200 OK\r\n\r\n".to_owned(), Status(200)),
            (
                format!("{ok}\r\n").replace("HTTP/1.1", "HTTP/1.0"),
                Malformed("101 needs HTTP/1.1"),
            ),
            (
                format!("{ok}Sec-WebSocket-Protocol: chat\r\n\r\n"),
                UnofferedProtocol,
            ),
            (
                format!("{ok}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
                UnexpectedExtensions,
            ),
            (
                format!("{ok}\r\n").replace("Upgrade: websocket", "Upgrade: h2c"),
                NotUpgrade,
            ),
            (
                format!("{ok}\r\n").replace("Connection: Upgrade", "Connection: close"),
                NotUpgrade,
            ),
            (
                "HTTP/1.1 1O1 X\r\n\r\n".to_owned(),
                Malformed("invalid status"),
            ),
        ];
        for (response, expected) in cases {
            assert_eq!(client_error(&response, &[]), expected, "{response}");
        }
        let twice = format!("{ok}Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: a\r\n\r\n");
        assert_eq!(client_error(&twice, &["a"]), UnofferedProtocol);
        let unoffered = format!("{ok}Sec-WebSocket-Protocol: b\r\n\r\n");
        assert_eq!(client_error(&unoffered, &["a"]), UnofferedProtocol);
        let mut long = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
        long.resize(DEFAULT_MAX_HEADER_BYTES + 1, b'a');
        assert_eq!(
            parse_response(&long, &mut headers, &key, &[]).unwrap_err(),
            Malformed("response head too long")
        );
    }

    fn valid_request() -> Vec<u8> {
        request_except(&[(
            "X",
            Some("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"15\""),
        )])
    }

    /// Uses every accessor so that a panic anywhere in them shows up.
    fn exercise(buf: &[u8], max: usize) {
        let mut headers = [EMPTY_HEADER; 16];
        if let Ok(Some((req, n))) = parse_request(buf, &mut headers, max) {
            assert!(n <= buf.len() && n <= max);
            let _ = (
                req.path(),
                req.query(),
                req.host(),
                req.origin(),
                req.key(),
                req.header("x"),
            );
            let _ = req.headers().count() + req.subprotocols().count();
            for offer in req.extensions() {
                let _ = (offer.name(), offer.params().count());
            }
        }
        let key = encode_key([1; 16]);
        let mut headers = [EMPTY_HEADER; 16];
        if let Ok(Some((res, n))) = parse_response(buf, &mut headers, &key, &["a", "b"]) {
            assert!(n <= buf.len());
            let _ = (
                res.status(),
                res.protocol(),
                res.header("x"),
                res.headers().count(),
            );
        }
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Replace(usize, u8),
        Insert(usize, u8),
        Delete(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        // Bytes chosen from what matters to the parsers, plus anything at all.
        let byte = prop_oneof![
            prop::sample::select(b"\r\n :;,=\"\\\t\x00\x7f\xff?".to_vec()),
            any::<u8>()
        ];
        prop_oneof![
            (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Replace(i, b)),
            (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
            any::<usize>().prop_map(Mutation::Delete),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..600), max in 0usize..700) {
            exercise(&buf, max);
        }

        #[test]
        fn mutated_requests_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
            let mut buf = valid_request();
            for m in mutations {
                let len = buf.len();
                match m {
                    Mutation::Replace(i, b) if len > 0 => buf[i % len] = b,
                    Mutation::Insert(i, b) => buf.insert(i % (len + 1), b),
                    Mutation::Delete(i) if len > 0 => { buf.remove(i % len); }
                    _ => {}
                }
            }
            exercise(&buf, DEFAULT_MAX_HEADER_BYTES);
        }

        #[test]
        fn arbitrary_extension_and_protocol_text_never_panics(text in "[ -~\t]{0,80}") {
            let line = format!("Sec-WebSocket-Extensions: {text}");
            let proto = format!("Sec-WebSocket-Protocol: {text}");
            let buf = request_except(&[("X", Some(&line)), ("Sec-WebSocket-Protocol", Some(&proto))]);
            exercise(&buf, DEFAULT_MAX_HEADER_BYTES);
        }
    }
}
