//! Fetch (key 6): reads record batches, waiting up to `max_wait_ms` for `min_bytes`.
//!
//! The response carries whole batches exactly as stored, so a broker can send them
//! straight from its page cache; see [`crate::wire::VectoredBuf`].
//!
//! Version 1 adds leader epochs (KIP-320): a consumer names the leader epoch it knows
//! from the metadata, so a stale leader or a stale consumer is told apart, and the epoch
//! of the last batch it read, so the leader can tell it where its log diverged from what
//! the consumer read (after an unclean election). The answer names the leader's epoch,
//! and where the consumer's records diverge. Version 0 lacks these fields: decoded from
//! it, they are [`NO_EPOCH`] (and 0), and encoding at it leaves them out. These types
//! are therefore [`Versioned`], not [`crate::wire::Wire`].

use bytes::Bytes;

use crate::error::{DecodeError, ErrorCode};
use crate::messages::NO_EPOCH;
use crate::wire::{Reader, Sink, Versioned, Wire, decode_versioned_array, encode_versioned_array};

/// The first Fetch version with leader epochs.
pub const FETCH_VERSION_EPOCHS: u16 = 1;

/// Where to read one partition from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    /// The partition index.
    pub partition: u32,
    /// The leader epoch the consumer knows from its metadata, or [`NO_EPOCH`]: a leader
    /// with an older epoch answers `UnknownLeaderEpoch`, one with a newer epoch
    /// `FencedLeaderEpoch` (version 1).
    pub current_leader_epoch: u32,
    /// The first offset wanted.
    pub fetch_offset: u64,
    /// The epoch of the last batch the consumer read before `fetch_offset`, or
    /// [`NO_EPOCH`]: the leader checks that its own log has this epoch up to
    /// `fetch_offset` (version 1).
    pub last_fetched_epoch: u32,
    /// At most this many bytes for this partition (at least one whole batch is
    /// returned even if it is larger, so a consumer never stalls).
    pub partition_max_bytes: u32,
}

impl Versioned for FetchPartition {
    fn encode_versioned<S: Sink + ?Sized>(&self, version: u16, out: &mut S) {
        self.partition.encode(out);
        if version >= FETCH_VERSION_EPOCHS {
            self.current_leader_epoch.encode(out);
        }
        self.fetch_offset.encode(out);
        if version >= FETCH_VERSION_EPOCHS {
            self.last_fetched_epoch.encode(out);
        }
        self.partition_max_bytes.encode(out);
    }

    fn decode_versioned(reader: &mut Reader<'_>, version: u16) -> Result<Self, DecodeError> {
        let epochs = version >= FETCH_VERSION_EPOCHS;
        let partition = u32::decode(reader)?;
        let current_leader_epoch = if epochs {
            u32::decode(reader)?
        } else {
            NO_EPOCH
        };
        let fetch_offset = u64::decode(reader)?;
        let last_fetched_epoch = if epochs {
            u32::decode(reader)?
        } else {
            NO_EPOCH
        };
        Ok(Self {
            partition,
            current_leader_epoch,
            fetch_offset,
            last_fetched_epoch,
            partition_max_bytes: u32::decode(reader)?,
        })
    }
}

/// Partitions to read from one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    /// The topic name.
    pub name: String,
    /// The partitions.
    pub partitions: Vec<FetchPartition>,
}

impl Versioned for FetchTopic {
    fn encode_versioned<S: Sink + ?Sized>(&self, version: u16, out: &mut S) {
        self.name.encode(out);
        encode_versioned_array(&self.partitions, version, out);
    }

    fn decode_versioned(reader: &mut Reader<'_>, version: u16) -> Result<Self, DecodeError> {
        Ok(Self {
            name: String::decode(reader)?,
            partitions: decode_versioned_array(reader, version)?,
        })
    }
}

