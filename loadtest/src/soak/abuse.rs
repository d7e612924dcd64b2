//! The soak's abusive clients: what each kind sends, what the server must answer,
//! and what it did.
//!
//! The expectations are those of the echo example on the default `Config`: an
//! upgrade request of at most 8 KiB and 64 headers, messages of at most 16 MiB, a
//! 10 s handshake timeout, and backpressure that pauses reading rather than closes.

use std::fmt;
use std::time::Duration;

use wsreactor::proto::frame::{FrameHeader, OpCode};
use wsreactor::proto::handshake;
use wsreactor::proto::mask::apply_mask;

/// How long a slowloris client trickles its handshake before it gives up: well
/// under the server's 10 s handshake timeout, so the server must stay silent.
pub const TRICKLE_FOR: Duration = Duration::from_secs(3);
/// One handshake byte per this long.
pub const TRICKLE_EVERY: Duration = Duration::from_millis(250);
/// How long a client that never reads keeps sending.
pub const NEVER_READS_FOR: Duration = Duration::from_secs(3);
/// A client that never reads sends a ping and a message of this size each tick.
pub const NEVER_READS_MESSAGE: usize = 16 * 1024;
/// Its receive buffer: a small window, so what the server echoes queues in the server.
pub const NEVER_READS_WINDOW: usize = 4096;
/// A flood-reset client sends this many small messages in one write, and resets:
/// the server still has some of them unread when the reset arrives, and what it
/// answers them with must go nowhere (not to the next connection it serves).
pub const FLOOD_MESSAGES: usize = 2048;
/// How long a client waits for the answer it expects (or for its connection to
/// open) before it records none. A hang guard, not a measure: a healthy server
/// answers at once, the wait ends with the answer, and a busy machine may delay it by
/// many times what it takes on an idle one.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One kind of hostile client. Each abusive slot of the soak cycles through them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Abuse {
    /// Trickles a valid upgrade request a byte at a time, then leaves.
    Slowloris,
    /// Sends bytes that are not HTTP.
    Garbage,
    /// An upgrade request over the size or header-count limit.
    OversizedHandshake,
    /// After the upgrade, a frame header announcing a 2^63−1 byte payload.
    HugeFrame,
    /// After the upgrade, a text message that is not UTF-8.
    InvalidUtf8,
    /// After the upgrade, a frame without a mask.
    Unmasked,
    /// After the upgrade, half a frame, then a TCP reset (SO_LINGER 0).
    ResetMidFrame,
    /// Connects and closes without sending a byte.
    Vanish,
    /// After the upgrade, sends pings and messages and never reads a byte.
    NeverReads,
    /// After the upgrade, a flood of small messages in one write, never reading,
    /// and a reset at once.
    FloodReset,
}

