//! Every way a connection can fail, and that the client's error says which: refused,
//! timed out, a status other than 101, a bad `Sec-WebSocket-Accept` and the other
//! broken 101s, protocol violations (with the close code sent to the server), a TCP
//! close without a close frame, and settings that cannot be used.

#[path = "util/scripted.rs"]
mod scripted;
#[path = "util/server.rs"]
mod server;

use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use scripted::{accept, frame, read_client_close, serve};
use server::{Echo, PATIENCE, start, test_config};
use wsreactor::client::{self, ClientBuilder, ClientHandshakeError, Error, Incoming, Phase};
use wsreactor::{Handler, HttpResponse, Message, Request, Upgrade};

#[test]
fn a_refused_connection_says_so_with_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match client::connect(format!("ws://{addr}/")) {
        Err(Error::Connect {
            addr: tried,
            source,
        }) => {
            assert_eq!(tried, addr);
            assert_eq!(source.kind(), ErrorKind::ConnectionRefused);
        }
        other => panic!("expected a refused connect, got {other:?}"),
    }
}

/// Refuses every upgrade with 401, a header and a body that says why, as an
/// authenticating server does.
#[derive(Clone)]
struct Forbid;

impl Handler for Forbid {
    type Session = ();
    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<()> {
        let sensor = request.query_param("sensor").unwrap_or_default();
        let why = format!("invalid token for sensor {sensor}\n");
        Upgrade::reject_with(
            HttpResponse::new(401, "text/plain", why).with_header("WWW-Authenticate", "Bearer"),
        )
    }
}

#[test]
fn a_refused_upgrade_reports_the_status_headers_and_body() {
    let server = start(test_config(), Forbid);
    let result = client::connect(format!("ws://{}/ingest?sensor=7", server.local_addr()));
    let Err(Error::Rejected(rejection)) = result else {
        panic!("expected a rejection, got {result:?}");
    };
    assert_eq!(rejection.status, 401);
    assert_eq!(rejection.header("www-authenticate"), Some(&b"Bearer"[..]));
    assert_eq!(rejection.header("content-type"), Some(&b"text/plain"[..]));
    assert_eq!(rejection.body_text(), "invalid token for sensor 7\n");
    assert!(!rejection.truncated);
    let message = Error::Rejected(rejection).to_string();
    assert!(
        message.starts_with("the server refused the upgrade: 401")
            && message.ends_with(": invalid token for sensor 7"),
        "{message}"
    );
}

/// A refusal as a scripted server sends it (`response`, then `then` in a write of
/// its own, then the connection closed or held open), and what the client reports.
fn rejected(response: &'static [u8], then: &'static [u8], close: bool) -> client::Rejection {
    let server = serve(
        move |_| response.to_vec(),
        move |mut s| {
            if !then.is_empty() {
                s.write_all(then).unwrap();
            }
            if close {
                drop(s);
            } else {
                // Held open until the client has its verdict: the body's framing,
                // not the connection's end, must finish it.
                let _ = std::io::Read::read(&mut s, &mut [0u8; 1]);
            }
        },
    );
    let result = ClientBuilder::new(server.url())
        .handshake_timeout(PATIENCE)
        .connect();
    let Err(Error::Rejected(rejection)) = result else {
        panic!("expected a rejection, got {result:?}");
    };
    server.join();
    *rejection
}

