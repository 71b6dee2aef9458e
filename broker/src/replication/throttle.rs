//! The reassignment throttle (`replica_reassignment_throttle_bytes_per_second`): a token
//! bucket over the bytes this broker, as a leader, sends to replicas that a reassignment
//! is adding, so that their catch-up copy does not take the disk and network that
//! producers, consumers and in-sync followers need. Kafka's
//! `leader.replication.throttled.rate` does the same for its throttled replicas.
//!
//! A throttled fetch gets fewer bytes, none while the bucket is empty, and never waits
//! for tokens itself: the connection stays free for the follower's other partitions. The
//! bucket holds at most one second of bytes. A partition with tokens left gets at least
//! its first whole batch, so the bucket may go below zero, and the debt is paid before
//! the next throttled byte: the average stays at the rate.
//!
//! Time comes in as an argument, so the tests drive it without sleeping.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// The throttle of one broker, shared by every replica fetch it serves. Thread-safe.
#[derive(Debug)]
pub struct Throttle {
    /// Bytes per second; 0 for no limit.
    rate: u64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may be sent now; below zero after a batch larger than what was left.
    tokens: i64,
    /// When `tokens` was last filled.
    filled: Instant,
}

impl Throttle {
    /// A throttle of `bytes_per_second` (0: none), its bucket full at `now`.
    pub fn new(bytes_per_second: u64, now: Instant) -> Self {
        Self {
            rate: bytes_per_second,
            bucket: Mutex::new(Bucket {
                tokens: i64::try_from(bytes_per_second).unwrap_or(i64::MAX),
                filled: now,
            }),
        }
    }

    /// Whether there is a limit at all.
    pub fn is_limited(&self) -> bool {
        self.rate > 0
    }

    fn bucket(&self, now: Instant) -> std::sync::MutexGuard<'_, Bucket> {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.filled).as_nanos();
        let added = u128::from(self.rate) * elapsed / NANOS_PER_SECOND;
        if added > 0 {
            let capacity = i128::from(self.rate);
            let tokens = (i128::from(bucket.tokens) + i128::try_from(added).unwrap_or(i128::MAX))
                .min(capacity);
            bucket.tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
            bucket.filled = now;
        }
        bucket
    }

    /// How many bytes a throttled partition may be sent at `now`: 0 while the bucket is
    /// empty (or in debt). Without a limit, `usize::MAX`.
    pub fn allowance(&self, now: Instant) -> usize {
        if !self.is_limited() {
            return usize::MAX;
        }
        usize::try_from(self.bucket(now).tokens.max(0)).unwrap_or(usize::MAX)
    }

    /// Takes `bytes` sent to a throttled replica out of the bucket.
    pub fn spend(&self, bytes: usize, now: Instant) {
        if !self.is_limited() {
            return;
        }
        let mut bucket = self.bucket(now);
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        bucket.tokens = bucket.tokens.saturating_sub(bytes);
    }

    /// How long from `now` until the bucket has a byte to give.
    pub fn refill_in(&self, now: Instant) -> Duration {
        if !self.is_limited() {
            return Duration::ZERO;
        }
        let missing = 1 - i128::from(self.bucket(now).tokens.min(0));
        let nanos = (missing as u128 * NANOS_PER_SECOND).div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_gives_everything() {
        let now = Instant::now();
        let throttle = Throttle::new(0, now);
        throttle.spend(1 << 30, now);
        assert_eq!(throttle.allowance(now), usize::MAX);
        assert_eq!(throttle.refill_in(now), Duration::ZERO);
    }

    #[test]
    fn the_bucket_holds_one_second_and_refills_at_the_rate() {
        let start = Instant::now();
        let throttle = Throttle::new(1_000, start);
        assert_eq!(throttle.allowance(start), 1_000);
        throttle.spend(600, start);
        assert_eq!(throttle.allowance(start), 400);
        assert_eq!(throttle.allowance(start + Duration::from_millis(100)), 500);
        assert_eq!(
            throttle.allowance(start + Duration::from_secs(60)),
            1_000,
            "capped"
        );
    }

    #[test]
    fn a_batch_larger_than_what_is_left_is_a_debt_paid_before_the_next_byte() {
        let start = Instant::now();
        let throttle = Throttle::new(1_000, start);
        throttle.spend(3_000, start);
        assert_eq!(throttle.allowance(start), 0);
        assert_eq!(throttle.refill_in(start), Duration::from_millis(2_001));
        let later = start + Duration::from_millis(2_000);
        assert_eq!(throttle.allowance(later), 0);
        assert_eq!(throttle.allowance(later + Duration::from_millis(10)), 10);
    }

    #[test]
    fn over_many_fetches_the_bytes_sent_stay_at_the_rate() {
        let start = Instant::now();
        let throttle = Throttle::new(10_000, start);
        let mut sent = 0;
        for tick in 0..=1_000u64 {
            let now = start + Duration::from_millis(tick * 10);
            let allowed = throttle.allowance(now);
            if allowed > 0 {
                // Whole batches of 4 KiB, the first one even past the allowance.
                let batch = 4_096;
                throttle.spend(batch, now);
                sent += batch;
            }
        }
        // 10 s at 10,000 bytes/s, plus the full bucket at the start and one batch.
        assert!(sent <= 10_000 * 10 + 10_000 + 4_096, "{sent}");
        assert!(sent >= 10_000 * 10 - 4_096, "{sent}");
    }
}
