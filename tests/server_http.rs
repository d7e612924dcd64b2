//! The HTTP side of a real server: refused upgrades get the status RFC 6455 and
//! HTTP ask for, with the headers that tell the client what to change, and the
//! connection closes after them; a handler serves a page, refuses an origin and
//! picks a subprotocol; the counters record each refusal.

#[path = "util/http.rs"]
mod http;
#[path = "util/server.rs"]
mod server;

use http::{assert_empty_refusal, exchange, exchange_until_head, upgrade_plus, upgrade_with};
use server::{Echo, PATIENCE, UPGRADE, assert_echo, start, test_config, wait_for_stats};
use tungstenite::client::IntoClientRequest;
use wsreactor::{Handler, HttpRequest, HttpResponse, Message, Request, Socket, Upgrade};

#[test]
fn a_plain_get_gets_426_upgrade_required_and_is_closed() {
    let server = start(test_config(), Echo);
    let (head, body) = exchange(
        server.local_addr(),
        "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(head.status_line, "HTTP/1.1 426 Upgrade Required");
    assert_eq!(head.header("upgrade"), Some("websocket"));
    assert_eq!(head.header("sec-websocket-version"), Some("13"));
    // An Upgrade header needs the upgrade connection option beside it.
    assert!(
        head.has_token("connection", "upgrade"),
        "{:?}",
        head.headers
    );
    assert_empty_refusal(&head, &body, 426);
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.accepted, stats.rejected, stats.closed()), (1, 1, 0));
}

