//! [`StorageError`]: every operating error the partition log reports, with context.

use std::io;
use std::path::{Path, PathBuf};

use strata_protocol::BatchError;

/// The result type of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// An operating error of the partition log. Bugs are `assert!`s, not variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file system call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The device is full (`ENOSPC`). Nothing partial became visible: the log stays usable
    /// once space is freed.
    #[error("no space left on the device holding {path}")]
    NoSpace {
        /// The file being written.
        path: PathBuf,
    },
    /// An earlier fsync (or a rollback after a failed write) failed, so the state of the
    /// disk is unknown. The log refuses writes until it is reopened, which re-runs recovery.
    #[error("log {dir} is poisoned and refuses writes: {reason}")]
    Poisoned {
        /// The partition directory.
        dir: PathBuf,
        /// What failed first.
        reason: String,
    },
    /// The log was closed or deleted; it refuses writes.
    #[error("log {dir} is closed")]
    Closed {
        /// The partition directory.
        dir: PathBuf,
    },
    /// The offset is below the log start or above the log end.
    #[error("offset {offset} is outside the log range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: u64,
        /// The first offset in the log.
        log_start_offset: u64,
        /// The offset the next batch will get.
        log_end_offset: u64,
    },
    /// A replicated batch does not start at the log end offset.
    #[error("replicated batch starts at offset {base_offset} but the log ends at {log_end_offset}")]
    NonContiguous {
        /// The batch's own base offset.
        base_offset: u64,
        /// The log end offset it should have had.
        log_end_offset: u64,
    },
    /// The batch bytes are malformed (follower path, or a length that disagrees).
    #[error("invalid batch for offset {offset}: {source}")]
    InvalidBatch {
        /// The offset the batch would have had.
        offset: u64,
        /// What is wrong with it.
        #[source]
        source: BatchError,
    },
    /// One batch is larger than a whole segment.
    #[error("batch of {batch_bytes} bytes exceeds segment_bytes = {segment_bytes}")]
    BatchTooLarge {
        /// The batch size.
        batch_bytes: usize,
        /// The configured segment size limit.
        segment_bytes: u64,
    },
    /// `truncate_to` was given an offset inside a batch.
    #[error("offset {offset} is inside the batch starting at {batch_base_offset}")]
    NotBatchBoundary {
        /// The requested offset.
        offset: u64,
        /// The base offset of the batch that contains it.
        batch_base_offset: u64,
    },
    /// Committed data or a snapshot read back is damaged.
    #[error("corrupt {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Recovery found damage in data it must keep: below the recovery point, or anywhere
    /// in a log closed cleanly. That data was fsync'd and acknowledged, so recovery refuses
    /// to cut it as it cuts a torn tail, and the log does not open.
    #[error(
        "corrupt {path} at byte {position} (offset {offset}), below the recovery point: {reason}"
    )]
    CorruptBelowRecoveryPoint {
        /// The damaged segment file.
        path: PathBuf,
        /// Where in the file the damage starts.
        position: u64,
        /// The offset the data at `position` should have held.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another `Log` (in this or another process) has the directory open.
    #[error("log directory {dir} is locked by another open log")]
    Locked {
        /// The partition directory.
        dir: PathBuf,
    },
    /// An idempotent producer's batch does not continue its sequence: a gap (something
    /// before it is missing) or a new epoch not starting at 0. Nothing was written.
    #[error(
        "out-of-order sequence from producer {producer_id}: expected {expected}, received {received}"
    )]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// The sequence the next batch must start at.
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// An idempotent producer's batch carries an epoch older than the producer's current
    /// one: a newer instance of the producer has taken over. Nothing was written.
    #[error("producer {producer_id} is fenced: epoch {epoch} is older than {current_epoch}")]
    ProducerFenced {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The producer's current epoch.
        current_epoch: i16,
    },
    /// A batch carries a leader epoch older than the newest epoch in the log: a leader
    /// that lost its leadership (or a follower fed by one) wrote it. Nothing was written.
    #[error("leader epoch {epoch} is older than the log's latest leader epoch {latest}")]
    StaleLeaderEpoch {
        /// The batch's (or the append's) leader epoch.
        epoch: u32,
        /// The newest leader epoch in the log.
        latest: u32,
    },
    /// A [`LogConfig`](crate::LogConfig) value is out of range.
    #[error("invalid log config: {reason}")]
    InvalidConfig {
        /// Which rule was broken.
        reason: &'static str,
    },
}

impl StorageError {
    /// Wraps an I/O error with its path, giving `ENOSPC` its own variant.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Self::NoSpace {
                path: path.to_owned(),
            }
        } else {
            Self::Io {
                path: path.to_owned(),
                source,
            }
        }
    }

    /// Wraps the error of an fsync (of a file or a directory) with its path. Always
    /// [`StorageError::Io`], even for `ENOSPC`: after a failed fsync the state of the page
    /// cache is unknown, so it is never [`out_of_resources`](Self::out_of_resources).
    pub(crate) fn fsync(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Whether the call ran out of disk space or of file descriptors (`ENOSPC`, `EMFILE`,
    /// `ENFILE`) before it changed anything durable: creating, writing or renaming a new
    /// file, or opening a descriptor. The same call can succeed once space or descriptors
    /// are freed. Never true of a failed fsync ([`fsync`](Self::fsync)); `EMFILE` and
    /// `ENFILE` only come from opening a descriptor, never from an fsync itself.
    pub fn out_of_resources(&self) -> bool {
        self.resource_errno().is_some()
    }

    /// The file and `errno` of an [`out_of_resources`](Self::out_of_resources) error, from
    /// which [`io`](Self::io) rebuilds it.
    pub(crate) fn resource_errno(&self) -> Option<(&Path, i32)> {
        match self {
            Self::NoSpace { path } => Some((path, libc::ENOSPC)),
            Self::Io { path, source } => match source.raw_os_error() {
                Some(errno @ (libc::EMFILE | libc::ENFILE)) => Some((path, errno)),
                _ => None,
            },
            _ => None,
        }
    }

    /// A closure for `map_err` that adds `path`.
    pub(crate) fn at(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::io(path, source)
    }

    /// Whether this is damage found in data the log holds (as opposed to a failing
    /// device, a lock or a config): what takes one partition offline rather than a broker
    /// down.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::Corrupt { .. } | Self::CorruptBelowRecoveryPoint { .. }
        )
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_out_of_space_or_descriptors_outside_an_fsync_is_retriable() {
        let path = Path::new("00000000000000000000.index.tmp");
        let error = |errno| io::Error::from_raw_os_error(errno);
        for errno in [libc::ENOSPC, libc::EMFILE, libc::ENFILE] {
            let failed = StorageError::io(path, error(errno));
            assert!(failed.out_of_resources(), "{failed}");
            let (at, same) = failed.resource_errno().unwrap();
            assert_eq!((at, same), (path, errno));
        }
        assert!(!StorageError::io(path, error(libc::EIO)).out_of_resources());
        let fsync = StorageError::fsync(path, error(libc::ENOSPC));
        assert!(!fsync.out_of_resources(), "{fsync}");
        assert!(StorageError::fsync(path, error(libc::EMFILE)).out_of_resources());
    }
}
