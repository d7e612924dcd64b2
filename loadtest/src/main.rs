//! wsload: a load-test harness for WebSocket servers, on wsreactor's client role.
//!
//! `wsload` alone (or `wsload demo`) builds and starts the echo example, runs a short
//! echo and idle scenario against it, prints the report and stops the server.
//! Every run targets 127.0.0.0/8 only, is bounded in connections and time, and
//! stops by itself.

mod client;
mod net;
mod report;
mod run;
mod server;
mod soak;
mod tls;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use run::Spec;
use worker::Scenario;

/// The most connections one wsload process opens: the open-files limit here is
/// 20,000 per process.
const MAX_CONNECTIONS: usize = 19_500;

#[derive(Parser)]
#[command(
    name = "wsload",
    version,
    about = "Load tests for WebSocket servers (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Closed loop: every echo sends the next message.
    Echo(EchoArgs),
    /// Open loop at a fixed total rate; latency from each message's scheduled time.
    Rate(RateArgs),
    /// Open connections, hold them, and report the server's memory per connection.
    Idle(IdleArgs),
    /// Handshakes per second at a fixed concurrency.
    Connect(ConnectArgs),
    /// Receivers on a chat server and one sender: fan-out latency and deliveries.
    Broadcast(BroadcastArgs),
    /// Every client sends, the server publishes to all; each client sends again once
    /// it has N deliveries (N: all connections): rounds of N² deliveries.
    Fanout(FanoutArgs),
    /// Subscribers to one topic on `--url`, one publisher on `--publish-url` (another
    /// node of a cluster, or the same server) at a fixed rate: publish-to-delivery
    /// latency and deliveries, through the pubsub example's protocol.
    Topic(TopicArgs),
    /// Start the echo example and run a short echo and idle scenario against it.
    Demo(DemoArgs),
    /// Echo, idle and abusive clients mixed for a long time; the server's RSS over
    /// time, and at the end its sockets and RSS back where they started.
    Soak(SoakArgs),
    /// Write a CA (ca.pem, for --ca) and a certificate it signed for localhost and
    /// 127.0.0.1 with its key (cert.pem, key.pem, for the server) into a folder, for
    /// wss:// runs (wsload built with `--features tls`).
    Cert(CertArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// The server: ws://HOST:PORT/PATH on 127.0.0.0/8 (tcp://HOST:PORT with --raw).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Load-generating threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The server's process id: samples its CPU and memory over the measured window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Source addresses to spread connections over (127.0.0.1..=127.0.0.N; 0: one
    /// per 10,000 connections).
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot (throughput over time, latency percentiles).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Exit non-zero if any error was counted (for CI).
    #[arg(long)]
    strict: bool,
    /// wss://: trust the certificates in this PEM file (wsload built with
    /// `--features tls`).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// wss://: take any certificate (signatures still checked).
    #[arg(long)]
    insecure: bool,
    /// wss://: resume TLS sessions (the server's tickets) on later connections;
    /// without it every connection makes a full handshake.
    #[arg(long)]
    tls_resume: bool,
}

#[derive(Args, Clone)]
struct Timing {
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Args, Clone)]
struct EchoArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 32)]
    payload: usize,
    /// Text messages (default: binary).
    #[arg(long, conflicts_with = "binary")]
    text: bool,
    /// Binary messages (the default).
    #[arg(long)]
    binary: bool,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Plain TCP, no WebSocket (for the raw echo ceiling).
    #[arg(long, conflicts_with = "deflate")]
    raw: bool,
    /// Offer permessage-deflate and send a JSON-like market-data stream (text of
    /// about --payload bytes, 16 messages in turn), compressed where it was
    /// negotiated; the server's compressed replies are inflated and checked.
    #[arg(long)]
    deflate: bool,
}

#[derive(Args, Clone)]
struct RateArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    #[arg(long, default_value_t = 100)]
    connections: usize,
    #[arg(long, default_value_t = 32)]
    payload: usize,
    #[arg(long)]
    text: bool,
    /// Total messages per second over all connections.
    #[arg(long, default_value_t = 10_000.0)]
    rate: f64,
}

#[derive(Args, Clone)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to hold the connections after measuring.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Offer permessage-deflate in every upgrade.
    #[arg(long)]
    deflate: bool,
}

#[derive(Args, Clone)]
struct ConnectArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
}

#[derive(Args, Clone)]
struct BroadcastArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    /// Receiving connections (the sender is one more).
    #[arg(long, default_value_t = 100)]
    receivers: usize,
    /// Messages per second from the sender.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

#[derive(Args, Clone)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    /// Connections, over all threads: each round of each client waits for this many
    /// deliveries.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Payload bytes per message (at least 8: the sender and round lead it).
    #[arg(long, default_value_t = 32)]
    payload: usize,
}

#[derive(Args, Clone)]
struct TopicArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    timing: Timing,
    /// Where the publisher connects (default: --url).
    #[arg(long)]
    publish_url: Option<String>,
    /// Subscribing connections, over all --threads (the publisher is one more).
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Messages per second from the publisher.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Payload bytes after `pub TOPIC ` (at least 32: send time and sequence lead it).
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

