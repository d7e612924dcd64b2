//! What the three comparison peers share: their command line, their listening socket,
//! the `listening on ADDR` line the harness waits for, and rate-limited error logging.
//!
//! The peers are for benchmarking only. Each one binds, prints `listening on ADDR` as the
//! first line of stdout, serves until SIGINT or SIGTERM, and never panics on what a client
//! sends: a connection that misbehaves is logged to stderr and dropped.

use std::fmt::Display;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::num::NonZeroUsize;
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

pub mod tokio_serve;

/// The address a peer binds when `--addr` is not given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9001";

/// The accept backlog: enough for the harness's connect bursts (thousands of handshakes
/// at once); the kernel caps it at `net.core.somaxconn` (4096 here).
pub const LISTEN_BACKLOG: i32 = 4096;

/// Which tokio runtime a tokio-based peer runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `tokio::runtime::Builder::new_current_thread`: everything on the main thread.
    Current,
    /// `tokio::runtime::Builder::new_multi_thread` with `--threads` workers.
    Multi,
}

/// A peer's parsed command line.
#[derive(Clone, Debug)]
pub struct Args {
    /// `--addr HOST:PORT`; port 0 picks a free port, printed on the first line.
    pub addr: SocketAddr,
    /// `--runtime current|multi` (tokio peers only).
    pub runtime: Runtime,
    /// `--threads N`: tokio workers for `--runtime multi`, or event-loop threads for the raw peer.
    pub threads: usize,
}

/// Which flags a peer accepts, for parsing and for its `--help`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// The binary's name.
    pub name: &'static str,
    /// One line on what the peer is.
    pub about: &'static str,
    /// Whether `--runtime` is accepted (the tokio peers).
    pub has_runtime: bool,
    /// What `--threads` defaults to when absent.
    pub default_threads: usize,
}

impl Usage {
    fn text(&self) -> String {
        let mut text = format!(
            "{}: {}\nFor benchmarking only.\n\nUsage: {} [--addr HOST:PORT]",
            self.name, self.about, self.name
        );
        if self.has_runtime {
            text.push_str(" [--runtime current|multi]");
        }
        text.push_str(" [--threads N]\n\n");
        text.push_str(&format!(
            "  --addr HOST:PORT   address to listen on (default {DEFAULT_ADDR}; port 0 picks one)\n"
        ));
        if self.has_runtime {
            text.push_str("  --runtime KIND     tokio runtime: current (one thread) or multi (default multi)\n");
            text.push_str(&format!(
                "  --threads N        worker threads for --runtime multi (default {}, the cores)\n",
                self.default_threads
            ));
        } else {
            text.push_str(&format!(
                "  --threads N        event-loop threads, each with its own SO_REUSEPORT listener (default {})\n",
                self.default_threads
            ));
        }
        text.push_str(
            "\nPrints `listening on ADDR` as the first line of stdout once bound; stops on SIGINT or SIGTERM.\n",
        );
        text
    }

    /// Parses `std::env::args()`, printing help and exiting on `--help`, or printing the
    /// problem and exiting with status 2 on a bad command line.
    pub fn parse_env(&self) -> Args {
        match self.parse(std::env::args().skip(1)) {
            Ok(Some(args)) => args,
            Ok(None) => {
                print!("{}", self.text());
                process::exit(0);
            }
            Err(problem) => {
                eprintln!("{}: {problem}\n\n{}", self.name, self.text());
                process::exit(2);
            }
        }
    }

