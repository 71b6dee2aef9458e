//! Cutting the log's tail (`truncate_to`, for followers) and restarting it empty at a new
//! offset (`truncate_fully`).

use std::sync::Arc;

use super::{AppendState, Log, LogInner, Maintenance, lock};
use crate::checkpoint;
use crate::epochs::LeaderEpochs;
use crate::error::{Result, StorageError};
use crate::segment::{Locate, Segment};

impl Log {
    /// Deletes every batch at and after `offset` (follower truncation), and the
    /// leader-epoch entries starting there. `offset` must be a batch boundary; at or above
    /// the log end offset this does nothing. The result is fsync'd before returning.
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] below the log start,
    /// [`StorageError::NotBatchBoundary`], [`StorageError::Poisoned`]; an I/O error after
    /// the first change poisons the log.
    pub fn truncate_to(&self, offset: u64) -> Result<()> {
        let mut maintenance = lock(&self.inner.maintenance);
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        let log_end_offset = self.inner.log_end_offset();
        if offset >= log_end_offset {
            return Ok(());
        }
        let segments = self.inner.segments();
        let log_start_offset = segments.first().map_or(0, |segment| segment.base_offset());
        if offset < log_start_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let at = segments
            .partition_point(|segment| segment.base_offset() <= offset)
            .saturating_sub(1);
        let target = segments.get(at).expect("a segment holds the offset");
        let position = match target.locate(offset)? {
            Locate::Boundary(position) => position,
            Locate::Inside(batch_base_offset) => {
                return Err(StorageError::NotBatchBoundary {
                    offset,
                    batch_base_offset,
                });
            }
        };
        let result = self
            .inner
            .cut(
                &mut maintenance,
                &mut state,
                &segments,
                at,
                position,
                offset,
            )
            .and_then(|()| self.inner.reset_producers(&mut state, offset));
        if let Err(error) = &result {
            self.inner
                .poison(format!("truncate_to({offset}) failed: {error}"));
        }
        result
    }

    /// Deletes every segment and restarts the log, empty, at `start_offset` (a follower
    /// whose log end is below the leader's log start offset). Both the log start and end
    /// offsets become `start_offset`, and the leader-epoch entries are cleared. A crash part-way leaves a contiguous part of the
    /// old log or the new empty one (see `docs/storage.md`); repeat the call after reopen.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`], [`StorageError::Closed`]; an I/O error poisons the log.
    pub fn truncate_fully(&self, start_offset: u64) -> Result<()> {
        let mut maintenance = lock(&self.inner.maintenance);
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        let result = self
            .inner
            .restart_at(&mut maintenance, &mut state, start_offset)
            .and_then(|()| {
                // Nothing of the old log remains, so no snapshot of it applies.
                self.inner.remove_snapshots(|_| true)?;
                self.inner.reset_producers(&mut state, start_offset)
            });
        if let Err(error) = &result {
            self.inner
                .poison(format!("truncate_fully({start_offset}) failed: {error}"));
        }
        result
    }
}

impl LogInner {
    /// The body of `truncate_to`, after the target position is known.
    fn cut(
        &self,
        maintenance: &mut Maintenance,
        state: &mut AppendState,
        segments: &[Arc<Segment>],
        at: usize,
        position: u64,
        offset: u64,
    ) -> Result<()> {
        let target = segments.get(at).expect("target segment");
        // Lower the recovery point first: a crash part-way re-scans the cut segment.
        if maintenance.recovery_point > target.base_offset() {
            checkpoint::write_recovery_point(self.io.as_ref(), &self.dir, target.base_offset())?;
            maintenance.recovery_point = target.base_offset();
        }
        let truncated = target.truncate(
            self.io.as_ref(),
            position,
            self.config().index_interval_bytes,
        )?;
        let removed = segments.get(at + 1..).unwrap_or_default();
        let mut kept = segments.get(..at).unwrap_or_default().to_vec();
        kept.push(Arc::clone(&truncated));
        self.replace_segments(kept);
        // The leader-epoch entries at and after `offset` go with the batches.
        self.change_epochs(state, offset, |_| {});
        state.unsynced.retain(|segment| {
            !Arc::ptr_eq(segment, target) && !removed.iter().any(|gone| Arc::ptr_eq(gone, segment))
        });
        state.active_since_ms = (!truncated.is_empty()).then(|| self.io.now_ms());
        {
            let mut durable = lock(&self.durable);
            *durable = (*durable).min(offset);
        }
        for segment in removed {
            segment.remove_files(self.io.as_ref())?;
        }
        self.sync_dir()
    }

    /// The body of `truncate_fully`. The order keeps every crash state recoverable to a
    /// contiguous log: first lower the recovery point to `start_offset` (where recovery
    /// starts a directory left without segments), then unlink the segments at or above it
    /// (newest first, so a prefix remains) and the snapshots there, then create the new
    /// segment (recovery drops it while older segments remain, because of the gap), then
    /// unlink the rest oldest first.
    fn restart_at(
        &self,
        maintenance: &mut Maintenance,
        state: &mut AppendState,
        start_offset: u64,
    ) -> Result<()> {
        // If every segment is at or above the new start, a crash may leave none, and
        // recovery then starts the log at the recovery point: make that the new start.
        if maintenance.recovery_point > start_offset {
            checkpoint::write_recovery_point(self.io.as_ref(), &self.dir, start_offset)?;
            maintenance.recovery_point = start_offset;
        }
        let segments = self.segments();
        let (below, at_or_above): (Vec<_>, Vec<_>) = segments
            .iter()
            .partition(|segment| segment.base_offset() < start_offset);
        for segment in at_or_above.iter().rev() {
            segment.remove_files(self.io.as_ref())?;
        }
        // A snapshot at or above the new start would describe the new segment's batches.
        self.remove_snapshots(|offset| offset >= start_offset)?;
        self.sync_dir()?;
        let interval = self.config().index_interval_bytes;
        let fresh = Segment::create(self.io.as_ref(), &self.dir, start_offset, interval)?;
        for segment in &below {
            segment.remove_files(self.io.as_ref())?;
        }
        self.sync_dir()?;
        self.replace_segments(vec![Arc::new(fresh)]);
        self.change_epochs(state, start_offset, LeaderEpochs::clear);
        state.unsynced.clear();
        state.active_since_ms = None;
        checkpoint::write_recovery_point(self.io.as_ref(), &self.dir, start_offset)?;
        maintenance.recovery_point = start_offset;
        // Nothing below the new start exists any more, and the new segment is empty and
        // its creation fsync'd: the durable offset is the new start.
        *lock(&self.durable) = start_offset;
        self.durable_changed.notify_all();
        Ok(())
    }
}
