//! How long to wait before trying again: exponential, capped, with ±20 % jitter.
//!
//! Every retry and reconnect delay of the client comes from a [`Backoff`], as Kafka's
//! do since KIP-580: the first wait is the configured initial value, each further
//! consecutive failure doubles it up to the configured maximum, and every wait is
//! spread by a random factor in [0.8, 1.2] so that clients that failed together (a
//! broker restart) do not all come back in the same instant.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The jitter: a wait is spread by up to this share of itself, either way.
const JITTER_PERCENT: u64 = 20;

/// Doublings after which the nominal wait stops growing (any cap up to an hour is
/// reached well before: 2^22 ms is more than an hour).
const DOUBLINGS_MAX: u32 = 22;

/// An exponential backoff policy: `initial_ms` doubling per consecutive failure up to
/// `max_ms`, each wait jittered by ±20 %. Plain data, `Copy`, thread-safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    initial_ms: u64,
    max_ms: u64,
}

impl Backoff {
    /// A policy from a config's `*_backoff_ms` and `*_backoff_ms_max` (checked by the
    /// config's `validate`: `1 <= initial_ms <= max_ms`).
    pub(crate) fn new(initial_ms: u64, max_ms: u64) -> Self {
        Self { initial_ms, max_ms }
    }

    /// The wait after `failures` consecutive failures (1 for the first), jittered.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        jittered(self.nominal(failures), random())
    }

    /// The wait before jitter: `initial_ms * 2^(failures - 1)`, capped at `max_ms`.
    fn nominal(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(DOUBLINGS_MAX);
        Duration::from_millis(
            self.initial_ms
                .saturating_mul(1 << doublings)
                .min(self.max_ms),
        )
    }
}

/// `nominal` moved by `draw` within ±20 %, in microseconds: the lowest draw gives
/// 80 % of it, and draws spread evenly up to 120 %.
fn jittered(nominal: Duration, draw: u64) -> Duration {
    let micros = u64::try_from(nominal.as_micros()).unwrap_or(u64::MAX);
    let spread = micros / 100 * JITTER_PERCENT + micros % 100 * JITTER_PERCENT / 100;
    let offset = draw % (2 * spread + 1);
    Duration::from_micros((micros - spread).saturating_add(offset))
}

/// A fresh pseudo-random number: a counter hashed with a key the standard library
/// seeds from the OS, so two processes draw different sequences. Good enough to spread
/// waits; not for anything secret.
fn random() -> u64 {
    static KEY: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    KEY.get_or_init(RandomState::new)
        .hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn the_nominal_wait_doubles_from_the_initial_up_to_the_cap() {
        let backoff = Backoff::new(100, 1_000);
        let steps: Vec<Duration> = (1..=6).map(|failures| backoff.nominal(failures)).collect();
        assert_eq!(
            steps,
            [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]
        );
        assert_eq!(
            backoff.nominal(0),
            ms(100),
            "no failure counts as the first"
        );
        assert_eq!(backoff.nominal(u32::MAX), ms(1_000));
        let huge = Backoff::new(u64::MAX / 2, u64::MAX);
        assert_eq!(huge.nominal(u32::MAX), Duration::from_millis(u64::MAX));
    }

    #[test]
    fn jitter_spans_exactly_eighty_to_one_hundred_twenty_percent() {
        let nominal = ms(1_000);
        assert_eq!(jittered(nominal, 0), ms(800), "lowest draw");
        assert_eq!(jittered(nominal, 400_000), ms(1_200), "highest draw");
        assert_eq!(jittered(nominal, 400_001), ms(800), "draws wrap around");
        assert_eq!(jittered(nominal, 200_000), nominal, "middle draw");
        // Below 5 µs there is nothing to spread.
        assert_eq!(
            jittered(Duration::from_micros(4), u64::MAX),
            Duration::from_micros(4)
        );
        assert_eq!(jittered(Duration::ZERO, 7), Duration::ZERO);
        let top = jittered(Duration::from_millis(u64::MAX), u64::MAX);
        assert!(top >= Duration::from_micros(u64::MAX / 100 * 80));
    }

    #[test]
    fn every_jittered_wait_stays_within_twenty_percent_of_its_step() {
        let backoff = Backoff::new(100, 1_000);
        for failures in 1..=8 {
            let nominal = backoff.nominal(failures);
            for draw in (0..1_000).map(|step| step * 7_919) {
                let wait = jittered(nominal, draw);
                assert!(
                    wait >= nominal * 4 / 5 && wait <= nominal * 6 / 5,
                    "{wait:?} for {nominal:?}"
                );
            }
        }
    }

    /// Real draws: always within bounds (no flake possible), and spread out. Each draw
    /// falls below 95 % (or above 105 %) with probability 3/8, so the chance that 1 000
    /// of them miss either band is (5/8)^1000, about 10^-204.
    #[test]
    fn random_waits_are_spread_over_the_whole_band() {
        let backoff = Backoff::new(100, 1_000);
        let waits: Vec<Duration> = (0..1_000).map(|_| backoff.delay(3)).collect();
        assert!(waits.iter().all(|wait| (ms(320)..=ms(480)).contains(wait)));
        assert!(waits.iter().any(|wait| *wait < ms(380)), "{waits:?}");
        assert!(waits.iter().any(|wait| *wait > ms(420)), "{waits:?}");
    }
}
