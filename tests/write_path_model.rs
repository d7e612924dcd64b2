//! The write path against a model of every connection's byte stream.
//!
//! Proptest generates a server configuration (backpressure limit and policy), a
//! script for each of 4 to 6 clients and one for a thread that uses `Sender`. The
//! handler's behaviour is scripted by its client: each client message is a command
//! (send a burst now, stream in `on_drain` until backpressure, panic, close), and the
//! request path says what `on_open` sends. Every message names its source, the
//! connection it is for (a tag given in `on_open`) and a sequence number
//! (`util/tagged.rs`); the handler logs the status of every send it makes.
//!
//! Each connection must then receive exactly the stream it was sent: well framed
//! (tungstenite parses it), nothing meant for another connection, every source in
//! order without duplicates, exactly the callback sends the server accepted (`Sent`
//! or `Backpressure`; a reset connection a prefix of them), a subsequence of what
//! `Sender` queued, and a close frame allowed by the script before the end. A reactor
//! thread that panics fails the case.

#[path = "util/peer.rs"]
mod peer;
#[path = "util/script.rs"]
mod script;
#[path = "util/server.rs"]
mod server;
#[path = "util/tagged.rs"]
mod tagged;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use wsreactor::{
    BackpressurePolicy, CloseCode, Config, ConnId, Handler, Message, QueueStatus, Request,
    SendStatus, Sender, Socket, Upgrade,
};

use script::{Burst, Case, Command, Outcome, SenderAct, Stream, run_client};
use tagged::{EVERYBODY, HEADER, Source};

/// The message of every panic the handler is told to make.
const SCRIPTED_PANIC: &str = "scripted panic";
/// A case's clients give up reading this long after it starts: a hang guard (a
/// case takes a second or so on an idle machine, and a verdict never depends on
/// how much longer a busy one takes).
const CASE_DEADLINE: Duration = server::PATIENCE;

// ---- the handler ----------------------------------------------------------------

/// What the handler did, for the checks.
#[derive(Default)]
struct Log {
    conns: BTreeMap<u32, ConnLog>,
    /// Client index -> tag.
    tags: HashMap<usize, u32>,
}

struct ConnLog {
    id: ConnId,
    /// Every callback send: (seq, status).
    sends: Vec<(u32, SendStatus)>,
    panics: u32,
    /// Codes the handler closed with.
    closed_with: Vec<u16>,
    /// Codes `on_close` was called with.
    on_close: Vec<u16>,
}

#[derive(Clone, Default)]
struct Scripted {
    log: Arc<Mutex<Log>>,
    next_tag: Arc<AtomicU32>,
}

#[derive(Default)]
struct Session {
    client: usize,
    tag: u32,
    next_seq: u32,
    open: Burst,
    open_panics: bool,
    stream: Option<Stream>,
    panic_on_drain: bool,
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    // A poisoned log still holds what happened before the panic.
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Scripted {
    fn send(&self, ws: &mut Socket<'_, Session>, size: usize, text: bool) -> SendStatus {
        let session = ws.session_mut();
        let (tag, seq) = (session.tag, session.next_seq);
        session.next_seq += 1;
        let payload = tagged::encode(Source::Callback, text, tag, seq, size);
        let status = if text {
            ws.send_text(std::str::from_utf8(&payload).expect("ASCII"))
        } else {
            ws.send_binary(&payload)
        };
        if let Some(conn) = lock(&self.log).conns.get_mut(&tag) {
            conn.sends.push((seq, status));
        }
        status
    }

    fn burst(&self, ws: &mut Socket<'_, Session>, burst: Burst) {
        for _ in 0..burst.count {
            let _ = self.send(ws, burst.size, burst.text);
        }
    }

    fn panic(&self, ws: &mut Socket<'_, Session>) -> ! {
        let tag = ws.session().tag;
        if let Some(conn) = lock(&self.log).conns.get_mut(&tag) {
            conn.panics += 1;
        }
        panic!("{SCRIPTED_PANIC}");
    }

    /// Streams chunks until a send is not `Sent`, then a short text; then works a
    /// moment (`think`), during which the client reads.
    fn stream(&self, ws: &mut Socket<'_, Session>, stream: Stream) {
        // Bounded, in case the kernel never refuses.
        for _ in 0..4096 {
            match self.send(ws, stream.chunk, false) {
                SendStatus::Sent => {}
                SendStatus::Backpressure | SendStatus::Dropped => break,
                SendStatus::Closed => return,
            }
        }
        let _ = self.send(ws, HEADER, true);
        if stream.think_us > 0 {
            thread::sleep(Duration::from_micros(stream.think_us));
        }
    }
}

impl Handler for Scripted {
    type Session = Session;