#[test]
fn broken_upgrades_get_400() {
    let server = start(test_config(), Echo);
    let cases = [
        (
            "missing key",
            upgrade_with("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        ),
        (
            "key of 12 bytes",
            upgrade_with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBu"),
        ),
        (
            "key that is not base64",
            upgrade_with("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!!"),
        ),
        (
            "two keys",
            upgrade_plus("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),
        ),
        (
            "no Connection: upgrade",
            upgrade_with("Connection: Upgrade", "Connection: keep-alive"),
        ),
        ("missing Host", upgrade_with("Host: localhost\r\n", "")),
        ("HTTP/1.0", upgrade_with("GET / HTTP/1.1", "GET / HTTP/1.0")),
        ("a request body", upgrade_plus("Content-Length: 5")),
        (
            "not HTTP at all",
            "\x16\x03\x01\x02\x00\x01\x00\x01\r\n\r\n".to_owned(),
        ),
    ];
    for (what, request) in &cases {
        let (head, body) = exchange(server.local_addr(), request);
        assert_eq!(head.status_line, "HTTP/1.1 400 Bad Request", "{what}");
        assert_empty_refusal(&head, &body, 400);
    }
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(stats.rejected, cases.len() as u64);
}

#[test]
fn version_8_gets_426_naming_version_13() {
    let server = start(test_config(), Echo);
    for version in ["Sec-WebSocket-Version: 8", "Sec-WebSocket-Version: 13, 8"] {
        let (head, body) = exchange(
            server.local_addr(),
            &upgrade_with("Sec-WebSocket-Version: 13", version),
        );
        assert_eq!(
            head.status_line, "HTTP/1.1 426 Upgrade Required",
            "{version}"
        );
        assert_eq!(head.header("sec-websocket-version"), Some("13"));
        assert_empty_refusal(&head, &body, 426);
    }
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(stats.rejected, 2);
}

#[test]
fn an_upgrade_by_post_gets_405_allowing_get() {
    let server = start(test_config(), Echo);
    let (head, body) = exchange(server.local_addr(), &upgrade_with("GET /", "POST /"));
    assert_eq!(head.status_line, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(head.header("allow"), Some("GET"));
    assert_empty_refusal(&head, &body, 405);
    assert_eq!(
        wait_for_stats(&server, PATIENCE, |s| s.open == 0).rejected,
        1
    );
}

/// The test upgrade request padded with one header to exactly `len` bytes.
fn upgrade_of_len(len: usize) -> String {
    let base = UPGRADE.len() + "X-Pad: \r\n".len();
    assert!(len > base);
    upgrade_plus(&format!("X-Pad: {}", "p".repeat(len - base)))
}

#[test]
fn requests_over_the_header_limits_get_431() {
    let config = test_config().with_header_limits(1024, 8);
    let server = start(config, Echo);
    let addr = server.local_addr();
    let too_large = "HTTP/1.1 431 Request Header Fields Too Large";

    // The limits are inclusive: exactly 1024 bytes, exactly 8 headers are fine.
    let at_limit = upgrade_of_len(1024);
    assert_eq!(at_limit.len(), 1024);
    let (head, _) = exchange_until_head(addr, &at_limit);
    assert_eq!(head.status(), 101, "a request of exactly 1024 bytes");
    let eight = upgrade_plus("A: 1\r\nB: 2\r\nC: 3");
    let (head, _) = exchange_until_head(addr, &eight);
    assert_eq!(head.status(), 101, "a request of exactly 8 headers");

    let (head, body) = exchange(addr, &upgrade_of_len(1025));
    assert_eq!(head.status_line, too_large, "one byte over");
    assert_empty_refusal(&head, &body, 431);
    let (head, body) = exchange(addr, &upgrade_of_len(64 * 1024));
    assert_eq!(head.status_line, too_large, "64 KiB of headers");
    assert_empty_refusal(&head, &body, 431);
    let (head, body) = exchange(addr, &upgrade_plus("A: 1\r\nB: 2\r\nC: 3\r\nD: 4"));
    assert_eq!(head.status_line, too_large, "nine headers");
    assert_empty_refusal(&head, &body, 431);

    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.rejected, stats.accepted), (3, 5));
}

/// Serves a page at `/`, refuses origins other than its own, and confirms the
/// subprotocol "v2.chat" when offered (or, wrongly, "superchat" when not: the
/// engine must not confirm a subprotocol the client did not offer).
#[derive(Clone)]
struct Site;

const PAGE: &str = "<!doctype html><h1>wsreactor</h1>";
const ORIGIN: &str = "https://site.example";

impl Handler for Site {
    type Session = ();

    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<()> {
        if request.origin().is_some_and(|o| o != ORIGIN) {
            return Upgrade::reject(403);
        }
        let protocol = if request.subprotocols().any(|p| p == "v2.chat") {
            "v2.chat"
        } else {
            "superchat"
        };
        Upgrade::accept(()).with_protocol(protocol)
    }

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }

    fn on_http(&mut self, request: &HttpRequest<'_, '_>) -> Option<HttpResponse> {
        (request.path() == "/").then(|| HttpResponse::html(PAGE))
    }
}

#[test]
fn on_http_serves_a_page_and_closes() {
    let server = start(test_config(), Site);
    let (head, body) = exchange(
        server.local_addr(),
        "GET /?from=test HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        head.header("content-length"),
        Some(&*PAGE.len().to_string())
    );
    assert!(head.has_token("connection", "close"));
    assert_eq!(body, PAGE.as_bytes());

    // A path the hook does not serve falls back to 426.
    let (head, body) = exchange(
        server.local_addr(),
        "GET /elsewhere HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(head.status_line, "HTTP/1.1 426 Upgrade Required");
    assert_empty_refusal(&head, &body, 426);

    // Serving a page is not refusing an upgrade.
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!((stats.accepted, stats.rejected), (2, 1));
}

#[test]
fn on_upgrade_refuses_a_foreign_origin_with_403() {
    let server = start(test_config(), Site);
    let (head, body) = exchange(
        server.local_addr(),
        &upgrade_plus("Origin: https://evil.example"),
    );
    assert_eq!(head.status_line, "HTTP/1.1 403 Forbidden");
    assert_empty_refusal(&head, &body, 403);

    let (head, _open) = exchange_until_head(
        server.local_addr(),
        &upgrade_plus(&format!("Origin: {ORIGIN}")),
    );
    assert_eq!(head.status(), 101, "the site's own origin is accepted");
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 1);
    assert_eq!(stats.rejected, 1);
}

#[test]
fn the_subprotocol_chosen_by_on_upgrade_is_confirmed() {
    let server = start(test_config(), Site);
    let mut request = format!("ws://{}/", server.local_addr())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v1.chat, v2.chat".parse().unwrap(),
    );
    // tungstenite checks that the confirmed subprotocol is one it offered.
    let (mut ws, response) = tungstenite::connect(request).expect("the upgrade succeeds");
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "v2.chat"
    );
    assert_echo(&mut ws, "speaking v2");
}

#[test]
fn a_subprotocol_the_client_did_not_offer_is_not_confirmed() {
    let server = start(test_config(), Site);
    // The handler picks "superchat", which this client does not offer.
    let (head, _open) = exchange_until_head(
        server.local_addr(),
        &upgrade_plus("Sec-WebSocket-Protocol: v1.chat, mqtt"),
    );
    assert_eq!(head.status(), 101);
    assert_eq!(head.header("sec-websocket-protocol"), None);

    // A client that offers none gets none either: tungstenite fails the
    // handshake if the server confirms a subprotocol it did not ask for.
    let (mut ws, response) = tungstenite::connect(format!("ws://{}/", server.local_addr()))
        .expect("the upgrade succeeds");
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    assert_echo(&mut ws, "no subprotocol");
}
