//! A coarse hashed timer wheel with lazy deadlines.
//!
//! A connection stores its own deadline (a tick number). The wheel holds at most one
//! live entry per connection, at the tick it was scheduled for. When the wheel
//! reaches that tick, the reactor compares the connection's current deadline with
//! now: later means the deadline moved (activity), so the entry is put back at the
//! new deadline; otherwise the timeout fires. Resetting a deadline is therefore a
//! store into the connection, never a removal from the wheel.

use std::time::{Duration, Instant};

/// Ticks are counted from the reactor's start. Zero means "no deadline".
pub(crate) type Tick = u32;

const SLOTS: usize = 1024;

/// One wheel entry: a slab key and the generation it belonged to.
pub(crate) type Entry = (u32, u32);

pub(crate) struct TimerWheel {
    slots: Vec<Vec<Entry>>,
    /// The last tick processed.
    now: Tick,
    tick: Duration,
    epoch: Instant,
}

impl TimerWheel {
    pub(crate) fn new(tick: Duration, epoch: Instant) -> TimerWheel {
        TimerWheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            now: 1,
            tick,
            epoch,
        }
    }

    /// The tick that `instant` falls in (rounded down).
    pub(crate) fn tick_of(&self, instant: Instant) -> Tick {
        let elapsed = instant.saturating_duration_since(self.epoch);
        let ticks = elapsed.as_nanos() / self.tick.as_nanos().max(1);
        // Tick 0 means "none"; the wheel starts at 1. Saturates after years of uptime.
        u32::try_from(ticks + 1).unwrap_or(u32::MAX)
    }

    /// The deadline tick for a timeout of `after` from now (at least one tick ahead,
    /// rounded up so that a timeout never fires early).
    pub(crate) fn deadline(&self, after: Duration) -> Tick {
        let ticks = after.as_nanos().div_ceil(self.tick.as_nanos().max(1));
        let ticks = u32::try_from(ticks).unwrap_or(u32::MAX).max(1);
        self.now.saturating_add(ticks).saturating_add(1)
    }

    /// The last tick processed.
    pub(crate) fn now(&self) -> Tick {
        self.now
    }

    /// Schedules `entry` at `at`, or at the wheel's horizon if `at` is further away
    /// (it is then re-scheduled lazily). Returns the tick actually used, which the
    /// connection records to recognise its live entry.
    pub(crate) fn schedule(&mut self, at: Tick, entry: Entry) -> Tick {
        let horizon = self.now.saturating_add(SLOTS as u32 - 1);
        let at = at.clamp(self.now.saturating_add(1), horizon);
        self.slots[at as usize % SLOTS].push(entry);
        at
    }

    /// The time until the next tick, for the poll timeout.
    pub(crate) fn until_next_tick(&self, now: Instant) -> Duration {
        let next = self.epoch + self.tick * self.now;
        next.saturating_duration_since(now)
    }

    /// Advances to `to`, moving every entry due on the way into `due` as
    /// `(entry, tick)`. Processes at most one full turn, so a long stall costs no more
    /// than one pass over the wheel.
    pub(crate) fn advance(&mut self, to: Tick, due: &mut Vec<(Entry, Tick)>) {
        let mut steps = 0;
        while self.now < to && steps < SLOTS {
            self.now += 1;
            steps += 1;
            let tick = self.now;
            due.extend(
                self.slots[tick as usize % SLOTS]
                    .drain(..)
                    .map(|e| (e, tick)),
            );
        }
        if self.now < to {
            // A stall longer than a turn: everything still in the wheel is due.
            self.now = to;
            for slot in &mut self.slots {
                due.extend(slot.drain(..).map(|e| (e, to)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel() -> TimerWheel {
        TimerWheel::new(Duration::from_millis(10), Instant::now())
    }

    #[test]
    fn entries_fire_at_their_tick_and_not_before() {
        let mut w = wheel();
        let at = w.deadline(Duration::from_millis(35)); // 4 ticks, +1
        assert_eq!(w.schedule(at, (7, 1)), at);
        let mut due = Vec::new();
        w.advance(at - 1, &mut due);
        assert!(due.is_empty());
        w.advance(at, &mut due);
        assert_eq!(due, vec![((7, 1), at)]);
    }

    #[test]
    fn far_deadlines_are_clamped_to_the_horizon() {
        let mut w = wheel();
        let used = w.schedule(5000, (1, 1));
        assert_eq!(used, 1 + SLOTS as u32 - 1);
        let mut due = Vec::new();
        w.advance(used, &mut due);
        assert_eq!(due.len(), 1);
    }

    #[test]
    fn a_long_stall_releases_everything_once() {
        let mut w = wheel();
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
        let w = wheel();
        // now = 1; 10 ms is one tick, so the deadline is tick 3: at least 10 ms after
        // any instant within tick 1.
        assert_eq!(w.deadline(Duration::from_millis(10)), 3);
        assert_eq!(w.deadline(Duration::from_millis(11)), 4);
        assert_eq!(w.tick_of(w.epoch), 1);
        assert_eq!(w.tick_of(w.epoch + Duration::from_millis(25)), 3);
    }
}
