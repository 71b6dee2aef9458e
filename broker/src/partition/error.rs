//! Why a partition operation failed, and the wire code each failure maps to.

use strata_protocol::ErrorCode;
use strata_storage::StorageError;

use crate::producer_ids::ProducerIdError;

/// Why a partition operation failed; each maps to a wire error code.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// No such topic or partition.
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A batch failed validation.
    #[error("batch {index} of the request is invalid: {source}")]
    InvalidBatch {
        /// The batch's position in the request.
        index: usize,
        /// Why.
        source: strata_protocol::BatchError,
    },
    /// A batch uses a feature this broker does not implement.
    #[error("batch {index}: {reason}")]
    UnsupportedBatch {
        /// The batch's position in the request.
        index: usize,
        /// What is unsupported.
        reason: &'static str,
    },
    /// A batch's max timestamp is further ahead of the broker's clock than
    /// `message_timestamp_after_ms_max`.
    #[error(
        "batch {index}: its max timestamp {max_timestamp} is more than message_timestamp_after_ms_max ahead of the broker's clock (the latest accepted now is {latest_ms})"
    )]
    TimestampTooFarAhead {
        /// The batch's position in the request.
        index: usize,
        /// The batch's max timestamp.
        max_timestamp: i64,
        /// The latest max timestamp accepted now.
        latest_ms: i64,
    },
    /// A batch's producer id or epoch was never given out in the cluster.
    #[error("batch {index}: {source}")]
    ProducerId {
        /// The batch's position in the request.
        index: usize,
        /// Why.
        source: ProducerIdError,
    },
    /// The request carried no batch.
    #[error("the request carries no record batch for this partition")]
    Empty,
    /// A batch is larger than the topic's `max_message_bytes`.
    #[error("batch of {bytes} bytes exceeds the topic's max_message_bytes {max}")]
    MessageTooLarge {
        /// The batch size.
        bytes: usize,
        /// The limit.
        max: u32,
    },
    /// `acks = all` was not confirmed on every in-sync replica within the request timeout.
    #[error(
        "the write was appended but not confirmed on every in-sync replica within the request timeout"
    )]
    Timeout,
    /// The partition's data failed its checks when the broker opened it.
    #[error(
        "partition {topic}-{partition} is offline: {reason}; delete the topic, or restore the partition's directory and restart the broker (docs/storage.md, \"An offline partition\")"
    )]
    Offline {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The storage error recovery reported: the file, where, and what is wrong.
        reason: String,
    },
    /// Another broker leads the partition.
    #[error("broker {leader} at {address} leads partition {topic}-{partition}, not this broker")]
    NotLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The leader's node id.
        leader: u32,
        /// The leader's client address.
        address: String,
    },
    /// No broker can serve the partition right now.
    #[error("partition {topic}-{partition} has no leader: {reason}")]
    LeaderNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Why.
        reason: String,
    },
    /// `acks = all` while fewer replicas are in sync than the topic's minimum: nothing
    /// was written.
    #[error(
        "partition {topic}-{partition} has {in_sync} in-sync replicas, below min_insync_replicas {min}: an acks=all write is refused"
    )]
    NotEnoughReplicas {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Replicas in sync now.
        in_sync: usize,
        /// The effective minimum.
        min: usize,
    },
    /// The write was appended, but the in-sync set fell below the minimum before it
    /// was replicated to every member.
    #[error(
        "the write was appended, but partition {topic}-{partition}'s in-sync replicas fell below min_insync_replicas before every one had it"
    )]
    NotEnoughReplicasAfterAppend {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A fetch (a follower's or a consumer's) named an older leader epoch than this
    /// leader's.
    #[error("leader epoch {given} is older than partition {topic}-{partition}'s {current}")]
    FencedLeaderEpoch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The epoch the request named.
        given: u32,
        /// This broker's.
        current: u32,
    },
    /// A fetch (a follower's or a consumer's) named a newer leader epoch than this
    /// broker knows.
    #[error(
        "leader epoch {given} of partition {topic}-{partition} is newer than this broker's {current}"
    )]
    UnknownLeaderEpoch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The epoch the request named.
        given: u32,
        /// This broker's.
        current: u32,
    },
    /// A new leader's high watermark has not reached the start of its own epoch yet.
    #[error(
        "partition {topic}-{partition}'s new leader has not yet confirmed its log up to offset {epoch_start} (its high watermark is {high_watermark}); retry"
    )]
    OffsetNotAvailable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The high watermark now.
        high_watermark: u64,
        /// Where this leader's epoch starts.
        epoch_start: u64,
    },
    /// The storage layer failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl PartitionError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            PartitionError::UnknownPartition { .. } => ErrorCode::UnknownTopicOrPartition,
            PartitionError::InvalidBatch { source, .. } => source.error_code(),
            PartitionError::UnsupportedBatch { .. } | PartitionError::Empty => {
                ErrorCode::InvalidBatch
            }
            PartitionError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            PartitionError::TimestampTooFarAhead { .. } => ErrorCode::InvalidTimestamp,
            PartitionError::ProducerId { source, .. } => source.code(),
            PartitionError::Timeout => ErrorCode::RequestTimedOut,
            PartitionError::Offline { .. } => ErrorCode::PartitionOffline,
            PartitionError::NotLeader { .. } => ErrorCode::NotLeader,
            PartitionError::LeaderNotAvailable { .. } => ErrorCode::LeaderNotAvailable,
            PartitionError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            PartitionError::NotEnoughReplicasAfterAppend { .. } => {
                ErrorCode::NotEnoughReplicasAfterAppend
            }
            PartitionError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            PartitionError::UnknownLeaderEpoch { .. } => ErrorCode::UnknownLeaderEpoch,
            PartitionError::OffsetNotAvailable { .. } => ErrorCode::OffsetNotAvailable,
            PartitionError::Storage(error) => match error {
                error if error.out_of_resources() => ErrorCode::StorageFull,
                StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                StorageError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequence,
                StorageError::ProducerFenced { .. } => ErrorCode::ProducerFenced,
                StorageError::StaleLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
                _ => ErrorCode::StorageError,
            },
        }
    }
}
