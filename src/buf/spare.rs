//! Reading from a socket into a vector's spare capacity, without initialising it
//! first: the one `unsafe` block of the read path.
//!
//! A connection holding a large partial message reads straight into its own buffer.
//! Reading into initialised room instead would cost a `memset` of every byte before
//! the kernel overwrites it (the plain path: read into the scratch buffer and copy,
//! as [`read_into_spare_plain`] does for the test). On a 256 KiB echo this function
//! saves about 60% of the server's instructions per message (docs/BENCHMARKS.md).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::AsFd;

use socket2::SockRef;

/// Receives at most `vec.capacity() - vec.len()` bytes from `socket` into the spare
/// capacity of `vec`, and appends them to it. Returns how many were received.
pub(crate) fn read_into_spare<S: AsFd>(socket: &S, vec: &mut Vec<u8>) -> io::Result<usize> {
    let room = vec.capacity() - vec.len();
    let n = SockRef::from(socket).recv(vec.spare_capacity_mut())?;
    let len = vec.len() + n.min(room);
    // SAFETY: `recv(2)` wrote `n` bytes at the start of `spare`, which begins at
    // `vec.len()`; it never writes more than `room` (and `n` is capped by it
    // anyway), so every byte below `len` is initialised and within the capacity.
    unsafe { vec.set_len(len) };
    Ok(n)
}

/// The plain equivalent, for tests: read into initialised memory, then copy.
#[cfg(test)]
pub(crate) fn read_into_spare_plain<R: io::Read>(
    socket: &mut R,
    vec: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut room = vec![0u8; vec.capacity() - vec.len()];
    let n = socket.read(&mut room)?;
    vec.extend_from_slice(&room[..n]);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    /// Every held length and room size, against the plain path, on real sockets.
    #[test]
    fn reads_into_spare_capacity_exactly_as_the_plain_path_does() {
        let (mut tx, mut rx) = pair();
        let (mut tx2, mut rx2) = pair();
        let mut seed = 7u32;
        for held in [0usize, 1, 3, 100, 4095, 4096] {
            for room in [1usize, 2, 7, 64, 1000, 4096, 20_000] {
                for sent in [1usize, room.saturating_sub(1).max(1), room, room + 5] {
                    let data: Vec<u8> = (0..sent)
                        .map(|_| {
                            seed ^= seed << 13;
                            seed ^= seed >> 17;
                            seed ^= seed << 5;
                            seed as u8
                        })
                        .collect();
                    let prefix: Vec<u8> = (0..held).map(|i| i as u8).collect();
                    let mut fast = Vec::with_capacity(held + room);
                    fast.extend_from_slice(&prefix);
                    let mut plain = Vec::with_capacity(held + room);
                    plain.extend_from_slice(&prefix);
                    let cap = fast.capacity();
                    tx.write_all(&data).unwrap();
                    tx2.write_all(&data).unwrap();
                    // Loopback delivers a small write whole; read until both have
                    // what fits in the room.
                    let want = sent.min(cap - held);
                    let mut got = (0, 0);
                    while got.0 < want {
                        got.0 += read_into_spare(&rx, &mut fast).unwrap();
                    }
                    while got.1 < want {
                        got.1 += read_into_spare_plain(&mut rx2, &mut plain).unwrap();
                    }
                    assert_eq!(fast, plain, "held {held}, room {room}, sent {sent}");
                    assert_eq!(fast.capacity(), cap, "no reallocation");
                    // Drain what did not fit, so the next round starts clean.
                    let mut rest = vec![0u8; sent - want];
                    std::io::Read::read_exact(&mut rx, &mut rest).unwrap();
                    std::io::Read::read_exact(&mut rx2, &mut rest).unwrap();
                }
            }
        }
    }

    #[test]
    fn an_empty_socket_would_block_and_nothing_is_appended() {
        let (_tx, rx) = pair();
        rx.set_nonblocking(true).unwrap();
        let mut v = Vec::with_capacity(16);
        let err = read_into_spare(&rx, &mut v).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(v.is_empty());
    }
}
