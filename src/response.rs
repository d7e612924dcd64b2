//! What a handler answers to HTTP: [`Upgrade`] to an upgrade request (accept with a
//! session, extra headers on the 101, or reject with a response), and
//! [`HttpResponse`] to a plain request or as a rejection.
//!
//! Headers a handler adds are checked when the answer is written: a name that is not
//! an HTTP token, a value with CR, LF or NUL, or a header the engine writes itself
//! ([`RESERVED_HEADERS`]) turns the answer into a 500, as any answer HTTP cannot
//! carry does. A handler bug never splits a response or repeats a framing header.

use std::borrow::Cow;

use bytes::Bytes;

/// Headers the engine writes itself, so a handler cannot add them: they frame the
/// response or the upgrade (`Content-Type` is [`HttpResponse::content_type`]).
pub const RESERVED_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "content-type",
    "transfer-encoding",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
];

/// A header name or value: static text costs nothing, a built one is owned.
pub type HeaderText = Cow<'static, str>;

/// The answer to an upgrade request, from [`Handler::on_upgrade`](crate::Handler::on_upgrade):
/// accept with a session (and maybe a subprotocol and extra headers on the 101), or
/// reject with a status, or with a whole response.
///
/// ```
/// use wsreactor::{HttpResponse, Upgrade};
///
/// // Accept, confirm the subprotocol `chat.v1`, and set a cookie.
/// let accept: Upgrade<u32> = Upgrade::accept(7)
///     .with_protocol("chat.v1")
///     .with_header("Set-Cookie", format!("visit={}; HttpOnly", 7));
/// assert!(accept.is_accept());
///
/// // Refuse with a reason the client can read.
/// let reject: Upgrade<u32> = Upgrade::reject_with(
///     HttpResponse::new(429, "text/plain", "slow down\n").with_header("Retry-After", "5"),
/// );
/// assert!(!reject.is_accept());
/// ```
#[must_use = "an upgrade answer does nothing unless on_upgrade returns it"]
#[derive(Debug)]
pub struct Upgrade<S> {
    pub(crate) answer: Answer<S>,
}

/// The two answers, as the reactor reads them.
#[derive(Debug)]
pub(crate) enum Answer<S> {
    Accept {
        session: S,
        protocol: Option<HeaderText>,
        headers: Vec<(HeaderText, HeaderText)>,
    },
    Reject(HttpResponse),
    /// Answered later, through [`Sender::answer_upgrade`](crate::Sender::answer_upgrade).
    Later,
}

impl<S> Upgrade<S> {
    /// Accepts with `session`, no subprotocol and no extra header.
    pub fn accept(session: S) -> Self {
        Upgrade {
            answer: Answer::Accept {
                session,
                protocol: None,
                headers: Vec::new(),
            },
        }
    }

    /// Refuses with `status` and an empty body (for example 403 for a forbidden
    /// origin). A status outside 300–599 is answered as 500.
    pub fn reject(status: u16) -> Self {
        Upgrade::reject_with(HttpResponse::empty(status))
    }

    /// Refuses with a whole response: its status (300–599, else 500), headers and
    /// body. The connection is closed after it.
    pub fn reject_with(response: HttpResponse) -> Self {
        Upgrade {
            answer: Answer::Reject(response),
        }
    }

    /// Answers later: the connection waits, not read, until any thread answers it
    /// with [`Sender::answer_upgrade`](crate::Sender::answer_upgrade) and the
    /// request's [`id`](crate::Request::id) (after asking an auth service or a
    /// database, say). The handshake timeout still runs: a connection not answered
    /// by then is closed, and a later answer reaches nobody. What the peer sends
    /// meanwhile stays in the kernel's buffers, so TCP pushes back on it. A peer
    /// that hangs up meanwhile is dropped when its hang-up is seen.
    ///
    /// A request handed over by another server
    /// ([`ServerHandle::upgrade`](crate::ServerHandle::upgrade)) cannot be answered
    /// later: do the slow part before handing it over. It is refused with 500.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use wsreactor::{ConnId, Handler, Request, Upgrade};
    ///
    /// #[derive(Clone)]
    /// struct Gate {
    ///     /// Requests for the thread that asks the auth service.
    ///     to_auth: mpsc::Sender<(ConnId, String)>,
    /// }
    ///
    /// impl Handler for Gate {
    ///     type Session = Option<String>;
    ///     fn on_upgrade(&mut self, request: &Request) -> Upgrade<Option<String>> {
    ///         let (Some(id), Some(token)) = (request.id(), request.query_param("token")) else {
    ///             return Upgrade::reject(401);
    ///         };
    ///         match self.to_auth.send((id, token.into_owned())) {
    ///             Ok(()) => Upgrade::later(),
    ///             Err(_) => Upgrade::reject(503),
    ///         }
    ///     }
    /// }
    ///
    /// // The auth thread answers with
    /// // `sender.answer_upgrade(id, Upgrade::accept(Some(user)))` or a rejection.
    /// ```
    pub fn later() -> Self {
        Upgrade {
            answer: Answer::Later,
        }
    }

    /// Confirms `protocol` as the subprotocol. It is sent only if the client offered
    /// it ([`Request::subprotocols`](crate::Request::subprotocols)); a rejection
    /// ignores it.
    pub fn with_protocol(mut self, protocol: impl Into<HeaderText>) -> Self {
        if let Answer::Accept { protocol: p, .. } = &mut self.answer {
            *p = Some(protocol.into());
        }
        self
    }

