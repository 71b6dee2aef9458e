//! Consumer groups: FindCoordinator (key 10), ConsumerGroupHeartbeat (key 11),
//! OffsetCommit (key 12), OffsetFetch (key 13), ListGroups (key 14), DescribeGroups
//! (key 15) and DeleteGroups (key 16).
//!
//! Membership follows the broker-driven design of Kafka's KIP-848: a member heartbeats
//! with its subscription and the partitions it owns, and the coordinator answers with the
//! partitions the member may own now. There is no join/sync barrier and no group-wide stop.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

/// `member_epoch` of a heartbeat that joins the group.
pub const JOIN_EPOCH: i32 = 0;
/// `member_epoch` of a heartbeat that leaves the group for good.
pub const LEAVE_EPOCH: i32 = -1;
/// `member_epoch` of a heartbeat from a static member that leaves for a restart: it keeps
/// its partitions until its session times out, so its successor can take them back.
pub const STATIC_LEAVE_EPOCH: i32 = -2;
/// `member_epoch` of an OffsetCommit sent by an administrator on behalf of a group with no
/// members (offset resets).
pub const ADMIN_COMMIT_EPOCH: i32 = -1;
/// A committed offset in an OffsetFetch or DescribeGroups response when there is none.
pub const NO_OFFSET: i64 = -1;

wire_struct! {
    /// Some partitions of one topic.
    pub struct TopicPartitions {
        /// The topic name.
        pub topic: String,
        /// Partition indexes, ascending.
        pub partitions: Vec<u32>,
    }
}

wire_struct! {
    /// Asks which broker coordinates a group.
    pub struct FindCoordinatorRequest {
        /// The group id.
        pub group_id: String,
    }
}

wire_struct! {
    /// The group's coordinator.
    pub struct FindCoordinatorResponse {
        /// The coordinator's node id.
        pub node_id: u32,
        /// The host clients connect to.
        pub host: String,
        /// The port clients connect to.
        pub port: u16,
    }
}

wire_struct! {
    /// Joins, stays in, or leaves a group, and reports what the member owns.
    pub struct ConsumerGroupHeartbeatRequest {
        /// The group id.
        pub group_id: String,
        /// When joining: empty for the coordinator to choose one, or a unique id the
        /// client chose (up to 255 bytes), so that a join retried after a lost reply
        /// continues as the same member instead of adding another. Then the id the
        /// coordinator returned.
        pub member_id: String,
        /// [`JOIN_EPOCH`], [`LEAVE_EPOCH`], [`STATIC_LEAVE_EPOCH`], or the member's
        /// current epoch.
        pub member_epoch: i32,
        /// A stable id for static membership, the same across restarts of one process;
        /// null for a dynamic member.
        pub instance_id: Option<String>,
        /// Topics the member subscribes to; required when joining, null when unchanged.
        pub subscribed_topics: Option<Vec<String>>,
        /// `uniform` or `range`; null keeps the group's assignor (`uniform` by default).
        pub assignor: Option<String>,
        /// The partitions the member owns now; null when unchanged since the last
        /// heartbeat. Leaving revoked partitions out of this list confirms the revocation.
        pub owned_partitions: Option<Vec<TopicPartitions>>,
        /// With [`LEAVE_EPOCH`] or [`STATIC_LEAVE_EPOCH`]: the member's current epoch,
        /// without which the leave is refused. 0 otherwise.
        pub leaving_epoch: i32,
    }
}

wire_struct! {
    /// The member's identity and the partitions it may own.
    pub struct ConsumerGroupHeartbeatResponse {
        /// The member id to send from now on.
        pub member_id: String,
        /// The member's epoch to send from now on.
        pub member_epoch: i32,
        /// How long to wait before the next heartbeat.
        pub heartbeat_interval_ms: u32,
        /// Every partition the member may own now, or null when unchanged. Partitions the
        /// member owns but that are missing here are revoked: the member stops fetching
        /// them, commits, and confirms in its next heartbeat.
        pub assignment: Option<Vec<TopicPartitions>>,
    }
}

wire_struct! {
    /// One offset to commit.
    pub struct OffsetCommitPartition {
        /// The partition index.
        pub partition: u32,
        /// The next offset to consume.
        pub offset: u64,
        /// Free text stored with the offset.
        pub metadata: Option<String>,
    }
}

wire_struct! {
    /// Offsets to commit for one topic.
    pub struct OffsetCommitTopic {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<OffsetCommitPartition>,
    }
}

wire_struct! {
    /// Commits consumed offsets for a group.
    pub struct OffsetCommitRequest {
        /// The group id.
        pub group_id: String,
        /// The committing member, or empty for an administrator's commit.
        pub member_id: String,
        /// The member's current epoch, or [`ADMIN_COMMIT_EPOCH`] with an empty member id.
        pub member_epoch: i32,
        /// The offsets.
        pub topics: Vec<OffsetCommitTopic>,
    }
}

wire_struct! {
    /// The outcome for one partition.
    pub struct PartitionResult {
        /// The partition index.
        pub partition: u32,
        /// `None` on success.
        pub error_code: ErrorCode,
    }
}

wire_struct! {
    /// Outcomes for one topic.
    pub struct OffsetCommitTopicResponse {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<PartitionResult>,
    }
}

