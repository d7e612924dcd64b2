//! A fault stays where it started. A panic while serving one connection (in
//! proto, the deflate codec, the TLS filter, or a bug of ours) is caught at the
//! edge of that connection's work, closes that connection with 1011, is counted in
//! [`Stats::panics`](crate::Stats::panics), and the reactor goes on. A panic that
//! escapes every such edge ends the reactor, but not silently: its connections are
//! closed (each `on_close` gets 1011) and their topic subscriptions released, its
//! command queue refuses from then on (a `Sender` learns `Closed`), it counts in
//! [`Stats::failed_reactors`](crate::Stats::failed_reactors), and
//! [`ServerHandle::wait`](crate::ServerHandle::wait) reports
//! [`Error::ReactorPanicked`](crate::Error::ReactorPanicked).
//!
//! Handler callbacks are caught one by one where they are called (`callback` in
//! read.rs); what is here is the net below everything else.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::conn::Generation;
use super::output::Owner;
use super::{Reactor, SCRATCH};
use crate::handler::Handler;
use crate::proto::CloseCode;

impl<H: Handler> Reactor<H> {
    /// Runs `work` for connection `key`; a panic in it closes that connection.
    pub(super) fn guard(&mut self, key: usize, work: impl FnOnce(&mut Self)) {
        let generation = self.conns.get(key).map(|c| c.generation);
        if catch_unwind(AssertUnwindSafe(|| work(self))).is_err() {
            self.fault(key, generation);
        }
    }

    /// After a panic while serving `key` (of `generation`): the reactor's own state
    /// is made whole again, and the connection is closed with 1011.
    pub(super) fn fault(&mut self, key: usize, generation: Option<Generation>) {
        self.output.stats.panics += 1;
        crate::observe::event!(error, reactor = self.index, conn = ?(key, generation), "panic while serving a connection: closed with 1011");
        self.repair();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if Some(conn.generation) != generation {
            return;
        }
        conn.close_code = CloseCode::INTERNAL_ERROR.0;
        let owner = Owner::of(key, conn);
        // A close frame, best effort: the connection's state is suspect, so a
        // second panic here only costs the peer its close frame.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            if let Some(conn) = self.conns.get_mut(key) {
                self.output
                    .close(owner, conn, CloseCode::INTERNAL_ERROR, "internal error");
                let _ = self.output.flush(owner, conn);
            }
        }));
        self.repair();
        self.remove_because(key, "internal error");
    }

    /// Puts back what a panic may have left taken: the scratch buffer is taken out
    /// of the reactor while a read is processed.
    fn repair(&mut self) {
        if self.scratch.len() != SCRATCH {
            self.scratch = vec![0; SCRATCH];
        }
    }

    /// After a panic that no connection's guard caught: closes every connection
    /// (on_close gets 1011, subscriptions are released), counts the failure, and
    /// leaves the reactor to exit. Best effort: whatever panics again is left.
    pub(super) fn died(&mut self) {
        self.output.stats.failed_reactors = 1;
        self.repair();
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let generation = self.conns.get(key).map(|c| c.generation);
            let _ = catch_unwind(AssertUnwindSafe(|| {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.close_code = CloseCode::INTERNAL_ERROR.0;
                }
                self.remove_because(key, "internal error");
            }));
            if self.conns.get(key).map(|c| c.generation) == generation && generation.is_some() {
                // remove itself panicked: forget the slot (its socket closes).
                let _ = self.conns.try_remove(key);
            }
        }
        self.shared.stats.publish(&self.output.stats, 0);
        #[cfg(feature = "metrics")]
        self.exporter.record(&self.output.stats, 0);
        crate::observe::event!(
            error,
            reactor = self.index,
            "reactor ended on a panic: its connections were closed with 1011"
        );
    }

    /// Test hook: a panic inside the engine (not a callback) while serving a
    /// connection that sent `payload`, or at reactor level on a `Close` command
    /// whose reason is `reason`.
    #[cfg(test)]
    pub(super) fn injected_fault(&self, at: crate::config::Fault, payload: &[u8]) {
        if self.config.fault == Some(at) && payload == at.trigger() {
            panic!("injected fault: {at:?}");
        }
    }
}
