//! One run: start the workers, move them through the phases, sample the server,
//! and gather the report.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::{Latency, Report, ServerUsage};
use crate::server;
use crate::worker::{self, Control, DRAIN, Errors, MEASURE, Plan, STOP, Scenario, WARMUP};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Spec {
    pub scenario: Scenario,
    pub url: String,
    pub threads: usize,
    pub connections: usize,
    pub payload: usize,
    pub text: bool,
    pub pipeline: usize,
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub raw: bool,
    pub deflate: bool,
    pub sources: usize,
    pub server_pid: Option<u32>,
    pub quiet: bool,
    /// Topic: where the publisher connects (default: `url`), for a publisher on
    /// one node and subscribers on another.
    pub publish_url: Option<String>,
    /// wss://: trusted roots (PEM), or no verification.
    pub ca: Option<std::path::PathBuf>,
    pub insecure: bool,
    /// wss://: resume sessions across connections (else full handshakes only).
    pub tls_resume: bool,
}

/// A ws:// (or wss://) URL's address (resolved, loopback only), host header and path.
pub fn parse_url(url: &str, raw: bool) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .or_else(|| raw.then(|| url.strip_prefix("tcp://")).flatten())
        .ok_or_else(|| format!("{url}: only ws:// URLs (tcp:// with --raw)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("{authority}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("{authority}: no IPv4 address"))?;
    // Load goes to this machine only.
    if !addr.ip().is_loopback() {
        return Err(format!("{addr}: wsload only targets 127.0.0.0/8"));
    }
    Ok((addr, authority.to_string(), path.to_string()))
}

