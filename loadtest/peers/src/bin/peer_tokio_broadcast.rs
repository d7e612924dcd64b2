//! `peer-tokio-broadcast`: a WebSocket broadcast server on tokio-tungstenite 0.30 and a
//! `tokio::sync::broadcast` channel, for benchmarking only (`wsload fanout`, beside
//! wsreactor's `examples/broadcast.rs`).
//!
//! The usual shape in the tokio ecosystem: one channel for the whole server, and one task per
//! connection that `select!`s between its client and its own `broadcast::Receiver`. Every
//! text and binary message a client sends goes into the channel unchanged; every message the
//! receiver yields is sent to the client, its sender included, with `SinkExt::send` (one
//! write and flush per message, as most code written against tokio-tungstenite does). Pings
//! are answered and the close handshake completed by tungstenite itself.
//!
//! A receiver that falls more than [`CAPACITY`] messages behind gets `RecvError::Lagged(n)`:
//! those `n` messages are gone for that client. This peer keeps the connection open and goes
//! on with the oldest message still in the channel, counting what was skipped; the total is
//! printed to stderr at exit (`lagged: N messages skipped ...`), and `wsload fanout` sees the
//! same messages as lost.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::{SinkExt, StreamExt};
use peers::{Usage, cores, log_dropped, tokio_serve};
use tokio::net::TcpStream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::{Error, Message};

const NAME: &str = "peer-tokio-broadcast";

/// Messages the channel holds before the slowest receiver starts to lag. `wsload fanout`
/// with N connections has at most N messages in flight (each client sends its next one only
/// after it has received N), so 1024 never lags up to 1,024 connections if every task keeps
/// up; past that a lag is possible, and it is counted.
const CAPACITY: usize = 1024;

/// Messages skipped by lagging receivers, over all connections.
static LAGGED: AtomicU64 = AtomicU64::new(0);
/// Receivers that lagged at least once.
static LAGGED_EVENTS: AtomicU64 = AtomicU64::new(0);

fn main() -> ExitCode {
    let usage = Usage {
        name: NAME,
        about: "WebSocket broadcast server on tokio-tungstenite 0.30 and tokio::sync::broadcast",
        has_runtime: true,
        default_threads: cores(),
    };
    let (sender, _) = broadcast::channel::<Message>(CAPACITY);
    let code = tokio_serve::run(&usage, move |stream| serve(stream, sender.clone()));
    eprintln!(
        "{NAME}: lagged: {} messages skipped in {} lag events (channel capacity {CAPACITY})",
        LAGGED.load(Ordering::Relaxed),
        LAGGED_EVENTS.load(Ordering::Relaxed)
    );
    code
}

async fn serve(stream: TcpStream, sender: broadcast::Sender<Message>) {
    // The default WebSocketConfig, as in peer-tungstenite.
    let mut ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(error) => return log_dropped(NAME, "handshake", error),
    };
    let mut receiver = sender.subscribe();
    loop {
        // Both futures are cancel-safe: whichever loses the race loses nothing.
        tokio::select! {
            received = ws.next() => match received {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    // Fails only with no receiver, and this connection holds one.
                    let _ = sender.send(message);
                }
                // A ping's pong and a close's reply are queued by tungstenite and written by
                // the next poll; after a close that poll ends the stream.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_))) => {}
                Some(Err(error)) => return log_unless_closed("receive", error),
                None => return,
            },
            published = receiver.recv() => match published {
                Ok(message) => {
                    if let Err(error) = ws.send(message).await {
                        return log_unless_closed("send", error);
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    LAGGED.fetch_add(skipped, Ordering::Relaxed);
                    LAGGED_EVENTS.fetch_add(1, Ordering::Relaxed);
                }
                // The sender lives as long as the accept loop; nothing left to forward.
                Err(RecvError::Closed) => return,
            },
        }
    }
}

fn log_unless_closed(what: &str, error: Error) {
    if !matches!(error, Error::ConnectionClosed | Error::AlreadyClosed) {
        log_dropped(NAME, what, error);
    }
}
