//! The user's side: the [`Handler`] trait, and the [`Socket`] handle inside callbacks.

use std::fmt;
use std::net::SocketAddr;

use crate::compression::Compress;
use crate::proto::handshake::{HttpRequest, Request};
use crate::proto::{CloseCode, Message};
use slab::Slab;

use crate::pubsub::{Published, TopicError};
use crate::reactor::conn::{Conn, Phase};
use crate::reactor::output::{Output, Owner};
use crate::reactor::topics::{PubSub, publish_local};
pub use crate::response::{HttpResponse, Upgrade};
use crate::server::encode;
use crate::status::SendStatus;

/// A connection's identity, valid for as long as the connection lives.
///
/// It carries the connection's generation, a 64-bit count of its reactor's
/// accepts that is never reused, so an id kept after its connection closed reaches
/// nobody, even when a new connection reuses the slot, however long the server
/// runs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) reactor: u16,
    pub(crate) slot: u32,
    pub(crate) generation: u64,
}

impl ConnId {
    /// The index of the reactor that owns the connection.
    pub fn reactor(&self) -> usize {
        usize::from(self.reactor)
    }
}

impl Request<'_, '_> {
    /// The id of the connection the request came on, to answer it later
    /// ([`Upgrade::later`], [`Sender::answer_upgrade`](crate::Sender::answer_upgrade)).
    /// `None` for a request parsed on its own or handed over by another server.
    pub fn id(&self) -> Option<ConnId> {
        self.conn().map(|(reactor, slot, generation)| ConnId {
            reactor,
            slot,
            generation,
        })
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConnId({}:{}#{})",
            self.reactor, self.slot, self.generation
        )
    }
}