pub fn execute(spec: &Spec) -> Result<Report, String> {
    let (target, host, path) = parse_url(&spec.url, spec.raw)?;
    let tls_before = crate::tls::handshakes();
    let tls = crate::tls::options(
        &spec.url,
        spec.ca.as_deref(),
        spec.insecure,
        spec.tls_resume,
    )?;
    let threads = spec.threads.max(1);
    let total = spec.connections;
    // One source address per 10,000 connections (at least one), so no address
    // comes near its ~28,000 ephemeral ports.
    let sources = if spec.sources > 0 {
        spec.sources
    } else {
        total.div_ceil(10_000).max(1)
    };
    let control = Arc::new(Control::default());
    let base = Instant::now();
    let mut handles = Vec::new();
    let mut first_index = 0;
    for t in 0..threads {
        let share = total / threads + usize::from(t < total % threads);
        let plan = Plan {
            scenario: spec.scenario,
            target,
            host: host.clone(),
            path: path.clone(),
            connections: share,
            total_connections: total,
            first_index,
            sources,
            raw: spec.raw,
            deflate: spec.deflate,
            text: spec.text,
            payload: spec.payload,
            pipeline: spec.pipeline,
            rate: if spec.scenario == Scenario::Topic {
                0.0
            } else {
                spec.rate / threads as f64
            },
            sender: t == 0 && spec.scenario != Scenario::Topic,
            base,
            tls: tls.clone(),
        };
        first_index += share;
        let control = Arc::clone(&control);
        let handle = std::thread::Builder::new()
            .name(format!("wsload-{t}"))
            .spawn(move || worker::run(plan, control))
            .map_err(|e| e.to_string())?;
        handles.push(handle);
    }
    // Topic: the publisher is one more connection, on a worker of its own.
    let mut total = total;
    if spec.scenario == Scenario::Topic {
        let url = spec.publish_url.as_deref().unwrap_or(&spec.url);
        let (target, host, path) = parse_url(url, false)?;
        let tls = crate::tls::options(url, spec.ca.as_deref(), spec.insecure, spec.tls_resume)?;
        let plan = Plan {
            scenario: spec.scenario,
            target,
            host,
            path,
            connections: 1,
            total_connections: total,
            first_index: total,
            sources,
            raw: false,
            deflate: false,
            text: true,
            payload: spec.payload,
            pipeline: 1,
            rate: spec.rate,
            sender: true,
            base,
            tls,
        };
        let control = Arc::clone(&control);
        let handle = std::thread::Builder::new()
            .name("wsload-publisher".into())
            .spawn(move || worker::run(plan, control))
            .map_err(|e| e.to_string())?;
        handles.push(handle);
        total += 1;
    }

    let before = spec.server_pid.and_then(server::sample);
    let ramp_started = Instant::now();
    if spec.scenario != Scenario::Connect {
        ramp(spec, &control, total);
    }
    let ramp_time = ramp_started.elapsed();
    let opened = control.opened.load(Relaxed);

    // Idle: the memory the open connections cost, once they have settled.
    let mut idle_rss = None;
    if spec.scenario == Scenario::Idle {
        std::thread::sleep(Duration::from_secs(1));
        idle_rss = spec.server_pid.and_then(server::sample);
    }

    control.phase.store(WARMUP, Relaxed);
    wait(spec.warmup, spec.quiet, "warming up");
    let start_sample = spec.server_pid.and_then(server::sample);
    let start_count = counted(spec, &control);
    control.phase.store(MEASURE, Relaxed);
    let started = Instant::now();
    let timeline = measure(spec, &control);
    let elapsed = started.elapsed();
    let end_count = counted(spec, &control);
    let end_sample = spec.server_pid.and_then(server::sample);
    control.phase.store(DRAIN, Relaxed);
    // Closed loops get time for what is in flight to come back.
    match spec.scenario {
        Scenario::Idle => {}
        Scenario::Fanout => drain_fanout(&control, opened),
        _ => std::thread::sleep(Duration::from_millis(1500)),
    }
    control.phase.store(STOP, Relaxed);

    let mut latency = worker::histogram();
    let mut errors = Errors::default();
    let (mut sent, mut received) = (0, 0);
    for handle in handles {
        let outcome = handle
            .join()
            .map_err(|_| "a worker thread panicked".to_string())?
            .map_err(|e| format!("worker: {e}"))?;
        latency.add(&outcome.latency).map_err(|e| e.to_string())?;
        errors.add(&outcome.errors);
        sent += outcome.sent;
        received += outcome.received;
    }
    if spec.scenario == Scenario::Fanout {
        // Every message sent is due to every connection open, its sender included;
        // the checked deliveries are those received that were not mismatches.
        let delivered = received.saturating_sub(errors.mismatch);
        errors.lost += (sent * opened).saturating_sub(delivered);
    }
    if spec.scenario == Scenario::Topic {
        // Every message sent is due to every subscriber open (all but the publisher).
        let delivered = received.saturating_sub(errors.mismatch);
        errors.lost += (sent * opened.saturating_sub(1)).saturating_sub(delivered);
    }

    let measured = end_count.saturating_sub(start_count);
    let rate = measured as f64 / elapsed.as_secs_f64();
    let server = spec.server_pid.map(|pid| {
        let cpu_ns = match (start_sample, end_sample) {
            (Some(a), Some(b)) => b.cpu_ns.saturating_sub(a.cpu_ns),
            _ => 0,
        };
        let rss_base = before.map_or(0, |s| s.rss_bytes);
        let rss_loaded = idle_rss.or(end_sample).map_or(0, |s| s.rss_bytes);
        ServerUsage {
            pid,
            cpu_percent: cpu_ns as f64 / elapsed.as_nanos() as f64 * 100.0,
            cpu_us_per_message: if measured > 0 {
                cpu_ns as f64 / 1000.0 / measured as f64
            } else {
                0.0
            },
            rss_before_bytes: rss_base,
            rss_loaded_bytes: rss_loaded,
            rss_per_connection_bytes: if opened > 0 {
                rss_loaded.saturating_sub(rss_base) as f64 / opened as f64
            } else {
                0.0
            },
        }
    });
    Ok(Report {
        scenario: format!("{:?}", spec.scenario).to_lowercase(),
        target: spec.url.clone(),
        machine: server::machine(),
        threads,
        connections: total,
        connections_open: opened,
        ramp_seconds: ramp_time.as_secs_f64(),
        payload: spec.payload,
        text: spec.text,
        raw: spec.raw,
        pipeline: spec.pipeline,
        rate_target: spec.rate,
        duration_seconds: elapsed.as_secs_f64(),
        messages: measured,
        messages_per_second: rate,
        sent,
        received,
        latency: Latency::from_histogram(&latency),
        errors,
        server,
        tls_handshakes: tls.is_some().then(|| {
            let (full, resumed) = crate::tls::handshakes();
            (full - tls_before.0, resumed - tls_before.1)
        }),
        timeline,
    })
}

