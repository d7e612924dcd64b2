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
//!
//! Several nodes (built with `--features redis`): `--redis redis://HOST:PORT/` shares
//! the topics with every other node on that Redis, `--node-name NAME` names this
//! node in Redis' `CLIENT LIST`, `--redis-prefix PREFIX` puts the channels under
//! another prefix (default `wsreactor:`). The node then prints `redis: connected`
//! and `redis: reconnecting` as the bridge's state changes, and its counters when it
//! stops.
//!
//! ```text
//! cargo run --release --features redis --example pubsub -- \
//!     --addr 127.0.0.1:9001 --redis redis://127.0.0.1:6379/ --node-name a
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wsreactor::{Config, Handler, Message, Server, ServerBuilder, ServerHandle, Socket};

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
            let _ = ws.send_text("error: commands are text messages");
            return;
        };
        match parse(text) {
            Ok(Request::Sub(topic)) => {
                if let Err(e) = ws.subscribe(topic) {
                    let _ = ws.send_text(&format!("error: {e}"));
                }
            }
            Ok(Request::Unsub(topic)) => {
                ws.unsubscribe(topic);
            }
            Ok(Request::Pub(topic, payload)) => {
                let line = format!("{topic} {payload}");
                ws.publish(topic, Message::Text(&line));
                if ws.is_subscribed(topic) {
                    let _ = ws.send_text(&line);
                }
            }
            Err(e) => {
                let _ = ws.send_text(&format!("error: {e}"));
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

/// Where this node's Redis is, from `--redis`, `--node-name` and `--redis-prefix`.
#[derive(Default)]
struct Redis {
    url: Option<String>,
    node_name: Option<String>,
    prefix: Option<String>,
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = String::from("127.0.0.1:9001");
    let mut config = Config::default();
    let mut redis = Redis::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--threads" => config = config.with_reactors(value()?.parse()?),
            "--redis" => redis.url = Some(value()?),
            "--node-name" => redis.node_name = Some(value()?),
            "--redis-prefix" => redis.prefix = Some(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: pubsub [--addr HOST:PORT] [--threads N] \
                     [--redis URL [--node-name NAME] [--redis-prefix PREFIX]]"
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
    let server = bridged(Server::builder().config(config), redis)?.bind(addr.as_str())?;
    println!("listening on {} ({reactors} reactors)", server.local_addr());
    let handle = server.spawn(Topics)?;
    let mut state = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        report(&handle, &mut state, false);
    }
    handle.shutdown(Duration::from_secs(5))?;
    report(&handle, &mut state, true);
    Ok(())
}

#[cfg(feature = "redis")]
fn bridged(builder: ServerBuilder, redis: Redis) -> Result<ServerBuilder, String> {
    let Some(url) = redis.url else {
        if redis.node_name.is_some() || redis.prefix.is_some() {
            return Err("--node-name and --redis-prefix go with --redis URL".into());
        }
        return Ok(builder);
    };
    let mut config = wsreactor::RedisConfig::new(url);
    if let Some(name) = redis.node_name {
        config = config.with_node_name(name);
    }
    if let Some(prefix) = redis.prefix {
        config = config.with_prefix(prefix);
    }
    Ok(builder.redis(config))
}

#[cfg(not(feature = "redis"))]
fn bridged(builder: ServerBuilder, redis: Redis) -> Result<ServerBuilder, String> {
    if redis.url.is_some() || redis.node_name.is_some() || redis.prefix.is_some() {
        return Err("--redis needs the redis feature: \
                    cargo build --features redis --example pubsub"
            .into());
    }
    Ok(builder)
}

/// Prints the bridge's state when it changes (`redis: connected`, `redis:
/// reconnecting`), and its counters at the end.
#[cfg(feature = "redis")]
fn report(handle: &ServerHandle, last: &mut Option<wsreactor::BridgeState>, end: bool) {
    use wsreactor::BridgeState;
    let Some(bridge) = handle.stats().bridge else {
        return;
    };
    if !end && *last != Some(bridge.state) {
        match bridge.state {
            BridgeState::Connected => println!("redis: connected"),
            BridgeState::Reconnecting => println!("redis: reconnecting"),
            _ => {}
        }
        *last = Some(bridge.state);
    }
    if end {
        println!(
            "redis: sent {} dropped {} received {} own {} refused {} malformed {} reconnects {}",
            bridge.sent,
            bridge.dropped,
            bridge.received,
            bridge.own,
            bridge.refused,
            bridge.malformed,
            bridge.reconnects
        );
    }
}

#[cfg(not(feature = "redis"))]
fn report(_: &ServerHandle, _: &mut Option<()>, _: bool) {}
