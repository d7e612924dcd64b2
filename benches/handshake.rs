//! The server's side of the opening handshake: ours (parse in place, write the 101 into a
//! reused buffer) beside tungstenite's, on a typical browser upgrade request.
//!
//! `cargo bench --bench handshake`

use std::hint::black_box;
use std::io::{self, Read, Write};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tungstenite::handshake::machine::TryParse;
use tungstenite::handshake::server::{Request as TRequest, create_response, write_response};
use wsreactor::proto::handshake::{
    self, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS, EMPTY_HEADER,
};

/// A typical browser upgrade request (Chrome's, less `Pragma` and `Cache-Control`):
/// 10 headers, 436 bytes.
const BROWSER_REQUEST: &[u8] = b"GET /socket?room=lobby HTTP/1.1\r\n\
Host: chat.example.com\r\n\
Connection: Upgrade\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://chat.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// A stream preloaded with the request that collects what is written back.
struct Preloaded {
    request: io::Cursor<&'static [u8]>,
    written: Vec<u8>,
}

impl Read for Preloaded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.request.read(buf)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

impl Write for Preloaded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn handshake_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("handshake");
    group.throughput(Throughput::Bytes(BROWSER_REQUEST.len() as u64));

    let mut out = Vec::with_capacity(256);
    group.bench_function("wsreactor/parse+101", |b| {
        b.iter(|| {
            out.clear();
            let mut headers = [EMPTY_HEADER; DEFAULT_MAX_HEADERS];
            let request = black_box(BROWSER_REQUEST);
            if let Ok(Some((req, _))) =
                handshake::parse_request(request, &mut headers, DEFAULT_MAX_HEADER_BYTES)
            {
                handshake::write_accept(&mut out, req.key().as_bytes(), None, None);
            }
            black_box(&out);
        })
    });

    // The whole of `tungstenite::accept`: read, parse into `http` types, answer, and set up the
    // WebSocket, which is what a tungstenite server pays per connection.
    group.bench_function("tungstenite/accept", |b| {
        b.iter_batched(
            || Preloaded {
                request: io::Cursor::new(BROWSER_REQUEST),
                written: Vec::with_capacity(256),
            },
            |stream| {
                let ws = tungstenite::accept(stream).ok();
                black_box(ws)
            },
            BatchSize::SmallInput,
        )
    });

    // Only its parse and 101, into a reused buffer: the like-for-like comparison with ours.
    let mut out = Vec::with_capacity(256);
    group.bench_function("tungstenite/parse+101", |b| {
        b.iter(|| {
            out.clear();
            if let Ok(Some((_, req))) = TRequest::try_parse(black_box(BROWSER_REQUEST))
                && let Ok(res) = create_response(&req)
            {
                let _ = write_response(&mut out, &res);
            }
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group!(benches, handshake_benches);
criterion_main!(benches);
