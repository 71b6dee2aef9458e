//! Membership: members join, stay (heartbeat and reconcile), leave, and expire.

use std::collections::BTreeSet;
use std::time::Instant;

use super::Coordinator;
use super::group::{Context, Dirty, Group, Member};
use super::types::{
    EPOCH_GROWTH_MAX, GROUP_ID_BYTES_MAX, GroupError, Heartbeat, HeartbeatReply,
    MEMBER_ID_BYTES_MAX, MemberEpoch, SUBSCRIBED_TOPIC_BYTES_MAX, SUBSCRIBED_TOPICS_MAX,
    TopicPartition, UNASSIGNED_EPOCH,
};
use crate::group::assignor::Assignor;
use crate::group::records::{MemberValue, Record};

pub(super) fn unknown_member(group_id: &str, member_id: &str) -> GroupError {
    GroupError::UnknownMember {
        group_id: group_id.to_owned(),
        member_id: member_id.to_owned(),
    }
}

pub(super) fn validate_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(GroupError::InvalidGroupId {
            length: group_id.len(),
        });
    }
    Ok(())
}

/// Checks a subscription's size and topic names.
fn validate_subscription(topics: &[String]) -> Result<(), GroupError> {
    if topics.len() > SUBSCRIBED_TOPICS_MAX {
        return Err(GroupError::TooManySubscribedTopics {
            count: topics.len(),
        });
    }
    if let Some(topic) = topics
        .iter()
        .find(|topic| topic.is_empty() || topic.len() > SUBSCRIBED_TOPIC_BYTES_MAX)
    {
        return Err(GroupError::InvalidSubscribedTopic {
            length: topic.len(),
        });
    }
    Ok(())
}

/// Checks what only a join carries, and returns its subscription as a set.
fn validate_join(request: &Heartbeat) -> Result<BTreeSet<String>, GroupError> {
    if request.member_id.len() > MEMBER_ID_BYTES_MAX {
        return Err(GroupError::MemberIdTooLong {
            length: request.member_id.len(),
        });
    }
    let Some(subscribed) = &request.subscribed_topics else {
        return Err(GroupError::SubscriptionMissing);
    };
    validate_subscription(subscribed)?;
    Ok(subscribed.iter().cloned().collect())
}

fn epoch_exhausted(group_id: &str) -> GroupError {
    GroupError::EpochExhausted {
        group_id: group_id.to_owned(),
    }
}

/// Whether `epoch` is the member's own, or the one before it from a member whose last
/// reply was lost: such a member owns no more than it did then.
fn is_current(value: &MemberValue, epoch: i32, owned: Option<&BTreeSet<TopicPartition>>) -> bool {
    epoch == value.member_epoch
        || (epoch == value.previous_epoch
            && owned.is_none_or(|owned| owned.is_subset(&value.assigned)))
}

/// How a request stays in the group.
#[derive(Debug, Clone, Copy)]
enum Stay {
    /// A heartbeat at this epoch.
    Heartbeat(i32),
    /// A join retried after its reply was lost: the member has not heartbeated yet.
    RetriedJoin,
}

/// Whether a heartbeat changes the member's subscription of a group that may no longer
/// grow its epoch.
fn resubscribes_past_limit(
    group: &Group,
    value: &MemberValue,
    subscribed: Option<&[String]>,
) -> bool {
    subscribed.is_some_and(|subscribed| {
        group.value.epoch >= EPOCH_GROWTH_MAX
            && subscribed.iter().collect::<BTreeSet<_>>()
                != value.subscribed_topics.iter().collect()
    })
}

impl Group {
    /// A member that is in the group and did not leave it for a restart.
    fn live_member(&self, member_id: &str) -> Option<&Member> {
        self.members
            .get(member_id)
            .filter(|member| !member.value.left_static)
    }

