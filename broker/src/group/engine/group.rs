//! One group: its epochs, its target assignment, and how each member moves towards its
//! target without a partition ever having two owners.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::types::{GroupState, HeartbeatReply, MemberEpoch, TopicPartition};
use crate::group::assignor::{Assignment, Assignor, Subscriptions};
use crate::group::records::{GroupValue, MemberValue, OffsetValue, Record};

/// One group's state: what records persist, plus each member's timers.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub(super) value: GroupValue,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) offsets: BTreeMap<TopicPartition, OffsetValue>,
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) value: MemberValue,
    /// Not persisted: restarts from the replay time after a reload.
    pub(super) session_deadline: Instant,
    /// Set while a revocation is pending. Not persisted.
    pub(super) revocation_deadline: Option<Instant>,
    /// Set from a join until the member's first heartbeat at its epoch: only then may a
    /// join naming this member be a retry whose reply was lost. Not persisted: after a
    /// reload no join is taken as a retry.
    pub(super) awaiting_first_heartbeat: bool,
}

impl Member {
    pub(super) fn is_expired(&self, now: Instant) -> bool {
        self.session_deadline <= now || self.revocation_deadline.is_some_and(|at| at <= now)
    }
}

/// What every step of one heartbeat needs besides the request.
pub(super) struct Context<'a> {
    /// A topic's partition count, or `None` if it does not exist.
    pub(super) topics: &'a dyn Fn(&str) -> Option<u32>,
    pub(super) session_deadline: Instant,
    pub(super) revocation_deadline: Instant,
    pub(super) heartbeat_interval_ms: u32,
}

/// What one mutation changed, so records are written for exactly that.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    pub(super) group: bool,
    /// The group epoch moves at most once per mutation, however many things changed.
    epoch_bumped: bool,
    pub(super) members: BTreeSet<String>,
}

impl Group {
    pub(super) fn bump_epoch(&mut self, dirty: &mut Dirty) {
        if dirty.epoch_bumped {
            return;
        }
        dirty.epoch_bumped = true;
        // Joins and resubscriptions stop at EPOCH_GROWTH_MAX, leaving room for every
        // removal; saturating only matters past that.
        self.value.epoch = self.value.epoch.saturating_add(1);
        dirty.group = true;
    }

    /// Switches the group to `assignor`, if one was asked for and differs.
    pub(super) fn set_assignor(&mut self, assignor: Option<Assignor>, dirty: &mut Dirty) {
        if let Some(assignor) = assignor
            && assignor != self.value.assignor
        {
            self.value.assignor = assignor;
            self.bump_epoch(dirty);
        }
    }

    /// Removes a member and releases its partitions.
    pub(super) fn remove_member(&mut self, member_id: &str, dirty: &mut Dirty) {
        if self.members.remove(member_id).is_some() {
            dirty.members.insert(member_id.to_owned());
            self.bump_epoch(dirty);
        }
    }

