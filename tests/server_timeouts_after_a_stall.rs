//! Regression: a timeout set after the reactor was held up fired early. Deadlines
//! counted from the last tick the timers had processed, so a deadline set in a turn
//! whose poll returned late (a busy machine that ran the reactor late, a callback
//! that blocked at the end of the previous turn) was short by the delay: a 500 ms
//! handshake timeout closed a silent connection 208 ms after its connect on a
//! loaded machine. Now a turn notes the clock when its poll returns. The reactor is
//! held up here by an `on_close` that blocks until the test lets it go (the
//! stimulus: the close timeout's, run with the timers at the end of a turn); the
//! verdict is a lower bound, which a busy machine can only make easier to meet.

#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use server::{PATIENCE, UPGRADE, raw, read_frame, read_head, start, test_config};
use wsreactor::{CloseCode, ConnId, Handler, Request, Socket, Upgrade};

const IDLE: Duration = Duration::from_millis(500);

/// Connections to `/hold` block their reactor in `on_close` until the test lets it
/// go; every connection reports its id.
#[derive(Clone)]
struct Hold {
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    holding: mpsc::Sender<()>,
    opened: mpsc::Sender<ConnId>,
}

impl Handler for Hold {
    type Session = bool;
    fn on_upgrade(&mut self, request: &Request<'_, '_>) -> Upgrade<bool> {
        Upgrade::accept(request.path() == "/hold")
    }
    fn on_open(&mut self, ws: &mut Socket<'_, bool>) {
        let _ = self.opened.send(ws.id());
    }
    fn on_close(&mut self, _: ConnId, hold: bool, _: CloseCode, _: &str) {
        if hold {
            let _ = self.holding.send(());
            let _ = self.release.lock().unwrap().recv_timeout(PATIENCE);
        }
    }
}

fn upgraded(addr: std::net::SocketAddr, path: &str) -> std::net::TcpStream {
    let mut s = raw(addr);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let request = UPGRADE.replacen("GET / ", &format!("GET {path} "), 1);
    s.write_all(request.as_bytes()).unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 101"));
    s
}

/// A read in the turn after the timers were held up starts an idle timeout that
/// pings no sooner than the timeout after it.
#[test]
fn an_idle_deadline_set_after_a_stall_is_not_short() {
    let (release, released) = mpsc::channel();
    let (holding, held) = mpsc::channel();
    let (opened, ids) = mpsc::channel();
    let config = test_config()
        .with_idle_timeout(Some(IDLE))
        .with_close_timeout(Duration::from_millis(100))
        .with_handshake_timeout(None)
        .with_write_timeout(None);
    let handler = Hold {
        release: Arc::new(Mutex::new(released)),
        holding,
        opened,
    };
    let server = start(config, handler);
    let _silent = upgraded(server.local_addr(), "/hold");
    let hold = ids.recv_timeout(PATIENCE).unwrap();
    let mut reader = upgraded(server.local_addr(), "/");
    // The held connection never answers the close: its close timeout ends it, in
    // the timers, and its on_close holds the reactor.
    let _ = server.sender().close(hold, CloseCode::NORMAL, "bye");
    held.recv_timeout(PATIENCE).unwrap();
    // Meanwhile the reader sends; its bytes wait for the reactor, and time passes.
    reader
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])
        .unwrap();
    std::thread::sleep(IDLE);
    // The read happens after this, and starts the reader's idle timeout.
    let read_after = Instant::now();
    release.send(()).unwrap();
    let (op, _) = read_frame(&mut reader).expect("the idle ping");
    let pinged = read_after.elapsed();
    assert_eq!(op, 0x9, "a ping");
    assert!(
        pinged >= IDLE,
        "pinged {pinged:?} after its last read, under the {IDLE:?} idle timeout"
    );
}
