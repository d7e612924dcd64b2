//! Frame headers and whole frames: ours beside tungstenite's public equivalents.
//!
//! - `parse`: a masked client header as a server reads it, for each length form.
//!   tungstenite's `FrameHeader::parse` reads through a `Cursor` and leaves the role
//!   (mask required) and control-frame rules to its caller; ours checks them.
//! - `encode`: an unmasked server header. tungstenite's `FrameHeader::format` writes
//!   through `io::Write`, here into a stack array; fastwebsockets' `Frame::fmt_head`
//!   writes into a slice and takes the length from the payload the frame borrows.
//!   fastwebsockets parses headers only inside its async `read_frame`, so it has no
//!   `parse` line.
//! - `decode` and `decode_text`: one masked client frame in, one message out. Both
//!   sides copy the frame into their read buffer first, as a socket read would; the
//!   `copy-only` line is that copy alone. tungstenite reads from a stream that replays
//!   the frame endlessly, so its buffer fills in 128 KiB reads, as it would from a busy
//!   socket. fastwebsockets has no synchronous frame reader to compare with.
//!
//! Run: `cargo bench --bench frame` (add `-- --quick` for a smoke run).

use std::hint::black_box;
use std::io::{self, Cursor, Read, Write};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastwebsockets::Payload;
use tungstenite::protocol::frame::FrameHeader as TFrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode as TOpCode};
use tungstenite::protocol::{Role as TRole, WebSocket};
use tungstenite::{Message as TMessage, Utf8Bytes};
use wsreactor::proto::frame::{FrameHeader, OpCode, Role};
use wsreactor::proto::mask::apply_mask;
use wsreactor::proto::{Connection, Decoded, Event, Limits};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One payload length per length form: 7-bit, 16-bit, 64-bit.
const LENGTH_FORMS: [(u64, &str); 3] = [(100, "7bit"), (1000, "16bit"), (100_000, "64bit")];

/// Frame sizes for the whole-frame decode.
const FRAME_SIZES: [(usize, &str); 3] = [(16, "16B"), (1024, "1KiB"), (64 << 10, "64KiB")];

/// A complete masked client frame carrying `payload`.
fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(KEY),
        payload_len: payload.len() as u64,
    };
    let mut frame = header.encode().as_bytes().to_vec();
    let at = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[at..], KEY, 0);
    frame
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (len, label) in LENGTH_FORMS {
        let frame = client_frame(OpCode::Binary, &vec![b'x'; len as usize]);
        // The header and a few payload bytes after it: parsing never looks further.
        let buf = &frame[..frame.len().min(32)];
        let (ours, n) = FrameHeader::parse(buf, Role::Server, 0).unwrap().unwrap();
        let (theirs, t_len) = TFrameHeader::parse(&mut Cursor::new(buf)).unwrap().unwrap();
        assert_eq!((ours.payload_len, ours.mask), (t_len, theirs.mask));
        assert_eq!(
            n,
            FrameHeader {
                mask: Some(KEY),
                ..ours
            }
            .encoded_len()
        );

        group.bench_function(BenchmarkId::new("wsreactor", label), |b| {
            b.iter(|| FrameHeader::parse(black_box(buf), Role::Server, 0));
        });
        group.bench_function(BenchmarkId::new("tungstenite", label), |b| {
            b.iter(|| {
                let mut cursor = Cursor::new(black_box(buf));
                let parsed = TFrameHeader::parse(&mut cursor);
                (parsed, cursor.position())
            });
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (len, label) in LENGTH_FORMS {
        let ours = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: None,
            payload_len: len,
        };
        let theirs = TFrameHeader {
            is_final: true,
            opcode: TOpCode::Data(Data::Binary),
            ..TFrameHeader::default()
        };
        let mut out = [0u8; 14];
        let mut writer: &mut [u8] = &mut out;
        theirs.format(len, &mut writer).unwrap();
        let written = 14 - writer.len();
        assert_eq!(ours.encode().as_bytes(), &out[..written]);

        let payload = vec![0u8; len as usize];
        let mut fws = fastwebsockets::Frame::binary(Payload::Borrowed(&payload));
        let mut head = [0u8; 16];
        let n = fws.fmt_head(&mut head);
        assert_eq!(ours.encode().as_bytes(), &head[..n]);

        group.bench_function(BenchmarkId::new("wsreactor", label), |b| {
            b.iter(|| black_box(black_box(&ours).encode()));
        });
        group.bench_function(BenchmarkId::new("fastwebsockets", label), |b| {
            b.iter(|| {
                // fastwebsockets takes the length from the payload it borrows.
                let mut head = [0u8; 16];
                let n = black_box(&mut fws).fmt_head(&mut head);
                black_box((n, head))
            });
        });
        group.bench_function(BenchmarkId::new("tungstenite", label), |b| {
            b.iter(|| {
                let mut out = [0u8; 14];
                let mut writer: &mut [u8] = &mut out;
                let result = black_box(&theirs).format(black_box(len), &mut writer);
                black_box((result.is_ok(), out))
            });
        });
    }
    group.finish();
}

/// A socket whose peer sends the same frame over and over, as fast as it is read.
struct Replay {
    frame: Vec<u8>,
    at: usize,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = (self.frame.len() - self.at).min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&self.frame[self.at..self.at + n]);
            filled += n;
            self.at = (self.at + n) % self.frame.len();
        }
        Ok(filled)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn decode(c: &mut Criterion) {
    decode_group(c, "decode", OpCode::Binary);
    decode_group(c, "decode_text", OpCode::Text);
}

fn decode_group(c: &mut Criterion, name: &str, opcode: OpCode) {
    let mut group = c.benchmark_group(name);
    let limits = Limits::default();
    for (len, label) in FRAME_SIZES {
        // ASCII, so the text variant stays valid UTF-8.
        let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let frame = client_frame(opcode, &payload);
        group.throughput(Throughput::Bytes(len as u64));

        let mut buf = vec![0u8; frame.len()];
        group.bench_function(BenchmarkId::new("copy-only", label), |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&frame));
                black_box(&mut buf);
            });
        });

        let mut conn = Connection::server();
        let mut out: Vec<u8> = Vec::new();
        buf.copy_from_slice(&frame);
        match conn.decode(&mut buf, &mut out, &limits) {
            Decoded::Event {
                consumed,
                event: Event::Message(message),
            } => {
                assert_eq!(consumed, frame.len());
                assert_eq!(message.as_bytes(), &payload[..]);
                assert_eq!(message.is_text(), opcode == OpCode::Text);
            }
            other => panic!("unexpected {other:?}"),
        }
        group.bench_function(BenchmarkId::new("wsreactor", label), |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&frame));
                match conn.decode(&mut buf, &mut out, &limits) {
                    Decoded::Event {
                        event: Event::Message(message),
                        ..
                    } => black_box(message.as_bytes().as_ptr()),
                    _ => unreachable!(),
                }
            });
        });

        let stream = Replay {
            frame: frame.clone(),
            at: 0,
        };
        let mut ws = WebSocket::from_raw_socket(stream, TRole::Server, None);
        let expected = if opcode == OpCode::Text {
            TMessage::Text(Utf8Bytes::try_from(payload.clone()).unwrap())
        } else {
            TMessage::Binary(payload.clone().into())
        };
        assert_eq!(ws.read().unwrap(), expected);
        group.bench_function(BenchmarkId::new("tungstenite", label), |b| {
            b.iter(|| black_box(ws.read().unwrap()));
        });
    }
    group.finish();
}

criterion_group!(benches, parse, encode, decode);
criterion_main!(benches);
