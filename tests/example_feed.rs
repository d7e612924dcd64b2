//! The feed example's protocol (examples/feed.rs, two reactors): positions on
//! publish, a subscriber that reconnects gets exactly what it missed then goes on
//! live, positions that cannot be recovered reset, malformed commands get errors;
//! and subscribers joining from positions while a publisher races them, across
//! reactors, see every offset once, in order.

#[path = "util/example.rs"]
mod example;
#[path = "util/server.rs"]
mod server;

use example::{Example, connect, line, start_with};
use server::Client;
use tungstenite::Message as T;

fn feed() -> Example {
    start_with("feed", &["--history", "100"])
}

fn say(ws: &mut Client, text: &str) {
    ws.send(T::text(text)).expect("send");
}

/// `msg TOPIC EPOCH OFFSET PAYLOAD` → (epoch, offset, payload).
fn msg(line: &str, topic: &str) -> (String, u64, String) {
    let rest = line
        .strip_prefix(&format!("msg {topic} "))
        .unwrap_or_else(|| panic!("not a msg of {topic}: {line}"));
    let mut words = rest.splitn(3, ' ');
    let epoch = words.next().unwrap().to_owned();
    let offset = words.next().unwrap().parse().unwrap();
    (epoch, offset, words.next().unwrap_or("").to_owned())
}

