//! The soak: echo, idle and abusive clients mixed against one server for a long
//! time, the server's memory and sockets sampled from /proc, and at the end a check
//! that everything it held has been given back.
//!
//! A soak runs two rounds of the mix. The warm-up round opens every abusive slot
//! as a client that never reads, all at once: the most the mix can make the server
//! hold at the same time (a backpressure queue each), on top of the rest. Every
//! client closes, and the server's sockets must come back to their count before
//! the soak. The soak round follows, in which the slots cycle through the kinds;
//! every client closes again, the sockets must come back, and the server's RSS must
//! end within a bound set by the **baseline**: the most RSS the server had in the
//! first half of the run (the warm-up round and the first half of the soak round,
//! read every 100 ms).
//!
//! Why that baseline: a server whose memory is bounded reaches its high-water mark
//! (its buffer pools full, its allocator's arenas grown) and stays there; one that
//! leaks keeps growing through the second half. Neither the RSS before the soak
//! (about 2.5 MiB for the echo example) nor the RSS once the warm-up has settled will
//! do: on a server of a few MiB, whether the allocator keeps a freed 1 MiB queue
//! moves the settled RSS by 10 to 40% from run to run, and the echo example's RSS
//! rises for about five minutes of the mix before it levels off. Those figures are
//! reported beside the baseline.
//!
//! The bound is the baseline, plus the tolerance (`--rss-tolerance`, 10%: the
//! allocator's own bookkeeping, the reactors' tables and pools settling at the mix's
//! high-water mark), plus the **headroom**: everything the mix can make the server
//! hold at once, from the server's limits ([`Headroom`]: a queue at the backpressure
//! limit and one turn's read for each abusive slot, a frame and its reply for each
//! connection that sends; 12.8 MiB for the default mix). The end RSS shows the
//! run's high-water mark, not what the server still holds, and a busy machine can
//! move that mark into the second half without the server holding a byte more than
//! its limits allow (which reactor's arena a queue lands in, how full the warm-up's
//! queues get while wsload waits for the CPU). The headroom makes the check
//! independent of that. The tolerance alone, tuned on an idle machine, failed a
//! bounded server at +11 to +16% on a busy one. A leak grows with what is served:
//! 16 KiB a connection is about 45 MiB over the second half of the CI's 20 s soak.
//!
//! Every wait that ends a phase (the echoes in flight coming back, the server's
//! sockets closing, an abuser's answer) ends on its condition; its time limit is a
//! hang guard of a minute, not a measure.

pub mod abuse;
mod churn;
mod headroom;
mod report;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub use report::SoakReport;
use report::{AbuseSummary, Check, EchoSummary, IdleSummary, KindSummary, Sample, ServerSummary};

use crate::report::Latency;
use crate::run::parse_url;
use crate::server;
use crate::worker::{self, Control, DRAIN, Errors, MEASURE, STOP, Scenario};
pub use abuse::Abuse;
pub use headroom::Headroom;

/// How long the server gets to close every connection after the clients closed
/// theirs before its sockets are called left open. A hang guard, not a measure: the
/// wait ends as soon as the count is back, and a busy machine may take many times
/// the server's 5 s close timeout (the longest a draining connection waits).
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// How long the echoes in flight get to come back once sending stops, before the
/// missing ones are counted lost. A hang guard as well: the wait ends as soon as
/// every reply is in.
const ECHO_DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// How often the server's RSS is read between samples, for its peaks.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// Everything a soak needs.
#[derive(Clone, Debug)]
pub struct Spec {
    pub url: String,
    pub duration: Duration,
    pub warmup: Duration,
    pub echo_connections: usize,
    pub echo_payload: usize,
    pub idle_connections: usize,
    pub idle_hold: Duration,
    pub abusers: usize,
    /// The kinds of abuse the abusive slots cycle through.
    pub kinds: Vec<Abuse>,
    /// Zero: about 30 samples over the soak, at least one a second.
    pub sample_interval: Duration,
    pub server_pid: Option<u32>,
    /// The end RSS may exceed the baseline by this fraction (0.10: 10%).
    pub rss_tolerance: f64,
    pub quiet: bool,
}

/// What one round of the mix gave.
struct Round {
    echo_sent: u64,
    echo_received: u64,
    echo_errors: Errors,
    latency: hdrhistogram::Histogram<u64>,
    churn: churn::Outcome,
    /// The most RSS the server had during the round, its closes included.
    rss_peak: Option<u64>,
    /// The most in the first half of the round.
    rss_first_half_peak: Option<u64>,
}

