//! What goes into the engine and what comes out: its limits, its requests, its replies,
//! its errors and its descriptions of groups.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::group::assignor::{Assignor, UnknownAssignor};
pub use crate::group::records::TopicPartition;

pub use strata_protocol::limits::GROUP_ID_BYTES_MAX;
/// Longest member id a joining client may choose, in bytes.
pub const MEMBER_ID_BYTES_MAX: usize = 255;
/// Topics one member may subscribe to.
pub const SUBSCRIBED_TOPICS_MAX: usize = 1_000;
/// Longest subscribed topic name, in bytes (the longest valid topic name).
pub const SUBSCRIBED_TOPIC_BYTES_MAX: usize = strata_protocol::limits::TOPIC_NAME_BYTES_MAX;
/// A group whose epoch reached this refuses joins and subscription changes (leaves and
/// expiry still work), so the epoch can never overflow; delete the group once it is
/// empty to start over. At one join per millisecond this is about 24 days of churn.
pub const EPOCH_GROWTH_MAX: i32 = i32::MAX - 1_000_000;
/// Longest metadata string committed with an offset, in bytes (Kafka's default
/// `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
/// The epoch a member holds before its first assignment. Persisted in member records, so
/// it never changes.
pub const UNASSIGNED_EPOCH: i32 = 0;

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

/// Why the engine refused a request. Each variant carries what a client needs to see what
/// it got wrong; the handlers map variants to wire error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group id is empty or longer than [`GROUP_ID_BYTES_MAX`].
    #[error("group id is {length} bytes; it must be 1 to {GROUP_ID_BYTES_MAX}")]
    InvalidGroupId { length: usize },
    /// A client-chosen member id is longer than [`MEMBER_ID_BYTES_MAX`].
    #[error("member id is {length} bytes; it must be at most {MEMBER_ID_BYTES_MAX}")]
    MemberIdTooLong { length: usize },
    /// A join without a subscription.
    #[error("a joining member must send its subscribed topics")]
    SubscriptionMissing,
    /// A negative epoch that asks for neither joining nor leaving.
    #[error("member epoch {epoch} is not a valid epoch")]
    InvalidEpoch { epoch: i32 },
    /// The assignor is neither `uniform` nor `range`.
    #[error(transparent)]
    UnsupportedAssignor(#[from] UnknownAssignor),
    /// A subscription over [`SUBSCRIBED_TOPICS_MAX`] topics.
    #[error("a member may subscribe to at most {SUBSCRIBED_TOPICS_MAX} topics, not {count}")]
    TooManySubscribedTopics { count: usize },
    /// A subscribed topic name that is empty or over [`SUBSCRIBED_TOPIC_BYTES_MAX`].
    #[error("subscribed topic names are 1 to {SUBSCRIBED_TOPIC_BYTES_MAX} bytes, not {length}")]
    InvalidSubscribedTopic { length: usize },
    /// The group's epoch reached [`EPOCH_GROWTH_MAX`].
    #[error(
        "group {group_id:?} has had {EPOCH_GROWTH_MAX} membership changes; delete it once it is empty to start over"
    )]
    EpochExhausted { group_id: String },
    /// A new member would exceed `members_max`.
    #[error("group {group_id:?} has {member_count} members, the limit")]
    GroupFull {
        group_id: String,
        member_count: usize,
    },
    /// The member is not in the group, or left it statically.
    #[error("member {member_id:?} is not in group {group_id:?}")]
    UnknownMember { group_id: String, member_id: String },
    /// The member sent an epoch that is neither its own nor (after a lost reply) the one
    /// before it.
    #[error("member {member_id:?} sent epoch {sent}, but its epoch is {current}")]
    FencedEpoch {
        member_id: String,
        sent: i32,
        current: i32,
    },
    /// An administrator's commit to a group that has members.
    #[error("group {group_id:?} has {member_count} members; stop them before resetting offsets")]
    ResetWithMembers {
        group_id: String,
        member_count: usize,
    },
    /// The group to delete does not exist.
    #[error("group {group_id:?} does not exist")]
    GroupNotFound { group_id: String },
    /// The group to delete has members.
    #[error("group {group_id:?} has {member_count} members")]
    GroupNotEmpty {
        group_id: String,
        member_count: usize,
    },
}

/// A member epoch as a heartbeat carries it: a real epoch, or a request to join or leave.
/// The same in replies, where it tells the member which it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEpoch {
    /// Joining; the member has no epoch yet.
    Join,
    /// The member's epoch (1 or more).
    Current(i32),
    /// Leaving the group for good.
    Leave,
    /// A static member leaving for a restart: it keeps its partitions until its session
    /// times out, so its successor can take them back.
    StaticLeave,
}

/// One ConsumerGroupHeartbeat, as the broker's handler hands it to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The group id.
    pub group_id: String,
    /// The member id. When joining: empty for the broker to mint one, or one the client
    /// chose, so that a join retried after a lost reply continues as the same member
    /// (only from the same client id, before the member's first heartbeat).
    pub member_id: String,
    /// What the member asks for: to join, to leave, or to stay at its epoch.
    pub member_epoch: MemberEpoch,
    /// With a leave, the epoch the member holds: its current one, or the one before it
    /// after a lost reply. A leave at any other epoch is refused, so that knowing a
    /// member id is not enough to remove the member. Ignored otherwise.
    pub leaving_epoch: i32,
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
    /// The member epoch to send from now on: [`MemberEpoch::Current`], or after a leave
    /// [`MemberEpoch::Leave`] or [`MemberEpoch::StaticLeave`].
    pub member_epoch: MemberEpoch,
    /// How long to wait before the next heartbeat.
    pub heartbeat_interval_ms: u32,
    /// Everything the member may own now (owned partitions not pending revocation).
    pub assignment: BTreeSet<TopicPartition>,
}

/// Who commits offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committer {
    /// An administrator resetting the offsets of a group with no members.
    Admin,
    /// A member, fenced by its epoch and by what it owns.
    Member {
        /// The member id.
        member_id: String,
        /// The member's epoch.
        member_epoch: i32,
    },
}

/// What became of one partition's offset in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Accepted (written, or already committed as it is).
    Committed,
    /// The committing member does not own the partition.
    NotAssigned,
    /// The metadata is longer than [`OFFSET_METADATA_BYTES_MAX`].
    MetadataTooLong,
    /// The offset is past `i64::MAX`, the largest offset a log can hold and OffsetFetch
    /// can return.
    OffsetOutOfRange,
    /// The topic or partition does not exist.
    UnknownPartition,
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

/// One group in [`Coordinator::list_groups`](super::Coordinator::list_groups).
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
