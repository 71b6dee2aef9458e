//! AlterPartitionReassignments (key 21): moves partitions to other replicas (Kafka's
//! KIP-455).
//!
//! The broker proposes each partition's move to the metadata quorum and answers once it
//! is recorded, not once it is done: the new replicas are added at once, copy the
//! partition from its leader, and the replicas left out are removed when every new one is
//! in sync. A client that wants to wait for the end reads the partition's replicas (with
//! Metadata or DescribeTopics) until they are the target. Asking for a partition's
//! original replicas while it moves cancels the move.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

wire_struct! {
    /// One partition's target replicas.
    pub struct ReassignablePartition {
        /// The partition index.
        pub partition: u32,
        /// The target replicas, preferred leader first.
        pub replicas: Vec<u32>,
    }
}

wire_struct! {
    /// The partitions of one topic to move.
    pub struct ReassignableTopic {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<ReassignablePartition>,
    }
}

wire_struct! {
    /// Moves partitions to other replicas.
    pub struct AlterPartitionReassignmentsRequest {
        /// The topics.
        pub topics: Vec<ReassignableTopic>,
    }
}

wire_struct! {
    /// One partition's outcome.
    pub struct ReassignablePartitionResponse {
        /// The partition index.
        pub partition: u32,
        /// `None` if the move is recorded (or was already); else why not
        /// (`InvalidReplicaAssignment`, `ReassignmentInProgress`,
        /// `UnknownTopicOrPartition`, ...).
        pub error_code: ErrorCode,
        /// A human-readable explanation when `error_code` is not `None`.
        pub error_message: Option<String>,
    }
}

wire_struct! {
    /// Outcomes for one topic.
    pub struct ReassignableTopicResponse {
        /// The topic name.
        pub name: String,
        /// Per-partition outcomes.
        pub partitions: Vec<ReassignablePartitionResponse>,
    }
}

wire_struct! {
    /// The moves' outcomes.
    pub struct AlterPartitionReassignmentsResponse {
        /// Per-topic outcomes.
        pub topics: Vec<ReassignableTopicResponse>,
    }
}