#[derive(Args, Clone)]
struct DemoArgs {
    /// Connections for the echo scenario.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Connections for the idle scenario.
    #[arg(long, default_value_t = 5000)]
    idle_connections: usize,
    /// Measured seconds of echo.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Reactor threads of the echo server.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct SoakArgs {
    /// The server: ws://HOST:PORT/PATH on 127.0.0.0/8.
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Seconds of the soak round (after the warm-up round).
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Seconds of the warm-up round: the same mix, then every client closes and the
    /// server's RSS is the baseline the end is held to (0: the RSS before the soak).
    #[arg(long, default_value_t = 5.0)]
    warmup: f64,
    /// Closed-loop echo connections, every reply checked byte for byte.
    #[arg(long, default_value_t = 50)]
    echo_connections: usize,
    /// Payload bytes of each echo message.
    #[arg(long, default_value_t = 128)]
    echo_payload: usize,
    /// Idle connections, each held, closed and reopened on a cycle.
    #[arg(long, default_value_t = 1000)]
    idle_connections: usize,
    /// Mean seconds an idle connection is held (each hold is 0.5 to 1.5 times it).
    #[arg(long, default_value_t = 5.0)]
    idle_hold: f64,
    /// Abusive connections at once, each cycling through every kind of abuse.
    #[arg(long, default_value_t = 10)]
    abusers: usize,
    /// The kinds of abuse, comma-separated (default: all of them): slowloris,
    /// garbage, oversized-handshake, huge-frame, invalid-utf8, unmasked,
    /// reset-mid-frame, vanish, never-reads, flood-reset.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Seconds between samples of the server (0: about 30 over the soak round, at
    /// least one a second).
    #[arg(long, default_value_t = 0.0)]
    sample_interval: f64,
    /// The server's process id: its RSS and sockets from /proc. Required by --strict.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The end RSS may exceed the baseline by this many percent.
    #[arg(long, default_value_t = 10.0)]
    rss_tolerance: f64,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot of the server's RSS and sockets over time.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Exit non-zero if any echo was wrong or lost, any idle close or abuser's
    /// answer was not the one expected, the server's sockets did not come back, or
    /// its RSS exceeded the bound.
    #[arg(long)]
    strict: bool,
}

#[derive(Args, Clone)]
struct CertArgs {
    /// The folder to write ca.pem, cert.pem and key.pem into (made if missing; files
    /// there of those names are replaced).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Demo(DemoArgs {
        connections: 100,
        idle_connections: 5000,
        duration: 5.0,
        server_threads: 1,
        quiet: false,
    }));
    match dispatch(command) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wsload: {e}");
            ExitCode::from(2)
        }
    }
}

fn seconds(s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("{s}: not a duration in seconds"))
}

fn spec(common: &Common, scenario: Scenario) -> Spec {
    Spec {
        scenario,
        url: common.url.clone(),
        threads: common.threads,
        connections: 0,
        payload: 0,
        text: false,
        pipeline: 1,
        rate: 0.0,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        raw: false,
        deflate: false,
        sources: common.sources,
        server_pid: common.server_pid,
        quiet: common.quiet,
        publish_url: None,
        ca: common.ca.clone(),
        insecure: common.insecure,
        tls_resume: common.tls_resume,
    }
}

