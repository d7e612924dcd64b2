//! Plain reference implementations, written from RFC 6455 and wsreactor's docs, that the
//! targets compare the crate against. They favour being obviously right over being fast.

/// A frame header as the reference reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Length of the header in bytes.
    pub len: usize,
}

/// Why the reference refuses a header; all of them fail the connection with 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    ReservedOpCode,
    ReservedBits,
    Unmasked,
    Masked,
    FragmentedControl,
    ControlTooLong,
    LengthOverflow,
}

/// Reads a frame header received by a server (`server`) or a client.
///
/// The order of the checks is the one wsreactor documents by its errors: everything that the
/// first two bytes decide is reported as soon as they are there; a header that is valid so
/// far but cut short is `Ok(None)`.
pub fn parse_header(
    buf: &[u8],
    server: bool,
    allowed_rsv: u8,
) -> Result<Option<Header>, HeaderError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] >> 7 == 1;
    let rsv = (buf[0] >> 4) & 7;
    let opcode = buf[0] & 15;
    if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
        return Err(HeaderError::ReservedOpCode);
    }
    if rsv & !allowed_rsv != 0 {
        return Err(HeaderError::ReservedBits);
    }
    let masked = buf[1] >> 7 == 1;
    if server && !masked {
        return Err(HeaderError::Unmasked);
    }
    if !server && masked {
        return Err(HeaderError::Masked);
    }
    let len7 = buf[1] & 127;
    if opcode >= 8 && !fin {
        return Err(HeaderError::FragmentedControl);
    }
    if opcode >= 8 && len7 > 125 {
        return Err(HeaderError::ControlTooLong);
    }
    let extra = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    if buf.len() < 2 + extra {
        return Ok(None);
    }
    let mut payload_len = u64::from(len7);
    if extra > 0 {
        payload_len = 0;
        for &b in &buf[2..2 + extra] {
            payload_len = payload_len * 256 + u64::from(b);
        }
    }
    if payload_len >= 1 << 63 {
        return Err(HeaderError::LengthOverflow);
    }
    let mut len = 2 + extra;
    let mask = if masked {
        if buf.len() < len + 4 {
            return Ok(None);
        }
        let key = [buf[len], buf[len + 1], buf[len + 2], buf[len + 3]];
        len += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        rsv,
        opcode,
        mask,
        payload_len,
        len,
    }))
}

/// Whether a header uses the shortest length form, which is what an encoder must write.
pub fn is_minimal(h: &Header) -> bool {
    let extra = h.len - 2 - if h.mask.is_some() { 4 } else { 0 };
    match extra {
        0 => true,
        2 => h.payload_len >= 126,
        _ => h.payload_len > 0xffff,
    }
}

/// XOR with the key, payload byte `i` with `key[(offset + i) % 4]`, one byte at a time.
pub fn unmask(bytes: &[u8], key: Option<[u8; 4]>, offset: usize) -> Vec<u8> {
    match key {
        None => bytes.to_vec(),
        Some(key) => bytes
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[(offset + i) % 4])
            .collect(),
    }
}

/// Close codes that may appear on the wire (RFC 6455 §7.4, and the IANA registry).
pub fn is_sendable_code(code: u16) -> bool {
    (1000..=1003).contains(&code) || (1007..=1014).contains(&code) || (3000..=4999).contains(&code)
}

/// Whether `bytes` can still become valid UTF-8 once more bytes follow.
pub fn is_utf8_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// Whether a `Sec-WebSocket-Key` is the canonical base64 of 16 bytes: 22 characters, of which
/// the last carries only 2 bits (so it is one of `AQgw`), and `==`.
pub fn is_valid_key(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    key.len() == 24
        && key[..21].iter().all(|b| ALPHABET.contains(b))
        && b"AQgw".contains(&key[21])
        && &key[22..] == b"=="
}

/// Whether a comma-separated header value lists `token` (case-insensitive, HTTP whitespace
/// around items ignored).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
}

/// Trims HTTP's optional whitespace: spaces and tabs.
pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Parses frames written by an endpoint (its whole output so far) as its peer would:
/// every frame complete and valid, masked exactly when a client wrote it. Returns
/// (opcode, fin, unmasked payload) for each.
pub fn parse_output(mut out: &[u8], written_by_client: bool) -> Vec<(u8, bool, Vec<u8>)> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        let h = match parse_header(out, written_by_client, 0) {
            Ok(Some(h)) => h,
            other => panic!("invalid frame in the output: {other:?} at {out:02x?}"),
        };
        let end = h.len + usize::try_from(h.payload_len).expect("payload length fits usize");
        assert!(end <= out.len(), "truncated frame in the output");
        frames.push((h.opcode, h.fin, unmask(&out[h.len..end], h.mask, 0)));
        out = &out[end..];
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZR=="));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
    }

    #[test]
    fn rfc_example_header() {
        let h = parse_header(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d], true, 0)
            .unwrap()
            .unwrap();
        assert_eq!((h.opcode, h.payload_len, h.len), (1, 5, 6));
        assert_eq!(
            unmask(&[0x7f, 0x9f, 0x4d, 0x51, 0x58], h.mask, 0),
            b"Hello".to_vec()
        );
    }
}
