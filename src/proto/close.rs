//! Close frames (RFC 6455 §5.5.1, §7.4): codes, payload validation, handshake states.

use std::fmt;

/// A close status code.
///
/// The associated constants name the codes RFC 6455 §7.4.1 defines. Any `u16` can be
/// held; [`CloseCode::is_sendable`] tells whether one may appear on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (text that is not UTF-8).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy (for example backpressure).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message or frame is too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition (an internal error).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: the TLS handshake failed. Never sent on the wire.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Valid: 1000–1003, 1007–1014 (registered by RFC 6455 and IANA), and 3000–4999
    /// (libraries, frameworks and applications). Everything else, including the
    /// reserved 1004, 1005, 1006 and 1015, is a protocol error.
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A validated close frame payload, borrowing its reason from the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseFrame<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason: UTF-8, at most 123 bytes.
    pub reason: &'a str,
}

/// Parses and validates a close frame's (unmasked) payload.
///
/// An empty payload is valid and carries no code (`Ok(None)`; report it as 1005).
///
/// # Errors
///
/// The close code to fail the connection with: 1002 for a 1-byte payload or a code
/// that may not be sent ([`CloseCode::is_sendable`]), 1007 for a reason that is not
/// UTF-8.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame<'_>>, CloseCode> {
    match payload {
        [] => Ok(None),
        [_] => Err(CloseCode::PROTOCOL_ERROR),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(CloseCode::PROTOCOL_ERROR);
            }
            let reason =
                simdutf8::basic::from_utf8(reason).map_err(|_| CloseCode::INVALID_PAYLOAD)?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

/// The longest close reason that fits a control frame beside its 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// Writes a close payload (code and reason) into `out`, returning its length.
///
/// The reason is cut to [`MAX_REASON_LEN`] bytes at a character boundary, so the
/// frame stays a valid control frame.
pub fn encode_close_payload(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    2 + end
}

/// Where a connection stands in the close handshake (RFC 6455 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseState {
    /// No close frame sent or received: data flows both ways.
    Open,
    /// We sent a close frame and wait for the peer's. Incoming data is still
    /// delivered; nothing more may be sent.
    SentClose,
    /// Both close frames have crossed, or the connection was failed: the transport
    /// should be closed.
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_classified_as_rfc_6455_says() {
        for code in 0..=u16::MAX {
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(code).is_sendable(), valid, "code {code}");
            let payload = code.to_be_bytes();
            let parsed = parse_close_payload(&payload);
            if valid {
                assert_eq!(
                    parsed,
                    Ok(Some(CloseFrame {
                        code: CloseCode(code),
                        reason: ""
                    }))
                );
            } else {
                assert_eq!(parsed, Err(CloseCode::PROTOCOL_ERROR), "code {code}");
            }
        }
    }

    #[test]
    fn the_reserved_codes_are_invalid() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(code).is_sendable(), "{code}");
        }
    }

    #[test]
    fn empty_one_byte_and_reason_payloads() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
        assert_eq!(parse_close_payload(&[0x03]), Err(CloseCode::PROTOCOL_ERROR));
        let ok = [0x03, 0xe8, b'b', b'y', b'e'];
        assert_eq!(
            parse_close_payload(&ok),
            Ok(Some(CloseFrame {
                code: CloseCode::NORMAL,
                reason: "bye"
            }))
        );
        let bad_utf8 = [
            0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xed, 0xa0, 0x80,
        ];
        assert_eq!(
            parse_close_payload(&bad_utf8),
            Err(CloseCode::INVALID_PAYLOAD)
        );
    }

    #[test]
    fn encoded_reasons_are_cut_at_a_char_boundary() {
        let mut out = [0u8; 125];
        let reason = "é".repeat(100); // 200 bytes
        let n = encode_close_payload(CloseCode::GOING_AWAY, &reason, &mut out);
        assert!(n <= 125);
        let parsed = parse_close_payload(&out[..n]).unwrap().unwrap();
        assert_eq!(parsed.code, CloseCode::GOING_AWAY);
        assert_eq!(parsed.reason.len(), 122);
        let n = encode_close_payload(CloseCode::NORMAL, "ok", &mut out);
        assert_eq!(&out[..n], &[0x03, 0xe8, b'o', b'k']);
    }
}
