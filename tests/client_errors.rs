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
use wsreactor::{Handler, Message, Request, Upgrade};

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

/// Refuses every upgrade with 403, as for a forbidden origin.
#[derive(Clone)]
struct Forbid;

impl Handler for Forbid {
    type Session = ();
    fn on_upgrade(&mut self, _: &Request<'_, '_>) -> Upgrade<()> {
        Upgrade::reject(403)
    }
}

#[test]
fn a_refused_upgrade_reports_the_status_code() {
    let server = start(test_config(), Forbid);
    let result = client::connect(format!("ws://{}/", server.local_addr()));
    assert!(
        matches!(
            result,
            Err(Error::Handshake(ClientHandshakeError::Status(403)))
        ),
        "{result:?}"
    );
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
    assert!(
        matches!(
            result,
            Err(Error::Handshake(ClientHandshakeError::Status(301)))
        ),
        "{result:?}"
    );
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
