//! Server configuration: limits, timeouts, backpressure. Every default says why.

use std::time::{Duration, Instant};

use crate::compression::Compression;
use crate::proto::Limits;
use crate::proto::handshake::{DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_HEADERS};

/// What happens when a send would take a connection's buffered bytes past
/// [`Config::max_backpressure`].
///
/// Which one suits a stream depends on what a gap in it costs:
///
/// | stream | policy | why |
/// |---|---|---|
/// | echo, request and response, uploads answered as they arrive, anything a client must get whole | [`Pause`](Self::Pause) (the default) | what the handler answers is never lost: the connection stops reading instead, and TCP slows the peer to the pace it reads |
/// | market data, positions, presence, game state | [`DropOldest`](Self::DropOldest) | a newer message supersedes an older one: a reader that falls behind should get the newest, not catch up through stale ones |
/// | chat, orders, anything a client must see whole | [`Close`](Self::Close) | a silent gap is worse than a reconnect that resynchronises |
/// | bursts the handler paces itself (`SendStatus`, `on_drain`) | [`Drop`](Self::Drop) | the sender learns at once that this message was not sent, and can retry or coalesce |
///
/// Whatever the policy, a connection whose queue passes the limit is not read
/// until the queue is down to half the limit, so replies the protocol makes
/// (pongs, the close reply) and, under `Pause`, the handler's own answers stay
/// bounded by what one read can ask for.
///
/// ```
/// use wsreactor::{BackpressurePolicy, Config};
///
/// // A price feed: at most 256 KiB waiting per client, the newest kept, and a
/// // send buffer small enough that stale ticks do not hide in the kernel.
/// let config = Config::default()
///     .with_backpressure(256 * 1024, BackpressurePolicy::DropOldest)
///     .with_send_buffer_size(Some(64 * 1024));
/// assert_eq!(config.backpressure_policy, BackpressurePolicy::DropOldest);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackpressurePolicy {
    /// Lossless for what a connection's own callbacks send. A send from a
    /// callback of the connection itself ([`Socket::send`](crate::Socket::send)
    /// and its kin, in `on_message`, `on_open`, `on_drain`, ...) is always queued,
    /// and reports [`SendStatus::Backpressure`](crate::SendStatus::Backpressure)
    /// past the limit; meanwhile the connection is not read, so the peer is held
    /// back by TCP flow control rather than by a lost answer, and reading resumes
    /// once the queue is down to half the limit. An echo, or any handler that
    /// answers in proportion to what it reads, so holds a slow reader to the
    /// limit plus what one read asks for, and loses nothing.
    ///
    /// What comes from elsewhere, a [`Sender`](crate::Sender) send, a broadcast
    /// or a publication to the connection, is not paced by the connection's own
    /// reading: at the limit it is dropped, as under [`Drop`](Self::Drop), and
    /// counted in [`Stats::dropped`](crate::Stats::dropped) (and, for a
    /// subscriber, in [`Socket::dropped_publications`](crate::Socket::dropped_publications)),
    /// so a slow peer never holds the server's memory without bound. A handler
    /// that loops sending far more than it reads is paced by the status it gets:
    /// the queue grows with what it sends.
    Pause,
    /// Drop the new message and report [`SendStatus::Dropped`](crate::SendStatus::Dropped);
    /// the connection stays open and keeps what was queued before, so a reader
    /// that resumes first gets the old messages. Suits a sender that paces itself
    /// with the status and [`on_drain`](crate::Handler::on_drain); not a feed whose
    /// newest message matters most (see [`DropOldest`](Self::DropOldest)).
    Drop,
    /// Drop the new message and close the connection with 1008 (policy violation).
    /// Suits chat and anything where a gap in the stream is worse than a reconnect.
    Close,
    /// Keep the new message and drop the oldest queued messages that have not
    /// started on the wire, whole frames only, until it fits: a reader that
    /// resumes gets the newest messages. A frame partly written is never cut (the
    /// peer would see a torn frame), nor is a control frame (ping, pong, close) or
    /// a message still in this turn's cork, which is written at the end of the
    /// turn, nor any compressed message on a connection whose compressor keeps its
    /// context (the peer needs a message compressed with it to inflate the ones
    /// after it; broadcasts and publications are compressed without context, but
    /// in the queue they look the same, so they are kept too: on such a
    /// connection only uncompressed messages are dropped); if dropping
    /// every message it may still leaves no room, the new one is dropped instead
    /// ([`SendStatus::Dropped`](crate::SendStatus::Dropped)).
    /// Every message dropped, new or old, counts in
    /// [`Stats::dropped`](crate::Stats::dropped). Suits market data and presence.
    ///
    /// Only the server's queue is trimmed: bytes the kernel already took wait in
    /// the socket's send buffer, several MiB on Linux when it grows the buffer
    /// itself. Bound them with
    /// [`Config::send_buffer_size`](crate::Config::send_buffer_size).
    DropOldest,
}

