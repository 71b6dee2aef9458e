//! Record timestamps, cheap enough to take for every record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Record timestamps from one clock read per record: the wall clock is read at most every
/// [`WallClock::RESYNC`] and advanced by the monotonic clock in between, so a step of the
/// wall clock shows within that time. Records stamped within one millisecond cost a
/// comparison: the arithmetic is done once per millisecond.
#[derive(Debug)]
pub(super) struct WallClock {
    anchor: Instant,
    anchor_ms: i64,
    /// The last timestamp given, and when the millisecond after it starts.
    last_ms: i64,
    next_tick: Instant,
}

impl WallClock {
    const RESYNC: Duration = Duration::from_secs(1);
    const TICK: Duration = Duration::from_millis(1);

    pub(super) fn new(now: Instant) -> Self {
        let anchor_ms = unix_ms();
        Self {
            anchor: now,
            anchor_ms,
            last_ms: anchor_ms,
            next_tick: now + Self::TICK,
        }
    }

    pub(super) fn now_ms(&mut self, now: Instant) -> i64 {
        if now < self.next_tick {
            return self.last_ms;
        }
        let elapsed = now.saturating_duration_since(self.anchor);
        if elapsed >= Self::RESYNC {
            *self = Self::new(now);
            return self.anchor_ms;
        }
        // Below RESYNC, so the milliseconds fit.
        let elapsed_ms = elapsed.as_millis() as u32;
        self.last_ms = self.anchor_ms + i64::from(elapsed_ms);
        self.next_tick = self.anchor + Self::TICK * (elapsed_ms + 1);
        self.last_ms
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_clock_advances_with_the_monotonic_clock_and_resyncs_every_second() {
        let start = Instant::now();
        let mut clock = WallClock::new(start);
        let anchor_ms = clock.anchor_ms;
        assert!((unix_ms() - anchor_ms).abs() < 1_000);
        assert_eq!(clock.now_ms(start), anchor_ms);
        // Within one millisecond, the same timestamp.
        assert_eq!(clock.now_ms(start + Duration::from_micros(999)), anchor_ms);
        assert_eq!(
            clock.now_ms(start + Duration::from_micros(2_500)),
            anchor_ms + 2
        );
        assert_eq!(
            clock.now_ms(start + Duration::from_micros(2_999)),
            anchor_ms + 2
        );
        assert_eq!(
            clock.now_ms(start + Duration::from_millis(999)),
            anchor_ms + 999
        );
        // Past RESYNC the wall clock is read again: a fresh anchor, not the extrapolation.
        let later = start + Duration::from_millis(1_500);
        let before = unix_ms();
        let resynced = clock.now_ms(later);
        assert!(resynced >= before && resynced <= unix_ms(), "{resynced}");
        assert_eq!(clock.anchor, later);
    }
}
