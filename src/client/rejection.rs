//! A refused upgrade, whole: the status, the headers and the body the server sent
//! instead of a `101`, so that a client learns why ("invalid token for sensor 7"),
//! not only that.

use std::borrow::Cow;
use std::fmt;

/// The most body a rejection keeps; the rest is not read ([`Rejection::truncated`]).
/// A refusal explains itself in a line or a small JSON document; a server that sends
/// a page cannot make the client hold more than this.
pub const MAX_REJECTION_BODY: usize = 64 * 1024;

/// What the server answered instead of `101 Switching Protocols`:
/// [`Error::Rejected`](super::Error::Rejected).
///
/// The body is read as HTTP/1.1 frames it (`Content-Length`, chunked, or up to the
/// connection's end), within the handshake timeout, up to
/// [`MAX_REJECTION_BODY`] bytes. A body cut short by the timeout, the connection's
/// end or the limit is kept as far as it came, with [`truncated`](Self::truncated)
/// set.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejection {
    /// The status code (never 101).
    pub status: u16,
    /// The reason phrase, as sent (may be empty).
    pub reason: String,
    /// Every header, in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (chunked encoding undone).
    pub body: Vec<u8>,
    /// Whether the body is incomplete: longer than [`MAX_REJECTION_BODY`], or the
    /// connection ended or the handshake timeout came before it did.
    pub truncated: bool,
}

impl Rejection {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("headers", &self.headers.len())
            .field("body", &self.body_text())
            .field("truncated", &self.truncated)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server refused the upgrade: {}", self.status)?;
        if !self.reason.is_empty() {
            write!(f, " {}", self.reason)?;
        }
        // The body's first line, if it reads as one, short: what a log line wants.
        let text = self.body_text();
        let line = text.lines().map(str::trim).find(|l| !l.is_empty());
        if let Some(line) = line.filter(|l| !l.chars().any(char::is_control)) {
            match line.char_indices().nth(200) {
                Some((cut, _)) => write!(f, ": {}…", &line[..cut])?,
                None => write!(f, ": {line}")?,
            }
        }
        Ok(())
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a 1xx, 204 or 304 status.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Up to the connection's end.
    Close,
}

/// A non-101 response head, parsed again for everything it says.
pub(crate) struct Head {
    pub(crate) rejection: Rejection,
    pub(crate) framing: Framing,
    /// The head's length in bytes.
    pub(crate) len: usize,
}

/// Parses a complete response head at the start of `buf` (proto has already found it
/// complete and not a 101). `None` if it is not one after all.
pub(crate) fn parse_head(buf: &[u8]) -> Option<Head> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    let status = response.code?;
    let headers: Vec<(String, Vec<u8>)> = response
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect();
    fn values<'a>(
        headers: &'a [(String, Vec<u8>)],
        name: &'a str,
    ) -> impl Iterator<Item = &'a [u8]> {
        headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    let value = |name| values(&headers, name);
    let chunked = value("transfer-encoding").any(|v| {
        v.split(|&b| b == b',')
            .any(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    });
    let length = value("content-length")
        .next()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    Some(Head {
        rejection: Rejection {
            status,
            reason: response.reason.unwrap_or("").to_owned(),
            headers,
            body: Vec::new(),
            truncated: false,
        },
        framing,
        len,
    })
}

/// What the body's bytes so far make.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body {
    /// The whole body, at most [`MAX_REJECTION_BODY`] of it (`true`: there was more).
    Done(Vec<u8>, bool),
    /// More bytes are needed.
    More,
}

/// Decodes the body from `raw`, the bytes after the head so far; `ended` says the
/// connection has ended (or the timeout came), so that what there is is all there is.
pub(crate) fn body(framing: Framing, raw: &[u8], ended: bool) -> Body {
    let cap = |bytes: &[u8], more: bool| {
        let keep = bytes.len().min(MAX_REJECTION_BODY);
        Body::Done(
            bytes[..keep].to_vec(),
            more || bytes.len() > MAX_REJECTION_BODY,
        )
    };
    match framing {
        Framing::None => Body::Done(Vec::new(), false),
        Framing::Length(n) => {
            let want = usize::try_from(n).unwrap_or(usize::MAX);
            if raw.len() >= want {
                cap(&raw[..want], false)
            } else if raw.len() > MAX_REJECTION_BODY || ended {
                cap(raw, true)
            } else {
                Body::More
            }
        }
        Framing::Close if ended => cap(raw, false),
        Framing::Close if raw.len() > MAX_REJECTION_BODY => cap(raw, true),
        Framing::Close => Body::More,
        Framing::Chunked => {
            let (decoded, complete) = dechunk(raw);
            if complete {
                cap(&decoded, false)
            } else if decoded.len() > MAX_REJECTION_BODY || ended {
                cap(&decoded, true)
            } else if raw.len() > 2 * MAX_REJECTION_BODY + 4096 {
                // Chunk framing without end or body: give up on it.
                cap(&decoded, true)
            } else {
                Body::More
            }
        }
    }
}

