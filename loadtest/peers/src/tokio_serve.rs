//! The accept loop the two tokio peers share: the runtime chosen on the command line, one
//! listener, a task per connection, and a clean stop on SIGINT or SIGTERM.

use std::future::Future;
use std::io;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime;
use tokio::signal::unix::{SignalKind, signal};

use crate::{Args, Runtime, Usage, announce, listen, log_dropped};

/// How long the accept loop pauses after an accept error such as EMFILE, which would
/// otherwise repeat at once and spin the core the benchmark is measuring.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Parses the command line, builds the runtime, binds, announces, and runs `handle` on
/// its own task for every accepted connection (with TCP_NODELAY set) until SIGINT or
/// SIGTERM. Tasks still running then are dropped with the runtime.
pub fn run<F, Fut>(usage: &Usage, handle: F) -> ExitCode
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let args = usage.parse_env();
    let runtime = match build_runtime(&args) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: cannot build the tokio runtime: {error}", usage.name);
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(usage, &args, handle));
    // Connections still open are cut, not waited for: a benchmark peer has no state to save.
    runtime.shutdown_background();
    match result {
        Ok(signal) => {
            eprintln!("{}: stopped on {signal}", usage.name);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{}: {error}", usage.name);
            ExitCode::FAILURE
        }
    }
}

fn build_runtime(args: &Args) -> io::Result<runtime::Runtime> {
    match args.runtime {
        Runtime::Current => runtime::Builder::new_current_thread().enable_all().build(),
        Runtime::Multi => runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build(),
    }
}

/// Serves until a stop signal arrives and returns that signal's name.
async fn serve<F, Fut>(usage: &Usage, args: &Args, handle: F) -> io::Result<&'static str>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Signal handlers go in before the `listening on` line, so that a harness that stops
    // the peer as soon as it has read that line never kills it mid-way instead.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let listener = TcpListener::from_std(listen(args.addr, false)?)?;
    let local = listener.local_addr()?;
    let threads = match args.runtime {
        Runtime::Current => "current-thread runtime".to_owned(),
        Runtime::Multi => format!("multi-thread runtime, workers: {}", args.threads),
    };
    announce(local, format_args!("{}, {threads}", usage.name))?;

    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok("SIGINT"),
            _ = terminate.recv() => return Ok("SIGTERM"),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        log_dropped(usage.name, "TCP_NODELAY", error);
                        continue;
                    }
                    tokio::spawn(handle(stream));
                }
                Err(error) => {
                    log_dropped(usage.name, "accept", error);
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
}