    pub(super) fn member_with_instance(&self, instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, member)| member.value.instance_id.as_deref() == Some(instance_id))
            .map(|(member_id, _)| member_id.as_str())
    }

    /// The last steps of every heartbeat that keeps a member in the group: bring the
    /// target up to date, move the member towards it, record what changed, and tell the
    /// member what it may own now.
    pub(super) fn reconcile_and_reply(
        &mut self,
        group_id: &str,
        member_id: &str,
        owned: Option<&BTreeSet<TopicPartition>>,
        context: &Context<'_>,
        mut dirty: Dirty,
        records: &mut Vec<Record>,
    ) -> HeartbeatReply {
        self.refresh_assignment(context.topics, &mut dirty);
        self.reconcile(member_id, owned, context.revocation_deadline, &mut dirty);
        self.flush(group_id, dirty, records);
        self.reply(member_id, context.heartbeat_interval_ms)
    }

    /// Refreshes partition counts of the subscribed topics, and recomputes every target
    /// when the group epoch moved past the assignment epoch.
    fn refresh_assignment(&mut self, topics: &dyn Fn(&str) -> Option<u32>, dirty: &mut Dirty) {
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|member| &member.value.subscribed_topics)
            .collect();
        let counts: BTreeMap<String, u32> = subscribed
            .into_iter()
            .filter_map(|topic| Some((topic.clone(), topics(topic)?)))
            .collect();
        if counts != self.value.partition_counts {
            self.value.partition_counts = counts;
            self.bump_epoch(dirty);
        }
        if self.value.epoch <= self.value.assignment_epoch {
            return;
        }
        let subscriptions: Subscriptions = self
            .members
            .iter()
            .map(|(id, member)| (id.clone(), member.value.subscribed_topics.clone()))
            .collect();
        let previous: Assignment = self
            .members
            .iter()
            .map(|(id, member)| (id.clone(), member.value.target.clone()))
            .collect();
        let mut targets =
            self.value
                .assignor
                .assign(&subscriptions, &self.value.partition_counts, &previous);
        for (id, member) in &mut self.members {
            let target = targets.remove(id).unwrap_or_default();
            if member.value.target != target {
                member.value.target = target;
                dirty.members.insert(id.clone());
            }
        }
        self.value.assignment_epoch = self.value.epoch;
        dirty.group = true;
    }

    /// Moves one member towards its target: releases confirmed revocations, asks for
    /// new ones, or grants target partitions that no other member owns.
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&BTreeSet<TopicPartition>>,
        revocation_deadline: Instant,
        dirty: &mut Dirty,
    ) {
        let assignment_epoch = self.value.assignment_epoch;
        let grantable: Vec<TopicPartition> = {
            let value = &self.members.get(member_id).expect("a member").value;
            value
                .target
                .difference(&value.assigned)
                .filter(|tp| self.owner(tp).is_none())
                .cloned()
                .collect()
        };
        let member = self.members.get_mut(member_id).expect("a member");
        let value = &mut member.value;
        let confirmed = owned.is_some_and(|owned| owned.is_disjoint(&value.pending_revocation));
        if !value.pending_revocation.is_empty() && confirmed {
            for tp in std::mem::take(&mut value.pending_revocation) {
                value.assigned.remove(&tp);
            }
            member.revocation_deadline = None;
            dirty.members.insert(member_id.to_owned());
        }
        if !value.pending_revocation.is_empty() {
            return;
        }
        let revoke: BTreeSet<TopicPartition> =
            value.assigned.difference(&value.target).cloned().collect();
        if !revoke.is_empty() {
            // Grant nothing while the member still owns partitions its target dropped:
            // its epoch reaches the assignment epoch only once it holds nothing that the
            // target gives to another member.
            value.pending_revocation = revoke;
            member.revocation_deadline = Some(revocation_deadline);
            dirty.members.insert(member_id.to_owned());
            return;
        }
        if !grantable.is_empty() || value.member_epoch != assignment_epoch {
            value.assigned.extend(grantable);
            if value.member_epoch != assignment_epoch {
                value.previous_epoch = value.member_epoch;
                value.member_epoch = assignment_epoch;
            }
            dirty.members.insert(member_id.to_owned());
        }
    }

    /// The member whose `assigned` holds `tp`.
    fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, member)| member.value.assigned.contains(tp))
            .map(|(member_id, _)| member_id.as_str())
    }

    /// Whether no partition is in two members' `assigned` sets.
    pub(super) fn owners_are_unique(&self) -> bool {
        let mut seen = BTreeSet::new();
        self.members
            .values()
            .flat_map(|member| &member.value.assigned)
            .all(|tp| seen.insert(tp))
    }

    pub(super) fn state(&self) -> GroupState {
        if self.members.is_empty() {
            return GroupState::Empty;
        }
        let settled = self.value.epoch == self.value.assignment_epoch
            && self.members.values().all(|member| {
                member.value.member_epoch == self.value.assignment_epoch
                    && member.value.pending_revocation.is_empty()
                    && member.value.assigned == member.value.target
            });
        if settled {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    fn reply(&self, member_id: &str, heartbeat_interval_ms: u32) -> HeartbeatReply {
        let value = &self.members.get(member_id).expect("a member").value;
        HeartbeatReply {
            member_id: member_id.to_owned(),
            member_epoch: MemberEpoch::Current(value.member_epoch),
            heartbeat_interval_ms,
            assignment: value
                .assigned
                .difference(&value.pending_revocation)
                .cloned()
                .collect(),
        }
    }

    /// Pushes a record for everything `dirty` names, in its state now.
    pub(super) fn flush(&self, group_id: &str, dirty: Dirty, records: &mut Vec<Record>) {
        // Sorting every owned partition on each heartbeat is too slow for release builds
        // of large groups; `reconcile` grants only unowned partitions, and tests check this.
        debug_assert!(
            self.owners_are_unique(),
            "group {group_id:?}: a partition is owned by two members"
        );
        if dirty.group {
            records.push(Record::Group {
                group: group_id.to_owned(),
                value: Some(self.value.clone()),
            });
        }
        for member_id in dirty.members {
            let value = self
                .members
                .get(&member_id)
                .map(|member| member.value.clone());
            records.push(Record::Member {
                group: group_id.to_owned(),
                member_id,
                value,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::super::*;
    use crate::group::assignor::Assignor;

    #[test]
    fn first_member_gets_everything_and_second_join_splits_evenly() {
        let mut h = Harness::new(&[("t", 6)]);
        let a = h.join(&["t"]);
        assert_eq!(a.member_epoch, MemberEpoch::Current(1));
        assert_eq!(a.assignment.len(), 6);
        assert_eq!(a.heartbeat_interval_ms, 1_000);
        let b = h.join(&["t"]);
        assert!(b.assignment.is_empty(), "a still owns everything");
        let replies = h.settle(vec![a, b]);
        assert_eq!(replies[0].assignment.len(), 3);
        assert_eq!(replies[1].assignment.len(), 3);
        let group = h.describe();
        assert_stable(&group);
        assert_eq!(loads(&group), [3, 3]);
        assert_eq!(group.group_epoch, 2, "one epoch per join");
    }

    #[test]
    fn join_moves_only_the_partitions_the_newcomer_needs() {
        let mut h = Harness::new(&[("t", 12)]);
        let replies: Vec<_> = (0..3).map(|_| h.join(&["t"])).collect();
        let mut replies = h.settle(replies);
        let before = h.describe();
        assert_eq!(loads(&before), [4, 4, 4]);
        replies.push(h.join(&["t"]));
        h.settle(replies);
        let after = h.describe();
        assert_stable(&after);
        assert_eq!(loads(&after), [3, 3, 3, 3]);
        let moved = (0..12)
            .filter(|partition| {
                let tp = tp("t", *partition);
                before.owner(&tp) != after.owner(&tp)
            })
            .count();
        assert_eq!(moved, 3);
    }

    #[test]
    fn revoked_partitions_reach_the_new_owner_only_after_confirmation() {
        let mut h = Harness::new(&[("t", 4)]);
        let a = h.join(&["t"]);
        let b = h.join(&["t"]);
        // a is told to give up two partitions, keeps owning them until it confirms.
        let a = h.ack(&a);
        assert_eq!(a.assignment.len(), 2);
        let pending = h.member(&a.member_id).pending_revocation;
        assert_eq!(pending.len(), 2);
        let b = h.ack(&b);
        assert!(b.assignment.is_empty(), "b must wait for a");
        // Neither silence nor a stale list that still holds them confirms anything.
        let request = h.request(&a.member_id, a.member_epoch);
        h.send(request).expect("accepted");
        let mut request = h.request(&a.member_id, a.member_epoch);
        request.owned = Some(a.assignment.union(&pending).cloned().collect());
        h.send(request).expect("accepted");
        assert!(h.ack(&b).assignment.is_empty());
        assert_eq!(h.member(&a.member_id).pending_revocation, pending);
        // a confirms: the partitions leave a, and b gets them on its next heartbeat.
        let a = h.ack(&a);
        assert_eq!(a.assignment.len(), 2);
        assert!(h.member(&a.member_id).pending_revocation.is_empty());
        let b = h.ack(&b);
        assert_eq!(b.assignment, pending);
        assert_stable(&h.describe());
    }

    #[test]
    fn subscription_assignor_and_partition_changes_bump_the_epoch() {
        let mut h = Harness::new(&[("t", 2), ("u", 2)]);
        let a = h.join(&["t"]);
        assert_eq!(h.describe().group_epoch, 1);
        let mut request = h.request(&a.member_id, a.member_epoch);
        request.subscribed_topics = Some(vec!["t".into(), "u".into()]);
        let a = h.send(request).expect("accepted");
        assert_eq!(h.describe().group_epoch, 2);
        assert_eq!(a.assignment.len(), 4);
        h.topics.insert("u".into(), 3);
        let a = h.ack(&a);
        assert_eq!(h.describe().group_epoch, 3);
        assert_eq!(a.assignment.len(), 5);
        let mut request = h.request(&a.member_id, a.member_epoch);
        request.assignor = Some("range".into());
        let a = h.send(request).expect("accepted");
        let group = h.describe();
        assert_eq!((group.group_epoch, group.assignor), (4, Assignor::Range));
        assert_eq!(a.member_epoch, MemberEpoch::Current(4));
        assert_stable(&group);
    }
}
