//! A coarse hashed timer wheel with lazy deadlines.
//!
//! A connection stores its own deadline. The wheel holds at most one live entry per
//! connection, at the tick it was scheduled for. When the wheel reaches that tick,
//! the reactor compares the connection's current deadline with now: later means the
//! deadline moved (activity), so the entry is put back at the new deadline; otherwise
//! the timeout fires. Resetting a deadline is therefore a store into the connection,
//! never a removal from the wheel.
//!
//! Wheel time is a 64-bit tick count, which does not run out (at the 5 ms tick, 2^64
//! ticks are billions of years). A connection keeps only the low 32 bits of its
//! ticks (a [`Stamp`], to stay small) and compares them with the wheel's time
//! modulo 2^32, which is right as long as a deadline is less than 2^31 ticks away:
//! timeouts are capped at [`MAX_TIMEOUT_TICKS`].

use std::time::{Duration, Instant};

/// Wheel time: ticks since the reactor started (plus the configured origin).
pub(crate) type Tick = u64;

/// A tick as a connection stores it: the low 32 bits, never 0 (0 means "none").
pub(crate) type Stamp = u32;

/// The longest timeout, in ticks: half the distance at which 32-bit stamps become
/// ambiguous (62 days at the 5 ms tick, 8.5 years at the 250 ms tick).
pub(crate) const MAX_TIMEOUT_TICKS: u32 = 1 << 30;

const SLOTS: usize = 1024;

/// One wheel entry: a slab key and the generation it belonged to.
pub(crate) type Entry = (u32, u32);

/// The stamp of tick `t`. Tick values whose low bits are 0 map to 1: a stamp is never
/// "none", and fires at most one tick late.
pub(crate) fn stamp(t: Tick) -> Stamp {
    (t as u32).max(1)
}

/// Whether a deadline stamped `deadline` is due at wheel time `now` (modulo 2^32).
pub(crate) fn is_due(deadline: Stamp, now: Tick) -> bool {
    (now as u32).wrapping_sub(deadline) as i32 >= 0
}

/// Whether stamp `a` is before stamp `b` (modulo 2^32).
pub(crate) fn before(a: Stamp, b: Stamp) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

pub(crate) struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    /// The last tick processed.
    now: Tick,
    /// The tick the reactor last saw the clock in (when its poll returned): at
    /// least `now`. Deadlines count from it, so that a reactor that woke late does
    /// not set deadlines from a time already past. (Within a turn the clock is not
    /// read again: a callback that blocks makes deadlines set after it in that turn
    /// early by as long as it blocked. Callbacks must not block.)
    current: Tick,
    /// The tick the wheel started at (1, or the configured origin for tests).
    origin: Tick,
    tick: Duration,
    epoch: Instant,
}

