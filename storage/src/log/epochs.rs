//! The log's leader-epoch cache: the accessors replication asks (cheap, no I/O), and the
//! changes appends, truncation and retention make to it.
//!
//! The entries live under their own lock, so a follower's fetch asking for an epoch's end
//! offset never waits behind an append or a truncation's fsyncs. They change only under
//! the append lock, which also caches the latest epoch: an append compares its epoch with
//! that cache and touches the entries only when the epoch changes. No change writes the
//! checkpoint file itself: it is marked dirty, and the next flush that moves the recovery
//! point past sealed segments writes it first (`close` before its clean shutdown marker),
//! so the batches recovery trusts without reading are always covered by the file, and an
//! epoch change costs no fsync of its own (see `docs/storage.md`).

use std::sync::atomic::Ordering;

use super::{AppendState, Log, LogInner, lock};
use crate::epochs::LeaderEpochs;
use crate::error::Result;

/// The entries, and whether the checkpoint file lags them.
#[derive(Debug, Default)]
pub(super) struct EpochState {
    pub(super) cache: LeaderEpochs,
    /// The entries changed since the checkpoint file was last written.
    pub(super) dirty: bool,
}

impl EpochState {
    /// The entries to write, if the file lags them; the writer puts `dirty` back if the
    /// write fails.
    pub(super) fn take_dirty(&mut self) -> Option<LeaderEpochs> {
        std::mem::take(&mut self.dirty).then(|| self.cache.clone())
    }
}

impl Log {
    /// The newest leader epoch in the log; `None` if no batch carries one (an empty log).
    pub fn latest_epoch(&self) -> Option<u32> {
        lock(&self.inner.epochs).cache.latest()
    }

    /// The `(epoch, start_offset)` entries, oldest first: the batches from `start_offset`
    /// up to the next entry's start (or the log end) carry `epoch`.
    pub fn epoch_entries(&self) -> Vec<(u32, u64)> {
        lock(&self.inner.epochs).cache.entries().to_vec()
    }

    /// Where the batches of `epoch` end, for a follower whose last batch has `epoch`
    /// (KIP-279): for the latest epoch or a newer one `(latest, log_end_offset)`; else the
    /// largest entry epoch at or below `epoch` and the start offset of the entry after
    /// it. `None` if no entry is at or below `epoch`.
    pub fn end_offset_for_epoch(&self, epoch: u32) -> Option<(u32, u64)> {
        let epochs = lock(&self.inner.epochs);
        // Read under the lock: a new epoch's entry and the end offset after its first
        // batch are published together.
        let log_end_offset = self.inner.log_end_offset();
        epochs.cache.end_offset_for(epoch, log_end_offset)
    }

    /// The leader epoch of the entry with the largest start offset at or below `offset`.
    pub fn epoch_for_offset(&self, offset: u64) -> Option<u32> {
        lock(&self.inner.epochs).cache.epoch_for(offset)
    }
}

impl LogInner {
    /// Refuses a batch of `epoch` older than the latest. Caller holds the append lock.
    ///
    /// # Errors
    /// [`StorageError::StaleLeaderEpoch`](crate::StorageError::StaleLeaderEpoch).
    pub(super) fn check_epoch(state: &AppendState, epoch: u32) -> Result<()> {
        LeaderEpochs::check(state.latest_epoch, epoch)
    }

    /// Publishes a batch just written from `base_offset` to `next_offset` with `epoch`:
    /// the new log end offset, and the entry for a new epoch along with it.
    pub(super) fn publish_batch(
        &self,
        state: &mut AppendState,
        epoch: u32,
        base_offset: u64,
        next_offset: u64,
    ) {
        if state.latest_epoch == Some(epoch) {
            self.log_end_offset.store(next_offset, Ordering::Release);
            return;
        }
        let mut epochs = lock(&self.epochs);
        epochs.cache.assign(epoch, base_offset);
        epochs.dirty = true;
        state.latest_epoch = Some(epoch);
        self.log_end_offset.store(next_offset, Ordering::Release);
    }

    /// Sets the log end offset and changes the entries to match (truncation, retention),
    /// together. Caller holds the append lock.
    pub(super) fn change_epochs(
        &self,
        state: &mut AppendState,
        log_end_offset: u64,
        change: impl FnOnce(&mut LeaderEpochs),
    ) {
        let mut epochs = lock(&self.epochs);
        let before = epochs.cache.clone();
        change(&mut epochs.cache);
        epochs.cache.truncate_from_end(log_end_offset);
        epochs.dirty |= epochs.cache != before;
        state.latest_epoch = epochs.cache.latest();
        self.log_end_offset.store(log_end_offset, Ordering::Release);
    }
}
