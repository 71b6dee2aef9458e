//! The replication rules, with no I/O and no clock of their own: what a leader's high
//! watermark is, which followers leave or join the in-sync set, where a follower's log
//! diverges from its leader's, and where it truncates. The leader (`leader.rs`), the
//! replica-fetch handler and the follower (`follower.rs`) feed them events and act on
//! the answers; the tests here check the rules alone.
//!
//! The rules are Kafka's:
//! - **High watermark** (KIP-966's strict min ISR): the smallest offset every in-sync
//!   replica covers, and frozen while fewer than `min_insync_replicas` are in sync. What
//!   a replica covers follows the topic's durability policy: its log end offset under
//!   `never`, its durable offset under a policy that fsyncs, so that `acks = all` under
//!   `every_batch` means fsynced on the whole in-sync set.
//! - **Leaving the ISR**: a follower not caught up for `replica_lag_max_ms`. "Caught up"
//!   is Kafka's `lastCaughtUpTime`: a fetch reached the leader's log end offset, or the
//!   log end offset the leader had at the follower's previous fetch (so a steady stream
//!   of appends does not make a follower that keeps pace look behind).
//! - **Joining the ISR**: only a follower whose fetch reached the leader's log end
//!   offset, a stricter bar than the one it left by, so a follower at the edge does not
//!   flap in and out.
//! - **Divergence** (KIP-101, KIP-279, KIP-320): a follower says the epoch of the last
//!   batch it holds; if the leader's log has that epoch ending earlier, or not at all, the
//!   follower's log diverges there, never at the high watermark.

use std::collections::BTreeMap;

/// What counts as a replica having a record, for the high watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// In its log (durability `never`).
    LogEnd,
    /// Fsynced (durability `interval` or `every_batch`).
    Durable,
}

/// What a leader knows of one follower, from its fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The incarnation of the follower's broker that fetched: a restarted follower
    /// starts over (KIP-903).
    pub incarnation: u64,
    /// Its log end offset: the offset its last fetch asked from.
    pub log_end: u64,
    /// Its durable offset, as its last fetch reported it.
    pub durable: u64,
    /// When it last was caught up, in ms.
    pub caught_up_ms: u64,
    /// Its last fetch asked from the leader's log end: it had everything then.
    pub reached_end: bool,
    /// The leader's log end offset at its previous fetch.
    previous_leader_end: u64,
    /// When its previous fetch came.
    previous_fetch_ms: u64,
}

impl Progress {
    /// A follower the leader has not heard from yet, counted as caught up at `now_ms`:
    /// a new leader gives its in-sync followers `replica_lag_max_ms` to fetch before it
    /// drops them.
    pub fn new(incarnation: u64, now_ms: u64) -> Self {
        Self {
            incarnation,
            log_end: 0,
            durable: 0,
            caught_up_ms: now_ms,
            reached_end: false,
            previous_leader_end: u64::MAX,
            previous_fetch_ms: now_ms,
        }
    }

    /// Records a fetch at `now_ms` from `fetch_offset`, with the follower's durable
    /// offset, while the leader's log ends at `leader_end`.
    pub fn on_fetch(&mut self, now_ms: u64, fetch_offset: u64, durable: u64, leader_end: u64) {
        if fetch_offset >= leader_end {
            self.caught_up_ms = now_ms;
        } else if fetch_offset >= self.previous_leader_end {
            self.caught_up_ms = self.caught_up_ms.max(self.previous_fetch_ms);
        }
        self.reached_end = fetch_offset >= leader_end;
        self.log_end = fetch_offset;
        self.durable = durable.min(fetch_offset);
        self.previous_leader_end = leader_end;
        self.previous_fetch_ms = now_ms;
    }

    /// The offset this follower covers.
    pub fn covered(&self, coverage: Coverage) -> u64 {
        match coverage {
            Coverage::LogEnd => self.log_end,
            Coverage::Durable => self.durable,
        }
    }
}

