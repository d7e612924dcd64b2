//! Messages that say whose they are: every payload starts with an ASCII header
//! naming its source, the tag of the connection it is for, a sequence number and
//! its length, and the rest is a filler derived from (tag, seq). A message that
//! reaches the wrong connection, arrives twice, out of order or corrupted is seen.
#![allow(dead_code)]

use std::sync::OnceLock;

/// `{source}{kind}{tag:08x}{seq:08x}{len:08x}|`
pub const HEADER: usize = 27;
/// The longest payload [`encode`] makes.
pub const MAX_LEN: usize = 64 * 1024;
/// The tag of broadcasts, which are for everybody (connection tags start at 1).
pub const EVERYBODY: u32 = 0;

/// Who sent a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A handler callback, through `Socket::send`.
    Callback,
    /// Another thread, through `Sender::send`.
    Sender,
    /// Another thread, through `Sender::broadcast`.
    Broadcast,
}

impl Source {
    fn letter(self) -> u8 {
        match self {
            Source::Callback => b'c',
            Source::Sender => b's',
            Source::Broadcast => b'b',
        }
    }

    fn from_letter(letter: u8) -> Option<Source> {
        match letter {
            b'c' => Some(Source::Callback),
            b's' => Some(Source::Sender),
            b'b' => Some(Source::Broadcast),
            _ => None,
        }
    }
}

/// What a received message said about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tagged {
    pub source: Source,
    pub tag: u32,
    pub seq: u32,
}

/// ASCII letters with a period of 4096 + 26, so that a filler taken at one offset
/// differs from one taken at another.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..MAX_LEN + 4096)
            .map(|i| b'a' + ((i + i / 4096) % 26) as u8)
            .collect()
    })
}

fn filler(tag: u32, seq: u32, len: usize) -> &'static [u8] {
    let offset = (tag as usize * 977 + seq as usize * 131) % 4096;
    &pattern()[offset..offset + len]
}

/// A payload of `len` bytes (at least [`HEADER`], at most [`MAX_LEN`]); ASCII, so it
/// can be sent as text or binary.
pub fn encode(source: Source, text: bool, tag: u32, seq: u32, len: usize) -> Vec<u8> {
    let len = len.clamp(HEADER, MAX_LEN);
    let kind = if text { 't' } else { 'b' };
    let mut payload = format!(
        "{}{kind}{tag:08x}{seq:08x}{len:08x}|",
        char::from(source.letter())
    )
    .into_bytes();
    debug_assert_eq!(payload.len(), HEADER);
    payload.extend_from_slice(filler(tag, seq, len - HEADER));
    payload
}

/// Checks a received payload against what its header says; `text` is whether it
/// came in a text message.
pub fn decode(payload: &[u8], text: bool) -> Result<Tagged, String> {
    let shown = || String::from_utf8_lossy(&payload[..payload.len().min(40)]).into_owned();
    if payload.len() < HEADER || payload[HEADER - 1] != b'|' {
        return Err(format!(
            "a {}-byte message with no header: {:?}",
            payload.len(),
            shown()
        ));
    }
    let hex = |at: usize| {
        std::str::from_utf8(&payload[at..at + 8])
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    let (Some(source), Some(tag), Some(seq), Some(len)) =
        (Source::from_letter(payload[0]), hex(2), hex(10), hex(18))
    else {
        return Err(format!("a bad header: {:?}", shown()));
    };
    let kind = if text { b't' } else { b'b' };
    if payload[1] != kind || len as usize != payload.len() {
        return Err(format!(
            "a {}-byte {} message whose header says {:?}",
            payload.len(),
            if text { "text" } else { "binary" },
            shown()
        ));
    }
    if payload[HEADER..] != *filler(tag, seq, payload.len() - HEADER) {
        return Err(format!("a corrupted body behind the header {:?}", shown()));
    }
    Ok(Tagged { source, tag, seq })
}
