//! ListOffsets (key 7): finds offsets by time, or the log's start and end.

use crate::error::ErrorCode;
use crate::wire::wire_struct;

/// Query timestamp meaning "the log end offset".
pub const LATEST_TIMESTAMP: i64 = -1;
/// Query timestamp meaning "the log start offset".
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// Offset or timestamp in a response when there is none.
pub const NONE: i64 = -1;

wire_struct! {
    /// One partition's query.
    pub struct ListOffsetsPartition {
        /// The partition index.
        pub partition: u32,
        /// [`LATEST_TIMESTAMP`], [`EARLIEST_TIMESTAMP`], or a time in ms: the first
        /// offset whose timestamp is at or after it.
        pub timestamp: i64,
    }
}

wire_struct! {
    /// Queries for one topic.
    pub struct ListOffsetsTopic {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<ListOffsetsPartition>,
    }
}

wire_struct! {
    /// Looks up offsets.
    pub struct ListOffsetsRequest {
        /// The queries.
        pub topics: Vec<ListOffsetsTopic>,
    }
}

wire_struct! {
    /// One partition's answer.
    pub struct ListOffsetsPartitionResponse {
        /// The partition index.
        pub partition: u32,
        /// `None` on success.
        pub error_code: ErrorCode,
        /// The found record's timestamp, or [`NONE`] for earliest/latest queries.
        pub timestamp: i64,
        /// The offset found, or [`NONE`] if no record is at or after the timestamp.
        pub offset: i64,
    }
}

wire_struct! {
    /// Answers for one topic.
    pub struct ListOffsetsTopicResponse {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<ListOffsetsPartitionResponse>,
    }
}

wire_struct! {
    /// The offsets found.
    pub struct ListOffsetsResponse {
        /// Per-topic answers.
        pub topics: Vec<ListOffsetsTopicResponse>,
    }
}
