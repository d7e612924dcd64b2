//! What a handler can say in HTTP: extra headers on the 101 (a cookie), a refusal
//! with a body and headers, plain responses with headers and a built content type,
//! `HEAD` answered with the head only, and 500 for headers HTTP cannot carry or the
//! engine writes itself. The peer's address and the decoded query reach the
//! handler.

#[path = "util/http.rs"]
mod http;
#[path = "util/server.rs"]
mod server;

use std::net::SocketAddr;

use http::{exchange, upgrade_with};
use server::{PATIENCE, start, test_config, wait_for_stats};
use tungstenite::Message as T;
use wsreactor::{Handler, HttpRequest, HttpResponse, Request, Socket, Upgrade};

#[derive(Clone)]
struct Answers;

/// Who connected: the name from the query and the address the request came from.
#[derive(Default)]
struct Visitor {
    name: String,
    peer: Option<SocketAddr>,
}

fn shown(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
}

impl Handler for Answers {
    type Session = Visitor;

    fn on_upgrade(&mut self, request: &Request) -> Upgrade<Visitor> {
        let visitor = Visitor {
            name: request.query_param("name").unwrap_or_default().into_owned(),
            peer: request.peer_addr(),
        };
        match request.path() {
            "/cookie" => Upgrade::accept(visitor)
                .with_header("Set-Cookie", format!("visitor={}; HttpOnly", "v1"))
                .with_header("X-Request-Peer", shown(request.peer_addr())),
            "/busy" => Upgrade::reject_with(
                HttpResponse::new(503, "text/plain", "try later\n").with_header("Retry-After", "5"),
            ),
            "/reserved-header" => Upgrade::accept(visitor).with_header("Content-Length", "5"),
            "/split-header" => Upgrade::accept(visitor).with_header("X-Split", "a\r\nX-In: 1"),
            _ => Upgrade::reject(404),
        }
    }

    fn on_open(&mut self, ws: &mut Socket<'_, Visitor>) {
        let line = format!(
            "{} {} {}",
            ws.session().name,
            shown(ws.session().peer),
            shown(ws.peer_addr())
        );
        let _ = ws.send_text(&line);
    }

    fn on_http(&mut self, request: &HttpRequest<'_, '_>) -> Option<HttpResponse> {
        let charset = "utf-8";
        match request.path() {
            "/page" => Some(
                HttpResponse::new(200, format!("text/plain; charset={charset}"), "hello\n")
                    .with_header("Cache-Control", "no-store")
                    .with_header("X-Peer", shown(request.peer_addr())),
            ),
            "/nothing" => Some(HttpResponse::empty(204)),
            "/chunked" => Some(HttpResponse::html("x").with_header("Transfer-Encoding", "chunked")),
            "/bad-name" => Some(HttpResponse::html("x").with_header("X Bad", "1")),
            _ => None,
        }
    }
}

fn get(addr: SocketAddr, method: &str, path: &str) -> (http::Head, Vec<u8>) {
    exchange(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    )
}

#[test]
fn the_101_carries_extra_headers_and_the_session_is_built_from_the_request() {
    let server = start(test_config(), Answers);
    let url = format!("ws://{}/cookie?name=J%C3%B6rg+K", server.local_addr());
    let (mut ws, response) = tungstenite::connect(url).expect("the upgrade succeeds");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("set-cookie").unwrap(),
        "visitor=v1; HttpOnly"
    );
    let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_ref() else {
        panic!("plain TCP");
    };
    let me = tcp.local_addr().unwrap().to_string();
    assert_eq!(response.headers().get("x-request-peer").unwrap(), &*me);
    // The name decoded from the query; the peer the same in the request and on
    // the socket.
    assert_eq!(ws.read().unwrap(), T::text(format!("Jörg K {me} {me}")));
}

#[test]
fn a_refusal_carries_its_body_and_headers() {
    let server = start(test_config(), Answers);
    let (head, body) = exchange(server.local_addr(), &upgrade_with("GET /", "GET /busy"));
    assert_eq!(head.status_line, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(head.header("retry-after"), Some("5"));
    assert_eq!(head.header("content-type"), Some("text/plain"));
    assert_eq!(head.header("content-length"), Some("10"));
    assert!(head.has_token("connection", "close"));
    assert_eq!(body, b"try later\n");
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(stats.rejected, 1);
}

#[test]
fn a_plain_response_has_its_headers_and_head_gets_the_length_without_the_body() {
    let server = start(test_config(), Answers);
    let addr = server.local_addr();
    let (head, body) = get(addr, "GET", "/page");
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert_eq!(head.header("content-length"), Some("6"));
    assert_eq!(body, b"hello\n");
    let peer = head.header("x-peer").expect("the peer's address");
    assert!(peer.starts_with("127.0.0.1:"), "{peer}");

    let (head, body) = get(addr, "HEAD", "/page");
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(head.header("content-length"), Some("6"), "as for GET");
    assert_eq!(head.header("cache-control"), Some("no-store"));
    assert!(body.is_empty(), "HEAD got a body: {body:?}");

    // 204 carries neither a body nor a length.
    let (head, body) = get(addr, "GET", "/nothing");
    assert_eq!(head.status_line, "HTTP/1.1 204 No Content");
    assert_eq!(head.header("content-length"), None);
    assert!(body.is_empty());
}

#[test]
fn headers_http_cannot_carry_or_the_engine_writes_answer_500() {
    let server = start(test_config(), Answers);
    let addr = server.local_addr();
    for path in ["/reserved-header", "/split-header"] {
        let (head, body) = exchange(addr, &upgrade_with("GET /", &format!("GET {path}")));
        assert_eq!(
            head.status_line, "HTTP/1.1 500 Internal Server Error",
            "{path}"
        );
        assert_eq!(head.header("x-in"), None);
        assert!(body.is_empty());
    }
    for path in ["/chunked", "/bad-name"] {
        let (head, body) = get(addr, "GET", path);
        assert_eq!(
            head.status_line, "HTTP/1.1 500 Internal Server Error",
            "{path}"
        );
        assert_eq!(head.header("transfer-encoding"), None);
        assert!(body.is_empty());
    }
}