/// The callbacks of a WebSocket server. Every method has a default, so an echo
/// server is a few lines:
///
/// ```
/// use wsreactor::{Handler, Message, Socket};
///
/// #[derive(Clone)]
/// struct Echo;
///
/// impl Handler for Echo {
///     type Session = ();
///     fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
///         // Queued if need be, never dropped under the default policy.
///         let _ = ws.send(message);
///     }
/// }
/// ```
///
/// Each reactor thread gets its own clone of the handler, so callbacks need no
/// locks. Callbacks run on the reactor thread and must not block: hand slow work to
/// a pool of your own and send the result back through a [`Sender`](crate::Sender).
/// A callback that panics closes its connection with 1011; the reactor goes on.
pub trait Handler: Clone + Send + 'static {
    /// Per-connection state, stored inline in the connection's slot (no `Box`, no
    /// `Arc`). Keep it small: it is paid for by every connection.
    ///
    /// It must be `Default` even when [`on_upgrade`](Self::on_upgrade) always
    /// builds it: the default `on_upgrade` accepts every request with
    /// `Session::default()`, and Rust cannot ask for a bound only of the
    /// implementations that keep a default method. Dropping the bound would make
    /// every handler, the five-line echo server too, write `on_upgrade`. A session
    /// with no natural default derives it over `Option` or empty fields; the value is
    /// never seen when `on_upgrade` is overridden.
    type Session: Default + 'static;

    /// An upgrade request arrived. Accept it with a session (and maybe a
    /// subprotocol and extra headers on the 101), or reject it with a status or a
    /// whole response ([`Upgrade`]). The default accepts every request with
    /// `Session::default()`.
    ///
    /// The request borrows the read buffer: copy into the session what the
    /// connection keeps. With elided lifetimes the signature is
    /// `fn on_upgrade(&mut self, request: &Request) -> Upgrade<Self::Session>`.
    ///
    /// # Examples
    ///
    /// A session built from the request: the symbols a market-data client asked
    /// for in `/?symbols=AAPL,MSFT`, and who asked.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use wsreactor::{Handler, HttpResponse, Request, Upgrade};
    ///
    /// #[derive(Default)]
    /// struct Watch {
    ///     symbols: Vec<String>,
    ///     peer: Option<SocketAddr>,
    /// }
    ///
    /// #[derive(Clone)]
    /// struct Ticker;
    ///
    /// impl Handler for Ticker {
    ///     type Session = Watch;
    ///
    ///     fn on_upgrade(&mut self, request: &Request) -> Upgrade<Watch> {
    ///         if request.path() != "/" {
    ///             return Upgrade::reject(404);
    ///         }
    ///         // Percent-decoded: `?symbols=BRK%2EB` is "BRK.B".
    ///         let Some(symbols) = request.query_param("symbols") else {
    ///             let hint = HttpResponse::new(400, "text/plain", "ask for /?symbols=A,B\n");
    ///             return Upgrade::reject_with(hint);
    ///         };
    ///         let symbols = symbols.split(',').map(str::to_owned).collect();
    ///         Upgrade::accept(Watch { symbols, peer: request.peer_addr() })
    ///             .with_header("Set-Cookie", "seen=1; HttpOnly")
    ///     }
    /// }
    ///
    /// // What the reactor does with a request, driven by hand:
    /// use wsreactor::proto::handshake::{self, EMPTY_HEADER};
    /// let bytes = b"GET /?symbols=AAPL,BRK%2EB HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
    ///     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    ///     Sec-WebSocket-Version: 13\r\n\r\n";
    /// let mut headers = [EMPTY_HEADER; 16];
    /// let (request, _) = handshake::parse_request(bytes, &mut headers, 8192)?.unwrap();
    /// assert!(Ticker.on_upgrade(&request).is_accept());
    /// # Ok::<(), handshake::HandshakeError>(())
    /// ```
    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<Self::Session> {
        let _ = request;
        Upgrade::accept(Self::Session::default())
    }

    /// The connection is open (the 101 response is queued).
    fn on_open(&mut self, ws: &mut Socket<'_, Self::Session>) {
        let _ = ws;
    }

    /// A complete message arrived. It borrows the read buffer: copy what you keep.
    fn on_message(&mut self, ws: &mut Socket<'_, Self::Session>, message: Message<'_>) {
        let _ = (ws, message);
    }

    /// A ping arrived (the pong has already been queued).
    fn on_ping(&mut self, ws: &mut Socket<'_, Self::Session>, payload: &[u8]) {
        let _ = (ws, payload);
    }

    /// A pong arrived.
    fn on_pong(&mut self, ws: &mut Socket<'_, Self::Session>, payload: &[u8]) {
        let _ = (ws, payload);
    }

    /// The connection's queue emptied after a send met backpressure
    /// ([`SendStatus::Backpressure`]): the peer has read what it was sent, and
    /// more can go.
    ///
    /// # Examples
    ///
    /// A stream sent as fast as the peer reads it: send until a send waits in the
    /// queue, resume here.
    ///
    /// ```
    /// use wsreactor::{Handler, SendStatus, Socket};
    ///
    /// #[derive(Clone)]
    /// struct Numbers;
    ///
    /// /// The next number to send.
    /// #[derive(Default)]
    /// struct Next(u32);
    ///
    /// fn pump(ws: &mut Socket<'_, Next>) {
    ///     while ws.session().0 < 1_000_000 {
    ///         let n = ws.session().0;
    ///         match ws.send_text(&n.to_string()) {
    ///             SendStatus::Sent => ws.session_mut().0 += 1,
    ///             // Queued behind what the peer has not read: on_drain comes next.
    ///             SendStatus::Backpressure => return ws.session_mut().0 += 1,
    ///             // At the backpressure limit (not sent), or closing.
    ///             SendStatus::Dropped | SendStatus::Closed => return,
    ///         }
    ///     }
    /// }
    ///
    /// impl Handler for Numbers {
    ///     type Session = Next;
    ///     fn on_open(&mut self, ws: &mut Socket<'_, Next>) {
    ///         pump(ws);
    ///     }
    ///     fn on_drain(&mut self, ws: &mut Socket<'_, Next>) {
    ///         pump(ws);
    ///     }
    /// }
    /// ```
    fn on_drain(&mut self, ws: &mut Socket<'_, Self::Session>) {
        let _ = ws;
    }

    /// The connection closed: `code` is the peer's close code (1005 if it sent none),
    /// the code we failed it with (1002, 1007, 1008, 1009, 1011), 1001 when the
    /// server shut down or the peer went idle, or 1006 when the connection dropped
    /// without a close handshake. Called exactly once for every opened connection.
    fn on_close(&mut self, id: ConnId, session: Self::Session, code: CloseCode, reason: &str) {
        let _ = (id, session, code, reason);
    }

    /// A plain HTTP request that is not an upgrade. Return a response to serve it
    /// (enough for one page); the default `None` answers 426 Upgrade Required. A
    /// `HEAD` request gets the head of the response only. A response with a status
    /// outside 200–599, or a header HTTP cannot carry (see [`HttpResponse`]), is
    /// answered as 500. The connection is closed after the response.
    fn on_http(&mut self, request: &HttpRequest<'_, '_>) -> Option<HttpResponse> {
        let _ = request;
        None
    }
}

