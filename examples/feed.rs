//! A feed with history: a client that reconnects gets exactly what it missed.
//! Text commands (TOPIC and EPOCH have no spaces; OFFSET is a decimal u64; PAYLOAD
//! is the rest of the message):
//!
//! - `sub TOPIC` answers `subscribed TOPIC EPOCH OFFSET new`: live from there.
//! - `sub TOPIC EPOCH OFFSET` replays every `msg` after that position, then answers
//!   `subscribed TOPIC EPOCH OFFSET recovered` (OFFSET: the last replayed, or the
//!   client's own if it missed nothing), or `... reset` when the position cannot be
//!   recovered (another epoch, too old, from the future): live from the topic's
//!   current position, nothing replayed.
//! - `unsub TOPIC`.
//! - `pub TOPIC PAYLOAD`: every subscriber of TOPIC (the publisher too, if it
//!   subscribes) gets `msg TOPIC EPOCH OFFSET PAYLOAD`; the publisher gets
//!   `published TOPIC EPOCH OFFSET`.
//!
//! Anything malformed gets `error: ...`, and the connection stays open. Every `msg`
//! of a topic after a `subscribed` line has a larger offset than the line's, one by
//! one.
//!
//! ```text
//! cargo run --release --example feed -- --addr 127.0.0.1:9004 --history 1000
//! ```
//!
//! Flags: `--addr` (default 127.0.0.1:9004), `--threads` (default: one per core),
//! `--history N` (messages kept per topic, default 1000), `--history-age SECONDS`
//! (default 300). It prints `listening on ADDR` once ready and stops gracefully on
//! SIGINT or SIGTERM. `--redis URL` and `--node-name NAME` (several nodes) are
//! recognised and refused with a clear error until history across nodes is built.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsreactor::history::{Epoch, HistoryLimits, Position, Recovery};
use wsreactor::{Config, Handler, MAX_TOPIC_LEN, Message, Server, Socket, encode};

#[derive(Clone)]
struct Feed;

/// What a client asked for.
enum Command<'m> {
    Sub(&'m str, Option<Position>),
    Unsub(&'m str),
    Pub(&'m str, &'m str),
}

fn topic(word: &str) -> Result<&str, String> {
    if word.is_empty() || word.len() > MAX_TOPIC_LEN {
        return Err(format!("a topic is 1 to {MAX_TOPIC_LEN} bytes"));
    }
    Ok(word)
}

fn parse(text: &str) -> Result<Command<'_>, String> {
    let (verb, rest) = text.split_once(' ').unwrap_or((text, ""));
    match verb {
        "sub" => {
            let words: Vec<&str> = rest.split(' ').collect();
            match words[..] {
                [t] => Ok(Command::Sub(topic(t)?, None)),
                [t, epoch, offset] => {
                    let epoch = Epoch::parse(epoch).ok_or("an epoch is 16 hex digits")?;
                    let offset = offset
                        .parse::<u64>()
                        .map_err(|_| "an offset is a decimal number")?;
                    Ok(Command::Sub(topic(t)?, Some(Position { epoch, offset })))
                }
                _ => Err("sub TOPIC [EPOCH OFFSET]".into()),
            }
        }
        "unsub" if !rest.is_empty() && !rest.contains(' ') => Ok(Command::Unsub(topic(rest)?)),
        "pub" => match rest.split_once(' ') {
            Some((t, payload)) => Ok(Command::Pub(topic(t)?, payload)),
            None => Ok(Command::Pub(topic(rest)?, "")),
        },
        _ => Err("sub TOPIC [EPOCH OFFSET] | unsub TOPIC | pub TOPIC PAYLOAD".into()),
    }
}

impl Handler for Feed {
    type Session = ();

    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let Message::Text(text) = message else {
            let _ = ws.send_text("error: commands are text");
            return;
        };
        let reply = match parse(text) {
            Err(e) => format!("error: {e}"),
            Ok(Command::Sub(topic, from)) => match ws.subscribe_from(topic, from) {
                Ok(subscribed) => {
                    let mode = match subscribed.recovery {
                        Recovery::New => "new",
                        Recovery::Recovered(_) => "recovered",
                        Recovery::Reset(_) => "reset",
                    };
                    let p = subscribed.position;
                    format!("subscribed {topic} {} {} {mode}", p.epoch, p.offset)
                }
                Err(e) => format!("error: {e}"),
            },
            Ok(Command::Unsub(topic)) => {
                ws.unsubscribe(topic);
                return;
            }
            Ok(Command::Pub(topic, payload)) => {
                let published = ws.publish_positioned(topic, |p| {
                    let line = format!("msg {topic} {} {} {payload}", p.epoch, p.offset);
                    encode(Message::Text(&line))
                });
                match published.position {
                    Some(p) => format!("published {topic} {} {}", p.epoch, p.offset),
                    None => "error: no history".to_owned(),
                }
            }
        };
        let _ = ws.send_text(&reply);
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("feed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = String::from("127.0.0.1:9004");
    let mut config = Config::default();
    let mut history = HistoryLimits::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--threads" => config = config.with_reactors(value()?.parse()?),
            "--history" => history.count = value()?.parse()?,
            "--history-age" => history.age = Some(Duration::from_secs(value()?.parse()?)),
            // The fixed interface's flags for several nodes. History across nodes
            // is not built yet: a node that served positions of its own would
            // give clients positions the other nodes do not know, so it refuses.
            "--redis" | "--node-name" => {
                let _ = value()?;
                return Err(format!(
                    "{flag}: history across nodes through Redis is not built yet; \
                     this feed serves one node"
                )
                .into());
            }
            "-h" | "--help" => {
                println!(
                    "usage: feed [--addr HOST:PORT] [--threads N] [--history N] \
                     [--history-age SECONDS] [--redis URL --node-name NAME: not yet]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop))?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    let server = Server::bind(addr.as_str(), config.with_history(Some(history)))?;
    println!("listening on {}", server.local_addr());
    let handle = server.spawn(Feed)?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.shutdown(Duration::from_secs(5))?;
    Ok(())
}
