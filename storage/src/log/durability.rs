//! Durability: flushes (fsync of segments, index files and snapshots), the recovery point,
//! the durable offset and its waiters, the flusher's hooks, and the clean shutdown.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::{Log, LogInner, Maintenance, WriteFailure, lock};
use crate::checkpoint::{self, CleanShutdown};
use crate::config::Durability;
use crate::epochs::{self, LeaderEpochs};
use crate::error::{Result, StorageError};
use crate::flusher::Flushable;
use crate::io::write_file_atomically;
use crate::producer;
use crate::segment::Segment;

impl Log {
    /// Registers `callback`, called with the new durable offset and the time the flush's
    /// fsyncs took, each time the durable offset advances, on the thread that ran the
    /// fsync (the flusher, or a caller of `sync`), before `wait_durable` waiters wake. It
    /// must be quick and must not call this log's `sync`, `truncate_to`,
    /// `apply_retention` or `close` (it runs under their lock); a broker pokes a tokio
    /// `watch` channel from it.
    pub fn on_durable(&self, callback: impl Fn(u64, Duration) + Send + Sync + 'static) {
        lock(&self.inner.callbacks).push(Arc::new(callback));
    }

    /// Registers `callback`, called once when the log becomes poisoned, before
    /// `wait_durable` waiters wake, on the thread whose write or fsync failed (possibly
    /// under this log's locks). It must be quick and must not call into this log; a broker pokes
    /// the `watch` channel its `acks = all` waiters watch, so they fail at once rather
    /// than at their timeout.
    pub fn on_poisoned(&self, callback: impl Fn() + Send + Sync + 'static) {
        lock(&self.inner.poisoned_callbacks).push(Arc::new(callback));
    }

    /// Registers `callback`, called with the error each time a flush runs out of space or
    /// descriptors (the next flush retries), and with `None` when a flush gets through
    /// after one did. Called on the flushing thread under
    /// this log's maintenance lock, after the durable offset (if any) was published: it
    /// must be quick and must not call into this log's maintenance (`sync`, `close`, ...);
    /// a broker logs the change and pokes the `watch` its `acks = all` waiters watch.
    pub fn on_write_failure(
        &self,
        callback: impl Fn(Option<&StorageError>) + Send + Sync + 'static,
    ) {
        lock(&self.inner.write_failure_callbacks).push(Arc::new(callback));
    }

    /// Why the offsets below `offset` cannot become durable for now, although the log is
    /// not poisoned: the last flush, which tried to cover them, ran out of space or
    /// descriptors before it made them durable (an
    /// [`out_of_resources`](StorageError::out_of_resources) error). `None` once a flush
    /// gets through; for offsets appended after the failed flush began, which wait for
    /// their own; and while only index files, snapshots or the recovery point fail to be
    /// written (the data is durable then; the recovery point waits).
    pub fn durability_stalled(&self, offset: u64) -> Option<StorageError> {
        let failure = lock(&self.inner.write_failure);
        let failure = failure
            .as_ref()
            .filter(|failure| failure.held_below.is_some_and(|below| offset <= below))?;
        let source = std::io::Error::from_raw_os_error(failure.errno);
        Some(StorageError::io(&failure.path, source))
    }

    /// Registers `callback`, called on the write-back thread each time it has written a
    /// sealed segment back after a roll, with the bytes it wrote back and the time that
    /// took, pauses included. It must be quick; a broker records metrics from it.
    pub fn on_write_back(&self, callback: impl Fn(u64, Duration) + Send + Sync + 'static) {
        lock(&self.inner.write_back_callbacks).push(Arc::new(callback));
    }

