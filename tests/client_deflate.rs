//! `wsreactor::client` with permessage-deflate against the server in every mode:
//! messages compressed both ways (the server's counters say so), a server that
//! declines leaves the connection plain, and a cross-thread sender compresses too.

#[path = "util/server.rs"]
mod server;

use server::{PATIENCE, start, test_config, wait_for_stats};
use wsreactor::client::{ClientBuilder, Incoming};
use wsreactor::{Compression, Handler, Message, Socket};

/// Echoes every message under the lossless default policy (`Pause`): no echo is
/// ever dropped, so every message a test sends comes back.
#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

fn quote(i: usize) -> String {
    format!(
        r#"{{"type":"quote","symbol":"SYM{}","bid":{}.{:02},"ask":{}.{:02},"seq":{i}}}"#,
        i % 5,
        100 + i % 9,
        i % 100,
        101 + i % 9,
        (i * 7) % 100
    )
    .repeat(4)
}

/// Echoes `count` quotes through a deflate client; returns the server's bytes in and
/// out and its compressed-out count.
fn echo_quotes(compression: Compression, count: usize) -> (u64, u64, u64) {
    let server = start(test_config().with_compression(compression), Echo);
    let mut client = ClientBuilder::new(format!("ws://{}/", server.local_addr()))
        .deflate(true)
        .read_timeout(Some(PATIENCE))
        .connect()
        .expect("connects");
    let sender = client.sender();
    for i in 0..count {
        let text = quote(i);
        // Every other message from the cross-thread sender: the same compressor.
        if i % 2 == 0 {
            client.send(Message::Text(&text)).unwrap();
        } else {
            std::thread::scope(|s| {
                s.spawn(|| sender.send(Message::Text(&text)).unwrap());
            });
        }
        match client.recv().unwrap() {
            Incoming::Message(Message::Text(echo)) => assert_eq!(echo, text, "message {i}"),
            other => panic!("{other:?}"),
        }
    }
    // A large binary message, over many reads, both ways.
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 97).to_le_bytes())
        .collect();
    client.send(Message::Binary(&big)).unwrap();
    match client.recv().unwrap() {
        Incoming::Message(Message::Binary(echo)) => assert!(echo == big),
        other => panic!("{other:?}"),
    }
    client.close(wsreactor::CloseCode::NORMAL, "").unwrap();
    while !matches!(client.recv(), Ok(Incoming::Close(_)) | Err(_)) {}
    let s = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(s.dropped, 0, "{s:?}");
    (s.bytes_in, s.bytes_out, s.compressed_out)
}

#[test]
fn messages_are_compressed_both_ways_in_shared_mode() {
    let (bytes_in, bytes_out, compressed) = echo_quotes(Compression::shared(), 40);
    let plain: u64 = (0..40).map(|i| quote(i).len() as u64).sum::<u64>() + 1_200_000;
    assert_eq!(compressed, 41, "every reply went out compressed");
    // The server counts inflated bytes in, compressed bytes out.
    assert_eq!(bytes_in, plain);
    assert!(bytes_out * 2 < plain, "{bytes_out} of {plain}");
}

#[test]
fn dedicated_mode_shrinks_a_stream_of_quotes_further() {
    let (_, shared_out, _) = echo_quotes(Compression::shared(), 40);
    let (_, dedicated_out, compressed) = echo_quotes(Compression::dedicated(), 40);
    assert_eq!(compressed, 41);
    assert!(
        dedicated_out < shared_out,
        "dedicated {dedicated_out} B, shared {shared_out} B"
    );
}

#[test]
fn a_server_that_declines_leaves_the_connection_plain() {
    let (bytes_in, bytes_out, compressed) = echo_quotes(Compression::Off, 10);
    assert_eq!(compressed, 0);
    assert_eq!(bytes_in, bytes_out);
}
