//! Every message any client sends is published to every connected client, the
//! sender included, unchanged: the all-to-all fan-out that load tools drive.
//!
//! ```text
//! cargo run --release --example broadcast -- --addr 127.0.0.1:9001 --threads 2
//! ```
//!
//! Flags: `--addr` (default 127.0.0.1:9001), `--threads` (default: one per core). It
//! prints `listening on ADDR` once ready and stops gracefully on SIGINT or SIGTERM.
//! Every connection, on any path, subscribes to one topic; a message is published
//! to it (to every other subscriber, on every reactor) and sent back to its sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsreactor::{Config, Handler, Message, Server, Socket};

const EVERYONE: &str = "everyone";

#[derive(Clone)]
struct Broadcast;

impl Handler for Broadcast {
    type Session = ();

    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        // One short topic name: this cannot fail.
        let _ = ws.subscribe(EVERYONE);
    }

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        ws.publish(EVERYONE, message);
        let _ = ws.send(message);
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("broadcast: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = String::from("127.0.0.1:9001");
    let mut config = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--threads" => config = config.with_reactors(value()?.parse()?),
            "-h" | "--help" => {
                println!("usage: broadcast [--addr HOST:PORT] [--threads N]");
                return Ok(());
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    let reactors = config.reactors;
    let server = Server::bind(addr.as_str(), config)?;
    println!("listening on {} ({reactors} reactors)", server.local_addr());
    let handle = server.spawn(Broadcast)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.shutdown(Duration::from_secs(5))?;
    Ok(())
}
