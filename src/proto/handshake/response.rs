//! The server side: the responses, written into a buffer the caller owns.

use super::*;

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
    write_accept_with_headers(out, key, protocol, extensions, []);
}

/// As [`write_accept`], with more headers (such as `Set-Cookie`) before the blank line.
///
/// # Panics
///
/// As [`write_accept`], and if a header name is not an HTTP token or a value contains CR, LF
/// or NUL.
pub fn write_accept_with_headers<'a, B: BufMut>(
    out: &mut B,
    key: &[u8],
    protocol: Option<&str>,
    extensions: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
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
    put_headers(out, headers);
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
    write_http_head(out, status, content_type, body.len());
    out.put_slice(body);
}

/// Writes the head of [`write_http_response`]'s response, for a body of
/// `content_length` bytes that the caller sends itself (without copying it here).
pub fn write_http_head<B: BufMut>(
    out: &mut B,
    status: u16,
    content_type: &str,
    content_length: usize,
) {
    write_http_head_with_headers(out, status, Some(content_type), [], Some(content_length));
}

/// Writes the head of a plain-HTTP response with an optional content type and more headers,
/// for a body of `content_length` bytes that the caller sends itself. `None` for the length
/// leaves `Content-Length` out, as 204 and 304 responses must (RFC 9110 §8.6).
///
/// # Panics
///
/// As [`write_http_head`], and if a header name is not an HTTP token or a value contains CR,
/// LF or NUL.
pub fn write_http_head_with_headers<'a, B: BufMut>(
    out: &mut B,
    status: u16,
    content_type: Option<&str>,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    content_length: Option<usize>,
) {
    put_status_line(out, status);
    if let Some(content_type) = content_type {
        put_header(out, "Content-Type", content_type.as_bytes());
    }
    put_headers(out, headers);
    if let Some(content_length) = content_length {
        out.put_slice(b"Content-Length: ");
        put_decimal(out, content_length);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"Connection: close\r\n\r\n");
}

/// Writes headers a caller added, checking that each name is a token.
fn put_headers<'a, B: BufMut>(out: &mut B, headers: impl IntoIterator<Item = (&'a str, &'a str)>) {
    for (name, value) in headers {
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)),
            "header name {name:?} is not an HTTP token"
        );
        put_header(out, name, value.as_bytes());
    }
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

pub(super) fn put_status_line<B: BufMut>(out: &mut B, status: u16) {
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

pub(super) fn put_header<B: BufMut>(out: &mut B, name: &str, value: &[u8]) {
    assert_header_text(value);
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Refuses bytes that would end a header line early and let text become headers or a body.
pub(super) fn assert_header_text(text: &[u8]) {
    assert!(
        !text.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0)),
        "header text contains CR, LF or NUL"
    );
}

/// Decimal digits without `format!`, so the response paths stay allocation-free.
pub(super) fn put_decimal<B: BufMut>(out: &mut B, mut n: usize) {
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
