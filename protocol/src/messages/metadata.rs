//! Metadata (key 1): brokers, topics, partitions and their leaders.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

/// Leader id when a partition has no leader.
pub const NO_LEADER: i32 = -1;

wire_struct! {
    /// Asks for metadata of some topics, or of every topic when `topics` is null.
    pub struct MetadataRequest {
        /// Topic names, or `None` for all topics.
        pub topics: Option<Vec<String>>,
    }
}

wire_struct! {
    /// A broker in the cluster.
    pub struct BrokerMetadata {
        /// The broker's node id.
        pub node_id: u32,
        /// The host clients connect to.
        pub host: String,
        /// The port clients connect to.
        pub port: u16,
    }
}

wire_struct! {
    /// One partition's placement.
    pub struct PartitionMetadata {
        /// `None`, or why this partition's metadata is unavailable.
        pub error_code: ErrorCode,
        /// The partition index.
        pub partition: u32,
        /// Node id of the leader, or [`NO_LEADER`].
        pub leader_id: i32,
        /// The leader's epoch.
        pub leader_epoch: u32,
        /// Node ids of every replica.
        pub replicas: Vec<u32>,
        /// Node ids of the in-sync replicas.
        pub in_sync_replicas: Vec<u32>,
    }
}

impl PartitionMetadata {
    /// Bytes of an entry's encoding with `replicas` replicas and `in_sync_replicas`
    /// in-sync replicas: every other field has a fixed width. A broker sizes a response
    /// from this before building it.
    pub const fn encoded_bytes(replicas: usize, in_sync_replicas: usize) -> usize {
        // error_code, partition, leader_id, leader_epoch, then two u32 arrays.
        2 + 4 + 4 + 4 + (4 + 4 * replicas) + (4 + 4 * in_sync_replicas)
    }
}

wire_struct! {
    /// One topic's metadata.
    pub struct TopicMetadata {
        /// `None`, or why the topic cannot be described (e.g. `UnknownTopicOrPartition`).
        pub error_code: ErrorCode,
        /// The topic name.
        pub name: String,
        /// Its partitions, by index.
        pub partitions: Vec<PartitionMetadata>,
    }
}

wire_struct! {
    /// The cluster as this broker sees it.
    pub struct MetadataResponse {
        /// A stable id for the cluster.
        pub cluster_id: String,
        /// Node id of the controller, or -1.
        pub controller_id: i32,
        /// Live brokers.
        pub brokers: Vec<BrokerMetadata>,
        /// The requested topics.
        pub topics: Vec<TopicMetadata>,
    }
}