    /// Refuses a stale epoch. The member stays: a request with a wrong epoch may come
    /// from anyone who read the member id, so it must not evict the real member, whose
    /// session expires on its own if it is gone.
    fn stale_epoch(&self, member_id: &str, sent: i32) -> GroupError {
        let current = self
            .members
            .get(member_id)
            .expect("a member")
            .value
            .member_epoch;
        GroupError::FencedEpoch {
            member_id: member_id.to_owned(),
            sent,
            current,
        }
    }

    /// Adds a joining member: a successor to `predecessor`, or a new member, which
    /// moves the group epoch.
    fn enroll(
        &mut self,
        member_id: &str,
        predecessor: Option<&str>,
        request: &Heartbeat,
        subscribed: BTreeSet<String>,
        session_deadline: Instant,
        dirty: &mut Dirty,
    ) {
        let (value, revocation_deadline) = match predecessor {
            Some(predecessor) => self.succeed(predecessor, request, subscribed, dirty),
            None => {
                self.bump_epoch(dirty);
                (new_member(request, subscribed), None)
            }
        };
        let member = Member {
            value,
            session_deadline,
            revocation_deadline,
            awaiting_first_heartbeat: true,
        };
        self.members.insert(member_id.to_owned(), member);
        dirty.members.insert(member_id.to_owned());
    }

    /// Takes a static member's place for its restarted process: the successor keeps its
    /// partitions and epoch as they are, so nobody else moves. Returns the successor's
    /// state and its pending revocation deadline.
    fn succeed(
        &mut self,
        predecessor: &str,
        request: &Heartbeat,
        subscribed: BTreeSet<String>,
        dirty: &mut Dirty,
    ) -> (MemberValue, Option<Instant>) {
        let old = self
            .members
            .remove(predecessor)
            .expect("found on admission");
        dirty.members.insert(predecessor.to_owned());
        if old.value.subscribed_topics != subscribed {
            self.bump_epoch(dirty);
        }
        let value = MemberValue {
            client_id: request.client_id.clone(),
            client_host: request.client_host.clone(),
            subscribed_topics: subscribed,
            left_static: false,
            ..old.value
        };
        (value, old.revocation_deadline)
    }

    /// Updates what a heartbeat may change about a member that stays: its session, its
    /// client, and its subscription (which moves the group epoch).
    fn refresh_member(
        &mut self,
        member_id: &str,
        request: &mut Heartbeat,
        session_deadline: Instant,
        dirty: &mut Dirty,
    ) {
        let member = self.members.get_mut(member_id).expect("a member");
        member.session_deadline = session_deadline;
        let value = &mut member.value;
        if value.client_id != request.client_id || value.client_host != request.client_host {
            value.client_id = std::mem::take(&mut request.client_id);
            value.client_host = std::mem::take(&mut request.client_host);
            dirty.members.insert(member_id.to_owned());
        }
        let mut resubscribed = false;
        if let Some(subscribed) = request.subscribed_topics.take() {
            let subscribed: BTreeSet<String> = subscribed.into_iter().collect();
            if subscribed != value.subscribed_topics {
                value.subscribed_topics = subscribed;
                dirty.members.insert(member_id.to_owned());
                resubscribed = true;
            }
        }
        if resubscribed {
            self.bump_epoch(dirty);
        }
    }
}