/// What the run counts: handshakes for connect, messages otherwise.
fn counted(spec: &Spec, control: &Control) -> u64 {
    if spec.scenario == Scenario::Connect {
        control.handshakes.load(Relaxed)
    } else {
        control.measured.load(Relaxed)
    }
}

/// Fanout: waits until every message sent has reached every open connection, while
/// deliveries keep coming (1.5 s without one ends it), for at most 30 s.
fn drain_fanout(control: &Control, connections: u64) {
    let started = Instant::now();
    let mut progress = (control.received.load(Relaxed), started);
    // Workers see the drain within a loop turn (10 ms) and publish what they sent.
    std::thread::sleep(Duration::from_millis(100));
    while started.elapsed() < Duration::from_secs(30) {
        let received = control.received.load(Relaxed);
        if received >= control.sent.load(Relaxed) * connections {
            return;
        }
        let now = Instant::now();
        if received > progress.0 {
            progress = (received, now);
        } else if now.duration_since(progress.1) > Duration::from_millis(1500) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bar(len: u64, quiet: bool, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Waits until every connection is open or failed (or the ramp times out).
fn ramp(spec: &Spec, control: &Control, total: usize) {
    let bar = bar(
        total as u64,
        spec.quiet,
        "connecting {bar:40} {pos}/{len} ({per_sec}) {msg}",
    );
    // Generous: a slow server still gets its connections, a dead one ends the run.
    let limit = Duration::from_secs(30) + Duration::from_millis(total as u64);
    let started = Instant::now();
    loop {
        let opened = control.opened.load(Relaxed);
        let failed = control.failed.load(Relaxed);
        bar.set_position(opened);
        if failed > 0 {
            bar.set_message(format!("{failed} failed"));
        }
        if opened + failed >= total as u64 || started.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bar.finish_and_clear();
}

fn wait(duration: Duration, quiet: bool, what: &str) {
    if duration.is_zero() {
        return;
    }
    let bar = bar(
        duration.as_millis() as u64,
        quiet,
        "{msg} {bar:40} {elapsed}",
    );
    bar.set_message(what.to_string());
    let started = Instant::now();
    while started.elapsed() < duration {
        bar.set_position(started.elapsed().as_millis() as u64);
        std::thread::sleep(
            Duration::from_millis(50).min(duration.saturating_sub(started.elapsed())),
        );
    }
    bar.finish_and_clear();
}

/// The measured window: counts per second, with a progress bar.
fn measure(spec: &Spec, control: &Control) -> Vec<f64> {
    let bar = bar(
        spec.duration.as_millis() as u64,
        spec.quiet,
        "measuring {bar:40} {elapsed}/{duration} {msg}",
    );
    let started = Instant::now();
    let mut timeline = Vec::new();
    let mut last = counted(spec, control);
    let mut last_at = started;
    while started.elapsed() < spec.duration {
        let left = spec.duration.saturating_sub(started.elapsed());
        std::thread::sleep(Duration::from_secs(1).min(left));
        let now = Instant::now();
        let count = counted(spec, control);
        let per_second = (count - last) as f64 / now.duration_since(last_at).as_secs_f64();
        timeline.push(per_second);
        bar.set_position(started.elapsed().as_millis() as u64);
        bar.set_message(format!("{per_second:.0}/s"));
        last = count;
        last_at = now;
    }
    bar.finish_and_clear();
    timeline
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_to_loopback_only() {
        let (addr, host, path) = parse_url("ws://127.0.0.1:9001/chat", false).unwrap();
        assert_eq!(
            (addr.port(), host.as_str(), path.as_str()),
            (9001, "127.0.0.1:9001", "/chat")
        );
        assert_eq!(parse_url("ws://127.0.0.2:80", false).unwrap().2, "/");
        assert!(parse_url("ws://10.0.0.1:80/", false).is_err());
        assert!(parse_url("http://127.0.0.1:80/", false).is_err());
        assert!(parse_url("tcp://127.0.0.1:80", true).is_ok());
    }
}
