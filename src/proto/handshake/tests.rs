//! Unit tests of the handshake, both roles.

use super::*;
use proptest::prelude::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn request_with(lines: &[&str]) -> Vec<u8> {
    let mut head = lines.join("\r\n");
    head.push_str("\r\n\r\n");
    head.into_bytes()
}

/// A header line to swap in, by the prefix of the line it replaces; `None` drops it.
type Edit<'a> = (&'a str, Option<&'a str>);
/// An extension offer, owned: name and (name, value) parameters.
type Offer = (String, Vec<(String, Option<String>)>);

/// A valid upgrade request with `replace` swapped in for the line that starts the same way
/// (up to the colon, or the first word for the request line); `None` drops that line.
fn request_except(replace: &[Edit<'_>]) -> Vec<u8> {
    let base = [
        "GET /chat?room=1&x=2 HTTP/1.1",
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Origin: http://example.com",
        "Sec-WebSocket-Protocol: chat, superchat",
        "Sec-WebSocket-Version: 13",
    ];
    let mut lines: Vec<String> = Vec::new();
    for line in base {
        let prefix = line.split([':', ' ']).next().unwrap_or(line);
        match replace.iter().find(|(p, _)| *p == prefix) {
            Some((_, Some(new))) => lines.push((*new).to_owned()),
            Some((_, None)) => {}
            None => lines.push(line.to_owned()),
        }
    }
    for (p, new) in replace {
        if !base.iter().any(|l| l.starts_with(p)) {
            lines.extend(new.map(str::to_owned));
        }
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    request_with(&refs)
}

fn parse(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    parse_request(buf, &mut headers, DEFAULT_MAX_HEADER_BYTES).map(|r| r.map(|(_, n)| n))
}

fn error_of(replace: &[Edit<'_>]) -> HandshakeError {
    match parse(&request_except(replace)) {
        Err(e) => e,
        other => panic!("expected an error for {replace:?}, got {other:?}"),
    }
}

fn accept_response(key: &[u8], protocol: Option<&str>, extensions: Option<&str>) -> String {
    let mut out = Vec::new();
    write_accept(&mut out, key, protocol, extensions);
    String::from_utf8(out).unwrap()
}

#[test]
fn rfc_6455_example_accept_key() {
    assert_eq!(&accept_key(KEY.as_bytes()), ACCEPT.as_bytes());
}

#[test]
fn encode_key_is_base64_of_the_nonce() {
    assert_eq!(&encode_key(*b"the sample nonce"), KEY.as_bytes());
}

#[test]
fn valid_request_exposes_its_parts_without_copying() {
    let buf = request_except(&[]);
    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    let (req, n) = parse_request(&buf, &mut headers, DEFAULT_MAX_HEADER_BYTES)
        .unwrap()
        .unwrap();
    assert_eq!(n, buf.len());
    assert_eq!(req.path(), "/chat");
    assert_eq!(req.query(), Some("room=1&x=2"));
    assert_eq!(req.host(), "server.example.com");
    assert_eq!(req.origin(), Some("http://example.com"));
    assert_eq!(req.key(), KEY);
    assert_eq!(req.header("sec-websocket-VERSION"), Some(&b"13"[..]));
    assert_eq!(req.header("X-Missing"), None);
    assert_eq!(req.headers().count(), 7);
    assert_eq!(
        req.headers().next(),
        Some(("Host", &b"server.example.com"[..]))
    );
    assert_eq!(req.http().method(), "GET");
    assert_eq!(req.http().target(), "/chat?room=1&x=2");
    assert_eq!(req.http().minor_version(), 1);
    assert_eq!(
        req.subprotocols().collect::<Vec<_>>(),
        ["chat", "superchat"]
    );
    assert_eq!(req.extensions().count(), 0);
    // Zero copy: the path points into the read buffer.
    assert!(buf.as_ptr_range().contains(&req.path().as_ptr()));
}

#[test]
fn path_without_query_and_origin_are_optional() {
    let buf = request_except(&[("GET", Some("GET / HTTP/1.1")), ("Origin", None)]);
    let mut headers = [EMPTY_HEADER; 16];
    let (req, _) = parse_request(&buf, &mut headers, 4096).unwrap().unwrap();
    assert_eq!((req.path(), req.query(), req.origin()), ("/", None, None));
}

#[test]
fn bytes_after_the_head_are_not_consumed() {
    let mut buf = request_except(&[]);
    let head = buf.len();
    buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4, 5]);
    assert_eq!(parse(&buf), Ok(Some(head)));
}

#[test]
fn every_strict_prefix_is_partial() {
    let buf = request_except(&[]);
    for end in 0..buf.len() {
        assert_eq!(parse(&buf[..end]), Ok(None), "prefix of {end} bytes");
    }
    let mut headers = [EMPTY_HEADER; 16];
    for end in 0..buf.len() {
        assert!(matches!(
            parse_http_request(&buf[..end], &mut headers, 8192),
            Ok(None)
        ));
    }
}

#[test]
fn each_broken_rule_has_its_error_and_status() {
    use HandshakeError::*;
    let cases: &[(&[Edit<'_>], HandshakeError, u16)] = &[
        (&[("Upgrade", None)], NotUpgrade, 426),
        (&[("Upgrade", Some("Upgrade: h2c"))], NotUpgrade, 426),
        (&[("Upgrade", Some("Upgrade: websockets"))], NotUpgrade, 426),
        (
            &[("GET", Some("POST /chat HTTP/1.1"))],
            MethodNotAllowed,
            405,
        ),
        (
            &[("GET", Some("get /chat HTTP/1.1"))],
            MethodNotAllowed,
            405,
        ),
        (
            &[("GET", Some("GET /chat HTTP/1.0"))],
            BadRequest("WebSocket needs HTTP/1.1"),
            400,
        ),
        (&[("Host", None)], BadRequest("missing Host"), 400),
        (
            &[("X", Some("host: again"))],
            BadRequest("more than one Host"),
            400,
        ),
        (
            &[("X", Some("Content-Length: 5"))],
            BadRequest("upgrade request with a body"),
            400,
        ),
        (
            &[("X", Some("Transfer-Encoding: chunked"))],
            BadRequest("upgrade request with a body"),
            400,
        ),
        (
            &[("Connection", None)],
            BadRequest("Connection lacks the upgrade token"),
            400,
        ),
        (
            &[("Connection", Some("Connection: keep-alive"))],
            BadRequest("Connection lacks the upgrade token"),
            400,
        ),
        (
            &[("Connection", Some("Connection: upgrades"))],
            BadRequest("Connection lacks the upgrade token"),
            400,
        ),
        (&[("Sec-WebSocket-Version", None)], UnsupportedVersion, 426),
        (
            &[("Sec-WebSocket-Version", Some("Sec-WebSocket-Version: 8"))],
            UnsupportedVersion,
            426,
        ),
        (
            &[(
                "Sec-WebSocket-Version",
                Some("Sec-WebSocket-Version: 13, 8"),
            )],
            UnsupportedVersion,
            426,
        ),
        (
            &[("X", Some("Sec-WebSocket-Version: 13"))],
            UnsupportedVersion,
            426,
        ),
        (
            &[("Sec-WebSocket-Key", None)],
            BadRequest("missing Sec-WebSocket-Key"),
            400,
        ),
        (
            &[("X", Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="))],
            BadRequest("more than one Sec-WebSocket-Key"),
            400,
        ),
        (
            &[(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"),
            )],
            BadRequest("invalid Sec-WebSocket-Key"),
            400,
        ),
        // 24 characters that decode to 17 bytes, and ones that are not base64 at all.
        (
            &[(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA="),
            )],
            BadRequest("invalid Sec-WebSocket-Key"),
            400,
        ),
        (
            &[(
                "Sec-WebSocket-Key",
                Some("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="),
            )],
            BadRequest("invalid Sec-WebSocket-Key"),
            400,
        ),
        (
            &[("X", Some("Origin: http://evil.example"))],
            BadRequest("more than one Origin"),
            400,
        ),
        (
            &[("GET", Some("GET /chat HTTP/2.0"))],
            BadRequest("invalid HTTP version"),
            400,
        ),
        (
            &[("X", Some("Bad Name: x"))],
            BadRequest("invalid header name"),
            400,
        ),
    ];
    for (replace, error, status) in cases {
        assert_eq!(error_of(replace), *error, "{replace:?}");
        assert_eq!(error.status(), *status, "{replace:?}");
    }
}

#[test]
fn host_and_origin_must_be_utf8() {
    for (name, reason) in [("Host: ", "invalid Host"), ("Origin: ", "invalid Origin")] {
        let mut buf = request_except(&[]);
        let at = buf
            .windows(name.len())
            .position(|w| w == name.as_bytes())
            .unwrap();
        buf[at + name.len()] = 0xff;
        assert_eq!(parse(&buf), Err(HandshakeError::BadRequest(reason)));
    }
}

#[test]
fn an_empty_body_is_allowed() {
    let buf = request_except(&[("X", Some("Content-Length: 0"))]);
    assert_eq!(parse(&buf), Ok(Some(buf.len())));
}

#[test]
fn the_first_broken_rule_wins() {
    // Not an upgrade at all: whatever else is wrong, it goes to the plain-HTTP path.
    let plain = request_with(&["POST /form HTTP/1.0"]);
    assert_eq!(parse(&plain), Err(HandshakeError::NotUpgrade));
    // Wrong method and missing key: the method is reported.
    let e = error_of(&[("GET", Some("PUT / HTTP/1.1")), ("Sec-WebSocket-Key", None)]);
    assert_eq!(e, HandshakeError::MethodNotAllowed);
}

#[test]
fn a_plain_request_stays_available_after_not_upgrade() {
    let buf = request_with(&["GET /index.html?v=3 HTTP/1.0", "Accept: text/html"]);
    let mut headers = [EMPTY_HEADER; 8];
    let (http, n) = parse_http_request(&buf, &mut headers, 1024)
        .unwrap()
        .unwrap();
    assert_eq!(n, buf.len());
    assert_eq!(
        Request::from_http(http).unwrap_err(),
        HandshakeError::NotUpgrade
    );
    assert_eq!(
        (http.method(), http.path(), http.query()),
        ("GET", "/index.html", Some("v=3"))
    );
    assert_eq!(http.minor_version(), 0);
    assert_eq!(http.header("accept"), Some(&b"text/html"[..]));
    assert_eq!(http.headers().count(), 1);
}

#[test]
fn connection_and_upgrade_tokens_are_lists_and_case_insensitive() {
    for connection in [
        &["Connection: keep-alive, Upgrade"][..],
        &["Connection: UPGRADE"],
        &["connection: upgrade"],
        &["Connection: keep-alive", "Connection: Upgrade"],
        &["Connection: ,, upgrade ,"],
        &["Connection:\tUpgrade\t,close"],
    ] {
        let mut lines = vec![
            "GET / HTTP/1.1",
            "Host: h",
            "Upgrade: WebSocket",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ];
        lines.extend_from_slice(connection);
        assert!(parse(&request_with(&lines)).is_ok(), "{connection:?}");
    }
    for upgrade in ["Upgrade: h2c, websocket", "UPGRADE: WEBSOCKET"] {
        assert!(
            parse(&request_except(&[("Upgrade", Some(upgrade))])).is_ok(),
            "{upgrade}"
        );
    }
}

#[test]
fn oversized_heads_are_431_complete_or_not() {
    let buf = request_except(&[]);
    let n = buf.len();
    let mut headers = [EMPTY_HEADER; 16];
    // Exactly at the limit is fine.
    assert!(parse_request(&buf, &mut headers, n).unwrap().is_some());
    // One byte over, complete.
    let e = parse_request(&buf, &mut headers, n - 1).unwrap_err();
    assert_eq!((e, e.status()), (HandshakeError::HeaderTooLarge, 431));
    // Still partial but already over the limit.
    let e = parse_request(&buf[..n - 3], &mut headers, 100).unwrap_err();
    assert_eq!(e, HandshakeError::HeaderTooLarge);
    // Partial and within the limit: wait for more.
    assert!(
        parse_request(&buf[..100], &mut headers, 100)
            .unwrap()
            .is_none()
    );
    // A huge junk-free stream of header bytes is refused without scanning all of it.
    let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long.resize(1 << 20, b'a');
    assert_eq!(parse(&long), Err(HandshakeError::HeaderTooLarge));
}

#[test]
fn too_many_headers_is_431() {
    let buf = request_except(&[]);
    let mut headers = [EMPTY_HEADER; 3];
    let e = parse_request(&buf, &mut headers, 8192).unwrap_err();
    assert_eq!((e, e.status()), (HandshakeError::TooManyHeaders, 431));
    let mut headers = [EMPTY_HEADER; 7];
    assert!(parse_request(&buf, &mut headers, 8192).is_ok());
}

#[test]
fn syntax_errors_are_400() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\n\r\n",
        b"\x00",
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.status(), 400, "{bad:?}: {e}");
    }
}

fn offers(lines: &[&str]) -> Vec<Offer> {
    let mut all = vec![
        "GET / HTTP/1.1",
        "Host: h",
        "Upgrade: websocket",
        "Connection: upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ];
    all.extend_from_slice(lines);
    let buf = request_with(&all);
    let mut headers = [EMPTY_HEADER; 16];
    let (req, _) = parse_request(&buf, &mut headers, 8192).unwrap().unwrap();
    req.extensions()
        .map(|o| {
            let params = o
                .params()
                .map(|(n, v)| (n.to_owned(), v.map(str::to_owned)));
            (o.name().to_owned(), params.collect())
        })
        .collect()
}

fn offer(name: &str, params: &[(&str, Option<&str>)]) -> Offer {
    let params = params
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)));
    (name.to_owned(), params.collect())
}

