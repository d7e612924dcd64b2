//! `handshake_request` and `handshake_response`: the HTTP upgrade, both roles.
//!
//! `handshake_request` input: byte 0 picks the head-size limit (bits 0–2) and, with bit 7
//! set, a round trip instead (the client's `write_request` parsed by the server, the
//! server's `write_accept` checked by the client); byte 1 the number of header slots; byte 2
//! where to cut a strict prefix; the rest is the request.
//!
//! `handshake_response` input: bytes 0–15 the client's nonce, byte 16 which subprotocols it
//! offered; the rest is the server's response.

use wsreactor::proto::handshake::{
    self, ClientHandshakeError, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, EMPTY_HEADER,
    HandshakeError, Header, HttpRequest, Request,
};

use crate::reference::{has_token, is_valid_key, trim_ows};

/// Head-size limits to choose from: the default first, then small ones that real heads hit.
const MAX_HEADER_BYTES: [usize; 8] = [DEFAULT_MAX_HEADER_BYTES, 16, 64, 128, 256, 512, 1024, 4096];

/// Subprotocols a client may offer in `handshake_response`.
const PROTOCOLS: [&str; 4] = ["chat", "superchat", "v2.json", "x"];

pub fn handshake_request(data: &[u8]) {
    let [config, slots, cut, request @ ..] = data else {
        return;
    };
    if config & 0x80 != 0 {
        return client_request_round_trip(request);
    }
    let max = MAX_HEADER_BYTES[usize::from(config & 7)];
    let slots = usize::from(*slots) % 129;
    let mut headers = vec![EMPTY_HEADER; slots];
    let (http, len) = match handshake::parse_http_request(request, &mut headers, max) {
        Ok(None) => {
            assert!(
                request.len() <= max,
                "a head over the limit must be refused"
            );
            return;
        }
        Err(e) => {
            match e {
                HandshakeError::HeaderTooLarge => assert!(request.len() > max),
                HandshakeError::TooManyHeaders | HandshakeError::BadRequest(_) => {}
                other => panic!("parse_http_request only checks syntax and size: {other:?}"),
            }
            check_error_response(&e);
            return;
        }
        Ok(Some(parsed)) => parsed,
    };
    assert!(
        len <= request.len() && len <= max,
        "head of {len} bytes, limit {max}"
    );
    assert!(request[..len].ends_with(b"\n"));
    assert!(http.headers().count() <= slots);
    check_http(&http);

    // The head alone parses the same; any strict prefix of it waits for more, because the
    // engine parses again from the start after every read.
    let mut again = vec![EMPTY_HEADER; slots];
    match handshake::parse_http_request(&request[..len], &mut again, max) {
        Ok(Some((http2, len2))) => {
            assert_eq!(len2, len);
            assert_eq!(
                (http2.method(), http2.target()),
                (http.method(), http.target())
            );
            assert!(http2.headers().eq(http.headers()));
        }
        other => panic!("the head alone parses as {other:?}"),
    }
    let cut = usize::from(*cut) * len / 256;
    let mut prefix = vec![EMPTY_HEADER; slots];
    assert_eq!(
        handshake::parse_http_request(&request[..cut], &mut prefix, max).map(|r| r.is_some()),
        Ok(false),
        "a strict prefix ({cut} of {len} bytes) of a complete head must wait for more"
    );

    let expected = expected_status(&http);
    let checked = Request::from_http(http);
    let mut one_step = vec![EMPTY_HEADER; slots];
    let direct = handshake::parse_request(request, &mut one_step, max);
    match checked {
        Ok(req) => {
            assert_eq!(
                expected,
                Ok(()),
                "accepted {:?}",
                String::from_utf8_lossy(request)
            );
            assert!(matches!(direct, Ok(Some((_, l))) if l == len));
            check_request(&req, &http);
        }
        Err(e) => {
            assert_eq!(
                Err(e.status()),
                expected,
                "{e:?} for {:?}",
                String::from_utf8_lossy(request)
            );
            assert_eq!(direct.err(), Some(e));
            check_error_response(&e);
        }
    }
}

/// Method, target, path and query agree with each other.
fn check_http(http: &HttpRequest<'_, '_>) {
    assert!(!http.method().is_empty() && !http.target().is_empty());
    assert!(http.minor_version() <= 1);
    match http.query() {
        Some(query) => assert_eq!(http.target(), format!("{}?{query}", http.path())),
        None => assert_eq!(http.target(), http.path()),
    }
    assert!(!http.path().contains('?'));
}

