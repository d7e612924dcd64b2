//! Connections another server accepted: an HTTP server (hyper, axum) that shares
//! its port with the engine reads the upgrade request, and the engine takes the
//! connection over.
//!
//! # Who does what
//!
//! The other server has parsed the request and will write the response itself:
//! hyper writes the `101 Switching Protocols` before it lets go of the socket
//! (`hyper::upgrade::on`), and nothing can be written before it. So the hand-off
//! takes the request as that server parsed it, in two steps:
//!
//! 1. [`Sender::upgrade`] sends the request (method, target, headers) to a reactor,
//!    which checks it as it checks its own (the same parser and limits), runs the
//!    handler's `on_upgrade` and negotiates permessage-deflate. The answer is a
//!    rejection (a whole response, for the other server to send) or an
//!    [`Accepted`] holding the headers of the 101; the session waits on the
//!    reactor.
//! 2. The other server writes the 101 with those headers, once, and hands over the
//!    socket and the bytes it read past the request: [`Accepted::attach`]. The
//!    connection opens on the reactor (`on_open`) with the same handler, limits,
//!    timers, pub/sub and deflate as one the engine accepted.
//!
//! Taking the raw request bytes instead would let the engine write the 101, but
//! no Rust HTTP server gives them up: hyper parses the head into its own types and
//! answers before the upgrade. Rebuilding the head from those types, as this module
//! does, costs a copy of a few hundred bytes once per connection, and keeps one
//! parser, one set of limits and one `on_upgrade` for every connection.
//!
//! # Limits
//!
//! Plain connections only: for wss, terminate TLS in front of the other server, or
//! serve wss on the engine's own TLS listener
//! ([`Config::with_tls`](crate::Config::with_tls)). HTTP/1.1 only (an HTTP/2
//! extended CONNECT has no socket to hand over). A handler cannot answer a
//! handed-over request later ([`Upgrade::later`](crate::Upgrade::later)): do the
//! slow part (auth, a database) in the other server before step 1; such an answer
//! is refused with 500. An accepted request not attached within the handshake
//! timeout is forgotten (its session dropped, no `on_open`, no `on_close`).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::reactor::{Command, Shared};
use crate::response::HttpResponse;
use crate::status::QueueStatus;

/// An upgrade request another server parsed, rebuilt for the engine: its method,
/// target (path and query) and headers, in order.
///
/// ```
/// use wsreactor::server::HandoffRequest;
///
/// let request = HandoffRequest::new("GET", "/live?room=7")
///     .header("Host", "example.com")
///     .header("Upgrade", "websocket")
///     .header("Connection", "Upgrade")
///     .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("Sec-WebSocket-Version", "13");
/// assert!(request.is_well_formed());
/// assert!(!HandoffRequest::new("GET", "/").header("X", "a\r\nB: c").is_well_formed());
/// ```
#[derive(Clone, Debug)]
pub struct HandoffRequest {
    /// The request head as HTTP/1.1 text.
    pub(crate) head: Vec<u8>,
    pub(crate) peer_addr: Option<SocketAddr>,
    /// A method, target or header could not be written as HTTP (CR, LF, NUL, a
    /// space in the target, an empty name): the request is refused with 400.
    well_formed: bool,
}

impl HandoffRequest {
    /// A request with `method` (`GET` for an upgrade) and `target` (`/path?query`).
    pub fn new(method: &str, target: &str) -> HandoffRequest {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
        HandoffRequest {
            head,
            peer_addr: None,
            well_formed: token(method) && token(target),
        }
    }

    /// Adds a header (in the order they came; repeated names are kept apart).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> HandoffRequest {
        self.push_header(name, value.as_ref());
        self
    }

    /// Adds a header, in place.
    pub fn push_header(&mut self, name: &str, value: &[u8]) {
        let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        let value_ok = !value.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0));
        self.well_formed &= name_ok && value_ok;
        if self.well_formed {
            self.head.extend_from_slice(name.as_bytes());
            self.head.extend_from_slice(b": ");
            self.head.extend_from_slice(value);
            self.head.extend_from_slice(b"\r\n");
        }
    }

    /// The address of the peer, for [`Request::peer_addr`](crate::Request::peer_addr)
    /// (axum's `ConnectInfo`, say).
    pub fn with_peer_addr(mut self, peer_addr: SocketAddr) -> HandoffRequest {
        self.peer_addr = Some(peer_addr);
        self
    }

    /// Whether everything given could be written as HTTP. A request that is not is
    /// refused with 400 by [`Sender::upgrade`].
    pub fn is_well_formed(&self) -> bool {
        self.well_formed
    }

    /// The head, ended, for the reactor's parser; `None` when not well formed.
    pub(crate) fn finish(mut self) -> Option<(Vec<u8>, Option<SocketAddr>)> {
        if !self.well_formed {
            return None;
        }
        self.head.extend_from_slice(b"\r\n");
        Some((self.head, self.peer_addr))
    }
}

