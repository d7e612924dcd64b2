//! In-place XOR masking of frame payloads (RFC 6455 §5.3).
//!
//! A client masks every frame it sends with a 4-byte key; the server unmasks in
//! place, in the read buffer, so a payload is never copied to be unmasked. A payload
//! may arrive in several reads, so both functions take the payload offset at which
//! `buf` starts: the key byte for payload byte `i` is `key[i % 4]`.
//!
//! [`apply_mask`] works eight bytes at a time on plain `u64` loads and stores, which
//! LLVM turns into vector instructions; it needs no `unsafe`. [`apply_mask_plain`] is
//! the byte loop it is tested against.

/// XORs `buf` in place with `key`, as payload bytes starting at payload offset `offset`.
///
/// Masking and unmasking are the same operation. This is the fast path: it handles
/// eight bytes per step and finishes the tail byte by byte.
///
/// # Examples
///
/// ```
/// use wsreactor::proto::mask::apply_mask;
///
/// let key = [1, 2, 3, 4];
/// let mut payload = *b"Hello, world";
/// apply_mask(&mut payload, key, 0);
/// // A payload split across two reads unmasks the same way in two steps.
/// let (a, b) = payload.split_at_mut(5);
/// apply_mask(a, key, 0);
/// apply_mask(b, key, 5);
/// assert_eq!(&payload, b"Hello, world");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let value = u64::from_ne_bytes(bytes) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    // Every chunk is a multiple of 4 bytes long, so the tail starts at key index 0.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The plain byte-at-a-time version of [`apply_mask`], kept as its reference.
pub fn apply_mask_plain(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset + i) & 3];
    }
}

/// The key as seen from payload offset `offset`: byte 0 of the result masks `buf[0]`.
#[inline]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    // As a little-endian word, moving byte `n` to the front is a right rotation.
    u32::from_le_bytes(key)
        .rotate_right(8 * (offset & 3) as u32)
        .to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    #[test]
    fn fast_path_matches_plain_for_every_length_offset_and_alignment() {
        let key = [0x9a, 0x01, 0xfe, 0x37];
        for len in 0..=257 {
            for offset in 0..=3 {
                // Start at every alignment within a 16-byte window of a larger buffer.
                for start in 0..16 {
                    let mut fast = pattern(start + len + 3);
                    let mut plain = fast.clone();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    apply_mask_plain(&mut plain[start..start + len], key, offset);
                    assert_eq!(fast, plain, "len {len} offset {offset} start {start}");
                }
            }
        }
    }

    #[test]
    fn masking_twice_restores_the_payload() {
        let original = pattern(1000);
        let mut buf = original.clone();
        apply_mask(&mut buf, [1, 2, 3, 4], 2);
        assert_ne!(buf, original);
        apply_mask(&mut buf, [1, 2, 3, 4], 2);
        assert_eq!(buf, original);
    }

    #[test]
    fn split_payload_unmasks_like_a_whole_one() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let original = pattern(300);
        let mut whole = original.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..=original.len() {
            let mut parts = original.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(parts, whole, "split at {split}");
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut masked = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut masked, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&masked, b"Hello");
    }
}
