//! The opening handshake against tungstenite as the oracle, in both directions, over an
//! in-memory stream: tungstenite's client against our server side, our client side against
//! tungstenite's server, and our accept key against tungstenite's.

use std::io::{self, Read, Write};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError as TungsteniteHandshakeError;
use tungstenite::handshake::derive_accept_key;
use tungstenite::handshake::server::{Request as TRequest, Response as TResponse};
use tungstenite::http::{HeaderValue, Uri};
use tungstenite::{ClientRequestBuilder, Message};
use wsreactor::proto::handshake::{
    self, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, EMPTY_HEADER,
};

/// One end of an in-memory connection: reads drain `incoming` (and would block when it is
/// empty, like a non-blocking socket), writes append to `outgoing`.
#[derive(Default)]
struct Duplex {
    incoming: Vec<u8>,
    read_at: usize,
    outgoing: Vec<u8>,
}

impl Duplex {
    fn with_incoming(bytes: &[u8]) -> Self {
        Duplex {
            incoming: bytes.to_vec(),
            ..Duplex::default()
        }
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pending = &self.incoming[self.read_at..];
        if pending.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = pending.len().min(buf.len());
        buf[..n].copy_from_slice(&pending[..n]);
        self.read_at += n;
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs tungstenite's client until it waits for the response, answers with our server side
/// (choosing `choose` among the offered subprotocols), and returns its finished WebSocket.
fn tungstenite_client_against_ours(
    request: impl IntoClientRequest,
    choose: Option<&str>,
) -> (
    tungstenite::WebSocket<Duplex>,
    tungstenite::handshake::client::Response,
) {
    let mut mid = match tungstenite::client::client(request, Duplex::default()) {
        Err(TungsteniteHandshakeError::Interrupted(mid)) => mid,
        Err(TungsteniteHandshakeError::Failure(e)) => panic!("tungstenite client failed: {e}"),
        Ok(_) => panic!("the client cannot finish before it has a response"),
    };
    let stream = mid.get_mut().get_mut();
    let request_bytes = std::mem::take(&mut stream.outgoing);

    let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
    let (req, consumed) =
        handshake::parse_request(&request_bytes, &mut headers, DEFAULT_MAX_HEADER_BYTES)
            .expect("tungstenite's request is a valid handshake")
            .expect("tungstenite's request is complete");
    assert_eq!(consumed, request_bytes.len());
    assert_eq!(req.path(), "/chat");
    assert_eq!(req.query(), Some("room=7"));
    assert_eq!(req.host(), "localhost:9001");
    let protocol = choose.filter(|c| req.subprotocols().any(|p| p == *c));
    assert_eq!(protocol, choose, "the protocol to choose was offered");

    let mut response = Vec::with_capacity(256);
    handshake::write_accept(&mut response, req.key().as_bytes(), protocol, None);
    // A frame in the same read as the 101: the client must keep it as WebSocket data.
    response.extend_from_slice(b"\x81\x05hello");
    stream.incoming = response;

    match mid.handshake() {
        Ok(done) => done,
        Err(TungsteniteHandshakeError::Failure(e)) => panic!("tungstenite refused our 101: {e}"),
        Err(TungsteniteHandshakeError::Interrupted(_)) => panic!("our 101 was incomplete"),
    }
}

#[test]
fn tungstenite_client_request_is_accepted_and_our_101_is_accepted_by_it() {
    let (mut ws, response) =
        tungstenite_client_against_ours("ws://localhost:9001/chat?room=7", None);
    assert_eq!(response.status(), 101);
    assert!(response.headers().get("Sec-WebSocket-Protocol").is_none());
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
}

#[test]
fn tungstenite_client_gets_the_subprotocol_we_choose() {
    let uri: Uri = "ws://localhost:9001/chat?room=7".parse().unwrap();
    let request = ClientRequestBuilder::new(uri)
        .with_sub_protocol("chat.v1")
        .with_sub_protocol("chat.v2")
        .with_header("Origin", "http://localhost");
    let (mut ws, response) = tungstenite_client_against_ours(request, Some("chat.v2"));
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol"),
        Some(&HeaderValue::from_static("chat.v2"))
    );
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
}

/// Our request into tungstenite's `accept`; returns what it wrote back.
fn tungstenite_server_response(request: &[u8], protocol: Option<&'static str>) -> Vec<u8> {
    let stream = Duplex::with_incoming(request);
    // tungstenite's `Callback` fixes the (large) error type; this is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &TRequest, mut res: TResponse| {
        assert_eq!(req.uri().path(), "/live");
        assert_eq!(req.uri().query(), Some("token=abc"));
        if let Some(p) = protocol {
            res.headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
        }
        Ok(res)
    };
    match tungstenite::accept_hdr(stream, callback) {
        Ok(ws) => ws.get_ref().outgoing.clone(),
        Err(e) => panic!("tungstenite refused our request: {e}"),
    }
}

#[test]
fn our_request_is_accepted_by_tungstenite_and_its_101_by_us() {
    let key = handshake::encode_key(*b"0123456789abcdef");
    let mut request = Vec::new();
    let origin = [("Origin", "http://example.com")];
    handshake::write_request(
        &mut request,
        "example.com",
        "/live?token=abc",
        &key,
        &[],
        &origin,
    );

    let response = tungstenite_server_response(&request, None);
    let mut headers = [EMPTY_HEADER; 16];
    let (res, consumed) = handshake::parse_response(&response, &mut headers, &key, &[])
        .expect("tungstenite's 101 passes our checks")
        .expect("tungstenite's 101 is complete");
    assert_eq!(consumed, response.len());
    assert_eq!((res.status(), res.protocol()), (101, None));
}

#[test]
fn subprotocol_chosen_by_tungstenite_is_seen_by_our_client() {
    let key = handshake::encode_key([0xa5; 16]);
    let offered = ["mqtt", "graphql-ws"];
    let mut request = Vec::new();
    handshake::write_request(
        &mut request,
        "example.com",
        "/live?token=abc",
        &key,
        &offered,
        &[],
    );

    let response = tungstenite_server_response(&request, Some("graphql-ws"));
    let mut headers = [EMPTY_HEADER; 16];
    let (res, _) = handshake::parse_response(&response, &mut headers, &key, &offered)
        .unwrap()
        .unwrap();
    assert_eq!(res.protocol(), Some("graphql-ws"));

    // The same response for a client that offered something else is refused.
    let mut headers = [EMPTY_HEADER; 16];
    let refused = handshake::parse_response(&response, &mut headers, &key, &["mqtt"]);
    assert_eq!(
        refused.unwrap_err(),
        handshake::ClientHandshakeError::UnofferedProtocol
    );
}

#[test]
fn accept_key_matches_tungstenite() {
    for seed in 0..=255u8 {
        let nonce: [u8; 16] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
        let key = handshake::encode_key(nonce);
        assert_eq!(
            handshake::accept_key(&key),
            derive_accept_key(&key).as_bytes()
        );
    }
    // Keys are hashed as sent, whatever they are.
    for key in [&b""[..], b"x", b"dGhlIHNhbXBsZSBub25jZQ==", &[0xff; 100]] {
        assert_eq!(
            handshake::accept_key(key),
            derive_accept_key(key).as_bytes()
        );
    }
}