/// The status RFC 6455 and the module docs say the request must get, checked in the
/// documented order, or `Ok(())` for a valid opening handshake.
fn expected_status(http: &HttpRequest<'_, '_>) -> Result<(), u16> {
    let named = |name: &str| -> Vec<&[u8]> {
        http.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
            .collect()
    };
    let utf8 = |v: &[u8]| std::str::from_utf8(v).is_ok();
    if !named("upgrade").iter().any(|v| has_token(v, "websocket")) {
        return Err(426);
    }
    if http.method() != "GET" {
        return Err(405);
    }
    if http.minor_version() != 1 {
        return Err(400);
    }
    let hosts = named("host");
    if hosts.len() != 1 || !utf8(hosts[0]) {
        return Err(400);
    }
    if named("content-length").iter().any(|v| *v != b"0") || !named("transfer-encoding").is_empty()
    {
        return Err(400);
    }
    if !named("connection").iter().any(|v| has_token(v, "upgrade")) {
        return Err(400);
    }
    if named("sec-websocket-version") != [b"13"] {
        return Err(426);
    }
    let keys = named("sec-websocket-key");
    if keys.len() != 1 || !is_valid_key(keys[0]) {
        return Err(400);
    }
    let origins = named("origin");
    if origins.len() > 1 || !origins.iter().all(|o| utf8(o)) {
        return Err(400);
    }
    Ok(())
}

/// An accepted request's accessors, and its 101 as the client checks it.
fn check_request(req: &Request<'_, '_>, http: &HttpRequest<'_, '_>) {
    let key: &[u8; 24] = req.key().as_bytes().try_into().expect("a key is 24 bytes");
    assert!(is_valid_key(key));
    assert_eq!(Some(req.host().as_bytes()), http.header("host"));
    assert_eq!(req.origin().map(str::as_bytes), http.header("origin"));
    assert_eq!(req.path(), http.path());
    for protocol in req.subprotocols() {
        assert!(!protocol.is_empty() && !protocol.contains(','));
        assert_eq!(trim_ows(protocol.as_bytes()), protocol.as_bytes());
        // write_accept panics on these, and promises values from a request never hold them.
        assert!(!protocol.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)));
    }
    for offer in req.extensions() {
        assert!(!offer.name().is_empty());
        assert_eq!(trim_ows(offer.name().as_bytes()), offer.name().as_bytes());
        for (name, _value) in offer.params() {
            assert!(!name.is_empty());
            assert_eq!(trim_ows(name.as_bytes()), name.as_bytes());
        }
    }
    let protocol = req.subprotocols().next();
    let mut out = Vec::new();
    handshake::write_accept(&mut out, key, protocol, None);
    assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(out.ends_with(b"\r\n\r\n"));
    let offered: Vec<&str> = protocol.into_iter().collect();
    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    match handshake::parse_response(&out, &mut headers, key, &offered) {
        Ok(Some((res, n))) => {
            assert_eq!(
                (res.status(), res.protocol(), n),
                (101, protocol, out.len())
            );
        }
        other => panic!(
            "the client refuses our 101 {:?}: {other:?}",
            String::from_utf8_lossy(&out)
        ),
    }
}

/// A refusal carries its status, is a complete head, and the client reads the status.
fn check_error_response(e: &HandshakeError) {
    let status = e.status();
    assert!(matches!(status, 400 | 405 | 426 | 431), "status {status}");
    let mut out = Vec::new();
    handshake::write_error(&mut out, e);
    assert!(out.starts_with(format!("HTTP/1.1 {status} ").as_bytes()));
    assert!(out.ends_with(b"\r\n\r\n"));
    let key = handshake::encode_key([7; 16]);
    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    assert_eq!(
        handshake::parse_response(&out, &mut headers, &key, &[]).map(|r| r.map(|(_, n)| n)),
        Err(ClientHandshakeError::Status(status))
    );
}

/// What the client writes, the server accepts with the same fields; what the server answers,
/// the client accepts. The fields come from the input, cut down to what `write_request`
/// documents as valid: printable ASCII, tokens for subprotocols.
fn client_request_round_trip(input: &[u8]) {
    let mut fields = input.split(|&b| b == 0);
    let visible = |f: &[u8]| -> String {
        f.iter()
            .filter(|b| (0x21..=0x7e).contains(*b))
            .map(|&b| char::from(b))
            .collect()
    };
    let mut host = visible(fields.next().unwrap_or_default());
    if host.is_empty() {
        host.push('h');
    }
    let path = format!("/{}", visible(fields.next().unwrap_or_default()));
    let origin = visible(fields.next().unwrap_or_default());
    let is_tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let protocols: Vec<String> = fields
        .take(4)
        .map(|f| {
            f.iter()
                .filter(|b| is_tchar(b))
                .map(|&b| char::from(b))
                .collect::<String>()
        })
        .filter(|p| !p.is_empty())
        .collect();
    let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
    let mut nonce = [0u8; 16];
    for (n, b) in nonce.iter_mut().zip(input) {
        *n = *b;
    }
    let key = handshake::encode_key(nonce);
    assert!(is_valid_key(&key));
    let extra: Vec<(&str, &str)> = if origin.is_empty() {
        Vec::new()
    } else {
        vec![("Origin", origin.as_str())]
    };

    let mut request = Vec::new();
    handshake::write_request(&mut request, &host, &path, &key, &protocols, &extra);
    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    let max = request.len().max(DEFAULT_MAX_HEADER_BYTES);
    let req = match handshake::parse_request(&request, &mut headers, max) {
        Ok(Some((req, n))) if n == request.len() => req,
        other => panic!(
            "the server refuses {:?}: {other:?}",
            String::from_utf8_lossy(&request)
        ),
    };
    let (path_only, query) = path
        .split_once('?')
        .map_or((path.as_str(), None), |(p, q)| (p, Some(q)));
    assert_eq!(
        (req.host(), req.path(), req.query()),
        (host.as_str(), path_only, query)
    );
    assert_eq!(req.key().as_bytes(), key);
    assert_eq!(req.origin(), extra.first().map(|(_, o)| *o));
    assert!(req.subprotocols().eq(protocols.iter().copied()));

    let mut answer = Vec::new();
    handshake::write_accept(&mut answer, &key, protocols.first().copied(), None);
    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    match handshake::parse_response(&answer, &mut headers, &key, &protocols) {
        Ok(Some((res, n))) => assert_eq!(
            (res.protocol(), n),
            (protocols.first().copied(), answer.len())
        ),
        other => panic!(
            "the client refuses {:?}: {other:?}",
            String::from_utf8_lossy(&answer)
        ),
    }
}

