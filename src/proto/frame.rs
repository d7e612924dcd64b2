//! Frame headers (RFC 6455 §5.2): parsing in place and encoding, for both roles.
//!
//! ```text
//!  0               1               2               3
//!  F R R R opcode  M len7          len16 / len64 (big endian) ...  mask key (4)
//! ```
//!
//! [`FrameHeader::parse`] reads only the header; it never touches the payload. Too
//! little input is not an error: it returns `Ok(None)` and consumes nothing.

use std::fmt;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// RSV1, as a bit of [`FrameHeader::rsv`] (used by permessage-deflate).
pub const RSV1: u8 = 0b100;
/// RSV2, as a bit of [`FrameHeader::rsv`].
pub const RSV2: u8 = 0b010;
/// RSV3, as a bit of [`FrameHeader::rsv`].
pub const RSV3: u8 = 0b001;

/// A frame's opcode. The reserved opcodes (3–7, 11–15) have no variant: parsing them
/// is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation = 0x0,
    /// 0x1: the first frame of a text message.
    Text = 0x1,
    /// 0x2: the first frame of a binary message.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for the low four bits of a frame's first byte, or `None` if reserved.
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Which end of the connection we are. It decides which frames must be masked:
/// a server receives masked frames and sends unmasked ones; a client the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The accepting end.
    Server,
    /// The connecting end.
    Client,
}

/// A frame header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final frame of its message.
    pub fin: bool,
    /// The three RSV bits as the low bits of a byte: RSV1 is `0b100` ([`RSV1`]).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present exactly when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// Why a frame header is invalid. Every one of these is the peer's fault and fails