/// Runs a command; `Ok(false)` when `--strict` saw errors.
fn dispatch(command: Command) -> Result<bool, String> {
    let (common, spec) = match command {
        Command::Demo(args) => return demo(&args),
        Command::Soak(args) => return soak(&args),
        Command::Cert(args) => {
            let [ca, cert, key] = tls::write_certs(&args.out)?;
            println!("ca   {}", ca.display());
            println!("cert {}", cert.display());
            println!("key  {}", key.display());
            return Ok(true);
        }
        Command::Echo(a) => {
            let mut s = spec(&a.common, Scenario::Echo);
            s.connections = a.connections;
            s.payload = a.payload;
            s.text = a.text && !a.binary;
            s.pipeline = a.pipeline.max(1);
            s.raw = a.raw;
            s.deflate = a.deflate;
            s.text |= a.deflate;
            s.duration = seconds(a.timing.duration)?;
            s.warmup = seconds(a.timing.warmup)?;
            (a.common, s)
        }
        Command::Rate(a) => {
            let mut s = spec(&a.common, Scenario::Rate);
            s.connections = a.connections;
            s.payload = a.payload;
            s.text = a.text;
            s.rate = a.rate;
            s.duration = seconds(a.timing.duration)?;
            s.warmup = seconds(a.timing.warmup)?;
            (a.common, s)
        }
        Command::Idle(a) => {
            let mut s = spec(&a.common, Scenario::Idle);
            s.connections = a.connections;
            s.deflate = a.deflate;
            s.duration = seconds(a.duration)?;
            s.warmup = Duration::ZERO;
            (a.common, s)
        }
        Command::Connect(a) => {
            let mut s = spec(&a.common, Scenario::Connect);
            s.connections = a.concurrency.max(1);
            s.duration = seconds(a.timing.duration)?;
            s.warmup = seconds(a.timing.warmup)?;
            (a.common, s)
        }
        Command::Broadcast(a) => {
            let mut s = spec(&a.common, Scenario::Broadcast);
            s.connections = a.receivers + 1;
            s.payload = a.payload.max(8);
            s.rate = a.rate;
            s.duration = seconds(a.timing.duration)?;
            s.warmup = seconds(a.timing.warmup)?;
            (a.common, s)
        }
        Command::Topic(a) => {
            let mut s = spec(&a.common, Scenario::Topic);
            s.connections = a.subscribers;
            s.payload = a.payload.max(worker::topic::HEADER);
            s.text = true;
            s.rate = a.rate;
            s.publish_url = a.publish_url.clone();
            s.duration = seconds(a.timing.duration)?;
            s.warmup = seconds(a.timing.warmup)?;
            (a.common, s)
        }
        Command::Fanout(a) => {
            let mut s = spec(&a.common, Scenario::Fanout);
            s.connections = a.connections.max(1);
            s.payload = a.payload.max(worker::fanout::HEADER);
            s.duration = seconds(a.timing.duration)?;
            s.warmup = seconds(a.timing.warmup)?;
            (a.common, s)
        }
    };
    if spec.connections > MAX_CONNECTIONS {
        return Err(format!(
            "{} connections: at most {MAX_CONNECTIONS} per process (the open-files limit)",
            spec.connections
        ));
    }
    if spec.duration > Duration::from_secs(3600) {
        return Err("runs are bounded: at most 3600 s".into());
    }
    let report = run::execute(&spec)?;
    report.print();
    if let Some(path) = &common.json {
        report.write_json(path)?;
    }
    if let Some(path) = &common.plot {
        report.write_plot(path)?;
    }
    Ok(!common.strict || report.errors.total() == 0)
}

fn soak(args: &SoakArgs) -> Result<bool, String> {
    if args.strict && args.server_pid.is_none() {
        return Err("--strict needs --server-pid: the sockets and RSS are checked".into());
    }
    let total = args.echo_connections + args.idle_connections + args.abusers;
    if total > MAX_CONNECTIONS {
        return Err(format!(
            "{total} connections: at most {MAX_CONNECTIONS} per process (the open-files limit)"
        ));
    }
    let duration = seconds(args.duration)?;
    let warmup = seconds(args.warmup)?;
    if duration + warmup > Duration::from_secs(24 * 3600) {
        return Err("soaks are bounded: at most 24 hours".into());
    }
    if duration.is_zero() {
        return Err("--duration: at least some time".into());
    }
    if !(0.0..=1000.0).contains(&args.rss_tolerance) {
        return Err(format!(
            "--rss-tolerance {}: a percentage",
            args.rss_tolerance
        ));
    }
    let kinds = if args.kinds.is_empty() {
        soak::Abuse::ALL.to_vec()
    } else {
        args.kinds
            .iter()
            .map(|name| {
                soak::Abuse::from_name(name)
                    .ok_or_else(|| format!("--kinds: no abuse called {name:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let spec = soak::Spec {
        url: args.url.clone(),
        duration,
        warmup,
        echo_connections: args.echo_connections,
        echo_payload: args.echo_payload,
        idle_connections: args.idle_connections,
        idle_hold: seconds(args.idle_hold)?,
        abusers: args.abusers,
        kinds,
        sample_interval: seconds(args.sample_interval)?,
        server_pid: args.server_pid,
        rss_tolerance: args.rss_tolerance / 100.0,
        quiet: args.quiet,
    };
    let report = soak::execute(&spec)?;
    report.print();
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        report.write_plot(path)?;
    }
    Ok(!args.strict || report.passed)
}

/// The README's first command: the echo example under a short echo and idle load.
fn demo(args: &DemoArgs) -> Result<bool, String> {
    let server = server::EchoServer::start(args.server_threads)?;
    let url = format!("ws://{}/", server.addr);
    println!(
        "echo example on {url} (pid {}, {} reactor thread(s)); what each line means: loadtest/README.md",
        server.pid(),
        args.server_threads
    );
    let common = Common {
        url,
        threads: 1,
        server_pid: Some(server.pid()),
        sources: 0,
        json: None,
        plot: None,
        quiet: args.quiet,
        strict: false,
        ca: None,
        insecure: false,
        tls_resume: false,
    };
    let mut echo = spec(&common, Scenario::Echo);
    echo.connections = args.connections;
    echo.payload = 32;
    echo.duration = seconds(args.duration)?;
    echo.warmup = Duration::from_secs(1);
    let echo_report = run::execute(&echo)?;
    echo_report.print();

    let mut idle = spec(&common, Scenario::Idle);
    idle.connections = args.idle_connections.min(MAX_CONNECTIONS);
    idle.duration = Duration::from_secs(1);
    idle.warmup = Duration::ZERO;
    let idle_report = run::execute(&idle)?;
    idle_report.print();
    server.stop();
    Ok(echo_report.errors.total() + idle_report.errors.total() == 0)
}
