//! `peer-tungstenite`: a WebSocket echo server on tokio-tungstenite 0.30, for benchmarking only.
//!
//! Every text and binary message is sent back as it came. Pings are answered and the close
//! handshake completed by tungstenite itself.

use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
use peers::{Usage, cores, log_dropped, tokio_serve};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error, Message};

const NAME: &str = "peer-tungstenite";

fn main() -> ExitCode {
    let usage = Usage {
        name: NAME,
        about: "WebSocket echo server on tokio-tungstenite 0.30",
        has_runtime: true,
        default_threads: cores(),
    };
    tokio_serve::run(&usage, echo)
}

async fn echo(stream: TcpStream) {
    // The default WebSocketConfig, as most users run it. Its read buffer is 128 KiB per
    // connection, allocated at the handshake and kept while the connection is idle: that is
    // most of tokio-tungstenite's ~138 KB per idle connection in ANCHORS.md.
    let mut ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(error) => return log_dropped(NAME, "handshake", error),
    };
    while let Some(received) = ws.next().await {
        match received {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                if let Err(error) = ws.send(message).await {
                    return log_unless_closed("send", error);
                }
            }
            // A ping's pong and a close's reply are queued by tungstenite and written by the
            // next poll; after a close that poll ends the stream.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_)) => {}
            Err(error) => return log_unless_closed("receive", error),
        }
    }
}

fn log_unless_closed(what: &str, error: Error) {
    if !matches!(error, Error::ConnectionClosed | Error::AlreadyClosed) {
        log_dropped(NAME, what, error);
    }
}
