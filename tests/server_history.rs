//! Topic history from the library's side (`Config::history`): positions from 1
//! that grow by one, messages kept while nobody subscribes and bounded by the
//! limits (counted in `Stats`), a subscriber recovering from a `Sender`'s
//! publishes, and the errors of a server without history.

#[path = "util/server.rs"]
mod server;

use std::sync::{Arc, Mutex};

use server::{PATIENCE, connect, start, test_config, wait_until};
use tungstenite::Message as T;
use wsreactor::history::{HistoryLimits, Position, Recovery};
use wsreactor::{Handler, Message, Socket, TopicError, encode};

/// `from OFFSET` subscribes to `t` from that offset of the epoch the test set;
/// `live` subscribes with no position. Answers with the result's Debug text.
#[derive(Clone)]
struct Resume {
    epoch: Arc<Mutex<Option<wsreactor::history::Epoch>>>,
}

impl Handler for Resume {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let Message::Text(text) = message else {
            return;
        };
        let from = match text.strip_prefix("from ") {
            Some(offset) => {
                let epoch = self.epoch.lock().unwrap().expect("set by the test");
                Some(Position {
                    epoch,
                    offset: offset.parse().unwrap(),
                })
            }
            None => None,
        };
        let answer = format!("{:?}", ws.subscribe_from("t", from));
        let _ = ws.send_text(&answer);
    }
}

fn limits(count: usize) -> HistoryLimits {
    HistoryLimits {
        count,
        ..HistoryLimits::default()
    }
}

#[test]
fn history_is_kept_bounded_and_replayed_to_a_subscriber_from_a_position() {
    let epoch = Arc::new(Mutex::new(None));
    let config = test_config()
        .with_reactors(2)
        .with_history(Some(limits(10)));
    let server = start(
        config,
        Resume {
            epoch: epoch.clone(),
        },
    );
    let sender = server.sender();
    let mut positions = Vec::new();
    for i in 1..=25u64 {
        let published = sender.publish_positioned("t", |p| {
            encode(Message::Text(&format!("{} {}", p.offset, i)))
        });
        positions.push(published.position.expect("a position"));
    }
    let first = positions[0];
    assert!(positions.iter().all(|p| p.epoch == first.epoch));
    let offsets: Vec<u64> = positions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (1..=25).collect::<Vec<_>>());
    *epoch.lock().unwrap() = Some(first.epoch);
    // Kept while nobody subscribes, at most 10.
    let stats = server.stats();
    assert_eq!(
        (stats.history_topics, stats.history_messages),
        (1, 10),
        "{stats:?}"
    );
    assert!(stats.history_bytes > 0);
    // From 20: 21 to 25 replayed, then the result.
    let mut ws = connect(server.local_addr(), "/");
    ws.send(T::text("from 20")).unwrap();
    for offset in 21..=25u64 {
        assert_eq!(ws.read().unwrap(), T::text(format!("{offset} {offset}")));
    }
    let result = ws.read().unwrap().into_text().unwrap();
    assert!(
        result.contains("offset: 25") && result.contains("Recovered(5)"),
        "{result}"
    );
    // Live from there.
    sender.publish_positioned("t", |p| {
        encode(Message::Text(&format!("{} live", p.offset)))
    });
    assert_eq!(ws.read().unwrap(), T::text("26 live"));
    // Again on the same connection: refused, the messages already flow.
    ws.send(T::text("live")).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        T::text(format!("{:?}", Err::<(), _>(TopicError::AlreadySubscribed)))
    );
    // Too old for a history of 10.
    let mut late = connect(server.local_addr(), "/");
    late.send(T::text("from 3")).unwrap();
    let result = late.read().unwrap().into_text().unwrap();
    assert!(
        result.contains(&format!(
            "{:?}",
            Recovery::Reset(wsreactor::history::ResetReason::Evicted)
        )),
        "{result}"
    );
    wait_until(PATIENCE, || server.stats().subscriptions == 2);
}