pub fn handshake_response(data: &[u8]) {
    let Some((nonce, rest)) = data.split_first_chunk::<16>() else {
        return;
    };
    let Some((&offer, response)) = rest.split_first() else {
        return;
    };
    let offered: Vec<&str> = PROTOCOLS
        .iter()
        .enumerate()
        .filter(|(i, _)| offer >> i & 1 == 1)
        .map(|(_, p)| *p)
        .collect();
    let key = handshake::encode_key(*nonce);
    assert!(is_valid_key(&key));
    let accept = handshake::accept_key(&key);

    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    let result = handshake::parse_response(response, &mut headers, &key, &offered);
    let window = &response[..response.len().min(DEFAULT_MAX_HEADER_BYTES)];
    let mut ref_headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    let mut reference = httparse::Response::new(&mut ref_headers);
    let (len, violations) = match reference.parse(window) {
        Ok(httparse::Status::Partial) if response.len() > DEFAULT_MAX_HEADER_BYTES => {
            assert!(
                matches!(result, Err(ClientHandshakeError::Malformed(_))),
                "{result:?}"
            );
            return;
        }
        Ok(httparse::Status::Partial) => {
            assert!(matches!(result, Ok(None)), "{result:?}");
            return;
        }
        Err(_) => {
            assert!(
                matches!(result, Err(ClientHandshakeError::Malformed(_))),
                "{result:?}"
            );
            return;
        }
        Ok(httparse::Status::Complete(len)) => match (reference.code, reference.version) {
            (Some(code), _) if code != 101 => {
                assert_eq!(result.err(), Some(ClientHandshakeError::Status(code)));
                return;
            }
            (_, version) if version != Some(1) => {
                assert!(
                    matches!(result, Err(ClientHandshakeError::Malformed(_))),
                    "{result:?}"
                );
                return;
            }
            _ => (
                len,
                response_violations(reference.headers, &accept, &offered),
            ),
        },
    };
    match result {
        Ok(Some((res, n))) => {
            assert!(violations.is_empty(), "accepted despite {violations:?}");
            assert_eq!((res.status(), n), (101, len));
            if let Some(p) = res.protocol() {
                assert!(offered.contains(&p));
            }
            // Any strict prefix of an accepted head waits for more.
            let cut = usize::from(offer) * len / 256;
            let mut prefix = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
            assert!(matches!(
                handshake::parse_response(&response[..cut], &mut prefix, &key, &offered),
                Ok(None)
            ));
        }
        Err(e) => assert!(
            violations.contains(&e),
            "{e:?}, but the response breaks {violations:?}"
        ),
        Ok(None) => panic!("a complete head reported as partial"),
    }
}

/// Every RFC 6455 §4.1 rule a complete 101 response breaks, as the client's errors.
fn response_violations(
    headers: &[Header<'_>],
    accept: &[u8; 28],
    offered: &[&str],
) -> Vec<ClientHandshakeError> {
    let named = |name: &str| -> Vec<&[u8]> {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
            .collect()
    };
    let mut violations = Vec::new();
    let upgrade = named("upgrade").iter().any(|v| has_token(v, "websocket"));
    let connection = named("connection").iter().any(|v| has_token(v, "upgrade"));
    if !upgrade || !connection {
        violations.push(ClientHandshakeError::NotUpgrade);
    }
    if named("sec-websocket-accept") != [accept] {
        violations.push(ClientHandshakeError::BadAccept);
    }
    match named("sec-websocket-protocol")[..] {
        [] => {}
        [p] if std::str::from_utf8(p).is_ok_and(|p| offered.contains(&p)) => {}
        _ => violations.push(ClientHandshakeError::UnofferedProtocol),
    }
    if named("sec-websocket-extensions")
        .iter()
        .any(|v| !v.trim_ascii().is_empty())
    {
        violations.push(ClientHandshakeError::UnexpectedExtensions);
    }
    violations
}
