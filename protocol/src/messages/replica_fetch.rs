//! ReplicaFetch (key 19): a follower pulls record batches from a partition's leader,
//! served only on the cluster listener.
//!
//! Beside Fetch's fields, a follower says who it is (`replica_id` and the incarnation it
//! registered with, so a restarted broker is told apart from its earlier run), the leader
//! epoch it follows, the epoch of the last batch it holds and how far its log is durable.
//! The leader answers with its high watermark and log range, and when the follower's log
//! has diverged from its own, with the epoch and end offset to truncate to (KIP-279)
//! instead of records.
//!
//! Records are whole batches exactly as stored, as in Fetch, so the leader sends them
//! straight from its page cache; see [`crate::wire::VectoredBuf`].

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::wire::wire_struct;

/// An epoch field with no epoch: `last_fetched_epoch` of a follower that has fetched
/// nothing yet, `diverging_epoch` when the follower's log has not diverged.
pub const NO_EPOCH: u32 = u32::MAX;

wire_struct! {
    /// Where a follower reads one partition from.
    pub struct ReplicaFetchPartition {
        /// The partition index.
        pub partition: u32,
        /// The leader epoch the follower knows: the leader refuses an older one with
        /// `FencedLeaderEpoch` and a newer one with `UnknownLeaderEpoch`.
        pub current_leader_epoch: u32,
        /// The follower's log end offset: the first offset wanted.
        pub fetch_offset: u64,
        /// The epoch of the follower's last batch, or [`NO_EPOCH`] if its log is empty.
        /// The leader checks that its own log has this epoch up to `fetch_offset`.
        pub last_fetched_epoch: u32,
        /// Offsets below this are fsynced on the follower (under `durability=never`, its
        /// log end offset).
        pub durable_offset: u64,
        /// At most this many bytes for this partition (at least one whole batch is
        /// returned even if it is larger, so a follower never stalls).
        pub partition_max_bytes: u32,
    }
}

wire_struct! {
    /// Partitions to read from one topic.
    pub struct ReplicaFetchTopic {
        /// The topic name.
        pub name: String,
        /// The topic's id: a topic deleted and created again under the same name is
        /// refused rather than read.
        pub topic_id: u64,
        /// The partitions.
        pub partitions: Vec<ReplicaFetchPartition>,
    }
}

wire_struct! {
    /// Reads batches from partitions this broker leads, for a follower.
    pub struct ReplicaFetchRequest {
        /// The follower's broker id.
        pub replica_id: u32,
        /// The incarnation the follower registered with (see `ClusterBroker`).
        pub replica_incarnation: u64,
        /// Longest time to wait for new records when none are available.
        pub max_wait_ms: u32,
        /// At most this many bytes in the whole response (at least one batch is
        /// returned, as for `partition_max_bytes`).
        pub max_bytes: u32,
        /// What to read.
        pub topics: Vec<ReplicaFetchTopic>,
    }
}

wire_struct! {
    /// Data for one partition.
    pub struct ReplicaFetchPartitionResponse {
        /// The partition index.
        pub partition: u32,
        /// `None` on success.
        pub error_code: ErrorCode,
        /// The leader's current epoch.
        pub leader_epoch: u32,
        /// Offsets below this are committed: in the in-sync replicas' logs.
        pub high_watermark: u64,
        /// The first offset in the leader's log.
        pub log_start_offset: u64,
        /// The offset the leader's next record will get.
        pub log_end_offset: u64,
        /// [`NO_EPOCH`], or the largest epoch at or below `last_fetched_epoch` that the
        /// leader's log has, when the follower's log diverges from it: the follower
        /// truncates to `diverging_end_offset` and fetches again. `records` is then empty.
        pub diverging_epoch: u32,
        /// Where that epoch ends in the leader's log; 0 when `diverging_epoch` is
        /// [`NO_EPOCH`].
        pub diverging_end_offset: u64,
        /// Whole record batches laid end to end; empty if none.
        pub records: Bytes,
    }
}

wire_struct! {
    /// Data for one topic.
    pub struct ReplicaFetchTopicResponse {
        /// The topic name.
        pub name: String,
        /// Per-partition data.
        pub partitions: Vec<ReplicaFetchPartitionResponse>,
    }
}

wire_struct! {
    /// Fetched data for a follower.
    pub struct ReplicaFetchResponse {
        /// Per-topic data.
        pub topics: Vec<ReplicaFetchTopicResponse>,
    }
}
