//! How far above its baseline a server that keeps nothing may legitimately end a
//! soak: the headroom of the RSS check, from what the mix can make the server hold
//! at once under wsreactor's default limits (the echo example's).
//!
//! The end RSS shows the run's high-water mark rather than what the server still
//! holds: memory a thread freed stays resident in its allocator arena. A bounded
//! server can therefore set a higher mark in the second half than in the first
//! without ever holding more than its limits allow, and a busy machine is what makes
//! that likely. Which reactor thread (and so which arena) a never-reads client's
//! queue lands on, how full the warm-up's queues get (those clients send on a 10 ms
//! tick, so a wsload starved of CPU sends less in its 3 s), and how many connections
//! hold a partial frame at the same moment all follow the scheduling. The headroom is
//! the most that all of this can amount to: everything the mix can make the server
//! hold at once, once more. The echo clients add little to it: they run a closed
//! loop with one message in flight each, so however slow the server, they cannot
//! pile up in its queues. A leak has no such bound. It grows with the connections and
//! messages served and passes any headroom once the run is long enough.

use serde::Serialize;
use wsreactor::Config;

use super::abuse::{Abuse, NEVER_READS_MESSAGE};

/// The longest frame header: 2 bytes, a 64-bit length, a mask.
const FRAME_HEADER: usize = 14;

/// The most the mix can make the server hold at once, in two parts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Headroom {
    /// Each abusive slot whose kinds include one that never reads (never-reads,
    /// flood-reset): a queue at the backpressure limit, and the echoes of one more
    /// turn's read (`BackpressurePolicy::Pause` stops reading only once the queue is
    /// past the limit, and a turn reads at most the read budget).
    pub queues_bytes: u64,
    /// Each connection that sends (echo and abusive): a partial frame held between
    /// reads, and its reply.
    pub frames_bytes: u64,
}

impl Headroom {
    /// The headroom for `echo_connections` closed-loop echo clients of
    /// `echo_payload` bytes and `abusers` abusive slots cycling through `kinds`,
    /// against a server with wsreactor's default limits.
    pub fn of_mix(
        echo_connections: usize,
        echo_payload: usize,
        abusers: usize,
        kinds: &[Abuse],
    ) -> Headroom {
        let limits = Config::default();
        let never_reads = kinds
            .iter()
            .any(|k| matches!(k, Abuse::NeverReads | Abuse::FloodReset));
        let queue = if never_reads {
            limits.max_backpressure + limits.read_budget
        } else {
            0
        };
        // The largest thing an abusive kind sends in one piece is a never-reads
        // message (16 KiB; the oversized handshake is cut off at the 8 KiB limit).
        let echo_frame = echo_payload + FRAME_HEADER;
        let abuse_frame = if abusers > 0 {
            NEVER_READS_MESSAGE + FRAME_HEADER
        } else {
            0
        };
        Headroom {
            queues_bytes: (abusers * queue) as u64,
            frames_bytes: (echo_connections * 2 * echo_frame + abusers * 2 * abuse_frame) as u64,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.queues_bytes + self.frames_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix_may_hold_a_queue_per_abusive_slot_and_a_frame_per_sender() {
        let h = Headroom::of_mix(50, 128, 10, &Abuse::ALL);
        // 10 queues of 1 MiB + 256 KiB.
        assert_eq!(h.queues_bytes, 10 * (1280 << 10));
        assert_eq!(h.frames_bytes, 50 * 2 * 142 + 10 * 2 * (16384 + 14));
        assert_eq!(h.bytes(), h.queues_bytes + h.frames_bytes);
    }

    #[test]
    fn kinds_that_read_everything_hold_no_queue() {
        let h = Headroom::of_mix(5, 128, 3, &[Abuse::Garbage, Abuse::Slowloris]);
        assert_eq!(h.queues_bytes, 0);
        let quiet = Headroom::of_mix(5, 128, 0, &Abuse::ALL);
        assert_eq!(
            quiet,
            Headroom {
                queues_bytes: 0,
                frames_bytes: 5 * 2 * 142,
            }
        );
    }
}
