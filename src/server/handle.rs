//! The handle of a running server: its addresses and counters, a [`Sender`], waiting
//! for it, and stopping it.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Sender, join};
use crate::error::{Error, Result};
use crate::stats::Stats;

/// A running server: its address, its counters, a [`Sender`], and the way to stop
/// it.
///
/// **Dropping the handle stops the server** (a graceful shutdown with one second
/// of grace), so `server.spawn(handler)?;` on a line of its own serves nothing: keep
/// the handle for as long as the server should serve. To block until the server
/// stops, hand a [`Sender`] to whatever decides when (a signal handler, an admin
/// command) and [`wait`](Self::wait):
///
/// ```no_run
/// use std::time::Duration;
/// use signal_hook::consts::{SIGINT, SIGTERM};
/// use wsreactor::{Config, Handler, Server};
///
/// #[derive(Clone)]
/// struct Quiet;
/// impl Handler for Quiet {
///     type Session = ();
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let handle = Server::bind("127.0.0.1:9001", Config::default())?.spawn(Quiet)?;
///     let sender = handle.sender();
///     let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
///     std::thread::spawn(move || {
///         if signals.forever().next().is_some() {
///             // Close 1001 to every client, up to 5 s for the close handshakes.
///             sender.shutdown(Duration::from_secs(5));
///         }
///     });
///     handle.wait()?; // returns once every reactor has stopped
///     Ok(())
/// }
/// ```
#[must_use = "dropping the ServerHandle stops the server at once: keep it, or call wait()"]
pub struct ServerHandle {
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    sender: Sender,
    threads: Mutex<Threads>,
}

/// The reactor threads not yet joined, and whether one that was had panicked.
struct Threads {
    running: Vec<JoinHandle<bool>>,
    panicked: bool,
}

impl ServerHandle {
    pub(super) fn new(
        local_addr: SocketAddr,
        tls_addr: Option<SocketAddr>,
        sender: Sender,
        threads: Vec<JoinHandle<bool>>,
    ) -> ServerHandle {
        ServerHandle {
            local_addr,
            tls_addr,
            sender,
            threads: Mutex::new(Threads {
                running: threads,
                panicked: false,
            }),
        }
    }

    /// Hands over an upgrade request another server read: see [`Sender::upgrade`].
    pub fn upgrade(&self, request: super::HandoffRequest) -> super::PendingUpgrade {
        self.sender.upgrade(request)
    }

    /// Answers a deferred upgrade: see [`Sender::answer_upgrade`].
    pub fn answer_upgrade<S: Send + 'static>(
        &self,
        id: crate::ConnId,
        answer: crate::Upgrade<S>,
    ) -> crate::QueueStatus {
        self.sender.answer_upgrade(id, answer)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address serving wss:// (see [`Server::tls_addr`](crate::Server::tls_addr)).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// A sender, to send to connections from any thread.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// How many connections subscribe to `topic`, over every reactor.
    pub fn subscribers(&self, topic: impl AsRef<[u8]>) -> usize {
        self.sender.subscribers(topic)
    }

    /// The counters of all reactors together (and the bridge's, with one).
    pub fn stats(&self) -> Stats {
        self.sender.stats()
    }

    /// The counters of each reactor.
    pub fn reactor_stats(&self) -> Vec<Stats> {
        self.sender.reactor_stats()
    }

    /// Shuts down gracefully and waits for the reactor threads. In order:
    ///
    /// 1. every reactor stops accepting (its listening socket is closed);
    /// 2. connections still in their handshake are dropped;
    /// 3. every open connection gets close 1001 after what is already queued for it
    ///    (commands queued before the shutdown run first);
    /// 4. connections already answered in plain HTTP, or whose close handshake is
    ///    done, are closed as soon as their answer is written, without waiting for
    ///    the peer to close;
    /// 5. each reactor waits up to `timeout` for the close handshakes
    ///    (`Duration::MAX`: as long as they take), calling `on_close` for each
    ///    connection, then drops what is left (reported as 1001) and exits;
    /// 6. from then on every [`Sender`] call returns
    ///    [`QueueStatus::Closed`](crate::QueueStatus::Closed).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use wsreactor::{Config, Handler, Server};
    /// # #[derive(Clone)] struct Quiet;
    /// # impl Handler for Quiet { type Session = (); }
    ///
    /// let handle = Server::bind("127.0.0.1:0", Config::default())?.spawn(Quiet)?;
    /// // ... serve, then:
    /// handle.shutdown(Duration::from_secs(5))?;
    /// # Ok::<(), wsreactor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ReactorPanicked`] if a reactor thread died.
    pub fn shutdown(&self, timeout: Duration) -> Result<()> {
        self.sender.shutdown(timeout);
        self.wait()
    }

    /// Blocks until every reactor thread has stopped: after a
    /// [`Sender::shutdown`] from another thread (a signal handler, say; see the
    /// type's example), or a reactor's failure. Returns at once if they already
    /// have; callable from several threads.
    ///
    /// # Errors
    ///
    /// [`Error::ReactorPanicked`] if a reactor thread died.
    pub fn wait(&self) -> Result<()> {
        // Joined under the lock: a second caller returns once the threads are gone.
        let mut threads = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let running = std::mem::take(&mut threads.running);
        threads.panicked |= join(running).is_err();
        // The Redis bridge (feature `redis`) stops after the reactors that feed it.
        self.sender.join_bridge();
        if threads.panicked {
            Err(Error::ReactorPanicked)
        } else {
            Ok(())
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        // A handle dropped without shutdown stops the server quickly rather than
        // leaving threads behind.
        let _ = self.shutdown(Duration::from_secs(1));
    }
}