#[test]
fn extension_offers_are_parsed() {
    let got = offers(&[
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; \
         server_max_window_bits=10, permessage-deflate",
    ]);
    assert_eq!(
        got,
        [
            offer(
                "permessage-deflate",
                &[
                    ("client_max_window_bits", None),
                    ("server_max_window_bits", Some("10"))
                ]
            ),
            offer("permessage-deflate", &[]),
        ]
    );
}

#[test]
fn extension_offers_with_quotes_whitespace_and_empty_items() {
    let got = offers(&[
        "Sec-WebSocket-Extensions: ,  a ;x=\"10\" ;; y = \"p;q,r\" ,, b;\tz",
        "sec-websocket-extensions: c; k=\"esc\\\"aped,\"; m=\"",
        "Sec-WebSocket-Extensions: ; orphan=1, d;=nameless",
    ]);
    assert_eq!(
        got,
        [
            offer("a", &[("x", Some("10")), ("y", Some("p;q,r"))]),
            offer("b", &[("z", None)]),
            offer("c", &[("k", Some("esc\\\"aped,")), ("m", Some("\""))]),
            offer("d", &[]),
        ]
    );
}

#[test]
fn subprotocols_across_headers_with_odd_whitespace() {
    let buf = request_except(&[
        (
            "Sec-WebSocket-Protocol",
            Some("Sec-WebSocket-Protocol: ,a,\t b ,, "),
        ),
        ("X", Some("sec-websocket-protocol: c")),
        ("Y", Some("Sec-WebSocket-Protocol:")),
    ]);
    let mut headers = [EMPTY_HEADER; 16];
    let (req, _) = parse_request(&buf, &mut headers, 8192).unwrap().unwrap();
    assert_eq!(req.subprotocols().collect::<Vec<_>>(), ["a", "b", "c"]);
}

