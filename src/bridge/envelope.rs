//! What travels through Redis: a topic's channel name, and an envelope around each
//! message that says which node published it and whether it is text or binary.
//!
//! ```text
//! channel:  PREFIX TOPIC                       ("wsreactor:" "prices")
//! message:  'W' 'S' 0x01 KIND NODE(8) PAYLOAD  (KIND: 1 text, 2 binary;
//!                                               NODE: big-endian u64, 0: not a node)
//! ```
//!
//! The node id lets a node skip its own publications when Redis hands them back (it
//! delivered them to its own subscribers already). Id 0 is never a node's: a
//! backend that publishes with any Redis client uses it, and every node delivers
//! its messages.

use std::hash::{BuildHasher, RandomState};

use crate::proto::Message;
use crate::pubsub::MAX_TOPIC_LEN;

/// The first bytes of every envelope: a mark and the format's version.
const MARK: [u8; 3] = [b'W', b'S', 1];
/// Bytes before the payload: mark, kind, node id.
pub(crate) const HEADER: usize = MARK.len() + 1 + 8;

const TEXT: u8 = 1;
const BINARY: u8 = 2;

/// Why a message from Redis was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Not on a channel under the prefix, or the topic is over `MAX_TOPIC_LEN`.
    Channel,
    /// Too short, another mark or version, or an unknown kind.
    Envelope,
    /// A payload over the bridge's `max_message_size`.
    TooLarge,
    /// A text payload that is not UTF-8.
    Utf8,
}

/// A node id for this process: random, never 0.
pub(crate) fn node_id() -> u64 {
    let id = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
    id.max(1)
}

/// The channel of `topic`.
pub(crate) fn channel(prefix: &[u8], topic: &[u8]) -> Vec<u8> {
    let mut channel = Vec::with_capacity(prefix.len() + topic.len());
    channel.extend_from_slice(prefix);
    channel.extend_from_slice(topic);
    channel
}

/// The topic a channel stands for.
pub(crate) fn topic<'c>(prefix: &[u8], channel: &'c [u8]) -> Result<&'c [u8], Malformed> {
    match channel.strip_prefix(prefix) {
        Some(topic) if topic.len() <= MAX_TOPIC_LEN => Ok(topic),
        _ => Err(Malformed::Channel),
    }
}

/// The opcode and payload of a frame as `encode` made it (unmasked, one frame);
/// `None` for anything else.
pub(crate) fn split_frame(frame: &[u8]) -> Option<(bool, &[u8])> {
    let (&first, rest) = frame.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let text = match first {
        0x81 => true,
        0x82 => false,
        _ => return None,
    };
    if second & 0x80 != 0 {
        return None; // masked: not a server frame
    }
    let (len, payload) = match second & 0x7f {
        126 => {
            let (len, payload) = rest.split_first_chunk::<2>()?;
            (u64::from(u16::from_be_bytes(*len)), payload)
        }
        127 => {
            let (len, payload) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*len), payload)
        }
        n => (u64::from(n), rest),
    };
    (payload.len() as u64 == len).then_some((text, payload))
}

