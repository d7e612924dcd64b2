//! A fault stays where it started (the `fault` module): panics made on purpose
//! inside the engine, outside every callback.

use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tungstenite::Message as T;

use crate::config::{Config, Fault};
use crate::handler::{ConnId, Handler, Socket};
use crate::proto::{CloseCode, Message};
use crate::server::{Server, ServerHandle};
use crate::status::QueueStatus;

const PATIENCE: Duration = Duration::from_secs(60);

type Client = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// Echoes; every connection subscribes to "t"; ids and close codes are kept.
#[derive(Clone, Default)]
struct Echo {
    opened: Arc<Mutex<Vec<ConnId>>>,
    closed: Arc<Mutex<Vec<(ConnId, u16)>>>,
}

impl Handler for Echo {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        let _ = ws.subscribe("t");
        self.opened.lock().unwrap().push(ws.id());
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
    fn on_close(&mut self, id: ConnId, _: (), code: CloseCode, _: &str) {
        self.closed.lock().unwrap().push((id, code.0));
    }
}

fn start(config: Config, handler: Echo) -> ServerHandle {
    Server::bind("127.0.0.1:0", config)
        .and_then(|s| s.spawn(handler))
        .unwrap()
}

fn connect(server: &ServerHandle) -> Client {
    let (ws, _) = tungstenite::connect(format!("ws://{}/", server.local_addr())).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    ws
}

fn echo(client: &mut Client, text: &str) {
    client.send(T::text(text)).unwrap();
    assert_eq!(client.read().unwrap(), T::text(text));
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The close code a client gets: its close frame's, or `None` if the TCP
/// connection ended without one.
fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match client.read() {
            Ok(T::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn a_panic_in_the_engine_closes_its_connection_with_1011_and_the_reactor_goes_on() {
    let mut config = Config::default().with_reactors(1);
    config.fault = Some(Fault::Engine);
    let handler = Echo::default();
    let server = start(config, handler.clone());
    let mut victim = connect(&server);
    let mut bystander = connect(&server);
    echo(&mut bystander, "before");
    victim.send(T::binary(Fault::Engine.trigger())).unwrap();
    assert_eq!(close_code(&mut victim), Some(1011));
    echo(&mut bystander, "after");
    wait_until(|| server.stats().open == 1);
    let stats = server.stats();
    assert_eq!((stats.panics, stats.failed_reactors), (1, 0), "{stats:?}");
    assert_eq!(stats.closed_with(1011), 1);
    assert_eq!(
        server.subscribers("t"),
        1,
        "the victim's subscription is gone"
    );
    // A connection accepted after the fault is served too.
    echo(&mut connect(&server), "a newcomer");
}

#[test]
fn a_reactor_that_dies_closes_its_connections_releases_their_topics_and_says_so() {
    let mut config = Config::default().with_reactors(2);
    config.fault = Some(Fault::Reactor);
    let handler = Echo::default();
    let server = start(config, handler.clone());
    // Clients until both reactors have some (the kernel spreads the accepts).
    let mut clients = Vec::new();
    let on = |reactor: usize| {
        handler
            .opened
            .lock()
            .unwrap()
            .iter()
            .filter(|id| id.reactor() == reactor)
            .count()
    };
    while clients.len() < 64 && (on(0) == 0 || on(1) == 0) {
        let mut client = connect(&server);
        echo(&mut client, "hello");
        clients.push(client);
    }
    assert!(
        on(0) > 0 && on(1) > 0,
        "the kernel put every client on one reactor"
    );
    let ids: Vec<ConnId> = handler.opened.lock().unwrap().clone();
    let victim = ids.iter().find(|id| id.reactor() == 0).copied().unwrap();
    let survivor = ids.iter().find(|id| id.reactor() == 1).copied().unwrap();
    let sender = server.sender();
    assert_eq!(
        sender.close(victim, CloseCode::NORMAL, "reactor fault"),
        QueueStatus::Queued
    );
    wait_until(|| server.stats().failed_reactors == 1);
    // Every connection of reactor 0 was closed, each reported once, with 1011.
    let dead = on(0);
    wait_until(|| server.subscribers("t") == on(1));
    let closed = handler.closed.lock().unwrap().clone();
    assert_eq!(closed.len(), dead, "{closed:?}");
    assert!(
        closed
            .iter()
            .all(|&(id, code)| id.reactor() == 0 && code == 1011)
    );
    for (id, client) in ids.iter().zip(&mut clients) {
        if id.reactor() == 0 {
            // A close frame if one could be written, or the end of the connection.
            assert!(matches!(close_code(client), Some(1011) | None));
        }
    }
    // The dead reactor refuses; the live one serves, and a broadcast reaches it.
    assert_eq!(
        sender.send(victim, Message::Text("to the dead")),
        QueueStatus::Closed
    );
    assert_eq!(
        sender.send(survivor, Message::Text("to the living")),
        QueueStatus::Queued
    );
    assert_eq!(
        sender.broadcast(Message::Text("to all")),
        QueueStatus::Queued
    );
    for (id, client) in ids.iter().zip(&mut clients) {
        if id.reactor() == 1 {
            if *id == survivor {
                assert_eq!(client.read().unwrap(), T::text("to the living"));
            }
            assert_eq!(client.read().unwrap(), T::text("to all"));
            echo(client, "still served");
        }
    }
    assert!(matches!(
        server.shutdown(Duration::from_secs(5)),
        Err(crate::Error::ReactorPanicked)
    ));
}

#[test]
fn a_reactor_that_panics_while_starting_fails_spawn() {
    let mut config = Config::default().with_reactors(2);
    config.fault = Some(Fault::Startup);
    let result = Server::bind("127.0.0.1:0", config).and_then(|s| s.spawn(Echo::default()));
    assert!(matches!(result, Err(crate::Error::ReactorPanicked)));
}