impl Abuse {
    pub const ALL: [Abuse; 10] = [
        Abuse::Slowloris,
        Abuse::Garbage,
        Abuse::OversizedHandshake,
        Abuse::HugeFrame,
        Abuse::InvalidUtf8,
        Abuse::Unmasked,
        Abuse::ResetMidFrame,
        Abuse::Vanish,
        Abuse::NeverReads,
        Abuse::FloodReset,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Abuse::Slowloris => "slowloris",
            Abuse::Garbage => "garbage",
            Abuse::OversizedHandshake => "oversized-handshake",
            Abuse::HugeFrame => "huge-frame",
            Abuse::InvalidUtf8 => "invalid-utf8",
            Abuse::Unmasked => "unmasked",
            Abuse::ResetMidFrame => "reset-mid-frame",
            Abuse::Vanish => "vanish",
            Abuse::NeverReads => "never-reads",
            Abuse::FloodReset => "flood-reset",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<Abuse> {
        Abuse::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the client completes the upgrade before it misbehaves.
    pub fn upgrades(self) -> bool {
        matches!(
            self,
            Abuse::HugeFrame
                | Abuse::InvalidUtf8
                | Abuse::Unmasked
                | Abuse::ResetMidFrame
                | Abuse::NeverReads
                | Abuse::FloodReset
        )
    }

    /// What the server must do.
    pub fn expected(self) -> Observed {
        match self {
            Abuse::Slowloris => Observed::Silent,
            Abuse::Garbage => Observed::Http(400),
            Abuse::OversizedHandshake => Observed::Http(431),
            Abuse::HugeFrame => Observed::Close(1009),
            Abuse::InvalidUtf8 => Observed::Close(1007),
            Abuse::Unmasked => Observed::Close(1002),
            Abuse::ResetMidFrame | Abuse::Vanish | Abuse::FloodReset => Observed::Left,
            Abuse::NeverReads => Observed::Held,
        }
    }

    /// What an abuse that runs for a time has seen when the round ends it early:
    /// the server had not answered, which is what it must do.
    pub fn expected_if_held(self) -> Observed {
        match self {
            Abuse::Slowloris => Observed::Silent,
            Abuse::NeverReads => Observed::Held,
            _ => Observed::Left,
        }
    }

    /// The bytes this kind sends in one go (after the upgrade for those that upgrade;
    /// nothing for the kinds whose sending is spread over time). `variant` picks
    /// between forms of the same abuse, cycle by cycle.
    pub fn payload(self, variant: u64, host: &str, path: &str) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Abuse::Garbage => match variant % 3 {
                // A TLS ClientHello sent to a plain-text port.
                0 => out.extend_from_slice(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
                // Binary noise.
                1 => out.extend((0..512u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)),
                // Something that looks like a request line and is not one.
                _ => out.extend_from_slice(b"HELLO THERE\r\n\r\n"),
            },
            Abuse::OversizedHandshake => {
                let key = handshake::encode_key([7; 16]);
                if variant.is_multiple_of(2) {
                    // 16 KiB of one header: twice the 8 KiB limit.
                    let pad = "p".repeat(16 * 1024);
                    handshake::write_request(&mut out, host, path, &key, &[], &[("X-Pad", &pad)]);
                } else {
                    // 200 short headers: over the limit of 64, under 8 KiB.
                    let names: Vec<String> = (0..200).map(|i| format!("X-Header-{i}")).collect();
                    let headers: Vec<(&str, &str)> =
                        names.iter().map(|n| (n.as_str(), "1")).collect();
                    handshake::write_request(&mut out, host, path, &key, &[], &headers);
                }
            }
            Abuse::HugeFrame => out.extend_from_slice(
                FrameHeader {
                    fin: true,
                    rsv: 0,
                    opcode: OpCode::Binary,
                    mask: Some(MASK),
                    payload_len: i64::MAX as u64,
                }
                .encode()
                .as_bytes(),
            ),
            Abuse::InvalidUtf8 => {
                if variant.is_multiple_of(2) {
                    out = client_frame(OpCode::Text, true, b"soak \xff\xfe");
                } else {
                    // A character cut by the fragment boundary and finished wrongly.
                    out = client_frame(OpCode::Text, false, b"caf\xc3");
                    out.extend(client_frame(OpCode::Continuation, true, b"("));
                }
            }
            Abuse::Unmasked => {
                out.extend_from_slice(
                    FrameHeader {
                        fin: true,
                        rsv: 0,
                        opcode: OpCode::Text,
                        mask: None,
                        payload_len: 5,
                    }
                    .encode()
                    .as_bytes(),
                );
                out.extend_from_slice(b"hello");
            }
            Abuse::ResetMidFrame => {
                // A header announcing 4 KiB, and a quarter of them.
                let mut frame = client_frame(OpCode::Binary, true, &[0x5a; 4096]);
                frame.truncate(frame.len() - 3 * 1024);
                out = frame;
            }
            Abuse::Slowloris => {
                let key = handshake::encode_key([9; 16]);
                handshake::write_request(&mut out, host, path, &key, &[], &[]);
            }
            Abuse::FloodReset => out = flood(),
            Abuse::Vanish | Abuse::NeverReads => {}
        }
        out
    }
}

/// What the server did, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Observed {
    /// Said nothing and kept the connection open until the client left.
    Silent,
    /// An HTTP response with this status, then the end of the connection.
    Http(u16),
    /// A close frame with this code.
    Close(u16),
    /// Took everything written and never closed, until the client left.
    Held,
    /// The client left before there was anything to see (by design).
    Left,
    /// The connection ended without a response or a close frame.
    Eof,
    /// The connection was reset.
    Reset,
    /// Bytes that were neither the response nor the close frame expected (a message
    /// echoed back where a close was due, a response that is not HTTP).
    Unexpected,
    /// Nothing within the answer timeout.
    NoAnswer,
    /// The TCP connect failed.
    ConnectFailed,
    /// The upgrade, which this kind needs before it misbehaves, failed.
    HandshakeFailed,
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Silent => f.write_str("silent until abandoned"),
            Observed::Http(status) => write!(f, "HTTP {status}"),
            Observed::Close(code) => write!(f, "close {code}"),
            Observed::Held => f.write_str("held open"),
            Observed::Left => f.write_str("left"),
            Observed::Eof => f.write_str("EOF without an answer"),
            Observed::Reset => f.write_str("reset"),
            Observed::Unexpected => f.write_str("unexpected bytes"),
            Observed::NoAnswer => write!(f, "no answer in {} s", ANSWER_TIMEOUT.as_secs()),
            Observed::ConnectFailed => f.write_str("connect failed"),
            Observed::HandshakeFailed => f.write_str("upgrade failed"),
        }
    }
}