    /// Adds a header: to the 101 response when accepting (a `Set-Cookie`, say), to
    /// the response when rejecting. A header in [`RESERVED_HEADERS`] or one HTTP
    /// cannot carry turns the answer into a 500.
    pub fn with_header(
        mut self,
        name: impl Into<HeaderText>,
        value: impl Into<HeaderText>,
    ) -> Self {
        let header = (name.into(), value.into());
        match &mut self.answer {
            Answer::Accept { headers, .. } => headers.push(header),
            Answer::Reject(response) => response.headers.push(header),
            Answer::Later => {}
        }
        self
    }

    /// What the answer weighs in a command queue: its headers and body.
    pub(crate) fn weight(&self) -> usize {
        let headers = |h: &[(HeaderText, HeaderText)]| -> usize {
            h.iter().map(|(n, v)| n.len() + v.len()).sum()
        };
        match &self.answer {
            Answer::Accept { headers: h, .. } => headers(h),
            Answer::Reject(response) => headers(&response.headers) + response.body.len(),
            Answer::Later => 0,
        }
    }

    /// Whether this answer accepts the upgrade.
    pub fn is_accept(&self) -> bool {
        matches!(self.answer, Answer::Accept { .. })
    }
}

/// A plain HTTP response: the answer to a request that is not an upgrade (from
/// [`Handler::on_http`](crate::Handler::on_http)), or to an upgrade that is refused
/// ([`Upgrade::reject_with`]).
///
/// The engine adds `Content-Length` (the body's length; none for 204 and 304) and
/// `Connection: close`, and closes the connection after the response. A `HEAD`
/// request gets the head only, with the `Content-Length` a `GET` would get.
///
/// ```
/// use wsreactor::HttpResponse;
///
/// let page = HttpResponse::html("<h1>prices</h1>").with_header("Cache-Control", "no-store");
/// let json = HttpResponse::new(200, format!("application/json; charset={}", "utf-8"), "{}");
/// assert_eq!(json.content_type.as_deref(), Some("application/json; charset=utf-8"));
/// assert_eq!(page.headers.len(), 1);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<HeaderText>,
    /// More headers, in order (see [`RESERVED_HEADERS`] for those refused).
    pub headers: Vec<(HeaderText, HeaderText)>,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A `200 OK` HTML page.
    pub fn html(body: impl Into<Bytes>) -> HttpResponse {
        HttpResponse::new(200, "text/html; charset=utf-8", body)
    }

    /// A response with any status, type and body.
    pub fn new(
        status: u16,
        content_type: impl Into<HeaderText>,
        body: impl Into<Bytes>,
    ) -> HttpResponse {
        HttpResponse {
            status,
            content_type: Some(content_type.into()),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A response with a status and nothing else (`Content-Length: 0`).
    pub fn empty(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            content_type: None,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (see [`RESERVED_HEADERS`] for those refused).
    pub fn with_header(
        mut self,
        name: impl Into<HeaderText>,
        value: impl Into<HeaderText>,
    ) -> HttpResponse {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Whether HTTP can carry this response with a status in `statuses`: the content
    /// type and the headers are header text, no header is reserved.
    pub(crate) fn is_sendable(&self, statuses: std::ops::RangeInclusive<u16>) -> bool {
        statuses.contains(&self.status)
            && self.content_type.as_deref().is_none_or(is_header_value)
            && are_sendable(&self.headers)
    }
}

/// Whether every header is one a handler may add: a token for a name, not reserved,
/// and a value without CR, LF or NUL.
pub(crate) fn are_sendable(headers: &[(HeaderText, HeaderText)]) -> bool {
    headers.iter().all(|(name, value)| {
        is_token(name)
            && !RESERVED_HEADERS
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r))
            && is_header_value(value)
    })
}

/// An HTTP token (RFC 9110 §5.6.2): what a header name is made of.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Text that can stand as a header value: nothing that would end the line early.
pub(crate) fn is_header_value(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_tokens_values_single_lines_and_framing_headers_are_ours() {
        let ok = |name: &'static str, value: &'static str| {
            are_sendable(&[(Cow::Borrowed(name), Cow::Borrowed(value))])
        };
        assert!(ok("Set-Cookie", "a=b; Path=/"));
        assert!(ok("X-Custom_1", ""));
        assert!(!ok("", "x"));
        assert!(!ok("Bad Name", "x"));
        assert!(!ok("Bad:Name", "x"));
        assert!(!ok("X", "a\r\nInjected: yes"));
        assert!(!ok("X", "a\0"));
        for reserved in RESERVED_HEADERS {
            assert!(!ok(reserved, "x"), "{reserved}");
        }
        assert!(!ok("CONTENT-length", "0"), "case does not matter");
    }

    #[test]
    fn a_rejection_takes_headers_and_ignores_a_protocol() {
        let reject: Upgrade<()> = Upgrade::reject(403)
            .with_protocol("chat")
            .with_header("X-Why", "origin");
        let Answer::Reject(response) = reject.answer else {
            panic!("a rejection");
        };
        assert_eq!(response.status, 403);
        assert_eq!(response.headers.len(), 1);
        assert!(response.is_sendable(300..=599));
        assert!(!response.is_sendable(200..=299));
    }
}
