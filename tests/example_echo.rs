//! The echo example never drops an echo: a client that pipelines far more than the
//! server's backpressure limit (1 MiB) and the kernels' buffers hold, while it reads
//! slowly, gets every message back, in order, byte for byte, and the example's own
//! count at exit says as many went out as came in. (Under the old default, `Drop`,
//! such a client lost echoes whenever its reading fell behind, and only the
//! server's counters showed it.)

#[path = "util/example.rs"]
mod example;
#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use server::{PATIENCE, read_frame};

/// 64 MiB in 64 KiB messages.
const SIZE: usize = 64 * 1024;
const COUNT: u32 = 1024;

/// Message `seq`: its number, then bytes that depend on it.
fn payload(seq: u32) -> Vec<u8> {
    let mut p: Vec<u8> = (0..SIZE)
        .map(|i| (i as u32 ^ seq.rotate_left(8)) as u8)
        .collect();
    p[..4].copy_from_slice(&seq.to_be_bytes());
    p
}

/// A masked binary frame with the zero key, so the payload goes as it is.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82, 0x80 | 127];
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_client_that_pipelines_64_mib_and_reads_slowly_gets_every_echo() {
    let echo = example::start("echo");
    let mut s = TcpStream::connect(&echo.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut s, &mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");

    // The writer sends everything as fast as the server takes it.
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || -> std::io::Result<()> {
        for seq in 0..COUNT {
            w.write_all(&frame(&payload(seq)))?;
        }
        Ok(())
    });
    // The reader checks every byte, and takes a millisecond over each message (at
    // most 64 MB/s, where loopback takes GB/s), so the server's queue fills. The
    // pace only makes the test meet the limit; its verdict does not depend on it.
    for seq in 0..COUNT {
        let (op, got) = read_frame(&mut s).unwrap_or_else(|| panic!("echo {seq} of {COUNT}"));
        assert_eq!(op, 0x2, "echo {seq}");
        assert!(got == payload(seq), "echo {seq} differs");
        thread::sleep(Duration::from_millis(1));
    }
    writer.join().unwrap().unwrap();
    drop(s);

    let (exited, printed) = echo.terminate();
    assert!(exited, "the example exited with an error: {printed}");
    assert!(
        printed.contains(&format!("{COUNT} messages in, {COUNT} out")),
        "every message in was echoed: {printed}"
    );
}
