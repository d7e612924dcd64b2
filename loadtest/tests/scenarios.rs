//! Every wsload scenario against a wsreactor server in this process, checked through
//! the JSON report.
//!
//! The figures checked are those the machine's speed cannot move: every message
//! back, every delivery made, counts that agree with each other and with the
//! schedule's bounds. How many messages fit in a window is the machine's business,
//! never a verdict.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// How long a wait for something that must happen may take before it is called a
/// hang: a guard, never a measure.
const PATIENCE: Duration = Duration::from_secs(60);

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
    // Its labels read as people read them: each percentile once, counts short.
    let labels: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .filter_map(|t| {
            t.split_once('>')
                .and_then(|(_, rest)| rest.split_once("</text>"))
        })
        .map(|(label, _)| label.trim())
        .collect();
    for tick in ["0 %", "90 %", "99 %", "99.9 %", "99.99 %", "max"] {
        let n = labels.iter().filter(|&&l| l == tick).count();
        assert_eq!(n, 1, "the label {tick:?} appears {n} times: {labels:?}");
    }
    // Numbers short (180k, not 180000.0).
    assert!(
        labels
            .iter()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .all(|l| l.len() <= 7),
        "a number too long to read: {labels:?}"
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// One of a report's counts.
fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field}: {report}"))
}

/// Every sample of the measured window was timed, and nothing else.
fn timed_every_message(report: &Value) {
    let timed = report["latency"]["count"].as_u64().unwrap();
    assert!(timed >= count(report, "messages"), "{report}");
    assert!(timed <= count(report, "received"), "{report}");
}

/// An open loop at `rate` a second sends what its schedule holds: never ahead of
/// it (at most the rate over the whole run, `run`, a message a worker more), and
/// everything due while it sends, which is at least the measured window (its
/// warm-up's schedule covers the moments its workers take to see the phases
/// change).
fn on_schedule(report: &Value, rate: f64, run: Duration) {
    let sent = count(report, "sent") as f64;
    let window = report["duration_seconds"].as_f64().unwrap();
    let threads = count(report, "threads") as f64;
    assert!(
        sent <= rate * run.as_secs_f64() + threads,
        "{sent} sent in {run:?} at {rate}/s: ahead of the schedule"
    );
    assert!(
        sent >= rate * window,
        "{sent} sent at {rate}/s over a window of {window} s: behind the schedule"
    );
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
    assert_eq!(r["sent"], r["received"], "every message came back");
    // Every connection filled its pipeline at least once, and the window counted
    // replies (a second of them: however slow the machine, some).
    assert!(count(&r, "sent") >= 20 * 4, "{r}");
    assert!(count(&r, "messages") > 0, "{r}");
    assert!(count(&r, "messages") <= count(&r, "received"), "{r}");
    timed_every_message(&r);
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
    assert_eq!(r["sent"], r["received"], "every message came back");
    assert!(count(&r, "sent") >= 5, "{r}");
}

#[test]
fn rate_sends_on_schedule() {
    let server = echo_server();
    let url = format!("ws://{}/", server.local_addr());
    let started = Instant::now();
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
        "1",
    ]);
    let run = started.elapsed();
    assert_eq!(errors(&r), 0);
    assert_eq!(r["sent"], r["received"], "every message came back");
    on_schedule(&r, 2000.0, run);
    timed_every_message(&r);
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
    let deadline = Instant::now() + PATIENCE;
    while server.stats().open > 0 {
        assert!(Instant::now() < deadline, "connections left open");
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
    // Handshakes completed in the window (a second of them: however slow the
    // machine, some), each timed, each one the server accepted.
    let handshakes = count(&r, "messages");
    assert!(handshakes > 0, "{r}");
    let timed = r["latency"]["count"].as_u64().unwrap();
    assert!(timed >= handshakes, "{r}");
    assert!(server.stats().accepted >= timed, "{r}");
}

