//! `peer-fastwebsockets`: a WebSocket echo server on fastwebsockets 0.10 and its `upgrade`
//! feature (a hyper 1 HTTP/1.1 server), for benchmarking only.
//!
//! Every text and binary message is sent back as it came; a `FragmentCollector`
//! reassembles fragmented messages first. Pings are answered and the close handshake
//! completed by fastwebsockets itself (auto-pong and auto-close, both on by default).

use std::convert::Infallible;
use std::process::ExitCode;

use fastwebsockets::upgrade::{self, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use peers::{Usage, cores, log_dropped, tokio_serve};
use tokio::net::TcpStream;

const NAME: &str = "peer-fastwebsockets";

fn main() -> ExitCode {
    let usage = Usage {
        name: NAME,
        about: "WebSocket echo server on fastwebsockets 0.10 (upgrade feature, hyper 1)",
        has_runtime: true,
        default_threads: cores(),
    };
    tokio_serve::run(&usage, serve_http)
}

/// Serves the HTTP side of one connection until it upgrades (or fails to).
async fn serve_http(stream: TcpStream) {
    let connection = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service_fn(respond))
        .with_upgrades();
    if let Err(error) = connection.await {
        log_dropped(NAME, "http", error);
    }
}

/// Answers an upgrade request with 101 and starts the echo once hyper hands the
/// connection over; anything else gets 426 or 400.
async fn respond(mut request: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    if !upgrade::is_upgrade_request(&request) {
        let mut response = status(StatusCode::UPGRADE_REQUIRED);
        response
            .headers_mut()
            .insert(UPGRADE, HeaderValue::from_static("websocket"));
        return Ok(response);
    }
    match upgrade::upgrade(&mut request) {
        Ok((response, upgraded)) => {
            tokio::spawn(echo(upgraded));
            Ok(response)
        }
        Err(error) => {
            log_dropped(NAME, "handshake", error);
            Ok(status(StatusCode::BAD_REQUEST))
        }
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

async fn echo(upgraded: UpgradeFut) {
    // Default settings: 64 MiB message limit, auto-pong, auto-close, vectored writes.
    let mut ws = match upgraded.await {
        Ok(ws) => FragmentCollector::new(ws),
        Err(error) => return log_dropped(NAME, "upgrade", error),
    };
    loop {
        let frame = match ws.read_frame().await {
            Ok(frame) => frame,
            Err(error) => return log_unless_closed("receive", error),
        };
        match frame.opcode {
            OpCode::Text | OpCode::Binary => {
                if let Err(error) = ws.write_frame(frame).await {
                    return log_unless_closed("send", error);
                }
            }
            // The library has already sent the close reply; dropping the stream ends TCP.
            OpCode::Close => return,
            // Pongs were sent by auto-pong; continuations never leave the collector.
            OpCode::Ping | OpCode::Pong | OpCode::Continuation => {}
        }
    }
}

fn log_unless_closed(what: &str, error: WebSocketError) {
    if !matches!(error, WebSocketError::ConnectionClosed) {
        log_dropped(NAME, what, error);
    }
}
