//! The client owes at most one pong. While a sender thread is blocked writing (the
//! server reads nothing), pings keep arriving at the reader; it used to queue a
//! pong for each, without bound (the review: 400,000 pings, 68 MB). Now the latest
//! ping's pong waits, and goes out once the writer can write (RFC 6455 §5.5.3
//! lets a pong answer only the most recent ping).

#[path = "util/live_alloc.rs"]
mod live_alloc;
#[path = "util/scripted.rs"]
mod scripted;
#[path = "util/server.rs"]
mod server;
mod util;

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread;

use scripted::{accept, serve};
use util::{Driver, Ev, server_frame};
use wsreactor::client::{ClientBuilder, Incoming};
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::{Connection, Limits, Message};

#[global_allocator]
static HEAP: live_alloc::Live = live_alloc::Live;

const PINGS: u32 = 100_000;
/// Far more than the sockets' buffers hold while the server does not read.
const BIG: usize = 32 << 20;

#[test]
fn pings_while_a_sender_is_blocked_leave_one_pong_owed() {
    let (pinged, all_pinged) = mpsc::channel();
    let (read_on, may_read) = mpsc::channel::<()>();
    let server = serve(
        |head| accept(head, ""),
        move |mut s| {
            // The first MiB of the big message: the sender is in its write.
            let mut first = vec![0u8; 1 << 20];
            s.read_exact(&mut first).unwrap();
            let mut w = s.try_clone().unwrap();
            for i in 0..PINGS {
                w.write_all(&server_frame(OpCode::Ping, true, &i.to_be_bytes()))
                    .unwrap();
            }
            pinged.send(()).unwrap();
            may_read.recv().unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            first.extend_from_slice(&rest);
            first
        },
    );
    let mut client = ClientBuilder::new(server.url())
        .write_timeout(None)
        .read_timeout(Some(server::PATIENCE))
        .connect()
        .unwrap();
    let sender = client.sender();
    let big = vec![7u8; BIG];
    let sending = thread::spawn(move || sender.send(Message::Binary(&big)));
    all_pinged.recv().unwrap();
    let before = live_alloc::live();
    for i in 0..PINGS {
        match client.recv().unwrap() {
            Incoming::Ping(p) => assert_eq!(p, i.to_be_bytes()),
            other => panic!("{other:?}"),
        }
    }
    let grown = live_alloc::live().saturating_sub(before);
    // One pong owed (the old code held a pong per ping: 1.3 MB here at the least).
    assert!(
        grown < 64 * 1024,
        "the client's heap grew {grown} B over {PINGS} pings"
    );
    read_on.send(()).unwrap();
    sending.join().unwrap().unwrap();
    drop(client);
    // The server saw the big message whole, then the one pong, for the last ping.
    let wire = server.join();
    let mut d = Driver::new(Connection::server());
    d.limits = Limits::new(BIG, BIG);
    d.feed(&wire);
    let pongs: Vec<&Ev> = d
        .events
        .iter()
        .filter(|e| matches!(e, Ev::Pong(_)))
        .collect();
    assert_eq!(pongs, [&Ev::Pong((PINGS - 1).to_be_bytes().to_vec())]);
    assert!(matches!(&d.events[0], Ev::Binary(b) if b.len() == BIG));
}
