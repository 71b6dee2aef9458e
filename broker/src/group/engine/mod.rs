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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::messages::groups::{
    ADMIN_COMMIT_EPOCH, JOIN_EPOCH, LEAVE_EPOCH, STATIC_LEAVE_EPOCH,
};

use super::assignor::{Assignment, Assignor, Subscriptions};
pub use super::records::TopicPartition;
use super::records::{GroupValue, MemberValue, OffsetValue, Record};

/// Longest group id, in bytes.
pub const GROUP_ID_BYTES_MAX: usize = 255;
/// Longest member id a joining client may choose, in bytes.
pub const MEMBER_ID_BYTES_MAX: usize = 255;
/// Topics one member may subscribe to.
pub const SUBSCRIBED_TOPICS_MAX: usize = 1_000;
/// Longest subscribed topic name, in bytes (the longest valid topic name).
pub const SUBSCRIBED_TOPIC_BYTES_MAX: usize = 249;
/// A group whose epoch reached this refuses joins and subscription changes (leaves and
/// expiry still work), so the epoch can never overflow; delete the group once it is
/// empty to start over. At one join per millisecond this is about 24 days of churn.
pub const EPOCH_GROWTH_MAX: i32 = i32::MAX - 1_000_000;
/// Longest metadata string committed with an offset, in bytes (Kafka's default
/// `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

/// Timeouts and limits that apply to every group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// A member that sends no heartbeat for this long is removed, and a static member
    /// that left keeps its partitions this long.
    pub session_timeout: Duration,
    /// How often members heartbeat; returned in every heartbeat response.
    pub heartbeat_interval: Duration,
    /// How long a member may take to confirm a revocation before it is removed.
    pub rebalance_timeout: Duration,
    /// Members of one group.
    pub members_max: usize,
}

/// Why a group request failed: the wire code and a message with details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct GroupError {
    /// The code for the response.
    pub code: ErrorCode,
    /// What exactly went wrong.
    pub message: String,
}

impl GroupError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// One ConsumerGroupHeartbeat, as the broker's handler hands it to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The group id.
    pub group_id: String,
    /// The member id. When joining: empty for the broker to mint one, or one the client
    /// chose, so that a join retried after a lost reply continues as the same member.
    pub member_id: String,
    /// [`JOIN_EPOCH`], [`LEAVE_EPOCH`], [`STATIC_LEAVE_EPOCH`] or the member's epoch.
    pub member_epoch: i32,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
    /// The subscription; required when joining, `None` when unchanged.
    pub subscribed_topics: Option<Vec<String>>,
    /// `uniform` or `range`; `None` keeps the group's assignor.
    pub assignor: Option<String>,
    /// What the member owns now; `None` when unchanged. Leaving out partitions pending
    /// revocation confirms their revocation.
    pub owned: Option<BTreeSet<TopicPartition>>,
    /// The client id from the request header.
    pub client_id: String,
    /// The address the member connects from.
    pub client_host: String,
    /// A fresh, unique member id minted by the broker; used only by a join whose
    /// `member_id` is empty (empty otherwise).
    pub new_member_id: String,
}

/// The answer to a [`Heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member id to send from now on.
    pub member_id: String,
    /// The member epoch to send from now on; [`LEAVE_EPOCH`] or [`STATIC_LEAVE_EPOCH`]
    /// after a leave.
    pub member_epoch: i32,
    /// How long to wait before the next heartbeat.
    pub heartbeat_interval_ms: u32,
    /// Everything the member may own now (owned partitions not pending revocation).
    pub assignment: BTreeSet<TopicPartition>,
}

/// Where a group is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Some member does not yet own exactly its target, or the target is out of date.
    Reconciling,
    /// Every member owns exactly its target for the current group epoch.
    Stable,
}

impl GroupState {
    /// The name used on the wire and in the CLI.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "empty",
            GroupState::Reconciling => "reconciling",
            GroupState::Stable => "stable",
        }
    }
}

/// One group in [`Coordinator::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// The group id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// How many members it has, including static members that left for a restart.
    pub member_count: usize,
}

/// One member in a [`GroupDescription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
    /// The client id from the member's requests.
    pub client_id: String,
    /// The address the member connects from.
    pub client_host: String,
    /// The member's epoch.
    pub member_epoch: i32,
    /// The epoch before the member's last epoch change.
    pub previous_epoch: i32,
    /// The topics it subscribes to, sorted.
    pub subscribed_topics: Vec<String>,
    /// The partitions it owns, including those pending revocation.
    pub assigned: BTreeSet<TopicPartition>,
    /// Owned partitions it was asked to give up and has not yet confirmed.
    pub pending_revocation: BTreeSet<TopicPartition>,
    /// What the target assignment gives it.
    pub target: BTreeSet<TopicPartition>,
    /// A static member that left for a restart and keeps its partitions for now.
    pub left_static: bool,
}

/// A snapshot of one group for DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Its state.
    pub state: GroupState,
    /// The group epoch.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// The group's assignor.
    pub assignor: Assignor,
    /// Partition counts of the subscribed topics, as of the group epoch.
    pub partition_counts: BTreeMap<String, u32>,
    /// The members, sorted by member id.
    pub members: Vec<MemberDescription>,
    /// Committed offsets and their metadata.
    pub committed: BTreeMap<TopicPartition, (u64, Option<String>)>,
}

impl GroupDescription {
    /// The member that owns `tp` (pending revocation included), if any.
    pub fn owner(&self, tp: &TopicPartition) -> Option<&str> {
        self.members
            .iter()
            .find(|member| member.assigned.contains(tp))
            .map(|member| member.member_id.as_str())
    }
}

/// Every group this broker coordinates. Owns all group state; not thread-safe on its
/// own: the broker keeps it behind a mutex and calls it without awaiting in between.
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
}

#[derive(Debug, Default)]
struct Group {
    value: GroupValue,
    members: BTreeMap<String, Member>,
    offsets: BTreeMap<TopicPartition, OffsetValue>,
}

#[derive(Debug)]
struct Member {
    value: MemberValue,
    /// Not persisted: restarts from the replay time after a reload.
    session_deadline: Instant,
    /// Set while a revocation is pending. Not persisted.
    revocation_deadline: Option<Instant>,
}

impl Member {
    fn is_expired(&self, now: Instant) -> bool {
        self.session_deadline <= now || self.revocation_deadline.is_some_and(|at| at <= now)
    }
}

