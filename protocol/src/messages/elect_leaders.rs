//! ElectLeaders (key 20): asks the controller to elect partition leaders.
//!
//! A clean election hands a partition to its preferred replica (the first in its replica
//! list) when that replica is alive and in sync and not already leading, so leadership
//! goes back where placement put it after a failover. An unclean election is only for a
//! partition with no leader: it elects any alive replica, in-sync or not, and may lose
//! acknowledged records that only the lost replicas held.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

/// `ElectLeadersPartitionResponse::leader` when the partition has no leader.
pub const NO_ELECTED_LEADER: u32 = u32::MAX;

wire_struct! {
    /// Partitions of one topic to elect leaders for.
    pub struct ElectLeadersTopic {
        /// The topic name.
        pub name: String,
        /// The partition indexes.
        pub partitions: Vec<u32>,
    }
}

wire_struct! {
    /// Elects leaders for partitions.
    pub struct ElectLeadersRequest {
        /// `false`: preferred (clean) election; `true`: unclean election of partitions
        /// without a leader.
        pub unclean: bool,
        /// The partitions.
        pub topics: Vec<ElectLeadersTopic>,
    }
}

wire_struct! {
    /// One partition's outcome.
    pub struct ElectLeadersPartitionResponse {
        /// The partition index.
        pub partition: u32,
        /// `None` if a leader was elected; else why not (`ElectionNotNeeded`,
        /// `EligibleLeadersNotAvailable`, `UnknownTopicOrPartition`, ...).
        pub error_code: ErrorCode,
        /// A human-readable explanation when `error_code` is not `None`.
        pub error_message: Option<String>,
        /// The partition's leader after the request (the elected one, or on a refusal
        /// the one it has), or [`NO_ELECTED_LEADER`].
        pub leader: u32,
        /// That leader's epoch.
        pub leader_epoch: u32,
    }
}

wire_struct! {
    /// Outcomes for one topic.
    pub struct ElectLeadersTopicResponse {
        /// The topic name.
        pub name: String,
        /// Per-partition outcomes.
        pub partitions: Vec<ElectLeadersPartitionResponse>,
    }
}

wire_struct! {
    /// The elections' outcomes.
    pub struct ElectLeadersResponse {
        /// Per-topic outcomes.
        pub topics: Vec<ElectLeadersTopicResponse>,
    }
}
