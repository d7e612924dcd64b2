//! The pubsub example's protocol (examples/pubsub.rs), which other tools drive:
//! `sub TOPIC`, `unsub TOPIC`, `pub TOPIC PAYLOAD`, and `error: ...` for the rest.

#[path = "util/example.rs"]
mod example;
#[path = "util/server.rs"]
mod server;

use example::{connect, line, quiet, start};
use tungstenite::Message as T;

#[test]
fn subscribers_get_topic_and_payload_the_publisher_too_if_subscribed() {
    let server = start("pubsub");
    let mut a = connect(&server, "/");
    let mut b = connect(&server, "/any/path");
    let mut c = connect(&server, "/");
    a.send(T::text("sub prices")).unwrap();
    b.send(T::text("sub prices")).unwrap();
    c.send(T::text("sub news")).unwrap();
    // A round trip on each, so the subscriptions are in place.
    for ws in [&mut a, &mut b, &mut c] {
        ws.send(T::text("bogus")).unwrap();
        assert!(line(ws).starts_with("error: "));
    }
    a.send(T::text("pub prices AAPL 123.45 up")).unwrap();
    assert_eq!(line(&mut a), "prices AAPL 123.45 up");
    assert_eq!(line(&mut b), "prices AAPL 123.45 up");
    // c is not subscribed to prices; its own publish to news reaches itself only.
    c.send(T::text("pub news ")).unwrap();
    assert_eq!(line(&mut c), "news ");
    quiet(&mut a);
    quiet(&mut b);
    // After unsub, nothing more.
    b.send(T::text("unsub prices")).unwrap();
    b.send(T::text("bogus")).unwrap();
    assert!(line(&mut b).starts_with("error: "));
    c.send(T::text("pub prices again")).unwrap();
    assert_eq!(line(&mut a), "prices again");
    quiet(&mut b);
    quiet(&mut c);
}

#[test]
fn malformed_commands_get_an_error_line_and_the_connection_stays() {
    let server = start("pubsub");
    let mut ws = connect(&server, "/");
    let long = format!("sub {}", "x".repeat(300));
    for bad in [
        "", "sub", "sub ", "sub a b", "unsub", "pub", "pub ", "hello", &long,
    ] {
        ws.send(T::text(bad)).unwrap();
        let reply = line(&mut ws);
        assert!(reply.starts_with("error: "), "{bad:?} got {reply:?}");
    }
    ws.send(T::binary(b"sub x".to_vec())).unwrap();
    assert!(line(&mut ws).starts_with("error: "));
    // Still open and working.
    ws.send(T::text("sub ok")).unwrap();
    ws.send(T::text("pub ok fine")).unwrap();
    assert_eq!(line(&mut ws), "ok fine");
}
