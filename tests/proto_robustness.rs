//! Arbitrary input never panics the protocol state machine, in either role, whatever
//! the read splits; and once it reports an error it reads nothing more.

mod util;

use proptest::prelude::*;
use util::{Driver, Ev, client_frame};
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::{Connection, Limits};

fn conn(server: bool) -> Connection {
    if server {
        Connection::server()
    } else {
        Connection::client(3)
    }
}

/// A valid client stream to mutate: fragments, control frames, a close.
fn valid_stream() -> Vec<u8> {
    let key = [0xa1, 0xb2, 0xc3, 0xd4];
    let mut s = client_frame(OpCode::Text, false, "héllo ".as_bytes(), key);
    s.extend(client_frame(OpCode::Ping, true, b"ping", key));
    s.extend(client_frame(
        OpCode::Continuation,
        true,
        "wörld".as_bytes(),
        key,
    ));
    s.extend(client_frame(OpCode::Binary, true, &[0u8; 300], key));
    s.extend(client_frame(
        OpCode::Close,
        true,
        &[0x03, 0xe8, b'o', b'k'],
        key,
    ));
    s
}

fn check(
    server: bool,
    limits: Limits,
    bytes: &[u8],
    splits: &[usize],
) -> Result<(), TestCaseError> {
    let mut d = Driver::with_limits(conn(server), limits);
    d.feed_split(bytes, splits);
    // At most one error or close, and it is the last event.
    let ends = d
        .events
        .iter()
        .position(|e| matches!(e, Ev::Error(_) | Ev::Close(_)));
    if let Some(at) = ends {
        prop_assert_eq!(at, d.events.len() - 1);
        prop_assert!(d.conn.is_closed());
    }
    if let Some(Ev::Error(code)) = d.events.last() {
        prop_assert!([1002, 1007, 1009].contains(code), "code {}", code);
    }
    // What is held never exceeds what the limits allow plus one partial frame.
    prop_assert!(d.input.len() <= limits.max_message_size + 14 + 125);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        splits in proptest::collection::vec(0usize..600, 0..6),
        server in any::<bool>(),
        small in any::<bool>(),
    ) {
        let limits = if small { Limits::new(64, 200) } else { Limits::default() };
        check(server, limits, &bytes, &splits)?;
    }

    #[test]
    fn mutated_valid_streams_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        splits in proptest::collection::vec(0usize..400, 0..6),
        small in any::<bool>(),
    ) {
        let mut bytes = valid_stream();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let limits = if small { Limits::new(64, 200) } else { Limits::default() };
        check(true, limits, &bytes, &splits)?;
    }
}

#[test]
fn the_unmutated_stream_is_fully_valid() {
    let mut d = Driver::new(Connection::server());
    d.feed(&valid_stream());
    assert_eq!(
        d.events,
        vec![
            Ev::Ping(b"ping".to_vec()),
            Ev::Text("héllo wörld".into()),
            Ev::Binary(vec![0; 300]),
            Ev::Close(Some((1000, "ok".into()))),
        ]
    );
}
