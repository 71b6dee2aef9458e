//! Appends, as the leader and as a follower, and rolling to a new segment by size, age or
//! relative-offset range.

use std::sync::Arc;

use strata_protocol::BatchError;
use strata_protocol::batch::{self, BatchHeader, STAMPED_PREFIX_BYTES};

use super::{AppendInfo, AppendState, Log, LogInner, lock};
use crate::config::Durability;
use crate::error::{Result, StorageError};
use crate::producer::Verdict;
use crate::segment::Segment;

fn invalid(offset: u64, source: BatchError) -> StorageError {
    StorageError::InvalidBatch { offset, source }
}

/// Checks that `batch` is exactly one batch with consistent counts (cheap; no CRC).
fn check_shape(batch: &[u8], offset: u64) -> Result<BatchHeader> {
    let header = BatchHeader::parse(batch).map_err(|source| invalid(offset, source))?;
    if header.total_len() != batch.len() {
        let source = BatchError::InvalidLength {
            length: header.total_len() as u64,
            min: batch.len(),
            max: batch.len(),
        };
        return Err(invalid(offset, source));
    }
    if header.record_count == 0 || header.last_offset_delta != header.record_count - 1 {
        let source = BatchError::Inconsistent {
            reason: "last_offset_delta is not record_count - 1",
        };
        return Err(invalid(offset, source));
    }
    Ok(header)
}

impl Log {
    /// Appends a batch as the leader: the batch gets `base_offset = log_end_offset` and
    /// `leader_epoch`, stamped into its first 16 bytes on the way to disk (the CRC does not
    /// cover them). The caller has validated it with `batch::validate`. The batch is in the
    /// page cache when this returns (it survives `kill -9`); durability follows the policy.
    /// A `leader_epoch` newer than the log's latest starts a leader-epoch entry at the
    /// batch's base offset.
    ///
    /// # Errors
    /// [`StorageError::StaleLeaderEpoch`] if `leader_epoch` is older than the latest,
    /// [`StorageError::Poisoned`], [`StorageError::BatchTooLarge`],
    /// [`StorageError::InvalidBatch`] if the length or counts disagree,
    /// [`StorageError::NoSpace`] or [`StorageError::Io`] (nothing became visible).
    pub fn append(&self, batch: &[u8], leader_epoch: u32) -> Result<AppendInfo> {
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        LogInner::check_epoch(&state, leader_epoch)?;
        let base_offset = self.inner.log_end_offset();
        let header = check_shape(batch, base_offset)?;
        if let Verdict::Duplicate(base_offset, last_offset, max_timestamp) =
            state.producers.check(&header)?
        {
            drop(state);
            // The retry of a batch whose flush ran out of space or descriptors: flush
            // again, and let the retry wait for that attempt, not fail on the last one.
            if last_offset >= self.durable_offset() {
                self.inner.retry_held_flush();
            }
            return Ok(AppendInfo {
                base_offset,
                last_offset,
                log_end_offset: self.inner.log_end_offset(),
                max_timestamp,
                duplicate: true,
            });
        }
        let header = BatchHeader {
            base_offset,
            leader_epoch,
            ..header
        };
        let prefix = batch::stamped_prefix(batch, base_offset, leader_epoch);
        let rest = batch.get(STAMPED_PREFIX_BYTES..).expect("checked length");
        self.inner.write_batch(&mut state, &prefix, rest, &header)
    }

    /// Appends a batch as a follower: keeps its own offsets and epoch, which must start
    /// exactly at the log end offset. Its CRC is verified. Its leader epoch follows the
    /// rule of [`append`](Self::append).
    ///
    /// # Errors
    /// [`StorageError::NonContiguous`], [`StorageError::InvalidBatch`], and as
    /// [`append`](Self::append).
    pub fn append_replicated(&self, batch: &[u8]) -> Result<AppendInfo> {
        let log_end_offset = self.inner.log_end_offset();
        batch::verify_crc(batch).map_err(|source| invalid(log_end_offset, source))?;
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        let log_end_offset = self.inner.log_end_offset();
        let header = check_shape(batch, log_end_offset)?;
        if header.base_offset != log_end_offset {
            return Err(StorageError::NonContiguous {
                base_offset: header.base_offset,
                log_end_offset,
            });
        }
        LogInner::check_epoch(&state, header.leader_epoch)?;
        let (prefix, rest) = batch.split_at(STAMPED_PREFIX_BYTES);
        self.inner.write_batch(&mut state, prefix, rest, &header)
    }

