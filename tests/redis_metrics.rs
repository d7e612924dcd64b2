//! Features `redis` and `metrics` together: the bridge's counters reach the
//! `metrics` facade (pushed by reactor 0), beside `Stats::bridge`.
#![cfg(all(feature = "redis", feature = "metrics"))]

#[path = "util/kept_metrics.rs"]
mod kept_metrics;
#[path = "util/redis.rs"]
mod redis_util;
#[path = "util/server.rs"]
mod server;

use kept_metrics::kept;
use redis_util::RedisServer;
use server::{PATIENCE, wait_until};
use wsreactor::{Config, Handler, Message, RedisConfig, Server};

#[derive(Clone)]
struct Quiet;

impl Handler for Quiet {
    type Session = ();
}

#[test]
fn the_bridge_counts_reach_the_facade() {
    let kept = kept();
    let redis = RedisServer::start();
    let node = Server::builder()
        .config(Config::default().with_reactors(2))
        .redis(RedisConfig::new(redis.url()))
        .bind("127.0.0.1:0")
        .and_then(|s| s.spawn(Quiet))
        .expect("server starts");
    wait_until(PATIENCE, || kept.gauge("wsreactor_bridge_connected") == 1.0);
    // Publications go to Redis whether or not anyone here subscribes.
    let sender = node.sender();
    for i in 0..5 {
        sender.publish("readings", Message::Text(&format!("reading {i}")));
    }
    wait_until(PATIENCE, || {
        kept.counter("wsreactor_bridge_sent_total", "") == 5
    });
    let bridge = node.stats().bridge.expect("a bridge");
    assert_eq!(bridge.sent, 5);
    assert_eq!(
        kept.counter("wsreactor_bridge_dropped_total", ""),
        bridge.dropped
    );
}
