//! Several nodes on one real redis-server: the pubsub example started twice with
//! `--redis`, clients on both (feature `redis`; `tests/redis/run.sh` installs
//! redis-server, builds the example with the feature and runs this).

#[path = "util/redis.rs"]
mod redis_util;
#[path = "util/server.rs"]
mod server;

use redis_util::{Client, Node, RedisServer, command, line, quiet, say};
use server::PATIENCE;

/// Both nodes print this once both their connections to Redis are up.
const CONNECTED: &str = "redis: connected";

/// Returns once the bridge of `ws`'s node has sent Redis every subscription change
/// noted before the call: a probe topic subscribed, seen in Redis, then left, and
/// seen gone (one connection sends the changes in order, and the probe's leaving is
/// noted only after its joining was taken, so after every earlier change).
fn bridge_caught_up(redis: &RedisServer, ws: &mut Client) {
    command(ws, "sub caught-up-probe");
    redis.wait_numsub("wsreactor:caught-up-probe", 1);
    command(ws, "unsub caught-up-probe");
    redis.wait_numsub("wsreactor:caught-up-probe", 0);
}

#[test]
fn a_publish_on_one_node_reaches_the_other_in_order_exactly_once() {
    let redis = RedisServer::start();
    let a = Node::connected(&redis.url(), "a");
    let b = Node::connected(&redis.url(), "b");
    let mut on_a = a.client();
    let mut on_b = [b.client(), b.client(), b.client()];
    command(&mut on_a, "sub prices");
    for ws in &mut on_b {
        command(ws, "sub prices");
    }
    // Both nodes subscribe to the channel, each once, whatever its subscribers.
    redis.wait_numsub("wsreactor:prices", 2);
    assert_eq!(redis.channels(), ["wsreactor:prices"]);

    let mut publisher = a.client();
    for i in 0..200 {
        say(&mut publisher, &format!("pub prices tick {i}"));
    }
    for i in 0..200 {
        let want = format!("prices tick {i}");
        // A's subscriber directly; B's through Redis. A's own publications come
        // back from Redis to A too, and are not delivered again.
        assert_eq!(line(&mut on_a), want);
        for ws in &mut on_b {
            assert_eq!(line(ws), want);
        }
    }
    quiet(&mut on_a);
    for ws in &mut on_b {
        quiet(ws);
    }
    quiet(&mut publisher);

    // And the other way.
    say(&mut on_b[0], "pub prices from b");
    assert_eq!(line(&mut on_a), "prices from b");
    for ws in &mut on_b {
        assert_eq!(line(ws), "prices from b");
    }
    quiet(&mut on_a);
}

#[test]
fn the_last_local_unsubscribe_unsubscribes_the_node() {
    let redis = RedisServer::start();
    let a = Node::connected(&redis.url(), "a");
    let b = Node::connected(&redis.url(), "b");
    // Several clients, so that both of B's reactors likely have some.
    let mut on_b: Vec<_> = (0..6).map(|_| b.client()).collect();
    for ws in &mut on_b {
        command(ws, "sub news");
    }
    command(&mut on_b[0], "sub weather");
    // The bridge may subscribe the two in separate commands: each is waited for.
    redis.wait_numsub("wsreactor:news", 1);
    redis.wait_numsub("wsreactor:weather", 1);
    assert_eq!(redis.channels(), ["wsreactor:news", "wsreactor:weather"]);
    let mut on_a = a.client();
    command(&mut on_a, "sub news");
    redis.wait_numsub("wsreactor:news", 2);

    // All but the last of B's subscribers leave: B stays subscribed, now that its
    // bridge has been through every change those made.
    for ws in &mut on_b[1..] {
        command(ws, "unsub news");
    }
    bridge_caught_up(&redis, &mut on_b[1]);
    assert_eq!(redis.numsub("wsreactor:news"), 2);
    say(&mut on_a, "pub news still here");
    assert_eq!(line(&mut on_b[0]), "news still here");
    assert_eq!(line(&mut on_a), "news still here");

    // The last one leaves: B unsubscribes, A stays.
    command(&mut on_b[0], "unsub news");
    redis.wait_numsub("wsreactor:news", 1);
    // A closed connection counts as leaving too.
    on_b.swap_remove(0).close(None).expect("close");
    redis.wait_numsub("wsreactor:weather", 0);
    on_a.close(None).expect("close");
    redis.wait_numsub("wsreactor:news", 0);
    assert!(redis.channels().is_empty());

    // Subscribing again subscribes the node again.
    command(&mut on_b[0], "sub news");
    redis.wait_numsub("wsreactor:news", 1);
}