#[test]
fn accept_response_bytes_are_exact() {
    assert_eq!(
        accept_response(KEY.as_bytes(), None, None),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    assert_eq!(
        accept_response(KEY.as_bytes(), Some("chat"), Some("permessage-deflate")),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    );
    let mut out = bytes::BytesMut::new();
    write_accept(&mut out, KEY.as_bytes(), None, None);
    assert_eq!(
        &out[..],
        accept_response(KEY.as_bytes(), None, None).as_bytes()
    );
}

#[test]
#[should_panic(expected = "CR, LF or NUL")]
fn accept_refuses_response_splitting() {
    write_accept(
        &mut Vec::new(),
        KEY.as_bytes(),
        Some("x\r\nSet-Cookie: a=b"),
        None,
    );
}

fn error_response(e: HandshakeError) -> String {
    let mut out = Vec::new();
    write_error(&mut out, &e);
    String::from_utf8(out).unwrap()
}

#[test]
fn error_response_bytes_are_exact() {
    let upgrade_required = "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\nConnection: Upgrade, close\r\n\r\n";
    assert_eq!(
        error_response(HandshakeError::UnsupportedVersion),
        upgrade_required
    );
    assert_eq!(error_response(HandshakeError::NotUpgrade), upgrade_required);
    assert_eq!(
        error_response(HandshakeError::BadRequest("missing Host")),
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        error_response(HandshakeError::MethodNotAllowed),
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    let too_large = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\
        Connection: close\r\n\r\n";
    assert_eq!(error_response(HandshakeError::HeaderTooLarge), too_large);
    assert_eq!(error_response(HandshakeError::TooManyHeaders), too_large);
}

#[test]
fn status_and_http_response_bytes_are_exact() {
    let mut out = Vec::new();
    write_status(&mut out, 403);
    assert_eq!(
        out,
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    out.clear();
    write_status(&mut out, 599);
    assert_eq!(
        out,
        b"HTTP/1.1 599 \r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    out.clear();
    write_http_response(&mut out, 200, "text/html; charset=utf-8", b"<h1>hi</h1>");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 11\r\n\
         Connection: close\r\n\r\n<h1>hi</h1>"
    );
    let mut out = Vec::new();
    write_http_response(&mut out, 404, "text/plain", &[b'x'; 1234]);
    assert!(out.starts_with(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n"
    ));
}

#[test]
#[should_panic(expected = "not three digits")]
fn status_must_have_three_digits() {
    write_status(&mut Vec::new(), 42);
}

#[test]
fn eq_lowercase_matches_eq_ignore_ascii_case_except_cr_for_dash() {
    for l in (b'a'..=b'z').chain([b'-']) {
        for b in 0..=255u8 {
            let expected = [b].eq_ignore_ascii_case(&[l]) || (b == b'\r' && l == b'-');
            assert_eq!(
                eq_lowercase(&[b], &[l]),
                expected,
                "{b:#x} vs {}",
                l as char
            );
        }
    }
    assert!(eq_lowercase(b"Sec-WebSocket-Key", b"sec-websocket-key"));
    assert!(!eq_lowercase(b"Sec-WebSocket-Ke", b"sec-websocket-key"));
}

#[test]
fn decimal_digits() {
    for n in [0, 7, 10, 99, 100, 65_535, usize::MAX] {
        let mut out = Vec::new();
        put_decimal(&mut out, n);
        assert_eq!(out, n.to_string().as_bytes());
    }
}

#[test]
fn error_display_and_statuses() {
    assert_eq!(
        HandshakeError::BadRequest("missing Host").to_string(),
        "bad WebSocket upgrade request: missing Host"
    );
    assert_eq!(
        ClientHandshakeError::Status(403).to_string(),
        "server refused the upgrade with status 403"
    );
    let e: &dyn std::error::Error = &HandshakeError::NotUpgrade;
    assert!(!e.to_string().is_empty());
}

fn client_request(protocols: &[&str], key: &[u8; 24]) -> Vec<u8> {
    let mut out = Vec::new();
    write_request(
        &mut out,
        "example.com:8080",
        "/ws?token=abc",
        key,
        protocols,
        &[("Origin", "http://example.com")],
    );
    out
}

#[test]
fn client_request_bytes_are_exact() {
    let key = encode_key(*b"the sample nonce");
    assert_eq!(
        String::from_utf8(client_request(&["chat", "v2"], &key)).unwrap(),
        "GET /ws?token=abc HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, v2\r\n\
         Origin: http://example.com\r\n\r\n"
    );
}

#[test]
fn client_round_trip() {
    let key = encode_key([7; 16]);
    let offered = ["chat", "v2"];
    let request = client_request(&offered, &key);
    let mut headers = [EMPTY_HEADER; 16];
    let (req, n) = parse_request(&request, &mut headers, 8192)
        .unwrap()
        .unwrap();
    assert_eq!(n, request.len());
    assert_eq!(
        (req.path(), req.query(), req.host()),
        ("/ws", Some("token=abc"), "example.com:8080")
    );
    assert_eq!(req.origin(), Some("http://example.com"));
    let chosen = req.subprotocols().find(|p| *p == "v2");
    let mut response = Vec::new();
    write_accept(&mut response, req.key().as_bytes(), chosen, None);
    response.extend_from_slice(b"\x81\x02hi");

    let mut headers = [EMPTY_HEADER; 16];
    for end in 0..response.len() - 4 {
        assert!(
            parse_response(&response[..end], &mut headers, &key, &offered)
                .unwrap()
                .is_none()
        );
    }
    let (res, n) = parse_response(&response, &mut headers, &key, &offered)
        .unwrap()
        .unwrap();
    assert_eq!(&response[n..], b"\x81\x02hi");
    assert_eq!((res.status(), res.protocol()), (101, Some("v2")));
    assert_eq!(res.header("upgrade"), Some(&b"websocket"[..]));
    assert_eq!(res.headers().count(), 4);
}

fn client_error(response: &str, offered: &[&str]) -> ClientHandshakeError {
    let key = encode_key(*b"the sample nonce");
    let mut headers = [EMPTY_HEADER; 16];
    parse_response(response.as_bytes(), &mut headers, &key, offered).unwrap_err()
}

#[test]
fn client_rejects_bad_responses() {
    use ClientHandshakeError::*;
    let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";
    let key = encode_key(*b"the sample nonce");
    let mut headers = [EMPTY_HEADER; 16];
    let whole = format!("{ok}\r\n");
    assert!(
        parse_response(whole.as_bytes(), &mut headers, &key, &[])
            .unwrap()
            .is_some()
    );
    let cases = [
        (format!("{ok}\r\n").replace("s3pP", "s4pP"), BadAccept),
        (
            format!("{ok}Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
            BadAccept,
        ),
        (
            format!("{ok}\r\n").replace("Sec-WebSocket-Accept", "X-Accept"),
            BadAccept,
        ),
        (
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_owned(),
            Status(403),
        ),
        ("HTTP/1.0 200 OK\r\n\r\n".to_owned(), Status(200)),
        (
            format!("{ok}\r\n").replace("HTTP/1.1", "HTTP/1.0"),
            Malformed("101 needs HTTP/1.1"),
        ),
        (
            format!("{ok}Sec-WebSocket-Protocol: chat\r\n\r\n"),
            UnofferedProtocol,
        ),
        (
            format!("{ok}Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"),
            UnexpectedExtensions,
        ),
        (
            format!("{ok}\r\n").replace("Upgrade: websocket", "Upgrade: h2c"),
            NotUpgrade,
        ),
        (
            format!("{ok}\r\n").replace("Connection: Upgrade", "Connection: close"),
            NotUpgrade,
        ),
        (
            "HTTP/1.1 1O1 X\r\n\r\n".to_owned(),
            Malformed("invalid status"),
        ),
    ];
    for (response, expected) in cases {
        assert_eq!(client_error(&response, &[]), expected, "{response}");
    }
    let twice = format!("{ok}Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: a\r\n\r\n");
    assert_eq!(client_error(&twice, &["a"]), UnofferedProtocol);
    let unoffered = format!("{ok}Sec-WebSocket-Protocol: b\r\n\r\n");
    assert_eq!(client_error(&unoffered, &["a"]), UnofferedProtocol);
    let mut long = b"HTTP/1.1 101 Switching Protocols\r\nX: ".to_vec();
    long.resize(DEFAULT_MAX_HEADER_BYTES + 1, b'a');
    assert_eq!(
        parse_response(&long, &mut headers, &key, &[]).unwrap_err(),
        Malformed("response head too long")
    );
}

fn valid_request() -> Vec<u8> {
    request_except(&[(
        "X",
        Some("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"15\""),
    )])
}

/// Uses every accessor so that a panic anywhere in them shows up.
fn exercise(buf: &[u8], max: usize) {
    let mut headers = [EMPTY_HEADER; 16];
    if let Ok(Some((req, n))) = parse_request(buf, &mut headers, max) {
        assert!(n <= buf.len() && n <= max);
        let _ = (
            req.path(),
            req.query(),
            req.host(),
            req.origin(),
            req.key(),
            req.header("x"),
        );
        let _ = req.headers().count() + req.subprotocols().count();
        for offer in req.extensions() {
            let _ = (offer.name(), offer.params().count());
        }
    }
    let key = encode_key([1; 16]);
    let mut headers = [EMPTY_HEADER; 16];
    if let Ok(Some((res, n))) = parse_response(buf, &mut headers, &key, &["a", "b"]) {
        assert!(n <= buf.len());
        let _ = (
            res.status(),
            res.protocol(),
            res.header("x"),
            res.headers().count(),
        );
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes chosen from what matters to the parsers, plus anything at all.
    let byte = prop_oneof![
        prop::sample::select(b"\r\n :;,=\"\\\t\x00\x7f\xff?".to_vec()),
        any::<u8>()
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..600), max in 0usize..700) {
        exercise(&buf, max);
    }

    #[test]
    fn mutated_requests_never_panic(mutations in prop::collection::vec(mutation(), 1..8)) {
        let mut buf = valid_request();
        for m in mutations {
            let len = buf.len();
            match m {
                Mutation::Replace(i, b) if len > 0 => buf[i % len] = b,
                Mutation::Insert(i, b) => buf.insert(i % (len + 1), b),
                Mutation::Delete(i) if len > 0 => { buf.remove(i % len); }
                _ => {}
            }
        }
        exercise(&buf, DEFAULT_MAX_HEADER_BYTES);
    }

    #[test]
    fn arbitrary_extension_and_protocol_text_never_panics(text in "[ -~\t]{0,80}") {
        let line = format!("Sec-WebSocket-Extensions: {text}");
        let proto = format!("Sec-WebSocket-Protocol: {text}");
        let buf = request_except(&[("X", Some(&line)), ("Sec-WebSocket-Protocol", Some(&proto))]);
        exercise(&buf, DEFAULT_MAX_HEADER_BYTES);
    }
}
