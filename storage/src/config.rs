//! [`LogConfig`] and [`Durability`]: per-log limits and policies, each with a default.

use strata_protocol::batch::{HEADER_BYTES, RECORD_BYTES_MIN};

use crate::error::{Result, StorageError};

/// When appended bytes are fsync'd. Whatever the policy, an acknowledged append is in the
/// page cache and survives a process crash (`kill -9`); the policy decides what survives a
/// power loss. See `docs/storage.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every append asks the flusher for an fsync. Appends that arrive while an fsync runs
    /// share the next one (group commit).
    EveryBatch,
    /// The flusher fsyncs a dirty log at most this many milliseconds after the previous
    /// flush.
    IntervalMs(u64),
    /// Data is fsync'd only when a segment is sealed (roll) and on `close`.
    Never,
}

/// Default for [`LogConfig::segment_bytes`]: 1 GiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// Largest allowed `segment_bytes`. Index positions are `u32`; a segment holds at most
/// `segment_bytes` plus one batch that itself is at most `segment_bytes`.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 31;
/// Default for [`LogConfig::segment_ms`]: 7 days.
pub const SEGMENT_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;
/// Default for [`LogConfig::index_interval_bytes`].
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Default for [`LogConfig::retention_ms`]: 7 days.
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;
/// Default for [`LogConfig::producers_max`].
pub const PRODUCERS_MAX_DEFAULT: usize = 10_000;
/// Default for [`LogConfig::producer_expiration_ms`]: 7 days.
pub const PRODUCER_EXPIRATION_MS_DEFAULT: u64 = 7 * 24 * 3600 * 1000;
/// Default for [`Durability::IntervalMs`] when the default policy is used.
pub const FLUSH_INTERVAL_MS_DEFAULT: u64 = 1000;

const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(2 * SEGMENT_BYTES_MAX <= u32::MAX as u64 + 1);

/// Limits and policies of one partition log. Plain data: cheap to clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// A segment rolls before an append would take it past this size.
    pub segment_bytes: u64,
    /// A non-empty active segment rolls on the first append this long after its first
    /// batch (or after the log was opened).
    pub segment_ms: u64,
    /// Bytes of batches between two sparse index entries.
    pub index_interval_bytes: u32,
    /// Sealed segments whose newest timestamp is older than this are deleted; `None` keeps
    /// them forever.
    pub retention_ms: Option<u64>,
    /// Oldest sealed segments are deleted while the log stays at least this large without
    /// them; `None` means no size limit.
    pub retention_bytes: Option<u64>,
    /// When data is fsync'd.
    pub durability: Durability,
    /// Idempotent producers remembered per partition; past it the one whose newest batch
    /// is oldest in the log is forgotten (its retries are then no longer recognised).
    pub producers_max: usize,
    /// A producer that appended nothing for this long (by the broker's clock, never by
    /// record timestamps) is forgotten when a segment rolls.
    pub producer_expiration_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            retention_bytes: None,
            durability: Durability::IntervalMs(FLUSH_INTERVAL_MS_DEFAULT),
            producers_max: PRODUCERS_MAX_DEFAULT,
            producer_expiration_ms: PRODUCER_EXPIRATION_MS_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Checks every value is in range.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] naming the first broken rule.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason| Err(StorageError::InvalidConfig { reason });
        if self.segment_bytes < (HEADER_BYTES + RECORD_BYTES_MIN) as u64 {
            return invalid("segment_bytes is smaller than one batch");
        }
        if self.segment_bytes > SEGMENT_BYTES_MAX {
            return invalid("segment_bytes is above 2 GiB");
        }
        if self.segment_ms == 0 {
            return invalid("segment_ms is zero");
        }
        if self.durability == Durability::IntervalMs(0) {
            return invalid("Durability::IntervalMs(0); use EveryBatch");
        }
        if self.producers_max == 0 || u32::try_from(self.producers_max).is_err() {
            return invalid("producers_max is zero or above u32::MAX");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        assert!(LogConfig::default().validate().is_ok());
        let too_big = LogConfig {
            segment_bytes: SEGMENT_BYTES_MAX + 1,
            ..LogConfig::default()
        };
        assert!(too_big.validate().is_err());
        let zero_interval = LogConfig {
            durability: Durability::IntervalMs(0),
            ..LogConfig::default()
        };
        assert!(zero_interval.validate().is_err());
    }
}
