//! The client side: the request, and checking the server's 101.

use super::request::{has_token, header_value};
use super::response::{assert_header_text, put_header};
use super::*;
use crate::proto::deflate::{ClientDeflate, PerMessageDeflate};

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
    deflate: Option<PerMessageDeflate>,
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

    /// permessage-deflate's parameters, if we offered it and the server accepted
    /// ([`parse_response_with_deflate`]); give them to
    /// [`Connection::set_deflate`](crate::proto::Connection::set_deflate).
    #[must_use]
    pub fn deflate(&self) -> Option<PerMessageDeflate> {
        self.deflate
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
    parse_response_with_deflate(buf, headers, key, offered_protocols, None)
}

/// [`parse_response`] for a request that offered permessage-deflate (`deflate`, as
/// written into the request with [`ClientDeflate::offer`]): the server's answer is
/// checked against the offer, and [`Response::deflate`] says what is in force.
///
/// # Errors
///
/// As [`parse_response`]; [`ClientHandshakeError::UnexpectedExtensions`] also for an
/// answer the offer did not allow.
pub fn parse_response_with_deflate<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [Header<'b>],
    key: &[u8; 24],
    offered_protocols: &[&str],
    deflate: Option<&ClientDeflate>,
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
            && deflate.is_none()
        {
            return Err(ClientHandshakeError::UnexpectedExtensions);
        }
    }
    let agreed = match deflate {
        Some(offer) => offer.accept(
            headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|h| h.value),
        )?,
        None => None,
    };
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
            deflate: agreed,
            headers,
        },
        len,
    )))
}
