//! `frame_header`: `FrameHeader::parse` against the reference, encode round trips, and the
//! fast unmasking path against the plain one.
//!
//! Input: byte 0 picks the role (bit 0: client), the RSV bits an extension allows (bits
//! 1–3) and a payload offset for masking (bits 4–5); the rest is the received bytes.

use wsreactor::proto::frame::{FrameError, FrameHeader, MAX_HEADER_LEN, OpCode, Role, header_len};
use wsreactor::proto::mask::{apply_mask, apply_mask_plain};

use crate::reference::{self, HeaderError};

pub fn frame_header(data: &[u8]) {
    let Some((&config, buf)) = data.split_first() else {
        return;
    };
    let client = config & 1 == 1;
    let role = if client { Role::Client } else { Role::Server };
    let allowed_rsv = (config >> 1) & 7;
    let offset = usize::from((config >> 4) & 3);

    let parsed = FrameHeader::parse(buf, role, allowed_rsv);
    let expected = reference::parse_header(buf, !client, allowed_rsv);
    match (parsed, expected) {
        (Ok(None), Ok(None)) => assert!(buf.len() < MAX_HEADER_LEN),
        (Err(e), Err(r)) => assert_eq!(error_kind(e), r, "{buf:02x?}"),
        (Ok(Some((h, n))), Ok(Some(r))) => {
            check_parsed(buf, role, allowed_rsv, h, n, r);
            check_unmask(
                &buf[n..],
                h.mask.unwrap_or([0x5a, 0x0f, 0xf0, 0xa5]),
                offset,
            );
        }
        (parsed, expected) => panic!("parse {parsed:?}, reference {expected:?} for {buf:02x?}"),
    }
    check_encode_any(buf, role);
}

fn error_kind(e: FrameError) -> HeaderError {
    match e {
        FrameError::ReservedOpCode(_) => HeaderError::ReservedOpCode,
        FrameError::ReservedBits(_) => HeaderError::ReservedBits,
        FrameError::FragmentedControl => HeaderError::FragmentedControl,
        FrameError::ControlTooLong => HeaderError::ControlTooLong,
        FrameError::LengthOverflow => HeaderError::LengthOverflow,
        FrameError::Unmasked => HeaderError::Unmasked,
        FrameError::Masked => HeaderError::Masked,
        other => panic!("a FrameError the reference does not know: {other:?}"),
    }
}

fn check_parsed(
    buf: &[u8],
    role: Role,
    allowed_rsv: u8,
    h: FrameHeader,
    n: usize,
    r: reference::Header,
) {
    assert_eq!(
        (h.fin, h.rsv, h.opcode as u8, h.mask, h.payload_len, n),
        (r.fin, r.rsv, r.opcode, r.mask, r.payload_len, r.len),
        "{buf:02x?}"
    );
    // Too little input is not an error: every strict prefix of a header waits for more.
    for cut in 0..n {
        assert_eq!(FrameHeader::parse(&buf[..cut], role, allowed_rsv), Ok(None));
    }
    // Encoding writes the shortest form, which parses back to the same header; a header
    // that was already in the shortest form encodes to the very bytes it came from.
    let encoded = h.encode();
    assert_eq!(encoded.as_bytes().len(), h.encoded_len());
    assert_eq!(h.encoded_len(), header_len(h.payload_len, h.mask.is_some()));
    assert!(h.encoded_len() <= n);
    assert_eq!(
        FrameHeader::parse(encoded.as_bytes(), role, allowed_rsv),
        Ok(Some((h, h.encoded_len())))
    );
    if reference::is_minimal(&r) {
        assert_eq!(encoded.as_bytes(), &buf[..n]);
    }
}

/// The word-at-a-time unmasking agrees with the byte loop, whole and split in two.
fn check_unmask(payload: &[u8], key: [u8; 4], offset: usize) {
    let mut fast = payload.to_vec();
    apply_mask(&mut fast, key, offset);
    let mut plain = payload.to_vec();
    apply_mask_plain(&mut plain, key, offset);
    assert_eq!(fast, plain);
    assert_eq!(plain, reference::unmask(payload, Some(key), offset));
    // Split where the payload's own first byte says: the second part starts at its offset.
    let cut = payload
        .first()
        .map_or(0, |&b| usize::from(b) % (payload.len() + 1));
    let mut split = payload.to_vec();
    let (a, b) = split.split_at_mut(cut);
    apply_mask(a, key, offset);
    apply_mask(b, key, offset + cut);
    assert_eq!(split, plain);
    // Masking twice is the identity.
    apply_mask(&mut fast, key, offset);
    assert_eq!(fast, payload);
}

/// Any header the encoder can be given (valid opcode, length under 2^63) parses back, in
/// the role that receives it, unless it breaks a rule for control frames.
fn check_encode_any(buf: &[u8], receiver: Role) {
    let Some(bytes) = buf.get(..MAX_HEADER_LEN) else {
        return;
    };
    let opcode = match OpCode::from_bits(bytes[0] & 15) {
        Some(op) => op,
        None => OpCode::Binary,
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[2..10]);
    // Spread the lengths over all three forms: the top byte picks how many bits to keep.
    let bits = u32::from(bytes[1]) % 64;
    let payload_len = u64::from_be_bytes(len) & ((1u64 << bits) - 1);
    let header = FrameHeader {
        fin: bytes[0] & 0x80 != 0,
        rsv: (bytes[0] >> 4) & 7,
        opcode,
        mask: (receiver == Role::Server).then(|| [bytes[10], bytes[11], bytes[12], bytes[13]]),
        payload_len,
    };
    let encoded = header.encode();
    assert_eq!(encoded.as_bytes().len(), header.encoded_len());
    let parsed = FrameHeader::parse(encoded.as_bytes(), receiver, 7);
    if opcode.is_control() && !header.fin {
        assert_eq!(parsed, Err(FrameError::FragmentedControl));
    } else if opcode.is_control() && payload_len > 125 {
        assert_eq!(parsed, Err(FrameError::ControlTooLong));
    } else {
        assert_eq!(parsed, Ok(Some((header, header.encoded_len()))));
    }
}
