//! Sending from other threads: to one connection, to all, to all but one; a stale
//! id reaches nobody, even after its slot is reused.

#[path = "util/server.rs"]
mod server;

use std::sync::mpsc;

use server::{PATIENCE, Register, start, test_config, wait_until, ws_client};
use wsreactor::client::{Client, Incoming};
use wsreactor::{CloseCode, ConnId, Message};

/// Reports each connection's id as it opens.
fn setup() -> (wsreactor::ServerHandle, mpsc::Receiver<ConnId>) {
    let (register, ids) = Register::new();
    (start(test_config(), register), ids)
}

fn open(server: &wsreactor::ServerHandle, ids: &mpsc::Receiver<ConnId>) -> (Client, ConnId) {
    let client = ws_client(server.local_addr(), "/");
    let id = ids.recv_timeout(PATIENCE).unwrap();
    (client, id)
}

fn next_text(client: &mut Client) -> String {
    match client.recv().unwrap() {
        Incoming::Message(Message::Text(t)) => t.to_owned(),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn sends_reach_exactly_their_connections() {
    let (server, ids) = setup();
    let (mut a, id_a) = open(&server, &ids);
    let (mut b, id_b) = open(&server, &ids);
    let (mut c, _) = open(&server, &ids);
    let sender = server.sender();

    // From another thread, to B only.
    let s = sender.clone();
    std::thread::spawn(move || s.send(id_b, Message::Text("to b")))
        .join()
        .unwrap();
    sender.broadcast(Message::Text("to all"));
    sender.broadcast_except(Message::Text("not a"), id_a);
    sender.send(id_a, Message::Binary(b"to a"));

    assert_eq!(next_text(&mut a), "to all");
    assert_eq!(
        a.recv().unwrap(),
        Incoming::Message(Message::Binary(b"to a"))
    );
    assert_eq!(next_text(&mut b), "to b");
    assert_eq!(next_text(&mut b), "to all");
    assert_eq!(next_text(&mut b), "not a");
    assert_eq!(next_text(&mut c), "to all");
    assert_eq!(next_text(&mut c), "not a");
}

#[test]
fn a_stale_id_reaches_nobody_even_when_its_slot_is_reused() {
    let (server, ids) = setup();
    let (_a, _) = open(&server, &ids);
    let (mut b, id_b) = open(&server, &ids);
    b.close(CloseCode::NORMAL, "").unwrap();
    assert!(matches!(b.recv().unwrap(), Incoming::Close(_)));
    wait_until(PATIENCE, || server.stats().open == 1);
    // The slab hands B's slot to the next connection.
    let (mut d, id_d) = open(&server, &ids);
    assert_eq!(id_d.reactor(), id_b.reactor());
    assert_ne!(id_d, id_b, "a new generation");
    assert!(format!("{id_d:?}").split('#').next() == format!("{id_b:?}").split('#').next());
    let sender = server.sender();
    sender.send(id_b, Message::Text("stale"));
    sender.send(id_d, Message::Text("fresh"));
    assert_eq!(next_text(&mut d), "fresh");
}

#[test]
fn a_server_side_close_from_another_thread_closes_with_its_code() {
    let (server, ids) = setup();
    let (mut a, id_a) = open(&server, &ids);
    server.sender().close(id_a, CloseCode(4000), "bye");
    match a.recv().unwrap() {
        Incoming::Close(Some(frame)) => {
            assert_eq!(frame.code, CloseCode(4000));
            assert_eq!(frame.reason, "bye");
        }
        other => panic!("unexpected {other:?}"),
    }
    wait_until(PATIENCE, || server.stats().closed_with(4000) == 1);
}

/// Answers "stats" with the server's counters, read through a `Sender` it was
/// built with before the server ran.
#[derive(Clone)]
struct Counting(wsreactor::Sender);

impl wsreactor::Handler for Counting {
    type Session = ();
    fn on_message(&mut self, ws: &mut wsreactor::Socket<'_, ()>, message: Message<'_>) {
        if message.as_bytes() == b"stats" {
            let stats = self.0.stats();
            let _ = ws.send_text(&format!("{} {}", stats.open, stats.accepted));
        } else {
            let _ = ws.send(message);
        }
    }
}

#[test]
fn a_sender_reads_the_servers_counters_from_any_thread_and_from_a_handler() {
    let server = wsreactor::Server::bind("127.0.0.1:0", test_config().with_reactors(2)).unwrap();
    let handler = Counting(server.sender());
    let server = server.spawn(handler).unwrap();
    let sender = server.sender();
    let mut a = ws_client(server.local_addr(), "/");
    let mut b = ws_client(server.local_addr(), "/");
    for client in [&mut a, &mut b] {
        client.send(Message::Text("hi")).unwrap();
        assert_eq!(next_text(client), "hi");
    }
    // Both are open (each reactor has published the turn that opened its own).
    a.send(Message::Text("stats")).unwrap();
    assert_eq!(next_text(&mut a), "2 2");
    // From another thread: the counters summed over reactors, as each reactor
    // publishes them at the end of its turn (the last messages' turns may not have
    // ended yet).
    let stats = std::thread::spawn(move || {
        wait_until(PATIENCE, || sender.stats().messages_in == 3);
        sender.stats()
    })
    .join()
    .unwrap();
    assert_eq!((stats.open, stats.accepted), (2, 2));
    let per_reactor = server.sender().reactor_stats();
    assert_eq!(per_reactor.len(), 2);
    assert_eq!(per_reactor.iter().map(|s| s.accepted).sum::<u64>(), 2);
    drop(b);
    wait_until(PATIENCE, || server.sender().stats().open == 1);
}
