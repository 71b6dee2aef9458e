//! Where a topic's partitions go: which brokers hold each partition's replicas, and which
//! of them is the preferred leader.
//!
//! Pure and deterministic: the metadata state machine calls it while applying a
//! `CreateTopic` or `CreatePartitions`, on every broker, so the same image must give the
//! same placement everywhere. It sees only the alive brokers and leader counts; it reads
//! no clock and uses no randomness.
//!
//! # The rule
//! Each new partition's leader is the alive broker that leads the fewest partitions of
//! this topic; among those, the one leading the fewest partitions in the whole cluster;
//! among those, the lowest id. The first key spreads every topic evenly (leader counts
//! differ by at most one), also when partitions are added later; the second spreads many
//! small topics, which a per-topic rule alone would all put on the lowest id. Followers
//! are the next brokers round the ring of alive ids after the leader, as in Kafka's
//! rack-unaware assignment.
//!
//! # Goals and non-goals
//! - Goal: even leaders per topic and across the cluster, at creation and on growth.
//! - Non-goal: racks, disk sizes, and moving existing partitions (no reassignment yet).

use std::collections::{BTreeMap, BTreeSet};

/// The replica lists of `count` new partitions, preferred leader first.
///
/// `alive` is the set of brokers to place on (order and repeats do not matter).
/// `topic_leaders` counts, per broker, the preferred leaders it already has in this topic
/// (empty for a new topic); `cluster_leaders` counts them over every topic. Brokers
/// missing from a count have 0.
///
/// # Panics
/// If `replication_factor` is 0 or larger than the number of distinct alive brokers: the
/// caller refuses those first (`InvalidReplicationFactor`).
pub fn assign(
    alive: &[u32],
    topic_leaders: &BTreeMap<u32, usize>,
    cluster_leaders: &BTreeMap<u32, usize>,
    count: u32,
    replication_factor: u16,
) -> Vec<Vec<u32>> {
    let ring: Vec<u32> = alive
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let factor = usize::from(replication_factor);
    assert!(
        (1..=ring.len()).contains(&factor),
        "replication factor {factor} with {} alive brokers",
        ring.len()
    );
    let count_of = |counts: &BTreeMap<u32, usize>, id: &u32| counts.get(id).copied().unwrap_or(0);
    let mut topic: Vec<usize> = ring.iter().map(|id| count_of(topic_leaders, id)).collect();
    let mut cluster: Vec<usize> = ring
        .iter()
        .map(|id| count_of(cluster_leaders, id))
        .collect();
    (0..count)
        .map(|_| {
            // The ring is sorted, so the lowest position is the lowest id.
            let leader = (0..ring.len())
                .min_by_key(|&position| (topic[position], cluster[position], position))
                .expect("the ring is not empty");
            topic[leader] += 1;
            cluster[leader] += 1;
            (0..factor)
                .map(|k| ring[(leader + k) % ring.len()])
                .collect()
        })
        .collect()
}