/// The server's configuration.
///
/// Build it with [`Config::default`] and the `with_*` setters; every field is public
/// for reading.
///
/// ```
/// use std::time::Duration;
/// use wsreactor::Config;
///
/// let config = Config::default()
///     .with_max_message_size(64 * 1024)
///     .with_idle_timeout(Some(Duration::from_secs(30)));
/// assert_eq!(config.limits.max_message_size, 64 * 1024);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Frame and message size limits. Default: 16 MiB each, the largest message the
    /// Autobahn TestSuite sends. Lower it for chat or push: it bounds what one peer
    /// can make the server hold (a message over it closes with 1009).
    pub limits: Limits,
    /// The most bytes an HTTP upgrade request may take. Default 8 KiB, as nginx's
    /// `large_client_header_buffers` and most proxies; a larger request gets 431.
    pub max_header_bytes: usize,
    /// The most headers an upgrade request may carry. Default 64 (browsers send
    /// about 15); more get 431.
    pub max_headers: usize,
    /// How long a connection may take to send a complete upgrade request. Default
    /// 10 s: long enough for a slow mobile link, short enough that slowloris clients
    /// cannot pile up. `None` disables it.
    pub handshake_timeout: Option<Duration>,
    /// How long an open connection may stay silent before the server pings it; if it
    /// stays silent for as long again, it is closed (1001). Default 120 s, as
    /// uWebSockets: below typical NAT and load-balancer idle timeouts once the ping
    /// keeps them alive. `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// How long to wait for the peer's close frame (and then the TCP close) after the
    /// server sent one. Default 5 s; after it, the connection is dropped.
    pub close_timeout: Duration,
    /// How long an open connection's output queue may go without the kernel taking
    /// a byte of it. Default 30 s: a peer that has read nothing for that long while
    /// the server has data for it is gone or hostile (a mobile link changing cells
    /// stalls for seconds, not tens of seconds), and without it such a peer keeps
    /// its queue until the idle timer, or forever with `idle_timeout: None`. Like
    /// nginx's `send_timeout`, it restarts whenever the kernel takes some bytes. At
    /// the limit the connection is dropped without a close handshake (no close
    /// frame could reach the peer either); `on_close` reports 1008 and "write
    /// timeout", and [`Stats::write_timeouts`](crate::Stats::write_timeouts)
    /// counts it. `None` disables it.
    pub write_timeout: Option<Duration>,
    /// The most bytes a connection may have queued for sending (beyond what the
    /// kernel took). Default 1 MiB: a few seconds of a busy feed, and 1 GiB for a
    /// thousand stuck readers at worst. What happens to a send at the limit is
    /// [`backpressure_policy`](Self::backpressure_policy). Replies the protocol
    /// makes (pongs, the close reply) are never dropped; instead, while a
    /// connection's queue is over the limit the server stops reading from it, and
    /// reads again once the queue is down to half the limit (the low-water mark:
    /// one write's worth of room before the next pause), so a peer that sends pings
    /// and never reads is held to the limit plus what one read answers by TCP flow
    /// control ([`Stats::read_pauses`](crate::Stats::read_pauses) counts the pauses).
    pub max_backpressure: usize,
    /// What a send does at [`max_backpressure`](Self::max_backpressure). Default
    /// [`BackpressurePolicy::Pause`]: nothing the handler answers a peer is lost
    /// (an echo to a client that pipelines faster than it reads pauses reading
    /// instead of dropping echoes), while sends from other threads and
    /// publications meet the limit as under [`BackpressurePolicy::Drop`]. A
    /// market-data feed wants [`BackpressurePolicy::DropOldest`].
    pub backpressure_policy: BackpressurePolicy,
    /// The kernel's send buffer for each connection (`SO_SNDBUF`, set once on the
    /// listening sockets, whose connections inherit it). Default `None`: the
    /// kernel's own, which Linux grows up to `net.ipv4.tcp_wmem`'s maximum (4 MiB
    /// by default) for a peer that reads slowly. Those bytes are past the server's
    /// reach: the backpressure policy cannot drop them, so a reader that stalls and
    /// resumes first reads seconds of stale messages. A feed that wants its readers
    /// current sets a few tens of KiB (Linux doubles the value asked for, and keeps
    /// at least about 4.5 KiB); a bulk sender leaves it to the kernel.
    pub send_buffer_size: Option<usize>,
    /// The number of reactor threads. Default: the number of available cores.
    pub reactors: usize,
    /// The listen backlog of each reactor's socket. Default 4096, so that a burst of
    /// connects is not refused while reactors are busy. (The kernel caps it at
    /// `net.core.somaxconn`.)
    pub backlog: u32,
    /// How many bytes one connection may read in one event-loop turn before the
    /// reactor serves others. Default 256 KiB (four reads of the 64 KiB buffer).
    pub read_budget: usize,
    /// The most a reactor's command queue holds (commands from [`Sender`] waiting for
    /// the reactor), in bytes: each command counts its payload plus 64 bytes.
    /// Default 16 MiB: a quarter of a million small sends, or sixteen 1 MiB frames,
    /// queued between two loop turns, while a producer that outruns the reactors
    /// cannot grow the process without bound. At the limit a `Sender` call returns
    /// [`QueueStatus::Full`](crate::QueueStatus::Full) and queues nothing.
    ///
    /// [`Sender`]: crate::Sender
    pub max_queued_command_bytes: usize,
    /// The most topics one connection may subscribe to. Default 1,024: far more than
    /// a chat or a market-data client asks for (a watch list of hundreds of
    /// symbols), while a peer that subscribes to everything it can name holds the
    /// server to about 40 KiB of registry per connection. Past it, `subscribe`
    /// returns [`TopicError::TooMany`](crate::TopicError::TooMany).
    pub max_subscriptions: usize,
    /// The most bytes of topic names one connection's subscriptions may add up
    /// to. Default 16 KiB: a watch list of a thousand 16-byte symbols, while a
    /// peer that names its own topics (the pubsub example lets it) cannot make
    /// the server hold 1,024 names of 256 bytes (256 KiB, each also a topic of
    /// its own and, with Redis, a SUBSCRIBE). Past it, `subscribe` returns
    /// [`TopicError::TooMany`](crate::TopicError::TooMany). With `max_subscriptions`
    /// it bounds what subscriptions cost a connection: at most the names, once per
    /// reactor (interned, and shared with the process-wide counts), plus about
    /// 200 bytes per subscription to a topic nobody else has (the registry's and
    /// the counts' entries): under 32 KiB a connection at the defaults, where
    /// clients name their own topics (`tests/topics_per_connection.rs`).
    pub max_subscription_bytes: usize,
    /// How much history each topic keeps for recovery after a reconnect
    /// ([`Socket::subscribe_from`](crate::Socket::subscribe_from)), or `None`
    /// (the default): no positions, no history, and a topic costs nothing more.
    pub history: Option<crate::history::HistoryLimits>,
    /// How many idle read buffers each reactor keeps for reuse. Default 64: enough
    /// for the connections that hold partial frames at once in a busy reactor,
    /// without holding memory for a burst that has passed.
    pub pooled_buffers: usize,
    /// permessage-deflate (RFC 7692). Default [`Compression::Off`]: see
    /// [`Compression`] for the modes, what they cost and when they pay.
    pub compression: Compression,
    /// wss:// (feature `tls`, with `tls::crypto_provider`'s suites, which
    /// `tls::server_config` uses): how long a connection's TLS 1.3 traffic keys
    /// stay expanded in its reactor's pool after their last record. Default 250 ms.
    /// A key unused for one to two of these is let go (1.1 KiB per idle
    /// connection), and made again by the next record (0.2–0.3 µs a key, against
    /// 6–8 µs of server CPU for a small wss echo). The shorter it is, the fewer keys
    /// a burst of handshakes leaves expanded: the heap they held stays with the
    /// process. A server that sends to everyone every second and has the memory may
    /// raise it past the period. Sweeps run on the timer tick (at most 250 ms apart).
    pub tls_key_release: Duration,
    /// The timer wheel's first tick (tests start it near 2^32 to cross the edge).
    pub(crate) timer_origin: u64,
    /// Where the engine panics on purpose (the reactor's fault tests).
    #[cfg(test)]
    pub(crate) fault: Option<Fault>,
    /// How far a reactor's generation counter moves per accept (1; tests make it
    /// 2^32, so that every id shares its low 32 bits with the next).
    #[cfg(test)]
    pub(crate) generation_step: u64,
}