/// the connection with close code 1002 (protocol error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// An opcode reserved by RFC 6455 (3–7, 11–15).
    ReservedOpCode(u8),
    /// An RSV bit that no negotiated extension gives a meaning to.
    ReservedBits(u8),
    /// A control frame without FIN: control frames cannot be fragmented.
    FragmentedControl,
    /// A control frame whose payload is longer than 125 bytes.
    ControlTooLong,
    /// A 64-bit length with its most significant bit set.
    LengthOverflow,
    /// A server received a frame that the client did not mask.
    Unmasked,
    /// A client received a frame that the server masked.
    Masked,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedOpCode(op) => write!(f, "reserved opcode {op:#x}"),
            FrameError::ReservedBits(bits) => write!(f, "reserved bits {bits:#05b} set"),
            FrameError::FragmentedControl => f.write_str("fragmented control frame"),
            FrameError::ControlTooLong => f.write_str("control frame payload over 125 bytes"),
            FrameError::LengthOverflow => f.write_str("64-bit payload length with the top bit set"),
            FrameError::Unmasked => f.write_str("client frame not masked"),
            FrameError::Masked => f.write_str("server frame masked"),
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameHeader {
    /// The header of a frame this endpoint sends: no RSV bits, masked with `mask` in
    /// the client role (`None` in the server role). Every frame the crate writes gets
    /// its header here.
    pub fn outgoing(opcode: OpCode, fin: bool, payload_len: usize, mask: Option<[u8; 4]>) -> Self {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: payload_len as u64,
        }
    }

    /// Parses a header from the start of `buf`, received by an endpoint of `role`.
    ///
    /// `allowed_rsv` holds the RSV bits that a negotiated extension permits (0 when
    /// none was negotiated). Returns `Ok(None)` when `buf` holds less than a whole
    /// header, and otherwise the header and its length in bytes.
    ///
    /// # Errors
    ///
    /// A [`FrameError`] when the header breaks RFC 6455; the connection must then be
    /// failed with 1002.
    #[inline]
    pub fn parse(
        buf: &[u8],
        role: Role,
        allowed_rsv: u8,
    ) -> Result<Option<(FrameHeader, usize)>, FrameError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x7;
        let opcode = OpCode::from_bits(b0 & 0x0f).ok_or(FrameError::ReservedOpCode(b0 & 0x0f))?;
        if rsv & !allowed_rsv != 0 {
            return Err(FrameError::ReservedBits(rsv & !allowed_rsv));
        }
        let masked = b1 & 0x80 != 0;
        match (role, masked) {
            (Role::Server, false) => return Err(FrameError::Unmasked),
            (Role::Client, true) => return Err(FrameError::Masked),
            _ => {}
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::FragmentedControl);
            }
            if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                return Err(FrameError::ControlTooLong);
            }
        }
        let (payload_len, mut at) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(FrameError::LengthOverflow);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            match buf.get(at..at + 4) {
                Some(k) => {
                    at += 4;
                    Some([k[0], k[1], k[2], k[3]])
                }
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            at,
        )))
    }

    /// The number of bytes [`encode`](Self::encode) writes for this header.
    pub fn encoded_len(&self) -> usize {
        header_len(self.payload_len, self.mask.is_some())
    }

    /// Encodes the header. Lengths use the shortest form, as RFC 6455 requires.
    pub fn encode(&self) -> EncodedHeader {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x7) << 4) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut at = match self.payload_len {
            n @ 0..=125 => {
                bytes[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                bytes[1] = mask_bit | 126;
                bytes[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                bytes[1] = mask_bit | 127;
                bytes[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            bytes[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        EncodedHeader {
            bytes,
            len: at as u8,
        }
    }
}

/// The length of a header for a payload of `payload_len` bytes.
pub fn header_len(payload_len: u64, masked: bool) -> usize {
    let base = match payload_len {
        0..=125 => 2,
        126..=0xffff => 4,
        _ => 10,
    };
    base + if masked { 4 } else { 0 }
}

/// An encoded frame header, held inline (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl EncodedHeader {
    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for EncodedHeader {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, fin: bool, len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn encode_then_parse_round_trips_at_every_length_boundary() {
        let lens = [
            0,
            1,
            125,
            126,
            127,
            0xffff,
            0x1_0000,
            u32::MAX as u64 + 7,
            (1 << 63) - 1,
        ];
        for &len in &lens {
            for (role, mask) in [(Role::Client, None), (Role::Server, Some([9, 8, 7, 6]))] {
                let h = header(OpCode::Binary, true, len, mask);
                let enc = h.encode();
                assert_eq!(enc.as_bytes().len(), h.encoded_len());
                let (parsed, used) = FrameHeader::parse(enc.as_bytes(), role, 0)
                    .unwrap()
                    .unwrap();
                assert_eq!(parsed, h);
                assert_eq!(used, enc.as_bytes().len());
            }
        }
    }

    #[test]
    fn every_strict_prefix_is_partial() {
        let h = header(OpCode::Text, false, 70_000, Some([1, 2, 3, 4]));
        let enc = h.encode();
        for cut in 0..enc.as_bytes().len() {
            assert_eq!(
                FrameHeader::parse(&enc.as_bytes()[..cut], Role::Server, 0),
                Ok(None)
            );
        }
    }

    #[test]
    fn rfc_examples_parse() {
        // RFC 6455 §5.7: unmasked "Hello" from a server, and a masked one from a client.
        let (h, n) = FrameHeader::parse(&[0x81, 0x05, b'H'], Role::Client, 0)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.fin, h.opcode, h.payload_len, h.mask, n),
            (true, OpCode::Text, 5, None, 2)
        );
        let (h, n) = FrameHeader::parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d], Role::Server, 0)
            .unwrap()
            .unwrap();
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        // A 256-byte binary frame uses the 16-bit length.
        let (h, n) = FrameHeader::parse(&[0x82, 0x7e, 0x01, 0x00], Role::Client, 0)
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (256, 4));
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in (3..=7).chain(11..=15) {
            let r = FrameHeader::parse(&[0x80 | op, 0x80, 0, 0, 0, 0], Role::Server, 0);
            assert_eq!(r, Err(FrameError::ReservedOpCode(op)));
        }
    }

    #[test]
    fn rsv_bits_need_an_extension() {
        for rsv in 1..=7u8 {
            let b0 = 0x80 | (rsv << 4) | 0x1;
            let r = FrameHeader::parse(&[b0, 0x80, 0, 0, 0, 0], Role::Server, 0);
            assert_eq!(r, Err(FrameError::ReservedBits(rsv)));
        }
        let (h, _) = FrameHeader::parse(&[0xc1, 0x80, 0, 0, 0, 0], Role::Server, RSV1)
            .unwrap()
            .unwrap();
        assert_eq!(h.rsv, RSV1);
        let r = FrameHeader::parse(&[0xe1, 0x80, 0, 0, 0, 0], Role::Server, RSV1);
        assert_eq!(r, Err(FrameError::ReservedBits(RSV2)));
    }

    #[test]
    fn control_frames_must_be_final_and_short() {
        for op in [0x8, 0x9, 0xA] {
            assert_eq!(
                FrameHeader::parse(&[op, 0x80], Role::Server, 0),
                Err(FrameError::FragmentedControl)
            );
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0x80 | 126, 0, 126], Role::Server, 0),
                Err(FrameError::ControlTooLong)
            );
            assert!(
                FrameHeader::parse(&[0x80 | op, 0x80 | 125, 1, 2, 3, 4], Role::Server, 0).is_ok()
            );
        }
    }

    #[test]
    fn masking_must_match_the_role() {
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x00], Role::Server, 0),
            Err(FrameError::Unmasked)
        );
        assert_eq!(
            FrameHeader::parse(&[0x81, 0x80, 1, 2, 3, 4], Role::Client, 0),
            Err(FrameError::Masked)
        );
    }

    #[test]
    fn top_bit_of_64_bit_length_is_rejected() {
        let mut b = vec![0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(
            FrameHeader::parse(&b, Role::Server, 0),
            Err(FrameError::LengthOverflow)
        );
        b[2] = 0x7f;
        let (h, _) = FrameHeader::parse(&b, Role::Server, 0).unwrap().unwrap();
        assert_eq!(h.payload_len, 0x7f << 56);
    }

    #[test]
    fn every_two_byte_prefix_either_parses_waits_or_errors_without_panicking() {
        for b0 in 0..=255u8 {
            for b1 in 0..=255u8 {
                let buf = [b0, b1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
                for role in [Role::Server, Role::Client] {
                    if let Ok(Some((h, n))) = FrameHeader::parse(&buf, role, RSV1 | RSV2 | RSV3) {
                        // Non-minimal lengths are accepted; only minimal ones re-encode alike.
                        if h.encoded_len() == n {
                            assert_eq!(h.encode().as_bytes(), &buf[..n]);
                        }
                    }
                }
            }
        }
    }
}
