//! The echo server that the load harness and the Autobahn TestSuite drive.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001 --threads 2
//! ```
//!
//! Flags: `--addr` (default 127.0.0.1:9001), `--threads` (default: one per core),
//! `--max-message-size` in bytes (default 16 MiB), `--deflate off|shared|dedicated`
//! (permessage-deflate, default off), `--tls-cert PEM --tls-key PEM` (built with
//! `--features tls`: serve wss:// on `--addr` instead of ws://, or on `--tls-addr`
//! beside ws:// on `--addr`). It prints `listening on ADDR` once ready,
//! echoes text and binary messages exactly as received (through the default send:
//! with deflate negotiated, replies over the threshold go out compressed), never
//! drops an echo (`BackpressurePolicy::Pause`: a client that sends faster than it
//! reads is not read until it catches up), and shuts down gracefully on SIGINT or
//! SIGTERM.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsreactor::{BackpressurePolicy, Compression, Config, Handler, Message, Server, Socket};

#[path = "shared/tls_flags.rs"]
mod tls_flags;
use tls_flags::Tls;

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        // Under Pause an echo is sent or queued, never dropped; `Closed` means the
        // client is closing, with no one left to answer.
        let _ = ws.send(message);
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = String::from("127.0.0.1:9001");
    // Pause is the default; said here because no echo may ever be dropped
    // (tools outside the project rely on it).
    let defaults = Config::default();
    let limit = defaults.max_backpressure;
    let mut config = defaults.with_backpressure(limit, BackpressurePolicy::Pause);
    let mut tls = Tls::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--threads" => config = config.with_reactors(value()?.parse()?),
            "--max-message-size" => config = config.with_max_message_size(value()?.parse()?),
            "--deflate" => {
                let compression = match value()?.as_str() {
                    "off" => Compression::Off,
                    "shared" => Compression::shared(),
                    "dedicated" => Compression::dedicated(),
                    other => {
                        return Err(format!("--deflate {other}: off, shared or dedicated").into());
                    }
                };
                config = config.with_compression(compression);
            }
            "--tls-cert" => tls.cert = Some(value()?),
            "--tls-key" => tls.key = Some(value()?),
            "--tls-addr" => tls.addr = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: echo [--addr HOST:PORT] [--threads N] [--max-message-size BYTES] \
                     [--deflate off|shared|dedicated] \
                     [--tls-cert PEM --tls-key PEM [--tls-addr HOST:PORT]]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;

    let reactors = config.reactors;
    let server = tls.apply(Server::builder().config(config))?;
    let server = server.bind(addr.as_str())?;
    match server.tls_addr() {
        Some(wss) if wss == server.local_addr() => {
            println!("listening on {} (wss, {reactors} reactors)", wss)
        }
        Some(wss) => println!(
            "listening on {} ({reactors} reactors), wss on {wss}",
            server.local_addr()
        ),
        None => println!("listening on {} ({reactors} reactors)", server.local_addr()),
    }
    let handle = server.spawn(Echo)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.shutdown(Duration::from_secs(5))?;
    let stats = handle.stats();
    // stdout may be a pipe its reader has closed: the summary is not worth a panic.
    let _ = writeln!(
        std::io::stdout(),
        "stopped: {} connections, {} messages in, {} out",
        stats.accepted,
        stats.messages_in,
        stats.messages_out
    );
    Ok(())
}
