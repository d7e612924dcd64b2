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
//!         ws.send(message);
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
pub mod proto;
pub mod pubsub;
pub(crate) mod reactor;
pub mod response;
pub mod server;
pub mod stats;
pub mod status;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "redis")]
pub use bridge::{BridgeState, BridgeStats, RedisConfig};
pub use compression::{Compress, Compression, Deflate};
pub use config::{BackpressurePolicy, Config};
pub use error::{Error, Result};
pub use handler::{ConnId, Handler, HttpResponse, Socket, Upgrade};
pub use proto::handshake::{HttpRequest, Request};
pub use proto::{CloseCode, Message};
pub use pubsub::{MAX_TOPIC_LEN, Published, TopicError};
pub use server::{Sender, Server, ServerBuilder, ServerHandle, encode};
pub use stats::Stats;
pub use status::{QueueStatus, SendStatus};

/// The README's examples, compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
