//! The soak's report: a table on the terminal, JSON, and an SVG plot of the
//! server's RSS and sockets over time.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::report::{Latency, time_series};
use crate::worker::Errors;

/// The most sample rows printed; the JSON has them all.
const PRINTED_SAMPLES: usize = 60;

/// The server and the mix, sampled once.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the soak began.
    pub seconds: f64,
    /// start, warm-up, settled (after the warm-up, every client closed), soak, end.
    pub phase: &'static str,
    pub rss_bytes: Option<u64>,
    /// The server's open sockets: its listeners and connections.
    pub sockets: Option<usize>,
    /// Echo replies received and checked so far.
    pub echoed: u64,
    /// Idle connections open at the time.
    pub idle_open: u64,
    /// Abusive connections finished so far.
    pub abuses: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EchoSummary {
    pub connections: usize,
    pub payload: usize,
    pub sent: u64,
    /// Replies received, each compared byte for byte with what was sent.
    pub received: u64,
    pub messages_per_second: f64,
    pub latency: Latency,
    pub errors: Errors,
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleSummary {
    pub connections: usize,
    pub hold_seconds: f64,
    /// Open, hold, close 1000 answered with 1000, the server's FIN.
    pub cycles: u64,
    /// What went wrong, by what.
    pub errors: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    pub kind: &'static str,
    pub expected: String,
    pub runs: u64,
    pub as_expected: u64,
    /// What the server did, and how often.
    pub observed: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AbuseSummary {
    /// Abusive connections at once.
    pub slots: usize,
    pub total: u64,
    pub unexpected: u64,
    /// Connections the end of a round caught connecting: not counted.
    pub cut_short: u64,
    pub never_reads_bytes: u64,
    pub never_reads_stalls: u64,
    pub kinds: Vec<KindSummary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerSummary {
    pub pid: u32,
    /// Before any soak client connected.
    pub rss_start_bytes: u64,
    /// The most during the warm-up round, its closes included.
    pub rss_warmup_peak_bytes: Option<u64>,
    /// The most during the soak round's first half.
    pub rss_first_half_peak_bytes: Option<u64>,
    /// After the warm-up round, every client closed and the sockets back.
    pub rss_warm_bytes: Option<u64>,
    /// The most over the whole run (read every 100 ms).
    pub rss_peak_bytes: u64,
    /// The last sample of the soak round, its clients still connected.
    pub rss_loaded_end_bytes: u64,
    /// After the soak round, every client closed (`None`: the server was gone).
    pub rss_end_bytes: Option<u64>,
    /// Which figure the end is held to.
    pub rss_baseline: &'static str,
    pub rss_baseline_bytes: u64,
    pub rss_end_vs_baseline_percent: f64,
    pub rss_end_vs_start_percent: f64,
    pub rss_tolerance_percent: f64,
    /// What the mix can make the server hold at once: the end may exceed the
    /// baseline and its tolerance by this much (see `headroom.rs`).
    pub rss_headroom: super::Headroom,
    /// The most the end may be: the baseline, its tolerance, and the headroom.
    pub rss_bound_bytes: u64,
    pub sockets_start: usize,
    pub sockets_after_warmup: Option<usize>,
    /// `None`: the server was gone.
    pub sockets_end: Option<usize>,
    /// How long the server took to close its last socket after the soak round.
    pub settle_seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// `None`: not measured.
    pub passed: Option<bool>,
    pub detail: String,
}

impl Check {
    pub fn new(name: &'static str, passed: bool, detail: String) -> Check {
        Check {
            name,
            passed: Some(passed),
            detail,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub scenario: &'static str,
    pub target: String,
    pub machine: String,
    pub warmup_seconds: f64,
    pub duration_seconds: f64,
    pub sample_interval_seconds: f64,
    pub echo: EchoSummary,
    pub idle: IdleSummary,
    pub abusers: AbuseSummary,
    pub server: Option<ServerSummary>,
    pub samples: Vec<Sample>,
    pub checks: Vec<Check>,
    /// Every measured check passed.
    pub passed: bool,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

impl SoakReport {
    pub fn print(&self) {
        println!();
        println!("wsload soak → {}", self.target);
        println!("  machine       {}", self.machine);
        println!(
            "  mix           {} echo, {} idle (held ~{:.0} s, then closed and reopened), {} abusive at once",
            self.echo.connections,
            self.idle.connections,
            self.idle.hold_seconds,
            self.abusers.slots
        );
        println!(
            "  time          warm-up round {:.0} s, soak round {:.0} s, samples every {:.0} s",
            self.warmup_seconds, self.duration_seconds, self.sample_interval_seconds
        );
        let l = &self.echo.latency;
        println!(
            "  echo          {} replies, each checked byte for byte ({:.0}/s, {} B binary); latency µs p50 {:.1}  p99 {:.1}  max {:.1}",
            self.echo.received,
            self.echo.messages_per_second,
            self.echo.payload,
            l.p50_us,
            l.p99_us,
            l.max_us
        );
        let e = &self.echo.errors;
        println!(
            "                errors {} (connect {}, handshake {}, reset {}, closed {}, protocol {}, wrong {}, lost {})",
            e.total(),
            e.connect,
            e.handshake,
            e.reset,
            e.closed,
            e.protocol,
            e.mismatch,
            e.lost
        );
        let idle_errors: u64 = self.idle.errors.values().sum();
        println!(
            "  idle          {} cycles (open, hold, close 1000 answered with 1000, the server's FIN); {idle_errors} went wrong",
            self.idle.cycles
        );
        for (what, n) in &self.idle.errors {
            println!("                {n} × {what}");
        }
        let a = &self.abusers;
        println!(
            "  abusers       {} connections, {} answered otherwise than expected ({} cut short by a round's end, not counted)",
            a.total, a.unexpected, a.cut_short
        );
        for k in &a.kinds {
            let seen: Vec<String> = k
                .observed
                .iter()
                .map(|(o, n)| format!("{n} × {o}"))
                .collect();
            let flag = if k.runs == k.as_expected {
                ""
            } else {
                "  ← unexpected"
            };
            println!(
                "    {:<20} {:>6}  expected {:<24} got {}{flag}",
                k.kind,
                k.runs,
                k.expected,
                if seen.is_empty() {
                    "-".to_string()
                } else {
                    seen.join(", ")
                }
            );
        }
        println!(
            "                never-reads: {:.1} MiB sent unread, {} stalled ticks",
            mib(a.never_reads_bytes),
            a.never_reads_stalls
        );
        match &self.server {
            Some(s) => {
                let some_mib = |b: Option<u64>| {
                    b.map_or_else(|| "-".to_string(), |b| format!("{:.1} MiB", mib(b)))
                };
                println!(
                    "  server RSS    start {:.1} MiB, warm-up peak {}, after warm-up {}, soak's first-half peak {}, peak {:.1} MiB, soak's last sample {:.1} MiB, end {:.1} MiB",
                    mib(s.rss_start_bytes),
                    some_mib(s.rss_warmup_peak_bytes),
                    some_mib(s.rss_warm_bytes),
                    some_mib(s.rss_first_half_peak_bytes),
                    mib(s.rss_peak_bytes),
                    mib(s.rss_loaded_end_bytes),
                    s.rss_end_bytes.map_or(f64::NAN, mib)
                );
                println!(
                    "                end vs baseline ({}): {:+.1}%; end vs start: {:+.1}%",
                    s.rss_baseline, s.rss_end_vs_baseline_percent, s.rss_end_vs_start_percent
                );
                println!(
                    "                bound {:.1} MiB: the baseline {:+.0}%, and what the mix may hold at once: {:.1} MiB of queues, {:.1} MiB of frames",
                    mib(s.rss_bound_bytes),
                    s.rss_tolerance_percent,
                    mib(s.rss_headroom.queues_bytes),
                    mib(s.rss_headroom.frames_bytes)
                );
                println!(
                    "  server fds    {} sockets at the start, {} after the warm-up, {} at the end ({:.1} s after the last client closed)",
                    s.sockets_start,
                    s.sockets_after_warmup
                        .map_or_else(|| "-".to_string(), |n| n.to_string()),
                    s.sockets_end
                        .map_or_else(|| "-".to_string(), |n| n.to_string()),
                    s.settle_seconds
                );
            }
            None => println!("  server        (give --server-pid for its RSS and sockets)"),
        }
        self.print_samples();
        println!("  checks");
        for c in &self.checks {
            let mark = match c.passed {
                Some(true) => "ok  ",
                Some(false) => "FAIL",
                None => "-   ",
            };
            println!("    {mark}  {}: {}", c.name, c.detail);
        }
        println!("  soak {}", if self.passed { "passed" } else { "FAILED" });
    }

    fn print_samples(&self) {
        let n = self.samples.len();
        let step = n.div_ceil(PRINTED_SAMPLES).max(1);
        println!(
            "  over time{}",
            if step > 1 {
                format!(" (every {step}th sample; all of them in --json)")
            } else {
                String::new()
            }
        );
        println!(
            "    {:>8}  {:<9} {:>8} {:>8} {:>11} {:>9} {:>8}",
            "t (s)", "phase", "RSS MiB", "sockets", "echoed", "idle open", "abuses"
        );
        for (i, s) in self.samples.iter().enumerate() {
            // Phase boundaries and the last row always show.
            let boundary = i == 0
                || i + 1 == n
                || self
                    .samples
                    .get(i + 1)
                    .is_some_and(|next| next.phase != s.phase);
            if i % step != 0 && !boundary {
                continue;
            }
            println!(
                "    {:>8.1}  {:<9} {:>8} {:>8} {:>11} {:>9} {:>8}",
                s.seconds,
                s.phase,
                s.rss_bytes
                    .map_or_else(|| "-".to_string(), |b| format!("{:.1}", mib(b))),
                s.sockets.map_or_else(|| "-".to_string(), |n| n.to_string()),
                s.echoed,
                s.idle_open,
                s.abuses
            );
        }
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        crate::report::write_json(self, path)
    }

    /// The server's RSS (top) and open sockets (bottom) over time.
    pub fn write_plot(&self, path: &Path) -> Result<(), String> {
        let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(300);
        let seconds = self.samples.last().map_or(1.0, |s| s.seconds.max(1.0));
        let rss: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|s| Some((s.seconds, mib(s.rss_bytes?))))
            .collect();
        time_series(
            &top,
            &format!("server RSS (MiB), soak {}", self.target),
            seconds,
            rss,
            &BLUE,
        )?;
        let sockets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|s| Some((s.seconds, s.sockets? as f64)))
            .collect();
        time_series(&bottom, "server sockets", seconds, sockets, &RED)?;
        root.present().map_err(|e| e.to_string())
    }
}
