//! Assignors: pure functions from a group's subscriptions and partition counts to each
//! member's target partitions.
//!
//! The coordinator computes a new target whenever the group epoch moves past the
//! assignment epoch; members then move towards it one confirmed revocation at a time.
//! Both assignors are deterministic: the same input gives the same output, so a
//! coordinator that replays the log computes what its predecessor computed.
//!
//! # Goals and non-goals
//! - Goal: a balanced, sticky assignment ([`Assignor::Uniform`]), so a member that joins
//!   takes only its share and a member that leaves moves only its own partitions.
//! - Goal: Kafka's range assignment ([`Assignor::Range`]) for users who co-partition
//!   topics.
//! - Non-goal: rack awareness, or weighing partitions by traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use super::records::TopicPartition;

/// Member id to the topics it subscribes to.
pub type Subscriptions = BTreeMap<String, BTreeSet<String>>;
/// Member id to its partitions.
pub type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// How a group's target assignment is computed. `Copy`; no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Sticky and balanced: with identical subscriptions member partition counts differ
    /// by at most one, and as few partitions as possible move when membership changes.
    #[default]
    Uniform,
    /// Kafka's `RangeAssignor`: per topic, the subscribed members in member id order get
    /// contiguous ranges of partitions, and the first `partitions % members` get one more.
    Range,
}

/// The assignor name is not `uniform` or `range`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown assignor {0:?}; use 'uniform' or 'range'")]
pub struct UnknownAssignor(pub String);

impl Assignor {
    /// The name clients send and describe shows: `uniform` or `range`.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// The code stored in group records.
    pub(crate) fn code(self) -> u8 {
        match self {
            Assignor::Uniform => 0,
            Assignor::Range => 1,
        }
    }

    /// The assignor stored as `code`, if any.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Assignor::Uniform),
            1 => Some(Assignor::Range),
            _ => None,
        }
    }

    /// Computes every member's target. The result has an entry for every member of
    /// `members` (possibly empty), gives each partition of a subscribed topic in
    /// `partition_counts` to exactly one subscribed member, and ignores topics that are
    /// not in `partition_counts` (they do not exist). `previous` is the last target; only
    /// [`Assignor::Uniform`] uses it, to keep partitions where they are.
    pub fn assign(
        self,
        members: &Subscriptions,
        partition_counts: &BTreeMap<String, u32>,
        previous: &Assignment,
    ) -> Assignment {
        match self {
            Assignor::Uniform => assign_uniform(members, partition_counts, previous),
            Assignor::Range => assign_range(members, partition_counts),
        }
    }
}

impl FromStr for Assignor {
    type Err = UnknownAssignor;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "uniform" => Ok(Assignor::Uniform),
            "range" => Ok(Assignor::Range),
            _ => Err(UnknownAssignor(name.to_owned())),
        }
    }
}

impl std::fmt::Display for Assignor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Topic to its subscribed members in member id order, for topics that exist and have
/// partitions.
fn subscribers<'a>(
    members: &'a Subscriptions,
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (member, topics) in members {
        for topic in topics {
            if partition_counts.get(topic).is_some_and(|count| *count > 0) {
                out.entry(topic).or_default().push(member);
            }
        }
    }
    out
}

fn empty_assignment(members: &Subscriptions) -> Assignment {
    members
        .keys()
        .map(|member| (member.clone(), BTreeSet::new()))
        .collect()
}

fn assign_range(members: &Subscriptions, partition_counts: &BTreeMap<String, u32>) -> Assignment {
    let mut out = empty_assignment(members);
    for (topic, subscribed) in subscribers(members, partition_counts) {
        let partitions = partition_counts.get(topic).copied().unwrap_or(0);
        // `subscribers` lists only members that exist, and at least one per topic.
        let count = u32::try_from(subscribed.len()).expect("members fit in u32");
        let (quota, extra) = (partitions / count, partitions % count);
        let mut start = 0;
        for (index, member) in (0..count).zip(subscribed) {
            let end = start + quota + u32::from(index < extra);
            let target = out.get_mut(member).expect("a member of the group");
            target.extend((start..end).map(|partition| TopicPartition::new(topic, partition)));
            start = end;
        }
        assert_eq!(start, partitions, "range gives out every partition once");
    }
    out
}

/// The subscribed member with the fewest partitions, ties to the lowest member id.
fn least_loaded<'a>(subscribed: &[&'a str], out: &Assignment) -> Option<&'a str> {
    subscribed
        .iter()
        .copied()
        .min_by_key(|member| (out.get(*member).map_or(0, BTreeSet::len), *member))
}