impl Coordinator {
    /// Handles one heartbeat: join, leave, or stay and reconcile. `topics` gives a
    /// topic's partition count, or `None` if it does not exist. Pushes records for every
    /// group and member whose persisted state changed.
    ///
    /// # Errors
    /// - `InvalidGroupId`: the group id is empty or longer than [`GROUP_ID_BYTES_MAX`].
    /// - `SubscriptionMissing`, `MemberIdTooLong`: a join without a subscription or
    ///   with a member id over [`MEMBER_ID_BYTES_MAX`].
    /// - `InvalidEpoch`: a current epoch below 1.
    /// - `UnsupportedAssignor`: the assignor is not `uniform` or `range`.
    /// - `TooManySubscribedTopics`, `InvalidSubscribedTopic`: a subscription out of
    ///   bounds.
    /// - `GroupFull`: a new member would exceed `members_max`.
    /// - `EpochExhausted`: the group may no longer grow its epoch (see
    ///   [`EPOCH_GROWTH_MAX`]).
    /// - `UnknownMember`: the member is not in the group (or left it statically).
    /// - `FencedEpoch`: the epoch (or a leave's `leaving_epoch`) is stale. The member
    ///   stays in the group: whoever sent it may not be the member.
    ///
    /// # Panics
    /// When joining, if `new_member_id` is empty or already a member of the group: the
    /// broker must mint a unique id for every join.
    pub fn heartbeat(
        &mut self,
        request: Heartbeat,
        topics: &dyn Fn(&str) -> Option<u32>,
        now: Instant,
        records: &mut Vec<Record>,
    ) -> Result<HeartbeatReply, GroupError> {
        validate_group_id(&request.group_id)?;
        let assignor = request
            .assignor
            .as_deref()
            .map(str::parse::<Assignor>)
            .transpose()?;
        let context = Context {
            topics,
            session_deadline: now + self.config.session_timeout,
            revocation_deadline: now + self.config.rebalance_timeout,
            heartbeat_interval_ms: self.heartbeat_interval_ms(),
        };
        match request.member_epoch {
            MemberEpoch::Join => self.join(request, assignor, &context, records),
            MemberEpoch::Leave | MemberEpoch::StaticLeave => {
                self.leave(&request, &context, records)
            }
            MemberEpoch::Current(epoch) if epoch < 1 => Err(GroupError::InvalidEpoch { epoch }),
            MemberEpoch::Current(epoch) => {
                self.stay(request, Stay::Heartbeat(epoch), assignor, &context, records)
            }
        }
    }

    fn heartbeat_interval_ms(&self) -> u32 {
        u32::try_from(self.config.heartbeat_interval.as_millis()).unwrap_or(u32::MAX)
    }

    fn join(
        &mut self,
        request: Heartbeat,
        assignor: Option<Assignor>,
        context: &Context<'_>,
        records: &mut Vec<Record>,
    ) -> Result<HeartbeatReply, GroupError> {
        let subscribed = validate_join(&request)?;
        if let Some(member_epoch) = self.retried_join(&request) {
            // The same join again: its reply was lost. Carry on as that member, which owns
            // nothing yet, rather than adding a second one.
            let retry = Heartbeat {
                member_epoch: MemberEpoch::Current(member_epoch),
                owned: Some(request.owned.clone().unwrap_or_default()),
                ..request
            };
            return self.stay(retry, Stay::RetriedJoin, assignor, context, records);
        }
        let (member_id, predecessor) = self.admit(&request)?;
        let mut dirty = Dirty::default();
        let group = self.group_to_join(&request.group_id, &mut dirty);
        group.set_assignor(assignor, &mut dirty);
        group.enroll(
            &member_id,
            predecessor.as_deref(),
            &request,
            subscribed,
            context.session_deadline,
            &mut dirty,
        );
        Ok(group.reconcile_and_reply(
            &request.group_id,
            &member_id,
            request.owned.as_ref(),
            context,
            dirty,
            records,
        ))
    }

    /// The group a member joins, created if it does not exist yet.
    fn group_to_join(&mut self, group_id: &str, dirty: &mut Dirty) -> &mut Group {
        self.groups.entry(group_id.to_owned()).or_insert_with(|| {
            dirty.group = true;
            Group::default()
        })
    }

    /// The epoch of the live member a join names, if the join is a retry whose reply was
    /// lost: the member has not heartbeated since it joined (a member that did has its
    /// reply) and the join comes from the same client id. Any other join naming a member
    /// is refused by [`admit`](Self::admit), so that a bystander who read the member id
    /// cannot take the member's place.
    fn retried_join(&self, request: &Heartbeat) -> Option<i32> {
        self.groups
            .get(&request.group_id)?
            .live_member(&request.member_id)
            .filter(|member| {
                member.awaiting_first_heartbeat && member.value.client_id == request.client_id
            })
            .map(|member| member.value.member_epoch)
    }

