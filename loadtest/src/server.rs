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
    /// The example is `wsload-echo`, the echo example's source as a binary of this
    /// crate, beside wsload. Run by cargo (`cargo run -p wsload`, which builds only
    /// the binary it runs), wsload first has cargo build it in its own profile:
    /// with wsload's dependencies already built, that compiles the one file, and
    /// nothing of the tests' dev-dependencies (which `--example echo` would build).
    pub fn start(threads: usize) -> Result<EchoServer, String> {
        let binary = echo_binary()?;
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

/// `wsload-echo` beside this executable: built first (or found fresh) by cargo
/// in this executable's profile when wsload runs under cargo (`CARGO` is set),
/// showing cargo's progress; used as it is otherwise.
fn echo_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where is wsload: {e}"))?;
    let beside = exe.with_file_name("wsload-echo");
    if let Ok(cargo) = std::env::var("CARGO") {
        let release = exe
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|profile| profile == "release");
        let mut args = vec!["build", "-p", "wsload", "--bin", "wsload-echo"];
        if release {
            args.push("--release");
        }
        eprintln!("building the echo example: cargo {}", args.join(" "));
        let status = Command::new(&cargo)
            .args(&args)
            .current_dir(workspace_root())
            .status()
            .map_err(|e| format!("cannot run {cargo}: {e}"))?;
        if !status.success() {
            return Err("building the echo example failed".into());
        }
    }
    if beside.is_file() {
        Ok(beside)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release -p wsload`",
            beside.display()
        ))
    }
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