impl TimerWheel {
    /// A wheel whose tick 1 (plus `origin`) is `epoch`.
    pub(crate) fn new(tick: Duration, epoch: Instant, origin: Tick) -> TimerWheel {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            now: origin + 1,
            current: origin + 1,
            origin: origin + 1,
            tick: tick.max(Duration::from_millis(1)),
            epoch,
        }
    }

    /// The tick that `instant` falls in (rounded down).
    pub(crate) fn tick_of(&self, instant: Instant) -> Tick {
        let elapsed = instant.saturating_duration_since(self.epoch);
        let ticks = elapsed.as_nanos() / self.tick.as_nanos();
        self.origin + u64::try_from(ticks).unwrap_or(u64::MAX / 2)
    }

    /// How many ticks a timeout of `after` lasts: rounded up so that a timeout never
    /// fires early, at least one, at most [`MAX_TIMEOUT_TICKS`]. Callers compute it
    /// once per configured timeout, not per use.
    pub(crate) fn ticks(&self, after: Duration) -> u32 {
        let ticks = after.as_nanos().div_ceil(self.tick.as_nanos());
        u32::try_from(ticks)
            .unwrap_or(MAX_TIMEOUT_TICKS)
            .clamp(1, MAX_TIMEOUT_TICKS)
    }

    /// Notes the time: deadlines set from now on count from `instant`'s tick.
    pub(crate) fn observe(&mut self, instant: Instant) {
        self.current = self.current.max(self.tick_of(instant));
    }

    /// The deadline `ticks` ticks from the current tick (plus one, since it is
    /// already under way).
    pub(crate) fn deadline(&self, ticks: u32) -> Stamp {
        stamp(self.current.max(self.now) + u64::from(ticks) + 1)
    }

    /// The last tick processed.
    pub(crate) fn now(&self) -> Tick {
        self.now
    }

    /// Schedules `entry` at the deadline `at`, or at the wheel's horizon if it is
    /// further away (it is then re-scheduled lazily). Returns the stamp of the tick
    /// actually used, which the connection records to recognise its live entry.
    pub(crate) fn schedule(&mut self, at: Stamp, entry: Entry) -> Stamp {
        let ahead = at.wrapping_sub(self.now as u32) as i32;
        let ahead = (ahead.max(1) as u64).min(SLOTS as u64 - 1);
        let tick = self.now + ahead;
        self.slots[tick as usize % SLOTS].push(entry);
        stamp(tick)
    }

    /// The time until the next tick, for the poll timeout.
    pub(crate) fn until_next_tick(&self, now: Instant) -> Duration {
        let ticks = u32::try_from(self.now + 1 - self.origin).unwrap_or(u32::MAX);
        let next = self.epoch.checked_add(self.tick.saturating_mul(ticks));
        next.map_or(self.tick, |next| next.saturating_duration_since(now))
    }

    /// Advances to `to`, moving every entry due on the way into `due` as
    /// `(entry, stamp of its tick)`. One full turn visits every slot, so a stall
    /// longer than that costs one pass and lands on `to` directly.
    pub(crate) fn advance(&mut self, to: Tick, due: &mut Vec<(Entry, Stamp)>) {
        let end = to.min(self.now + SLOTS as u64);
        while self.now < end {
            self.now += 1;
            let tick = stamp(self.now);
            due.extend(
                self.slots[self.now as usize % SLOTS]
                    .drain(..)
                    .map(|e| (e, tick)),
            );
        }
        self.now = self.now.max(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel_at(origin: Tick) -> TimerWheel {
        TimerWheel::new(Duration::from_millis(10), Instant::now(), origin)
    }

    #[test]
    fn entries_fire_at_their_tick_and_not_before() {
        let mut w = wheel_at(0);
        let at = w.deadline(w.ticks(Duration::from_millis(35))); // 4 ticks, +1
        assert_eq!(w.schedule(at, (7, 1)), at);
        let mut due = Vec::new();
        w.advance(u64::from(at) - 1, &mut due);
        assert!(due.is_empty());
        w.advance(u64::from(at), &mut due);
        assert_eq!(due, vec![((7, 1), at)]);
    }

    #[test]
    fn far_deadlines_are_clamped_to_the_horizon() {
        let mut w = wheel_at(0);
        let used = w.schedule(5000, (1, 1));
        assert_eq!(used, 1 + SLOTS as u32 - 1);
        let mut due = Vec::new();
        w.advance(u64::from(used), &mut due);
        assert_eq!(due.len(), 1);
    }

    #[test]
    fn a_long_stall_releases_everything_once() {
        let mut w = wheel_at(0);
        for k in 0..10 {
            w.schedule(2 + k * 50, (k, 0));
        }
        let mut due = Vec::new();
        w.advance(100_000, &mut due);
        assert_eq!(due.len(), 10);
        assert_eq!(w.now(), 100_000);
        due.clear();
        w.advance(100_010, &mut due);
        assert!(due.is_empty());
    }

    #[test]
    fn ticks_round_so_timeouts_never_fire_early() {
        let w = wheel_at(0);
        // now = 1; 10 ms is one tick, so the deadline is tick 3: at least 10 ms after
        // any instant within tick 1.
        assert_eq!(w.deadline(w.ticks(Duration::from_millis(10))), 3);
        assert_eq!(w.deadline(w.ticks(Duration::from_millis(11))), 4);
        assert_eq!(w.tick_of(w.epoch), 1);
        assert_eq!(w.tick_of(w.epoch + Duration::from_millis(25)), 3);
        assert_eq!(w.ticks(Duration::ZERO), 1);
        assert_eq!(w.ticks(Duration::MAX), MAX_TIMEOUT_TICKS);
    }

    /// Regression: ticks were 32 bits and saturated after 2^32 ticks (248 days at the
    /// 5 ms tick); the wheel then stopped and the loop's poll timeout was always zero.
    #[test]
    fn deadlines_fire_across_the_32_bit_edge_and_the_wheel_keeps_ticking() {
        let origin = u64::from(u32::MAX) - 20;
        let mut w = wheel_at(origin);
        let mut due = Vec::new();
        // Scheduled before the edge, due after it.
        let at = w.deadline(50);
        assert!(at < 100, "the stamp wrapped: {at}");
        assert_eq!(w.schedule(at, (3, 9)), at);
        assert!(!is_due(at, w.now()));
        let edge = u64::from(u32::MAX) + 1;
        w.advance(edge, &mut due);
        assert!(due.is_empty(), "fired early: {due:?}");
        w.advance(edge + 100, &mut due);
        assert_eq!(due, vec![((3, 9), at)]);
        assert!(is_due(at, w.now()));
        // The wheel's time went past 2^32 and the next tick is still ahead.
        assert_eq!(w.now(), edge + 100);
        let now = w.epoch + w.tick * (edge + 100 - w.origin) as u32;
        assert!(w.until_next_tick(now) > Duration::ZERO);
        assert!(w.until_next_tick(now) <= w.tick);
        // A stamp of 0 would mean "none": the tick whose low bits are 0 maps to 1.
        assert_eq!(stamp(edge), 1);
    }
}