#[test]
fn a_rejections_body_is_read_as_its_framing_says() {
    // Content-Length, in two writes; the connection stays open.
    let r = rejected(
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 12\r\n\r\nbad ",
        b"origin\r\nXX",
        false,
    );
    assert_eq!((r.status, r.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        (r.body.as_slice(), r.truncated),
        (&b"bad origin\r\n"[..], false)
    );
    // Chunked, split inside a chunk; the connection stays open.
    let r = rejected(
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nslo",
        b"w\r\n5\r\n down\r\n0\r\n\r\n",
        false,
    );
    assert_eq!(r.header("retry-after"), Some(&b"5"[..]));
    assert_eq!((r.body.as_slice(), r.truncated), (&b"slow down"[..], false));
    // Neither: the body ends with the connection.
    let r = rejected(b"HTTP/1.1 500 Oops\r\n\r\ntry ", b"later", true);
    assert_eq!((r.body.as_slice(), r.truncated), (&b"try later"[..], false));
    // A Content-Length the connection's end cuts short: kept, marked truncated. (A
    // body the handshake timeout cuts short is the same case to the client: its read
    // fails, and what came is kept.)
    let r = rejected(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\nshort",
        b"",
        true,
    );
    assert_eq!((r.body.as_slice(), r.truncated), (&b"short"[..], true));
}

#[test]
fn a_rejection_body_longer_than_the_limit_is_cut_there() {
    static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let big = BIG.get_or_init(|| vec![b'x'; 3 * client::MAX_REJECTION_BODY]);
    let server = serve(
        |_| b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n\r\n".to_vec(),
        move |mut s| {
            // The client stops reading at the limit: the rest may meet a reset.
            let _ = s.write_all(big);
        },
    );
    let result = ClientBuilder::new(server.url())
        .handshake_timeout(PATIENCE)
        .connect();
    let Err(Error::Rejected(r)) = result else {
        panic!("expected a rejection, got {result:?}");
    };
    assert_eq!(r.status, 503);
    assert_eq!(r.body.len(), client::MAX_REJECTION_BODY);
    assert!(r.truncated);
    drop(r);
    server.join();
}

#[test]
fn a_redirect_is_reported_not_followed() {
    let server = serve(
        |_| {
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: ws://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n".to_vec()
        },
        |_| (),
    );
    let result = client::connect(server.url());
    match result {
        Err(Error::Rejected(r)) => {
            assert_eq!(r.status, 301);
            assert_eq!(r.header("location"), Some(&b"ws://127.0.0.1:1/"[..]));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    server.join();
}

/// Connects to a server that answers the upgrade with `respond(head)`.
fn connect_to(respond: fn(&str) -> Vec<u8>, builder: fn(String) -> ClientBuilder) -> Error {
    let server = serve(respond, |_| ());
    let result = builder(server.url()).connect();
    server.join();
    result.expect_err("the handshake must fail")
}

#[test]
fn a_wrong_accept_key_fails_the_handshake() {
    let e = connect_to(
        |_| {
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
                .to_vec()
        },
        ClientBuilder::new,
    );
    assert!(
        matches!(e, Error::Handshake(ClientHandshakeError::BadAccept)),
        "{e:?}"
    );
}

#[test]
fn other_broken_101s_fail_the_handshake_with_what_is_wrong() {
    let e = connect_to(
        |head| {
            String::from_utf8(accept(head, ""))
                .unwrap()
                .replace("Upgrade: websocket\r\n", "")
                .into_bytes()
        },
        ClientBuilder::new,
    );
    assert!(
        matches!(e, Error::Handshake(ClientHandshakeError::NotUpgrade)),
        "{e:?}"
    );

    let e = connect_to(
        |head| accept(head, "Sec-WebSocket-Protocol: other\r\n"),
        |url| ClientBuilder::new(url).protocol("mine"),
    );
    assert!(
        matches!(e, Error::Handshake(ClientHandshakeError::UnofferedProtocol)),
        "{e:?}"
    );

    let e = connect_to(
        |head| accept(head, "Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        ClientBuilder::new,
    );
    assert!(
        matches!(
            e,
            Error::Handshake(ClientHandshakeError::UnexpectedExtensions)
        ),
        "{e:?}"
    );

    let e = connect_to(
        |_| b"HTTP/1.1 101\r\nbroken header\r\n\r\n".to_vec(),
        ClientBuilder::new,
    );
    assert!(
        matches!(e, Error::Handshake(ClientHandshakeError::Malformed(_))),
        "{e:?}"
    );

    let e = connect_to(|_| Vec::new(), ClientBuilder::new);
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == ErrorKind::UnexpectedEof),
        "a close during the upgrade: {e:?}"
    );
}

#[test]
fn a_server_silent_after_accepting_times_out_the_handshake() {
    const TIMEOUT: Duration = Duration::from_millis(300);
    // The server stays silent until the test has its verdict, however long the
    // client takes to see its timeout: a close before that would be a different error.
    let (release, released) = mpsc::channel::<()>();
    let server = serve(
        |_| Vec::new(),
        move |s| {
            let _ = released.recv();
            drop(s)
        },
    );
    let started = Instant::now();
    let result = ClientBuilder::new(server.url())
        .handshake_timeout(TIMEOUT)
        .connect();
    let waited = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout(Phase::Handshake))),
        "{result:?}"
    );
    assert!(waited >= TIMEOUT, "timed out after {waited:?}");
    drop(release);
    server.join();
}

/// A server that upgrades, sends `bytes`, and returns the close code it gets back.
fn violation(bytes: Vec<u8>, max_message_size: usize) -> (Error, Option<u16>) {
    let server = serve(
        |head| accept(head, ""),
        move |mut s| {
            s.write_all(&bytes).unwrap();
            read_client_close(&mut s)
        },
    );
    let mut client = ClientBuilder::new(server.url())
        .max_message_size(max_message_size)
        .connect()
        .unwrap();
    let error = client.recv().map(|_| ()).expect_err("a protocol error");
    assert!(matches!(client.recv(), Err(Error::Closed)));
    (error, server.join())
}

