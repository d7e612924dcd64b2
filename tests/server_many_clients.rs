//! 2,000 concurrent clients each echo 100 messages with nothing lost; with several
//! reactors, every reactor accepts and a broadcast reaches all of them.

#[path = "util/server.rs"]
mod server;

use server::{Client, Echo, PATIENCE, start, test_config, wait_until};
use tungstenite::Message as T;
use wsreactor::Message;

const THREADS: usize = 8;
const PER_THREAD: usize = 250;
const ROUNDS: usize = 100;

/// A tungstenite client whose reads wait up to the hang guard.
fn connect(addr: std::net::SocketAddr) -> Client {
    let ws = server::connect(addr, "/");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    ws
}

#[test]
fn two_thousand_clients_echo_a_hundred_messages_each() {
    let server = start(test_config().with_reactors(2), Echo);
    let addr = server.local_addr();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut clients: Vec<_> = (0..PER_THREAD).map(|_| connect(addr)).collect();
                for round in 0..ROUNDS {
                    // Every client has one message in flight at a time, all at once.
                    for (c, ws) in clients.iter_mut().enumerate() {
                        ws.send(T::text(format!("{t}-{c}-{round}"))).unwrap();
                    }
                    for (c, ws) in clients.iter_mut().enumerate() {
                        assert_eq!(ws.read().unwrap(), T::text(format!("{t}-{c}-{round}")));
                    }
                }
                clients.len()
            })
        })
        .collect();
    let total: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(total, THREADS * PER_THREAD);
    let expected = (THREADS * PER_THREAD * ROUNDS) as u64;
    wait_until(PATIENCE, || server.stats().messages_out == expected);
    let stats = server.stats();
    assert_eq!(
        (stats.messages_in, stats.accepted),
        (expected, total as u64)
    );
}

#[test]
fn every_reactor_accepts_and_broadcasts_reach_them_all() {
    let reactors = 4;
    let server = start(test_config().with_reactors(reactors), Echo);
    let mut clients: Vec<_> = (0..200).map(|_| connect(server.local_addr())).collect();
    wait_until(PATIENCE, || server.stats().open == 200);
    let per_reactor = server.reactor_stats();
    assert_eq!(per_reactor.len(), reactors);
    for (i, stats) in per_reactor.iter().enumerate() {
        assert!(
            stats.accepted > 0,
            "reactor {i} accepted nothing: {per_reactor:?}"
        );
    }
    server.sender().broadcast(Message::Text("everyone"));
    for ws in &mut clients {
        assert_eq!(ws.read().unwrap(), T::text("everyone"));
    }
}
