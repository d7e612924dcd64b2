//! The hot paths allocate nothing: decoding a message that arrives whole, in either
//! role, including the replies written into a buffer with room for them.

#[path = "util/counting_alloc.rs"]
mod counting_alloc;
mod util;

use counting_alloc::{Counting, allocations_in};
use util::client_frame;
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::{Connection, Decoded, Event, Limits, Message};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_counter_sees_allocations() {
    let (n, v) = allocations_in(|| vec![1u8; 10]);
    assert_eq!(n, 1);
    drop(v);
}

#[test]
fn decoding_whole_messages_and_control_frames_allocates_nothing() {
    let key = [7, 7, 7, 7];
    let mut wire = client_frame(OpCode::Text, true, "héllo wörld".as_bytes(), key);
    wire.extend(client_frame(OpCode::Binary, true, &[1; 70_000], key));
    wire.extend(client_frame(OpCode::Ping, true, b"are you there", key));
    wire.extend(client_frame(OpCode::Text, false, b"frag", key));
    wire.extend(client_frame(OpCode::Continuation, true, b"ment", key));
    let limits = Limits::default();
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut conn = Connection::server();
    let (n, seen) = allocations_in(|| {
        let mut seen = [0usize; 3];
        let mut buf = &mut wire[..];
        loop {
            match conn.decode(buf, &mut out, &limits) {
                Decoded::Event { consumed, event } => {
                    match event {
                        Event::Message(Message::Text(t)) => seen[0] += t.len(),
                        Event::Message(Message::Binary(b)) => seen[1] += b.len(),
                        Event::Ping(p) => seen[2] += p.len(),
                        other => panic!("unexpected {other:?}"),
                    }
                    buf = &mut std::mem::take(&mut buf)[consumed..];
                }
                Decoded::NeedMore { keep } => {
                    assert!(keep.is_empty());
                    break;
                }
            }
        }
        seen
    });
    assert_eq!(seen, [13 + 8, 70_000, 13]);
    assert_eq!(n, 0, "allocations while decoding");
    assert_eq!(out.len(), 2 + 13, "the pong was written");
}

#[test]
fn writing_messages_into_a_buffer_with_room_allocates_nothing() {
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    for mut conn in [Connection::server(), Connection::client(9)] {
        out.clear();
        let (n, ()) = allocations_in(|| {
            conn.write_message(&mut out, Message::Text("hello"))
                .unwrap();
            conn.write_message(&mut out, Message::Binary(&[0; 1000]))
                .unwrap();
            conn.ping(&mut out, b"p").unwrap();
        });
        assert_eq!(n, 0);
        assert!(out.len() > 1000);
    }
}