    /// Decides whether a joining member may enter. Returns its member id and, when a
    /// static member's process restarted, the id of the member it replaces.
    fn admit(&self, request: &Heartbeat) -> Result<(String, Option<String>), GroupError> {
        let group_id = &request.group_id;
        let existing = self.groups.get(group_id);
        let predecessor = existing
            .zip(request.instance_id.as_deref())
            .and_then(|(group, instance_id)| group.member_with_instance(instance_id))
            .map(str::to_owned);
        let member_count = existing.map_or(0, |group| group.members.len());
        if predecessor.is_none() && member_count >= self.config.members_max {
            return Err(GroupError::GroupFull {
                group_id: group_id.clone(),
                member_count,
            });
        }
        let member_id = if request.member_id.is_empty() {
            request.new_member_id.clone()
        } else {
            request.member_id.clone()
        };
        if member_id.is_empty()
            || existing.is_some_and(|group| {
                group.members.contains_key(&member_id)
                    && predecessor.as_deref() != Some(member_id.as_str())
            })
        {
            // A live member's id here is not a retry (see `retried_join`), and a member
            // that left statically keeps its id for its own successor: not reusable.
            return Err(unknown_member(group_id, &member_id));
        }
        if predecessor.is_none()
            && existing.is_some_and(|group| group.value.epoch >= EPOCH_GROWTH_MAX)
        {
            return Err(epoch_exhausted(group_id));
        }
        Ok((member_id, predecessor))
    }

    fn leave(
        &mut self,
        request: &Heartbeat,
        context: &Context<'_>,
        records: &mut Vec<Record>,
    ) -> Result<HeartbeatReply, GroupError> {
        let unknown = || unknown_member(&request.group_id, &request.member_id);
        let group = self.groups.get_mut(&request.group_id).ok_or_else(unknown)?;
        let member = group
            .members
            .get_mut(&request.member_id)
            .ok_or_else(unknown)?;
        // Epoch 0 is every member's epoch before its first assignment, so never proof.
        if request.leaving_epoch < 1 || !is_current(&member.value, request.leaving_epoch, None) {
            return Err(group.stale_epoch(&request.member_id, request.leaving_epoch));
        }
        let mut dirty = Dirty::default();
        let member_epoch = if request.member_epoch == MemberEpoch::StaticLeave
            && member.value.instance_id.is_some()
        {
            // Keep the partitions for one session, for the restarted process to reclaim.
            member.session_deadline = context.session_deadline;
            if !member.value.left_static {
                member.value.left_static = true;
                dirty.members.insert(request.member_id.clone());
            }
            MemberEpoch::StaticLeave
        } else {
            group.remove_member(&request.member_id, &mut dirty);
            MemberEpoch::Leave
        };
        group.flush(&request.group_id, dirty, records);
        Ok(HeartbeatReply {
            member_id: request.member_id.clone(),
            member_epoch,
            heartbeat_interval_ms: context.heartbeat_interval_ms,
            assignment: BTreeSet::new(),
        })
    }

    /// A heartbeat from a member that is in the group.
    fn stay(
        &mut self,
        mut request: Heartbeat,
        stay: Stay,
        assignor: Option<Assignor>,
        context: &Context<'_>,
        records: &mut Vec<Record>,
    ) -> Result<HeartbeatReply, GroupError> {
        if let Some(subscribed) = &request.subscribed_topics {
            validate_subscription(subscribed)?;
        }
        let group_id = request.group_id.clone();
        let member_id = request.member_id.clone();
        let group = self
            .groups
            .get_mut(&group_id)
            .ok_or_else(|| unknown_member(&group_id, &member_id))?;
        let member = group
            .live_member(&member_id)
            .ok_or_else(|| unknown_member(&group_id, &member_id))?;
        if let Stay::Heartbeat(epoch) = stay
            && !is_current(&member.value, epoch, request.owned.as_ref())
        {
            return Err(group.stale_epoch(&member_id, epoch));
        }
        if resubscribes_past_limit(group, &member.value, request.subscribed_topics.as_deref()) {
            return Err(epoch_exhausted(&group_id));
        }
        let mut dirty = Dirty::default();
        if let Stay::Heartbeat(_) = stay {
            group
                .members
                .get_mut(&member_id)
                .expect("a member")
                .awaiting_first_heartbeat = false;
        }
        group.refresh_member(
            &member_id,
            &mut request,
            context.session_deadline,
            &mut dirty,
        );
        group.set_assignor(assignor, &mut dirty);
        Ok(group.reconcile_and_reply(
            &group_id,
            &member_id,
            request.owned.as_ref(),
            context,
            dirty,
            records,
        ))
    }