/// The words of a `subscribed` or `published` line after its verb and topic.
fn words(line: &str, verb: &str, topic: &str) -> Vec<String> {
    line.strip_prefix(&format!("{verb} {topic} "))
        .unwrap_or_else(|| panic!("not {verb} {topic}: {line}"))
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// Publishes `payload` and returns its position from the `published` line.
fn publish(ws: &mut Client, topic: &str, payload: &str) -> (String, u64) {
    say(ws, &format!("pub {topic} {payload}"));
    let w = words(&line(ws), "published", topic);
    (w[0].clone(), w[1].parse().unwrap())
}

#[test]
fn a_reconnecting_subscriber_gets_exactly_what_it_missed() {
    let server = feed();
    let mut publisher = connect(&server, "/");
    let mut reader = connect(&server, "/");
    say(&mut reader, "sub prices");
    let w = words(&line(&mut reader), "subscribed", "prices");
    assert_eq!((w[1].as_str(), w[2].as_str()), ("0", "new"));
    let epoch = w[0].clone();
    for i in 1..=5 {
        assert_eq!(
            publish(&mut publisher, "prices", &format!("p{i}")),
            (epoch.clone(), i)
        );
        assert_eq!(
            msg(&line(&mut reader), "prices"),
            (epoch.clone(), i, format!("p{i}"))
        );
    }
    drop(reader);
    for i in 6..=8 {
        publish(&mut publisher, "prices", &format!("p{i} with spaces"));
    }
    let mut back = connect(&server, "/");
    say(&mut back, &format!("sub prices {epoch} 5"));
    for i in 6..=8 {
        assert_eq!(
            msg(&line(&mut back), "prices"),
            (epoch.clone(), i, format!("p{i} with spaces"))
        );
    }
    assert_eq!(
        words(&line(&mut back), "subscribed", "prices"),
        [epoch.clone(), "8".into(), "recovered".into()]
    );
    publish(&mut publisher, "prices", "p9");
    assert_eq!(msg(&line(&mut back), "prices").1, 9);
    // Nothing missed: recovered, nothing replayed.
    let mut current = connect(&server, "/");
    say(&mut current, &format!("sub prices {epoch} 9"));
    assert_eq!(
        words(&line(&mut current), "subscribed", "prices"),
        [epoch.clone(), "9".into(), "recovered".into()]
    );
}

#[test]
fn positions_that_cannot_be_recovered_reset_and_bad_commands_are_errors() {
    let server = feed();
    let mut publisher = connect(&server, "/");
    let (epoch, _) = publish(&mut publisher, "t", "one");
    let mut client = connect(&server, "/");
    for position in ["0123456789abcdef 0".to_owned(), format!("{epoch} 7")] {
        say(&mut client, &format!("sub t {position}"));
        assert_eq!(
            words(&line(&mut client), "subscribed", "t"),
            [epoch.clone(), "1".into(), "reset".into()],
            "{position}"
        );
        say(&mut client, "unsub t");
    }
    // Evicted: the history keeps 100 messages.
    for i in 0..150 {
        publish(&mut publisher, "t", &format!("m{i}"));
    }
    say(&mut client, &format!("sub t {epoch} 10"));
    assert_eq!(
        words(&line(&mut client), "subscribed", "t"),
        [epoch.clone(), "151".into(), "reset".into()]
    );
    for bad in [
        "sub",
        "sub t 0123 5",
        "sub t 0123456789ABCDEF 5",
        "sub t 0123456789abcdef -1",
        "sub t 0123456789abcdef",
        "hello",
        "unsub",
    ] {
        say(&mut client, bad);
        let answer = line(&mut client);
        assert!(answer.starts_with("error: "), "{bad}: {answer}");
    }
    say(&mut client, "sub t");
    let answer = line(&mut client);
    assert!(
        answer.starts_with("error: "),
        "already subscribed: {answer}"
    );
}

#[test]
fn joiners_racing_a_publisher_see_every_offset_once_in_order() {
    const MESSAGES: u64 = 4000;
    // History enough for every reader's position, however late it joins.
    let server = start_with("feed", &["--history", "10000"]);
    let mut publisher = connect(&server, "/");
    let (epoch, _) = publish(&mut publisher, "race", "0");
    // Readers reconnect again and again, each time subscribing from the last
    // offset they got, while the publisher streams: every subscribe races the
    // publishes, on whichever reactor the new connection lands. Each reader must
    // see every offset once, in order, across its connections.
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let mut ws = connect(&server, "/");
            say(&mut ws, &format!("sub race {epoch} 0"));
            let epoch = epoch.clone();
            let addr = server.addr.clone();
            std::thread::spawn(move || {
                let mut last = 0;
                let mut joins = 0;
                while last < MESSAGES {
                    let text = line(&mut ws);
                    if text.starts_with("subscribed ") {
                        let w = words(&text, "subscribed", "race");
                        assert_eq!(w[2], "recovered", "{text}");
                        assert_eq!(
                            w[1].parse::<u64>().unwrap(),
                            last,
                            "the line follows the replay"
                        );
                        joins += 1;
                        continue;
                    }
                    let (e, offset, payload) = msg(&text, "race");
                    assert_eq!(e, epoch);
                    assert_eq!(offset, last + 1, "reader {r}: a gap or a duplicate");
                    assert_eq!(payload, (offset - 1).to_string());
                    last = offset;
                    // Every 97 messages: gone, and back from where it was.
                    if offset % 97 == r && last < MESSAGES {
                        let (again, _) =
                            tungstenite::connect(format!("ws://{addr}/")).expect("reconnects");
                        ws = again;
                        example::set_timeout(&ws, server::PATIENCE);
                        say(&mut ws, &format!("sub race {epoch} {last}"));
                    }
                }
                joins
            })
        })
        .collect();
    // Streamed in small pipelined bursts, so that the readers' joins land while
    // publishes are on their way.
    let mut sent = 1;
    while sent < MESSAGES {
        for _ in 0..20 {
            if sent < MESSAGES {
                say(&mut publisher, &format!("pub race {sent}"));
                sent += 1;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    for _ in 1..MESSAGES {
        line(&mut publisher);
    }
    for reader in readers {
        let joins = reader.join().unwrap();
        assert!(joins > 10, "{joins} joins");
    }
}

/// The race made certain: one reactor, and one connection that publishes 30
/// messages and subscribes from offset 0 in one write. Its publishes are queued
/// to the reactor (which has another subscriber) before its subscribe runs, so
/// they are in both its replay and the reactor's queue: it must get each once.
#[test]
fn a_subscribe_behind_queued_publishes_gets_each_message_once() {
    let server = start_with("feed", &["--threads", "1", "--history", "1000"]);
    let mut watcher = connect(&server, "/");
    say(&mut watcher, "sub t");
    let epoch = words(&line(&mut watcher), "subscribed", "t")[0].clone();
    let mut client = connect(&server, "/");
    for i in 1..=30 {
        client.write(T::text(format!("pub t {i}"))).unwrap();
    }
    client.write(T::text(format!("sub t {epoch} 0"))).unwrap();
    client.flush().unwrap();
    let mut offsets = Vec::new();
    let mut published = 0;
    loop {
        let text = line(&mut client);
        if text.starts_with("published ") {
            published += 1;
        } else if text.starts_with("subscribed ") {
            let w = words(&text, "subscribed", "t");
            assert_eq!(
                (w[1].as_str(), w[2].as_str()),
                ("30", "recovered"),
                "{text}"
            );
            break;
        } else {
            offsets.push(msg(&text, "t").1);
        }
    }
    assert_eq!(published, 30);
    assert_eq!(offsets, (1..=30).collect::<Vec<u64>>(), "the replay, whole");
    // Then live, from 31: none of the 30 again.
    say(&mut watcher, "pub t 31");
    let text = line(&mut client);
    assert_eq!(msg(&text, "t").1, 31, "a message delivered twice: {text}");
}

/// `--redis` and `--node-name` (the fixed interface's flags for several nodes) are
/// refused with a clear error, not served with positions local to one node.
#[test]
fn several_nodes_are_refused_plainly_until_history_spans_them() {
    for flag in ["--redis", "--node-name"] {
        let feed = example::binary("feed");
        let out = std::process::Command::new(&feed)
            .args(["--addr", "127.0.0.1:0", flag, "x"])
            .output()
            .expect("the feed example runs");
        assert!(!out.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not built yet"), "{flag}: {stderr}");
    }
}
