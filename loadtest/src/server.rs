//! The server under test, seen from outside: its CPU time and resident memory from
//! /proc, and, for the demo, the echo example started as a child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// CPU time (all threads, nanoseconds) and resident memory (bytes) of `pid`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub cpu_ns: u64,
    pub rss_bytes: u64,
}

/// Reads `pid`'s usage. CPU time is the sum of each thread's `schedstat` run time
/// (nanoseconds, finer than the 10 ms ticks of /proc/PID/stat).
pub fn sample(pid: u32) -> Option<Sample> {
    let mut cpu_ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        cpu_ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Sample {
        cpu_ns,
        rss_bytes: rss_kib * 1024,
    })
}

/// The number of sockets `pid` has open (its listeners and connections), from the
/// links in /proc/PID/fd. `None` when they cannot be read (another user's process).
pub fn socket_count(pid: u32) -> Option<usize> {
    let mut sockets = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let Ok(entry) = entry else { continue };
        // A descriptor closed between the listing and the readlink is simply gone.
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
        {
            sockets += 1;
        }
    }
    Some(sockets)
}

/// The machine, for the report: CPU model and core count.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{model}, {cores} cores")
}

/// The echo example, started for the demo.
pub struct EchoServer {
    child: Child,
    pub addr: SocketAddr,
}

impl EchoServer {
    /// Starts the echo example on a free port with `threads` reactors, pinned to
    /// CPU 0 when `taskset` is there.
    ///
    /// The example is `wsload-echo`, the echo example's source built by cargo beside
    /// wsload as a binary of this crate (`cargo run -p wsload` builds both, with
    /// nothing of the tests' dev-dependencies). A wsload without it beside (copied
    /// elsewhere) builds the example itself: `cargo build --release -p wsreactor
    /// --example echo`.
    pub fn start(threads: usize) -> Result<EchoServer, String> {
        let beside = std::env::current_exe()
            .ok()
            .map(|exe| exe.with_file_name("wsload-echo"))
            .filter(|bin| bin.is_file());
        let binary = match beside {
            Some(bin) => bin,
            None => build_example()?,
        };
        eprintln!("starting the echo example with {threads} reactor thread(s)");
        let threads = threads.to_string();
        let args = ["--addr", "127.0.0.1:0", "--threads", threads.as_str()];
        let mut command = if has_taskset() {
            let mut c = Command::new("taskset");
            c.args(["-c", "0"]).arg(&binary).args(args);
            c
        } else {
            let mut c = Command::new(&binary);
            c.args(args);
            c
        };
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or("no stdout from the echo example")?;
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("reading the echo example's address: {e}"))?;
        // Keep reading what the server prints (its summary at exit), so it never
        // writes into a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("unexpected first line from the echo example: {line:?}"))?;
        Ok(EchoServer { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGTERM (a graceful shutdown) and waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the echo example (release) with cargo, showing cargo's progress, and
/// returns its path.
fn build_example() -> Result<PathBuf, String> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the echo example: cargo build --release -p wsreactor --example echo");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "wsreactor", "--example", "echo"])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err("building the echo example failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release/examples/echo"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn has_taskset() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_ns > 0);
    }

    #[test]
    fn counts_this_process_sockets() {
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = listener.accept().unwrap();
        // Other tests in this binary open and close sockets at the same time: at
        // least our three.
        assert!(socket_count(pid).expect("own /proc entry") >= 3);
        drop((listener, client, accepted));
    }
}
