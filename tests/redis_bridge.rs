//! The bridge from inside one process (feature `redis`): `Sender::publish` across
//! nodes and the counters that account for it, what it does with bad messages from
//! Redis, a full queue toward a stalled Redis, and Redis away at start.

#[path = "util/redis.rs"]
mod redis_util;
#[path = "util/server.rs"]
mod server;

use std::sync::mpsc;
use std::time::Duration;

use redis_util::{RedisServer, quiet};
use server::{Client, PATIENCE, connect, wait_until};
use tungstenite::Message as T;
use wsreactor::{
    BridgeState, BridgeStats, Config, Handler, Message, RedisConfig, Server, ServerHandle, Socket,
};

/// `sub T` (answers `ok`), `pub T PAYLOAD`.
#[derive(Clone)]
struct Topics;

impl Handler for Topics {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("sub"), Some(topic), None) => {
                let reply = match ws.subscribe(topic) {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("error: {e}"),
                };
                let _ = ws.send_text(&reply);
            }
            (Some("pub"), Some(topic), Some(payload)) => {
                ws.publish(topic, Message::Text(payload));
            }
            _ => {
                let _ = ws.send_text("error: unknown");
            }
        }
    }
}

fn node(redis: RedisConfig) -> ServerHandle {
    Server::builder()
        .config(Config::default().with_reactors(2))
        .redis(redis)
        .bind("127.0.0.1:0")
        .and_then(|s| s.spawn(Topics))
        .expect("server starts")
}

fn bridge(node: &ServerHandle) -> BridgeStats {
    node.stats()
        .bridge
        .expect("a bridged server has bridge stats")
}

fn wait_connected(node: &ServerHandle) {
    wait_until(PATIENCE, || bridge(node).state == BridgeState::Connected);
}

fn subscribe(node: &ServerHandle, topic: &str) -> Client {
    let mut ws = connect(node.local_addr(), "/");
    ws.send(T::text(format!("sub {topic}"))).unwrap();
    assert_eq!(ws.read().unwrap(), T::text("ok"));
    ws
}

fn next(ws: &mut Client) -> T {
    loop {
        match ws.read().expect("a message") {
            T::Ping(_) | T::Pong(_) => {}
            other => return other,
        }
    }
}

#[test]
fn sender_publish_crosses_nodes_and_the_counters_account_for_every_message() {
    let redis = RedisServer::start();
    let a = node(RedisConfig::new(redis.url()).with_node_name("a"));
    let b = node(RedisConfig::new(redis.url()).with_node_name("b"));
    wait_connected(&a);
    wait_connected(&b);
    let mut on_a = subscribe(&a, "t");
    let mut on_b = subscribe(&b, "t");
    redis.wait_numsub("wsreactor:t", 2);
    // Redis counts a SUBSCRIBE before the bridge has its answer and counts it too.
    wait_until(PATIENCE, || {
        (bridge(&a).channels, bridge(&b).channels) == (1, 1)
    });

    for i in 0..50 {
        a.sender().publish("t", Message::Text(&format!("m{i}")));
    }
    a.sender().publish("t", Message::Binary(&[0, 0xff]));
    for ws in [&mut on_a, &mut on_b] {
        for i in 0..50 {
            assert_eq!(next(ws), T::text(format!("m{i}")));
        }
        assert_eq!(next(ws), T::binary(vec![0, 0xff]));
        quiet(ws);
    }
    // A topic nobody subscribes to still goes to Redis: another node may have
    // subscribers the moment it arrives.
    a.sender().publish("nobody", Message::Text("x"));
    wait_until(PATIENCE, || {
        bridge(&a).sent == 52 && bridge(&a).own == 51 && bridge(&b).received == 51
    });
    let (sa, sb) = (bridge(&a), bridge(&b));
    assert_eq!(
        (sa.dropped, sa.malformed, sa.refused, sa.received),
        (0, 0, 0, 0)
    );
    assert_eq!((sb.sent, sb.own, sb.dropped, sb.malformed), (0, 0, 0, 0));
    assert_eq!((sa.reconnects, sb.reconnects), (0, 0));

    a.shutdown(Duration::from_secs(1)).unwrap();
    assert_eq!(bridge(&a).state, BridgeState::Stopped);
    // Its subscriptions went with its connection; B's stay.
    redis.wait_numsub("wsreactor:t", 1);
}