    /// The path is `/{client}/{count}/{size}/{t|b}/{panic: 0|1}`: who the client
    /// is, and what `on_open` sends before it maybe panics.
    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<Session> {
        let parts: Vec<&str> = request.path().split('/').skip(1).collect();
        let number = |i: usize| parts.get(i).and_then(|p| p.parse().ok()).unwrap_or(0);
        Upgrade::accept(Session {
            client: number(0),
            open: Burst {
                count: number(1) as u32,
                size: number(2),
                text: parts.get(3) == Some(&"t"),
            },
            open_panics: number(4) == 1,
            ..Session::default()
        })
    }

    fn on_open(&mut self, ws: &mut Socket<'_, Session>) {
        let tag = self.next_tag.fetch_add(1, SeqCst) + 1;
        let client = ws.session().client;
        ws.session_mut().tag = tag;
        {
            let mut log = lock(&self.log);
            log.tags.insert(client, tag);
            log.conns.insert(
                tag,
                ConnLog {
                    id: ws.id(),
                    sends: Vec::new(),
                    panics: 0,
                    closed_with: Vec::new(),
                    on_close: Vec::new(),
                },
            );
        }
        // The hello, callback seq 0: the first message every client must receive.
        let _ = self.send(ws, HEADER, true);
        let open = ws.session().open;
        self.burst(ws, open);
        if ws.session().open_panics {
            self.panic(ws);
        }
    }

    fn on_message(&mut self, ws: &mut Socket<'_, Session>, message: Message<'_>) {
        let text = std::str::from_utf8(message.as_bytes()).unwrap_or("");
        let Some(command) = Command::parse(text) else {
            panic!("unknown command {text:?}");
        };
        match command {
            Command::Send(burst) => self.burst(ws, burst),
            Command::Stream(stream) => {
                ws.session_mut().stream = Some(stream);
                self.stream(ws, stream);
            }
            Command::Panic(burst) => {
                self.burst(ws, burst);
                self.panic(ws);
            }
            Command::PanicOnDrain => ws.session_mut().panic_on_drain = true,
            Command::Close(code, burst) => {
                self.burst(ws, burst);
                let tag = ws.session().tag;
                if let Some(conn) = lock(&self.log).conns.get_mut(&tag) {
                    conn.closed_with.push(code);
                }
                ws.close(CloseCode(code), "scripted");
            }
        }
    }

    fn on_drain(&mut self, ws: &mut Socket<'_, Session>) {
        if std::mem::take(&mut ws.session_mut().panic_on_drain) {
            self.panic(ws);
        }
        let session = ws.session_mut();
        let Some(stream) = session.stream.as_mut().filter(|s| s.rounds > 0) else {
            return;
        };
        stream.rounds -= 1;
        let stream = *stream;
        self.stream(ws, stream);
    }