/// Undoes chunked transfer coding as far as `raw` goes: the data so far, and whether
/// the last chunk (size 0) was reached. Chunk extensions and trailers are skipped;
/// a malformed size line ends the body there.
fn dechunk(raw: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&raw[at..]) else {
            return (out, false);
        };
        let line = &raw[at..at + eol];
        let digits = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or(&[])
            .trim_ascii();
        let size = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| usize::from_str_radix(d, 16).ok());
        let Some(size) = size else {
            return (out, true);
        };
        at += eol + 2;
        if size == 0 {
            return (out, true);
        }
        let end = at.saturating_add(size);
        if raw.len() < end {
            out.extend_from_slice(&raw[at..]);
            return (out, false);
        }
        out.extend_from_slice(&raw[at..end]);
        // The chunk's CRLF.
        if raw.len() < end + 2 {
            return (out, false);
        }
        at = end + 2;
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_parsed_for_its_status_headers_and_framing() {
        let head = parse_head(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap();
        assert_eq!(head.rejection.status, 401);
        assert_eq!(head.rejection.reason, "Unauthorized");
        assert_eq!(
            head.rejection.header("www-authenticate"),
            Some(&b"Bearer"[..])
        );
        assert_eq!(head.framing, Framing::Length(5));
        assert_eq!(head.len, 74);
        let chunked = parse_head(b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(chunked.unwrap().framing, Framing::Chunked);
        let close = parse_head(b"HTTP/1.0 403 Forbidden\r\n\r\n").unwrap();
        assert_eq!(close.framing, Framing::Close);
        let none = parse_head(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(none.unwrap().framing, Framing::None);
    }

    #[test]
    fn bodies_are_read_as_far_as_their_framing_says() {
        let length = Framing::Length(5);
        assert_eq!(body(length, b"hel", false), Body::More);
        assert_eq!(
            body(length, b"hel", true),
            Body::Done(b"hel".to_vec(), true)
        );
        assert_eq!(
            body(length, b"hello, more", false),
            Body::Done(b"hello".to_vec(), false)
        );
        assert_eq!(body(Framing::Close, b"abc", false), Body::More);
        assert_eq!(
            body(Framing::Close, b"abc", true),
            Body::Done(b"abc".to_vec(), false)
        );
        assert_eq!(
            body(Framing::None, b"abc", false),
            Body::Done(Vec::new(), false)
        );
        let big = vec![b'x'; MAX_REJECTION_BODY + 10];
        assert_eq!(
            body(Framing::Length(u64::MAX), &big, false),
            Body::Done(big[..MAX_REJECTION_BODY].to_vec(), true)
        );
        assert_eq!(
            body(Framing::Close, &big, false),
            Body::Done(big[..MAX_REJECTION_BODY].to_vec(), true)
        );
    }

    #[test]
    fn chunked_bodies_are_decoded_whatever_the_reads_cut() {
        let raw = b"5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        for cut in 0..raw.len() {
            match body(Framing::Chunked, &raw[..cut], false) {
                Body::More => {}
                Body::Done(got, more) => {
                    assert_eq!(
                        (got.as_slice(), more),
                        (&b"hello, world"[..], false),
                        "cut {cut}"
                    );
                }
            }
        }
        assert_eq!(
            body(Framing::Chunked, raw, false),
            Body::Done(b"hello, world".to_vec(), false)
        );
        // Ended early: what came, marked incomplete.
        assert_eq!(
            body(Framing::Chunked, b"5\r\nhel", true),
            Body::Done(b"hel".to_vec(), true)
        );
        // A size line that is not one ends the body.
        assert_eq!(
            body(Framing::Chunked, b"5\r\nhello\r\nzz\r\n", false),
            Body::Done(b"hello".to_vec(), false)
        );
    }

    #[test]
    fn the_message_is_the_status_and_the_bodys_first_line() {
        let mut r = parse_head(b"HTTP/1.1 401 Unauthorized\r\n\r\n")
            .unwrap()
            .rejection;
        assert_eq!(
            r.to_string(),
            "the server refused the upgrade: 401 Unauthorized"
        );
        r.body = b"\n invalid token for sensor 7\nmore".to_vec();
        assert_eq!(
            r.to_string(),
            "the server refused the upgrade: 401 Unauthorized: invalid token for sensor 7"
        );
        r.body = vec![b'a'; 300];
        assert!(r.to_string().ends_with(&format!("{}…", "a".repeat(200))));
    }
}