#[test]
fn without_history_there_are_no_positions() {
    let epoch = Arc::new(Mutex::new(None));
    let server = start(test_config(), Resume { epoch });
    let published = server
        .sender()
        .publish_positioned("t", |_| encode(Message::Text("x")));
    assert_eq!(published.position, None);
    let mut ws = connect(server.local_addr(), "/");
    ws.send(T::text("live")).unwrap();
    assert_eq!(
        ws.read().unwrap(),
        T::text(format!("{:?}", Err::<(), _>(TopicError::NoHistory)))
    );
}

/// Publishes to ever new topics cannot grow the server: the histories together
/// stay within the budget, and once their messages age out (no one subscribes)
/// the histories are forgotten.
#[test]
fn a_flood_of_topics_stays_within_the_budget_and_ages_out() {
    let budget = 256 << 10;
    let limits = HistoryLimits {
        count: 100,
        bytes: 64 << 10,
        age: Some(std::time::Duration::from_millis(300)),
        budget,
    };
    let epoch = Arc::new(Mutex::new(None));
    let server = start(test_config().with_history(Some(limits)), Resume { epoch });
    let sender = server.sender();
    let payload = "x".repeat(1000);
    for i in 0..2000 {
        let published =
            sender.publish_positioned(format!("flood/{i}"), |_| encode(Message::Text(&payload)));
        assert!(published.position.is_some());
        let stats = server.stats();
        assert!(stats.history_bytes <= budget as u64, "{stats:?}");
    }
    let stats = server.stats();
    assert!(stats.history_messages < 260, "{stats:?}");
    // Aged out and swept (reactor 0, about once a second).
    wait_until(PATIENCE, || {
        let stats = server.stats();
        stats.history_topics == 0 && stats.history_bytes == 0
    });
}

/// A subscriber of a topic with history that falls behind its limit would have a
/// gap: it is closed with 1013 instead, and resumes from its last offset with
/// nothing missing.
#[test]
fn a_lagging_subscriber_is_closed_with_1013_and_resumes_without_a_gap() {
    const N: u64 = 3000;
    let limits = HistoryLimits {
        count: 10_000,
        bytes: 64 << 20,
        ..HistoryLimits::default()
    };
    let config = test_config()
        .with_history(Some(limits))
        .with_backpressure(16 << 10, wsreactor::BackpressurePolicy::Pause)
        .with_send_buffer_size(Some(16 << 10));
    let epoch = Arc::new(Mutex::new(None));
    let server = start(
        config,
        Resume {
            epoch: epoch.clone(),
        },
    );
    let sender = server.sender();
    let first =
        sender.publish_positioned("t", |p| encode(Message::Text(&format!("{} ", p.offset))));
    *epoch.lock().unwrap() = first.position.map(|p| p.epoch);
    let mut slow = connect(server.local_addr(), "/");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = slow.get_ref() {
        // Small, so that the server's queue fills rather than this buffer.
        socket2::SockRef::from(s)
            .set_recv_buffer_size(4096)
            .unwrap();
    }
    slow.send(T::text("from 1")).unwrap();
    let result = slow.read().unwrap().into_text().unwrap();
    assert!(result.contains("Recovered(0)"), "{result}");
    // It reads nothing while 3,000 messages of 2 KiB go out.
    let pad = "x".repeat(2048);
    for _ in 2..=N {
        sender.publish_positioned("t", |p| {
            encode(Message::Text(&format!("{} {pad}", p.offset)))
        });
    }
    // A delivery dropped at its limit (counted) closes it: it reads up to the close.
    wait_until(PATIENCE, || server.stats().dropped > 0);
    let mut last = 1;
    loop {
        match slow.read() {
            Ok(T::Text(text)) => {
                let offset: u64 = text.split(' ').next().unwrap().parse().unwrap();
                assert_eq!(offset, last + 1, "in order, no gap before the close");
                last = offset;
            }
            Ok(T::Close(frame)) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1013));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(last < N, "it fell behind");
    // Back from where it was: the rest, whole.
    let mut back = connect(server.local_addr(), "/");
    back.send(T::text(format!("from {last}"))).unwrap();
    for offset in last + 1..=N {
        let text = back.read().unwrap().into_text().unwrap();
        assert_eq!(text.split(' ').next().unwrap(), offset.to_string());
    }
    let result = back.read().unwrap().into_text().unwrap();
    assert!(
        result.contains(&format!("Recovered({})", N - last)),
        "{result}"
    );
}
