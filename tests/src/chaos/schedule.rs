//! The fault schedule: when each fault is injected and healed, drawn from the seed
//! alone, so the same seed (with the same run length) replays the same faults.

use std::time::Duration;

use strata_storage::sim::SplitMix;

/// Shortest and longest a fault lasts, in ms, unless a scenario says otherwise.
pub const FAULT_MS: (u64, u64) = (1_000, 3_000);
/// Shortest and longest healthy gap between faults, in ms.
pub const GAP_MS: (u64, u64) = (1_000, 4_000);

/// One planned fault, as offsets from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedFault {
    /// When it is injected.
    pub inject_at: Duration,
    /// When it is healed.
    pub heal_at: Duration,
}

/// Faults drawn from `seed` inside `window` (from, to): each lasts `fault_ms` (shortest,
/// longest), with 1 to 4 s of health before each; none outlasts the window.
pub fn schedule(
    seed: u64,
    window: (Duration, Duration),
    fault_ms: (u64, u64),
) -> Vec<PlannedFault> {
    let mut rng = SplitMix(seed);
    let mut draw = |(low, high): (u64, u64)| low + rng.next_u64() % (high - low + 1);
    let (from, to) = (millis(window.0), millis(window.1));
    let mut faults = Vec::new();
    let mut at = from;
    loop {
        let inject = at + draw(GAP_MS);
        let heal = inject + draw(fault_ms);
        if heal > to {
            return faults;
        }
        faults.push(PlannedFault {
            inject_at: Duration::from_millis(inject),
            heal_at: Duration::from_millis(heal),
        });
        at = heal;
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(60));

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        assert_eq!(
            schedule(42, WINDOW, FAULT_MS),
            schedule(42, WINDOW, FAULT_MS)
        );
        assert_ne!(
            schedule(42, WINDOW, FAULT_MS),
            schedule(43, WINDOW, FAULT_MS)
        );
    }

    #[test]
    fn the_shortest_window_holds_a_fault() {
        for fault_ms in [FAULT_MS, (3_500, 5_000)] {
            let shortest = Duration::from_millis(GAP_MS.1 + fault_ms.1);
            for seed in 0..100 {
                let window = (WINDOW.0, WINDOW.0 + shortest);
                assert!(!schedule(seed, window, fault_ms).is_empty());
            }
        }
    }

    #[test]
    fn faults_are_ordered_and_inside_the_window() {
        for seed in 0..100 {
            let faults = schedule(seed, WINDOW, FAULT_MS);
            assert!(faults.len() >= 8, "seed {seed}: {faults:?}");
            let mut healthy_from = WINDOW.0;
            for fault in faults {
                assert!(healthy_from < fault.inject_at, "seed {seed}");
                assert!(fault.inject_at < fault.heal_at, "seed {seed}");
                healthy_from = fault.heal_at;
            }
            assert!(healthy_from <= WINDOW.1, "seed {seed}");
        }
    }
}