/// The high watermark the in-sync set gives, or `None` while it is frozen (fewer than
/// `min_isr` in sync). `leader_covered` is what the leader itself covers; an in-sync
/// follower not heard from yet covers nothing.
pub fn high_watermark(
    leader: u32,
    leader_covered: u64,
    isr: &[u32],
    followers: &BTreeMap<u32, Progress>,
    coverage: Coverage,
    min_isr: usize,
) -> Option<u64> {
    if isr.len() < min_isr {
        return None;
    }
    isr.iter()
        .map(|&member| {
            if member == leader {
                leader_covered
            } else {
                followers
                    .get(&member)
                    .map_or(0, |progress| progress.covered(coverage))
            }
        })
        .min()
}

/// The in-sync set the leader should ask for, in replica order, or `None` if it is the
/// current one: followers not caught up for more than `lag_max_ms` leave, and replicas
/// whose last fetch asked from the leader's log end as it was then join (under steady
/// appends the log end has moved on by the time the leader looks). `eligible` says
/// whether a replica's broker may join at the incarnation that fetched (alive, current
/// incarnation).
pub fn wanted_isr(
    leader: u32,
    replicas: &[u32],
    isr: &[u32],
    followers: &BTreeMap<u32, Progress>,
    (now_ms, lag_max_ms): (u64, u64),
    eligible: impl Fn(u32, u64) -> bool,
) -> Option<Vec<u32>> {
    let in_sync = |replica: u32| {
        if replica == leader {
            return true;
        }
        let Some(progress) = followers.get(&replica) else {
            return false;
        };
        if isr.contains(&replica) {
            now_ms.saturating_sub(progress.caught_up_ms) <= lag_max_ms
        } else {
            progress.reached_end && eligible(replica, progress.incarnation)
        }
    };
    let wanted: Vec<u32> = replicas
        .iter()
        .copied()
        .filter(|&replica| in_sync(replica))
        .collect();
    let same = wanted.len() == isr.len() && wanted.iter().all(|member| isr.contains(member));
    (!same).then_some(wanted)
}

/// Where a follower's log diverges from the leader's, as the leader tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diverging {
    /// The largest epoch of the leader's log at or below the follower's last one;
    /// `None` if the leader has none (the follower's whole log may differ).
    pub epoch: Option<u32>,
    /// Where that epoch ends in the leader's log (0 when `epoch` is `None`).
    pub end_offset: u64,
}

/// The leader's check of a follower's fetch: `None` if the follower's log agrees with
/// the leader's up to `fetch_offset`. `last_fetched_epoch` is the epoch of the
/// follower's last batch (`None` for an empty log), and `end_for_epoch` the leader's
/// answer for that epoch (the largest epoch at or below it and where it ends).
pub fn divergence(
    last_fetched_epoch: Option<u32>,
    fetch_offset: u64,
    end_for_epoch: Option<(u32, u64)>,
) -> Option<Diverging> {
    let epoch = last_fetched_epoch?;
    match end_for_epoch {
        Some((found, end)) if found == epoch && end >= fetch_offset => None,
        Some((found, end)) => Some(Diverging {
            epoch: Some(found),
            end_offset: end.min(fetch_offset),
        }),
        None => Some(Diverging {
            epoch: None,
            end_offset: 0,
        }),
    }
}