fn assign_uniform(
    members: &Subscriptions,
    partition_counts: &BTreeMap<String, u32>,
    previous: &Assignment,
) -> Assignment {
    let subscribers = subscribers(members, partition_counts);
    let mut out = empty_assignment(members);
    let mut taken = BTreeSet::new();
    // Stickiness: every member keeps what it had, if it still subscribes and the
    // partition still exists. Rebalancing below takes away only the excess.
    for (member, partitions) in previous {
        let (Some(topics), Some(target)) = (members.get(member), out.get_mut(member)) else {
            continue;
        };
        for tp in partitions {
            let exists = partition_counts
                .get(&tp.topic)
                .is_some_and(|count| tp.partition < *count);
            if exists && topics.contains(&tp.topic) && taken.insert(tp.clone()) {
                target.insert(tp.clone());
            }
        }
    }
    // Orphans (new partitions, and those of members that left) go to the least loaded.
    for (topic, subscribed) in &subscribers {
        let partitions = partition_counts.get(*topic).copied().unwrap_or(0);
        for partition in 0..partitions {
            let tp = TopicPartition::new(*topic, partition);
            if taken.contains(&tp) {
                continue;
            }
            let member = least_loaded(subscribed, &out).expect("a topic has subscribers");
            out.get_mut(member).expect("a member").insert(tp);
        }
    }
    balance(&subscribers, &mut out);
    out
}

/// Moves one partition at a time from a member to a subscriber of its topic that has at
/// least two fewer, until no such move exists. With identical subscriptions that leaves
/// every member within one partition of every other.
fn balance(subscribers: &BTreeMap<&str, Vec<&str>>, out: &mut Assignment) {
    // Each move lowers the sum of squared member loads by at least 2, and that sum starts
    // at most partitions^2: the loop always ends, and this bound proves it.
    let partitions: usize = out.values().map(BTreeSet::len).sum();
    let moves_max = partitions.saturating_mul(partitions) / 2;
    for _ in 0..=moves_max {
        let Some((tp, from, to)) = find_move(subscribers, out) else {
            return;
        };
        out.get_mut(&from).expect("a member").remove(&tp);
        out.get_mut(&to).expect("a member").insert(tp);
    }
    unreachable!("balancing ended within {moves_max} moves");
}

