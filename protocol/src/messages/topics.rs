//! Topic administration: CreateTopics (key 2), DeleteTopics (key 3) and
//! CreatePartitions (key 4). Each topic succeeds or fails on its own.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

wire_struct! {
    /// One topic configuration override, such as `retention_ms` = `86400000`.
    pub struct ConfigEntry {
        /// The configuration key.
        pub key: String,
        /// The value, as text.
        pub value: String,
    }
}

wire_struct! {
    /// A topic to create.
    pub struct CreatableTopic {
        /// The topic name.
        pub name: String,
        /// Partitions to create.
        pub partition_count: u32,
        /// Copies of each partition.
        pub replication_factor: u16,
        /// Overrides of the broker's topic defaults.
        pub configs: Vec<ConfigEntry>,
    }
}

wire_struct! {
    /// Creates topics.
    pub struct CreateTopicsRequest {
        /// The topics.
        pub topics: Vec<CreatableTopic>,
        /// How long to wait for creation to complete.
        pub timeout_ms: u32,
        /// Validate only; create nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// The outcome for one topic of an admin request.
    pub struct TopicResult {
        /// The topic name.
        pub name: String,
        /// `None` on success.
        pub error_code: ErrorCode,
        /// Details beyond the code's own message.
        pub error_message: Option<String>,
    }
}

wire_struct! {
    /// Per-topic outcomes of CreateTopics.
    pub struct CreateTopicsResponse {
        /// One result per requested topic.
        pub topics: Vec<TopicResult>,
    }
}

wire_struct! {
    /// Deletes topics and all their data.
    pub struct DeleteTopicsRequest {
        /// The topic names.
        pub names: Vec<String>,
        /// How long to wait for deletion to complete.
        pub timeout_ms: u32,
    }
}

wire_struct! {
    /// Per-topic outcomes of DeleteTopics.
    pub struct DeleteTopicsResponse {
        /// One result per requested topic.
        pub topics: Vec<TopicResult>,
    }
}

wire_struct! {
    /// A topic's new, larger partition count.
    pub struct PartitionCountChange {
        /// The topic name.
        pub name: String,
        /// The total partition count after the change.
        pub partition_count: u32,
    }
}

wire_struct! {
    /// Adds partitions to existing topics.
    pub struct CreatePartitionsRequest {
        /// The changes.
        pub topics: Vec<PartitionCountChange>,
        /// How long to wait for the change to complete.
        pub timeout_ms: u32,
        /// Validate only; change nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// Per-topic outcomes of CreatePartitions.
    pub struct CreatePartitionsResponse {
        /// One result per requested topic.
        pub topics: Vec<TopicResult>,
    }
}

wire_struct! {
    /// Describes topics in detail: configs, and each partition's offsets and size.
    pub struct DescribeTopicsRequest {
        /// Topic names, or `None` for every topic.
        pub names: Option<Vec<String>>,
    }
}

wire_struct! {
    /// One partition in detail.
    pub struct DescribedPartition {
        /// `None`, or `PartitionOffline` when the partition's data failed its checks at
        /// startup (its offsets and size are then 0).
        pub error_code: ErrorCode,
        /// What failed and in which file, for an offline partition.
        pub error_message: Option<String>,
        /// The partition index.
        pub partition: u32,
        /// Node id of the leader, or -1.
        pub leader_id: i32,
        /// The leader's epoch.
        pub leader_epoch: u32,
        /// Node ids of every replica.
        pub replicas: Vec<u32>,
        /// Node ids of the in-sync replicas.
        pub in_sync_replicas: Vec<u32>,
        /// The first offset in the log.
        pub log_start_offset: u64,
        /// Offsets below this are visible to consumers.
        pub high_watermark: u64,
        /// The offset the next record will get.
        pub log_end_offset: u64,
        /// Bytes of the partition's segments on the leader's disk.
        pub size_bytes: u64,
    }
}

impl DescribedPartition {
    /// Bytes of an entry's encoding with `replicas` replicas, `in_sync_replicas` in-sync
    /// replicas and an error message of `error_message_bytes` bytes (`None` for no
    /// message): every other field has a fixed width. A broker sizes a response from this
    /// before building it.
    pub const fn encoded_bytes(
        replicas: usize,
        in_sync_replicas: usize,
        error_message_bytes: Option<usize>,
    ) -> usize {
        let error_message = match error_message_bytes {
            Some(bytes) => 2 + bytes,
            None => 2,
        };
        // error_code, error_message, partition, leader_id, leader_epoch, two u32 arrays,
        // then four u64 offsets.
        2 + error_message + 4 + 4 + 4 + (4 + 4 * replicas) + (4 + 4 * in_sync_replicas) + 4 * 8
    }
}

wire_struct! {
    /// One topic in detail.
    pub struct DescribedTopic {
        /// `None`, or why the topic cannot be described (`UnknownTopicOrPartition`).
        pub error_code: ErrorCode,
        /// Details beyond the code's own message.
        pub error_message: Option<String>,
        /// The topic name.
        pub name: String,
        /// Every effective config value (broker defaults with the topic's overrides).
        pub configs: Vec<ConfigEntry>,
        /// Keys of `configs` whose value the topic overrides: it differs from the
        /// broker's topic default.
        pub overridden_keys: Vec<String>,
        /// Its partitions, by index.
        pub partitions: Vec<DescribedPartition>,
    }
}

wire_struct! {
    /// The described topics.
    pub struct DescribeTopicsResponse {
        /// One entry per requested topic (or every topic), by name.
        pub topics: Vec<DescribedTopic>,
    }
}

wire_struct! {
    /// New values for some of one topic's configs.
    pub struct TopicConfigChange {
        /// The topic name.
        pub name: String,
        /// The keys to set and their new values; keys not listed keep their values.
        pub configs: Vec<ConfigEntry>,
    }
}

wire_struct! {
    /// Changes topic configs on live topics.
    pub struct AlterTopicConfigsRequest {
        /// The changes.
        pub topics: Vec<TopicConfigChange>,
        /// Validate only; change nothing.
        pub validate_only: bool,
    }
}

wire_struct! {
    /// Per-topic outcomes of AlterTopicConfigs.
    pub struct AlterTopicConfigsResponse {
        /// One result per requested topic.
        pub topics: Vec<TopicResult>,
    }
}