/// The current connection, inside a callback.
pub struct Socket<'a, S> {
    pub(crate) conns: &'a mut Slab<Conn<S>>,
    pub(crate) key: usize,
    pub(crate) output: &'a mut Output,
    pub(crate) pubsub: &'a mut PubSub,
    pub(crate) id: ConnId,
}

impl<S> Socket<'_, S> {
    fn conn(&self) -> &Conn<S> {
        match self.conns.get(self.key) {
            Some(conn) => conn,
            None => unreachable!("a socket is only handed out while its connection exists"),
        }
    }

    fn conn_mut(&mut self) -> &mut Conn<S> {
        match self.conns.get_mut(self.key) {
            Some(conn) => conn,
            None => unreachable!("a socket is only handed out while its connection exists"),
        }
    }

    /// The connection's id, to keep for sending later through a
    /// [`Sender`](crate::Sender).
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The session state.
    ///
    /// # Panics
    ///
    /// Never in a callback: the session exists from the upgrade to `on_close`.
    pub fn session(&self) -> &S {
        match &self.conn().session {
            Some(s) => s,
            None => unreachable!("a socket is only handed out while its session exists"),
        }
    }

    /// The session state, mutably.
    ///
    /// # Panics
    ///
    /// Never in a callback: the session exists from the upgrade to `on_close`.
    pub fn session_mut(&mut self) -> &mut S {
        match &mut self.conn_mut().session {
            Some(s) => s,
            None => unreachable!("a socket is only handed out while its session exists"),
        }
    }

    /// Sends a message (one frame). Small messages are corked and leave in one
    /// write with everything else sent to this connection in this turn. On a
    /// connection that negotiated permessage-deflate, a message of at least
    /// [`Deflate::threshold`](crate::Deflate::threshold) bytes is compressed.
    pub fn send(&mut self, message: Message<'_>) -> SendStatus {
        self.send_with(message, Compress::Auto)
    }

    /// Sends a message, saying whether it is compressed (on a connection that
    /// negotiated permessage-deflate; elsewhere it goes as it is).
    ///
    /// ```
    /// use wsreactor::{Compress, Handler, Message, Socket};
    ///
    /// #[derive(Clone)]
    /// struct Images;
    ///
    /// impl Handler for Images {
    ///     type Session = ();
    ///     fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
    ///         // JPEG does not compress: do not spend CPU on it.
    ///         let jpeg: &[u8] = &[0xff, 0xd8, 0xff];
    ///         let _ = ws.send_with(Message::Binary(jpeg), Compress::Never);
    ///         let _ = ws.send_with(message, Compress::Always);
    ///     }
    /// }
    /// ```
    pub fn send_with(&mut self, message: Message<'_>, compress: Compress) -> SendStatus {
        let owner = Owner::from(self.id);
        let Some(conn) = self.conns.get_mut(self.key) else {
            return SendStatus::Closed;
        };
        self.output.send_message(owner, conn, message, compress)
    }

    /// Sends a text message.
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send(Message::Text(text))
    }

    /// Sends a binary message.
    pub fn send_binary(&mut self, bytes: &[u8]) -> SendStatus {
        self.send(Message::Binary(bytes))
    }

    /// Sends a ping (at most 125 bytes; longer payloads are refused as `Dropped`).
    pub fn ping(&mut self, payload: &[u8]) -> SendStatus {
        if payload.len() > crate::proto::frame::MAX_CONTROL_PAYLOAD {
            return SendStatus::Dropped;
        }
        let owner = Owner::from(self.id);
        let Some(conn) = self.conns.get_mut(self.key) else {
            return SendStatus::Closed;
        };
        self.output
            .send(owner, conn, crate::proto::OpCode::Ping, payload)
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes).
    /// Messages may still arrive until the peer answers; nothing more can be sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let owner = Owner::from(self.id);
        if let Some(conn) = self.conns.get_mut(self.key) {
            self.output.close(owner, conn, code, reason);
        }
    }

    /// Bytes sent to this connection that the kernel has not taken yet (including
    /// those corked in this turn and published messages batched for its end).
    pub fn buffered_amount(&self) -> usize {
        self.output.buffered(Owner::from(self.id), self.conn())
    }

    /// The address of the peer, as the kernel reports it (a system call: keep it in
    /// the session if you need it often; [`Request::peer_addr`] has it at the
    /// upgrade). `None` once the peer is gone.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn().stream.peer_addr().ok()
    }

    /// Whether the connection is open for sending.
    pub fn is_open(&self) -> bool {
        let conn = self.conn();
        conn.phase == Phase::Open && conn.proto.can_send()
    }

    /// Subscribes this connection to `topic`: every message published to it from
    /// now on reaches this connection, until it unsubscribes or closes. `Ok(true)`
    /// when newly subscribed, `Ok(false)` when it already was.
    ///
    /// # Errors
    ///
    /// [`TopicError::TooLong`] for a name over [`MAX_TOPIC_LEN`](crate::MAX_TOPIC_LEN)
    /// bytes, [`TopicError::TooMany`] past
    /// [`Config::max_subscriptions`](crate::Config::max_subscriptions),
    /// [`TopicError::Closed`] once the connection is closing.
    pub fn subscribe(&mut self, topic: impl AsRef<[u8]>) -> Result<bool, TopicError> {
        let Some(conn) = self.conns.get_mut(self.key) else {
            return Err(TopicError::Closed);
        };
        self.pubsub.subscribe(self.key, conn, topic.as_ref())
    }

    /// Unsubscribes from `topic`; whether this connection was subscribed.
    pub fn unsubscribe(&mut self, topic: impl AsRef<[u8]>) -> bool {
        let Some(conn) = self.conns.get_mut(self.key) else {
            return false;
        };
        self.pubsub.unsubscribe(conn, topic.as_ref())
    }

    /// Whether this connection subscribes to `topic`.
    pub fn is_subscribed(&self, topic: impl AsRef<[u8]>) -> bool {
        self.pubsub
            .topics
            .is_subscribed(self.conn().subs, topic.as_ref())
    }

    /// Publishes `message` to every subscriber of `topic` except this connection
    /// (as uWebSockets does; send it to this connection too if it should get it).
    /// The frame is encoded once; subscribers on this reactor get it at the end of
    /// the loop turn, in one write with everything else published to them in the
    /// turn, and subscribers on other reactors through their command queues.
    pub fn publish(&mut self, topic: impl AsRef<[u8]>, message: Message<'_>) -> Published {
        let topic = topic.as_ref();
        let frame = encode(message);
        let mut published = publish_local(
            self.conns,
            self.output,
            self.pubsub,
            topic,
            &frame,
            Some(self.key),
        );
        self.pubsub
            .forward(topic, &frame, Some(self.id), &mut published);
        published
    }

    /// Subscribes this connection to `topic` on a server that keeps history
    /// ([`Config::history`](crate::Config::history)), from `from`: the position of
    /// the last message it got before it lost its connection (`None`: live from
    /// now). The messages after that position are queued to it before this returns,
    /// oldest first, then it gets every later message in order: no gap and no
    /// duplicate, whatever publishes race the subscribe on other threads. The
    /// result says what was recovered and from which position it goes on; a
    /// position that cannot be recovered (another epoch, too old, from the future)
    /// starts live from now ([`Recovery::Reset`](crate::history::Recovery::Reset)).
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Self::subscribe), and [`TopicError::NoHistory`] without
    /// history, [`TopicError::AlreadySubscribed`] when it subscribes already.
    pub fn subscribe_from(
        &mut self,
        topic: impl AsRef<[u8]>,
        from: Option<crate::history::Position>,
    ) -> Result<crate::history::Subscribed, TopicError> {
        use crate::history::{Recovery, Subscribed};
        let topic = topic.as_ref();
        let key = self.key;
        let counts = self.pubsub.counts.clone();
        if !counts.has_history() {
            return Err(TopicError::NoHistory);
        }
        if self.is_subscribed(topic) {
            return Err(TopicError::AlreadySubscribed);
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return Err(TopicError::Closed);
        };
        let pubsub = &mut *self.pubsub;
        let Some((position, replay, subscribed)) =
            counts.join(topic, from, || pubsub.subscribe(key, conn, topic))
        else {
            return Err(TopicError::NoHistory);
        };
        subscribed?;
        // Messages at or before `position` still in this reactor's queue skip it.
        if let Some(id) = self.pubsub.topics.id(topic) {
            self.pubsub
                .topics
                .joiners
                .entry(id)
                .or_default()
                .push((key as u32, position.offset));
        }
        let recovery = match (from, replay) {
            (None, _) => Recovery::New,
            (Some(_), Err(reason)) => Recovery::Reset(reason),
            (Some(_), Ok(replay)) => {
                let n = replay.len();
                let owner = Owner::from(self.id);
                if let Some(conn) = self.conns.get_mut(key) {
                    for (_, frame) in &replay {
                        let _ = self.output.deliver_as(owner, conn, frame, true);
                    }
                    if n > 0 && !conn.has(crate::reactor::conn::flag::BATCHED) {
                        conn.set(crate::reactor::conn::flag::BATCHED);
                        self.pubsub.batched.push(key);
                    }
                }
                Recovery::Recovered(n)
            }
        };
        Ok(Subscribed { position, recovery })
    }

    /// Publishes to a topic with history, as
    /// [`Sender::publish_positioned`](crate::Sender::publish_positioned): every
    /// subscriber gets it (this connection too, if it subscribes), through its
    /// reactor's queue, in offset order.
    pub fn publish_positioned(
        &mut self,
        topic: impl AsRef<[u8]>,
        build: impl FnOnce(crate::history::Position) -> bytes::Bytes,
    ) -> Published {
        let mut published = Published::default();
        let reactors = self.pubsub.reactors.clone();
        published.position = self.pubsub.counts.publish_positioned(
            topic.as_ref(),
            &reactors,
            None,
            build,
            &mut published,
        );
        // This reactor's own queue has it: run it in this turn.
        published
    }

    /// Published messages dropped for this connection at its backpressure limit,
    /// while it was subscribed to anything.
    pub fn dropped_publications(&self) -> u64 {
        self.pubsub.topics.dropped(self.conn().subs)
    }
}
