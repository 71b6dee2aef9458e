//! The group coordinator's state machine: every group this broker coordinates, its
//! members, their assignments, and the group's committed offsets.
//!
//! The engine does no I/O, reads no clock and uses no randomness: time comes in as an
//! [`Instant`], topic sizes through a lookup function, and every change to persisted state
//! goes out as [`Record`]s for the broker to append to the internal offsets log. Replaying
//! those records in order into a fresh [`Coordinator`] rebuilds the same groups; only
//! timers (session and revocation deadlines) restart from the replay time.
//!
//! # Goals and non-goals
//! - Goal: KIP-848 style membership without a stop-the-world rebalance. Members move
//!   towards a target assignment one partition at a time.
//! - Goal: no partition is ever owned by two members. Each partition is in at most one
//!   member's `assigned` set, and it leaves that set only when its owner confirms the
//!   revocation or is removed from the group.
//! - Goal: committed offsets are fenced by member epoch and by ownership.
//! - Non-goal: offset retention and expiry of empty groups; groups live until deleted.
//!
//! # Mutations and records
//! [`Coordinator::heartbeat`], [`Coordinator::expire`] and [`Coordinator::delete_group`]
//! change state at once and push records that describe the new state in full.
//! [`Coordinator::commit`] only validates and pushes offset records: committed offsets
//! change when the broker, having appended them, hands them to [`Coordinator::replay`].
//!
//! # Layout
//! - `types`: limits, requests, replies, errors and descriptions.
//! - `group`: one group's epochs, target assignment and reconciliation.
//! - `membership`: join, stay, leave and expiry.
//! - `commits`: fenced offset commits.

mod commits;
mod group;
mod membership;
#[cfg(test)]
mod tests;
mod types;

use std::collections::BTreeMap;
use std::time::Instant;

use self::group::{Group, Member};
pub use self::types::*;
use super::records::Record;

/// Every group this broker coordinates. Owns all group state; not thread-safe on its
/// own: the broker keeps it behind a mutex and calls it without awaiting in between.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
}

