//! A topic server. Text commands from a client:
//!
//! - `sub TOPIC`: subscribe; `unsub TOPIC`: unsubscribe;
//! - `pub TOPIC PAYLOAD`: every subscriber of TOPIC, the publisher included if it
//!   subscribed, receives the text message `TOPIC PAYLOAD`.
//!
//! TOPIC has no spaces; PAYLOAD is the rest of the message. Anything else gets a
//! text reply `error: ...`, and the connection stays open.
//!
//! ```text
//! cargo run --release --example pubsub -- --addr 127.0.0.1:9001 --threads 2
//! ```
//!
//! Flags: `--addr` (default 127.0.0.1:9001), `--threads` (default: one per core). It
//! prints `listening on ADDR` once ready and stops gracefully on SIGINT or SIGTERM.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsreactor::{Config, Handler, Message, Server, Socket};

#[derive(Clone)]
struct Topics;

/// What a client asked for.
enum Request<'m> {
    Sub(&'m str),
    Unsub(&'m str),
    Pub(&'m str, &'m str),
}

fn parse(text: &str) -> Result<Request<'_>, &'static str> {
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    let topic_of = |rest: &'_ str| -> Result<(), &'static str> {
        if rest.is_empty() {
            Err("a topic is missing")
        } else {
            Ok(())
        }
    };
    match verb {
        "sub" | "unsub" => {
            topic_of(rest)?;
            if rest.contains(' ') {
                return Err("a topic has no spaces");
            }
            Ok(if verb == "sub" {
                Request::Sub(rest)
            } else {
                Request::Unsub(rest)
            })
        }
        "pub" => {
            let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            topic_of(topic)?;
            Ok(Request::Pub(topic, payload))
        }
        _ => Err("unknown command (sub TOPIC, unsub TOPIC, pub TOPIC PAYLOAD)"),
    }
}

impl Handler for Topics {
    type Session = ();

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let Message::Text(text) = message else {
            ws.send_text("error: commands are text messages");
            return;
        };
        match parse(text) {
            Ok(Request::Sub(topic)) => {
                if let Err(e) = ws.subscribe(topic) {
                    ws.send_text(&format!("error: {e}"));
                }
            }
            Ok(Request::Unsub(topic)) => {
                ws.unsubscribe(topic);
            }
            Ok(Request::Pub(topic, payload)) => {
                let line = format!("{topic} {payload}");
                ws.publish(topic, Message::Text(&line));
                if ws.is_subscribed(topic) {
                    ws.send_text(&line);
                }
            }
            Err(e) => {
                ws.send_text(&format!("error: {e}"));
            }
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("pubsub: {e}");
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
                println!("usage: pubsub [--addr HOST:PORT] [--threads N]");
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
    let handle = server.spawn(Topics)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.shutdown(Duration::from_secs(5))?;
    Ok(())
}
