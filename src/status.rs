//! What became of a send: [`SendStatus`] inside callbacks, [`QueueStatus`] from
//! other threads.

/// What became of a message handed to [`Socket::send`](crate::Socket::send) or a peer.
///
/// `#[must_use]`: under every policy but the default
/// [`Pause`](crate::BackpressurePolicy::Pause), a send can be dropped, and only
/// this value says so. A handler under `Pause` that has nothing to do for a
/// closing connection writes `let _ = ws.send(..)` and loses nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a send may be dropped at the backpressure limit or refused on a closing connection"]
pub enum SendStatus {
    /// Written to the kernel, or corked to be written at the end of this turn.
    Sent,
    /// Accepted, but it waits in the connection's queue behind bytes the kernel has
    /// not taken yet; [`Handler::on_drain`](crate::Handler::on_drain) is called when
    /// the queue empties. Under
    /// [`BackpressurePolicy::Pause`](crate::BackpressurePolicy::Pause) the queue may
    /// be past the limit: the connection is not read until it drains.
    Backpressure,
    /// Not sent: the connection's queue is at [`Config::max_backpressure`]
    /// (the connection is also closing if the policy is
    /// [`BackpressurePolicy::Close`]). Under [`BackpressurePolicy::Pause`] only a
    /// send that does not come from the connection's own callbacks (a
    /// [`Sender`](crate::Sender)'s, a broadcast, a publication) is dropped; a ping
    /// over 125 bytes is refused so under any policy.
    ///
    /// [`Config::max_backpressure`]: crate::Config::max_backpressure
    /// [`BackpressurePolicy::Close`]: crate::BackpressurePolicy::Close
    /// [`BackpressurePolicy::Pause`]: crate::BackpressurePolicy::Pause
    Dropped,
    /// Not sent: the connection is closing or closed.
    Closed,
}

/// What became of a command handed to a [`Sender`](crate::Sender) (a send, a
/// broadcast, a close): whether the reactor's command queue took it.
///
/// `Queued` is not delivery: the reactor applies backpressure when it runs the
/// command, as for any send, and a connection may close first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueStatus {
    /// Queued for the reactor (for a broadcast: for every reactor).
    Queued,
    /// Refused: the reactor's command queue is at
    /// [`Config::max_queued_command_bytes`](crate::Config::max_queued_command_bytes). Nothing
    /// was queued (a broadcast reaches every reactor or none). The producer should
    /// slow down and retry.
    Full,
    /// Refused: the server has shut down (the reactor has exited), or the id names a
    /// reactor that does not exist. Nothing was queued.
    Closed,
}
