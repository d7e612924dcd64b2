//! The broadcast example's protocol (examples/broadcast.rs), which load tools drive:
//! every message any client sends, on any path, reaches every client, the sender
//! included, unchanged.

#[path = "util/example.rs"]
mod example;
#[path = "util/server.rs"]
mod server;

use example::{connect, quiet, start};
use tungstenite::Message as T;

#[test]
fn every_message_reaches_every_client_the_sender_included_unchanged() {
    let server = start("broadcast");
    let mut clients: Vec<_> = ["/", "/a", "/b/c?x=1", "/"]
        .iter()
        .map(|path| connect(&server, path))
        .collect();
    let messages = [T::text("héllo"), T::binary(vec![0, 1, 2, 255])];
    for (i, message) in messages.iter().enumerate() {
        clients[i].send(message.clone()).unwrap();
        for ws in clients.iter_mut() {
            assert_eq!(&ws.read().unwrap(), message);
        }
    }
    for ws in clients.iter_mut() {
        quiet(ws);
    }
}