#[test]
fn protocol_violations_fail_the_connection_with_their_close_code() {
    let masked = {
        let mut f = frame(0x81, b"abcd");
        f[1] |= 0x80;
        f.splice(2..2, [1, 2, 3, 4]);
        f
    };
    let cases: [(&str, Vec<u8>, usize, u16); 5] = [
        ("a masked server frame", masked, 1 << 20, 1002),
        ("a reserved opcode", frame(0x83, b""), 1 << 20, 1002),
        (
            "a continuation with no message",
            frame(0x80, b"x"),
            1 << 20,
            1002,
        ),
        (
            "text that is not UTF-8",
            frame(0x81, b"\xff\xfe"),
            1 << 20,
            1007,
        ),
        (
            "a message over the limit",
            frame(0x82, &[0; 2000]),
            1000,
            1009,
        ),
    ];
    for (what, bytes, max, code) in cases {
        let (error, sent) = violation(bytes, max);
        assert_eq!(
            error.close_code().map(|c| c.0),
            Some(code),
            "{what}: {error:?}"
        );
        assert!(matches!(error, Error::Protocol(_)), "{what}: {error:?}");
        assert_eq!(sent, Some(code), "{what}: the close frame the server got");
    }
}

#[test]
fn a_tcp_close_without_a_close_frame_is_an_abnormal_closure() {
    let server = serve(
        |head| {
            let mut bytes = accept(head, "");
            bytes.extend_from_slice(&frame(0x81, b"last words"));
            bytes
        },
        drop,
    );
    let mut client = client::connect(server.url()).unwrap();
    server.join();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("last words"))
    );
    let e = client.recv().map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::AbnormalClosure), "{e:?}");
    assert_eq!(e.close_code().map(|c| c.0), Some(1006));
    assert!(matches!(client.recv(), Err(Error::Closed)));
}

#[test]
fn a_read_timeout_leaves_the_client_usable() {
    const TIMEOUT: Duration = Duration::from_millis(100);
    let server = start(test_config(), Echo);
    let mut client = ClientBuilder::new(format!("ws://{}/", server.local_addr()))
        .read_timeout(Some(TIMEOUT))
        .connect()
        .unwrap();
    let started = Instant::now();
    assert!(matches!(client.recv(), Err(Error::Timeout(Phase::Read))));
    assert!(started.elapsed() >= TIMEOUT, "{:?}", started.elapsed());
    client.send(Message::Text("still here")).unwrap();
    // A busy machine may take more than one read timeout to echo: each timeout
    // loses nothing, and the echo arrives whole after any number of them.
    let started = Instant::now();
    let echo = loop {
        match client.recv() {
            Err(Error::Timeout(Phase::Read)) if started.elapsed() < PATIENCE => {}
            other => break other,
        }
    };
    assert_eq!(
        echo.unwrap(),
        Incoming::Message(Message::Text("still here"))
    );
}

#[test]
fn a_server_that_stops_reading_times_out_the_send_and_ends_sending() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    // The server holds the socket, unread, until the test has its verdict: a close
    // before the client's timeout fired would be a reset, not a timeout.
    let (release, released) = mpsc::channel::<()>();
    let server = serve(
        |head| accept(head, ""),
        move |s| {
            let _ = released.recv();
            drop(s)
        },
    );
    let client = ClientBuilder::new(server.url())
        .write_timeout(Some(TIMEOUT))
        .connect()
        .unwrap();
    // More than loopback's socket buffers hold.
    let big = vec![7u8; 64 << 20];
    let started = Instant::now();
    let e = client.send(Message::Binary(&big)).unwrap_err();
    assert!(matches!(e, Error::Timeout(Phase::Write)), "{e:?}");
    assert!(started.elapsed() >= TIMEOUT, "{:?}", started.elapsed());
    let e = client.send(Message::Text("after")).unwrap_err();
    assert!(matches!(e, Error::Closed), "{e:?}");
    drop(client);
    drop(release);
    server.join();
}

#[test]
fn settings_that_cannot_be_used_are_refused_before_connecting() {
    // Nothing listens on port 1: these fail before any connect.
    for url in [
        "http://127.0.0.1:1/",
        "ws://127.0.0.1:1/#x",
        "ws://u@127.0.0.1:1/",
        "ws://:1/",
    ] {
        let e = client::connect(url).unwrap_err();
        assert!(matches!(e, Error::Url(_)), "{url}: {e:?}");
    }
    let url = "ws://127.0.0.1:1/";
    let refused = |builder: ClientBuilder| builder.connect().unwrap_err();
    for e in [
        refused(ClientBuilder::new(url).header("Sec-WebSocket-Key", "x")),
        refused(ClientBuilder::new(url).header("Host", "x")),
        refused(ClientBuilder::new(url).header("Bad Name", "x")),
        refused(ClientBuilder::new(url).header("X-Ok", "line\r\nbreak")),
        refused(ClientBuilder::new(url).protocol("a, b")),
    ] {
        assert!(matches!(e, Error::Config(_)), "{e:?}");
    }
    #[cfg(not(feature = "tls"))]
    {
        let e = client::connect("wss://127.0.0.1:1/").unwrap_err();
        assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
        assert!(e.to_string().contains("tls"), "{e}");
    }
}
