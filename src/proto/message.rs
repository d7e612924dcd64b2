//! Messages: what the connection delivers, and incremental UTF-8 validation.
//!
//! A message is delivered as a slice of the buffer it arrived in. The assembly of
//! fragments happens in place in that buffer (see [`crate::proto::conn`]); this module
//! holds the message type and the rule for validating text while it still arrives.

/// A complete message, borrowing the buffer it arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message, validated as UTF-8.
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }
}

/// Validates the prefix of a text message that has arrived so far.
///
/// Returns the length of the longest prefix made of complete, valid characters: the
/// bytes after it (at most 3) are the start of a character that the next bytes may
/// still complete. Fails as soon as the bytes seen so far cannot begin valid UTF-8,
/// which is as early as any validator can know (Autobahn 6.4.x calls waiting for the
/// end of the frame "non-strict").
///
/// # Errors
///
/// `Err(())` when `bytes` cannot be the beginning of valid UTF-8.
#[inline]
#[allow(clippy::result_unit_err)]
pub fn valid_utf8_prefix(bytes: &[u8]) -> Result<usize, ()> {
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => Ok(bytes.len()),
        // `error_len() == None` means the input ended inside a character whose bytes
        // so far are a valid beginning; any other error is final.
        Err(e) if e.error_len().is_none() => Ok(e.valid_up_to()),
        Err(_) => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: std's validator, whose `error_len` makes the same distinction.
    fn std_prefix(bytes: &[u8]) -> Result<usize, ()> {
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(bytes.len()),
            Err(e) if e.error_len().is_none() => Ok(e.valid_up_to()),
            Err(_) => Err(()),
        }
    }

    #[test]
    fn agrees_with_std_on_every_two_byte_input() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                assert_eq!(
                    valid_utf8_prefix(&[a, b]),
                    std_prefix(&[a, b]),
                    "{a:#x} {b:#x}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_std_on_three_byte_inputs_after_a_lead_byte() {
        for a in 0xc0..=0xffu8 {
            for b in 0..=255u8 {
                for c in [
                    0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xe0, 0xf0, 0xff,
                ] {
                    let bytes = [a, b, c];
                    assert_eq!(valid_utf8_prefix(&bytes), std_prefix(&bytes), "{bytes:x?}");
                }
            }
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefixes() {
        // Autobahn 6.4.1 sends U+110000 encoded as f4 90 80 80: invalid from the second byte.
        assert_eq!(
            valid_utf8_prefix(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90"),
            Err(())
        );
        // A surrogate, an overlong form and a stray continuation byte.
        assert_eq!(valid_utf8_prefix(b"ab\xed\xa0"), Err(()));
        assert_eq!(valid_utf8_prefix(b"\xe0\x80"), Err(()));
        assert_eq!(valid_utf8_prefix(b"\x80"), Err(()));
        // A valid beginning waits for more.
        assert_eq!(valid_utf8_prefix(b"ab\xf0\x9f\x98"), Ok(2));
        assert_eq!(valid_utf8_prefix(b"ab\xf0\x9f\x98\x80"), Ok(6));
    }

    #[test]
    fn message_accessors() {
        let m = Message::Text("hé");
        assert_eq!((m.len(), m.is_text(), m.is_empty()), (3, true, false));
        assert_eq!(Message::Binary(&[]).as_bytes(), &[] as &[u8]);
    }
}