/// What one mutation changed, so records are written for exactly that.
#[derive(Debug, Default)]
struct Dirty {
    group: bool,
    /// The group epoch moves at most once per mutation, however many things changed.
    epoch_bumped: bool,
    members: BTreeSet<String>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> GroupError {
    GroupError::new(code, message)
}

fn unknown_member(group_id: &str, member_id: &str) -> GroupError {
    error(
        ErrorCode::UnknownMemberId,
        format!("member {member_id:?} is not in group {group_id:?}"),
    )
}

fn validate_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(error(
            ErrorCode::InvalidGroupId,
            format!(
                "group id is {} bytes; it must be 1 to {GROUP_ID_BYTES_MAX}",
                group_id.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a subscription's size and topic names.
fn validate_subscription(topics: &[String]) -> Result<(), GroupError> {
    if topics.len() > SUBSCRIBED_TOPICS_MAX {
        return Err(error(
            ErrorCode::LimitExceeded,
            format!(
                "a member may subscribe to at most {SUBSCRIBED_TOPICS_MAX} topics, not {}",
                topics.len()
            ),
        ));
    }
    if let Some(topic) = topics
        .iter()
        .find(|topic| topic.is_empty() || topic.len() > SUBSCRIBED_TOPIC_BYTES_MAX)
    {
        return Err(error(
            ErrorCode::InvalidTopic,
            format!(
                "subscribed topic names are 1 to {SUBSCRIBED_TOPIC_BYTES_MAX} bytes, not {}",
                topic.len()
            ),
        ));
    }
    Ok(())
}

fn epoch_exhausted(group_id: &str) -> GroupError {
    error(
        ErrorCode::LimitExceeded,
        format!(
            "group {group_id:?} has had {EPOCH_GROWTH_MAX} membership changes; delete it once it is empty to start over"
        ),
    )
}

impl Group {
    fn bump_epoch(&mut self, dirty: &mut Dirty) {
        if dirty.epoch_bumped {
            return;
        }
        dirty.epoch_bumped = true;
        // Joins and resubscriptions stop at EPOCH_GROWTH_MAX, leaving room for every
        // removal; saturating only matters past that.
        self.value.epoch = self.value.epoch.saturating_add(1);
        dirty.group = true;
    }

    /// Removes a member and releases its partitions.
    fn remove_member(&mut self, member_id: &str, dirty: &mut Dirty) {
        if self.members.remove(member_id).is_some() {
            dirty.members.insert(member_id.to_owned());
            self.bump_epoch(dirty);
        }
    }

    fn member_with_instance(&self, instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, member)| member.value.instance_id.as_deref() == Some(instance_id))
            .map(|(member_id, _)| member_id.as_str())
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
    fn owners_are_unique(&self) -> bool {
        let mut seen = BTreeSet::new();
        self.members
            .values()
            .flat_map(|member| &member.value.assigned)
            .all(|tp| seen.insert(tp))
    }

    fn state(&self) -> GroupState {
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
            member_epoch: value.member_epoch,
            heartbeat_interval_ms,
            assignment: value
                .assigned
                .difference(&value.pending_revocation)
                .cloned()
                .collect(),
        }
    }

    /// Pushes a record for everything `dirty` names, in its state now.
    fn flush(&self, group_id: &str, dirty: Dirty, records: &mut Vec<Record>) {
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

impl Coordinator {
    /// A coordinator with no groups.
    pub fn new(config: GroupConfig) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
        }
    }

    fn heartbeat_interval_ms(&self) -> u32 {
        u32::try_from(self.config.heartbeat_interval.as_millis()).unwrap_or(u32::MAX)
    }

    /// Handles one heartbeat: join, leave, or stay and reconcile. `topics` gives a
    /// topic's partition count, or `None` if it does not exist. Pushes records for every
    /// group and member whose persisted state changed.
    ///
    /// # Errors
    /// - `InvalidGroupId`: the group id is empty or longer than [`GROUP_ID_BYTES_MAX`].
    /// - `InvalidRequest`: a join without a subscription, or an epoch below
    ///   [`STATIC_LEAVE_EPOCH`].
    /// - `UnsupportedAssignor`: the assignor is not `uniform` or `range`.
    /// - `GroupMaxSizeReached`: a new member would exceed `members_max`.
    /// - `UnknownMemberId`: the member is not in the group (or left it statically).
    /// - `FencedMemberEpoch`: the epoch is stale. The member is removed from the group,
    ///   and the records for that removal are pushed even though this is an error: the
    ///   broker must append them either way.
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
            .transpose()
            .map_err(|unknown| error(ErrorCode::UnsupportedAssignor, unknown.to_string()))?;
        match request.member_epoch {
            JOIN_EPOCH => self.join(request, assignor, topics, now, records),
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => self.leave(&request, now, records),
            epoch if epoch < 0 => Err(error(
                ErrorCode::InvalidRequest,
                format!("member epoch {epoch} is not a valid epoch"),
            )),
            _ => self.stay(request, assignor, topics, now, records),
        }
    }

    fn join(
        &mut self,
        request: Heartbeat,
        assignor: Option<Assignor>,
        topics: &dyn Fn(&str) -> Option<u32>,
        now: Instant,
        records: &mut Vec<Record>,
    ) -> Result<HeartbeatReply, GroupError> {
        if request.member_id.len() > MEMBER_ID_BYTES_MAX {
            return Err(error(
                ErrorCode::InvalidRequest,
                format!(
                    "member id is {} bytes; it must be at most {MEMBER_ID_BYTES_MAX}",
                    request.member_id.len()
                ),
            ));
        }
        let Some(subscribed) = request.subscribed_topics.clone() else {
            return Err(error(
                ErrorCode::InvalidRequest,
                "a joining member must send its subscribed topics",
            ));
        };
        validate_subscription(&subscribed)?;
        let retried = self
            .groups
            .get(&request.group_id)
            .and_then(|group| group.members.get(&request.member_id))
            .filter(|member| !member.value.left_static)
            .map(|member| member.value.member_epoch);
        if let Some(member_epoch) = retried {
            // The same join again: its reply was lost. Carry on as that member, which owns
            // nothing yet, rather than adding a second one.
            let retry = Heartbeat {
                member_epoch,
                owned: Some(request.owned.unwrap_or_default()),
                ..request
            };
            return self.stay(retry, assignor, topics, now, records);
        }
        let subscribed: BTreeSet<String> = subscribed.into_iter().collect();
        let existing = self.groups.get(&request.group_id);
        let predecessor = existing
            .zip(request.instance_id.as_deref())
            .and_then(|(group, instance_id)| group.member_with_instance(instance_id))
            .map(str::to_owned);
        let member_count = existing.map_or(0, |group| group.members.len());
        if predecessor.is_none() && member_count >= self.config.members_max {
            return Err(error(
                ErrorCode::GroupMaxSizeReached,
                format!(
                    "group {:?} has {member_count} members, the limit",
                    request.group_id
                ),
            ));
        }
        let member_id = if request.member_id.is_empty() {
            request.new_member_id
        } else {
            request.member_id
        };
        let heartbeat_interval_ms = self.heartbeat_interval_ms();
        let session_deadline = now + self.config.session_timeout;
        let revocation_deadline = now + self.config.rebalance_timeout;
        if member_id.is_empty()
            || existing.is_some_and(|group| {
                group.members.contains_key(&member_id)
                    && predecessor.as_deref() != Some(member_id.as_str())
            })
        {
            // Only a member that left statically can still hold the id here (a live one
            // was a retried join, handled above); its id is not reusable by others.
            return Err(unknown_member(&request.group_id, &member_id));
        }
        if predecessor.is_none()
            && existing.is_some_and(|group| group.value.epoch >= EPOCH_GROWTH_MAX)
        {
            return Err(epoch_exhausted(&request.group_id));
        }

        let mut dirty = Dirty::default();
        let group = self
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| {
                dirty.group = true;
                Group::default()
            });
        if let Some(assignor) = assignor
            && assignor != group.value.assignor
        {
            group.value.assignor = assignor;
            group.bump_epoch(&mut dirty);
        }
        let (value, inherited_deadline) = if let Some(old_id) = predecessor {
            // A static member restarted: its successor takes over its partitions and
            // epoch as they are, so nobody else moves.
            let old = group.members.remove(&old_id).expect("found above");
            dirty.members.insert(old_id);
            if old.value.subscribed_topics != subscribed {
                group.bump_epoch(&mut dirty);
            }
            let value = MemberValue {
                client_id: request.client_id,
                client_host: request.client_host,
                subscribed_topics: subscribed,
                left_static: false,
                ..old.value
            };
            (value, old.revocation_deadline)
        } else {
            group.bump_epoch(&mut dirty);
            let value = MemberValue {
                instance_id: request.instance_id,
                client_id: request.client_id,
                client_host: request.client_host,
                subscribed_topics: subscribed,
                member_epoch: JOIN_EPOCH,
                previous_epoch: JOIN_EPOCH,
                assigned: BTreeSet::new(),
                pending_revocation: BTreeSet::new(),
                target: BTreeSet::new(),
                left_static: false,
            };
            (value, None)
        };
        let member = Member {
            value,
            session_deadline,
            revocation_deadline: inherited_deadline,
        };
        group.members.insert(member_id.clone(), member);
        dirty.members.insert(member_id.clone());
        group.refresh_assignment(topics, &mut dirty);
        group.reconcile(
            &member_id,
            request.owned.as_ref(),
            revocation_deadline,
            &mut dirty,
        );
        group.flush(&request.group_id, dirty, records);
        Ok(group.reply(&member_id, heartbeat_interval_ms))
    }

