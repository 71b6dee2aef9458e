//! Fetch (key 6): reads record batches, waiting up to `max_wait_ms` for `min_bytes`.
//!
//! The response carries whole batches exactly as stored, so a broker can send them
//! straight from its page cache; see [`crate::wire::VectoredBuf`].

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::wire::wire_struct;

wire_struct! {
    /// Where to read one partition from.
    pub struct FetchPartition {
        /// The partition index.
        pub partition: u32,
        /// The first offset wanted.
        pub fetch_offset: u64,
        /// At most this many bytes for this partition (at least one whole batch is
        /// returned even if it is larger, so a consumer never stalls).
        pub partition_max_bytes: u32,
    }
}

wire_struct! {
    /// Partitions to read from one topic.
    pub struct FetchTopic {
        /// The topic name.
        pub name: String,
        /// The partitions.
        pub partitions: Vec<FetchPartition>,
    }
}

wire_struct! {
    /// Reads batches from partitions.
    pub struct FetchRequest {
        /// Longest time to wait for `min_bytes`.
        pub max_wait_ms: u32,
        /// Answer as soon as this many bytes are available.
        pub min_bytes: u32,
        /// At most this many bytes in the whole response (at least one batch is
        /// returned, as for `partition_max_bytes`).
        pub max_bytes: u32,
        /// What to read.
        pub topics: Vec<FetchTopic>,
    }
}

wire_struct! {
    /// Data for one partition.
    pub struct FetchPartitionResponse {
        /// The partition index.
        pub partition: u32,
        /// `None` on success.
        pub error_code: ErrorCode,
        /// Offsets below this are readable.
        pub high_watermark: u64,
        /// The first offset in the log.
        pub log_start_offset: u64,
        /// Whole record batches laid end to end; empty if none.
        pub records: Bytes,
    }
}

wire_struct! {
    /// Data for one topic.
    pub struct FetchTopicResponse {
        /// The topic name.
        pub name: String,
        /// Per-partition data.
        pub partitions: Vec<FetchPartitionResponse>,
    }
}

wire_struct! {
    /// Fetched data.
    pub struct FetchResponse {
        /// Per-topic data.
        pub topics: Vec<FetchTopicResponse>,
    }
}
