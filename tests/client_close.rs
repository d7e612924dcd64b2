//! The close handshake from the client's side: either side first, the code reported,
//! TCP closed after (by the server first, or by us after the close timeout), a close
//! from another thread while `recv` is blocked, and a server that never answers.

#[path = "util/scripted.rs"]
mod scripted;
#[path = "util/server.rs"]
mod server;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use scripted::{accept, client_closed, frame, read_client_close, read_client_frame, serve};
use server::{Echo, PATIENCE, start, test_config, wait_for_stats, wait_until};
use wsreactor::client::{self, ClientBuilder, Error, Incoming, Phase, SendError};
use wsreactor::proto::CloseFrame;
use wsreactor::{CloseCode, Handler, Message, Socket};

/// The client's close timeout where a test waits for it to pass.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(300);

/// Runs `read` on a thread of its own and returns once that thread sleeps in the
/// kernel: it does nothing else that blocks before its read, so the test's next step
/// finds the read under way, however long a busy machine took to start it. Where
/// /proc cannot say (not Linux), it gives the thread 100 ms.
fn blocked_reader<T: Send + 'static>(
    read: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let (task, started) = mpsc::channel();
    let reader = thread::spawn(move || {
        let _ = task.send(std::fs::read_link("/proc/thread-self").ok());
        read()
    });
    match started.recv().unwrap() {
        Some(task) => {
            let stat = std::path::Path::new("/proc").join(task).join("stat");
            wait_until(PATIENCE, || {
                // The state is the first field after the command's closing parenthesis.
                reader.is_finished()
                    || std::fs::read_to_string(&stat).is_ok_and(|s| {
                        s.rsplit_once(')')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
                    })
            });
        }
        None => thread::sleep(Duration::from_millis(100)),
    }
    reader
}

fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

#[test]
fn our_close_is_answered_with_the_servers_code_and_the_connection_ends() {
    let server = start(test_config(), Echo);
    let mut client = client::connect(format!("ws://{}/", server.local_addr())).unwrap();
    client.close(CloseCode::NORMAL, "done").unwrap();
    assert!(matches!(
        client.send(Message::Text("late")),
        Err(Error::Send(SendError::Closed))
    ));
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Close(Some(CloseFrame {
            code: CloseCode::NORMAL,
            reason: ""
        }))
    );
    assert!(matches!(client.recv(), Err(Error::Closed)));
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(stats.closed_with(1000), 1, "{stats:?}");
}

/// Closes every connection with 4000 "bye" when asked to.
#[derive(Clone)]
struct CloseOnRequest;

impl Handler for CloseOnRequest {
    type Session = ();
    fn on_message(&mut self, ws: &mut Socket<'_, ()>, _: Message<'_>) {
        ws.close(CloseCode(4000), "bye");
    }
}

#[test]
fn the_servers_close_is_answered_and_reported_with_its_code() {
    let server = start(test_config(), CloseOnRequest);
    let mut client = client::connect(format!("ws://{}/", server.local_addr())).unwrap();
    client.send(Message::Text("close, please")).unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Close(Some(CloseFrame {
            code: CloseCode(4000),
            reason: "bye"
        }))
    );
    assert!(matches!(client.recv(), Err(Error::Closed)));
    // The server got our reply (it reports its own code for a close it started).
    let stats = wait_for_stats(&server, PATIENCE, |s| s.open == 0);
    assert_eq!(stats.closed_with(4000), 1, "{stats:?}");
}

#[test]
fn messages_sent_before_the_servers_reply_still_arrive() {
    let server = serve(
        |head| accept(head, ""),
        |mut s| {
            use std::io::Write;
            let code = read_client_close(&mut s);
            s.write_all(&frame(0x81, b"in flight")).unwrap();
            s.write_all(&frame(0x88, &close_payload(1000, ""))).unwrap();
            code
        },
    );
    let mut client = client::connect(server.url()).unwrap();
    client.close(CloseCode::NORMAL, "").unwrap();
    assert_eq!(
        client.recv().unwrap(),
        Incoming::Message(Message::Text("in flight"))
    );
    assert!(
        matches!(client.recv().unwrap(), Incoming::Close(Some(f)) if f.code == CloseCode::NORMAL)
    );
    assert_eq!(server.join(), Some(1000));
}

