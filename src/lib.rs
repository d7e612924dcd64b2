//! wsreactor: a WebSocket (RFC 6455) server engine for servers that hold very many
//! connections: chat, push, live dashboards, games, market data.
//!
//! Reactor threads each own a `mio::Poll`, a slab of connections and a pool of
//! buffers. Frames are parsed and unmasked in place in the read buffer, and a
//! message that arrives whole reaches your callback as a slice of that buffer: no
//! copy. An idle connection holds no buffer at all.
//!
//! # A server in a few lines
//!
//! ```no_run
//! use wsreactor::{Config, Handler, Message, Server, Socket};
//!
//! #[derive(Clone)]
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Session = ();
//!     fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
//!         // Never dropped under the default policy (BackpressurePolicy::Pause);
//!         // `Closed` if the client is closing.
//!         let _ = ws.send(message);
//!     }
//! }
//!
//! let server = Server::bind("127.0.0.1:9001", Config::default())?;
//! let handle = server.spawn(Echo)?;
//! // ... later:
//! handle.shutdown(std::time::Duration::from_secs(5))?;
//! # Ok::<(), wsreactor::Error>(())
//! ```
//!
//! # The guide
//!
//! - [`Handler`] is the trait you implement; every method has a default. Each
//!   reactor thread gets its own clone, so callbacks need no locks. Callbacks run on
//!   the reactor thread: never block in them.
//! - [`Socket`] is the current connection inside a callback: send, ping, close,
//!   [`buffered_amount`](Socket::buffered_amount), your per-connection session.
//! - [`Sender`] sends to a [`ConnId`], broadcasts, or publishes, from any thread, and
//!   says whether the reactor's bounded queue took the command ([`QueueStatus`]).
//! - Pub/sub: [`Socket::subscribe`] and [`Socket::publish`] in callbacks,
//!   [`Sender::publish`] from anywhere; a publish is encoded once and written once per
//!   subscriber per loop turn, and reports what it reached ([`Published`]).
//! - [`Config`] holds the limits, timeouts and backpressure policy, each default
//!   documented with its reason.
//! - Compression: [`Config::compression`] turns on permessage-deflate ([`Compression`]:
//!   shared or dedicated compressors); [`Socket::send_with`] decides per message.
//! - [`client`] is a blocking client on the same core: `ws://`, and `wss://` with the
//!   `tls` feature; a [`client::Sender`] sends from other threads while one receives.
//! - [`proto`] is the sans-IO protocol core (handshake, frames, masking, messages,
//!   close), usable on its own, in both roles: the load harness's client is built on it.
//!
//! ## The upgrade: who connects, and what they asked for
//!
//! [`Handler::on_upgrade`] sees the [`Request`]: path, percent-decoded query
//! parameters ([`Request::query_param`]), headers, origin, offered subprotocols and
//! the peer's address ([`Request::peer_addr`]). It answers with an [`Upgrade`]:
//! accept with the connection's session (built from the request), a subprotocol and
//! extra headers on the 101 (a `Set-Cookie`), or reject with a status or a whole
//! [`HttpResponse`] (a body and headers). [`Handler::on_http`] serves plain requests
//! (a page), `HEAD` included. The session type must be `Default` (see
//! [`Handler::Session`] for why).
//!
//! ## Pushing from another thread
//!
//! Callbacks run on the reactor threads and must not block. Work that takes time,
//! or a feed that has its own clock, lives on threads of your own and pushes through
//! a [`Sender`] ([`ServerHandle::sender`]; cheap to clone, `Send`):
//!
//! - to one connection: keep its [`ConnId`] (from [`Socket::id`] in `on_open`) and
//!   call [`Sender::send`]. An id whose connection has closed reaches nobody, even if
//!   its slot was reused;
//! - to many: [`encode`] the message once and hand the frame to
//!   [`Sender::send_frame`] for each id, or [`Sender::broadcast`] to every
//!   connection;
//! - every call returns a [`QueueStatus`] at once: `Queued`, `Full` (the reactor's
//!   bounded command queue is full: slow down, or skip a tick that the next one
//!   supersedes) or `Closed` (the server has stopped: stop producing).
//!
//! A message queued by a `Sender` is written after the callbacks of the loop turn
//! in which its reactor takes it, so it can arrive after a reply a callback made
//! later in real time; from one thread to one connection the order is kept. See
//! [`Sender`]'s "Ordering".
//!
//! ## Sending to a subset: topics
//!
//! A connection subscribes to topics ([`Socket::subscribe`], usually in `on_open`
//! from what its session asked for); a publish reaches the subscribers of a topic on
//! every reactor, encoded once, written once per subscriber per loop turn
//! ([`Sender::publish`] from any thread, [`Socket::publish`] in callbacks). A
//! market-data feed in a few lines (the `ticker` example is the whole program, with
//! a page):
//!
//! ```no_run
//! use std::time::Duration;
//! use wsreactor::{BackpressurePolicy, Config, Handler, Message, Request, Server, Socket, Upgrade};
//!
//! #[derive(Clone)]
//! struct Feed;
//!
//! impl Handler for Feed {
//!     /// The symbols asked for in `/?symbols=AAPL,MSFT`.
//!     type Session = Vec<String>;
//!
//!     fn on_upgrade(&mut self, request: &Request) -> Upgrade<Vec<String>> {
//!         match request.query_param("symbols") {
//!             Some(list) => Upgrade::accept(list.split(',').map(str::to_owned).collect()),
//!             None => Upgrade::reject(400),
//!         }
//!     }
//!
//!     fn on_open(&mut self, ws: &mut Socket<'_, Vec<String>>) {
//!         for symbol in ws.session().clone() {
//!             let _ = ws.subscribe(format!("ticks/{symbol}"));
//!         }
//!     }
//! }
//!
//! // A reader that falls behind gets the newest ticks, not a backlog of old ones.
//! let config = Config::default()
//!     .with_backpressure(64 * 1024, BackpressurePolicy::DropOldest)
//!     .with_send_buffer_size(Some(16 * 1024));
//! let handle = Server::bind("127.0.0.1:9003", config)?.spawn(Feed)?;
//! let sender = handle.sender();
//! std::thread::spawn(move || {
//!     for price in 0u32.. {
//!         let tick = format!("AAPL {price}");
//!         sender.publish("ticks/AAPL", Message::Text(&tick));
//!         std::thread::sleep(Duration::from_millis(100));
//!     }
//! });
//! handle.wait()?;
//! # Ok::<(), wsreactor::Error>(())
//! ```
//!
//! ## Backpressure
//!
//! What a connection has not read waits in its queue, up to
//! [`Config::max_backpressure`]; at the limit the [`BackpressurePolicy`] decides:
//! keep what the connection's own callbacks send and stop reading it until the
//! peer catches up (`Pause`, the default: an echo or a request-response server
//! never loses an answer, while sends from other threads and publications are
//! refused at the limit), refuse the new message (`Drop`), close with 1008
//! (`Close`), or drop the oldest queued messages (`DropOldest`, for feeds whose
//! newest message matters most). [`Socket::send`] reports each message's fate
//! ([`SendStatus`], `#[must_use]`), and [`Handler::on_drain`] says when a queue
//! that met backpressure has emptied.
//!
//! ## Stopping, and the order of shutdown
//!
//! [`Server::spawn`] returns a [`ServerHandle`]; **dropping it stops the server**.
//! Keep it in `main`, hand a [`Sender`] to whatever decides to stop (a signal
//! handler: the `ticker` and `echo` examples use signal-hook), and block in
//! [`ServerHandle::wait`]. [`Sender::shutdown`] (or [`ServerHandle::shutdown`],
//! which also waits) then, on every reactor, in order:
//!
//! 1. runs the commands queued before it;
//! 2. stops accepting, and drops connections still in their handshake;
//! 3. sends close 1001 to every open connection, after what is queued for it;
//! 4. closes connections already answered in plain HTTP as soon as their answer is
//!    written;
//! 5. waits for the close handshakes up to the timeout given, calling `on_close`
//!    for each connection, then drops what is left;
//! 6. exits; from then on every `Sender` call returns [`QueueStatus::Closed`], so a
//!    producer thread learns that it can stop.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "redis")]
pub mod bridge;
pub mod buf;
pub mod client;
pub mod compression;
pub mod config;
pub mod error;
pub mod handler;
pub mod history;
mod observe;
pub mod proto;
pub mod pubsub;
pub(crate) mod reactor;
pub mod response;
pub mod server;
pub mod stats;
pub mod status;
#[cfg(feature = "tls")]
pub mod tls;

/// The TLS filter for the fuzz targets: not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use reactor::tls::FuzzSession;

#[cfg(feature = "redis")]
pub use bridge::{BridgeState, BridgeStats, RedisConfig};
pub use compression::{Compress, Compression, Deflate};
pub use config::{BackpressurePolicy, Config};
pub use error::{Error, Result};
pub use handler::{ConnId, Handler, HttpResponse, Socket, Upgrade};
pub use proto::handshake::{HttpRequest, Request};
pub use proto::{CloseCode, Message};
pub use pubsub::{MAX_TOPIC_LEN, Published, TopicError};
pub use server::{
    HandoffAnswer, HandoffError, HandoffRequest, Sender, Server, ServerBuilder, ServerHandle,
    encode,
};
pub use stats::Stats;
pub use status::{QueueStatus, SendStatus};

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
