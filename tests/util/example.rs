//! Runs a built example binary (cargo test builds the examples) on a free port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::server::PATIENCE;

pub type Client = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// An example server; killed when dropped.
pub struct Example {
    child: Child,
    pub addr: String,
}

impl Example {
    /// Stops the example with SIGTERM; returns whether it exited with success and
    /// what it printed after its first line.
    pub fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut printed = String::new();
        if let Some(stdout) = self.child.stdout.as_mut() {
            let _ = std::io::Read::read_to_string(stdout, &mut printed);
        }
        let exited = self.child.wait().is_ok_and(|status| status.success());
        (exited, printed)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `examples/NAME` with `--addr 127.0.0.1:0 --threads 2` and waits for its
/// `listening on ADDR` line.
pub fn start(name: &str) -> Example {
    start_with(name, &[])
}

/// Where cargo test built `examples/NAME`: the test binary is in
/// target/PROFILE/deps, the examples in target/PROFILE/examples.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// As [`start`], with more flags.
pub fn start_with(name: &str, flags: &[&str]) -> Example {
    let bin = binary(name);
    let mut child = Command::new(&bin)
        .args(["--addr", "127.0.0.1:0", "--threads", "2"])
        .args(flags)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} (built by cargo test): {e}", bin.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Example { child, addr }
}

/// A tungstenite client of `example` at `path`, whose reads time out after
/// [`PATIENCE`] (a hang guard).
pub fn connect(example: &Example, path: &str) -> Client {
    let (ws, _) = tungstenite::connect(format!("ws://{}{path}", example.addr)).unwrap();
    set_timeout(&ws, PATIENCE);
    ws
}

pub fn set_timeout(ws: &Client, timeout: Duration) {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// The next text message (pings and pongs skipped).
pub fn line(ws: &mut Client) -> String {
    loop {
        match ws.read().unwrap() {
            tungstenite::Message::Text(t) => return t.as_str().to_owned(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Nothing arrives for 300 ms. A check for silence, which a busy machine cannot
/// fail (it can only make a late message go unseen).
pub fn quiet(ws: &mut Client) {
    set_timeout(ws, Duration::from_millis(300));
    match ws.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    set_timeout(ws, PATIENCE);
}