/// Where a test makes the engine panic ([`Config`]'s `fault`, tests only).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// While decoding the message `b"engine fault"`, before any callback.
    Engine,
    /// While running a `Close` command whose reason is `"reactor fault"`, outside
    /// any connection's guard.
    Reactor,
    /// While the reactor is being built.
    Startup,
}

#[cfg(test)]
impl Fault {
    pub(crate) fn trigger(self) -> &'static [u8] {
        match self {
            Fault::Engine => b"engine fault",
            Fault::Reactor => b"reactor fault",
            Fault::Startup => b"",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::DEFAULT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            handshake_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(120)),
            close_timeout: Duration::from_secs(5),
            write_timeout: Some(Duration::from_secs(30)),
            max_backpressure: 1 << 20,
            backpressure_policy: BackpressurePolicy::Pause,
            send_buffer_size: None,
            reactors: std::thread::available_parallelism().map_or(1, usize::from),
            backlog: 4096,
            read_budget: 256 * 1024,
            pooled_buffers: 64,
            max_queued_command_bytes: 16 << 20,
            max_subscriptions: 1024,
            max_subscription_bytes: 16 * 1024,
            history: None,
            compression: Compression::Off,
            tls_key_release: Duration::from_millis(250),
            timer_origin: 0,
            #[cfg(test)]
            fault: None,
            #[cfg(test)]
            generation_step: 1,
        }
    }
}

