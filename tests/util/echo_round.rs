//! One echo round for a client test against any echo server: binary messages of
//! `sizes` bytes, a text message, a ping. Include with
//! `#[path = "util/echo_round.rs"] mod echo_round;`.
#![allow(dead_code)]

use wsreactor::Message;
use wsreactor::client::{Client, Incoming};

/// Each message comes back whole, the ping's payload as a pong.
pub fn sizes_text_and_ping(client: &mut Client, sizes: &[usize]) {
    for &size in sizes {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        client.send(Message::Binary(&payload)).unwrap();
        assert_eq!(
            client.recv().unwrap(),
            Incoming::Message(Message::Binary(&payload)),
            "{size} bytes"
        );
    }
    client.send(Message::Text("héllo")).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("héllo"))
    );
    client.ping(b"tls ping").unwrap();
    assert_eq!(client.recv().unwrap(), Incoming::Pong(b"tls ping"));
}