impl Coordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
        }
    }

    /// Applies one record: on load, in log order, and after the broker appended the
    /// records of a [`commit`](Self::commit). Members replayed for the first time get a
    /// fresh session (and revocation deadline, if one is pending) from `now`.
    pub fn replay(&mut self, record: Record, now: Instant) {
        match record {
            Record::Offset {
                group,
                tp,
                value: Some(value),
            } => {
                self.groups
                    .entry(group)
                    .or_default()
                    .offsets
                    .insert(tp, value);
            }
            Record::Offset {
                group,
                tp,
                value: None,
            } => {
                if let Some(group) = self.groups.get_mut(&group) {
                    group.offsets.remove(&tp);
                }
            }
            Record::Group {
                group,
                value: Some(value),
            } => self.groups.entry(group).or_default().value = value,
            Record::Group { group, value: None } => {
                self.groups.remove(&group);
            }
            Record::Member {
                group,
                member_id,
                value: Some(value),
            } => {
                let revocation_deadline = (!value.pending_revocation.is_empty())
                    .then(|| now + self.config.rebalance_timeout);
                let members = &mut self.groups.entry(group).or_default().members;
                if let Some(member) = members.get_mut(&member_id) {
                    // A member already running keeps its timers.
                    member.revocation_deadline =
                        revocation_deadline.and(member.revocation_deadline.or(revocation_deadline));
                    member.value = value;
                } else {
                    let member = Member {
                        value,
                        session_deadline: now + self.config.session_timeout,
                        revocation_deadline,
                        awaiting_first_heartbeat: false,
                    };
                    members.insert(member_id, member);
                }
            }
            Record::Member {
                group,
                member_id,
                value: None,
            } => {
                if let Some(group) = self.groups.get_mut(&group) {
                    group.members.remove(&member_id);
                }
            }
        }
    }

    /// Deletes a group with no members, and its committed offsets.
    ///
    /// # Errors
    /// `GroupNotFound` if the group does not exist; `GroupNotEmpty` if it has members.
    pub fn delete_group(
        &mut self,
        group_id: &str,
        records: &mut Vec<Record>,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get(group_id)
            .ok_or_else(|| GroupError::GroupNotFound {
                group_id: group_id.to_owned(),
            })?;
        if !group.members.is_empty() {
            return Err(GroupError::GroupNotEmpty {
                group_id: group_id.to_owned(),
                member_count: group.members.len(),
            });
        }
        let group = self.groups.remove(group_id).expect("found above");
        records.extend(group.offsets.into_keys().map(|tp| Record::Offset {
            group: group_id.to_owned(),
            tp,
            value: None,
        }));
        records.push(Record::Group {
            group: group_id.to_owned(),
            value: None,
        });
        Ok(())
    }

    /// Pushes a record deleting every group's committed offset on `topic`, for when the
    /// topic is deleted; like a commit, it changes nothing until the records are replayed.
    pub fn forget_topic(&self, topic: &str, records: &mut Vec<Record>) {
        for (group_id, group) in &self.groups {
            records.extend(
                group
                    .offsets
                    .keys()
                    .filter(|tp| tp.topic == topic)
                    .map(|tp| Record::Offset {
                        group: group_id.clone(),
                        tp: tp.clone(),
                        value: None,
                    }),
            );
        }
    }

    /// Forgets, in memory only, every group `unloaded` names: their records stay in the
    /// log, for the broker that coordinates them next (a coordinator that stopped leading
    /// the groups' partition of the offsets log). Returns how many groups it forgot.
    pub fn unload(&mut self, unloaded: impl Fn(&str) -> bool) -> usize {
        let before = self.groups.len();
        self.groups.retain(|group_id, _| !unloaded(group_id));
        before - self.groups.len()
    }

    /// Every topic some group has committed offsets for.
    pub fn committed_topics(&self) -> std::collections::BTreeSet<String> {
        self.groups
            .values()
            .flat_map(|group| group.offsets.keys().map(|tp| tp.topic.clone()))
            .collect()
    }

    /// Every group, sorted by group id.
    pub fn list_groups(&self) -> Vec<GroupSummary> {
        self.groups
            .iter()
            .map(|(group_id, group)| GroupSummary {
                group_id: group_id.clone(),
                state: group.state(),
                member_count: group.members.len(),
            })
            .collect()
    }

    /// A snapshot of one group, or `None` if it does not exist.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id)?;
        let members = group
            .members
            .iter()
            .map(|(member_id, member)| {
                let value = &member.value;
                MemberDescription {
                    member_id: member_id.clone(),
                    instance_id: value.instance_id.clone(),
                    client_id: value.client_id.clone(),
                    client_host: value.client_host.clone(),
                    member_epoch: value.member_epoch,
                    previous_epoch: value.previous_epoch,
                    subscribed_topics: value.subscribed_topics.iter().cloned().collect(),
                    assigned: value.assigned.clone(),
                    pending_revocation: value.pending_revocation.clone(),
                    target: value.target.clone(),
                    left_static: value.left_static,
                }
            })
            .collect();
        Some(GroupDescription {
            group_id: group_id.to_owned(),
            state: group.state(),
            group_epoch: group.value.epoch,
            assignment_epoch: group.value.assignment_epoch,
            assignor: group.value.assignor,
            partition_counts: group.value.partition_counts.clone(),
            members,
            committed: self.committed(group_id),
        })
    }

    /// A group's committed offsets and metadata; empty if the group does not exist.
    pub fn committed(&self, group_id: &str) -> BTreeMap<TopicPartition, (u64, Option<String>)> {
        self.groups
            .get(group_id)
            .map(|group| {
                group
                    .offsets
                    .iter()
                    .map(|(tp, value)| (tp.clone(), (value.offset, value.metadata.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every committed offset of every group, for lag metrics.
    pub fn all_committed(&self) -> impl Iterator<Item = (&str, &TopicPartition, u64)> + '_ {
        self.groups.iter().flat_map(|(group_id, group)| {
            group
                .offsets
                .iter()
                .map(move |(tp, value)| (group_id.as_str(), tp, value.offset))
        })
    }
}

#[cfg(test)]
mod delete_tests {
    use super::tests::*;
    use super::*;

    #[test]
    fn only_empty_groups_can_be_deleted() {
        let mut h = Harness::new(&[("t", 1)]);
        let mut records = Vec::new();
        let error = h
            .coordinator
            .delete_group(GROUP, &mut records)
            .expect_err("unknown");
        assert!(matches!(error, GroupError::GroupNotFound { .. }), "{error}");
        let a = h.join(&["t"]);
        h.commit(GROUP, &a.member_id, epoch(&a), &[(tp("t", 0), 8)])
            .expect("accepted");
        let error = h
            .coordinator
            .delete_group(GROUP, &mut records)
            .expect_err("members");
        assert!(matches!(error, GroupError::GroupNotEmpty { .. }), "{error}");
        assert!(records.is_empty());
        h.leave(&a.member_id, MemberEpoch::Leave);
        h.coordinator
            .delete_group(GROUP, &mut h.records)
            .expect("deleted");
        h.check();
        assert!(h.coordinator.describe(GROUP).is_none());
        assert!(h.coordinator.committed(GROUP).is_empty());
        assert!(h.coordinator.list_groups().is_empty());
    }

    #[test]
    fn unloading_forgets_only_the_named_groups_and_writes_nothing() {
        let mut h = Harness::new(&[("t", 1)]);
        for group in ["g1", "g2"] {
            h.admin_commit(group, &[(tp("t", 0), 3)])
                .expect("committed");
        }
        let records = h.records.len();
        assert_eq!(h.coordinator.unload(|group| group == "g1"), 1);
        assert_eq!(
            h.records.len(),
            records,
            "no record: the log keeps the group"
        );
        assert!(h.coordinator.describe("g1").is_none());
        assert_eq!(h.coordinator.committed("g2").len(), 1);
    }

    #[test]
    fn forgetting_a_topic_deletes_its_offsets_in_every_group() {
        let mut h = Harness::new(&[("t", 2), ("u", 1)]);
        for group in ["g1", "g2"] {
            h.admin_commit(group, &[(tp("t", 0), 3), (tp("t", 1), 4), (tp("u", 0), 5)])
                .expect("committed");
        }
        let mut records = Vec::new();
        h.coordinator.forget_topic("t", &mut records);
        assert_eq!(records.len(), 4, "{records:?}");
        assert_eq!(
            h.coordinator.committed("g1").len(),
            3,
            "unchanged until replayed"
        );
        for record in records {
            h.coordinator.replay(record, h.now);
        }
        for group in ["g1", "g2"] {
            let committed = h.coordinator.committed(group);
            assert_eq!(
                committed.keys().collect::<Vec<_>>(),
                [&tp("u", 0)],
                "{group}"
            );
        }
    }
}