#[test]
fn broadcast_measures_fan_out() {
    let server = Server::bind("127.0.0.1:0", Config::default().with_reactors(1)).unwrap();
    let room = server.sender();
    let server = server.spawn(Room(room)).unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let started = Instant::now();
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
        "1",
    ]);
    let run = started.elapsed();
    assert_eq!(errors(&r), 0);
    // The sender kept to its schedule, and each of its messages reached the 20
    // receivers (the room sends it to everyone but the sender).
    on_schedule(&r, 50.0, run);
    assert_eq!(count(&r, "received"), count(&r, "sent") * 20, "{r}");
    assert!(count(&r, "messages") > 0, "{r}");
    timed_every_message(&r);
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

/// As `Everyone`, but a connection's first message goes to its sender alone, as many
/// times as there are connections: the sender gets it once and `CONNECTIONS - 1`
/// repeats, and each other connection misses it. A message still makes
/// `CONNECTIONS` deliveries, so the rounds stay as balanced as `Everyone`'s and the
/// run ends with every delivery in, the repeats and the misses exactly known.
#[derive(Clone)]
struct FirstToSenderOnly;

const CONNECTIONS: u64 = 10;

impl Handler for FirstToSenderOnly {
    /// Whether this connection's first message has come.
    type Session = bool;
    fn on_open(&mut self, ws: &mut Socket<'_, bool>) {
        let _ = ws.subscribe(EVERYONE);
    }
    fn on_message(&mut self, ws: &mut Socket<'_, bool>, message: Message<'_>) {
        if *ws.session() {
            ws.publish(EVERYONE, message);
            let _ = ws.send(message);
            return;
        }
        *ws.session_mut() = true;
        for _ in 0..CONNECTIONS {
            let _ = ws.send(message);
        }
    }
}

#[test]
fn fanout_counts_a_repeated_delivery_as_a_mismatch() {
    let server = Server::bind("127.0.0.1:0", Config::default().with_reactors(1))
        .unwrap()
        .spawn(FirstToSenderOnly)
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let r = wsload(&[
        "fanout",
        "--url",
        &url,
        "--connections",
        &CONNECTIONS.to_string(),
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ]);
    assert_eq!(count(&r, "connections_open"), CONNECTIONS);
    // Every repeat is a mismatch, and every delivery it took the place of is lost:
    // a repeat is never counted as the delivery that was missing.
    let repeats = CONNECTIONS * (CONNECTIONS - 1);
    assert_eq!(r["errors"]["mismatch"], repeats, "{r}");
    assert_eq!(r["errors"]["lost"], repeats, "{r}");
    assert_eq!(
        count(&r, "received"),
        count(&r, "sent") * CONNECTIONS,
        "{r}"
    );
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
    assert_eq!(r["sent"], r["received"], "every message came back");
    assert!(count(&r, "sent") >= 4, "{r}");
    assert!(count(&r, "messages") > 0, "{r}");
    timed_every_message(&r);
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

/// The first run's demo has cargo build the echo example as `wsload-echo`, a
/// binary of this crate (`cargo run` builds only the binary it runs), never as
/// `--example echo`, which builds the tests' dev-dependencies; and starts it from
/// beside wsload. `CARGO` is a script here that notes what it was asked (the
/// binary is already there: cargo test built it).
#[test]
fn the_demo_builds_and_runs_the_echo_example_beside_wsload() {
    let dir = std::env::temp_dir().join(format!("wsload-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let asked = dir.join("asked");
    let cargo = dir.join("cargo");
    std::fs::write(
        &cargo,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\n", asked.display()),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args(["demo", "--connections", "5", "--idle-connections", "10"])
        .args(["--duration", "0.2", "--quiet"])
        .env("CARGO", &cargo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the demo failed: {stdout}{stderr}");
    assert!(
        stdout.contains("echo example on ws://127.0.0.1:"),
        "{stdout}"
    );
    // This test's wsload is a debug build: the echo binary is built in its profile.
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert_eq!(asked.trim(), "build -p wsload --bin wsload-echo", "{asked}");
    let _ = std::fs::remove_dir_all(&dir);
    // The echo binary beside wsload is the echo example's source.
    let beside = Path::new(env!("CARGO_BIN_EXE_wsload")).with_file_name("wsload-echo");
    assert_eq!(Path::new(env!("CARGO_BIN_EXE_wsload-echo")), beside);
}