#[test]
fn redis_killed_and_restarted_local_pubsub_goes_on_and_cross_node_resumes() {
    let mut redis = RedisServer::start();
    let a = Node::connected(&redis.url(), "a");
    let b = Node::connected(&redis.url(), "b");
    let (mut on_a, mut on_b, mut publisher) = (a.client(), b.client(), a.client());
    command(&mut on_a, "sub t");
    command(&mut on_b, "sub t");
    redis.wait_numsub("wsreactor:t", 2);
    say(&mut publisher, "pub t before");
    assert_eq!(line(&mut on_a), "t before");
    assert_eq!(line(&mut on_b), "t before");

    redis.kill();
    a.wait_line("redis: reconnecting", PATIENCE);
    b.wait_line("redis: reconnecting", PATIENCE);
    // Each node keeps serving its own subscribers; nothing crosses.
    say(&mut publisher, "pub t during");
    assert_eq!(line(&mut on_a), "t during");
    let mut b_publisher = b.client();
    say(&mut b_publisher, "pub t on b alone");
    assert_eq!(line(&mut on_b), "t on b alone");
    quiet(&mut on_a);
    // A new subscription while Redis is away is made when it is back.
    let mut late = b.client();
    command(&mut late, "sub late");

    redis.restart();
    let took_a = a.wait_line(CONNECTED, PATIENCE);
    let took_b = b.wait_line(CONNECTED, PATIENCE);
    eprintln!("reconnected {took_a:?} and {took_b:?} after Redis was back");
    redis.wait_numsub("wsreactor:t", 2);
    redis.wait_numsub("wsreactor:late", 1);
    say(&mut publisher, "pub t after");
    // At most once: what was published while Redis was away is not replayed.
    assert_eq!(line(&mut on_b), "t after");
    assert_eq!(line(&mut on_a), "t after");
    say(&mut publisher, "pub late news");
    assert_eq!(line(&mut late), "late news");
    quiet(&mut on_b);
}

#[test]
fn a_node_killed_the_other_keeps_serving() {
    let redis = RedisServer::start();
    let mut a = Node::connected(&redis.url(), "a");
    let b = Node::connected(&redis.url(), "b");
    let (mut on_a, mut on_b) = (a.client(), b.client());
    command(&mut on_a, "sub t");
    command(&mut on_b, "sub t");
    redis.wait_numsub("wsreactor:t", 2);

    a.kill();
    // Redis forgets A's subscription with its connection; B's stays.
    redis.wait_numsub("wsreactor:t", 1);
    let mut b_publisher = b.client();
    say(&mut b_publisher, "pub t b goes on");
    assert_eq!(line(&mut on_b), "t b goes on");
    drop(on_a);

    // A node started in A's place reaches B.
    let c = Node::connected(&redis.url(), "c");
    let mut on_c = c.client();
    say(&mut on_c, "pub t from c");
    assert_eq!(line(&mut on_b), "t from c");
    quiet(&mut on_b);
}

#[test]
fn nodes_under_other_prefixes_do_not_hear_each_other() {
    let redis = RedisServer::start();
    let a = Node::connected(&redis.url(), "a");
    let other = Node::start_with(&redis.url(), "other", &["--redis-prefix", "other:"]);
    other.wait_line(CONNECTED, PATIENCE);
    let (mut on_a, mut on_other) = (a.client(), other.client());
    command(&mut on_a, "sub t");
    command(&mut on_other, "sub t");
    redis.wait_numsub("wsreactor:t", 1);
    redis.wait_numsub("other:t", 1);
    say(&mut on_a, "pub t hello");
    assert_eq!(line(&mut on_a), "t hello");
    quiet(&mut on_other);
}
