//! A handler that panics harms only the connection it was serving: that client gets
//! close 1011 (or HTTP 500 before the upgrade), and every other client on the same
//! reactor goes on being served.

#[path = "util/server.rs"]
mod server;

use std::io::Write;

use server::{
    Client, PATIENCE, assert_echo, connect, raw, read_head, read_until_closed, start, test_config,
    wait_for_stats,
};
use tungstenite::Message as T;
use wsreactor::{
    CloseCode, ConnId, Handler, HttpRequest, HttpResponse, Message, Request, ServerHandle, Socket,
    Upgrade,
};

/// Echoes, and panics wherever the client asks it to: on the text "boom", in
/// `on_open` for `/boom-on-open`, in `on_upgrade` for `/boom-on-upgrade`, in
/// `on_http` for `/boom`, and in `on_close` for connections to `/boom-on-close`.
#[derive(Clone)]
struct Fragile;

#[derive(Default)]
struct Path(String);

impl Handler for Fragile {
    type Session = Path;

    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<Path> {
        match request.path() {
            "/boom-on-upgrade" => panic!("boom in on_upgrade"),
            "/reject-with-status-42" => Upgrade::reject(42),
            path => Upgrade::accept(Path(path.to_owned())),
        }
    }

    fn on_open(&mut self, ws: &mut Socket<'_, Path>) {
        if ws.session().0 == "/boom-on-open" {
            panic!("boom in on_open");
        }
    }

    fn on_message(&mut self, ws: &mut Socket<'_, Path>, message: Message<'_>) {
        if message.as_bytes() == b"boom" {
            panic!("boom in on_message");
        }
        let _ = ws.send(message);
    }

    fn on_close(&mut self, _: ConnId, session: Path, _: CloseCode, _: &str) {
        if session.0 == "/boom-on-close" {
            panic!("boom in on_close");
        }
    }

    fn on_http(&mut self, request: &HttpRequest<'_, '_>) -> Option<HttpResponse> {
        match request.path() {
            "/boom" => panic!("boom in on_http"),
            "/bad-content-type" => Some(HttpResponse::new(
                200,
                "text/plain\r\nX-Injected: yes",
                "hello",
            )),
            _ => None,
        }
    }
}

/// A single-reactor server with one bystander client, echoed once already.
fn server_with_bystander() -> (ServerHandle, Client) {
    let config = test_config();
    assert_eq!(
        config.reactors, 1,
        "the victim and the bystander share a reactor"
    );
    let server = start(config, Fragile);
    let mut bystander = connect(server.local_addr(), "/");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = bystander.get_ref() {
        // A reactor that died would leave the bystander waiting: the read fails at
        // the hang guard rather than hang.
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    assert_echo(&mut bystander, "before");
    (server, bystander)
}

/// Reads until the connection ends; returns the code of the server's close frame.
fn close_code(ws: &mut Client) -> Option<u16> {
    let mut code = None;
    loop {
        match ws.read() {
            Ok(T::Close(frame)) => code = Some(frame.map(|f| u16::from(f.code))),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("the close handshake failed: {e}"),
        }
    }
    code.expect("a close frame")
}

/// Sends `request` on a fresh connection; returns the status line, after checking that the
/// server closed the connection behind the response.
fn status_for(server: &ServerHandle, request: &str) -> String {
    let mut s = raw(server.local_addr());
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut s);
    read_until_closed(&mut s);
    head.lines().next().unwrap_or_default().to_owned()
}

fn upgrade_request(path: &str) -> String {
    server::UPGRADE.replacen("GET / ", &format!("GET {path} "), 1)
}

#[test]
fn a_panic_in_on_message_closes_that_client_with_1011() {
    let (server, mut bystander) = server_with_bystander();
    let mut victim = connect(server.local_addr(), "/");
    assert_echo(&mut victim, "fine so far");
    victim.send(T::text("boom")).unwrap();
    assert_eq!(close_code(&mut victim), Some(1011));
    drop(victim);

    assert_echo(&mut bystander, "after");
    let mut newcomer = connect(server.local_addr(), "/");
    assert_echo(&mut newcomer, "new here");
    let stats = wait_for_stats(&server, PATIENCE, |s| {
        s.closed_with(1011) == 1 && s.open == 2
    });
    assert_eq!(stats.closed(), 1);
}

#[test]
fn a_panic_in_on_open_closes_that_client_with_1011() {
    let (server, mut bystander) = server_with_bystander();
    let mut victim = connect(server.local_addr(), "/boom-on-open");
    assert_eq!(close_code(&mut victim), Some(1011));
    drop(victim);

    assert_echo(&mut bystander, "after");
    let stats = wait_for_stats(&server, PATIENCE, |s| {
        s.closed_with(1011) == 1 && s.open == 1
    });
    assert_eq!(stats.closed(), 1);
}

#[test]
fn a_panic_in_on_upgrade_or_on_http_answers_500() {
    let (server, mut bystander) = server_with_bystander();
    assert_eq!(
        status_for(&server, &upgrade_request("/boom-on-upgrade")),
        "HTTP/1.1 500 Internal Server Error"
    );
    assert_eq!(
        status_for(&server, "GET /boom HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        "HTTP/1.1 500 Internal Server Error"
    );
    assert_echo(&mut bystander, "after");
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 1);
    assert_eq!((stats.rejected, stats.closed()), (2, 0));
}

#[test]
fn a_panic_in_on_close_does_not_stop_the_reactor() {
    let (server, mut bystander) = server_with_bystander();
    let mut victim = connect(server.local_addr(), "/boom-on-close");
    victim.close(None).unwrap();
    assert_eq!(
        close_code(&mut victim),
        None,
        "the close without a code is echoed"
    );
    drop(victim);

    assert_echo(&mut bystander, "after");
    let stats = wait_for_stats(&server, PATIENCE, |s| {
        s.closed_with(1005) == 1 && s.open == 1
    });
    assert_eq!(stats.closed(), 1);
}

/// Sends `request`, whose answer from the handler cannot be written as asked;
/// checks that it is not taken as a success and that the reactor goes on.
fn assert_survives_unwritable_answer(request: &str) {
    let (server, mut bystander) = server_with_bystander();
    let status = status_for(&server, request);
    assert!(
        !status.starts_with("HTTP/1.1 101") && !status.starts_with("HTTP/1.1 200"),
        "{request:?} got {status:?}"
    );
    assert_echo(&mut bystander, "after");
    let mut newcomer = connect(server.local_addr(), "/");
    assert_echo(&mut newcomer, "new here");
}

// Handler bugs: they must cost at most the one request, as a panic would.

#[test]
fn a_reject_status_http_cannot_carry_does_not_stop_the_reactor() {
    assert_survives_unwritable_answer(&upgrade_request("/reject-with-status-42"));
}

#[test]
fn a_content_type_that_would_split_the_response_does_not_stop_the_reactor() {
    assert_survives_unwritable_answer("GET /bad-content-type HTTP/1.1\r\nHost: localhost\r\n\r\n");
}
