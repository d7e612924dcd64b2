//! tungstenite as the oracle, in both directions and both roles.
//!
//! Random messages, random fragmentations, control frames between fragments and
//! random read splits: frames written by tungstenite decode to the same messages in
//! wsreactor, and frames written by wsreactor decode to the same messages in
//! tungstenite. Feeding a stream one byte at a time gives exactly the events that
//! feeding it whole gives.

mod util;

use std::io::{self, Cursor, Read, Write};

use proptest::prelude::*;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode as TOpCode};
use tungstenite::protocol::{Role as TRole, WebSocket};
use util::{Driver, Ev};
use wsreactor::proto::frame::OpCode;
use wsreactor::proto::{Connection, Role};

/// An in-memory stream: reads from `input`, writes to `output`.
struct Duplex {
    input: Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tungstenite(role: TRole, input: Vec<u8>) -> WebSocket<Duplex> {
    let stream = Duplex {
        input: Cursor::new(input),
        output: Vec::new(),
    };
    WebSocket::from_raw_socket(stream, role, None)
}

#[derive(Clone, Debug)]
enum Control_ {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// One message, cut into fragments, with control frames after some fragments.
#[derive(Clone, Debug)]
struct Item {
    text: bool,
    payload: Vec<u8>,
    /// Fragment boundaries (sorted, within the payload).
    cuts: Vec<usize>,
    /// A control frame to send after fragment `i` (never after the last one).
    controls: Vec<Option<Control_>>,
}

impl Item {
    fn fragments(&self) -> Vec<&[u8]> {
        let mut parts = Vec::new();
        let mut from = 0;
        for &cut in &self.cuts {
            parts.push(&self.payload[from..cut]);
            from = cut;
        }
        parts.push(&self.payload[from..]);
        parts
    }

    /// The events a receiver reports for this item, in order.
    fn expected(&self) -> Vec<Ev> {
        let mut events = Vec::new();
        let n = self.fragments().len();
        for i in 0..n - 1 {
            match self.controls.get(i).cloned().flatten() {
                Some(Control_::Ping(p)) => events.push(Ev::Ping(p)),
                Some(Control_::Pong(p)) => events.push(Ev::Pong(p)),
                None => {}
            }
        }
        events.push(if self.text {
            Ev::Text(String::from_utf8(self.payload.clone()).unwrap())
        } else {
            Ev::Binary(self.payload.clone())
        });
        events
    }
}

fn control() -> impl Strategy<Value = Option<Control_>> {
    prop_oneof![
        2 => Just(None),
        1 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|p| Some(Control_::Ping(p))),
        1 => proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|p| Some(Control_::Pong(p))),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    let payload = prop_oneof![
        ".{0,200}".prop_map(|s: String| (true, s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b)),
        // Sometimes large enough for 16-bit and 64-bit lengths.
        (0usize..70_000).prop_map(|n| (false, vec![0xa5; n])),
    ];
    (
        payload,
        proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
    )
        .prop_flat_map(|((text, payload), cut_idx)| {
            let mut cuts: Vec<usize> = cut_idx.iter().map(|i| i.index(payload.len() + 1)).collect();
            cuts.sort_unstable();
            let n = cuts.len();
            (
                Just(text),
                Just(payload),
                Just(cuts),
                proptest::collection::vec(control(), n),
            )
        })
        .prop_map(|(text, payload, cuts, controls)| Item {
            text,
            payload,
            cuts,
            controls,
        })
}

fn data_opcode(item: &Item, first: bool) -> OpCode {
    match (first, item.text) {
        (false, _) => OpCode::Continuation,
        (true, true) => OpCode::Text,
        (true, false) => OpCode::Binary,
    }
}

/// The items as tungstenite writes them in `role`.
fn written_by_tungstenite(role: TRole, items: &[Item]) -> Vec<u8> {
    let mut ws = tungstenite(role, Vec::new());
    for item in items {
        let parts = item.fragments();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let op = match data_opcode(item, i == 0) {
                OpCode::Text => TOpCode::Data(Data::Text),
                OpCode::Binary => TOpCode::Data(Data::Binary),
                _ => TOpCode::Data(Data::Continue),
            };
            let frame = Frame::message(part.to_vec(), op, i == last);
            ws.write(tungstenite::Message::Frame(frame)).unwrap();
            if i < last {
                match item.controls.get(i).cloned().flatten() {
                    Some(Control_::Ping(p)) => {
                        ws.write(tungstenite::Message::Ping(p.into())).unwrap()
                    }
                    Some(Control_::Pong(p)) => {
                        ws.write(tungstenite::Message::Pong(p.into())).unwrap()
                    }
                    None => {}
                }
            }
        }
    }
    ws.flush().unwrap();
    std::mem::take(&mut ws.get_mut().output)
}