    /// Parses the arguments after the program name: `Ok(None)` means `--help` was asked for.
    ///
    /// # Errors
    ///
    /// A message naming the flag or value that is unknown, missing or malformed.
    pub fn parse(&self, args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
        let mut addr = DEFAULT_ADDR.to_owned();
        let mut runtime = Runtime::Multi;
        let mut threads = self.default_threads;
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            // Accept both `--flag value` and `--flag=value`.
            let (flag, inline) = match flag.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (flag, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(None),
                "--addr" => addr = value()?,
                "--runtime" if self.has_runtime => {
                    runtime = match value()?.as_str() {
                        "current" => Runtime::Current,
                        "multi" => Runtime::Multi,
                        other => {
                            return Err(format!(
                                "--runtime must be current or multi, not {other:?}"
                            ));
                        }
                    }
                }
                "--threads" => {
                    let raw = value()?;
                    threads = match raw.parse::<usize>() {
                        Ok(n) if n > 0 => n,
                        _ => {
                            return Err(format!(
                                "--threads must be a positive integer, not {raw:?}"
                            ));
                        }
                    }
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let addr = addr
            .parse()
            .map_err(|_| format!("--addr must be HOST:PORT with a numeric host, not {addr:?}"))?;
        Ok(Some(Args {
            addr,
            runtime,
            threads,
        }))
    }
}

/// The number of cores this process may run on (1 if that cannot be told).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Binds a non-blocking TCP listener with `SO_REUSEADDR` (restarts between benchmark rounds
/// do not wait out TIME_WAIT), optionally `SO_REUSEPORT` (one listener per event-loop thread
/// on the same port), and a backlog of [`LISTEN_BACKLOG`].
///
/// # Errors
///
/// Any error from creating, configuring, binding or listening on the socket.
pub fn listen(addr: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Prints `listening on ADDR` as the first line of stdout and flushes it: the harness waits
/// for that line, and reads the port from it when the peer was started on port 0.
///
/// # Errors
///
/// An error writing to stdout (the harness went away).
pub fn announce(addr: SocketAddr, detail: impl Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr} ({detail})")?;
    out.flush()
}

/// Connection errors logged in full before logging thins out.
const LOGGED_IN_FULL: u64 = 20;
/// After the first [`LOGGED_IN_FULL`], one error in this many is logged, with the count.
const LOG_ONE_IN: u64 = 1000;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Logs to stderr why a connection was dropped.
///
/// The first few are logged in full and then one in a thousand, so that ten thousand
/// connections reset at the end of a run neither cost the server measurable time nor fill
/// a stderr pipe that nobody drains.
pub fn log_dropped(peer: &str, what: &str, error: impl Display) {
    let n = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= LOGGED_IN_FULL || n.is_multiple_of(LOG_ONE_IN) {
        eprintln!("{peer}: dropped a connection ({n} so far): {what}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKIO: Usage = Usage {
        name: "peer-test",
        about: "test",
        has_runtime: true,
        default_threads: 3,
    };

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        TOKIO.parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_apply_when_no_flag_is_given() {
        let args = parse(&[]).expect("valid").expect("not help");
        assert_eq!(args.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(args.runtime, Runtime::Multi);
        assert_eq!(args.threads, 3);
    }

    #[test]
    fn flags_take_separate_or_inline_values() {
        let args = parse(&[
            "--addr",
            "127.0.0.1:0",
            "--runtime=current",
            "--threads",
            "2",
        ])
        .expect("valid")
        .expect("not help");
        assert_eq!(args.addr.port(), 0);
        assert_eq!(args.runtime, Runtime::Current);
        assert_eq!(args.threads, 2);
    }

    #[test]
    fn bad_command_lines_are_refused() {
        for bad in [
            &["--threads", "0"][..],
            &["--threads"],
            &["--runtime", "fast"],
            &["--addr", "localhost:80"],
            &["--verbose"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let raw = Usage {
            has_runtime: false,
            ..TOKIO
        };
        assert!(
            raw.parse(["--runtime".to_owned(), "current".to_owned()])
                .is_err()
        );
    }

    #[test]
    fn help_is_not_an_error() {
        assert!(parse(&["--help"]).expect("valid").is_none());
        assert!(TOKIO.text().contains("--runtime"));
    }

    #[test]
    fn reuse_port_listeners_share_one_port() {
        let first = listen("127.0.0.1:0".parse().expect("addr"), true).expect("bind");
        let addr = first.local_addr().expect("local addr");
        let second = listen(addr, true).expect("second bind on the same port");
        assert_eq!(second.local_addr().expect("local addr"), addr);
    }
}