/// Why a hand-off failed. Nothing leaks: a socket given to a failed
/// [`Accepted::attach`] is closed, a session waiting on a reactor is dropped.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandoffError {
    /// The request is not a WebSocket upgrade (no `Upgrade: websocket`): serve it
    /// as plain HTTP.
    NotUpgrade,
    /// The server has stopped (or the reactor chosen has).
    Stopped,
    /// The reactor's command queue is full: the server is overloaded; answer 503.
    Busy,
    /// The accepted upgrade was not attached within the handshake timeout.
    Expired,
    /// The stream given to [`Accepted::attach`] is not a connected socket that can
    /// be made non-blocking.
    Socket(io::Error),
}

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoffError::NotUpgrade => f.write_str("not a WebSocket upgrade request"),
            HandoffError::Stopped => f.write_str("the WebSocket server has stopped"),
            HandoffError::Busy => f.write_str("the WebSocket server's queue is full"),
            HandoffError::Expired => {
                f.write_str("the upgrade was not attached within the handshake timeout")
            }
            HandoffError::Socket(e) => write!(f, "the stream cannot be handed over: {e}"),
        }
    }
}

impl std::error::Error for HandoffError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandoffError::Socket(e) => Some(e),
            _ => None,
        }
    }
}

/// What the engine answers a handed-over upgrade request.
#[derive(Debug)]
pub enum HandoffAnswer {
    /// Accepted: write a 101 with [`Accepted::headers`], then
    /// [`attach`](Accepted::attach) the socket.
    Accept(Accepted),
    /// Refused by the handler or as a bad request: send this response (with
    /// `Connection: close`) and close the connection.
    Reject(HttpResponse),
}

/// An accepted upgrade whose session waits on a reactor for its socket. Dropping
/// it without attaching forgets the upgrade there.
#[must_use = "an accepted upgrade does nothing until its socket is attached"]
pub struct Accepted {
    headers: Vec<(String, String)>,
    pub(crate) ticket: Option<Ticket>,
}

/// Where an accepted upgrade waits: its reactor, its entry there, its deadline.
pub(crate) struct Ticket {
    pub(crate) reactor: Arc<Shared>,
    pub(crate) slot: usize,
    pub(crate) generation: u64,
    pub(crate) expires: Option<Instant>,
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted")
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Accepted {
    pub(crate) fn new(headers: Vec<(String, String)>, ticket: Ticket) -> Accepted {
        Accepted {
            headers,
            ticket: Some(ticket),
        }
    }

    /// The headers of the 101 response: `upgrade`, `connection`,
    /// `sec-websocket-accept`, the subprotocol and extension agreed (names in lower
    /// case), then the handler's own as it wrote them.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Hands over the socket, once the 101 is written, with the bytes the other
    /// server read past the request (frames the client sent right behind it; hyper
    /// gives them as `Parts::read_buf`). The connection opens on the reactor that
    /// accepted the upgrade.
    ///
    /// # Errors
    ///
    /// [`HandoffError::Socket`] when the stream cannot be used,
    /// [`HandoffError::Expired`] past the handshake timeout,
    /// [`HandoffError::Stopped`] once the server has stopped. The stream is
    /// closed then.
    pub fn attach(mut self, stream: TcpStream, read: &[u8]) -> Result<(), HandoffError> {
        let Some(ticket) = self.ticket.take() else {
            return Err(HandoffError::Stopped);
        };
        let usable = stream
            .peer_addr()
            .and_then(|_| stream.set_nonblocking(true));
        if let Err(e) = usable {
            ticket.cancel();
            return Err(HandoffError::Socket(e));
        }
        if ticket.expires.is_some_and(|at| Instant::now() >= at) {
            ticket.cancel();
            return Err(HandoffError::Expired);
        }
        let command = Command::Attach {
            slot: ticket.slot,
            generation: ticket.generation,
            stream,
            read: read.to_vec(),
        };
        match ticket.reactor.push(command) {
            QueueStatus::Queued => Ok(()),
            // Never refused for room (its upgrade was admitted): only closed.
            QueueStatus::Full | QueueStatus::Closed => Err(HandoffError::Stopped),
        }
    }
}

impl Ticket {
    /// Forgets the waiting session on its reactor.
    fn cancel(&self) {
        let _ = self.reactor.push(Command::Forget {
            slot: self.slot,
            generation: self.generation,
        });
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            ticket.cancel();
        }
    }
}

