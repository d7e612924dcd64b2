//! Short soaks against a wsreactor server in this process, checked through the
//! JSON report and the server's own counters.
//!
//! In their own binary, one at a time: a soak counts this process's sockets from
//! /proc/self/fd, which nothing else may open or close meanwhile.

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use wsreactor::{Config, Handler, Message, Server, Socket};

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

/// A server that keeps 16 KiB for every connection it ever opened: a leak.
#[derive(Clone)]
struct Leaky;

impl Handler for Leaky {
    type Session = ();
    fn on_open(&mut self, _: &mut Socket<'_, ()>) {
        Box::leak(vec![1u8; 16 * 1024].into_boxed_slice());
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `wsload soak` against `url`, this process as the server, with `args`;
/// returns its output and its JSON report.
fn soak(url: &str, name: &str, args: &[&str]) -> (Output, Value) {
    let pid = std::process::id().to_string();
    let dir = std::env::temp_dir().join(format!("wsload-soak-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join(format!("{name}.json"));
    let output = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args(["soak", "--url", url, "--server-pid", &pid])
        .args(args)
        .args(["--quiet", "--strict", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (output, report)
}

fn check<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains(name)))
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn a_short_soak_leaves_the_server_as_it_found_it() {
    let _serial = serial();
    // The server's defaults, as the echo example's: the abusers' expectations
    // (431 past 8 KiB, 1009 past 16 MiB, silence within the 10 s handshake
    // timeout) are those of the default Config.
    let server = Server::bind("127.0.0.1:0", Config::default().with_reactors(2))
        .unwrap()
        .spawn(Echo)
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let pid = std::process::id().to_string();
    let dir = std::env::temp_dir().join(format!("wsload-soak-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, plot) = (dir.join("soak.json"), dir.join("soak.svg"));

    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_wsload"))
        .args(["soak", "--url", &url, "--server-pid", &pid])
        .args([
            "--duration",
            "4",
            "--warmup",
            "4",
            "--sample-interval",
            "0.5",
        ])
        .args(["--echo-connections", "10", "--idle-connections", "100"])
        .args(["--idle-hold", "0.5", "--abusers", "10"])
        .args(["--quiet", "--strict", "--json"])
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();

    // Every check passed, and --strict says so by the exit status.
    for check in r["checks"].as_array().unwrap() {
        assert_eq!(check["passed"], true, "{check}\n{stdout}");
    }
    assert!(output.status.success(), "{stdout}");
    assert_eq!(r["passed"], true);

    // Echo: every reply came back, byte for byte.
    let echo = &r["echo"];
    assert!(number(&echo["received"]) > 1000, "{echo}");
    assert_eq!(echo["sent"], echo["received"]);
    assert!(echo["errors"].as_object().unwrap().values().all(|v| v == 0));

    // Idle: connections cycled (holds of 0.25 to 0.75 s over 8 s), none went wrong:
    // no message reached one, not even another client's.
    assert!(number(&r["idle"]["cycles"]) >= 300, "{}", r["idle"]);
    assert_eq!(r["idle"]["errors"].as_object().unwrap().len(), 0);

    // Every kind of abuse ran, and every one got exactly what it should.
    let kinds = r["abusers"]["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 10);
    for kind in kinds {
        let runs = number(&kind["runs"]);
        assert!(runs >= 1, "{kind}");
        let expected = kind["expected"].as_str().unwrap();
        let observed = kind["observed"].as_object().unwrap();
        assert_eq!(observed.len(), 1, "{kind}");
        assert_eq!(number(&observed[expected]), runs, "{kind}");
    }
    let expected: Vec<(&str, &str)> = kinds
        .iter()
        .map(|k| (k["kind"].as_str().unwrap(), k["expected"].as_str().unwrap()))
        .collect();
    for (kind, answer) in [
        ("garbage", "HTTP 400"),
        ("oversized-handshake", "HTTP 431"),
        ("huge-frame", "close 1009"),
        ("invalid-utf8", "close 1007"),
        ("unmasked", "close 1002"),
    ] {
        assert!(expected.contains(&(kind, answer)), "{kind}: {expected:?}");
    }
    assert_eq!(r["abusers"]["unexpected"], 0);

    // The server's sockets came back to the start after each round, as its own
    // count of open connections confirms.
    let s = &r["server"];
    assert_eq!(s["sockets_end"], s["sockets_start"], "{s}");
    assert_eq!(s["sockets_after_warmup"], s["sockets_start"], "{s}");
    assert_eq!(server.stats().open, 0);
    assert!(number(&s["rss_peak_bytes"]) >= number(&s["rss_start_bytes"]));
    // The baseline is the first half's peak, above what the warm-up settles to.
    assert!(number(&s["rss_warmup_peak_bytes"]) >= number(&s["rss_warm_bytes"]));
    let first_half =
        number(&s["rss_warmup_peak_bytes"]).max(number(&s["rss_first_half_peak_bytes"]));
    assert_eq!(number(&s["rss_baseline_bytes"]), first_half);

    // Samples through every phase, with RSS and sockets in each.
    let samples = r["samples"].as_array().unwrap();
    let phases: Vec<&str> = samples
        .iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    for phase in ["start", "warm-up", "settled", "soak", "end"] {
        assert!(phases.contains(&phase), "{phases:?}");
    }
    assert!(samples.len() >= 10, "{} samples", samples.len());
    assert!(samples.iter().all(|s| number(&s["rss_bytes"]) > 0));
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("RSS"));

    // Bounded: two rounds, their closes and the settling, and no more.
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

#[test]
fn a_server_that_keeps_memory_per_connection_fails_the_rss_bound() {
    let _serial = serial();
    let server = Server::bind("127.0.0.1:0", Config::default().with_reactors(2))
        .unwrap()
        .spawn(Leaky)
        .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    // About 200 idle connections a second, 16 KiB kept for each: some 3 MiB a
    // second, and nothing else wrong.
    let (output, r) = soak(
        &url,
        "leaky",
        &[
            "--duration",
            "4",
            "--warmup",
            "2",
            "--sample-interval",
            "0.5",
            "--echo-connections",
            "5",
            "--idle-connections",
            "100",
            "--idle-hold",
            "0.5",
            "--abusers",
            "0",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "--strict fails: {stdout}");
    assert_eq!(check(&r, "RSS")["passed"], false, "{stdout}");
    for name in ["echo", "idle", "sockets"] {
        assert_eq!(check(&r, name)["passed"], true, "{name}: {stdout}");
    }
    let s = &r["server"];
    assert!(
        number(&s["rss_end_bytes"]) > number(&s["rss_baseline_bytes"]) + (2 << 20),
        "{s}"
    );
}
