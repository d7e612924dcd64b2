//! The shared compressed form of published frames: one client publishes K messages
//! in one read (one loop turn), each to N subscribers that negotiated
//! permessage-deflate. Every message is compressed once per turn and window, and
//! each of the K × N deliveries looks its frame up: a lookup that scanned every
//! frame of the turn made the same 300,000 deliveries take ten times longer as
//! 1,500 × 200 than as 150 × 2,000. With a map, the two shapes cost about the same
//! per delivery.
//!
//! `cargo bench -p wsreactor-benches --bench shared_compression`

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wsreactor::{Compression, Config, Handler, Message, Server, ServerHandle, Socket, Upgrade};

/// Subscribes its connections to "t", except the publisher (path `/pub`), whose
/// messages it publishes.
#[derive(Clone)]
struct Topic;

impl Handler for Topic {
    type Session = bool;
    fn on_upgrade(&mut self, request: &wsreactor::Request<'_, '_>) -> Upgrade<bool> {
        Upgrade::accept(request.path() == "/pub")
    }
    fn on_open(&mut self, ws: &mut Socket<'_, bool>) {
        if !*ws.session() {
            let _ = ws.subscribe("t");
        }
    }
    fn on_message(&mut self, ws: &mut Socket<'_, bool>, message: Message<'_>) {
        ws.publish("t", message);
    }
}

fn upgrade(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// K text messages of a JSON-like reading, each different, masked with key 0.
fn messages(k: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..k {
        let text = format!(
            "{{\"sensor\":\"s-{i:05}\",\"temperature\":{}.{},\"humidity\":{},\"status\":\"ok\"}}",
            20 + i % 10,
            i % 7,
            40 + i % 30
        );
        out.extend_from_slice(&[0x81, 0x80 | text.len() as u8, 0, 0, 0, 0]);
        out.extend_from_slice(text.as_bytes());
    }
    out
}

struct Setup {
    server: ServerHandle,
    publisher: TcpStream,
    stop: Arc<AtomicBool>,
}

fn setup(subscribers: usize) -> Setup {
    let config = Config::default()
        .with_reactors(1)
        .with_compression(Compression::shared());
    let server = Server::bind("127.0.0.1:0", config)
        .unwrap()
        .spawn(Topic)
        .unwrap();
    let addr = server.local_addr();
    let clients: Vec<TcpStream> = (0..subscribers).map(|_| upgrade(addr, "/")).collect();
    while server.subscribers("t") < subscribers {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    std::thread::spawn(move || {
        for c in &clients {
            c.set_nonblocking(true).unwrap();
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut clients = clients;
        while !stopping.load(Ordering::Relaxed) {
            let mut idle = true;
            for c in &mut clients {
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => idle = false,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
            }
            if idle {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let publisher = upgrade(addr, "/pub");
    Setup {
        server,
        publisher,
        stop,
    }
}

fn shared_compression(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_deflate_turn");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (k, n) in [(150usize, 2000usize), (1500, 200)] {
        let mut setup = setup(n);
        let burst = messages(k);
        group.throughput(Throughput::Elements((k * n) as u64));
        group.bench_function(
            BenchmarkId::new("publications x subscribers", format!("{k}x{n}")),
            |b| {
                b.iter_custom(|iterations| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        let before = setup.server.stats().messages_out;
                        let start = Instant::now();
                        setup.publisher.write_all(&burst).unwrap();
                        while setup.server.stats().messages_out < before + (k * n) as u64 {
                            std::hint::spin_loop();
                        }
                        total += start.elapsed();
                    }
                    total
                })
            },
        );
        setup.stop.store(true, Ordering::Relaxed);
        let _ = setup.server.shutdown(Duration::from_secs(1));
    }
    group.finish();
}

criterion_group!(benches, shared_compression);
criterion_main!(benches);
