//! A text message is delivered exactly when its whole payload is valid UTF-8, as
//! `std::str::from_utf8` judges it, however it is cut into fragments and reads and
//! whatever control frames arrive between the fragments. Most of a fragmented message is
//! validated while it arrives and not again at its end, so this checks that the two
//! validations together cover every byte.

mod util;

use proptest::prelude::*;
use util::{Driver, Ev, client_frame};
use wsreactor::proto::Connection;
use wsreactor::proto::frame::OpCode;

const KEY: [u8; 4] = [0x5a, 0x01, 0xc3, 0x80];

/// Valid payloads with characters of every width, and invalid ones with the bad
/// sequence at the start, the middle or the end.
fn corpus() -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = ["", "é", "a€b𝄞", "κόσμε 🎉"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let invalid: &[&[u8]] = &[
        b"\x80",             // a stray continuation byte
        b"\xe2\x82",         // a character cut short
        b"\xc0\xaf",         // overlong
        b"\xf0\x80\x80\xaf", // overlong in 4 bytes
        b"\xed\xa0\x80",     // a surrogate
        b"\xf4\x90\x80\x80", // above U+10FFFF
        b"\xff",
    ];
    for bad in invalid {
        corpus.push([bad, "é𝄞".as_bytes()].concat());
        corpus.push(["€".as_bytes(), bad, b"a"].concat());
        corpus.push(["a€".as_bytes(), bad].concat());
    }
    corpus
}

/// The wire for `payload` cut into fragments at `cuts`, with a ping after the
/// fragments whose index is in `pings`.
fn fragmented(payload: &[u8], cuts: &[usize], pings: &[usize]) -> Vec<u8> {
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(payload.len())).collect();
    bounds.sort_unstable();
    bounds.push(payload.len());
    let mut wire = Vec::new();
    let mut from = 0;
    for (i, &to) in bounds.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        let fin = i + 1 == bounds.len();
        wire.extend(client_frame(opcode, fin, &payload[from..to], KEY));
        if !fin && pings.contains(&i) {
            wire.extend(client_frame(OpCode::Ping, true, b"between", KEY));
        }
        from = to;
    }
    wire
}

/// The events match the oracle: the text when the payload is valid, else a 1007 as
/// the last event and no text.
fn agrees_with_std(payload: &[u8], events: &[Ev]) -> Result<(), String> {
    let texts: Vec<&Ev> = events
        .iter()
        .filter(|e| !matches!(e, Ev::Ping(_)))
        .collect();
    match std::str::from_utf8(payload) {
        Ok(text) if texts == [&Ev::Text(text.to_string())] => Ok(()),
        Err(_) if texts == [&Ev::Error(1007)] => Ok(()),
        _ => Err(format!("{payload:x?} gave {events:?}")),
    }
}

#[test]
fn every_cut_into_two_fragments_and_two_reads_agrees_with_std() {
    for payload in corpus() {
        for cut in 0..=payload.len() {
            for ping in [false, true] {
                let wire = fragmented(&payload, &[cut], if ping { &[0] } else { &[] });
                for split in 0..=wire.len() {
                    let mut d = Driver::new(Connection::server());
                    d.feed_split(&wire, &[split]);
                    if let Err(e) = agrees_with_std(&payload, &d.events) {
                        panic!("cut {cut}, ping {ping}, split {split}: {e}");
                    }
                }
            }
        }
    }
}

#[test]
fn every_cut_into_three_fragments_in_one_read_agrees_with_std() {
    // One read: every fragment is validated in the same call as the message's end.
    for payload in corpus() {
        for a in 0..=payload.len() {
            for b in a..=payload.len() {
                let mut d = Driver::new(Connection::server());
                d.feed(&fragmented(&payload, &[a, b], &[1]));
                if let Err(e) = agrees_with_std(&payload, &d.events) {
                    panic!("cuts {a} and {b}: {e}");
                }
            }
        }
    }
}

#[test]
fn bytes_held_between_reads_are_validated_again_at_the_end() {
    // A caller that breaks the buffer contract by changing the held bytes between two
    // calls gets a 1007, not a `&str` that is not UTF-8: what earlier calls validated is
    // not trusted at the end of the message.
    let mut d = Driver::new(Connection::server());
    d.feed(&client_frame(OpCode::Text, false, "héllo".as_bytes(), KEY));
    assert!(d.events.is_empty());
    assert_eq!(d.input, "héllo".as_bytes(), "the payload is held");
    d.input[1] = 0xff;
    d.feed(&client_frame(OpCode::Continuation, true, b" world", KEY));
    assert_eq!(d.events, vec![Ev::Error(1007)]);
}

/// Text likely to be valid, with a few bytes changed at random now and then.
fn mostly_text() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<String>(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
    )
        .prop_map(|(s, flips)| {
            let mut bytes = s.into_bytes();
            if !bytes.is_empty() {
                for (at, byte) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_text_fragments_reads_and_pings_agree_with_std(
        payload in mostly_text(),
        cuts in proptest::collection::vec(0usize..400, 0..5),
        pings in proptest::collection::vec(0usize..5, 0..3),
        splits in proptest::collection::vec(0usize..500, 0..6),
    ) {
        let wire = fragmented(&payload, &cuts, &pings);
        let mut d = Driver::new(Connection::server());
        d.feed_split(&wire, &splits);
        prop_assert!(agrees_with_std(&payload, &d.events).is_ok(), "{:?}", d.events);
    }
}
