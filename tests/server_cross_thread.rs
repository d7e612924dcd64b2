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