/// RFC 6455 §7.1.1: after the close frames the server closes TCP first; a client
/// waits for that, and closes itself only when the server does not within the close
/// timeout.
#[test]
fn after_the_close_frames_the_client_waits_for_the_server_to_close_tcp_then_closes() {
    // A server that closes TCP at once: recv returns on its FIN, long before a close
    // timeout that is many times the test's patience.
    let prompt = serve(
        |head| accept(head, ""),
        |mut s| {
            use std::io::Write;
            s.write_all(&frame(0x88, &close_payload(4001, "x")))
                .unwrap();
            read_client_close(&mut s)
        },
    );
    let mut client = ClientBuilder::new(prompt.url())
        .close_timeout(PATIENCE * 10)
        .connect()
        .unwrap();
    let (done, returned) = mpsc::channel();
    thread::spawn(move || {
        let result = match client.recv() {
            Ok(Incoming::Close(Some(f))) => Ok(f.code.0),
            other => Err(format!("{other:?}")),
        };
        let _ = done.send(result);
    });
    assert_eq!(
        returned.recv_timeout(PATIENCE),
        Ok(Ok(4001)),
        "recv returns when the server closes TCP, not at the close timeout"
    );
    assert_eq!(prompt.join(), Some(4001), "our reply echoes the code");

    // A server that keeps TCP open: the client closes it after the close timeout.
    let lingering = serve(
        |head| accept(head, ""),
        |mut s| {
            use std::io::Write;
            s.write_all(&frame(0x88, &close_payload(4002, ""))).unwrap();
            let code = read_client_close(&mut s);
            (code, client_closed(&mut s))
        },
    );
    let mut client = ClientBuilder::new(lingering.url())
        .close_timeout(CLOSE_TIMEOUT)
        .connect()
        .unwrap();
    let started = Instant::now();
    assert!(matches!(client.recv().unwrap(), Incoming::Close(Some(f)) if f.code.0 == 4002));
    assert!(
        started.elapsed() >= CLOSE_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(lingering.join(), (Some(4002), true));
}

#[test]
fn a_close_from_another_thread_ends_a_recv_blocked_in_this_one() {
    let server = start(test_config(), Echo);
    let mut client = client::connect(format!("ws://{}/", server.local_addr())).unwrap();
    let sender = client.sender();
    let reader = blocked_reader(move || match client.recv() {
        Ok(Incoming::Close(frame)) => frame.map(|f| f.code),
        other => panic!("expected the server's close, got {other:?}"),
    });
    sender.close(CloseCode(4100), "from the sender").unwrap();
    assert_eq!(reader.join().unwrap(), Some(CloseCode(4100)));
    wait_for_stats(&server, PATIENCE, |s| {
        s.open == 0 && s.closed_with(4100) == 1
    });
}

/// A server that reads our close frame and never answers it, nor closes TCP.
fn silent_server() -> scripted::Scripted<(Option<u16>, bool)> {
    serve(
        |head| accept(head, ""),
        |mut s| {
            let code = read_client_close(&mut s);
            (code, client_closed(&mut s))
        },
    )
}

#[test]
fn a_server_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let server = silent_server();
    let mut client = ClientBuilder::new(server.url())
        .close_timeout(CLOSE_TIMEOUT)
        .connect()
        .unwrap();
    let started = Instant::now();
    client.close(CloseCode::NORMAL, "").unwrap();
    assert!(matches!(client.recv(), Err(Error::Timeout(Phase::Close))));
    assert!(
        started.elapsed() >= CLOSE_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(client.recv(), Err(Error::Closed)));
    assert_eq!(server.join(), (Some(1000), true));
}

#[test]
fn the_close_timeout_also_ends_a_recv_that_was_blocked_when_another_thread_closed() {
    let server = silent_server();
    let mut client = ClientBuilder::new(server.url())
        .close_timeout(CLOSE_TIMEOUT)
        .connect()
        .unwrap();
    let sender = client.sender();
    // No read timeout: only the close watchdog can end this read.
    let reader = blocked_reader(move || {
        let result = client.recv().map(|_| ());
        (result, Instant::now())
    });
    let closed_at = Instant::now();
    sender.close(CloseCode::NORMAL, "").unwrap();
    let (result, ended_at) = reader.join().unwrap();
    assert!(
        matches!(result, Err(Error::Timeout(Phase::Close))),
        "{result:?}"
    );
    assert!(
        ended_at - closed_at >= CLOSE_TIMEOUT,
        "{:?}",
        ended_at - closed_at
    );
    assert_eq!(server.join(), (Some(1000), true));
}

#[test]
fn dropping_the_client_closes_tcp() {
    let server = serve(
        |head| accept(head, ""),
        |mut s| read_client_frame(&mut s).is_none() && client_closed(&mut s),
    );
    let client = client::connect(server.url()).unwrap();
    drop(client);
    assert!(server.join());
}
