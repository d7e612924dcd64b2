//! A REST API and WebSockets on one port: axum serves HTTP, and an upgrade on
//! `/ws` is handed over to wsreactor after hyper's upgrade (see
//! `wsreactor::server::handoff` for who writes what).
//!
//! ```text
//! cargo run --release -p wsreactor-axum -- --addr 127.0.0.1:8080
//!   GET  /api/health             {"open":N,"handoffs":N,"messages_out":N}
//!   POST /api/rooms/{room}       the body goes to every WebSocket in the room
//!   GET  /ws?room=R&token=demo   a WebSocket in room R: what it sends goes to the
//!                                others in R
//! ```
//!
//! The token is checked in axum, asynchronously (a stand-in for an auth service),
//! before the request is handed over: a hand-off is answered at once by the
//! engine's `on_upgrade`. wss: terminate TLS in front of this process, or serve
//! wss on the engine's own TLS listener (`Config::with_tls`) beside it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto::upgrade::downcast;
use wsreactor::{
    Config, Handler, HandoffAnswer, HandoffError, HandoffRequest, HttpResponse, Message,
    Request as WsRequest, Sender, Server, Socket, Upgrade,
};

/// The WebSocket side: each connection joins the room its URL names.
#[derive(Clone)]
struct Rooms;

impl Handler for Rooms {
    /// The room.
    type Session = String;

    fn on_upgrade(&mut self, request: &WsRequest) -> Upgrade<String> {
        let room = request.query_param("room").unwrap_or("lobby".into());
        if room.is_empty() || room.len() > 64 {
            return Upgrade::reject_with(HttpResponse::new(400, "text/plain", "bad room\n"));
        }
        Upgrade::accept(room.into_owned())
    }

    fn on_open(&mut self, ws: &mut Socket<'_, String>) {
        let room = ws.session().clone();
        let _ = ws.subscribe(&room);
        let _ = ws.send_text(&format!("joined {room}"));
    }

    fn on_message(&mut self, ws: &mut Socket<'_, String>, message: Message<'_>) {
        let room = ws.session().clone();
        ws.publish(room, message);
    }
}

/// What the HTTP side keeps: a sender into the engine.
#[derive(Clone)]
struct App {
    engine: Sender,
}

async fn health(State(app): State<App>) -> impl IntoResponse {
    let stats = app.engine.stats();
    let body = format!(
        "{{\"open\":{},\"handoffs\":{},\"messages_out\":{}}}",
        stats.open, stats.handoffs, stats.messages_out
    );
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn publish(State(app): State<App>, Path(room): Path<String>, body: String) -> Response {
    let published = app.engine.publish(&room, Message::Text(&body));
    let body = format!("{{\"forwarded\":{}}}", published.forwarded);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The token check: asynchronous, as a call to an auth service would be.
async fn token_ok(token: Option<&str>) -> bool {
    tokio::time::sleep(Duration::from_millis(1)).await;
    token == Some("demo")
}

/// `/ws`: checks the token, then hands the upgrade to the engine: its answer is
/// the 101 (hyper writes it) or a refusal; after the 101, hyper lets go of the
/// socket and the engine takes it with what hyper read past the request.
async fn websocket(State(app): State<App>, mut request: Request) -> Response {
    let token = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(str::to_owned)
    });
    if !token_ok(token.as_deref()).await {
        return (StatusCode::UNAUTHORIZED, "invalid token\n").into_response();
    }
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut handoff = HandoffRequest::new(request.method().as_str(), target);
    for (name, value) in request.headers() {
        handoff.push_header(name.as_str(), value.as_bytes());
    }
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        handoff = handoff.with_peer_addr(*peer);
    }
    let accepted = match app.engine.upgrade(handoff).await {
        Ok(HandoffAnswer::Accept(accepted)) => accepted,
        Ok(HandoffAnswer::Reject(refusal)) => return refused(refusal),
        Err(HandoffError::NotUpgrade) => {
            return (StatusCode::UPGRADE_REQUIRED, "a WebSocket lives here\n").into_response();
        }
        Err(HandoffError::Busy) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let mut response = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in accepted.headers() {
        response = response.header(name, value);
    }
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return eprintln!("upgrade failed: {e}"),
        };
        let parts = match downcast::<TokioIo<tokio::net::TcpStream>>(upgraded) {
            Ok(parts) => parts,
            Err(_) => return eprintln!("not a plain TCP connection: cannot hand it over"),
        };
        let stream = match parts.io.into_inner().into_std() {
            Ok(stream) => stream,
            Err(e) => return eprintln!("hand-off: {e}"),
        };
        if let Err(e) = accepted.attach(stream, &parts.read_buf) {
            eprintln!("hand-off: {e}");
        }
    });
    response
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The engine's refusal as axum's response.
fn refused(refusal: HttpResponse) -> Response {
    let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = Response::new(Body::from(refusal.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(kind) = refusal
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
    {
        headers.insert(header::CONTENT_TYPE, kind);
    }
    for (name, value) in &refusal.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    response
}

fn usage() -> ! {
    eprintln!("usage: axum-service [--addr HOST:PORT] [--threads N]");
    std::process::exit(2);
}

fn main() {
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            ("--threads", Some(value)) => threads = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    // The engine's own listener is not used by clients (they come through axum's
    // port); it is bound to an ephemeral port on the loopback.
    let config = Config::default().with_reactors(threads);
    let engine = match Server::bind("127.0.0.1:0", config).and_then(|s| s.spawn(Rooms)) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("wsreactor: {e}");
            std::process::exit(1);
        }
    };
    let app = App {
        engine: engine.sender(),
    };
    let router = Router::new()
        .route("/api/health", get(health))
        .route("/api/rooms/{room}", post(publish))
        .route("/ws", get(websocket))
        .with_state(app);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio: {e}");
            std::process::exit(1);
        }
    };
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(stop_signal())
            .await
    });
    let _ = engine.shutdown(Duration::from_secs(5));
    if let Err(e) = served {
        eprintln!("axum: {e}");
        std::process::exit(1);
    }
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
