use super::*;
use crate::proto::{CloseCode, Message};

fn negotiate(server: &ServerDeflate, values: &[&str]) -> Option<(PerMessageDeflate, String)> {
    let mut response = [0u8; MAX_RESPONSE_LEN];
    server
        .negotiate(values.iter().map(|v| v.as_bytes()), &mut response)
        .map(|(agreed, len)| {
            (
                agreed,
                String::from_utf8(response[..len].to_vec()).expect("ASCII"),
            )
        })
}

const SHARED: ServerDeflate = ServerDeflate {
    server_context_takeover: false,
    server_max_window_bits: 15,
    client_context_takeover: false,
    client_max_window_bits: 15,
};

const DEDICATED: ServerDeflate = ServerDeflate {
    server_context_takeover: true,
    server_max_window_bits: 12,
    client_context_takeover: true,
    client_max_window_bits: 10,
};

#[test]
fn shared_mode_answers_no_context_takeover_both_ways() {
    let (agreed, response) =
        negotiate(&SHARED, &["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(
        response,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(
        agreed.compressor(Role::Server),
        Direction {
            window_bits: 15,
            context_takeover: false
        }
    );
    assert!(!agreed.decompressor(Role::Server).context_takeover);
}

#[test]
fn dedicated_mode_keeps_context_and_asks_for_the_configured_client_window() {
    let (agreed, response) =
        negotiate(&DEDICATED, &["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(response, "permessage-deflate; client_max_window_bits=10");
    assert_eq!(
        agreed.compressor(Role::Server),
        Direction {
            window_bits: 12,
            context_takeover: true
        }
    );
    assert_eq!(
        agreed.decompressor(Role::Server),
        Direction {
            window_bits: 10,
            context_takeover: true
        }
    );
    // Without the parameter in the offer, no client window may be answered.
    let (agreed, response) = negotiate(&DEDICATED, &["permessage-deflate"]).unwrap();
    assert_eq!(response, "permessage-deflate");
    assert_eq!(agreed.client_max_window_bits, 15);
}

#[test]
fn a_requested_server_window_is_honoured_and_never_exceeded() {
    let (agreed, response) = negotiate(
        &DEDICATED,
        &["permessage-deflate; server_max_window_bits=10"],
    )
    .unwrap();
    assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
    assert_eq!(agreed.compressor(Role::Server).window_bits, 10);
    // Asked for more than configured: answered with the configured window.
    let (_, response) = negotiate(
        &DEDICATED,
        &["permessage-deflate; server_max_window_bits=15"],
    )
    .unwrap();
    assert_eq!(response, "permessage-deflate; server_max_window_bits=12");
    // 8: answered 8, compressed with 9 and no context.
    let (agreed, response) = negotiate(
        &DEDICATED,
        &["permessage-deflate; server_max_window_bits=8"],
    )
    .unwrap();
    assert_eq!(
        response,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=8"
    );
    assert_eq!(
        agreed.compressor(Role::Server),
        Direction {
            window_bits: 9,
            context_takeover: false
        }
    );
}

#[test]
fn invalid_offers_are_declined_and_the_next_one_taken() {
    for bad in [
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=0x9",
        "permessage-deflate; client_no_context_takeover=1",
    ] {
        assert_eq!(negotiate(&SHARED, &[bad]), None, "{bad}");
        let (agreed, _) = negotiate(
            &DEDICATED,
            &[&format!(
                "{bad}, permessage-deflate; server_max_window_bits=11"
            )],
        )
        .unwrap_or_else(|| panic!("second offer after {bad}"));
        assert_eq!(agreed.server_max_window_bits, 11, "{bad}");
    }
    // Offers spread over several headers, other extensions skipped, quoted values.
    let (agreed, _) = negotiate(
        &DEDICATED,
        &[
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=\"9\"",
        ],
    )
    .unwrap();
    assert_eq!(agreed.server_max_window_bits, 9);
    assert_eq!(negotiate(&SHARED, &["x-webkit-deflate-frame", ""]), None);
}

#[test]
fn every_offer_parameter_combination_negotiates_within_the_rules() {
    let windows = [None, Some(8), Some(9), Some(12), Some(15)];
    let client_windows = [
        None,
        Some(None),
        Some(Some(8)),
        Some(Some(11)),
        Some(Some(15)),
    ];
    for server in [SHARED, DEDICATED] {
        for snct in [false, true] {
            for cnct in [false, true] {
                for smwb in windows {
                    for cmwb in client_windows {
                        let offer = Offer {
                            server_no_context_takeover: snct,
                            client_no_context_takeover: cnct,
                            server_max_window_bits: smwb,
                            client_max_window_bits: cmwb,
                        };
                        let (agreed, _) = server.answer(&offer);
                        // The answer must respect the offer (RFC 7692 §7.1).
                        if snct {
                            assert!(agreed.server_no_context_takeover);
                        }
                        if let Some(asked) = smwb {
                            assert!(agreed.server_max_window_bits <= asked.max(9));
                            assert!(agreed.compressor(Role::Server).window_bits >= 9);
                        }
                        if cmwb.is_none() {
                            assert_eq!(agreed.client_max_window_bits, 15);
                        }
                        // The client role accepts what the server answered.
                        let client = ClientDeflate {
                            request_server_no_context_takeover: snct,
                            client_no_context_takeover: cnct,
                            request_server_max_window_bits: smwb.map(|b: u8| b.max(9)),
                            offer_client_max_window_bits: cmwb.is_some(),
                        };
                        let mut response = [0u8; MAX_RESPONSE_LEN];
                        let offer_text = client.offer();
                        let Some((server_side, len)) =
                            server.negotiate([offer_text.as_bytes()], &mut response)
                        else {
                            panic!("declined {offer_text}");
                        };
                        let client_side = client
                            .accept([&response[..len]])
                            .unwrap_or_else(|e| panic!("{offer_text}: {e}"))
                            .unwrap();
                        assert_eq!(
                            client_side.compressor(Role::Client),
                            server_side.decompressor(Role::Server),
                            "{offer_text}"
                        );
                        assert!(
                            client_side.decompressor(Role::Client).window_bits
                                >= server_side.compressor(Role::Server).window_bits
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn the_client_refuses_answers_its_offer_did_not_allow() {
    let plain = ClientDeflate {
        offer_client_max_window_bits: false,
        ..ClientDeflate::default()
    };
    for bad in [
        "permessage-deflate; client_max_window_bits=10",
        "permessage-deflate; foo",
        "permessage-deflate, permessage-deflate",
        "x-other",
        "permessage-deflate; server_max_window_bits=16",
    ] {
        assert!(plain.accept([bad.as_bytes()]).is_err(), "{bad}");
    }
    let asked = ClientDeflate {
        request_server_max_window_bits: Some(10),
        request_server_no_context_takeover: true,
        ..ClientDeflate::default()
    };
    assert_eq!(
        asked.offer(),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
    );
    for bad in [
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
        "permessage-deflate; server_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits",
    ] {
        assert!(asked.accept([bad.as_bytes()]).is_err(), "{bad}");
    }
    let ok = asked
        .accept([&b"permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12"[..]])
        .unwrap()
        .unwrap();
    assert_eq!(
        (ok.server_max_window_bits, ok.client_max_window_bits),
        (9, 12)
    );
    assert_eq!(plain.accept([&b""[..]]), Ok(None), "declined");
}

fn json(i: usize) -> String {
    format!(
        r#"{{"type":"trade","symbol":"SYM{}","price":{}.{:02},"size":{},"seq":{i}}}"#,
        i % 7,
        100 + i % 13,
        i % 100,
        i * 37 % 1000
    )
}

#[test]
fn messages_round_trip_through_every_window_and_context_rule() {
    for bits in [9, 12, 15] {
        for takeover in [false, true] {
            let direction = Direction {
                window_bits: bits,
                context_takeover: takeover,
            };
            let mut deflater = Deflater::new(direction, 6);
            let mut inflater = Inflater::new(direction);
            let mut wire = Vec::new();
            let mut out = Vec::new();
            let mut total = (0, 0);
            for i in 0..200 {
                let text = json(i).repeat(1 + i % 5);
                wire.clear();
                assert!(deflater.compress(text.as_bytes(), &mut wire));
                assert!(!wire.ends_with(&[0, 0, 0xff, 0xff]));
                total.0 += text.len();
                total.1 += wire.len();
                let got = inflater.inflate(&wire, true, 1 << 20, &mut out).unwrap();
                assert_eq!(got, Message::Text(&text), "bits {bits} takeover {takeover}");
            }
            // Context takeover is what makes small similar messages small.
            println!(
                "bits {bits} takeover {takeover}: {} -> {}",
                total.0, total.1
            );
            assert!(total.1 < total.0 / 2);
        }
    }
}

#[test]
fn a_context_free_message_reads_on_a_peer_that_keeps_context() {
    let keep = Direction {
        window_bits: 15,
        context_takeover: true,
    };
    let mut own = Deflater::new(keep, 6);
    let mut shared = Deflater::new(
        Direction {
            window_bits: 15,
            context_takeover: false,
        },
        6,
    );
    let mut peer = Inflater::new(keep);
    let (mut wire, mut out) = (Vec::new(), Vec::new());
    let a = json(1).repeat(3);
    own.compress(a.as_bytes(), &mut wire);
    assert_eq!(
        peer.inflate(&wire, true, 1 << 20, &mut out).unwrap(),
        Message::Text(&a)
    );
    // A frame compressed once for many (a broadcast) enters the peer's window...
    let b = json(2).repeat(3);
    wire.clear();
    shared.compress(b.as_bytes(), &mut wire);
    assert_eq!(
        peer.inflate(&wire, true, 1 << 20, &mut out).unwrap(),
        Message::Text(&b)
    );
    // ...so the connection's own compressor must forget its history first.
    own.reset();
    let c = json(1).repeat(3);
    wire.clear();
    own.compress(c.as_bytes(), &mut wire);
    assert_eq!(
        peer.inflate(&wire, true, 1 << 20, &mut out).unwrap(),
        Message::Text(&c)
    );
}

#[test]
fn a_bomb_is_refused_at_the_limit_while_it_inflates() {
    let direction = Direction {
        window_bits: 15,
        context_takeover: false,
    };
    let zeros = vec![0u8; 64 << 20];
    let mut wire = Vec::new();
    Deflater::new(direction, 9).compress(&zeros, &mut wire);
    assert!(wire.len() < 128 << 10, "{} bytes on the wire", wire.len());
    let mut inflater = Inflater::new(direction);
    let mut out = Vec::new();
    assert_eq!(
        inflater.inflate(&wire, false, 1 << 20, &mut out),
        Err(InflateError::TooBig)
    );
    assert!(out.capacity() <= (1 << 20) + 1 + 4096, "{}", out.capacity());
    // Exactly at the limit is fine, and the inflater is usable again.
    let exact = vec![7u8; 1 << 20];
    wire.clear();
    Deflater::new(direction, 1).compress(&exact, &mut wire);
    assert_eq!(
        inflater.inflate(&wire, false, 1 << 20, &mut out).unwrap(),
        Message::Binary(&exact)
    );
}

#[test]
fn corrupt_data_and_invalid_text_are_refused_with_1007() {
    let direction = Direction {
        window_bits: 15,
        context_takeover: false,
    };
    let mut inflater = Inflater::new(direction);
    let mut out = Vec::new();
    // A block type of 3 is reserved.
    let err = inflater.inflate(&[0xff, 0xff, 0xff], false, 1 << 20, &mut out);
    assert_eq!(err, Err(InflateError::Corrupt));
    assert_eq!(InflateError::Corrupt.code(), CloseCode::INVALID_PAYLOAD);
    // Invalid UTF-8 fails as soon as it comes out, before the rest is inflated.
    let mut text = b"ok \xff".to_vec();
    text.extend(std::iter::repeat_n(b'a', 1 << 20));
    let mut wire = Vec::new();
    Deflater::new(direction, 6).compress(&text, &mut wire);
    assert_eq!(
        inflater.inflate(&wire, true, 64 << 20, &mut out),
        Err(InflateError::InvalidUtf8)
    );
    assert!(out.len() < 1 << 20, "stopped early, at {}", out.len());
    // Text cut inside a character.
    wire.clear();
    Deflater::new(direction, 6).compress(b"caf\xc3", &mut wire);
    assert_eq!(
        inflater.inflate(&wire, true, 1 << 20, &mut out),
        Err(InflateError::InvalidUtf8)
    );
    // Binary is not checked, and the inflater recovered from the errors.
    assert_eq!(
        inflater.inflate(&wire, false, 1 << 20, &mut out),
        Ok(Message::Binary(b"caf\xc3"))
    );
}