    /// Removes members whose session timed out or who did not confirm a revocation
    /// within the rebalance timeout, releasing their partitions.
    pub fn expire(&mut self, now: Instant, records: &mut Vec<Record>) {
        for (group_id, group) in &mut self.groups {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, member)| member.is_expired(now))
                .map(|(member_id, _)| member_id.clone())
                .collect();
            if expired.is_empty() {
                continue;
            }
            let mut dirty = Dirty::default();
            for member_id in &expired {
                group.remove_member(member_id, &mut dirty);
            }
            group.flush(group_id, dirty, records);
        }
    }

    /// The earliest time [`expire`](Self::expire) has work to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.groups
            .values()
            .flat_map(|group| group.members.values())
            .flat_map(|member| [Some(member.session_deadline), member.revocation_deadline])
            .flatten()
            .min()
    }
}

/// A member that joins for the first time: no epoch, nothing owned, nothing targeted yet.
fn new_member(request: &Heartbeat, subscribed: BTreeSet<String>) -> MemberValue {
    MemberValue {
        instance_id: request.instance_id.clone(),
        client_id: request.client_id.clone(),
        client_host: request.client_host.clone(),
        subscribed_topics: subscribed,
        member_epoch: UNASSIGNED_EPOCH,
        previous_epoch: UNASSIGNED_EPOCH,
        assigned: BTreeSet::new(),
        pending_revocation: BTreeSet::new(),
        target: BTreeSet::new(),
        left_static: false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::super::tests::*;
    use super::super::*;
    use crate::group::records::GroupValue;

    #[test]
    fn a_retried_join_with_a_client_chosen_id_continues_as_the_same_member() {
        let mut h = Harness::new(&[("t", 4)]);
        let join = |h: &mut Harness| {
            let mut request = h.request("client-chosen-1", MemberEpoch::Join);
            request.subscribed_topics = Some(vec!["t".to_owned()]);
            h.send(request).expect("joins")
        };
        let first = join(&mut h);
        assert_eq!(first.member_id, "client-chosen-1");
        assert_eq!(first.assignment.len(), 4);
        // The reply was lost; the client sends the same join again.
        let again = join(&mut h);
        assert_eq!(again.member_id, "client-chosen-1");
        assert_eq!(again.member_epoch, first.member_epoch);
        assert_eq!(again.assignment, first.assignment);
        let group = h.describe();
        assert_eq!(group.members.len(), 1, "no second member");
        assert_eq!(group.group_epoch, 1, "no rebalance");

        let mut long = h.request(&"m".repeat(MEMBER_ID_BYTES_MAX + 1), MemberEpoch::Join);
        long.subscribed_topics = Some(vec!["t".to_owned()]);
        assert_refused!(h.send(long), GroupError::MemberIdTooLong { .. });
    }

    #[test]
    fn a_join_reusing_a_statically_left_members_id_is_refused_not_a_panic() {
        let mut h = Harness::new(&[("t", 2)]);
        let mut join = h.request("static-1", MemberEpoch::Join);
        join.instance_id = Some("i1".to_owned());
        join.subscribed_topics = Some(vec!["t".to_owned()]);
        let first = h.send(join).expect("joins");
        h.leave(&first.member_id, MemberEpoch::StaticLeave);
        let mut impostor = h.request("static-1", MemberEpoch::Join);
        impostor.subscribed_topics = Some(vec!["t".to_owned()]);
        assert_refused!(h.send(impostor), GroupError::UnknownMember { .. });
        assert_eq!(
            h.describe().members.len(),
            1,
            "the static member keeps its place"
        );
    }

    #[test]
    fn subscriptions_are_bounded() {
        let mut h = Harness::new(&[("t", 2)]);
        let too_many: Vec<&str> = vec!["t"; SUBSCRIBED_TOPICS_MAX + 1];
        assert_refused!(
            h.join_with(None, &too_many),
            GroupError::TooManySubscribedTopics { .. }
        );
        let long = "x".repeat(SUBSCRIBED_TOPIC_BYTES_MAX + 1);
        assert_refused!(
            h.join_with(None, &[long.as_str()]),
            GroupError::InvalidSubscribedTopic { .. }
        );
        let member = h.join(&["t"]);
        let mut resubscribe = h.request(&member.member_id, member.member_epoch);
        resubscribe.subscribed_topics = Some(vec![String::new()]);
        assert_refused!(
            h.send(resubscribe),
            GroupError::InvalidSubscribedTopic { .. }
        );
    }

    #[test]
    fn a_group_near_epoch_overflow_refuses_growth_but_still_lets_members_go() {
        let mut h = Harness::new(&[("t", 2)]);
        let member = h.join(&["t"]);
        let record = Record::Group {
            group: GROUP.to_owned(),
            value: Some(GroupValue {
                epoch: EPOCH_GROWTH_MAX,
                assignment_epoch: EPOCH_GROWTH_MAX,
                ..GroupValue::default()
            }),
        };
        h.records.push(record.clone());
        h.coordinator.replay(record, h.now);
        assert_refused!(h.join_with(None, &["t"]), GroupError::EpochExhausted { .. });
        let mut resubscribe = h.request(&member.member_id, member.member_epoch);
        resubscribe.subscribed_topics = Some(vec!["t".to_owned(), "u".to_owned()]);
        assert_refused!(h.send(resubscribe), GroupError::EpochExhausted { .. });
        h.leave(&member.member_id, MemberEpoch::Leave);
        assert!(h.describe().members.is_empty());
    }

    #[test]
    fn bad_requests_change_nothing() {
        let mut h = Harness::new(&[("t", 1)]);
        let mut request = h.request("", MemberEpoch::Join);
        request.subscribed_topics = Some(vec!["t".into()]);
        request.group_id = String::new();
        assert_refused!(h.send(request.clone()), GroupError::InvalidGroupId { .. });
        request.group_id = "x".repeat(GROUP_ID_BYTES_MAX + 1);
        assert_refused!(h.send(request.clone()), GroupError::InvalidGroupId { .. });
        request.group_id = GROUP.into();
        request.assignor = Some("sticky".into());
        assert_refused!(h.send(request.clone()), GroupError::UnsupportedAssignor(_));
        request.assignor = None;
        request.subscribed_topics = None;
        assert_refused!(h.send(request.clone()), GroupError::SubscriptionMissing);
        let request = h.request("nobody", MemberEpoch::Current(-5));
        assert_refused!(h.send(request), GroupError::InvalidEpoch { epoch: -5 });
        let request = h.request("nobody", MemberEpoch::Current(3));
        assert_refused!(h.send(request), GroupError::UnknownMember { .. });
        let request = h.request("nobody", MemberEpoch::Leave);
        assert_refused!(h.send(request), GroupError::UnknownMember { .. });
        assert!(h.records.is_empty());
        assert!(h.coordinator.list_groups().is_empty());
        for _ in 0..MEMBERS_MAX {
            h.join(&["t"]);
        }
        let error = h.join_with(None, &["t"]).unwrap_err();
        assert!(matches!(error, GroupError::GroupFull { .. }), "{error}");
    }

    #[test]
    fn leave_moves_only_the_leavers_partitions() {
        let mut h = Harness::new(&[("t", 12)]);
        let replies: Vec<_> = (0..3).map(|_| h.join(&["t"])).collect();
        let mut replies = h.settle(replies);
        let before = h.describe();
        let leaver = replies.remove(1);
        let left = h.leave(&leaver.member_id, MemberEpoch::Leave);
        assert_eq!(left.member_epoch, MemberEpoch::Leave);
        assert!(left.assignment.is_empty());
        h.settle(replies);
        let after = h.describe();
        assert_stable(&after);
        assert_eq!(loads(&after), [6, 6]);
        for partition in 0..12 {
            let tp = tp("t", partition);
            if before.owner(&tp) != Some(leaver.member_id.as_str()) {
                assert_eq!(before.owner(&tp), after.owner(&tp), "{tp} moved");
            }
        }
    }

    #[test]
    fn session_expiry_hands_partitions_over() {
        let mut h = Harness::new(&[("t", 4)]);
        let a = h.join(&["t"]);
        let b = h.join(&["t"]);
        let replies = h.settle(vec![a, b]);
        let (a, b) = (&replies[0], &replies[1]);
        h.advance(SESSION / 2);
        let b = h.ack(b);
        h.advance(SESSION / 2);
        assert!(
            h.describe()
                .members
                .iter()
                .all(|m| m.member_id != a.member_id)
        );
        let mut request = h.request(&a.member_id, a.member_epoch);
        request.owned = Some(a.assignment.clone());
        let error = h.send(request).expect_err("a expired");
        assert!(matches!(error, GroupError::UnknownMember { .. }), "{error}");
        let b = h.settle(vec![b]).remove(0);
        assert_eq!(b.assignment.len(), 4);
        assert_stable(&h.describe());
    }

    #[test]
    fn unconfirmed_revocation_times_out() {
        let mut h = Harness::new(&[("t", 4)]);
        let a = h.join(&["t"]);
        let b = h.join(&["t"]);
        let a = h.ack(&a);
        assert_eq!(h.member(&a.member_id).pending_revocation.len(), 2);
        let mut b = b;
        // Both keep their sessions alive, but a never confirms.
        for _ in 0..(REBALANCE.as_secs() + 1) {
            h.advance(Duration::from_secs(1));
            if h.describe().members.len() == 2 {
                let request = h.request(&a.member_id, a.member_epoch);
                h.send(request).expect("accepted");
            }
            b = h.ack(&b);
        }
        assert_eq!(h.describe().members.len(), 1);
        let b = h.settle(vec![b]).remove(0);
        assert_eq!(b.assignment.len(), 4);
    }

    #[test]
    fn static_member_restart_keeps_its_partitions_and_moves_nobody() {
        let mut h = Harness::new(&[("t", 6)]);
        let a = h.join_with(Some("instance-a"), &["t"]).expect("joins");
        let b = h.join(&["t"]);
        let replies = h.settle(vec![a, b]);
        let (a, b) = (replies[0].clone(), replies[1].clone());
        let before = h.describe();
        let left = h.leave(&a.member_id, MemberEpoch::StaticLeave);
        assert_eq!(left.member_epoch, MemberEpoch::StaticLeave);
        assert!(h.member(&a.member_id).left_static);
        // b keeps what it has and does not get a's partitions while a restarts.
        let b = h.settle(vec![b]).remove(0);
        assert_eq!(b.assignment, before.members[1].assigned);
        let request = h.request(&a.member_id, a.member_epoch);
        let error = h.send(request).expect_err("left");
        assert!(matches!(error, GroupError::UnknownMember { .. }), "{error}");

        let restarted = h.join_with(Some("instance-a"), &["t"]).expect("rejoins");
        assert_ne!(restarted.member_id, a.member_id);
        assert_eq!(restarted.member_epoch, a.member_epoch);
        assert_eq!(restarted.assignment, a.assignment);
        let after = h.describe();
        assert_eq!(after.group_epoch, before.group_epoch, "no rebalance");
        assert!(after.members.iter().all(|m| m.member_id != a.member_id));
        let request = h.request(&a.member_id, a.member_epoch);
        let error = h.send(request).expect_err("replaced");
        assert!(matches!(error, GroupError::UnknownMember { .. }), "{error}");
        h.settle(vec![restarted, b]);
        assert_stable(&h.describe());
    }

    #[test]
    fn static_member_that_does_not_return_is_removed_after_its_session() {
        let mut h = Harness::new(&[("t", 2)]);
        let a = h.join_with(Some("i"), &["t"]).expect("joins");
        let b = h.join(&["t"]);
        let replies = h.settle(vec![a, b]);
        h.leave(&replies[0].member_id, MemberEpoch::StaticLeave);
        let mut b = replies[1].clone();
        for _ in 0..SESSION.as_secs() {
            h.advance(Duration::from_secs(1));
            b = h.ack(&b);
        }
        let b = h.settle(vec![b]).remove(0);
        assert_eq!(b.assignment.len(), 2);
    }

    #[test]
    fn stale_epochs_are_fenced_and_lost_responses_tolerated() {
        let mut h = Harness::new(&[("t", 4)]);
        let a = h.join(&["t"]);
        let a = h.ack(&a);
        h.topics.insert("t".into(), 6);
        // The reply that moves a to the next epoch is lost; a retries from the old one.
        let lost = h.ack(&a);
        assert_eq!(epoch(&lost), epoch(&a) + 1);
        assert_eq!(lost.assignment.len(), 6);
        let retried = h.ack(&a);
        assert_eq!(retried, lost, "the previous epoch is accepted");
        // The previous epoch with partitions the member never had is not a lost reply.
        let mut request = h.request(&a.member_id, a.member_epoch);
        request.owned = Some(BTreeSet::from([tp("t", 0), tp("t", 40)]));
        let error = h.send(request).expect_err("fenced");
        assert!(matches!(error, GroupError::FencedEpoch { .. }), "{error}");
        let mut zombie = h.request(&a.member_id, MemberEpoch::Current(epoch(&lost) + 7));
        zombie.owned = Some(lost.assignment.clone());
        let error = h.send(zombie).expect_err("fenced");
        assert!(matches!(error, GroupError::FencedEpoch { .. }), "{error}");
        assert_eq!(
            h.ack(&lost),
            lost,
            "a wrong epoch does not evict the member"
        );
    }

    #[test]
    fn a_bystander_who_knows_the_member_id_cannot_leave_or_rejoin_as_the_member() {
        let mut h = Harness::new(&[("t", 4)]);
        let a = h.join(&["t"]);
        let a = h.ack(&a);
        for leave in [MemberEpoch::Leave, MemberEpoch::StaticLeave] {
            for leaving_epoch in [UNASSIGNED_EPOCH, epoch(&a) + 1] {
                let mut request = h.request(&a.member_id, leave);
                request.leaving_epoch = leaving_epoch;
                assert_refused!(h.send(request), GroupError::FencedEpoch { .. });
            }
        }
        let mut rejoin = h.request(&a.member_id, MemberEpoch::Join);
        rejoin.subscribed_topics = Some(vec!["t".to_owned()]);
        assert_refused!(h.send(rejoin), GroupError::UnknownMember { .. });
        assert_eq!(h.ack(&a), a, "the member keeps its place and partitions");
        assert_eq!(h.describe().members.len(), 1);
    }

    #[test]
    fn a_join_from_another_client_id_is_not_a_retry() {
        let mut h = Harness::new(&[("t", 4)]);
        let mut join = h.request("client-chosen-1", MemberEpoch::Join);
        join.subscribed_topics = Some(vec!["t".to_owned()]);
        let first = h.send(join.clone()).expect("joins");
        join.client_id = "bystander".to_owned();
        assert_refused!(h.send(join), GroupError::UnknownMember { .. });
        assert_eq!(h.ack(&first).assignment, first.assignment);
    }
}
