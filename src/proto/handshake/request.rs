//! The server side: parsing and checking the upgrade request.

use super::*;

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
    /// Where the request came from, when the caller knows (an address is data, not I/O).
    peer_addr: Option<core::net::SocketAddr>,
    /// The connection the request came on, as the engine names it (reactor, slot,
    /// generation), when an engine read it: see `Request::id` in `handler.rs`.
    conn: Option<(u16, u32, u64)>,
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
                peer_addr: None,
                conn: None,
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

    /// The peer's address, set by the server that read the request (`None` when
    /// parsed on its own).
    #[must_use]
    pub fn peer_addr(&self) -> Option<core::net::SocketAddr> {
        self.peer_addr
    }

    /// The request with the address of the peer it came from.
    #[must_use]
    pub fn with_peer_addr(mut self, peer_addr: Option<core::net::SocketAddr>) -> Self {
        self.peer_addr = peer_addr;
        self
    }

    /// The request with the engine's name of the connection it came on.
    #[must_use]
    pub(crate) fn with_conn(mut self, conn: Option<(u16, u32, u64)>) -> Self {
        self.conn = conn;
        self
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

    /// The peer's address, set by the server that read the request (`None` when
    /// parsed on its own).
    #[must_use]
    pub fn peer_addr(&self) -> Option<core::net::SocketAddr> {
        self.http.peer_addr
    }

    /// The engine's name of the connection the request came on, if any.
    pub(crate) fn conn(&self) -> Option<(u16, u32, u64)> {
        self.http.conn
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
        header_values(self.http.headers, "sec-websocket-extensions").flat_map(extension_list)
    }
}

/// The extensions in one `Sec-WebSocket-Extensions` value, in order (a value that is
/// not UTF-8 has none).
pub(crate) fn extension_list(value: &[u8]) -> impl Iterator<Item = ExtensionOffer<'_>> + Clone {
    std::str::from_utf8(value)
        .ok()
        .into_iter()
        .flat_map(|value| SplitUnquoted::new(value, b','))
        .filter_map(ExtensionOffer::parse)
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
pub(super) struct SplitUnquoted<'a> {
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
pub(super) fn split_unquoted(s: &str, sep: u8) -> (&str, Option<&str>) {
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

pub(super) fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

/// Trims HTTP's optional whitespace (space and tab), not Unicode's.
pub(super) fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

pub(super) fn header_value<'b>(headers: &[Header<'b>], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

pub(super) fn header_values<'h, 'b>(
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
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
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
pub(super) fn eq_lowercase(bytes: &[u8], lower: &[u8]) -> bool {
    bytes.len() == lower.len() && bytes.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l)
}