    fn leave(
        &mut self,
        request: &Heartbeat,
        now: Instant,
        records: &mut Vec<Record>,
    ) -> Result<HeartbeatReply, GroupError> {
        let heartbeat_interval_ms = self.heartbeat_interval_ms();
        let unknown = || unknown_member(&request.group_id, &request.member_id);
        let group = self.groups.get_mut(&request.group_id).ok_or_else(unknown)?;
        let member = group
            .members
            .get_mut(&request.member_id)
            .ok_or_else(unknown)?;
        let mut dirty = Dirty::default();
        let member_epoch =
            if request.member_epoch == STATIC_LEAVE_EPOCH && member.value.instance_id.is_some() {
                // Keep the partitions for one session, for the restarted process to reclaim.
                member.session_deadline = now + self.config.session_timeout;
                if !member.value.left_static {
                    member.value.left_static = true;
                    dirty.members.insert(request.member_id.clone());
                }
                STATIC_LEAVE_EPOCH
            } else {
                group.remove_member(&request.member_id, &mut dirty);
                LEAVE_EPOCH
            };
        group.flush(&request.group_id, dirty, records);
        Ok(HeartbeatReply {
            member_id: request.member_id.clone(),
            member_epoch,
            heartbeat_interval_ms,
            assignment: BTreeSet::new(),
        })
    }

