//! Feature `tracing`: the engine's events. A server's start and shutdown at INFO; a
//! connection's life and a peer's protocol error at DEBUG, so that a production
//! server at INFO pays nothing per connection; a panic in a handler at ERROR.
#![cfg(feature = "tracing")]

#[path = "util/server.rs"]
mod server;

use std::fmt::Write as _;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use server::{PATIENCE, raw_ws, read_close_code, start, test_config};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use wsreactor::{Handler, Message, Socket};

/// Every event, as "LEVEL target: field=value ...".
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Keep;

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Keep {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut fields = Fields(format!("{} {}:", meta.level(), meta.target()));
        event.record(&mut fields);
        SEEN.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn seen(level: Level, text: &str) -> usize {
    let level = level.to_string();
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|e| e.starts_with(&level) && e.contains(text))
        .count()
}

#[derive(Clone)]
struct Echo;

impl Handler for Echo {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, message: Message<'_>) {
        if message.as_bytes() == b"panic" {
            panic!("a handler's bug");
        }
        let _ = ws.send(message);
    }
}

#[test]
fn the_engine_tells_its_story_at_levels_a_server_can_leave_on() {
    tracing::subscriber::set_global_default(Keep).expect("the only subscriber");
    let server = start(test_config(), Echo);
    let addr = server.local_addr();
    assert_eq!(seen(Level::INFO, "serving"), 1);
    // A peer's protocol error (a reserved opcode): 1002, at DEBUG.
    let mut rude = raw_ws(addr);
    rude.write_all(&[0x83, 0x80, 0, 0, 0, 0]).unwrap();
    assert_eq!(read_close_code(&mut rude), Some(1002));
    // A handler that panics: 1011, at ERROR.
    let mut buggy = raw_ws(addr);
    buggy
        .write_all(&[0x81, 0x85, 0, 0, 0, 0, b'p', b'a', b'n', b'i', b'c'])
        .unwrap();
    assert_eq!(read_close_code(&mut buggy), Some(1011));
    let started = std::time::Instant::now();
    while !(seen(Level::DEBUG, "protocol error") == 1
        && seen(Level::ERROR, "panic in a handler") == 1)
    {
        assert!(started.elapsed() < PATIENCE, "{:#?}", SEEN.lock().unwrap());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        seen(Level::DEBUG, "code=1002") >= 2,
        "{:#?}",
        SEEN.lock().unwrap()
    );
    assert_eq!(
        seen(Level::DEBUG, "\"opened\""),
        0,
        "message fields are not quoted"
    );
    assert_eq!(seen(Level::DEBUG, "message=opened"), 2);
    drop((rude, buggy));
    server.shutdown(PATIENCE).unwrap();
    assert_eq!(seen(Level::INFO, "shutting down"), 1);
    // Nothing per connection above DEBUG, but the handler's bug.
    let loud: Vec<String> = SEEN
        .lock()
        .unwrap()
        .iter()
        .filter(|e| !e.starts_with("DEBUG") && !e.starts_with("TRACE"))
        .cloned()
        .collect();
    assert_eq!(loud.len(), 3, "{loud:#?}");
    assert!(loud.iter().all(|e| e.contains(" wsreactor:")), "{loud:#?}");
}
