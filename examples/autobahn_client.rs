//! The client that the Autobahn TestSuite's fuzzing server (`wstest -m fuzzingserver`)
//! drives: `wsreactor::client`, the crate's blocking client, offering permessage-deflate.
//!
//! ```text
//! cargo run --release --example autobahn_client -- --addr 127.0.0.1:9001 --agent wsreactor
//! ```
//!
//! It asks the suite how many cases it has (`/getCaseCount`), runs each one
//! (`/runCase?case=N&agent=AGENT`), echoing every text and binary message as it arrived,
//! then has the suite write its reports (`/updateReports?agent=AGENT`). The grades are in
//! those reports, which tests/autobahn/check.py reads: this program exits non-zero only
//! when it cannot talk to the suite at all. `--case N` runs one case, for debugging.

use std::error::Error;
use std::io;
use std::time::{Duration, Instant};

use wsreactor::Message;
use wsreactor::client::{self, ClientBuilder, Incoming};

/// Exactly the suite's largest message (16 MiB, cases 9.1.6 and 9.2.6), so an
/// off-by-one in the limit check fails those cases.
const MAX_MESSAGE: usize = 16 << 20;
/// The longest the suite may stay silent within a case; its own pauses are a few seconds.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait, after the close frames, for the server to close TCP first
/// (RFC 6455 §7.1.1) before closing it ourselves.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

fn main() {
    if let Err(e) = run() {
        eprintln!("autobahn_client: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let mut addr = String::from("127.0.0.1:9001");
    let mut agent = String::from("wsreactor");
    let mut only_case: Option<u32> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = value()?,
            "--agent" => agent = value()?,
            "--case" => only_case = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("usage: autobahn_client [--addr HOST:PORT] [--agent NAME] [--case N]");
                return Ok(());
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    // The agent goes into a query string and a report file name unescaped.
    if agent.is_empty()
        || !agent
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!("agent {agent:?}: use letters, digits, '-', '_' and '.'").into());
    }

    let started = Instant::now();
    let count = session(&addr, "/getCaseCount", false)
        .map_err(|e| format!("getCaseCount: {e}"))?
        .and_then(|text| text.trim().parse::<u32>().ok())
        .ok_or("getCaseCount: no case count in the suite's answer")?;

    let cases = match only_case {
        Some(case) => case..=case,
        None => 1..=count,
    };
    let mut errors = 0;
    for case in cases.clone() {
        let path = format!("/runCase?case={case}&agent={agent}");
        if let Err(e) = session(&addr, &path, true) {
            // The report grades the case; the error is printed to tell why.
            eprintln!("case {case}: {e}");
            errors += 1;
        }
    }

    session(&addr, &format!("/updateReports?agent={agent}"), false)
        .map_err(|e| format!("updateReports: {e}"))?;
    println!(
        "ran {} of {count} cases in {:.1}s, {errors} ended in a transport error",
        cases.count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One WebSocket connection to `path`, until the close handshake ends (or the
/// connection is failed) and TCP is closed. With `echo`, every message goes back as
/// it came; the first text message is returned.
fn session(addr: &str, path: &str, echo: bool) -> Result<Option<String>, client::Error> {
    let mut client = ClientBuilder::new(format!("ws://{addr}{path}"))
        .deflate(true)
        .max_message_size(MAX_MESSAGE)
        .read_timeout(Some(READ_TIMEOUT))
        .close_timeout(CLOSE_TIMEOUT)
        .connect()?;
    // The echo goes out through a sender while the message still borrows the client.
    let sender = client.sender();
    let mut first_text = None;
    loop {
        let received = client.recv().and_then(|incoming| match incoming {
            Incoming::Message(message) if echo => sender.send(message).map(|()| false),
            Incoming::Message(Message::Text(text)) => {
                first_text.get_or_insert_with(|| text.to_owned());
                Ok(false)
            }
            // The pong went out already.
            Incoming::Message(_) | Incoming::Ping(_) | Incoming::Pong(_) => Ok(false),
            Incoming::Close(_) => Ok(true),
        });
        match received {
            Ok(false) => {}
            Ok(true) => return Ok(first_text),
            Err(e) if ended_by_server(&e) => return Ok(first_text),
            Err(e) => return Err(e),
        }
    }
}

/// Whether the session ended as many cases end it on purpose, for the report to
/// grade: the server broke the protocol (the client has sent its close frame with
/// the code, and closed), dropped TCP without a close handshake, or reset it
/// (wstest aborts the connection once it has our close reply).
fn ended_by_server(e: &client::Error) -> bool {
    match e {
        client::Error::Protocol(_) | client::Error::AbnormalClosure => true,
        client::Error::Io(e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}
