//! What subscriptions cost a connection is bounded by the configuration. Where
//! clients name their topics (as the pubsub example lets them), one connection
//! used to hold 1,024 names of 256 bytes, each stored three times: about 1 MB. Now
//! a connection's names add up to `max_subscription_bytes` at most (16 KiB by
//! default), and each name is stored once per reactor (the registry and the
//! process-wide counts share it).

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/server.rs"]
mod server;

use server::{Client, PATIENCE, connect, start, test_config, wait_until};
use tungstenite::Message as T;
use wsreactor::{Handler, Message, Socket};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

/// Subscribes to what each text message names; answers "ok" or the error.
#[derive(Clone)]
struct Subscriber;

impl Handler for Subscriber {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let answer = match ws.subscribe(message.as_bytes()) {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        let _ = ws.send_text(&answer);
    }
}

/// A 256-byte topic name, unique to (`client`, `i`).
fn name(client: usize, i: usize) -> String {
    format!("{client:05}/{i:05}/{}", "x".repeat(256 - 12))
}

fn subscribe(ws: &mut Client, topic: &str) -> String {
    ws.send(T::text(topic)).unwrap();
    loop {
        match ws.read().unwrap() {
            T::Text(answer) => return answer.to_string(),
            T::Ping(_) | T::Pong(_) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_connections_topic_names_are_bounded_and_stored_once() {
    const CLIENTS: usize = 50;
    let config = test_config().with_handshake_timeout(Some(PATIENCE));
    let per_connection = config.max_subscription_bytes / 256;
    let server = start(config, Subscriber);
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|_| connect(server.local_addr(), "/"))
        .collect();
    let before = live_alloc::live();
    for (c, ws) in clients.iter_mut().enumerate() {
        for i in 0..per_connection {
            assert_eq!(subscribe(ws, &name(c, i)), "ok", "client {c}, topic {i}");
        }
        // The next name would pass 16 KiB: refused, and the connection stays.
        assert_eq!(
            subscribe(ws, &name(c, per_connection)),
            "error: too many subscriptions on one connection"
        );
    }
    wait_until(PATIENCE, || {
        server.subscribers(name(CLIENTS - 1, per_connection - 1)) == 1
    });
    let grown = live_alloc::live().saturating_sub(before) / CLIENTS;
    // 64 names of 256 B (16 KiB) once each, and about 200 B per topic of the
    // registry's and the counts' maps (at their capacity): under 32 KiB a
    // connection (28.6 KB measured; three copies of each name were 48 KiB alone).
    assert!(grown < 32 * 1024, "{grown} B per connection");
    drop(clients);
    wait_until(PATIENCE, || server.stats().open == 0);
    assert_eq!(server.subscribers(name(0, 0)), 0);
}
