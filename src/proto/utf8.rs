//! The end of a text message: its payload as `&str` without validating twice.
//!
//! Text is validated while it arrives ([`valid_utf8_prefix`](super::message::valid_utf8_prefix)),
//! so at the end of a fragmented message most of it may be known valid already.
//! [`from_utf8_with_validated`] validates only the rest and then turns the whole payload
//! into `&str` with `from_utf8_unchecked`. This module and `buf/spare.rs` hold the
//! crate's only `unsafe` code; the tests below compare this one with
//! `std::str::from_utf8` on the whole payload.
#![allow(unsafe_code)]

use std::ops::Range;

/// `bytes` as a `&str`, validating every byte outside `validated`; `None` when they
/// are not valid UTF-8 (or `validated` is non-empty and not inside `bytes`).
///
/// The parts before and after `validated` are validated each on its own. That is right
/// because a non-empty range that is valid UTF-8 starts and ends where characters of
/// `bytes` do if `bytes` is valid at all. An empty range says nothing (it could sit
/// inside a character), so then the whole of `bytes` is validated.
///
/// # Safety
///
/// If `validated` is a non-empty range inside `bytes`, `bytes[validated]` must be valid
/// UTF-8 on its own: whole characters, no partial one at either end.
#[inline]
pub(crate) unsafe fn from_utf8_with_validated(
    bytes: &[u8],
    validated: Range<usize>,
) -> Option<&str> {
    if validated.is_empty() {
        return simdutf8::basic::from_utf8(bytes).ok();
    }
    let head = bytes.get(..validated.start)?;
    let tail = bytes.get(validated.end..)?;
    if simdutf8::basic::from_utf8(head).is_err() || simdutf8::basic::from_utf8(tail).is_err() {
        return None;
    }
    // SAFETY: `bytes` is `head`, then `bytes[validated]`, then `tail` (the range is in
    // bounds and ordered: both `get`s succeeded and start < end). `head` and `tail` were
    // just validated as whole strings, and the caller guarantees that `bytes[validated]`
    // is valid UTF-8 on its own. Valid UTF-8 strings joined end to end are valid UTF-8.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::valid_utf8_prefix;
    use proptest::prelude::*;

    /// Checks the fast path against `std::str::from_utf8` on the whole of `bytes`, for
    /// every range of `bytes` that is valid UTF-8 on its own (the only ranges the
    /// safety contract allows). Returns how many ranges were checked.
    fn agrees_with_std_for_every_valid_range(bytes: &[u8]) -> usize {
        let whole = std::str::from_utf8(bytes).ok();
        let mut checked = 0;
        for start in 0..=bytes.len() {
            for end in start..=bytes.len() {
                if std::str::from_utf8(&bytes[start..end]).is_err() {
                    continue;
                }
                // SAFETY: `bytes[start..end]` was just found to be valid UTF-8.
                let fast = unsafe { from_utf8_with_validated(bytes, start..end) };
                assert_eq!(fast, whole, "{bytes:x?} validated {start}..{end}");
                if let Some(fast) = fast {
                    assert_eq!(fast.as_ptr(), bytes.as_ptr(), "borrows the input");
                }
                checked += 1;
            }
        }
        checked
    }

    /// Valid text with characters of every width, and invalid forms placed at the start,
    /// the middle and the end of it.
    fn corpus() -> Vec<Vec<u8>> {
        let valid: &[&str] = &[
            "",
            "a",
            "é",
            "€",
            "𝄞",
            "κόσμε",
            "a€b𝄞cé",
            "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
            "Привет, 你好 🎉",
        ];
        let invalid: &[&[u8]] = &[
            b"\x80",                     // a stray continuation byte
            b"\xbf\xbf",                 // two
            b"\xc3",                     // a 2-byte character cut after its lead byte
            b"\xe2\x82",                 // a 3-byte character cut after 2 bytes
            b"\xf0\x9d\x84",             // a 4-byte character cut after 3 bytes
            b"\xc0\x80",                 // overlong NUL
            b"\xc1\xbf",                 // overlong 2-byte form
            b"\xe0\x80\xaf",             // overlong '/' in 3 bytes
            b"\xe0\x9f\xbf",             // overlong, just below U+0800
            b"\xf0\x80\x80\xaf",         // overlong '/' in 4 bytes
            b"\xf0\x8f\xbf\xbf",         // overlong, just below U+10000
            b"\xed\xa0\x80",             // U+D800, a surrogate
            b"\xed\xbf\xbf",             // U+DFFF
            b"\xed\xa0\xbd\xed\xb2\xa9", // a surrogate pair, CESU-8 style
            b"\xf4\x90\x80\x80",         // U+110000, above the last code point
            b"\xf5\x80\x80\x80",         // a lead byte that never occurs
            b"\xfe",
            b"\xff",
            b"\xc3\x28", // a lead byte followed by ASCII
            b"\xe2\x28\xa1",
        ];
        let mut corpus: Vec<Vec<u8>> = valid.iter().map(|s| s.as_bytes().to_vec()).collect();
        let around = "€a𝄞".as_bytes();
        for bad in invalid {
            corpus.push(bad.to_vec());
            corpus.push([bad, around].concat()); // at the start
            corpus.push([around, bad, around].concat()); // in the middle
            corpus.push([around, bad].concat()); // at the end
        }
        corpus
    }

    #[test]
    fn agrees_with_std_on_every_range_of_every_corpus_string() {
        let mut checked = 0;
        for bytes in corpus() {
            checked += agrees_with_std_for_every_valid_range(&bytes);
        }
        assert!(checked > 1000, "only {checked} ranges checked");
    }

    #[test]
    fn agrees_with_std_at_every_split_as_connection_validates() {
        // The connection validates the prefix that has arrived and trusts what
        // `valid_utf8_prefix` vouched for: here a prefix cut at every byte, and then a
        // second piece from there cut at every byte.
        for bytes in corpus() {
            let whole = std::str::from_utf8(&bytes).ok();
            for first in 0..=bytes.len() {
                let Ok(a) = valid_utf8_prefix(&bytes[..first]) else {
                    continue;
                };
                for second in a..=bytes.len() {
                    let Ok(b) = valid_utf8_prefix(&bytes[a..second]) else {
                        continue;
                    };
                    for validated in [0..a, a..a + b] {
                        // SAFETY: `valid_utf8_prefix` says both pieces are valid UTF-8
                        // ending at a character boundary, and each starts at one (0, or
                        // where the previous piece ended).
                        let fast = unsafe { from_utf8_with_validated(&bytes, validated) };
                        assert_eq!(fast, whole, "{bytes:x?} cut at {first} and {second}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_range_validates_everything_and_one_past_the_end_is_refused() {
        // SAFETY: the ranges are empty or not inside the bytes: the contract asks nothing.
        unsafe {
            assert_eq!(from_utf8_with_validated(b"abc", 4..4), Some("abc"));
            let reversed = Range { start: 2, end: 1 };
            assert_eq!(from_utf8_with_validated(b"abc", reversed), Some("abc"));
            assert_eq!(from_utf8_with_validated(b"\xc3\xa9", 1..1), Some("é"));
            assert_eq!(from_utf8_with_validated(b"a\xff", 2..2), None);
            assert_eq!(from_utf8_with_validated(b"abc", 1..4), None);
        }
    }

    /// Byte strings likely to hold long valid runs: random text with a few bytes
    /// changed, or random bytes.
    fn mostly_text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (
                any::<String>(),
                proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
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
                }),
            proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

        #[test]
        fn agrees_with_std_on_random_bytes_and_splits(
            bytes in mostly_text(),
            a in any::<prop::sample::Index>(),
            b in any::<prop::sample::Index>(),
        ) {
            let (a, b) = (a.index(bytes.len() + 1), b.index(bytes.len() + 1));
            let (start, end) = (a.min(b), a.max(b));
            // The longest valid run from `start` within the range, as the connection
            // would have validated it.
            if let Ok(n) = valid_utf8_prefix(&bytes[start..end]) {
                // SAFETY: `valid_utf8_prefix` vouches for `bytes[start..start + n]`, and a
                // range it accepts starts at a character boundary (else it fails).
                let fast = unsafe { from_utf8_with_validated(&bytes, start..start + n) };
                prop_assert_eq!(fast, std::str::from_utf8(&bytes).ok());
            }
        }
    }
}