    fn on_close(&mut self, _: ConnId, session: Session, code: CloseCode, _: &str) {
        if let Some(conn) = lock(&self.log).conns.get_mut(&session.tag) {
            conn.on_close.push(code.0);
        }
    }
}

// ---- the other threads ----------------------------------------------------------

/// Every call this test makes on `Sender`, in one place. Returns whether the
/// command was queued (a `Full` or `Closed` one must not arrive).
fn via_sender(sender: &Sender, call: SenderCall<'_>) -> bool {
    let status = match call {
        SenderCall::Send(id, message) => sender.send(id, message),
        SenderCall::Broadcast(message) => sender.broadcast(message),
        SenderCall::Close(id, code) => sender.close(id, CloseCode(code), "scripted"),
    };
    status == QueueStatus::Queued
}

enum SenderCall<'a> {
    Send(ConnId, Message<'a>),
    Broadcast(Message<'a>),
    Close(ConnId, u16),
}

/// What the `Sender` thread did: every message by its seq (one counter for sends
/// and broadcasts), with its target (a tag, or [`EVERYBODY`]) and whether it was
/// queued; and the closes it asked for.
#[derive(Default)]
struct SenderLog {
    messages: HashMap<u32, (u32, bool)>,
    closes: Vec<(u32, u16)>,
}

fn run_sender(
    sender: &Sender,
    log: &Mutex<Log>,
    plan: &[(u64, SenderAct)],
    clients: usize,
) -> SenderLog {
    let mut done = SenderLog::default();
    let mut seq = 0;
    let target = |client: usize| {
        let log = lock(log);
        let tag = *log.tags.get(&(client % clients))?;
        Some((tag, log.conns.get(&tag)?.id))
    };
    for (delay_ms, act) in plan {
        thread::sleep(Duration::from_millis(*delay_ms));
        match *act {
            SenderAct::SendTo(client, burst) => {
                let Some((tag, id)) = target(client) else {
                    continue;
                };
                for _ in 0..burst.count {
                    seq += 1;
                    let payload = tagged::encode(Source::Sender, burst.text, tag, seq, burst.size);
                    let queued =
                        via_sender(sender, SenderCall::Send(id, message(&payload, burst.text)));
                    done.messages.insert(seq, (tag, queued));
                }
            }
            SenderAct::Broadcast(size, text) => {
                seq += 1;
                let payload = tagged::encode(Source::Broadcast, text, EVERYBODY, seq, size);
                let queued = via_sender(sender, SenderCall::Broadcast(message(&payload, text)));
                done.messages.insert(seq, (EVERYBODY, queued));
            }
            SenderAct::Close(client, code) => {
                if let Some((tag, id)) = target(client)
                    && via_sender(sender, SenderCall::Close(id, code))
                {
                    done.closes.push((tag, code));
                }
            }
        }
    }
    done
}

fn message(payload: &[u8], text: bool) -> Message<'_> {
    if text {
        Message::Text(std::str::from_utf8(payload).expect("ASCII"))
    } else {
        Message::Binary(payload)
    }
}

// ---- the checks -----------------------------------------------------------------

/// Panics of reactor threads other than the scripted ones: where and why.
static REACTOR_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records reactor panics, and keeps the scripted ones off stderr.
fn watch_reactor_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if message == SCRIPTED_PANIC {
                return;
            }
            let name = thread::current().name().unwrap_or("").to_owned();
            if name.starts_with("wsreactor") {
                let at = info.location().map(|l| l.to_string()).unwrap_or_default();
                reactor_panics().push(format!("{name} panicked at {at}: {message}"));
            }
            previous(info);
        }));
    });
}

fn reactor_panics() -> MutexGuard<'static, Vec<String>> {
    REACTOR_PANICS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs one case; returns what went wrong.
fn run_case(case: &Case) -> Vec<String> {
    reactor_panics().clear();
    let handler = Scripted::default();
    let log = handler.log.clone();
    // No timeout may end a connection the script did not end: the handshake, the
    // close (a client the server closed goes on with its script before it answers)
    // and a paused reader's queue wait as long as the clients may.
    let config = Config::default()
        .with_reactors(2)
        .with_backpressure(case.limit, case.policy)
        .with_idle_timeout(None)
        .with_handshake_timeout(Some(CASE_DEADLINE))
        .with_close_timeout(CASE_DEADLINE)
        .with_write_timeout(Some(CASE_DEADLINE));
    let server = server::start(config, handler);
    let addr = server.local_addr();
    let deadline = Instant::now() + CASE_DEADLINE;
    let clients: Vec<_> = (case.clients.iter().cloned().enumerate())
        .map(|(index, plan)| thread::spawn(move || run_client(addr, index, &plan, deadline)))
        .collect();
    let sender = {
        let (sender, log) = (server.sender(), log.clone());
        let (plan, clients) = (case.sender.clone(), case.clients.len());
        thread::spawn(move || run_sender(&sender, &log, &plan, clients))
    };
    let outcomes: Vec<Result<Outcome, String>> = (clients.into_iter())
        .map(|client| (client.join()).unwrap_or_else(|_| Err("the client thread panicked".into())))
        .collect();
    let sent = sender.join().expect("the sender thread");
    let stopped = server::shutdown_within(server, Duration::from_secs(1), server::PATIENCE);

    let mut violations: Vec<String> = reactor_panics().drain(..).collect();
    let reactors_alive = matches!(stopped, Some(Ok(())));
    if stopped.is_none() {
        violations.push(format!(
            "the server did not shut down within {:?}: a reactor is stuck",
            server::PATIENCE
        ));
    } else if !reactors_alive && violations.is_empty() {
        violations.push("a reactor thread died".into());
    }
    let log = lock(&log);
    for (index, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(outcome) => {
                let found = check_client(index, case, outcome, &log, &sent, reactors_alive);
                violations.extend(found.into_iter().take(4));
            }
            Err(e) => violations.push(e.clone()),
        }
    }
    violations
}