/// Writes the envelope of `payload` from `node` into `out` (cleared first).
pub(crate) fn write(out: &mut Vec<u8>, node: u64, text: bool, payload: &[u8]) {
    out.clear();
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&MARK);
    out.push(if text { TEXT } else { BINARY });
    out.extend_from_slice(&node.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The publishing node and the message inside an envelope, checked: a text
/// payload is UTF-8, and no payload is over `max` bytes.
pub(crate) fn read(envelope: &[u8], max: usize) -> Result<(u64, Message<'_>), Malformed> {
    let (header, payload) = envelope
        .split_first_chunk::<HEADER>()
        .ok_or(Malformed::Envelope)?;
    let (mark, rest) = header.split_at(MARK.len());
    if mark != MARK {
        return Err(Malformed::Envelope);
    }
    let (kind, node) = rest.split_at(1);
    let node = u64::from_be_bytes(node.try_into().map_err(|_| Malformed::Envelope)?);
    if payload.len() > max {
        return Err(Malformed::TooLarge);
    }
    let message = match kind {
        [TEXT] => Message::Text(simdutf8::basic::from_utf8(payload).map_err(|_| Malformed::Utf8)?),
        [BINARY] => Message::Binary(payload),
        _ => return Err(Malformed::Envelope),
    };
    Ok((node, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::encode;

    #[test]
    fn frames_of_every_length_class_split_back_into_their_payload() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload = vec![7u8; len];
            let frame = encode(Message::Binary(&payload));
            assert_eq!(split_frame(&frame), Some((false, &payload[..])), "{len}");
            let text = "é".repeat(len / 2);
            let frame = encode(Message::Text(&text));
            assert_eq!(split_frame(&frame), Some((true, text.as_bytes())), "{len}");
            // Cut short anywhere: not a frame.
            assert_eq!(split_frame(&frame[..frame.len() - 1]), None, "cut short");
        }
        assert_eq!(split_frame(&[]), None);
        assert_eq!(split_frame(&[0x89, 0]), None, "a ping");
        assert_eq!(split_frame(&[0x01, 0]), None, "not final");
        assert_eq!(split_frame(&[0x81, 0x80, 0, 0, 0, 0]), None, "masked");
    }

    #[test]
    fn envelopes_round_trip_and_say_who_published() {
        let mut out = Vec::new();
        write(&mut out, 0x0102_0304_0506_0708, true, "héllo".as_bytes());
        assert_eq!(
            &out[..HEADER],
            b"WS\x01\x01\x01\x02\x03\x04\x05\x06\x07\x08"
        );
        assert_eq!(
            read(&out, 100),
            Ok((0x0102_0304_0506_0708, Message::Text("héllo")))
        );
        write(&mut out, 9, false, &[0xff, 0]);
        assert_eq!(read(&out, 2), Ok((9, Message::Binary(&[0xff, 0]))));
        assert_eq!(read(&out, 1), Err(Malformed::TooLarge));
        write(&mut out, 0, false, b"");
        assert_eq!(read(&out, 0), Ok((0, Message::Binary(b""))));
    }

    #[test]
    fn anything_else_is_malformed() {
        let mut good = Vec::new();
        write(&mut good, 5, true, b"ok");
        for cut in 0..HEADER {
            assert_eq!(read(&good[..cut], 100), Err(Malformed::Envelope), "{cut}");
        }
        for (at, value) in [(0, b'X'), (1, b'X'), (2, 2), (3, 0), (3, 3)] {
            let mut bad = good.clone();
            bad[at] = value;
            assert_eq!(
                read(&bad, 100),
                Err(Malformed::Envelope),
                "byte {at} = {value}"
            );
        }
        let mut bad = good.clone();
        bad.push(0xc3); // a truncated two-byte sequence
        assert_eq!(read(&bad, 100), Err(Malformed::Utf8));
        assert_eq!(
            read(b"plain text from redis-cli", 100),
            Err(Malformed::Envelope)
        );
    }

    #[test]
    fn channels_are_the_prefix_then_the_topic() {
        assert_eq!(channel(b"ws:", b"prices"), b"ws:prices");
        assert_eq!(topic(b"ws:", b"ws:prices"), Ok(&b"prices"[..]));
        assert_eq!(topic(b"ws:", b"ws:"), Ok(&b""[..]));
        assert_eq!(topic(b"ws:", b"other:prices"), Err(Malformed::Channel));
        let long = channel(b"ws:", &[b'x'; MAX_TOPIC_LEN + 1]);
        assert_eq!(topic(b"ws:", &long), Err(Malformed::Channel));
        assert_eq!(topic(b"", b"anything"), Ok(&b"anything"[..]));
    }

    #[test]
    fn node_ids_are_never_zero() {
        assert_ne!(node_id(), 0);
        assert_ne!(node_id(), node_id(), "random per call");
    }
}