/// The answer to [`Sender::upgrade`], when it comes: `.await` it (it is a
/// `Future`, on any executor) or [`wait`](Self::wait) for it on a thread that may
/// block.
#[must_use = "the answer to a handed-over upgrade must be read"]
pub struct PendingUpgrade {
    reply: Arc<Reply>,
}

/// Where a reactor leaves its answer.
pub(crate) struct Reply {
    state: Mutex<ReplyState>,
    ready: Condvar,
}

#[derive(Default)]
struct ReplyState {
    answer: Option<Result<HandoffAnswer, HandoffError>>,
    /// The answer was taken by the waiting side.
    taken: bool,
    waker: Option<Waker>,
}

impl Reply {
    fn lock(&self) -> MutexGuard<'_, ReplyState> {
        // Every change under the lock is one assignment: a poisoned lock is whole.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The reactor's side of a [`PendingUpgrade`]: answers once; answers
/// [`HandoffError::Stopped`] if dropped unanswered (the reactor stopped with the
/// command in its queue).
pub(crate) struct ReplyTo(Arc<Reply>);

impl ReplyTo {
    pub(crate) fn answer(self, answer: Result<HandoffAnswer, HandoffError>) {
        let mut state = self.0.lock();
        if state.answer.is_none() && !state.taken {
            state.answer = Some(answer);
        }
        let waker = state.waker.take();
        drop(state);
        self.0.ready.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if state.answer.is_none() && !state.taken {
            state.answer = Some(Err(HandoffError::Stopped));
            let waker = state.waker.take();
            drop(state);
            self.0.ready.notify_all();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl PendingUpgrade {
    /// A pending answer and the reactor's side of it.
    pub(crate) fn new() -> (PendingUpgrade, ReplyTo) {
        let reply = Arc::new(Reply {
            state: Mutex::new(ReplyState::default()),
            ready: Condvar::new(),
        });
        (
            PendingUpgrade {
                reply: reply.clone(),
            },
            ReplyTo(reply),
        )
    }

    /// An answer known at once (the request was refused before reaching a reactor).
    pub(crate) fn ready(answer: Result<HandoffAnswer, HandoffError>) -> PendingUpgrade {
        let (pending, reply) = PendingUpgrade::new();
        reply.answer(answer);
        pending
    }

    /// Blocks until the reactor answers (a reactor answers within one loop turn).
    ///
    /// # Errors
    ///
    /// As the future's output: see [`Sender::upgrade`].
    pub fn wait(self) -> Result<HandoffAnswer, HandoffError> {
        let mut state = self.reply.lock();
        loop {
            if let Some(answer) = state.answer.take() {
                state.taken = true;
                return answer;
            }
            state = self
                .reply
                .ready
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Future for PendingUpgrade {
    type Output = Result<HandoffAnswer, HandoffError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.reply.lock();
        match state.answer.take() {
            Some(answer) => {
                state.taken = true;
                Poll::Ready(answer)
            }
            None if state.taken => Poll::Ready(Err(HandoffError::Stopped)),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for PendingUpgrade {
    fn drop(&mut self) {
        // An answer never read: an accepted upgrade in it is forgotten on its
        // reactor (by `Accepted`'s drop), here rather than whenever the reply goes.
        let answer = {
            let mut state = self.reply.lock();
            state.taken = true;
            state.answer.take()
        };
        drop(answer);
    }
}