wire_struct! {
    /// Per-partition outcomes of an OffsetCommit.
    pub struct OffsetCommitResponse {
        /// One entry per requested topic.
        pub topics: Vec<OffsetCommitTopicResponse>,
    }
}

wire_struct! {
    /// Reads a group's committed offsets.
    pub struct OffsetFetchRequest {
        /// The group id.
        pub group_id: String,
        /// The partitions to read, or null for every committed partition.
        pub topics: Option<Vec<TopicPartitions>>,
    }
}

wire_struct! {
    /// One partition's committed offset.
    pub struct OffsetFetchPartition {
        /// The partition index.
        pub partition: u32,
        /// The committed offset, or [`NO_OFFSET`].
        pub offset: i64,
        /// The metadata committed with it.
        pub metadata: Option<String>,
        /// `None` on success.
        pub error_code: ErrorCode,
    }
}

wire_struct! {
    /// Committed offsets for one topic.
    pub struct OffsetFetchTopic {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<OffsetFetchPartition>,
    }
}

wire_struct! {
    /// The committed offsets. A group that never committed has none.
    pub struct OffsetFetchResponse {
        /// Per-topic offsets.
        pub topics: Vec<OffsetFetchTopic>,
    }
}

wire_struct! {
    /// Lists the groups this broker coordinates.
    pub struct ListGroupsRequest {
        /// Only groups in these states (see [`DescribedGroup::state`]); empty for all.
        pub states_filter: Vec<String>,
    }
}

wire_struct! {
    /// One group in a listing.
    pub struct ListedGroup {
        /// The group id.
        pub group_id: String,
        /// The group's state.
        pub state: String,
        /// How many members it has.
        pub member_count: u32,
    }
}

wire_struct! {
    /// The groups.
    pub struct ListGroupsResponse {
        /// Sorted by group id.
        pub groups: Vec<ListedGroup>,
    }
}

wire_struct! {
    /// Describes groups.
    pub struct DescribeGroupsRequest {
        /// The group ids.
        pub group_ids: Vec<String>,
    }
}

wire_struct! {
    /// One member of a group.
    pub struct GroupMember {
        /// The member id.
        pub member_id: String,
        /// The static instance id, if any.
        pub instance_id: Option<String>,
        /// The client id from the member's request header.
        pub client_id: String,
        /// The address the member connects from.
        pub client_host: String,
        /// The member's epoch.
        pub member_epoch: i32,
        /// The topics it subscribes to.
        pub subscribed_topics: Vec<String>,
        /// The partitions it owns.
        pub assignment: Vec<TopicPartitions>,
        /// Owned partitions it was asked to give up and has not yet confirmed.
        pub pending_revocation: Vec<TopicPartitions>,
        /// The partitions the current target assignment gives it.
        pub target_assignment: Vec<TopicPartitions>,
    }
}

wire_struct! {
    /// One partition's committed offset and lag.
    pub struct GroupOffsetPartition {
        /// The partition index.
        pub partition: u32,
        /// The committed offset, or [`NO_OFFSET`].
        pub committed_offset: i64,
        /// The partition's high watermark, or [`NO_OFFSET`] if it no longer exists.
        pub high_watermark: i64,
        /// `high_watermark - committed_offset`, or [`NO_OFFSET`] when either is missing.
        pub lag: i64,
        /// The member that owns the partition, if any.
        pub owner: Option<String>,
    }
}

wire_struct! {
    /// Offsets of one topic.
    pub struct GroupOffsetTopic {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<GroupOffsetPartition>,
    }
}

wire_struct! {
    /// A group's state, members, assignment, and offsets.
    pub struct DescribedGroup {
        /// The group id.
        pub group_id: String,
        /// `None`, or `GroupIdNotFound` when the group does not exist.
        pub error_code: ErrorCode,
        /// `empty` (no members), `reconciling` (members are moving towards the target
        /// assignment) or `stable`.
        pub state: String,
        /// Bumped whenever membership, subscriptions or subscribed topics change.
        pub group_epoch: i32,
        /// The group epoch the target assignment was computed for.
        pub assignment_epoch: i32,
        /// `uniform` or `range`.
        pub assignor: String,
        /// The members, sorted by member id.
        pub members: Vec<GroupMember>,
        /// Committed offsets and owned or subscribed partitions, sorted by topic.
        pub offsets: Vec<GroupOffsetTopic>,
    }
}

wire_struct! {
    /// The groups described.
    pub struct DescribeGroupsResponse {
        /// One entry per requested group id.
        pub groups: Vec<DescribedGroup>,
    }
}

wire_struct! {
    /// Deletes groups with no members, and their committed offsets.
    pub struct DeleteGroupsRequest {
        /// The group ids.
        pub group_ids: Vec<String>,
    }
}

wire_struct! {
    /// The outcome for one group.
    pub struct GroupResult {
        /// The group id.
        pub group_id: String,
        /// `None` on success.
        pub error_code: ErrorCode,
        /// Details beyond the code's own message.
        pub error_message: Option<String>,
    }
}

wire_struct! {
    /// Per-group outcomes of DeleteGroups.
    pub struct DeleteGroupsResponse {
        /// One entry per requested group id.
        pub groups: Vec<GroupResult>,
    }
}