    /// A heartbeat from a member that is in the group.
    fn stay(
        &mut self,
        request: Heartbeat,
        assignor: Option<Assignor>,
        topics: &dyn Fn(&str) -> Option<u32>,
        now: Instant,
        records: &mut Vec<Record>,
    ) -> Result<HeartbeatReply, GroupError> {
        if let Some(subscribed) = &request.subscribed_topics {
            validate_subscription(subscribed)?;
        }
        let heartbeat_interval_ms = self.heartbeat_interval_ms();
        let group_id = &request.group_id;
        let member_id = &request.member_id;
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| unknown_member(group_id, member_id))?;
        let member = group
            .members
            .get_mut(member_id)
            .filter(|member| !member.value.left_static)
            .ok_or_else(|| unknown_member(group_id, member_id))?;
        let mut dirty = Dirty::default();
        let epoch = request.member_epoch;
        // A member whose last response was lost still sends the epoch before it, and owns
        // no more than it did then.
        let current = epoch == member.value.member_epoch
            || (epoch == member.value.previous_epoch
                && request
                    .owned
                    .as_ref()
                    .is_none_or(|owned| owned.is_subset(&member.value.assigned)));
        if !current {
            let message = format!(
                "member {member_id:?} sent epoch {epoch}, but its epoch is {}",
                member.value.member_epoch
            );
            group.remove_member(member_id, &mut dirty);
            group.flush(group_id, dirty, records);
            return Err(error(ErrorCode::FencedMemberEpoch, message));
        }
        if let Some(subscribed) = &request.subscribed_topics
            && group.value.epoch >= EPOCH_GROWTH_MAX
            && subscribed.iter().collect::<BTreeSet<_>>()
                != member.value.subscribed_topics.iter().collect()
        {
            return Err(epoch_exhausted(group_id));
        }
        member.session_deadline = now + self.config.session_timeout;
        let value = &mut member.value;
        let mut resubscribed = false;
        if value.client_id != request.client_id || value.client_host != request.client_host {
            value.client_id = request.client_id;
            value.client_host = request.client_host;
            dirty.members.insert(member_id.clone());
        }
        if let Some(subscribed) = request.subscribed_topics {
            let subscribed: BTreeSet<String> = subscribed.into_iter().collect();
            if subscribed != value.subscribed_topics {
                value.subscribed_topics = subscribed;
                dirty.members.insert(member_id.clone());
                resubscribed = true;
            }
        }
        if resubscribed {
            group.bump_epoch(&mut dirty);
        }
        if let Some(assignor) = assignor
            && assignor != group.value.assignor
        {
            group.value.assignor = assignor;
            group.bump_epoch(&mut dirty);
        }
        group.refresh_assignment(topics, &mut dirty);
        let revocation_deadline = now + self.config.rebalance_timeout;
        group.reconcile(
            member_id,
            request.owned.as_ref(),
            revocation_deadline,
            &mut dirty,
        );
        group.flush(group_id, dirty, records);
        Ok(group.reply(member_id, heartbeat_interval_ms))
    }

    /// Validates an OffsetCommit without changing state. Returns one code per requested
    /// partition, in request order, and pushes an offset record for every accepted
    /// partition whose offset or metadata differs from what is committed. The broker
    /// appends those records and then hands each to [`Coordinator::replay`].
    ///
    /// An empty `member_id` with [`ADMIN_COMMIT_EPOCH`] is an administrator's commit: it
    /// is allowed only while the group has no members, and creates the group (through the
    /// replayed offset records) if it does not exist.
    ///
    /// Per partition: `PartitionNotAssigned` if a member commits a partition it does not
    /// own (partitions pending revocation count as owned), `LimitExceeded` if the
    /// metadata is longer than [`OFFSET_METADATA_BYTES_MAX`].
    ///
    /// # Errors
    /// For the whole request: `InvalidGroupId`; `InvalidRequest` (an empty member id
    /// without [`ADMIN_COMMIT_EPOCH`]); `NonEmptyGroup` (an administrator's commit to a
    /// group with members); `UnknownMemberId`; `FencedMemberEpoch` (the epoch is neither
    /// the member's epoch nor the one before it).
    pub fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        offsets: &[(TopicPartition, u64, Option<String>)],
        now_ms: i64,
        records: &mut Vec<Record>,
    ) -> Result<Vec<(TopicPartition, ErrorCode)>, GroupError> {
        validate_group_id(group_id)?;
        let group = self.groups.get(group_id);
        let owned = if member_id.is_empty() {
            admin_commit_allowed(group_id, group, member_epoch)?;
            None
        } else {
            let member = group
                .and_then(|group| group.members.get(member_id))
                .filter(|member| !member.value.left_static)
                .ok_or_else(|| unknown_member(group_id, member_id))?;
            let value = &member.value;
            if member_epoch != value.member_epoch && member_epoch != value.previous_epoch {
                return Err(error(
                    ErrorCode::FencedMemberEpoch,
                    format!(
                        "member {member_id:?} committed with epoch {member_epoch}, but its epoch is {}",
                        value.member_epoch
                    ),
                ));
            }
            Some(&value.assigned)
        };
        let results = offsets
            .iter()
            .map(|(tp, offset, metadata)| {
                let code = if metadata
                    .as_ref()
                    .is_some_and(|metadata| metadata.len() > OFFSET_METADATA_BYTES_MAX)
                {
                    ErrorCode::LimitExceeded
                } else if owned.is_some_and(|owned| !owned.contains(tp)) {
                    ErrorCode::PartitionNotAssigned
                } else {
                    let committed = group.and_then(|group| group.offsets.get(tp));
                    let unchanged = committed.is_some_and(|committed| {
                        committed.offset == *offset && committed.metadata == *metadata
                    });
                    if !unchanged {
                        records.push(Record::Offset {
                            group: group_id.to_owned(),
                            tp: tp.clone(),
                            value: Some(OffsetValue {
                                offset: *offset,
                                metadata: metadata.clone(),
                                commit_ms: now_ms,
                            }),
                        });
                    }
                    ErrorCode::None
                };
                (tp.clone(), code)
            })
            .collect();
        Ok(results)
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

    /// Deletes a group with no members, and its committed offsets.
    ///
    /// # Errors
    /// `GroupIdNotFound` if the group does not exist; `NonEmptyGroup` if it has members.
    pub fn delete_group(
        &mut self,
        group_id: &str,
        records: &mut Vec<Record>,
    ) -> Result<(), GroupError> {
        let group = self.groups.get(group_id).ok_or_else(|| {
            error(
                ErrorCode::GroupIdNotFound,
                format!("group {group_id:?} does not exist"),
            )
        })?;
        if !group.members.is_empty() {
            return Err(error(
                ErrorCode::NonEmptyGroup,
                format!("group {group_id:?} has {} members", group.members.len()),
            ));
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

fn admin_commit_allowed(
    group_id: &str,
    group: Option<&Group>,
    member_epoch: i32,
) -> Result<(), GroupError> {
    if member_epoch != ADMIN_COMMIT_EPOCH {
        return Err(error(
            ErrorCode::InvalidRequest,
            format!(
                "a commit without a member id must use epoch {ADMIN_COMMIT_EPOCH}, not {member_epoch}"
            ),
        ));
    }
    if let Some(group) = group
        && !group.members.is_empty()
    {
        return Err(error(
            ErrorCode::NonEmptyGroup,
            format!(
                "group {group_id:?} has {} members; stop them before resetting offsets",
                group.members.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SESSION: Duration = Duration::from_secs(10);
    const REBALANCE: Duration = Duration::from_secs(20);
    const MEMBERS_MAX: usize = 6;
    const GROUP: &str = "g";

    fn config() -> GroupConfig {
        GroupConfig {
            session_timeout: SESSION,
            heartbeat_interval: Duration::from_secs(1),
            rebalance_timeout: REBALANCE,
            members_max: MEMBERS_MAX,
        }
    }

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    type Persisted = BTreeMap<
        String,
        (
            GroupValue,
            BTreeMap<String, MemberValue>,
            BTreeMap<TopicPartition, OffsetValue>,
        ),
    >;

    /// Everything that records persist, to compare a coordinator with its replay.
    fn persisted(coordinator: &Coordinator) -> Persisted {
        coordinator
            .groups
            .iter()
            .map(|(group_id, group)| {
                let members = group
                    .members
                    .iter()
                    .map(|(member_id, member)| (member_id.clone(), member.value.clone()))
                    .collect();
                (
                    group_id.clone(),
                    (group.value.clone(), members, group.offsets.clone()),
                )
            })
            .collect()
    }

    /// Drives one coordinator like the broker does, keeping every record it emitted, and
    /// checks the invariants after every call.
    struct Harness {
        coordinator: Coordinator,
        records: Vec<Record>,
        now: Instant,
        topics: BTreeMap<String, u32>,
        minted: u32,
    }

    impl Harness {
        fn new(topics: &[(&str, u32)]) -> Self {
            Self {
                coordinator: Coordinator::new(config()),
                records: Vec::new(),
                now: Instant::now(),
                topics: topics
                    .iter()
                    .map(|(topic, count)| ((*topic).to_owned(), *count))
                    .collect(),
                minted: 0,
            }
        }

        fn request(&mut self, member_id: &str, member_epoch: i32) -> Heartbeat {
            self.minted += 1;
            Heartbeat {
                group_id: GROUP.to_owned(),
                member_id: member_id.to_owned(),
                member_epoch,
                instance_id: None,
                subscribed_topics: None,
                assignor: None,
                owned: None,
                client_id: "client".to_owned(),
                client_host: "127.0.0.1".to_owned(),
                new_member_id: format!("m{:03}", self.minted),
            }
        }

        fn send(&mut self, request: Heartbeat) -> Result<HeartbeatReply, GroupError> {
            let topics = self.topics.clone();
            let lookup = move |topic: &str| topics.get(topic).copied();
            let reply = self
                .coordinator
                .heartbeat(request, &lookup, self.now, &mut self.records);
            if let Ok(reply) = &reply {
                self.check_reply(reply);
            }
            self.check();
            reply
        }

        fn join_with(
            &mut self,
            instance_id: Option<&str>,
            topics: &[&str],
        ) -> Result<HeartbeatReply, GroupError> {
            let mut request = self.request("", JOIN_EPOCH);
            request.instance_id = instance_id.map(str::to_owned);
            request.subscribed_topics = Some(topics.iter().map(|t| (*t).to_owned()).collect());
            self.send(request)
        }

        fn join(&mut self, topics: &[&str]) -> HeartbeatReply {
            self.join_with(None, topics).expect("joins")
        }

        /// A heartbeat that reports owning exactly what the last reply gave.
        fn ack(&mut self, last: &HeartbeatReply) -> HeartbeatReply {
            let mut request = self.request(&last.member_id, last.member_epoch);
            request.owned = Some(last.assignment.clone());
            self.send(request).expect("an accepted heartbeat")
        }

        fn leave(&mut self, member_id: &str, epoch: i32) -> HeartbeatReply {
            let request = self.request(member_id, epoch);
            self.send(request).expect("leaves")
        }

        fn commit(
            &mut self,
            group_id: &str,
            member_id: &str,
            member_epoch: i32,
            offsets: &[(TopicPartition, u64)],
        ) -> Result<Vec<(TopicPartition, ErrorCode)>, GroupError> {
            let offsets: Vec<_> = offsets
                .iter()
                .map(|(tp, offset)| (tp.clone(), *offset, None))
                .collect();
            let mut records = Vec::new();
            let result = self.coordinator.commit(
                group_id,
                member_id,
                member_epoch,
                &offsets,
                1_000,
                &mut records,
            );
            assert!(
                result.is_ok() || records.is_empty(),
                "no records on failure"
            );
            for record in records {
                self.records.push(record.clone());
                self.coordinator.replay(record, self.now);
            }
            self.check();
            result
        }

        fn advance(&mut self, by: Duration) {
            self.now += by;
            self.coordinator.expire(self.now, &mut self.records);
            assert!(
                self.coordinator
                    .next_deadline()
                    .is_none_or(|deadline| deadline > self.now),
                "expire leaves nothing due"
            );
            self.check();
        }

        fn describe(&self) -> GroupDescription {
            self.coordinator.describe(GROUP).expect("the group exists")
        }

        fn member(&self, member_id: &str) -> MemberDescription {
            self.describe()
                .members
                .into_iter()
                .find(|member| member.member_id == member_id)
                .expect("a member")
        }

        /// A reply never hands out a partition that another member owns.
        fn check_reply(&self, reply: &HeartbeatReply) {
            if let Some(group) = self.coordinator.describe(GROUP) {
                for tp in &reply.assignment {
                    let owner = group.owner(tp);
                    assert_eq!(
                        owner,
                        Some(reply.member_id.as_str()),
                        "{tp} is owned by {owner:?}"
                    );
                }
            }
        }

        /// No partition has two owners, and replaying every record (through its bytes)
        /// rebuilds the same persisted state.
        fn check(&self) {
            for group in self.coordinator.groups.values() {
                assert!(group.owners_are_unique());
            }
            let mut replayed = Coordinator::new(config());
            for record in &self.records {
                let value = record.value();
                let decoded = Record::decode(&record.key(), value.as_deref()).expect("decodes");
                assert_eq!(&decoded, record);
                replayed.replay(decoded, self.now);
            }
            assert_eq!(persisted(&replayed), persisted(&self.coordinator));
            assert_eq!(replayed.list_groups(), self.coordinator.list_groups());
            for summary in self.coordinator.list_groups() {
                assert_eq!(
                    replayed.describe(&summary.group_id),
                    self.coordinator.describe(&summary.group_id)
                );
            }
        }

        /// Acks every reply until nothing changes; returns the final replies.
        fn settle(&mut self, replies: Vec<HeartbeatReply>) -> Vec<HeartbeatReply> {
            let mut replies = replies;
            for _ in 0..10 {
                replies = replies.iter().map(|reply| self.ack(reply)).collect();
            }
            replies
        }
    }

    fn loads(group: &GroupDescription) -> Vec<usize> {
        group
            .members
            .iter()
            .map(|member| member.assigned.len())
            .collect()
    }

    fn assert_stable(group: &GroupDescription) {
        assert_eq!(group.state, GroupState::Stable, "{group:#?}");
        for member in &group.members {
            assert_eq!(member.assigned, member.target);
            assert!(member.pending_revocation.is_empty());
            assert_eq!(member.member_epoch, group.assignment_epoch);
        }
    }

    #[test]
    fn first_member_gets_everything_and_second_join_splits_evenly() {
        let mut h = Harness::new(&[("t", 6)]);
        let a = h.join(&["t"]);
        assert_eq!(a.member_epoch, 1);
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
    fn a_retried_join_with_a_client_chosen_id_continues_as_the_same_member() {
        let mut h = Harness::new(&[("t", 4)]);
        let join = |h: &mut Harness| {
            let mut request = h.request("client-chosen-1", JOIN_EPOCH);
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

        let mut long = h.request(&"m".repeat(MEMBER_ID_BYTES_MAX + 1), JOIN_EPOCH);
        long.subscribed_topics = Some(vec!["t".to_owned()]);
        assert_eq!(h.send(long).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_join_reusing_a_statically_left_members_id_is_refused_not_a_panic() {
        let mut h = Harness::new(&[("t", 2)]);
        let mut join = h.request("static-1", JOIN_EPOCH);
        join.instance_id = Some("i1".to_owned());
        join.subscribed_topics = Some(vec!["t".to_owned()]);
        let first = h.send(join).expect("joins");
        h.leave(&first.member_id, STATIC_LEAVE_EPOCH);
        let mut impostor = h.request("static-1", JOIN_EPOCH);
        impostor.subscribed_topics = Some(vec!["t".to_owned()]);
        assert_eq!(
            h.send(impostor).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
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
        assert_eq!(
            h.join_with(None, &too_many).unwrap_err().code,
            ErrorCode::LimitExceeded
        );
        let long = "x".repeat(SUBSCRIBED_TOPIC_BYTES_MAX + 1);
        assert_eq!(
            h.join_with(None, &[long.as_str()]).unwrap_err().code,
            ErrorCode::InvalidTopic
        );
        let member = h.join(&["t"]);
        let mut resubscribe = h.request(&member.member_id, member.member_epoch);
        resubscribe.subscribed_topics = Some(vec![String::new()]);
        assert_eq!(
            h.send(resubscribe).unwrap_err().code,
            ErrorCode::InvalidTopic
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
        assert_eq!(
            h.join_with(None, &["t"]).unwrap_err().code,
            ErrorCode::LimitExceeded
        );
        let mut resubscribe = h.request(&member.member_id, member.member_epoch);
        resubscribe.subscribed_topics = Some(vec!["t".to_owned(), "u".to_owned()]);
        assert_eq!(
            h.send(resubscribe).unwrap_err().code,
            ErrorCode::LimitExceeded
        );
        h.leave(&member.member_id, LEAVE_EPOCH);
        assert!(h.describe().members.is_empty());
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
    fn leave_moves_only_the_leavers_partitions() {
        let mut h = Harness::new(&[("t", 12)]);
        let replies: Vec<_> = (0..3).map(|_| h.join(&["t"])).collect();
        let mut replies = h.settle(replies);
        let before = h.describe();
        let leaver = replies.remove(1);
        let left = h.leave(&leaver.member_id, LEAVE_EPOCH);
        assert_eq!(left.member_epoch, LEAVE_EPOCH);
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
        assert_eq!(error.code, ErrorCode::UnknownMemberId);
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
        let left = h.leave(&a.member_id, STATIC_LEAVE_EPOCH);
        assert_eq!(left.member_epoch, STATIC_LEAVE_EPOCH);
        assert!(h.member(&a.member_id).left_static);
        // b keeps what it has and does not get a's partitions while a restarts.
        let b = h.settle(vec![b]).remove(0);
        assert_eq!(b.assignment, before.members[1].assigned);
        let request = h.request(&a.member_id, a.member_epoch);
        let error = h.send(request).expect_err("left");
        assert_eq!(error.code, ErrorCode::UnknownMemberId);

        let restarted = h.join_with(Some("instance-a"), &["t"]).expect("rejoins");
        assert_ne!(restarted.member_id, a.member_id);
        assert_eq!(restarted.member_epoch, a.member_epoch);
        assert_eq!(restarted.assignment, a.assignment);
        let after = h.describe();
        assert_eq!(after.group_epoch, before.group_epoch, "no rebalance");
        assert!(after.members.iter().all(|m| m.member_id != a.member_id));
        let request = h.request(&a.member_id, a.member_epoch);
        let error = h.send(request).expect_err("replaced");
        assert_eq!(error.code, ErrorCode::UnknownMemberId);
        h.settle(vec![restarted, b]);
        assert_stable(&h.describe());
    }

    #[test]
    fn static_member_that_does_not_return_is_removed_after_its_session() {
        let mut h = Harness::new(&[("t", 2)]);
        let a = h.join_with(Some("i"), &["t"]).expect("joins");
        let b = h.join(&["t"]);
        let replies = h.settle(vec![a, b]);
        h.leave(&replies[0].member_id, STATIC_LEAVE_EPOCH);
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
        assert_eq!(lost.member_epoch, a.member_epoch + 1);
        assert_eq!(lost.assignment.len(), 6);
        let retried = h.ack(&a);
        assert_eq!(retried, lost, "the previous epoch is accepted");
        // The previous epoch with partitions the member never had is not a lost reply.
        let mut request = h.request(&a.member_id, a.member_epoch);
        request.owned = Some(BTreeSet::from([tp("t", 0), tp("t", 40)]));
        let error = h.send(request).expect_err("fenced");
        assert_eq!(error.code, ErrorCode::FencedMemberEpoch);
        assert!(
            h.describe().members.is_empty(),
            "a fenced member is removed"
        );
        let b = h.join(&["t"]);
        let mut zombie = h.request(&b.member_id, b.member_epoch + 7);
        zombie.owned = Some(b.assignment.clone());
        let error = h.send(zombie).expect_err("fenced");
        assert_eq!(error.code, ErrorCode::FencedMemberEpoch);
        let c = h.join(&["t"]);
        assert_eq!(c.assignment.len(), 6);
    }

    #[test]
    fn commits_are_fenced_by_epoch_and_ownership() {
        let mut h = Harness::new(&[("t", 2)]);
        let a = h.join(&["t"]);
        let b = h.join(&["t"]);
        let a = h.ack(&a);
        let revoked = h
            .member(&a.member_id)
            .pending_revocation
            .first()
            .cloned()
            .expect("one revocation");
        let kept = a.assignment.first().cloned().expect("one kept");
        // During the revocation a may still commit what it is giving up.
        let outcome = h.commit(GROUP, &a.member_id, a.member_epoch, &[(revoked.clone(), 5)]);
        assert_eq!(outcome, Ok(vec![(revoked.clone(), ErrorCode::None)]));
        let error = h
            .commit(
                GROUP,
                &a.member_id,
                a.member_epoch + 3,
                &[(kept.clone(), 5)],
            )
            .expect_err("fenced");
        assert_eq!(error.code, ErrorCode::FencedMemberEpoch);
        let error = h
            .commit(GROUP, "nobody", 1, &[(kept.clone(), 5)])
            .expect_err("unknown");
        assert_eq!(error.code, ErrorCode::UnknownMemberId);
        // Once released, the partition is b's: a's commit of it is refused.
        let a = h.ack(&a);
        let outcome = h.commit(
            GROUP,
            &a.member_id,
            a.member_epoch,
            &[(revoked.clone(), 9), (kept.clone(), 7)],
        );
        assert_eq!(
            outcome,
            Ok(vec![
                (revoked.clone(), ErrorCode::PartitionNotAssigned),
                (kept.clone(), ErrorCode::None)
            ])
        );
        let b = h.ack(&b);
        assert_eq!(b.assignment, BTreeSet::from([revoked.clone()]));
        let committed = h.coordinator.committed(GROUP);
        assert_eq!(committed.get(&revoked), Some(&(5, None)));
        assert_eq!(committed.get(&kept), Some(&(7, None)));
        // Committing what is already committed writes nothing.
        let records = h.records.len();
        h.commit(GROUP, &a.member_id, a.member_epoch, &[(kept.clone(), 7)])
            .expect("accepted");
        assert_eq!(h.records.len(), records);
        let all: BTreeSet<_> = h.coordinator.all_committed().collect();
        assert_eq!(
            all,
            BTreeSet::from([(GROUP, &revoked, 5), (GROUP, &kept, 7)])
        );
    }

    #[test]
    fn admin_commits_need_an_empty_group() {
        let mut h = Harness::new(&[("t", 1)]);
        // An admin commit creates the group.
        h.commit("fresh", "", ADMIN_COMMIT_EPOCH, &[(tp("t", 0), 3)])
            .expect("accepted");
        let fresh = h.coordinator.describe("fresh").expect("created");
        assert_eq!(fresh.state, GroupState::Empty);
        assert_eq!(fresh.committed.get(&tp("t", 0)), Some(&(3, None)));
        let a = h.join(&["t"]);
        let error = h
            .commit(GROUP, "", ADMIN_COMMIT_EPOCH, &[(tp("t", 0), 3)])
            .expect_err("members");
        assert_eq!(error.code, ErrorCode::NonEmptyGroup);
        let error = h.commit(GROUP, "", 4, &[]).expect_err("bad epoch");
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        h.leave(&a.member_id, LEAVE_EPOCH);
        assert_eq!(h.describe().state, GroupState::Empty);
        let outcome = h.commit(GROUP, "", ADMIN_COMMIT_EPOCH, &[(tp("t", 0), 3)]);
        assert_eq!(outcome, Ok(vec![(tp("t", 0), ErrorCode::None)]));
    }

    #[test]
    fn only_empty_groups_can_be_deleted() {
        let mut h = Harness::new(&[("t", 1)]);
        let mut records = Vec::new();
        let error = h
            .coordinator
            .delete_group(GROUP, &mut records)
            .expect_err("unknown");
        assert_eq!(error.code, ErrorCode::GroupIdNotFound);
        let a = h.join(&["t"]);
        h.commit(GROUP, &a.member_id, a.member_epoch, &[(tp("t", 0), 8)])
            .expect("accepted");
        let error = h
            .coordinator
            .delete_group(GROUP, &mut records)
            .expect_err("members");
        assert_eq!(error.code, ErrorCode::NonEmptyGroup);
        assert!(records.is_empty());
        h.leave(&a.member_id, LEAVE_EPOCH);
        h.coordinator
            .delete_group(GROUP, &mut h.records)
            .expect("deleted");
        h.check();
        assert!(h.coordinator.describe(GROUP).is_none());
        assert!(h.coordinator.committed(GROUP).is_empty());
        assert!(h.coordinator.list_groups().is_empty());
    }

    #[test]
    fn bad_requests_change_nothing() {
        let mut h = Harness::new(&[("t", 1)]);
        let mut request = h.request("", JOIN_EPOCH);
        request.subscribed_topics = Some(vec!["t".into()]);
        request.group_id = String::new();
        assert_eq!(
            h.send(request.clone()).unwrap_err().code,
            ErrorCode::InvalidGroupId
        );
        request.group_id = "x".repeat(GROUP_ID_BYTES_MAX + 1);
        assert_eq!(
            h.send(request.clone()).unwrap_err().code,
            ErrorCode::InvalidGroupId
        );
        request.group_id = GROUP.into();
        request.assignor = Some("sticky".into());
        assert_eq!(
            h.send(request.clone()).unwrap_err().code,
            ErrorCode::UnsupportedAssignor
        );
        request.assignor = None;
        request.subscribed_topics = None;
        assert_eq!(
            h.send(request.clone()).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        let request = h.request("nobody", 3);
        assert_eq!(
            h.send(request).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
        let request = h.request("nobody", LEAVE_EPOCH);
        assert_eq!(
            h.send(request).unwrap_err().code,
            ErrorCode::UnknownMemberId
        );
        assert!(h.records.is_empty());
        assert!(h.coordinator.list_groups().is_empty());
        for _ in 0..MEMBERS_MAX {
            h.join(&["t"]);
        }
        let error = h.join_with(None, &["t"]).unwrap_err();
        assert_eq!(error.code, ErrorCode::GroupMaxSizeReached);
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
        assert_eq!(a.member_epoch, 4);
        assert_stable(&group);
    }

    // ---- The model-based property test. ----

    const TOPICS: [&str; 2] = ["a", "b"];
    const PARTITIONS_MAX: u32 = 9;

    #[derive(Debug, Clone)]
    enum Op {
        Join {
            instance: Option<u8>,
            topics: u8,
        },
        Ack {
            client: usize,
        },
        Quiet {
            client: usize,
        },
        Lost {
            client: usize,
        },
        Zombie {
            client: usize,
        },
        Leave {
            client: usize,
        },
        StaticLeave {
            client: usize,
        },
        Resubscribe {
            client: usize,
            topics: u8,
        },
        Commit {
            client: usize,
            partition: u32,
            offset: u64,
        },
        AdminCommit {
            offset: u64,
        },
        Advance {
            ms: u64,
        },
        Grow {
            topic: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let client = 0usize..8;
        prop_oneof![
            3 => (proptest::option::of(0u8..3), 1u8..4)
                .prop_map(|(instance, topics)| Op::Join { instance, topics }),
            8 => client.clone().prop_map(|client| Op::Ack { client }),
            2 => client.clone().prop_map(|client| Op::Quiet { client }),
            2 => client.clone().prop_map(|client| Op::Lost { client }),
            1 => client.clone().prop_map(|client| Op::Zombie { client }),
            1 => client.clone().prop_map(|client| Op::Leave { client }),
            1 => client.clone().prop_map(|client| Op::StaticLeave { client }),
            1 => (client.clone(), 1u8..4)
                .prop_map(|(client, topics)| Op::Resubscribe { client, topics }),
            2 => (client, 0u32..PARTITIONS_MAX, 0u64..100)
                .prop_map(|(client, partition, offset)| Op::Commit { client, partition, offset }),
            1 => (0u64..100).prop_map(|offset| Op::AdminCommit { offset }),
            2 => (0u64..12_000).prop_map(|ms| Op::Advance { ms }),
            1 => (0usize..2).prop_map(|topic| Op::Grow { topic }),
        ]
    }

    /// What a consumer process believes: its id, epoch and the partitions it consumes.
    #[derive(Debug, Clone)]
    struct Client {
        last: HeartbeatReply,
        instance_id: Option<String>,
    }

    struct Model {
        h: Harness,
        clients: Vec<Client>,
        /// Every subscription is both topics, so targets must end balanced.
        homogeneous: bool,
    }

    impl Model {
        fn topics(&self, mask: u8) -> Vec<&'static str> {
            let mask = if self.homogeneous { 3 } else { mask };
            TOPICS
                .iter()
                .enumerate()
                .filter(|(index, _)| mask & (1 << index) != 0)
                .map(|(_, topic)| *topic)
                .collect()
        }

        fn client(&self, index: usize) -> Option<usize> {
            (!self.clients.is_empty()).then(|| index % self.clients.len())
        }

        /// Applies a reply the client received, or forgets the client if it was removed.
        fn received(&mut self, index: usize, reply: Result<HeartbeatReply, GroupError>) {
            match reply {
                Ok(reply) if reply.member_epoch > 0 => self.clients[index].last = reply,
                Ok(_) => {
                    self.clients.remove(index);
                }
                Err(error) => {
                    assert!(
                        matches!(
                            error.code,
                            ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch
                        ),
                        "{error}"
                    );
                    self.clients.remove(index);
                }
            }
        }

        fn heartbeat(&mut self, index: usize, owned: bool, apply: bool) {
            let last = self.clients[index].last.clone();
            let mut request = self.h.request(&last.member_id, last.member_epoch);
            request.owned = owned.then(|| last.assignment.clone());
            let reply = self.h.send(request);
            if apply || reply.is_err() {
                self.received(index, reply);
            }
        }

        fn apply(&mut self, op: &Op) {
            match *op {
                Op::Join { instance, topics } => {
                    let instance_id = instance.map(|instance| format!("instance-{instance}"));
                    let topics = self.topics(topics);
                    match self.h.join_with(instance_id.as_deref(), &topics) {
                        Ok(last) => {
                            // A process with the same instance id is replaced: it
                            // crashed, or it is a zombie the coordinator now fences.
                            self.clients.retain(|client| {
                                instance_id.is_none() || client.instance_id != instance_id
                            });
                            self.clients.push(Client { last, instance_id });
                        }
                        Err(error) => assert_eq!(error.code, ErrorCode::GroupMaxSizeReached),
                    }
                }
                Op::Ack { client } => {
                    if let Some(index) = self.client(client) {
                        self.heartbeat(index, true, true);
                    }
                }
                Op::Quiet { client } => {
                    if let Some(index) = self.client(client) {
                        self.heartbeat(index, false, true);
                    }
                }
                Op::Lost { client } => {
                    if let Some(index) = self.client(client) {
                        self.heartbeat(index, true, false);
                    }
                }
                Op::Zombie { client } => {
                    if let Some(index) = self.client(client) {
                        let last = self.clients[index].last.clone();
                        let request = self.h.request(&last.member_id, last.member_epoch + 1_000);
                        let error = self.h.send(request).expect_err("fenced");
                        assert_eq!(error.code, ErrorCode::FencedMemberEpoch);
                        self.clients.remove(index);
                    }
                }
                Op::Leave { client } | Op::StaticLeave { client } => {
                    if let Some(index) = self.client(client) {
                        let epoch = if matches!(op, Op::Leave { .. }) {
                            LEAVE_EPOCH
                        } else {
                            STATIC_LEAVE_EPOCH
                        };
                        let member_id = self.clients[index].last.member_id.clone();
                        self.h.leave(&member_id, epoch);
                        self.clients.remove(index);
                    }
                }
                Op::Resubscribe { client, topics } => {
                    if let Some(index) = self.client(client) {
                        let last = self.clients[index].last.clone();
                        let mut request = self.h.request(&last.member_id, last.member_epoch);
                        request.owned = Some(last.assignment.clone());
                        request.subscribed_topics =
                            Some(self.topics(topics).into_iter().map(Into::into).collect());
                        let reply = self.h.send(request);
                        self.received(index, reply);
                    }
                }
                Op::Commit {
                    client,
                    partition,
                    offset,
                } => self.commit(client, partition, offset),
                Op::AdminCommit { offset } => {
                    let members = self
                        .h
                        .coordinator
                        .describe(GROUP)
                        .map_or(0, |g| g.members.len());
                    let outcome =
                        self.h
                            .commit(GROUP, "", ADMIN_COMMIT_EPOCH, &[(tp("a", 0), offset)]);
                    match outcome {
                        Ok(_) => assert_eq!(members, 0),
                        Err(error) => assert_eq!(error.code, ErrorCode::NonEmptyGroup),
                    }
                }
                Op::Advance { ms } => {
                    self.h.advance(Duration::from_millis(ms));
                    self.forget_removed();
                }
                Op::Grow { topic } => {
                    let count = self.h.topics.get_mut(TOPICS[topic]).expect("a topic");
                    *count = (*count + 1).min(PARTITIONS_MAX);
                }
            }
        }

        fn commit(&mut self, client: usize, partition: u32, offset: u64) {
            let Some(index) = self.client(client) else {
                return;
            };
            let last = self.clients[index].last.clone();
            let tp = tp(TOPICS[partition as usize % 2], partition / 2);
            let group = self.h.describe();
            let member = group
                .members
                .iter()
                .find(|member| member.member_id == last.member_id)
                .expect("a live client is a member");
            let current = [member.member_epoch, member.previous_epoch].contains(&last.member_epoch);
            let owned = member.assigned.contains(&tp);
            let outcome = self.h.commit(
                GROUP,
                &last.member_id,
                last.member_epoch,
                &[(tp.clone(), offset)],
            );
            match outcome {
                // Two lost replies in a row leave a client behind by two epochs.
                Err(error) => {
                    assert!(!current, "{error}");
                    assert_eq!(error.code, ErrorCode::FencedMemberEpoch);
                }
                Ok(outcome) => {
                    assert!(current);
                    let expected = if owned {
                        ErrorCode::None
                    } else {
                        ErrorCode::PartitionNotAssigned
                    };
                    assert_eq!(outcome, [(tp, expected)]);
                }
            }
        }

        fn forget_removed(&mut self) {
            let members: BTreeSet<String> = self
                .h
                .coordinator
                .describe(GROUP)
                .map(|group| group.members.into_iter().map(|m| m.member_id).collect())
                .unwrap_or_default();
            self.clients
                .retain(|client| members.contains(&client.last.member_id));
        }

        /// Every live client consumes only partitions the coordinator has it own.
        fn check(&self) {
            let Some(group) = self.h.coordinator.describe(GROUP) else {
                assert!(self.clients.is_empty());
                return;
            };
            for client in &self.clients {
                for tp in &client.last.assignment {
                    assert_eq!(
                        group.owner(tp),
                        Some(client.last.member_id.as_str()),
                        "{tp} is consumed by a member that does not own it"
                    );
                }
            }
        }

        /// Everyone heartbeats, acking, until the group must be stable.
        fn converge(&mut self) {
            for _ in 0..(SESSION.as_secs() + 10) {
                self.h.advance(Duration::from_secs(1));
                self.forget_removed();
                // A client two lost replies behind is fenced, and drops out here.
                let mut index = 0;
                while index < self.clients.len() {
                    let clients = self.clients.len();
                    self.heartbeat(index, true, true);
                    index += usize::from(self.clients.len() == clients);
                }
                self.check();
            }
            let Some(group) = self.h.coordinator.describe(GROUP) else {
                return;
            };
            assert_eq!(group.members.len(), self.clients.len());
            if group.members.is_empty() {
                assert_eq!(group.state, GroupState::Empty);
                return;
            }
            assert_stable(&group);
            let identical = group
                .members
                .windows(2)
                .all(|pair| pair[0].subscribed_topics == pair[1].subscribed_topics);
            if identical {
                let loads = loads(&group);
                let (min, max) = (loads.iter().min(), loads.iter().max());
                assert!(
                    max.zip(min).is_some_and(|(max, min)| max - min <= 1),
                    "{loads:?}"
                );
            }
            for client in &self.clients {
                let member = group
                    .members
                    .iter()
                    .find(|m| m.member_id == client.last.member_id)
                    .expect("a member");
                assert_eq!(client.last.assignment, member.assigned);
            }
        }
    }

    proptest! {
        #[test]
        fn members_never_share_a_partition_and_the_group_converges(
            ops in proptest::collection::vec(op(), 1..60),
            homogeneous in any::<bool>(),
            partitions in (1u32..PARTITIONS_MAX, 1u32..PARTITIONS_MAX),
        ) {
            let mut model = Model {
                h: Harness::new(&[("a", partitions.0), ("b", partitions.1)]),
                clients: Vec::new(),
                homogeneous,
            };
            for op in &ops {
                model.apply(op);
                model.check();
            }
            model.converge();
        }
    }
}
