//! The chat example (examples/chat.rs) on topics, driven as a browser would drive
//! it: rooms, join and leave lines, names; run as the built example binary.

#[path = "util/example.rs"]
mod example;
#[path = "util/server.rs"]
mod server;

use example::{Client, Example, line, quiet, start};
use tungstenite::Message as T;

fn join(chat: &Example, room: &str, name: &str) -> Client {
    example::connect(chat, &format!("/chat?room={room}&name={name}"))
}

#[test]
fn rooms_keep_to_themselves_with_join_and_leave_lines() {
    let chat = start("chat");
    let mut ada = join(&chat, "rust", "ada");
    let mut bob = join(&chat, "rust", "bob");
    assert_eq!(line(&mut ada), "bob joined");
    let mut eve = join(&chat, "other", "eve");

    ada.send(T::text("hello")).unwrap();
    assert_eq!(line(&mut bob), "ada: hello");
    bob.send(T::text("hi ada")).unwrap();
    assert_eq!(line(&mut ada), "bob: hi ada");

    bob.close(None).unwrap();
    while bob.read().is_ok() {}
    assert_eq!(line(&mut ada), "bob left");
    // Nothing from the rust room reached the other room, and nobody hears itself.
    quiet(&mut eve);
    quiet(&mut ada);
}

#[test]
fn bad_names_and_paths_are_refused() {
    let chat = start("chat");
    for url in [
        "/chat?room=a%20b",
        "/chat?name=a.b",
        "/chat?room=",
        "/elsewhere",
    ] {
        let url = format!("ws://{}{url}", chat.addr);
        match tungstenite::connect(url) {
            Err(tungstenite::Error::Http(response)) => {
                assert!([400, 404].contains(&response.status().as_u16()))
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
}