impl Config {
    /// Sets the largest message accepted; the largest frame is capped by it too.
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self.limits.max_frame_size = self.limits.max_frame_size.min(bytes);
        self
    }

    /// Sets the largest frame accepted.
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.limits.max_frame_size = bytes;
        self
    }

    /// Sets the upgrade request limits (bytes and header count).
    pub fn with_header_limits(mut self, max_bytes: usize, max_headers: usize) -> Self {
        self.max_header_bytes = max_bytes;
        self.max_headers = max_headers.max(1);
        self
    }

    /// Sets the handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets the idle timeout (ping, then close).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the close handshake timeout.
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Sets the write timeout (`None` disables it).
    pub fn with_write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets the byte limit of each reactor's command queue.
    pub fn with_max_queued_command_bytes(mut self, bytes: usize) -> Self {
        self.max_queued_command_bytes = bytes;
        self
    }

    /// Sets the most topics one connection may subscribe to.
    pub fn with_max_subscriptions(mut self, topics: usize) -> Self {
        self.max_subscriptions = topics;
        self
    }

    /// Sets how much history each topic keeps ([`history`](Self::history)).
    pub fn with_history(mut self, history: Option<crate::history::HistoryLimits>) -> Self {
        self.history = history;
        self
    }

    /// Sets the most bytes of topic names one connection's subscriptions may add
    /// up to ([`max_subscription_bytes`](Self::max_subscription_bytes)).
    pub fn with_max_subscription_bytes(mut self, bytes: usize) -> Self {
        self.max_subscription_bytes = bytes;
        self
    }

    /// Sets the backpressure limit and what happens at it.
    pub fn with_backpressure(mut self, max_bytes: usize, policy: BackpressurePolicy) -> Self {
        self.max_backpressure = max_bytes;
        self.backpressure_policy = policy;
        self
    }

    /// Sets the kernel's send buffer per connection (`None`: the kernel's default).
    pub fn with_send_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.send_buffer_size = bytes;
        self
    }

    /// Sets how long idle TLS traffic keys stay expanded
    /// ([`tls_key_release`](Self::tls_key_release)).
    pub fn with_tls_key_release(mut self, after: Duration) -> Self {
        self.tls_key_release = after;
        self
    }

    /// Sets the number of reactor threads (at least 1).
    pub fn with_reactors(mut self, reactors: usize) -> Self {
        self.reactors = reactors.max(1);
        self
    }

    /// Sets whether and how permessage-deflate is negotiated.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the listen backlog.
    pub fn with_backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// The timer wheel's tick: an eighth of the shortest timeout, between 5 ms and
    /// 250 ms. Timeouts fire up to one tick late.
    pub(crate) fn timer_tick(&self) -> Duration {
        let shortest = [
            self.handshake_timeout,
            self.idle_timeout,
            Some(self.close_timeout),
            self.write_timeout,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(1));
        (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(250))
    }
}

