//! Durability: flushes (fsync of segments, index files and snapshots), the recovery point,
//! the durable offset and its waiters, the flusher's hooks, and the clean shutdown.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::{Log, LogInner, Maintenance, lock};
use crate::checkpoint::{self, CleanShutdown};
use crate::config::Durability;
use crate::error::Result;
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
    /// [`StorageError::Poisoned`](crate::StorageError::Poisoned) if the log is or becomes poisoned while waiting.
    /// A closed log's data is durable up to its end.
    pub fn wait_durable(&self, offset: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut durable = lock(&self.inner.durable);
        loop {
            if *durable >= offset {
                return Ok(true);
            }
            self.inner.check_poisoned()?;
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
    pub fn sync(&self) -> Result<u64> {
        self.inner.flush(true)
    }

    /// Clean shutdown: fsyncs all data, writes every index file, the recovery point and
    /// the clean shutdown marker, so the next open reads no data bytes. Afterwards writes
    /// fail with [`StorageError::Closed`](crate::StorageError::Closed), reads of what is there still work, and the
    /// directory lock is released. Closing a closed log does nothing.
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

impl LogInner {
    /// One flush: snapshot the log end, fsync sealed segments (with their index files) and,
    /// if `with_active`, the active one; advance the recovery point, publish the durable
    /// offset (the log end, or without the active segment the end of the sealed ones).
    fn flush(&self, with_active: bool) -> Result<u64> {
        let mut maintenance = lock(&self.maintenance);
        if maintenance.closed {
            return Ok(*lock(&self.durable));
        }
        self.check_poisoned()?;
        let (target, sealed, active, snapshots, dir_unsynced) = {
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
            (
                target,
                sealed,
                active,
                snapshots,
                std::mem::take(&mut state.dir_unsynced),
            )
        };
        if target <= *lock(&self.durable)
            && sealed.is_empty()
            && snapshots.is_empty()
            && !dir_unsynced
        {
            return Ok(target);
        }
        let started = Instant::now();
        let dir_synced = if dir_unsynced {
            self.sync_dir()
        } else {
            Ok(())
        };
        let synced = dir_synced
            .and_then(|()| self.sync_files(&sealed, active.as_deref()))
            .and_then(|()| self.write_snapshots(&snapshots));
        let synced = synced.and_then(|()| self.advance_recovery_point(&mut maintenance, &sealed));
        if let Err(error) = synced {
            self.poison(format!("flush failed: {error}"));
            return Err(error);
        }
        // Still under the maintenance lock: concurrent flushes (flusher and `sync`)
        // publish in order, so callbacks see increasing offsets.
        self.publish_durable(target, started.elapsed());
        drop(maintenance);
        Ok(target)
    }

    fn sync_files(&self, sealed: &[Arc<Segment>], active: Option<&Segment>) -> Result<()> {
        for segment in sealed {
            segment.persist_index(self.io.as_ref())?;
            segment.sync_sealed()?;
        }
        active.map_or(Ok(()), Segment::sync)
    }

    fn advance_recovery_point(
        &self,
        maintenance: &mut Maintenance,
        sealed: &[Arc<Segment>],
    ) -> Result<()> {
        if sealed.is_empty() {
            return Ok(());
        }
        let point = {
            let mut state = lock(&self.append);
            state
                .unsynced
                .retain(|segment| !sealed.iter().any(|done| Arc::ptr_eq(done, segment)));
            state.unsynced.first().map_or_else(
                || self.active().base_offset(),
                |segment| segment.base_offset(),
            )
        };
        if point > maintenance.recovery_point {
            checkpoint::write_recovery_point(self.io.as_ref(), &self.dir, point)?;
            maintenance.recovery_point = point;
        }
        Ok(())
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
