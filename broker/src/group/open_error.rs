//! Why the group coordinator could not start: its offsets log did not open, or a record
//! in it could not be read back. Either stops the broker, because serving groups from a
//! partial replay would hand out partitions and offsets the log contradicts. Damaged bytes
//! ([`GroupOpenError::is_damage`]) do not: they take only their partition offline, and the
//! groups in it are refused rather than served from a partial replay.

use std::path::PathBuf;

use strata_protocol::{BatchError, DecodeError};

use crate::group::store::OFFSETS_LOG;
use crate::partition::PartitionError;

/// Why the offsets log could not be opened or replayed.
#[derive(Debug, thiserror::Error)]
pub enum GroupOpenError {
    /// `group_offsets_partitions` differs from the partitions already on disk.
    #[error(
        "{data_dir} holds {existing} partitions of {OFFSETS_LOG} but group_offsets_partitions is {configured}; it cannot change after the first start (groups would lose their offsets)"
    )]
    PartitionCountChanged {
        /// The data directory.
        data_dir: PathBuf,
        /// Partitions on disk.
        existing: u32,
        /// `group_offsets_partitions`.
        configured: u32,
    },
    /// A partition's log could not be opened or recovered.
    #[error("cannot open {OFFSETS_LOG}-{partition}: {source}")]
    Open {
        /// The partition.
        partition: u32,
        /// Why.
        source: PartitionError,
    },
    /// A partition could not be read.
    #[error("cannot read {OFFSETS_LOG}-{partition} at {offset}: {source}")]
    Read {
        /// The partition.
        partition: u32,
        /// Where the read started.
        offset: u64,
        /// Why.
        source: PartitionError,
    },
    /// A batch or record failed its checks.
    #[error("{OFFSETS_LOG}-{partition} near offset {offset}: {source}")]
    Batch {
        /// The partition.
        partition: u32,
        /// The offset reading had reached.
        offset: u64,
        /// Why.
        source: BatchError,
    },
    /// A record has no key, so it names no group.
    #[error("{OFFSETS_LOG}-{partition} offset {offset}: a record without a key")]
    MissingKey {
        /// The partition.
        partition: u32,
        /// The record's offset.
        offset: u64,
    },
    /// A record's key or value is not a group record.
    #[error("{OFFSETS_LOG}-{partition} offset {offset}: {source}")]
    Record {
        /// The partition.
        partition: u32,
        /// The record's offset.
        offset: u64,
        /// Why.
        source: DecodeError,
    },
}

impl GroupOpenError {
    /// Whether the log's bytes are damaged (a batch fails its checks), as opposed to a
    /// record this broker cannot read or a log it cannot open: damage takes only that
    /// partition offline.
    pub fn is_damage(&self) -> bool {
        match self {
            Self::Batch { .. } => true,
            Self::Read {
                source: PartitionError::Storage(error),
                ..
            } => error.is_corruption(),
            _ => false,
        }
    }

    /// The offset reading had reached; 0 for an error that is not about a record.
    pub fn offset(&self) -> u64 {
        match self {
            Self::Read { offset, .. }
            | Self::Batch { offset, .. }
            | Self::MissingKey { offset, .. }
            | Self::Record { offset, .. } => *offset,
            Self::PartitionCountChanged { .. } | Self::Open { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_storage::StorageError;

    use super::*;

    #[test]
    fn only_damaged_bytes_take_a_partition_offline() {
        let crc = GroupOpenError::Batch {
            partition: 0,
            offset: 7,
            source: BatchError::CrcMismatch {
                stored: 1,
                computed: 2,
            },
        };
        let corrupt_read = GroupOpenError::Read {
            partition: 0,
            offset: 3,
            source: PartitionError::Storage(StorageError::Corrupt {
                path: PathBuf::from("d/__consumer_offsets-0/00000000000000000000.log"),
                reason: "torn batch".into(),
            }),
        };
        let failed_read = GroupOpenError::Read {
            partition: 0,
            offset: 3,
            source: PartitionError::Storage(StorageError::Closed {
                dir: PathBuf::from("d/__consumer_offsets-0"),
            }),
        };
        let unknown_record = GroupOpenError::Record {
            partition: 0,
            offset: 9,
            source: DecodeError::UnexpectedEof {
                offset: 0,
                need: 2,
                have: 0,
            },
        };
        assert!(crc.is_damage() && corrupt_read.is_damage());
        assert!(!failed_read.is_damage() && !unknown_record.is_damage());
        assert_eq!((crc.offset(), corrupt_read.offset()), (7, 3));
    }
}