/// How many partitions of `replica_lists` each broker is the preferred leader of.
pub fn leader_counts<'a>(
    replica_lists: impl IntoIterator<Item = &'a [u32]>,
) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for leader in replica_lists
        .into_iter()
        .filter_map(|replicas| replicas.first())
    {
        *counts.entry(*leader).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn none() -> BTreeMap<u32, usize> {
        BTreeMap::new()
    }

    fn spread(counts: &BTreeMap<u32, usize>, alive: &[u32]) -> usize {
        let per_broker: Vec<usize> = alive
            .iter()
            .map(|id| counts.get(id).copied().unwrap_or(0))
            .collect();
        per_broker.iter().max().unwrap() - per_broker.iter().min().unwrap()
    }

    fn counts_of(lists: &[Vec<u32>]) -> BTreeMap<u32, usize> {
        leader_counts(lists.iter().map(Vec::as_slice))
    }

    #[test]
    fn leaders_go_round_the_ring_and_followers_follow_them() {
        let lists = assign(&[3, 1, 2], &none(), &none(), 4, 2);
        assert_eq!(lists, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
    }

    #[test]
    fn small_topics_spread_over_the_cluster() {
        let alive = [1, 2, 3];
        let mut cluster = none();
        let mut leaders = Vec::new();
        for _ in 0..7 {
            let lists = assign(&alive, &none(), &cluster, 1, 1);
            leaders.push(lists[0][0]);
            for (id, n) in counts_of(&lists) {
                *cluster.entry(id).or_insert(0) += n;
            }
        }
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn a_broker_that_joins_gets_the_new_partitions_first() {
        let before = assign(&[1, 2], &none(), &none(), 4, 1);
        let grown = assign(&[1, 2, 3], &counts_of(&before), &counts_of(&before), 2, 1);
        assert_eq!(grown, vec![vec![3], vec![3]]);
    }

    #[test]
    #[should_panic(expected = "replication factor 3 with 2 alive brokers")]
    fn a_factor_above_the_alive_brokers_is_a_bug_of_the_caller() {
        assign(&[1, 2], &none(), &none(), 1, 3);
    }

    fn cluster() -> impl Strategy<Value = (Vec<u32>, u16)> {
        proptest::collection::btree_set(0u32..12, 1..7).prop_flat_map(|ids| {
            let alive: Vec<u32> = ids.into_iter().collect();
            let brokers = u16::try_from(alive.len()).unwrap();
            (Just(alive), 1..=brokers)
        })
    }

    fn loads() -> impl Strategy<Value = BTreeMap<u32, usize>> {
        proptest::collection::btree_map(0u32..12, 0usize..20, 0..12)
    }

    proptest! {
        #[test]
        fn replica_lists_hold_distinct_alive_brokers(
            (alive, factor) in cluster(),
            load in loads(),
            count in 0u32..40,
        ) {
            let lists = assign(&alive, &none(), &load, count, factor);
            prop_assert_eq!(lists.len(), count as usize);
            for replicas in &lists {
                prop_assert_eq!(replicas.len(), usize::from(factor));
                let distinct: BTreeSet<u32> = replicas.iter().copied().collect();
                prop_assert_eq!(distinct.len(), replicas.len());
                prop_assert!(replicas.iter().all(|id| alive.contains(id)));
            }
        }

        #[test]
        fn a_fresh_topic_spreads_its_leaders_within_one(
            (alive, factor) in cluster(),
            load in loads(),
            count in 1u32..40,
        ) {
            let lists = assign(&alive, &none(), &load, count, factor);
            prop_assert!(spread(&counts_of(&lists), &alive) <= 1);
        }

        #[test]
        fn adding_partitions_keeps_the_spread(
            (alive, factor) in cluster(),
            load in loads(),
            first in 1u32..30,
            added in 1u32..30,
        ) {
            let mut lists = assign(&alive, &none(), &load, first, factor);
            let topic = counts_of(&lists);
            lists.extend(assign(&alive, &topic, &load, added, factor));
            prop_assert!(spread(&counts_of(&lists), &alive) <= 1);
        }

        #[test]
        fn a_balanced_cluster_stays_balanced(
            (alive, factor) in cluster(),
            base in 0usize..5,
            extra in any::<u64>(),
            count in 1u32..40,
        ) {
            // Every broker leads `base` or `base + 1` partitions before the topic.
            let load: BTreeMap<u32, usize> = alive
                .iter()
                .enumerate()
                .map(|(bit, &id)| (id, base + usize::from(extra >> bit & 1 == 1)))
                .collect();
            let mut after = counts_of(&assign(&alive, &none(), &load, count, factor));
            for (id, n) in &load {
                *after.entry(*id).or_insert(0) += n;
            }
            prop_assert!(spread(&after, &alive) <= 1);
        }

        #[test]
        fn the_same_inputs_give_the_same_placement(
            (alive, factor) in cluster(),
            load in loads(),
            count in 0u32..20,
        ) {
            let mut shuffled = alive.clone();
            shuffled.reverse();
            prop_assert_eq!(
                assign(&alive, &none(), &load, count, factor),
                assign(&shuffled, &none(), &load, count, factor)
            );
        }
    }
}