fn find_move(
    subscribers: &BTreeMap<&str, Vec<&str>>,
    out: &Assignment,
) -> Option<(TopicPartition, String, String)> {
    let load = |member: &str| out.get(member).map_or(0, BTreeSet::len);
    let receivers: BTreeMap<&str, &str> = subscribers
        .iter()
        .filter_map(|(topic, subscribed)| Some((*topic, least_loaded(subscribed, out)?)))
        .collect();
    let mut donors: Vec<(&String, &BTreeSet<TopicPartition>)> = out.iter().collect();
    donors.sort_by_key(|(member, partitions)| (std::cmp::Reverse(partitions.len()), *member));
    for (donor, partitions) in donors {
        // Move the highest partitions first, so low partitions stay put.
        for tp in partitions.iter().rev() {
            let Some(receiver) = receivers.get(tp.topic.as_str()) else {
                continue;
            };
            if load(receiver) + 2 <= partitions.len() {
                return Some((tp.clone(), donor.clone(), (*receiver).to_owned()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subscriptions(members: &[(&str, &[&str])]) -> Subscriptions {
        members
            .iter()
            .map(|(member, topics)| {
                let topics = topics.iter().map(|topic| (*topic).to_owned()).collect();
                ((*member).to_owned(), topics)
            })
            .collect()
    }

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics
            .iter()
            .map(|(topic, count)| ((*topic).to_owned(), *count))
            .collect()
    }

    fn loads(assignment: &Assignment) -> Vec<usize> {
        assignment.values().map(BTreeSet::len).collect()
    }

    fn moved(before: &Assignment, after: &Assignment) -> usize {
        after
            .iter()
            .map(|(member, partitions)| {
                let kept = before.get(member).cloned().unwrap_or_default();
                partitions.difference(&kept).count()
            })
            .sum()
    }

    /// Every partition of a subscribed topic goes to exactly one subscriber.
    fn assert_complete(members: &Subscriptions, counts: &BTreeMap<String, u32>, out: &Assignment) {
        let mut seen = BTreeSet::new();
        for (member, partitions) in out {
            for tp in partitions {
                assert!(
                    members[member].contains(&tp.topic),
                    "{tp} to a non-subscriber"
                );
                assert!(tp.partition < counts[&tp.topic], "{tp} does not exist");
                assert!(seen.insert(tp.clone()), "{tp} given twice");
            }
        }
        for (topic, count) in counts {
            if members.values().any(|topics| topics.contains(topic)) {
                for partition in 0..*count {
                    assert!(seen.contains(&TopicPartition::new(topic, partition)));
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for assignor in [Assignor::Uniform, Assignor::Range] {
            assert_eq!(assignor.name().parse::<Assignor>(), Ok(assignor));
            assert_eq!(Assignor::from_code(assignor.code()), Some(assignor));
        }
        assert!("sticky".parse::<Assignor>().is_err());
        assert_eq!(Assignor::default(), Assignor::Uniform);
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_first() {
        let members = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t", "u"])]);
        let counts = counts(&[("t", 7), ("u", 2)]);
        let out = Assignor::Range.assign(&members, &counts, &Assignment::new());
        let partitions =
            |member: &str| -> Vec<String> { out[member].iter().map(ToString::to_string).collect() };
        assert_eq!(partitions("a"), ["t-0", "t-1", "t-2"]);
        assert_eq!(partitions("b"), ["t-3", "t-4"]);
        assert_eq!(partitions("c"), ["t-5", "t-6", "u-0", "u-1"]);
    }

    #[test]
    fn uniform_join_moves_only_the_newcomers_share() {
        let counts = counts(&[("t", 12)]);
        let two = subscriptions(&[("a", &["t"]), ("b", &["t"])]);
        let before = Assignor::Uniform.assign(&two, &counts, &Assignment::new());
        assert_eq!(loads(&before), [6, 6]);
        let three = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let after = Assignor::Uniform.assign(&three, &counts, &before);
        assert_eq!(loads(&after), [4, 4, 4]);
        assert_eq!(moved(&before, &after), 4);
    }

    #[test]
    fn uniform_leave_moves_only_the_leavers_partitions() {
        let counts = counts(&[("t", 10)]);
        let three = subscriptions(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let before = Assignor::Uniform.assign(&three, &counts, &Assignment::new());
        let two = subscriptions(&[("a", &["t"]), ("c", &["t"])]);
        let after = Assignor::Uniform.assign(&two, &counts, &before);
        assert_eq!(loads(&after), [5, 5]);
        assert_eq!(moved(&before, &after), before["b"].len());
    }

    #[test]
    fn uniform_heterogeneous_only_subscribers_get_partitions() {
        let members = subscriptions(&[("x", &["a", "b"]), ("y", &["a"])]);
        let counts = counts(&[("a", 2), ("b", 2), ("missing", 0)]);
        let out = Assignor::Uniform.assign(&members, &counts, &Assignment::new());
        assert_complete(&members, &counts, &out);
        assert_eq!(loads(&out), [2, 2]);
    }

    fn homogeneous(members: usize, topics: usize) -> Subscriptions {
        let topics: BTreeSet<String> = (0..topics).map(|topic| format!("t{topic}")).collect();
        (0..members)
            .map(|member| (format!("m{member:02}"), topics.clone()))
            .collect()
    }

    proptest! {
        #[test]
        fn uniform_is_balanced_complete_and_sticky(
            members in 1usize..8,
            partitions in proptest::collection::vec(0u32..20, 1..4),
            change in 0usize..3,
        ) {
            let counts: BTreeMap<String, u32> = partitions
                .iter()
                .enumerate()
                .map(|(topic, count)| (format!("t{topic}"), *count))
                .collect();
            let before_members = homogeneous(members, partitions.len());
            let before = Assignor::Uniform.assign(&before_members, &counts, &Assignment::new());
            assert_complete(&before_members, &counts, &before);
            let after_members = match change {
                0 => homogeneous(members + 1, partitions.len()),
                1 if members > 1 => {
                    let mut fewer = before_members.clone();
                    fewer.pop_first();
                    fewer
                }
                _ => before_members.clone(),
            };
            let after = Assignor::Uniform.assign(&after_members, &counts, &before);
            assert_complete(&after_members, &counts, &after);
            let loads = loads(&after);
            prop_assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
            let total: usize = counts.values().map(|count| *count as usize).sum();
            let moves = moved(&before, &after);
            match change {
                // The newcomer takes its share and nothing else moves.
                0 => prop_assert_eq!(moves, total / (members + 1)),
                1 if members > 1 => prop_assert_eq!(moves, before["m00"].len()),
                _ => prop_assert_eq!(moves, 0),
            }
            prop_assert_eq!(
                Assignor::Uniform.assign(&after_members, &counts, &before),
                after,
                "deterministic"
            );
        }

        #[test]
        fn range_and_uniform_are_complete_with_mixed_subscriptions(
            subscribed in proptest::collection::vec(proptest::collection::btree_set(0usize..4, 0..4), 1..6),
            partitions in proptest::collection::vec(0u32..9, 4),
        ) {
            let counts: BTreeMap<String, u32> = partitions
                .iter()
                .enumerate()
                .map(|(topic, count)| (format!("t{topic}"), *count))
                .collect();
            let members: Subscriptions = subscribed
                .iter()
                .enumerate()
                .map(|(member, topics)| {
                    (format!("m{member}"), topics.iter().map(|topic| format!("t{topic}")).collect())
                })
                .collect();
            for assignor in [Assignor::Uniform, Assignor::Range] {
                let out = assignor.assign(&members, &counts, &Assignment::new());
                assert_complete(&members, &counts, &out);
                prop_assert_eq!(out.len(), members.len());
            }
        }
    }
}