/// `now + after`, saturating: a duration too long to add (`Duration::MAX`, the
/// natural "never") gives an instant a century away instead of a panic. Every
/// configured duration that becomes a deadline goes through here.
pub(crate) fn deadline(now: Instant, after: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(after)
        .or_else(|| now.checked_add(CENTURY))
        // An instant a century away cannot be represented: the latest one can.
        .unwrap_or_else(|| latest(now))
}

/// The latest instant after `now` that can be represented, found by halving.
fn latest(now: Instant) -> Instant {
    let mut at = now;
    let mut step = Duration::from_secs(u64::MAX / 2);
    while step > Duration::ZERO {
        if let Some(later) = at.checked_add(step) {
            at = later;
        }
        step /= 2;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.limits.max_message_size, 16 << 20);
        assert_eq!((c.max_header_bytes, c.max_headers), (8192, 64));
        assert_eq!(c.handshake_timeout, Some(Duration::from_secs(10)));
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(c.close_timeout, Duration::from_secs(5));
        assert_eq!(c.write_timeout, Some(Duration::from_secs(30)));
        assert_eq!(c.tls_key_release, Duration::from_millis(250));
        assert_eq!(c.max_queued_command_bytes, 16 << 20);
        assert_eq!(c.max_backpressure, 1 << 20);
        assert_eq!(c.backpressure_policy, BackpressurePolicy::Pause);
        assert_eq!(c.send_buffer_size, None);
        assert!(c.reactors >= 1);
        assert!(c.backlog >= 4096);
    }

    #[test]
    fn the_tick_follows_the_shortest_timeout() {
        let c = Config::default();
        assert_eq!(c.timer_tick(), Duration::from_millis(250));
        let c = c.with_handshake_timeout(Some(Duration::from_millis(80)));
        assert_eq!(c.timer_tick(), Duration::from_millis(10));
        let c = c.with_handshake_timeout(Some(Duration::from_millis(1)));
        assert_eq!(c.timer_tick(), Duration::from_millis(5));
    }

    #[test]
    fn a_deadline_saturates_instead_of_panicking() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        let never = deadline(now, Duration::MAX);
        assert!(never > now + Duration::from_secs(50 * 365 * 24 * 3600));
        assert!(latest(now) >= never);
    }

    #[test]
    fn a_smaller_message_limit_caps_the_frame_limit() {
        let c = Config::default().with_max_message_size(1000);
        assert_eq!(
            (c.limits.max_frame_size, c.limits.max_message_size),
            (1000, 1000)
        );
    }
}