/// How a flood-reset client's messages begin.
pub const FLOOD_MARK: &[u8] = b"flood-reset: a reply to this belongs to no one else";

/// A flood-reset client's messages: small and binary, each carrying the marker so
/// that one delivered to another client is recognised.
fn flood() -> Vec<u8> {
    let mut payload = [b'.'; 100];
    payload[..FLOOD_MARK.len()].copy_from_slice(FLOOD_MARK);
    let mut out = Vec::with_capacity(FLOOD_MESSAGES * (payload.len() + 6));
    for i in 0..FLOOD_MESSAGES {
        payload[96..].copy_from_slice(&(i as u32).to_be_bytes());
        out.extend(client_frame(OpCode::Binary, true, &payload));
    }
    out
}

/// The status of an HTTP response's first line (`HTTP/1.1 431 ...`), if it is one.
pub fn http_status(response: &[u8]) -> Option<u16> {
    let line = response.split(|&b| b == b'\r').next()?;
    let rest = line.strip_prefix(b"HTTP/1.1 ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || rest.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

const MASK: [u8; 4] = [0x5e, 0xa1, 0x07, 0x3c];

/// A masked client frame.
fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask: Some(MASK),
        payload_len: payload.len() as u64,
    }
    .encode();
    let mut frame = header.as_bytes().to_vec();
    let at = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[at..], MASK, 0);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_the_first_line_only() {
        assert_eq!(
            http_status(b"HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n"),
            Some(431)
        );
        assert_eq!(http_status(b"HTTP/1.1 400 Bad Request\r\n"), Some(400));
        assert_eq!(http_status(b"HTTP/1.1 101"), Some(101));
        assert_eq!(http_status(b"HTTP/1.1 4000 x"), None);
        assert_eq!(http_status(b"HTTP/1.0 400 x"), None);
        assert_eq!(http_status(b"\x88\x02\x03\xf1"), None);
        assert_eq!(http_status(b""), None);
    }

    #[test]
    fn every_kind_has_a_distinct_name_and_sends_what_it_says() {
        let names: std::collections::BTreeSet<_> = Abuse::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Abuse::ALL.len());
        let host = "127.0.0.1:9001";
        let big = Abuse::OversizedHandshake.payload(0, host, "/");
        assert!(big.len() > 16 * 1024 && big.ends_with(b"\r\n\r\n"));
        let many = Abuse::OversizedHandshake.payload(1, host, "/");
        assert!(many.len() < 8 * 1024);
        // 2^63 − 1 in the 64-bit length, masked, no payload.
        let huge = Abuse::HugeFrame.payload(0, host, "/");
        assert_eq!(huge.len(), 14);
        assert_eq!(
            &huge[1..10],
            &[0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        // The unmasked frame has no mask bit.
        assert_eq!(Abuse::Unmasked.payload(0, host, "/")[1] & 0x80, 0);
        // Half a frame: fewer bytes than its header announces.
        let half = Abuse::ResetMidFrame.payload(0, host, "/");
        assert_eq!(half.len(), 8 + 1024);
        // Small frames, each with its marker.
        let burst = Abuse::FloodReset.payload(0, host, "/");
        assert_eq!(burst.len(), FLOOD_MESSAGES * (6 + 100));
        assert_eq!(&burst[..2], &[0x82, 0x80 | 100]);
        let mut first = burst[6..106].to_vec();
        apply_mask(&mut first, MASK, 0);
        assert!(first.starts_with(FLOOD_MARK));
        let request = Abuse::Slowloris.payload(0, host, "/");
        assert!(request.starts_with(b"GET / HTTP/1.1\r\n"));
    }
}
