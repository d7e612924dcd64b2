//! Every wsload scenario against a wsreactor server in this process, checked through
//! the JSON report.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wsreactor::{Config, Handler, Message, Sender, Server, ServerHandle, Socket};

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// A chat room, as the chat example: every message to everyone else.
#[derive(Clone)]
struct Room(Sender);

impl Handler for Room {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        self.0.broadcast_except(message, ws.id());
    }
}

/// As the broadcast example: every message to every connection, the sender included.
#[derive(Clone)]
struct Everyone;

const EVERYONE: &str = "everyone";

impl Handler for Everyone {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        let _ = ws.subscribe(EVERYONE);
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        ws.publish(EVERYONE, message);
        let _ = ws.send(message);
    }
}

fn echo_server() -> ServerHandle {
    let config = Config::default().with_reactors(1);
    Server::bind("127.0.0.1:0", config)
        .unwrap()
        .spawn(Echo)
        .unwrap()
}

/// Runs wsload with `args` and returns its JSON report.
fn wsload(args: &[&str]) -> Value {
    let dir = std::env::temp_dir().join(format!("wsload-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json: PathBuf = dir.join(format!("{}.json", args[0]));
    let plot: PathBuf = dir.join(format!("{}.svg", args[0]));
    let output = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "wsload {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("latency"),
        "the plot is an SVG"
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn errors(report: &Value) -> u64 {
    report["errors"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[test]
fn echo_counts_every_message_and_loses_none() {
    let server = echo_server();
    let url = format!("ws://{}/", server.local_addr());
    let pid = std::process::id().to_string();
    let r = wsload(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "20",
        "--pipeline",
        "4",
        "--payload",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--server-pid",
        &pid,
        "--strict",
    ]);
    assert_eq!(errors(&r), 0);
    assert_eq!(r["connections_open"], 20);
    assert!(r["messages"].as_u64().unwrap() > 1000);
    assert_eq!(r["sent"], r["received"], "every message came back");
    assert!(r["latency"]["count"].as_u64().unwrap() > 0);
    assert!(r["latency"]["p99_us"].as_f64().unwrap() >= r["latency"]["p50_us"].as_f64().unwrap());
    // The server is this process: its CPU is sampled over the window.
    assert!(r["server"]["cpu_us_per_message"].as_f64().unwrap() > 0.0);
    // Text messages are checked too.
    let r = wsload(&[
        "echo",
        "--url",
        &url,
        "--connections",
        "5",
        "--text",
        "--payload",
        "3000",
        "--duration",
        "0.5",
        "--warmup",
        "0",
    ]);
    assert_eq!((errors(&r), r["text"].as_bool()), (0, Some(true)));
    assert!(r["messages"].as_u64().unwrap() > 0);
}

#[test]
fn rate_sends_on_schedule() {
    let server = echo_server();
    let url = format!("ws://{}/", server.local_addr());
    let r = wsload(&[
        "rate",
        "--url",
        &url,
        "--connections",
        "10",
        "--rate",
        "2000",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_eq!(errors(&r), 0);
    let per_second = r["messages_per_second"].as_f64().unwrap();
    assert!(
        (1500.0..2500.0).contains(&per_second),
        "{per_second}/s for 2000/s asked"
    );
}

#[test]
fn idle_reports_memory_per_connection() {
    let server = echo_server();
    let url = format!("ws://{}/", server.local_addr());
    let pid = std::process::id().to_string();
    let r = wsload(&[
        "idle",
        "--url",
        &url,
        "--connections",
        "500",
        "--duration",
        "0.2",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(errors(&r), 0);
    assert_eq!(r["connections_open"], 500);
    // wsload's exit closes them all.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.stats().open > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connections left open"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(r["server"]["rss_per_connection_bytes"].is_number());
}

#[test]
fn connect_counts_handshakes() {
    let server = echo_server();
    let url = format!("ws://{}/", server.local_addr());
    let r = wsload(&[
        "connect",
        "--url",
        &url,
        "--concurrency",
        "8",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]);
    assert_eq!(errors(&r), 0);
    let handshakes = r["messages"].as_u64().unwrap();
    assert!(handshakes > 100, "{handshakes} handshakes");
    assert!(server.stats().accepted >= handshakes);
}

#[test]
fn broadcast_measures_fan_out() {
    let server = Server::bind("127.0.0.1:0", Config::default().with_reactors(1)).unwrap();
    let room = server.sender();
    let server = server.spawn(Room(room)).unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let r = wsload(&[
        "broadcast",
        "--url",
        &url,
        "--receivers",
        "20",
        "--rate",
        "50",
        "--duration",
        "1",
        "--warmup",
        "0.3",
    ]);
    assert_eq!(errors(&r), 0);
    // About 50 messages × 20 receivers.
    let deliveries = r["messages"].as_u64().unwrap();
    assert!((600..1400).contains(&deliveries), "{deliveries} deliveries");
    assert!(r["latency"]["count"].as_u64().unwrap() > 0);
}

#[test]
fn fanout_delivers_every_message_to_every_client() {
    let server = Server::bind("127.0.0.1:0", Config::default().with_reactors(1))
        .unwrap()
        .spawn(Everyone)
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let pid = std::process::id().to_string();
    let r = wsload(&[
        "fanout",
        "--url",
        &url,
        "--connections",
        "20",
        "--threads",
        "2",
        "--payload",
        "32",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--server-pid",
        &pid,
        "--strict",
    ]);
    assert_eq!(errors(&r), 0);
    assert_eq!(r["connections_open"], 20);
    let deliveries = r["messages"].as_u64().unwrap();
    assert!(deliveries > 0, "{deliveries} deliveries");
    // Each message sent reached all 20 clients, and nothing else arrived.
    let sent = r["sent"].as_u64().unwrap();
    assert_eq!(r["received"].as_u64().unwrap(), sent * 20);
    // Rounds were timed, and the server's CPU sampled per delivery.
    assert!(r["latency"]["count"].as_u64().unwrap() > 0);
    assert!(r["server"]["cpu_us_per_message"].as_f64().unwrap() > 0.0);
}

/// As `Everyone`, but the sender gets its own message twice.
#[derive(Clone)]
struct EveryoneSenderTwice;

impl Handler for EveryoneSenderTwice {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        let _ = ws.subscribe(EVERYONE);
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        ws.publish(EVERYONE, message);
        let _ = ws.send(message);
        let _ = ws.send(message);
    }
}

#[test]
fn fanout_counts_a_repeated_delivery_as_a_mismatch() {
    let server = Server::bind("127.0.0.1:0", Config::default().with_reactors(1))
        .unwrap()
        .spawn(EveryoneSenderTwice)
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let r = wsload(&[
        "fanout",
        "--url",
        &url,
        "--connections",
        "10",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ]);
    let mismatch = r["errors"]["mismatch"].as_u64().unwrap();
    assert!(mismatch > 0);
    // One repeat per message sent, and nothing lost.
    assert_eq!(mismatch, r["sent"].as_u64().unwrap());
    assert_eq!(r["errors"]["lost"], 0);
}

#[test]
fn raw_mode_drives_a_plain_tcp_echo() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let url = format!("tcp://{addr}");
    let r = wsload(&[
        "echo",
        "--raw",
        "--url",
        &url,
        "--connections",
        "4",
        "--payload",
        "64",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ]);
    assert_eq!(errors(&r), 0);
    assert!(r["messages"].as_u64().unwrap() > 100);
}

#[test]
fn non_loopback_targets_are_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args(["echo", "--url", "ws://192.0.2.1:9001/", "--duration", "0.1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("127.0.0.0/8"));
}