    /// Blocks until every offset below `offset` is durable (`Ok(true)`) or `timeout`
    /// passes (`Ok(false)`). Under `Durability::Never` only rolls, `sync` and `close`
    /// advance the durable offset.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned) if the log is or becomes poisoned while waiting;
    /// the [`durability_stalled`](Self::durability_stalled) error if a flush runs out of
    /// space or descriptors before the offset is durable.
    /// A closed log's data is durable up to its end.
    pub fn wait_durable(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut durable = lock(&self.inner.durable);
        loop {
            if *durable >= offset {
                return Ok(true);
            }
            self.inner.check_poisoned()?;
            if let Some(error) = self.durability_stalled(offset) {
                return Err(error);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            durable = self
                .inner
                .durable_changed
                .wait_timeout(durable, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// fsyncs everything appended so far on the calling thread and returns the durable
    /// offset. Blocks; never call it on an async runtime thread.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned), or the fsync error (which poisons the log).
    /// An error that is [`out_of_resources`](StorageError::out_of_resources) does not
    /// poison: the next flush retries, and the data may already be durable (see
    /// [`durability_stalled`](Self::durability_stalled)).
    pub fn sync(&self) -> Result<u64> {
        self.inner.flush(true)
    }

    /// Clean shutdown: fsyncs all data, writes every index file, the leader-epoch
    /// checkpoint, the recovery point and the clean shutdown marker, so the next open
    /// reads no data bytes. Afterwards writes fail with
    /// [`StorageError::Closed`](crate::StorageError::Closed), reads of what is there still
    /// work, and the directory lock is released. Closing a closed log does nothing.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned) (no marker is written; the next open recovers), or an
    /// I/O error. Either way the log is closed.
    pub fn close(&self) -> Result<()> {
        let inner = &self.inner;
        let mut maintenance = lock(&inner.maintenance);
        let state = lock(&inner.append);
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        maintenance.closed = true;
        self.release();
        inner.check_poisoned()?;
        if state.dir_unsynced {
            inner.sync_dir()?;
        }
        for segment in &state.unsynced {
            segment.persist_index(inner.io.as_ref())?;
            segment.sync()?;
        }
        let active = inner.active();
        active.seal_index();
        active.persist_index(inner.io.as_ref())?;
        active.sync()?;
        if let Some(entries) = lock(&inner.epochs).take_dirty() {
            epochs::write(inner.io.as_ref(), &inner.dir, &entries)?;
        }
        checkpoint::write_recovery_point(inner.io.as_ref(), &inner.dir, active.base_offset())?;
        let log_end_offset = inner.log_end_offset();
        let snapshot = producer::snapshot_path(&inner.dir, log_end_offset);
        write_file_atomically(
            inner.io.as_ref(),
            &snapshot,
            &state.producers.encode(log_end_offset),
        )?;
        // An earlier close's snapshot is not at a segment base, so retention would never
        // reach it: keep one per segment plus this one.
        let bases: Vec<u64> = inner
            .segments()
            .iter()
            .map(|segment| segment.base_offset())
            .collect();
        inner.remove_snapshots(|offset| {
            offset < log_end_offset && bases.binary_search(&offset).is_err()
        })?;
        let marker = CleanShutdown {
            log_end_offset: inner.log_end_offset(),
            active_base_offset: active.base_offset(),
            active_bytes: active.committed_bytes(),
        };
        checkpoint::write_clean_shutdown(inner.io.as_ref(), &inner.dir, &marker)?;
        drop(state);
        inner.publish_durable(marker.log_end_offset, Duration::ZERO);
        Ok(())
    }
}

impl Flushable for LogInner {
    fn flush_for_flusher(&self) {
        // Under `Never` the flusher only runs after a roll, for the sealed segments. Like
        // Kafka's flush on roll, it leaves the active one alone: fsyncing it too wrote
        // back a segment still being appended to, whose writeback contends with the
        // appends for the inode (ext4's `i_data_sem`), and stalled them for up to 45 ms.
        let with_active = self.config().durability != Durability::Never;
        // Errors poison the log inside `flush`; appenders and waiters see them.
        let _ = self.flush(with_active);
        // A segment sealed while the log was under another policy was never queued for
        // its write-back, and this flush left it alone.
        if !with_active
            && let Some(&id) = self.registration.get()
            && lock(&self.append)
                .unsynced
                .iter()
                .any(|segment| !segment.is_written_back())
        {
            self.flusher.write_back(id);
        }
    }

    fn write_back_for_flusher(&self, between_steps: &mut dyn FnMut(Duration) -> bool) -> bool {
        let sealed = lock(&self.append).unsynced.clone();
        for segment in sealed {
            let (started, mut bytes) = (Instant::now(), 0);
            loop {
                if self.check_poisoned().is_err() {
                    return false;
                }
                // A truncation can make a sealed segment active again: appends go on there,
                // and under `Never` the active segment is left to the kernel.
                if Arc::ptr_eq(&segment, &self.active()) {
                    break;
                }
                // A failed step fails every fsync of the segment after it, whichever
                // thread runs it (`Segment::write_back_step`); the log is poisoned too.
                match segment.write_back_step(&self.closed) {
                    Ok(Some((step, elapsed))) => {
                        bytes += step;
                        if !segment.is_written_back() && !between_steps(elapsed) {
                            return false;
                        }
                    }
                    Ok(None) if segment.is_written_back() => break,
                    Ok(None) => return false,
                    Err(error) => {
                        self.poison(format!("write-back of a sealed segment failed: {error}"));
                        return false;
                    }
                }
            }
            if bytes > 0 {
                let callbacks = lock(&self.write_back_callbacks).clone();
                for callback in callbacks {
                    callback(bytes, started.elapsed());
                }
            }
        }
        true
    }
}

/// How often the flusher flushes a log on its own.
pub(super) fn flush_interval(durability: Durability) -> Option<Duration> {
    match durability {
        Durability::IntervalMs(ms) => Some(Duration::from_millis(ms)),
        Durability::EveryBatch | Durability::Never => None,
    }
}

/// What one flush makes durable.
struct FlushWork {
    /// The durable offset once it is done.
    target: u64,
    /// Sealed segments to fsync and write the index files of.
    sealed: Vec<Arc<Segment>>,
    active: Option<Arc<Segment>>,
    snapshots: Vec<(u64, Vec<u8>)>,
    dir_unsynced: bool,
    /// The leader-epoch entries, if the checkpoint file lags them and the flush moves the
    /// recovery point.
    epochs: Option<LeaderEpochs>,
}

impl LogInner {
    /// One flush: snapshot the log end, fsync sealed segments and, if `with_active`, the
    /// active one; write the sealed segments' index files and the producer snapshots,
    /// advance the recovery point, publish the durable offset (the log end, or without the
    /// active segment the end of the sealed ones).
    ///
    /// A failed fsync poisons the log. Running out of space or descriptors
    /// ([`out_of_resources`](crate::StorageError::out_of_resources)) changed nothing
    /// durable: the work is put back for the next flush to retry, and the log stays
    /// writable. If only the files after the fsyncs failed, the data is durable and the
    /// durable offset is published anyway; the recovery point waits for the files.
    fn flush(&self, with_active: bool) -> Result<u64> {
        let mut maintenance = lock(&self.maintenance);
        if maintenance.closed {
            return Ok(*lock(&self.durable));
        }
        self.check_poisoned()?;
        let work = self.take_flush_work(with_active);
        if work.target <= *lock(&self.durable)
            && work.sealed.is_empty()
            && work.snapshots.is_empty()
            && !work.dir_unsynced
        {
            return Ok(work.target);
        }
        let started = Instant::now();
        if let Err(error) = self.sync_data(&work) {
            let target = work.target;
            return Err(self.flush_failed(work, error, Some(target)));
        }
        let written = self
            .write_sealed_files(&work)
            .and_then(|()| self.advance_recovery_point(&mut maintenance, &work.sealed));
        // Still under the maintenance lock: concurrent flushes (flusher and `sync`)
        // publish in order, so callbacks see increasing offsets.
        self.publish_durable(work.target, started.elapsed());
        if let Err(error) = written {
            return Err(self.flush_failed(work, error, None));
        }
        self.write_failure_cleared();
        drop(maintenance);
        Ok(work.target)
    }

    /// Takes what is dirty: the flush owns it until it succeeds or puts it back.
    fn take_flush_work(&self, with_active: bool) -> FlushWork {
        let (target, sealed, active, snapshots, dir_unsynced, epochs) = {
            let mut state = lock(&self.append);
            let snapshots = std::mem::take(&mut state.snapshots);
            let current = self.active();
            let mut sealed = state.unsynced.clone();
            let (target, active) = if with_active {
                (self.log_end_offset(), Some(current))
            } else {
                // Under `Never`, a flush follows a sealed segment's write-back: a segment
                // sealed since waits for its own, rather than being written back here at
                // full speed, holding up every other log's fsync.
                match sealed.iter().position(|segment| !segment.is_written_back()) {
                    Some(pending) => {
                        let target = sealed[pending].base_offset();
                        sealed.truncate(pending);
                        (target, None)
                    }
                    None => (current.base_offset(), None),
                }
            };
            // Only a flush that moves the recovery point past sealed segments needs the
            // checkpoint to cover them; taken with the segment list, it does.
            let epochs = (!sealed.is_empty())
                .then(|| lock(&self.epochs).take_dirty())
                .flatten();
            (
                target,
                sealed,
                active,
                snapshots,
                std::mem::take(&mut state.dir_unsynced),
                epochs,
            )
        };
        FlushWork {
            target,
            sealed,
            active,
            snapshots,
            dir_unsynced,
            epochs,
        }
    }

    /// The fsyncs: the directory, the sealed segments' data, the active segment's.
    fn sync_data(&self, work: &FlushWork) -> Result<()> {
        if work.dir_unsynced {
            self.sync_dir()?;
        }
        for segment in &work.sealed {
            segment.sync_sealed()?;
        }
        work.active.as_deref().map_or(Ok(()), Segment::sync)
    }

    /// The new files a flush writes once the data under them is durable: the sealed
    /// segments' index files, the producer snapshots and the leader-epoch checkpoint
    /// (which must be on disk before the recovery point passes the batches it covers).
    fn write_sealed_files(&self, work: &FlushWork) -> Result<()> {
        for segment in &work.sealed {
            segment.persist_index(self.io.as_ref())?;
        }
        self.write_snapshots(&work.snapshots)?;
        match &work.epochs {
            Some(entries) => epochs::write(self.io.as_ref(), &self.dir, entries),
            None => Ok(()),
        }
    }

    /// If the last flush failed for lack of space or descriptors before it made its
    /// offsets durable, forgets that failure for the waiters (they wait for the next
    /// attempt, which reports its own) and asks the flusher for that attempt. Under
    /// `every_batch` only appends ask for flushes, and a retried batch appends nothing.
    pub(super) fn retry_held_flush(&self) {
        let held = lock(&self.write_failure)
            .as_mut()
            .and_then(|failure| failure.held_below.take())
            .is_some();
        if held {
            self.request_flush();
        }
    }

    /// Poisons the log unless `error` ran out of space or descriptors; then it puts the
    /// work back for the next flush (sealed segments stay unsynced until the recovery
    /// point passes them) and records the failure. `held_below`: the flush's target, if
    /// it failed before publishing it as the durable offset. Returns `error`.
    fn flush_failed(
        &self,
        work: FlushWork,
        error: StorageError,
        held_below: Option<u64>,
    ) -> StorageError {
        if !error.out_of_resources() {
            self.poison(format!("flush failed: {error}"));
            return error;
        }
        {
            let mut state = lock(&self.append);
            state.dir_unsynced |= work.dir_unsynced;
            let mut snapshots = work.snapshots;
            snapshots.append(&mut state.snapshots);
            state.snapshots = snapshots;
            // The entries now are at least as new as those the flush failed to write.
            lock(&self.epochs).dirty |= work.epochs.is_some();
        }
        self.write_failed(&error, held_below);
        error
    }

    fn advance_recovery_point(
        &self,
        maintenance: &mut Maintenance,
        sealed: &[Arc<Segment>],
    ) -> Result<()> {
        if sealed.is_empty() {
            return Ok(());
        }
        let done = |segment: &Arc<Segment>| sealed.iter().any(|done| Arc::ptr_eq(done, segment));
        let point = lock(&self.append)
            .unsynced
            .iter()
            .find(|segment| !done(segment))
            .map_or_else(
                || self.active().base_offset(),
                |segment| segment.base_offset(),
            );
        if point > maintenance.recovery_point {
            checkpoint::write_recovery_point(self.io.as_ref(), &self.dir, point)?;
            maintenance.recovery_point = point;
        }
        // Only now: until the checkpoint names them, the next flush retries their files.
        lock(&self.append).unsynced.retain(|segment| !done(segment));
        Ok(())
    }

    /// Records a flush's failure for lack of space or descriptors, tells the callbacks,
    /// and wakes `wait_durable` waiters if the durable offset is held back. Caller holds
    /// the maintenance lock.
    fn write_failed(&self, error: &StorageError, held_below: Option<u64>) {
        let (path, errno) = error.resource_errno().expect("out of resources");
        *lock(&self.write_failure) = Some(WriteFailure {
            path: path.to_owned(),
            errno,
            held_below,
        });
        let callbacks = lock(&self.write_failure_callbacks).clone();
        for callback in callbacks {
            callback(Some(error));
        }
        if held_below.is_some() {
            // Take the lock so a waiter between its checks and its wait is not missed.
            drop(lock(&self.durable));
            self.durable_changed.notify_all();
        }
    }

    /// A flush got through: ends an episode of write failures. Caller holds the
    /// maintenance lock.
    fn write_failure_cleared(&self) {
        if lock(&self.write_failure).take().is_none() {
            return;
        }
        let callbacks = lock(&self.write_failure_callbacks).clone();
        for callback in callbacks {
            callback(None);
        }
    }

    /// Calls the callbacks, then wakes waiters: when `wait_durable` returns, the callbacks
    /// for that offset have run. Caller holds the maintenance lock.
    pub(super) fn publish_durable(&self, target: u64, elapsed: Duration) {
        if target <= *lock(&self.durable) {
            return;
        }
        let callbacks = lock(&self.callbacks).clone();
        for callback in callbacks {
            callback(target, elapsed);
        }
        *lock(&self.durable) = target;
        self.durable_changed.notify_all();
    }
}