/// Where a follower truncates, told its log diverges: at the leader's end for the
/// epoch, or at its own end for that epoch if that is lower (`own_end_for_epoch` is the
/// follower's answer for `diverging.epoch`; `None` when it has no such epoch or none at
/// or below it, in which case nothing of its log is known to agree).
pub fn truncation_point(diverging: Diverging, own_end_for_epoch: Option<(u32, u64)>) -> u64 {
    match (diverging.epoch, own_end_for_epoch) {
        (Some(_), Some((_, own_end))) => diverging.end_offset.min(own_end),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn progress(log_end: u64, durable: u64, caught_up_ms: u64) -> Progress {
        Progress {
            log_end,
            durable,
            caught_up_ms,
            ..Progress::new(1, caught_up_ms)
        }
    }

    #[test]
    fn the_high_watermark_is_the_smallest_covered_offset_of_the_isr() {
        let followers = BTreeMap::from([(2, progress(7, 5, 0)), (3, progress(9, 9, 0))]);
        let hw = |isr: &[u32], coverage| high_watermark(1, 10, isr, &followers, coverage, 2);
        assert_eq!(hw(&[1, 2, 3], Coverage::LogEnd), Some(7));
        assert_eq!(hw(&[1, 2, 3], Coverage::Durable), Some(5));
        assert_eq!(hw(&[1, 3], Coverage::LogEnd), Some(9));
        // Below min ISR the high watermark stays where it is.
        assert_eq!(hw(&[1], Coverage::LogEnd), None);
        // A member not heard from yet covers nothing.
        assert_eq!(
            high_watermark(1, 10, &[1, 4], &followers, Coverage::LogEnd, 1),
            Some(0)
        );
        // One replica alone: what the leader covers.
        assert_eq!(
            high_watermark(1, 10, &[1], &BTreeMap::new(), Coverage::LogEnd, 1),
            Some(10)
        );
    }

    #[test]
    fn a_follower_keeping_pace_with_steady_appends_stays_caught_up() {
        let mut follower = Progress::new(1, 0);
        // Each fetch reaches the leader's end as of the previous fetch, never the
        // current one: appends keep arriving in between.
        follower.on_fetch(100, 0, 0, 10);
        for step in 1..50 {
            let now = 100 + step * 100;
            follower.on_fetch(now, step * 10, 0, step * 10 + 10);
            assert_eq!(follower.caught_up_ms, now - 100);
        }
        // A follower that stops advancing is caught up no more.
        follower.on_fetch(10_000, 490, 0, 600);
        follower.on_fetch(10_100, 490, 0, 700);
        assert_eq!(follower.caught_up_ms, 4_900);
    }

    #[test]
    fn followers_leave_when_lagging_and_join_only_at_the_log_end() {
        let replicas = [1, 2, 3];
        let all = |_, _| true;
        let mut behind = progress(99, 0, 9_000);
        // Its last fetch asked from 99 while the leader's log ended at 100.
        behind.on_fetch(9_000, 99, 0, 100);
        let followers = BTreeMap::from([(2, progress(50, 0, 1_000)), (3, behind)]);
        // 2 lags for 9 s with 5 s allowed: it leaves.
        let window = (10_000, 5_000);
        assert_eq!(
            wanted_isr(1, &replicas, &[1, 2, 3], &followers, window, all),
            Some(vec![1, 3])
        );
        // 3 is out and was one record short of the log end: it stays out.
        assert_eq!(
            wanted_isr(1, &replicas, &[1], &followers, window, all),
            None
        );
        // Once a fetch asks from the log end as it was then, it joins, even if the log
        // has grown since; unless its broker is not eligible.
        let mut caught_up = behind;
        caught_up.on_fetch(9_100, 100, 0, 100);
        let followers = BTreeMap::from([(3, caught_up)]);
        assert_eq!(
            wanted_isr(1, &replicas, &[1], &followers, window, all),
            Some(vec![1, 3])
        );
        assert_eq!(
            wanted_isr(1, &replicas, &[1], &followers, window, |_, _| false),
            None
        );
    }

    #[test]
    fn divergence_is_found_by_epoch() {
        // The follower's last epoch 3 ends at 40 on the leader; it asks from 50.
        assert_eq!(
            divergence(Some(3), 50, Some((3, 40))),
            Some(Diverging {
                epoch: Some(3),
                end_offset: 40
            })
        );
        // The leader never had epoch 3: its epoch 2 ended at 30.
        assert_eq!(
            divergence(Some(3), 50, Some((2, 30))),
            Some(Diverging {
                epoch: Some(2),
                end_offset: 30
            })
        );
        assert_eq!(divergence(Some(3), 40, Some((3, 40))), None);
        assert_eq!(divergence(None, 0, None), None);
        assert_eq!(
            divergence(Some(1), 5, None),
            Some(Diverging {
                epoch: None,
                end_offset: 0
            })
        );
        let diverging = Diverging {
            epoch: Some(2),
            end_offset: 30,
        };
        assert_eq!(truncation_point(diverging, Some((2, 25))), 25);
        assert_eq!(truncation_point(diverging, Some((2, 45))), 30);
        assert_eq!(truncation_point(diverging, None), 0);
    }

    /// A log as its epoch entries `(epoch, start)` and its end.
    #[derive(Debug, Clone)]
    struct Model {
        entries: Vec<(u32, u64)>,
        end: u64,
    }

    impl Model {
        fn end_for_epoch(&self, epoch: u32) -> Option<(u32, u64)> {
            let at = self.entries.iter().rposition(|&(e, _)| e <= epoch)?;
            let end = self
                .entries
                .get(at + 1)
                .map_or(self.end, |&(_, start)| start);
            Some((self.entries[at].0, end))
        }

        fn epoch_at(&self, offset: u64) -> Option<u32> {
            self.entries
                .iter()
                .rev()
                .find(|&&(_, start)| start <= offset)
                .map(|&(epoch, _)| epoch)
        }

        fn truncate(&mut self, to: u64) {
            self.entries.retain(|&(_, start)| start < to);
            self.end = self.end.min(to);
        }
    }

    /// Two logs sharing a prefix (same epochs there), then each going its own way with
    /// epochs that only grow, the leader's last epoch the newest (it was elected last).
    fn diverged_logs() -> impl Strategy<Value = (Model, Model, u64)> {
        (
            1u64..20,
            prop::collection::vec((1u32..3, 1u64..10), 0..4),
            prop::collection::vec((1u32..3, 1u64..10), 0..4),
            prop::collection::vec((1u32..3, 1u64..10), 1..4),
        )
            .prop_map(|(shared_len, shared, follower_tail, leader_tail)| {
                let mut entries = vec![(0, 0)];
                let mut epoch = 0;
                let mut offset = shared_len;
                for (step, len) in shared {
                    epoch += step;
                    entries.push((epoch, offset));
                    offset += len;
                }
                let (prefix, prefix_end, prefix_epoch) = (entries, offset, epoch);
                let grow = |tail: Vec<(u32, u64)>, mut epoch: u32, odd: bool| {
                    let mut entries = prefix.clone();
                    let mut end = prefix_end;
                    for (step, len) in tail {
                        // The two sides take disjoint epochs past the prefix.
                        epoch += step * 2 + u32::from(odd);
                        entries.push((epoch, end));
                        end += len;
                    }
                    Model { entries, end }
                };
                let follower = grow(follower_tail, prefix_epoch, false);
                let leader = grow(leader_tail, prefix_epoch + 100, true);
                (leader, follower, prefix_end)
            })
    }

    proptest! {
        /// Repeating the fetch-and-truncate exchange ends with the follower's log a
        /// prefix of the leader's, never cut below the shared prefix.
        #[test]
        fn truncation_converges_on_the_shared_prefix((leader, mut follower, shared) in diverged_logs()) {
            for _ in 0..20 {
                let last = follower.entries.last().map(|&(epoch, _)| epoch);
                let answer = last.and_then(|epoch| leader.end_for_epoch(epoch));
                match divergence(last, follower.end, answer) {
                    None => break,
                    Some(diverging) => {
                        let own = diverging.epoch.and_then(|epoch| follower.end_for_epoch(epoch));
                        let point = truncation_point(diverging, own);
                        prop_assert!(point < follower.end || follower.end == 0);
                        follower.truncate(point);
                    }
                }
            }
            let last = follower.entries.last().map(|&(epoch, _)| epoch);
            prop_assert_eq!(divergence(last, follower.end, last.and_then(|e| leader.end_for_epoch(e))), None);
            prop_assert!(follower.end >= shared.min(leader.end));
            for offset in 0..follower.end {
                prop_assert_eq!(follower.epoch_at(offset), leader.epoch_at(offset));
            }
        }

        /// The high watermark never passes what any in-sync member covers, and is
        /// `None` exactly below the minimum.
        #[test]
        fn the_high_watermark_is_covered_by_every_member(
            leader_covered in 0u64..100,
            ends in prop::collection::vec((0u64..100, 0u64..100), 0..4),
            min_isr in 1usize..4,
        ) {
            let followers: BTreeMap<u32, Progress> = ends
                .iter()
                .enumerate()
                .map(|(at, &(end, durable))| (at as u32 + 2, progress(end, durable.min(end), 0)))
                .collect();
            let mut isr = vec![1];
            isr.extend(followers.keys());
            for coverage in [Coverage::LogEnd, Coverage::Durable] {
                let hw = high_watermark(1, leader_covered, &isr, &followers, coverage, min_isr);
                prop_assert_eq!(hw.is_none(), isr.len() < min_isr);
                if let Some(hw) = hw {
                    prop_assert!(hw <= leader_covered);
                    for progress in followers.values() {
                        prop_assert!(hw <= progress.covered(coverage));
                    }
                }
            }
        }
    }
}