#[test]
fn malformed_and_oversized_messages_from_redis_are_dropped_and_counted() {
    let redis = RedisServer::start();
    let b = node(RedisConfig::new(redis.url()).with_max_message_size(64));
    wait_connected(&b);
    let mut ws = subscribe(&b, "t");
    redis.wait_numsub("wsreactor:t", 1);
    let envelope = |kind: u8, node: u64, payload: &[u8]| {
        let mut e = b"WS\x01".to_vec();
        e.push(kind);
        e.extend_from_slice(&node.to_be_bytes());
        e.extend_from_slice(payload);
        e
    };
    let bad: Vec<Vec<u8>> = vec![
        b"plain text from redis-cli".to_vec(),
        b"WS\x01\x01\x00".to_vec(),          // header cut short
        envelope(3, 7, b"no such kind"),     // neither text nor binary
        envelope(1, 7, &[b'a', 0xc3, 0x28]), // text that is not UTF-8
        envelope(2, 7, &[0; 65]),            // over max_message_size
        b"WS\x02\x01\x00\x00\x00\x00\x00\x00\x00\x07later".to_vec(), // another version
    ];
    let mut con = redis.client();
    for payload in &bad {
        let n: u64 = redis::cmd("PUBLISH")
            .arg("wsreactor:t")
            .arg(payload)
            .query(&mut con)
            .unwrap();
        assert_eq!(n, 1);
    }
    // A backend publishes with node id 0, and its message comes after the bad ones.
    let good = envelope(1, 0, "from a backend, é".as_bytes());
    let _: u64 = redis::cmd("PUBLISH")
        .arg("wsreactor:t")
        .arg(&good)
        .query(&mut con)
        .unwrap();
    let good = envelope(2, 0, &[1; 64]); // exactly the limit
    let _: u64 = redis::cmd("PUBLISH")
        .arg("wsreactor:t")
        .arg(&good)
        .query(&mut con)
        .unwrap();
    assert_eq!(next(&mut ws), T::text("from a backend, é"));
    assert_eq!(next(&mut ws), T::binary(vec![1; 64]));
    quiet(&mut ws);
    let stats = bridge(&b);
    assert_eq!((stats.malformed, stats.received), (bad.len() as u64, 2));
    assert_eq!(stats.state, BridgeState::Connected);
    // The bridge goes on.
    let _: u64 = redis::cmd("PUBLISH")
        .arg("wsreactor:t")
        .arg(envelope(1, 0, b"still here"))
        .query(&mut con)
        .unwrap();
    assert_eq!(next(&mut ws), T::text("still here"));
}

#[test]
fn a_stalled_redis_fills_the_queue_publications_are_dropped_never_waited_for() {
    let redis = RedisServer::start();
    let a = node(
        RedisConfig::new(redis.url())
            .with_max_queued_bytes(16 << 10)
            .with_reconnect(Duration::from_millis(50), Duration::from_millis(200)),
    );
    wait_connected(&a);
    let mut local = subscribe(&a, "t");
    redis.signal("STOP");
    let payload = "x".repeat(100);
    // Redis stays stopped until every publish has returned: one that waited on
    // Redis would hold this thread until the bridge gave up the connection (its
    // command timeout, 2 s, each time), 2,000 of them far past the hang guard.
    let (done, published) = mpsc::channel();
    let publisher = {
        let (sender, payload) = (a.sender(), payload.clone());
        std::thread::spawn(move || {
            for _ in 0..2000 {
                sender.publish("t", Message::Text(&payload));
            }
            let _ = done.send(());
        })
    };
    published
        .recv_timeout(PATIENCE)
        .expect("2,000 publishes returned while Redis was stopped");
    publisher.join().unwrap();
    // Local delivery does not depend on Redis.
    for _ in 0..2000 {
        assert_eq!(next(&mut local), T::text(payload.as_str()));
    }
    let stalled = bridge(&a);
    assert!(
        stalled.dropped >= 1000,
        "a 16 KiB queue holds ~100 of them: {stalled:?}"
    );
    redis.signal("CONT");
    // Every publication is sent or dropped, none is kept forever.
    wait_until(PATIENCE, || {
        let s = bridge(&a);
        s.sent + s.dropped == 2000 && s.state == BridgeState::Connected
    });
    quiet(&mut local);
}

#[test]
fn redis_away_at_start_local_pubsub_works_and_the_bridge_connects_when_it_comes() {
    let mut redis = RedisServer::not_started();
    let a = node(
        RedisConfig::new(redis.url())
            .with_reconnect(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let mut ws = subscribe(&a, "t");
    let mut publisher = connect(a.local_addr(), "/");
    publisher.send(T::text("pub t alone")).unwrap();
    assert_eq!(next(&mut ws), T::text("alone"));
    let stats = bridge(&a);
    assert_eq!(
        (stats.state, stats.dropped, stats.sent),
        (BridgeState::Connecting, 1, 0)
    );

    redis.restart();
    wait_connected(&a);
    // The subscription made while Redis was away is in place.
    redis.wait_numsub("wsreactor:t", 1);
    publisher.send(T::text("pub t together")).unwrap();
    assert_eq!(next(&mut ws), T::text("together"));
    wait_until(PATIENCE, || bridge(&a).own == 1);
    quiet(&mut ws);
    assert_eq!(
        bridge(&a).reconnects,
        0,
        "a first connection is not a reconnect"
    );
}