fn check_client(
    index: usize,
    case: &Case,
    outcome: &Outcome,
    log: &Log,
    sent: &SenderLog,
    reactors_alive: bool,
) -> Vec<String> {
    let mut found = Vec::new();
    let mut fail = |what: String| found.push(format!("client {index}: {what}"));
    let got = &outcome.received;
    let Some(&tag) = log.tags.get(&index) else {
        fail("on_open never ran".into());
        return found;
    };
    let conn = &log.conns[&tag];
    for m in &got.malformed {
        fail(format!("received {m}"));
    }
    let hello = tagged::Tagged {
        source: Source::Callback,
        tag,
        seq: 0,
    };
    // A reset client may have read nothing at all.
    let read_nothing = outcome.reset && got.messages.is_empty();
    if got.messages.first() != Some(&hello) && !read_nothing {
        let first = got.messages.first();
        fail(format!(
            "the first message is {first:?}, not the hello of tag {tag}"
        ));
    }
    let mut callback: Vec<u32> = Vec::new();
    let mut last_from_sender = 0;
    for m in &got.messages {
        let own = if m.source == Source::Broadcast {
            EVERYBODY
        } else {
            tag
        };
        if m.tag != own {
            fail(format!(
                "(tag {tag}) received {m:?}, meant for tag {}: another connection's bytes",
                m.tag
            ));
            continue;
        }
        if m.source == Source::Callback {
            if let Some(&last) = callback.last().filter(|&&last| m.seq <= last) {
                fail(format!(
                    "callback seq {} after {last}: out of order or twice",
                    m.seq
                ));
            }
            callback.push(m.seq);
            continue;
        }
        if m.seq <= last_from_sender {
            fail(format!(
                "sender seq {} after {last_from_sender}: out of order or twice",
                m.seq
            ));
        }
        last_from_sender = m.seq;
        if sent.messages.get(&m.seq) != Some(&(m.tag, true)) {
            fail(format!(
                "received {m:?}, which the Sender thread did not queue for it"
            ));
        }
    }

    let accepted: Vec<u32> = (conn.sends.iter())
        .filter(|(_, status)| matches!(status, SendStatus::Sent | SendStatus::Backpressure))
        .map(|&(seq, _)| seq)
        .collect();
    let exact = if outcome.reset {
        accepted.starts_with(&callback)
    } else {
        callback == accepted
    };
    if !exact {
        fail(difference(&callback, &accepted, &conn.sends));
    }
    if !outcome.reset {
        if got.end != peer::End::Closed {
            let (end, n) = (&got.end, got.messages.len());
            fail(format!(
                "the stream ended {end:?} after {n} messages, not with a close frame and the end"
            ));
        }
        let allowed = |code: u16| {
            code == 1000
                || (code == 1011 && conn.panics > 0)
                || (code == 1008 && case.policy == BackpressurePolicy::Close)
                || conn.closed_with.contains(&code)
                || sent.closes.contains(&(tag, code))
        };
        if let Some(code) = got.close.filter(|&code| !allowed(code)) {
            fail(format!(
                "closed with {code}, which nothing in the script asked for"
            ));
        }
        if let Some(e) = &outcome.write_error {
            fail(format!("a command could not be written: {e}"));
        }
    }
    if reactors_alive && conn.on_close.len() != 1 {
        fail(format!("on_close was called {} times", conn.on_close.len()));
    }
    found
}

/// Where the callback messages received first differ from those accepted.
fn difference(received: &[u32], accepted: &[u32], sends: &[(u32, SendStatus)]) -> String {
    let status = |seq: u32| match sends.iter().find(|(s, _)| *s == seq) {
        Some((_, status)) => format!("{status:?}"),
        None => "never sent".into(),
    };
    let at = (received.iter().zip(accepted))
        .position(|(r, a)| r != a)
        .unwrap_or(received.len().min(accepted.len()));
    let counts = format!(
        "{} callback messages received, {} accepted",
        received.len(),
        accepted.len()
    );
    match (received.get(at), accepted.get(at)) {
        (Some(&r), _) if !accepted.contains(&r) => {
            format!(
                "callback seq {r} arrived, but its send was {}; {counts}",
                status(r)
            )
        }
        (_, Some(&a)) => format!("callback seq {a} ({}) did not arrive; {counts}", status(a)),
        _ => counts,
    }
}

fn config() -> ProptestConfig {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: env("PROPTEST_CASES").unwrap_or(24),
        // A case takes a second or so, and a failure is a race: shrink for a while,
        // not for ever.
        max_shrink_iters: env("PROPTEST_MAX_SHRINK_ITERS").unwrap_or(256),
        max_shrink_time: env("PROPTEST_MAX_SHRINK_TIME").unwrap_or(30_000),
        // A failing seed replayed on the next run would only sometimes fail again.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_connection_receives_exactly_its_own_byte_stream(case in script::case()) {
        watch_reactor_panics();
        let violations = run_case(&case);
        prop_assert!(violations.is_empty(), "{}", violations.join("\n"));
    }
}