/// Reads batches from partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Versioned for FetchRequest {
    fn encode_versioned<S: Sink + ?Sized>(&self, version: u16, out: &mut S) {
        self.max_wait_ms.encode(out);
        self.min_bytes.encode(out);
        self.max_bytes.encode(out);
        encode_versioned_array(&self.topics, version, out);
    }

    fn decode_versioned(reader: &mut Reader<'_>, version: u16) -> Result<Self, DecodeError> {
        Ok(Self {
            max_wait_ms: u32::decode(reader)?,
            min_bytes: u32::decode(reader)?,
            max_bytes: u32::decode(reader)?,
            topics: decode_versioned_array(reader, version)?,
        })
    }
}

/// Data for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResponse {
    /// The partition index.
    pub partition: u32,
    /// `None` on success.
    pub error_code: ErrorCode,
    /// The leader's epoch, or [`NO_EPOCH`] if the broker does not lead the partition
    /// (version 1).
    pub leader_epoch: u32,
    /// Offsets below this are readable.
    pub high_watermark: u64,
    /// The first offset in the log.
    pub log_start_offset: u64,
    /// [`NO_EPOCH`], or the largest epoch at or below the request's
    /// `last_fetched_epoch` that the leader's log has, when the records the consumer
    /// read diverge from the leader's log: the consumer goes back to
    /// `diverging_end_offset` (if it is below its position). `records` is then empty
    /// (version 1).
    pub diverging_epoch: u32,
    /// Where that epoch ends in the leader's log; 0 when `diverging_epoch` is
    /// [`NO_EPOCH`] (version 1).
    pub diverging_end_offset: u64,
    /// Whole record batches laid end to end; empty if none.
    pub records: Bytes,
}

impl Versioned for FetchPartitionResponse {
    fn encode_versioned<S: Sink + ?Sized>(&self, version: u16, out: &mut S) {
        let epochs = version >= FETCH_VERSION_EPOCHS;
        self.partition.encode(out);
        self.error_code.encode(out);
        if epochs {
            self.leader_epoch.encode(out);
        }
        self.high_watermark.encode(out);
        self.log_start_offset.encode(out);
        if epochs {
            self.diverging_epoch.encode(out);
            self.diverging_end_offset.encode(out);
        }
        self.records.encode(out);
    }

    fn decode_versioned(reader: &mut Reader<'_>, version: u16) -> Result<Self, DecodeError> {
        let epochs = version >= FETCH_VERSION_EPOCHS;
        let partition = u32::decode(reader)?;
        let error_code = ErrorCode::decode(reader)?;
        let leader_epoch = if epochs {
            u32::decode(reader)?
        } else {
            NO_EPOCH
        };
        let high_watermark = u64::decode(reader)?;
        let log_start_offset = u64::decode(reader)?;
        let (diverging_epoch, diverging_end_offset) = if epochs {
            (u32::decode(reader)?, u64::decode(reader)?)
        } else {
            (NO_EPOCH, 0)
        };
        Ok(Self {
            partition,
            error_code,
            leader_epoch,
            high_watermark,
            log_start_offset,
            diverging_epoch,
            diverging_end_offset,
            records: Bytes::decode(reader)?,
        })
    }
}

/// Data for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResponse {
    /// The topic name.
    pub name: String,
    /// Per-partition data.
    pub partitions: Vec<FetchPartitionResponse>,
}

impl Versioned for FetchTopicResponse {
    fn encode_versioned<S: Sink + ?Sized>(&self, version: u16, out: &mut S) {
        self.name.encode(out);
        encode_versioned_array(&self.partitions, version, out);
    }

    fn decode_versioned(reader: &mut Reader<'_>, version: u16) -> Result<Self, DecodeError> {
        Ok(Self {
            name: String::decode(reader)?,
            partitions: decode_versioned_array(reader, version)?,
        })
    }
}

/// Fetched data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// Per-topic data.
    pub topics: Vec<FetchTopicResponse>,
}

impl Versioned for FetchResponse {
    fn encode_versioned<S: Sink + ?Sized>(&self, version: u16, out: &mut S) {
        encode_versioned_array(&self.topics, version, out);
    }

    fn decode_versioned(reader: &mut Reader<'_>, version: u16) -> Result<Self, DecodeError> {
        Ok(Self {
            topics: decode_versioned_array(reader, version)?,
        })
    }
}