/// The server seen from /proc, and the samples taken so far.
struct Sampler {
    pid: Option<u32>,
    clock: Instant,
    interval: Duration,
    samples: Vec<Sample>,
    /// Echoes of the rounds already over, so the column counts from the start.
    echoed_before: u64,
    abuses_before: u64,
    bar: ProgressBar,
    /// The most RSS seen since `take_peak` was last called.
    peak: Option<u64>,
}

impl Sampler {
    fn rss(&mut self) -> Option<u64> {
        let rss = self.pid.and_then(server::sample).map(|s| s.rss_bytes);
        self.peak = self.peak.max(rss);
        rss
    }

    /// Reads the RSS between samples, so that a short peak is not missed, and
    /// moves the progress bar.
    fn watch(&mut self) {
        self.rss();
        self.bar
            .set_position(self.clock.elapsed().as_millis() as u64);
    }

    fn take_peak(&mut self) -> Option<u64> {
        self.peak.take()
    }

    fn sockets(&self) -> Option<usize> {
        self.pid.and_then(server::socket_count)
    }

    fn record(&mut self, phase: &'static str, echoed: u64, idle_open: u64, abuses: u64) {
        let sample = Sample {
            seconds: self.clock.elapsed().as_secs_f64(),
            phase,
            rss_bytes: self.rss(),
            sockets: self.sockets(),
            echoed: self.echoed_before + echoed,
            idle_open,
            abuses: self.abuses_before + abuses,
        };
        self.bar
            .set_position(self.clock.elapsed().as_millis() as u64);
        if let Some(rss) = sample.rss_bytes {
            self.bar.set_message(format!(
                "{phase}: RSS {:.1} MiB, {} sockets",
                rss as f64 / 1048576.0,
                sample.sockets.unwrap_or(0)
            ));
        }
        self.samples.push(sample);
    }
}

