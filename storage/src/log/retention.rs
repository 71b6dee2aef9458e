//! Retention: deleting the oldest sealed segments by age and by total size.

use std::sync::Arc;

use super::{Log, LogInner, RetentionOutcome, lock};
use crate::error::Result;
use crate::segment::Segment;

impl Log {
    /// Deletes the oldest sealed segments while their newest timestamp is older than
    /// `retention_ms` before `now_ms`, or while the log would still hold at least
    /// `retention_bytes` without them. Never deletes the active segment. Advances the log
    /// start offset to the first remaining segment, and the leader-epoch entries with it
    /// (the last one at or below the new start moves there, unless the log is left
    /// empty). Runs on a log whose writes fail for lack of space or descriptors, which are
    /// not poisoned: deleting is how space comes back.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned),
    /// [`StorageError::Closed`](crate::StorageError::Closed), or an I/O error unlinking
    /// files or syncing the directory (a failed directory fsync poisons the log).
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome> {
        let _maintenance = lock(&self.inner.maintenance);
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        let segments = self.inner.segments();
        let count = self.inner.expired_count(&segments, now_ms);
        let (removed, kept) = segments.split_at(count);
        let outcome = RetentionOutcome {
            segments_deleted: count,
            bytes_deleted: removed
                .iter()
                .map(|segment| segment.committed_bytes())
                .sum(),
            log_start_offset: kept.first().map_or(0, |segment| segment.base_offset()),
        };
        if count == 0 {
            return Ok(outcome);
        }
        self.inner.replace_segments(kept.to_vec());
        let log_end_offset = self.inner.log_end_offset();
        self.inner
            .change_epochs(&mut state, log_end_offset, |epochs| {
                epochs.truncate_from_start(outcome.log_start_offset);
            });
        state
            .unsynced
            .retain(|segment| !removed.iter().any(|gone| Arc::ptr_eq(gone, segment)));
        drop(state);
        for segment in removed {
            segment.remove_files(self.inner.io.as_ref())?;
        }
        self.inner
            .remove_snapshots(|offset| offset < outcome.log_start_offset)?;
        if let Err(error) = self.inner.sync_dir() {
            if error.out_of_resources() {
                // No descriptor to open the directory with: no fsync ran, so a flush's
                // can still make the deletes durable.
                lock(&self.inner.append).dir_unsynced = true;
                self.inner.request_flush();
            } else {
                // The same fsync may cover a rolled segment's entry (`dir_unsynced`), and
                // after a failed fsync a retry can succeed without making it durable.
                self.inner
                    .poison(format!("directory fsync after retention failed: {error}"));
            }
            return Err(error);
        }
        Ok(outcome)
    }
}

impl LogInner {
    /// Sealed segments that retention deletes, counted from the oldest.
    fn expired_count(&self, segments: &[Arc<Segment>], now_ms: i64) -> usize {
        let sealed = segments.len().saturating_sub(1);
        let mut total: u64 = segments
            .iter()
            .map(|segment| segment.committed_bytes())
            .sum();
        let mut count = 0;
        for segment in segments.iter().take(sealed) {
            let expired = self.config().retention_ms.is_some_and(|retention_ms| {
                let retention_ms = i64::try_from(retention_ms).unwrap_or(i64::MAX);
                segment.max_timestamp() < now_ms.saturating_sub(retention_ms)
            });
            let size = segment.committed_bytes();
            let oversized = self
                .config()
                .retention_bytes
                .is_some_and(|retention_bytes| total - size >= retention_bytes);
            if !expired && !oversized {
                break;
            }
            total -= size;
            count += 1;
        }
        count
    }
}