/// The items as wsreactor writes them.
fn written_by_wsreactor(conn: &mut Connection, items: &[Item]) -> Vec<u8> {
    let mut wire = Vec::new();
    for item in items {
        let parts = item.fragments();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            conn.write_frame(&mut wire, data_opcode(item, i == 0), i == last, part)
                .unwrap();
            if i < last {
                match item.controls.get(i).cloned().flatten() {
                    Some(Control_::Ping(p)) => conn.ping(&mut wire, &p).unwrap(),
                    Some(Control_::Pong(p)) => {
                        conn.write_frame(&mut wire, OpCode::Pong, true, &p).unwrap()
                    }
                    None => {}
                }
            }
        }
    }
    wire
}

/// What tungstenite reads from `wire`, as events.
fn read_by_tungstenite(role: TRole, wire: Vec<u8>) -> Vec<Ev> {
    let mut ws = tungstenite(role, wire);
    let mut events = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => events.push(Ev::Text(t.as_str().to_string())),
            Ok(tungstenite::Message::Binary(b)) => events.push(Ev::Binary(b.to_vec())),
            Ok(tungstenite::Message::Ping(p)) => events.push(Ev::Ping(p.to_vec())),
            Ok(tungstenite::Message::Pong(p)) => events.push(Ev::Pong(p.to_vec())),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("tungstenite failed: {e}"),
        }
    }
    events
}

fn expected(items: &[Item]) -> Vec<Ev> {
    items.iter().flat_map(Item::expected).collect()
}

fn our_conn(role: Role) -> Connection {
    match role {
        Role::Server => Connection::server(),
        Role::Client => Connection::client(0x5eed),
    }
}

fn peer_role(role: Role) -> TRole {
    match role {
        Role::Server => TRole::Client,
        Role::Client => TRole::Server,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn frames_from_tungstenite_decode_to_the_same_messages(
        items in proptest::collection::vec(item(), 1..6),
        splits in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let wire = written_by_tungstenite(peer_role(role), &items);
        let splits: Vec<usize> = splits.iter().map(|i| i.index(wire.len() + 1)).collect();
        let mut d = Driver::new(our_conn(role));
        d.feed_split(&wire, &splits);
        prop_assert_eq!(&d.events, &expected(&items));
        prop_assert!(d.input.is_empty());
    }

    #[test]
    fn frames_from_wsreactor_decode_to_the_same_messages_in_tungstenite(
        items in proptest::collection::vec(item(), 1..6),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let mut conn = our_conn(role);
        let wire = written_by_wsreactor(&mut conn, &items);
        prop_assert_eq!(read_by_tungstenite(peer_role(role), wire), expected(&items));
    }

    #[test]
    fn one_byte_at_a_time_gives_the_events_of_one_read(
        items in proptest::collection::vec(item(), 1..4),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let wire = written_by_tungstenite(peer_role(role), &items);
        let mut whole = Driver::new(our_conn(role));
        whole.feed(&wire);
        let mut bytewise = Driver::new(our_conn(role));
        for b in &wire {
            bytewise.feed(std::slice::from_ref(b));
        }
        prop_assert_eq!(&bytewise.events, &whole.events);
        prop_assert_eq!(&bytewise.out, &whole.out);
    }

    #[test]
    fn our_replies_to_pings_are_what_tungstenite_reads_as_pongs(
        pings in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=125), 1..5),
        server in any::<bool>(),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        let items: Vec<Item> = pings
            .iter()
            .map(|p| Item {
                text: false,
                payload: vec![],
                cuts: vec![0],
                controls: vec![Some(Control_::Ping(p.clone()))],
            })
            .collect();
        let wire = written_by_tungstenite(peer_role(role), &items);
        let mut d = Driver::new(our_conn(role));
        d.feed(&wire);
        let pongs: Vec<Ev> = pings.iter().cloned().map(Ev::Pong).collect();
        prop_assert_eq!(read_by_tungstenite(peer_role(role), d.out), pongs);
    }
}