pub fn execute(spec: &Spec) -> Result<SoakReport, String> {
    let (target, host, path) = parse_url(&spec.url, false)?;
    let interval = if spec.sample_interval.is_zero() {
        (spec.duration / 30).max(Duration::from_secs(1))
    } else {
        spec.sample_interval
    };
    let bar = if spec.quiet {
        ProgressBar::hidden()
    } else {
        let total = spec.warmup + spec.duration;
        let bar = ProgressBar::new(total.as_millis() as u64);
        if let Ok(style) = ProgressStyle::with_template("soak {bar:40} {elapsed} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    };
    let mut sampler = Sampler {
        pid: spec.server_pid,
        clock: Instant::now(),
        interval,
        samples: Vec::new(),
        echoed_before: 0,
        abuses_before: 0,
        bar,
        peak: None,
    };
    sampler.record("start", 0, 0, 0);
    let rss_start = sampler.samples[0].rss_bytes;
    let sockets_start = sampler.samples[0].sockets;
    if let Some(pid) = spec.server_pid
        && (rss_start.is_none() || sockets_start.is_none())
    {
        return Err(format!(
            "cannot read /proc/{pid}/status and /proc/{pid}/fd: no such process, or not ours"
        ));
    }

    let churn_plan = churn::Plan {
        target,
        host: host.clone(),
        path: path.clone(),
        idle: spec.idle_connections,
        idle_hold: spec.idle_hold,
        abusers: spec.abusers,
        kinds: spec.kinds.clone(),
        prime: false,
    };
    let echo_plan = worker::Plan {
        scenario: Scenario::Echo,
        target,
        host,
        path,
        connections: spec.echo_connections,
        total_connections: spec.echo_connections,
        first_index: 0,
        sources: 1,
        raw: false,
        deflate: false,
        text: false,
        payload: spec.echo_payload,
        pipeline: 1,
        rate: 0.0,
        sender: false,
        base: Instant::now(),
        tls: None,
    };

    let mut rounds: Vec<Round> = Vec::new();
    let mut after_warmup = None;
    if !spec.warmup.is_zero() {
        let primed = churn::Plan {
            prime: true,
            ..churn_plan.clone()
        };
        rounds.push(round(
            "warm-up",
            spec.warmup,
            &echo_plan,
            &primed,
            &mut sampler,
        )?);
        let (sockets, _) = settle(&mut sampler, sockets_start);
        after_warmup = Some((sockets, sampler.rss()));
        sampler.record("settled", 0, 0, 0);
    }
    let loaded_from = sampler.samples.len();
    rounds.push(round(
        "soak",
        spec.duration,
        &echo_plan,
        &churn_plan,
        &mut sampler,
    )?);
    let rss_warmup_peak = (!spec.warmup.is_zero())
        .then(|| rounds.first().and_then(|r| r.rss_peak))
        .flatten();
    let rss_first_half_peak = rounds.last().and_then(|r| r.rss_first_half_peak);
    let rss_loaded_end = sampler.samples[loaded_from..]
        .iter()
        .rev()
        .find(|s| s.phase == "soak")
        .and_then(|s| s.rss_bytes);
    let (sockets_end, settle_time) = settle(&mut sampler, sockets_start);
    sampler.record("end", 0, 0, 0);
    let rss_end = sampler.samples.last().and_then(|s| s.rss_bytes);
    sampler.bar.finish_and_clear();

    // Both rounds count: a wrong answer in the warm-up is as wrong as any.
    let mut latency = worker::histogram();
    let mut echo_errors = Errors::default();
    let (mut sent, mut received) = (0, 0);
    let mut churned = churn::Outcome::default();
    for r in &rounds {
        latency.add(&r.latency).map_err(|e| e.to_string())?;
        echo_errors.add(&r.echo_errors);
        sent += r.echo_sent;
        received += r.echo_received;
        churned.add(&r.churn);
    }
    let seconds = (spec.warmup + spec.duration).as_secs_f64();

    let server = spec.server_pid.map(|pid| {
        let rss_warm = after_warmup.and_then(|(_, rss)| rss);
        // The most the server needed in the first half of the run.
        let baseline = rss_warmup_peak
            .max(rss_first_half_peak)
            .or(rss_start)
            .unwrap_or(0);
        let percent = |from: u64| match (rss_end, from) {
            (Some(end), from) if from > 0 => (end as f64 / from as f64 - 1.0) * 100.0,
            _ => f64::NAN,
        };
        let headroom = Headroom::of_mix(
            spec.echo_connections,
            spec.echo_payload,
            spec.abusers,
            &spec.kinds,
        );
        let bound = (baseline as f64 * (1.0 + spec.rss_tolerance)) as u64 + headroom.bytes();
        ServerSummary {
            pid,
            rss_start_bytes: rss_start.unwrap_or(0),
            rss_warmup_peak_bytes: rss_warmup_peak,
            rss_first_half_peak_bytes: rss_first_half_peak,
            rss_warm_bytes: rss_warm,
            rss_peak_bytes: sampler
                .samples
                .iter()
                .filter_map(|s| s.rss_bytes)
                .chain(rounds.iter().filter_map(|r| r.rss_peak))
                .max()
                .unwrap_or(0),
            rss_loaded_end_bytes: rss_loaded_end.unwrap_or(0),
            rss_end_bytes: rss_end,
            rss_baseline: "the peak of the first half of the run",
            rss_baseline_bytes: baseline,
            rss_end_vs_baseline_percent: percent(baseline),
            rss_end_vs_start_percent: percent(rss_start.unwrap_or(0)),
            rss_tolerance_percent: spec.rss_tolerance * 100.0,
            rss_headroom: headroom,
            rss_bound_bytes: bound,
            sockets_start: sockets_start.unwrap_or(0),
            sockets_after_warmup: after_warmup.and_then(|(s, _)| s),
            sockets_end,
            settle_seconds: settle_time.as_secs_f64(),
        }
    });

    let kinds: Vec<KindSummary> = spec
        .kinds
        .iter()
        .map(|&kind| {
            let seen = churned.abuses.get(&kind).cloned().unwrap_or_default();
            let runs = seen.values().sum();
            let as_expected = seen.get(&kind.expected()).copied().unwrap_or(0);
            KindSummary {
                kind: kind.name(),
                expected: kind.expected().to_string(),
                runs,
                as_expected,
                observed: seen.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
            }
        })
        .collect();
    let abusers = AbuseSummary {
        slots: spec.abusers,
        total: kinds.iter().map(|k| k.runs).sum(),
        unexpected: kinds.iter().map(|k| k.runs - k.as_expected).sum(),
        cut_short: churned.cut_short,
        never_reads_bytes: churned.never_reads_bytes,
        never_reads_stalls: churned.never_reads_stalls,
        kinds,
    };
    let echo = EchoSummary {
        connections: spec.echo_connections,
        payload: spec.echo_payload,
        sent,
        received,
        messages_per_second: received as f64 / seconds,
        latency: Latency::from_histogram(&latency),
        errors: echo_errors,
    };
    let idle = IdleSummary {
        connections: spec.idle_connections,
        hold_seconds: spec.idle_hold.as_secs_f64(),
        cycles: churned.idle_cycles,
        errors: churned.idle_errors.clone(),
    };
    let checks = checks(spec, &echo, &idle, &abusers, server.as_ref());
    let passed = checks.iter().all(|c| c.passed != Some(false));
    Ok(SoakReport {
        scenario: "soak",
        target: spec.url.clone(),
        machine: server::machine(),
        warmup_seconds: spec.warmup.as_secs_f64(),
        duration_seconds: spec.duration.as_secs_f64(),
        sample_interval_seconds: interval.as_secs_f64(),
        echo,
        idle,
        abusers,
        server,
        samples: sampler.samples,
        checks,
        passed,
    })
}

/// One round of the mix: the echo worker and the churning thread for `length`,
/// sampled; then every client closes.
fn round(
    phase: &'static str,
    length: Duration,
    echo_plan: &worker::Plan,
    churn_plan: &churn::Plan,
    sampler: &mut Sampler,
) -> Result<Round, String> {
    let control = Arc::new(Control::default());
    // Sending starts with each connection's upgrade: there is no ramp to wait for.
    control.phase.store(MEASURE, Relaxed);
    let echo = (echo_plan.connections > 0)
        .then(|| {
            let (plan, control) = (echo_plan.clone(), Arc::clone(&control));
            std::thread::Builder::new()
                .name("wsload-echo".into())
                .spawn(move || worker::run(plan, control))
        })
        .transpose()
        .map_err(|e| e.to_string())?;
    let shared = Arc::new(churn::Shared::default());
    let churning = {
        let (plan, shared) = (churn_plan.clone(), Arc::clone(&shared));
        std::thread::Builder::new()
            .name("wsload-churn".into())
            .spawn(move || churn::run(plan, shared))
            .map_err(|e| e.to_string())?
    };

    let live = |sampler: &mut Sampler, phase| {
        sampler.record(
            phase,
            control.measured.load(Relaxed),
            shared.idle_open.load(Relaxed),
            shared.abuses.load(Relaxed),
        )
    };
    sampler.take_peak();
    let started = Instant::now();
    let mut next = started + sampler.interval;
    let mut first_half = None;
    loop {
        let now = Instant::now();
        let end = started + length;
        if now >= end {
            break;
        }
        if first_half.is_none() && now >= started + length / 2 {
            first_half = Some(sampler.peak);
        }
        std::thread::sleep(
            next.min(end)
                .saturating_duration_since(now)
                .min(WATCH_EVERY),
        );
        sampler.watch();
        if Instant::now() >= next {
            live(sampler, phase);
            next += sampler.interval;
        }
    }
    live(sampler, phase);

    // Every client closes; the RSS is still watched, as the closes make work too.
    control.phase.store(DRAIN, Relaxed);
    shared.stop.store(true, Relaxed);
    let drain_began = Instant::now();
    while !echoes_back(&control) && drain_began.elapsed() < ECHO_DRAIN_LIMIT {
        std::thread::sleep(Duration::from_millis(10));
        sampler.watch();
    }
    control.phase.store(STOP, Relaxed);
    while !churning.is_finished() || echo.as_ref().is_some_and(|h| !h.is_finished()) {
        std::thread::sleep(WATCH_EVERY);
        sampler.watch();
    }
    let echo_outcome = echo
        .map(|handle| {
            handle
                .join()
                .map_err(|_| "the echo worker panicked".to_string())?
                .map_err(|e| format!("echo worker: {e}"))
        })
        .transpose()?;
    let churn = churning
        .join()
        .map_err(|_| "the churning thread panicked".to_string())?
        .map_err(|e| format!("churning thread: {e}"))?;
    let rss_peak = sampler.take_peak();
    let rss_first_half_peak = first_half.flatten().or(rss_peak);
    sampler.echoed_before += control.measured.load(Relaxed);
    sampler.abuses_before += shared.abuses.load(Relaxed);
    let (echo_sent, echo_received, echo_errors, latency) = match echo_outcome {
        Some(o) => (o.sent, o.received, o.errors, o.latency),
        None => (0, 0, Errors::default(), worker::histogram()),
    };
    Ok(Round {
        echo_sent,
        echo_received,
        echo_errors,
        latency,
        churn,
        rss_peak,
        rss_first_half_peak,
    })
}

/// Whether every echo sent has had its reply. The echo clients run a closed loop
/// (one message in flight per connection, the next sent with the reply), so while
/// they send, the published count of replies trails the count sent by the messages in
/// flight; it catches up only once sending has stopped and the last replies are in.
/// The replies are read first: a publication between the two reads can only make
/// them look short.
fn echoes_back(control: &Control) -> bool {
    let received = control.received.load(Relaxed);
    received >= control.sent.load(Relaxed)
}

/// Waits (at most [`SETTLE_LIMIT`]) until the server's socket count is back to
/// `start`; returns the last count and how long it took.
fn settle(sampler: &mut Sampler, start: Option<usize>) -> (Option<usize>, Duration) {
    let began = Instant::now();
    loop {
        let now = sampler.sockets();
        let back = match (now, start) {
            (Some(now), Some(start)) => now <= start,
            _ => true,
        };
        if back || began.elapsed() >= SETTLE_LIMIT {
            return (now, began.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The RSS check's name.
const RSS_CHECK: &str =
    "server: RSS at the end within the baseline, the tolerance and the mix's headroom";

fn checks(
    spec: &Spec,
    echo: &EchoSummary,
    idle: &IdleSummary,
    abusers: &AbuseSummary,
    server: Option<&ServerSummary>,
) -> Vec<Check> {
    let e = &echo.errors;
    let others = e.connect + e.handshake + e.reset + e.closed + e.protocol;
    let idle_errors: u64 = idle.errors.values().sum();
    let mut checks = vec![
        Check::new(
            "echo: every reply arrived, byte for byte",
            e.total() == 0,
            format!(
                "{} sent, {} received, {} wrong, {} lost, {others} connections failed",
                echo.sent, echo.received, e.mismatch, e.lost
            ),
        ),
        Check::new(
            "idle: every connection closed with the handshake",
            idle_errors == 0,
            format!("{} cycles, {idle_errors} went wrong", idle.cycles),
        ),
        Check::new(
            "abusers: every answer as expected",
            abusers.unexpected == 0,
            format!(
                "{} connections, {} unexpected",
                abusers.total, abusers.unexpected
            ),
        ),
    ];
    match server {
        Some(s) => {
            // A count that cannot be read at the end (the server is gone) fails.
            let back = |n: Option<usize>| n.is_some_and(|n| n <= s.sockets_start);
            let warm_ok = spec.warmup.is_zero() || back(s.sockets_after_warmup);
            let count = |n: Option<usize>| n.map_or_else(|| "-".to_string(), |n| n.to_string());
            checks.push(Check::new(
                "server: sockets back to the start",
                warm_ok && back(s.sockets_end),
                format!(
                    "{} at the start, {} after the warm-up, {} at the end",
                    s.sockets_start,
                    count(s.sockets_after_warmup),
                    count(s.sockets_end)
                ),
            ));
            let mib = |b: u64| b as f64 / 1048576.0;
            checks.push(Check::new(
                RSS_CHECK,
                s.rss_baseline_bytes > 0 && s.rss_end_bytes.is_some_and(|e| e <= s.rss_bound_bytes),
                format!(
                    "{:.1} MiB at the end ({:+.1}% on the baseline), at most {:.1} MiB: the \
                     baseline {:.1} MiB ({}), {:+.0}%, and {:.1} MiB the mix may hold at once",
                    s.rss_end_bytes.map_or(f64::NAN, mib),
                    s.rss_end_vs_baseline_percent,
                    mib(s.rss_bound_bytes),
                    mib(s.rss_baseline_bytes),
                    s.rss_baseline,
                    spec.rss_tolerance * 100.0,
                    mib(s.rss_headroom.bytes())
                ),
            ));
        }
        None => {
            for name in ["server: sockets back to the start", RSS_CHECK] {
                checks.push(Check {
                    name,
                    passed: None,
                    detail: "not measured: give --server-pid".into(),
                });
            }
        }
    }
    checks
}