    /// Seals the active segment and starts a new one at the log end offset, unless the
    /// active segment is empty. The sealed segment is fsync'd by the flusher.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`] or the I/O error creating the new segment (which poisons
    /// the log unless it is [`out_of_resources`](StorageError::out_of_resources)).
    pub fn roll(&self) -> Result<()> {
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        self.inner.roll_locked(&mut state).map(drop)
    }
}

impl LogInner {
    fn write_batch(
        &self,
        state: &mut AppendState,
        prefix: &[u8],
        rest: &[u8],
        header: &BatchHeader,
    ) -> Result<AppendInfo> {
        let length = header.total_len();
        if length as u64 > self.config().segment_bytes {
            return Err(StorageError::BatchTooLarge {
                batch_bytes: length,
                segment_bytes: self.config().segment_bytes,
            });
        }
        let active = self.active_for(state, header)?;
        if let Err(failure) = active.append(prefix, rest, header) {
            if !failure.rolled_back {
                self.poison(format!(
                    "rollback after a failed write failed: {}",
                    failure.error
                ));
            }
            return Err(failure.error);
        }
        let now_ms = self.io.now_ms();
        if state.active_since_ms.is_none() {
            state.active_since_ms = Some(now_ms);
        }
        state
            .producers
            .apply(header, now_ms, self.config().producers_max);
        self.publish_batch(
            state,
            header.leader_epoch,
            header.base_offset,
            header.next_offset(),
        );
        if self.config().durability == Durability::EveryBatch {
            self.request_flush();
        }
        Ok(AppendInfo {
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            log_end_offset: header.next_offset(),
            max_timestamp: header.max_timestamp,
            duplicate: false,
        })
    }

    /// The segment the batch goes to, rolling first when size, age or relative offsets
    /// require it.
    fn active_for(&self, state: &mut AppendState, header: &BatchHeader) -> Result<Arc<Segment>> {
        let active = self.active();
        if active.is_empty() {
            return Ok(active);
        }
        let full =
            active.committed_bytes() + header.total_len() as u64 > self.config().segment_bytes;
        let old = state.active_since_ms.is_some_and(|since| {
            let age = self.io.now_ms().saturating_sub(since);
            u64::try_from(age).is_ok_and(|age| age >= self.config().segment_ms)
        });
        let offsets_overflow = header.last_offset() - active.base_offset() > u64::from(u32::MAX);
        if full || old || offsets_overflow {
            return self.roll_locked(state);
        }
        Ok(active)
    }

    fn roll_locked(&self, state: &mut AppendState) -> Result<Arc<Segment>> {
        let old = self.active();
        if old.is_empty() {
            return Ok(old);
        }
        let base_offset = self.log_end_offset();
        assert_eq!(
            old.next_offset(),
            base_offset,
            "active segment ends at the log end"
        );
        let interval = self.config().index_interval_bytes;
        let created = Segment::create_unsynced(self.io.as_ref(), &self.dir, base_offset, interval);
        let new = match created {
            Ok(segment) => Arc::new(segment),
            Err(error) => {
                // Running out of space or descriptors creating a file changed nothing; any
                // other failure leaves the directory's state unknown.
                if !error.out_of_resources() {
                    self.poison(format!("roll to {base_offset} failed: {error}"));
                }
                return Err(error);
            }
        };
        state.dir_unsynced = true;
        old.seal_index();
        let mut segments = self.segments().as_ref().clone();
        segments.push(Arc::clone(&new));
        self.replace_segments(segments);
        state.unsynced.push(old);
        state.active_since_ms = None;
        let config = self.config();
        state
            .producers
            .expire(self.io.now_ms(), config.producer_expiration_ms);
        state
            .snapshots
            .push((base_offset, state.producers.encode(base_offset)));
        // Sealed segments are fsync'd whatever the policy, so the recovery point advances.
        // Under `Never` the whole segment is dirty: it is written back in the background
        // first, paced, then fsync'd. Under the others little of it is: the flusher
        // fsyncs it with the next flush.
        match (self.config().durability, self.registration.get()) {
            (Durability::Never, Some(&id)) => self.flusher.write_back(id),
            _ => self.request_flush(),
        }
        Ok(new)
    }
}
