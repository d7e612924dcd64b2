//! Feature `metrics`: the counters and gauges the reactors push to the `metrics`
//! facade agree with what happened (handshakes, messages and bytes both ways,
//! closes by code, open connections), under the names docs/CONFIG.md lists.
#![cfg(feature = "metrics")]

#[path = "util/kept_metrics.rs"]
mod kept_metrics;
#[path = "util/server.rs"]
mod server;

use kept_metrics::kept;
use server::{PATIENCE, connect, raw_ws, read_close_code, start, test_config};
use std::io::Write;
use tungstenite::Message as T;
use wsreactor::{Handler, Message, Socket};

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_open(&mut self, ws: &mut Socket<'_, ()>) {
        let _ = ws.subscribe("all");
    }
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        let _ = ws.send(message);
    }
}

#[test]
fn the_facade_gets_what_happened() {
    let kept = kept();
    // The recorder is installed before the reactors start: they take its handles.
    let server = start(test_config().with_reactors(2), Echo);
    let addr = server.local_addr();
    let mut clients: Vec<_> = (0..3).map(|_| connect(addr, "/")).collect();
    for client in &mut clients {
        for i in 0..10 {
            let text = format!("message {i}");
            client.send(T::text(text.clone())).unwrap();
            assert_eq!(client.read().unwrap(), T::text(text));
        }
    }
    // One closes normally (1000), one breaks the protocol (a reserved opcode): 1002.
    let mut normal = clients.pop().unwrap();
    normal
        .close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        }))
        .unwrap();
    while normal.read().is_ok() {}
    // The server waits for the peer's FIN before it lets a closed connection go.
    drop(normal);
    let mut rude = raw_ws(addr);
    rude.write_all(&[0x83, 0x80, 0, 0, 0, 0]).unwrap();
    assert_eq!(read_close_code(&mut rude), Some(1002));
    drop(rude);
    let started = std::time::Instant::now();
    while !(kept.counter("wsreactor_connections_closed_total", "code=1002") == 1
        && kept.counter("wsreactor_connections_closed_total", "code=1000") == 1
        && kept.gauge("wsreactor_connections_open") == 2.0)
    {
        assert!(
            started.elapsed() < PATIENCE,
            "{:#?} {:#?} {:#?}",
            server.reactor_stats(),
            kept.values.lock().unwrap(),
            kept.gauges.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stats = server.stats();
    assert_eq!(kept.counter("wsreactor_messages_received_total", ""), 30);
    assert_eq!(kept.counter("wsreactor_messages_sent_total", ""), 30);
    assert_eq!(
        kept.counter("wsreactor_received_bytes_total", ""),
        stats.bytes_in
    );
    assert_eq!(
        kept.counter("wsreactor_sent_bytes_total", ""),
        stats.bytes_out
    );
    assert_eq!(
        kept.counter("wsreactor_handshakes_total", "transport=ws"),
        4
    );
    assert_eq!(
        kept.counter("wsreactor_handshakes_total", "transport=wss"),
        0
    );
    assert_eq!(kept.counter("wsreactor_connections_accepted_total", ""), 4);
    assert_eq!(
        kept.counter("wsreactor_connections_closed_total", "code=other"),
        0
    );
    assert_eq!(kept.gauge("wsreactor_subscriptions"), 2.0);
    // Per reactor, summed: two reactors with a subscriber each, or one with both.
    assert!((1.0..=2.0).contains(&kept.gauge("wsreactor_topics")));
    assert!(kept.counter("wsreactor_loop_turns_total", "reactor=1") > 0);
    drop(clients);
}
