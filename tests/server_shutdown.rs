//! Graceful shutdown: every client gets close 1001 after everything queued for it,
//! and nothing queued is lost; new connections are refused. `ServerHandle::wait`
//! blocks until another thread shuts the server down; connections already
//! answered in plain HTTP do not hold the shutdown up.
//!
//! Where a shutdown must not wait for a deadline, the deadline is set far past
//! [`PATIENCE`], the hang guard: a shutdown that ends within the guard did not
//! wait for it, however slow the machine.

#[path = "util/server.rs"]
mod server;

use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use server::{
    PATIENCE, Register, connect, raw, read_head, read_until_closed, start, test_config,
    wait_for_turns, wait_until,
};
use tungstenite::Message as T;
use wsreactor::client::{Error, Incoming};
use wsreactor::{CloseCode, Handler, HttpRequest, HttpResponse, Message, QueueStatus};

const CLIENTS: usize = 5;
const MESSAGES: u32 = 300;
const SIZE: usize = 8 * 1024;
/// A grace or close timeout no test may wait out: ten times the hang guard.
const FOREVER: Duration = Duration::from_secs(10 * 60);

/// A `wsreactor::client` whose reads wait up to the hang guard.
fn patient_client(addr: std::net::SocketAddr) -> wsreactor::client::Client {
    wsreactor::client::ClientBuilder::new(format!("ws://{addr}/"))
        .read_timeout(Some(PATIENCE))
        .connect()
        .expect("client connects")
}

#[test]
fn shutdown_delivers_everything_queued_then_1001_to_every_client() {
    let (register, ids) = Register::new();
    let config = test_config().with_backpressure(8 << 20, wsreactor::BackpressurePolicy::Drop);
    let server = start(config, register);
    let addr = server.local_addr();
    let mut clients = Vec::new();
    let mut conn_ids = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(patient_client(addr));
        conn_ids.push(ids.recv_timeout(PATIENCE).unwrap());
    }
    // 2.4 MiB for each client, more than the kernel buffers: much of it is still
    // queued in the server when the shutdown begins.
    let sender = server.sender();
    for seq in 0..MESSAGES {
        let mut payload = vec![seq as u8; SIZE];
        payload[..4].copy_from_slice(&seq.to_be_bytes());
        for id in &conn_ids {
            sender.send(*id, Message::Binary(&payload));
        }
    }
    // With a grace the test never waits out, the shutdown can only end by every
    // close handshake finishing.
    let (stopped, shutdown) = mpsc::channel();
    std::thread::spawn(move || {
        let result = server.shutdown(FOREVER);
        let _ = stopped.send((result, server));
    });
    for mut client in clients {
        for seq in 0..MESSAGES {
            match client.recv().unwrap() {
                Incoming::Message(Message::Binary(b)) => {
                    assert_eq!(b.len(), SIZE);
                    assert_eq!(u32::from_be_bytes([b[0], b[1], b[2], b[3]]), seq);
                }
                other => panic!("message {seq}: unexpected {other:?}"),
            }
        }
        // The client answers the close, and returns it once the server has closed TCP.
        match client.recv().unwrap() {
            Incoming::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GOING_AWAY),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(client.recv(), Err(Error::Closed)));
    }
    let (result, server) = shutdown
        .recv_timeout(PATIENCE)
        .expect("finished by the close handshakes, not the deadline");
    result.expect("no reactor panicked");
    let stats = server.stats();
    assert_eq!(stats.closed_with(1001), CLIENTS as u64);
    assert_eq!(stats.open, 0);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}

#[test]
fn wait_returns_once_another_thread_shuts_the_server_down() {
    let (register, ids) = Register::new();
    let server = start(test_config(), register);
    let mut client = connect(server.local_addr(), "/");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = client.get_ref() {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    let id = ids.recv_timeout(PATIENCE).unwrap();
    let sender = server.sender();
    let (waited, done) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let result = server.wait();
        let _ = waited.send(());
        result
    });
    // Nothing has stopped the server: wait() is still blocked, and it serves. (The
    // pause only gives a wait() that wrongly returns the time to do so.)
    assert!(done.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(
        sender.send(id, Message::Text("still here")),
        QueueStatus::Queued
    );
    assert_eq!(client.read().unwrap(), T::text("still here"));
    assert!(done.try_recv().is_err(), "wait() returned while serving");
    // A signal handler would do this.
    sender.shutdown(PATIENCE);
    match client.read().unwrap() {
        T::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("unexpected {other:?}"),
    }
    // The client's answer to the close (tungstenite queued it) ends the handshake.
    match client.flush() {
        Ok(()) | Err(tungstenite::Error::ConnectionClosed) => {}
        Err(e) => panic!("the close reply: {e}"),
    }
    done.recv_timeout(PATIENCE).expect("wait() returned");
    waiter.join().unwrap().expect("no reactor panicked");
    assert_eq!(sender.send(id, Message::Text("late")), QueueStatus::Closed);
}

/// This thread's id, as /proc/self/task names it.
fn thread_id() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .expect("a task id")
        .to_string_lossy()
        .into_owned()
}

/// Whether thread `tid` of this process is asleep (blocked), from /proc.
fn asleep(tid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('S'))
}

#[test]
fn wait_and_shutdown_from_two_threads_both_return() {
    let server = std::sync::Arc::new(start(test_config(), server::Echo));
    let (started, tid) = mpsc::channel();
    let waiter = {
        let server = server.clone();
        std::thread::spawn(move || {
            let _ = started.send(thread_id());
            server.wait()
        })
    };
    // The shutdown comes while the waiter is blocked in wait(): the thread has
    // nothing else to block on between its report and the call.
    let tid = tid.recv_timeout(PATIENCE).expect("the waiter starts");
    wait_until(PATIENCE, || asleep(&tid));
    server.shutdown(Duration::from_secs(1)).unwrap();
    waiter.join().unwrap().unwrap();
    server.wait().unwrap();
}

/// Serves a page at every path.
#[derive(Clone)]
struct Page;

impl Handler for Page {
    type Session = ();
    fn on_http(&mut self, _: &HttpRequest<'_, '_>) -> Option<HttpResponse> {
        Some(HttpResponse::html("<p>hello</p>"))
    }
}

#[test]
fn an_answered_http_connection_left_open_does_not_hold_the_shutdown_up() {
    // A close timeout far longer than the test may take.
    let config = test_config().with_close_timeout(FOREVER);
    let server = start(config, Page);
    let mut client = raw(server.local_addr());
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut client).starts_with("HTTP/1.1 200 OK"));
    // The page arrived; the client keeps the connection open (and even sends more,
    // which the server must read away rather than reset the answer).
    client
        .write_all(b"GET /again HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    // The reactor has read those bytes once a turn that began after they arrived
    // has ended: the turn it is in now may have begun before.
    wait_for_turns(&server);
    wait_for_turns(&server);
    assert_eq!(
        server.stats().open,
        1,
        "the server waits for the client's FIN"
    );
    let started = Instant::now();
    let stopped = server::shutdown_within(server, FOREVER, PATIENCE);
    assert!(
        matches!(stopped, Some(Ok(()))),
        "not shut down in {:?}: waiting for the close timeout?",
        started.elapsed()
    );
    assert_eq!(read_until_closed(&mut client), b"<p>hello</p>");
}
