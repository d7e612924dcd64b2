//! What became of a send: [`SendStatus`] inside callbacks, [`QueueStatus`] from
//! other threads.

/// What became of a message handed to [`Socket::send`](crate::Socket::send) or a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Written to the kernel, or corked to be written at the end of this turn.
    Sent,
    /// Accepted, but it waits in the connection's queue behind bytes the kernel has
    /// not taken yet; [`Handler::on_drain`](crate::Handler::on_drain) is called when
    /// the queue empties.
    Backpressure,
    /// Not sent: the connection's queue is at [`Config::max_backpressure`]
    /// (the connection is also closing if the policy is
    /// [`BackpressurePolicy::Close`]).
    ///
    /// [`Config::max_backpressure`]: crate::Config::max_backpressure
    /// [`BackpressurePolicy::Close`]: crate::BackpressurePolicy::Close
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
