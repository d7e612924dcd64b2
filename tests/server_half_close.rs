//! A client that sends its last frames and half-closes its side still gets every
//! answer: what the server wrote back in the same turn goes out before it drops the
//! connection (regression: a read that filled the 64 KiB buffer, then end-of-stream,
//! used to drop the corked pongs).

#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::net::Shutdown;

use server::{Echo, PATIENCE, read_frame, start, test_config};

fn ping(payload_len: usize) -> Vec<u8> {
    // A masked ping with a zero key: the payload goes as is.
    let mut frame = vec![0x89, 0x80 | payload_len as u8, 0, 0, 0, 0];
    frame.extend(std::iter::repeat_n(b'p', payload_len));
    frame
}

#[test]
fn pongs_for_64_kib_of_pings_arrive_after_the_client_half_closes() {
    let server = start(test_config(), Echo);
    let mut client = server::raw_ws(server.local_addr());
    // A read that times out ends the pongs early: only a hang may do that.
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // Exactly the size of the server's read buffer: 500 pings of 131 bytes and one of 36.
    let mut burst = Vec::with_capacity(64 * 1024);
    for _ in 0..500 {
        burst.extend(ping(125));
    }
    burst.extend(ping(30));
    assert_eq!(burst.len(), 64 * 1024);
    client.write_all(&burst).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut pongs = 0;
    while let Some((op, payload)) = read_frame(&mut client) {
        assert_eq!(op, 0xA, "a pong");
        assert!(payload.iter().all(|&b| b == b'p'));
        pongs += 1;
    }
    assert_eq!(pongs, 501);
}
