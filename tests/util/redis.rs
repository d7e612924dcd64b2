//! A real redis-server for the bridge's tests (feature `redis`), and nodes: the
//! pubsub example started with `--redis`.
//!
//! redis-server comes from Debian's package (`tests/redis/run.sh` installs it if
//! missing). Each test starts its own on a free 127.0.0.1 port, with no persistence,
//! and kills it when dropped; when `WSREACTOR_REDIS_PIDS` names a directory, each
//! server's pid is written there too, so that the script can stop whatever a test
//! that was killed itself left behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tungstenite::Message as T;

use super::server::PATIENCE;

/// A redis-server child process on 127.0.0.1.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        let mut server = RedisServer::not_started();
        server.restart();
        server
    }

    /// A free port and a directory for one, not started yet (see
    /// [`restart`](Self::restart)).
    pub fn not_started() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir =
            std::env::temp_dir().join(format!("wsreactor-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for redis-server");
        RedisServer {
            child: None,
            port,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it (again) on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let bin = std::env::var("WSREACTOR_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin}: {e} (install Debian's redis-server, or run tests/redis/run.sh)")
            });
        if let Ok(pids) = std::env::var("WSREACTOR_REDIS_PIDS") {
            let _ = std::fs::write(
                std::path::Path::new(&pids).join(child.id().to_string()),
                b"",
            );
        }
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(mut con) = self.try_client()
                && redis::cmd("PING").query::<String>(&mut con).is_ok()
            {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL: no goodbye to its clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if let Ok(pids) = std::env::var("WSREACTOR_REDIS_PIDS") {
                let _ =
                    std::fs::remove_file(std::path::Path::new(&pids).join(child.id().to_string()));
            }
        }
    }

    /// Sends a signal to it (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    fn try_client(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(PATIENCE)
    }

    /// A plain connection, for PUBSUB and PUBLISH from the test.
    pub fn client(&self) -> redis::Connection {
        let con = self.try_client().expect("redis answers");
        con.set_read_timeout(Some(PATIENCE)).unwrap();
        con
    }

    /// Subscribers of `channel` in Redis: the nodes that subscribe to it.
    pub fn numsub(&self, channel: &str) -> u64 {
        let (_, n): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query(&mut self.client())
            .expect("PUBSUB NUMSUB");
        n
    }

    /// The channels with a subscriber, sorted.
    pub fn channels(&self) -> Vec<String> {
        let mut channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut self.client())
            .expect("PUBSUB CHANNELS");
        channels.sort();
        channels
    }

    /// Waits until `channel` has `n` subscribers.
    pub fn wait_numsub(&self, channel: &str, n: u64) {
        let started = Instant::now();
        loop {
            let now = self.numsub(channel);
            if now == n {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{channel}: {now} subscribers in Redis, not {n}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The pubsub example as one node of several; killed when dropped.
pub struct Node {
    child: Child,
    pub addr: String,
    lines: mpsc::Receiver<String>,
}

impl Node {
    /// Starts `examples/pubsub --addr 127.0.0.1:0 --threads 2 --redis URL
    /// --node-name NAME` (built with `--features redis`) and waits until it listens.
    pub fn start(redis: &str, name: &str) -> Node {
        Node::start_with(redis, name, &[])
    }

    /// As [`start`](Self::start), with more flags.
    pub fn start_with(redis: &str, name: &str, flags: &[&str]) -> Node {
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples")
            .join("pubsub");
        let mut child = Command::new(&bin)
            .args(["--addr", "127.0.0.1:0", "--threads", "2"])
            .args(["--redis", redis, "--node-name", name])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (tests/redis/run.sh builds it)", bin.display()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(format!("stderr: {line}"));
            }
        });
        let first = lines
            .recv_timeout(PATIENCE)
            .expect("the node prints its address");
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| {
                panic!("{first:?}: is examples/pubsub built with --features redis? (tests/redis/run.sh)")
            })
            .to_owned();
        Node { child, addr, lines }
    }

    /// Waits for a stdout line equal to `want`, skipping others; how long it took.
    /// `timeout` is a hang guard ([`PATIENCE`] unless a test has a reason).
    pub fn wait_line(&self, want: &str, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return started.elapsed(),
                Ok(_) => {}
                Err(_) => panic!("node {}: no {want:?} within {timeout:?}", self.addr),
            }
        }
    }

    /// Starts a node and waits until its bridge is connected.
    pub fn connected(redis: &str, name: &str) -> Node {
        let node = Node::start(redis, name);
        node.wait_line("redis: connected", PATIENCE);
        node
    }

    /// A client of this node (reads time out after [`PATIENCE`]).
    pub fn client(&self) -> Client {
        let (ws, _) = tungstenite::connect(format!("ws://{}/", self.addr)).expect("connects");
        set_timeout(&ws, PATIENCE);
        ws
    }

    /// Kills it (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub type Client = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

pub fn set_timeout(ws: &Client, timeout: Duration) {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// Sends a text command.
pub fn say(ws: &mut Client, text: &str) {
    ws.send(T::text(text)).expect("send");
}

/// A command and a round trip: once the error reply to a bogus command is back, the
/// node has handled the command.
pub fn command(ws: &mut Client, text: &str) {
    say(ws, text);
    say(ws, "bogus");
    let reply = line(ws);
    assert!(reply.starts_with("error: "), "{reply:?} after {text:?}");
}

/// The next text message (pings and pongs skipped).
pub fn line(ws: &mut Client) -> String {
    loop {
        match ws.read().expect("a message") {
            T::Text(t) => return t.as_str().to_owned(),
            T::Ping(_) | T::Pong(_) => {}
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
        other => panic!("expected nothing, got {other:?}"),
    }
    set_timeout(ws, PATIENCE);
}
