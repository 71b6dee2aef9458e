//! [`Log`]: one partition's log, the API the broker calls.
//!
//! # Layout
//! - here: the state, `open`, reads, accessors, `delete`.
//! - `append`: leader and follower appends, and rolling to a new segment.
//! - `durability`: flushes, the recovery point, durable-offset waiters, `close`.
//! - `epochs`: the leader-epoch cache's accessors and changes.
//! - `truncation`: `truncate_to` and `truncate_fully`.
//! - `retention`: deleting old segments by time and size.
//! - `producers`: rebuilding idempotent producer state, and its snapshot files.

mod append;
mod durability;
mod epochs;
mod producers;
mod retention;
mod truncation;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::checkpoint;
use crate::config::{Durability, LogConfig};
use crate::epochs::{self as epoch_checkpoint, LeaderEpochs};
use crate::error::{Result, StorageError};
use crate::flusher::{Flushable, Flusher};
use crate::io::{DirLock, Io, sync_parent};
use crate::producer::ProducerStates;
use crate::recovery;
use crate::segment::{FileRange, Segment};

use self::durability::flush_interval;
use self::epochs::EpochState;

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Offset of the batch's last record.
    pub last_offset: u64,
    /// The log end offset after the call (`last_offset + 1` unless `duplicate`).
    pub log_end_offset: u64,
    /// The batch's largest record timestamp.
    pub max_timestamp: i64,
    /// The batch was an idempotent producer's retry of a batch already in the log: nothing
    /// was written, and the offsets are the original batch's.
    pub duplicate: bool,
}

/// Whole batches read from the log.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches end to end, sharing the segment's mapping (no copy). Empty when
    /// nothing below `max_offset` is available. The first batch may start below the
    /// requested offset: it is the batch that contains it.
    pub bytes: Bytes,
    /// The same bytes as a range of their segment file (a read never spans segments), for
    /// `sendfile`; `None` when `bytes` is empty.
    pub file: Option<FileRange>,
    /// The offset after the last returned batch; the requested offset if none.
    pub next_offset: u64,
    /// The log start offset when the read ran.
    pub log_start_offset: u64,
    /// The log end offset when the read ran.
    pub log_end_offset: u64,
}

/// What [`Log::apply_retention`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionOutcome {
    /// Whole segments deleted.
    pub segments_deleted: usize,
    /// Their bytes.
    pub bytes_deleted: u64,
    /// The log start offset afterwards.
    pub log_start_offset: u64,
}

type DurableCallback = Arc<dyn Fn(u64, Duration) + Send + Sync>;
type WriteBackCallback = Arc<dyn Fn(u64, Duration) + Send + Sync>;
type PoisonedCallback = Arc<dyn Fn() + Send + Sync>;
type WriteFailureCallback = Arc<dyn Fn(Option<&StorageError>) + Send + Sync>;

/// The last flush ran out of space or descriptors, and none has got through since.
struct WriteFailure {
    /// The file it could not create, write or fsync its directory for, and the `errno`.
    path: PathBuf,
    errno: i32,
    /// `Some(target)`: it failed before it made the offsets below `target` durable.
    /// `None`: only the files written after the data fsyncs (index files, snapshots, the
    /// recovery point) failed, and the durable offset was published.
    held_below: Option<u64>,
}

/// State changed only by appends and rolls, under the append lock.
struct AppendState {
    /// Sealed segments the recovery point has not passed, oldest first: their data is not
    /// yet fsync'd, or their index files are not yet written.
    unsynced: Vec<Arc<Segment>>,
    /// When the active segment received its first batch (or the log was opened).
    active_since_ms: Option<i64>,
    /// Idempotent producers' latest batches, up to the log end.
    producers: ProducerStates,
    /// Producer-state snapshots taken at rolls, `(offset, file bytes)`, for the flusher to
    /// write once the sealed segments below them are fsync'd.
    snapshots: Vec<(u64, Vec<u8>)>,
    /// A roll created a segment file whose directory entry is not yet fsync'd. The
    /// flusher fsyncs the directory before it counts anything durable: a directory fsync
    /// inline in the roll held the append lock for up to 300 ms while writeback ran
    /// (docs/benchmarks.md#d-roll-dir-fsync-off-append).
    dir_unsynced: bool,
    /// The latest leader epoch of `LogInner::epochs`, for the append path's check.
    latest_epoch: Option<u32>,
}

/// State of maintenance operations (flush, truncate, retention, close), which exclude each
/// other. Lock order: maintenance, then append.
struct Maintenance {
    closed: bool,
    /// Every segment with a lower base offset is sealed, fsync'd and has index files.
    recovery_point: u64,
}

struct LogInner {
    dir: PathBuf,
    /// Read (copied) at the start of each operation; replaced whole by `set_config`.
    config: RwLock<LogConfig>,
    io: Arc<dyn Io>,
    flusher: Flusher,
    registration: OnceLock<u64>,
    append: Mutex<AppendState>,
    maintenance: Mutex<Maintenance>,
    /// Readers clone the `Arc` and drop the lock before touching data.
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    log_end_offset: AtomicU64,
    /// The leader-epoch entries. Lock order: append, then this.
    epochs: Mutex<EpochState>,
    durable: Mutex<u64>,
    durable_changed: Condvar,
    poisoned: OnceLock<String>,
    /// Set by `close` and `delete` under the append lock; writes then fail.
    closed: AtomicBool,
    callbacks: Mutex<Vec<DurableCallback>>,
    write_back_callbacks: Mutex<Vec<WriteBackCallback>>,
    poisoned_callbacks: Mutex<Vec<PoisonedCallback>>,
    write_failure: Mutex<Option<WriteFailure>>,
    write_failure_callbacks: Mutex<Vec<WriteFailureCallback>>,
}

/// A partition log: a directory of segments. `Send + Sync`: appends, rolls, truncation and
/// retention are serialised by an internal lock; reads run concurrently without it, on a
/// snapshot of the segment list, and return `Bytes` that share the segment mapping.
///
/// Dropping a `Log` without [`close`](Log::close) is a crash as far as the disk is
/// concerned: the next open runs recovery.
pub struct Log {
    inner: Arc<LogInner>,
    opened_clean: bool,
    /// Holds the `flock` on `<dir>/.lock` until the log is closed, deleted or dropped.
    lock_file: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Log")
            .field("dir", &self.inner.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .field("durable_offset", &self.durable_offset())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes the directory's exclusive lock, without waiting.
fn lock_dir(io: &dyn Io, dir: &Path) -> Result<DirLock> {
    io.lock_dir(dir).map_err(|error| {
        if error.kind() == std::io::ErrorKind::WouldBlock {
            StorageError::Locked {
                dir: dir.to_owned(),
            }
        } else {
            StorageError::io(dir, error)
        }
    })
}

impl Log {
    /// Opens (or creates) the log in `dir`, running recovery (see `docs/storage.md`).
    /// `flusher` is shared by all logs of a broker; `io` is [`RealIo`](crate::RealIo) in
    /// production, and a fault-injecting one or [`PowerLossIo`](crate::sim::PowerLossIo)
    /// in tests.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`], [`StorageError::Locked`] if another log has the
    /// directory open, I/O errors, or [`StorageError::Corrupt`] for damage below the
    /// recovery point.
    pub fn open(
        dir: impl AsRef<Path>,
        config: LogConfig,
        flusher: Flusher,
        io: Arc<dyn Io>,
    ) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_owned();
        if io.create_dir_all(&dir).map_err(StorageError::at(&dir))? {
            sync_parent(io.as_ref(), &dir)?;
        }
        let lock_file = lock_dir(io.as_ref(), &dir)?;
        let recovered = recovery::recover(io.as_ref(), &dir, &config)?;
        let opened_clean = recovered.clean;
        let segments = recovered.segments;
        let active = Arc::clone(segments.last().expect("recovery leaves a segment"));
        // Recovered bytes may only be in the page cache: make them durable before anyone
        // is told so. After a clean shutdown this finds nothing dirty.
        active.sync()?;
        // Before the recovery point moves past the batches recovery read: they become
        // trusted, and only the leader-epoch checkpoint will know their epochs.
        if recovered.epochs.changed {
            epoch_checkpoint::write(io.as_ref(), &dir, &recovered.epochs.epochs)?;
        }
        // Writing the checkpoint fsyncs the directory, which also makes the active
        // segment's entry durable if a crash came between its roll and the next flush. If
        // the checkpoint already names it, a flush fsync'd the directory after the roll.
        if recovered.recovery_point != active.base_offset() {
            checkpoint::write_recovery_point(io.as_ref(), &dir, active.base_offset())?;
        }
        let epochs = recovered.epochs.epochs;
        let inner = Arc::new(LogInner::new(dir, config, io, flusher, segments, epochs));
        let producers = inner.rebuild_producers(inner.log_end_offset())?;
        lock(&inner.append).producers = producers;
        let interval = flush_interval(config.durability);
        let weak: Weak<dyn Flushable> = Arc::downgrade(&inner) as Weak<dyn Flushable>;
        let id = inner.flusher.register(weak, interval);
        inner.registration.set(id).expect("set once");
        Ok(Self {
            inner,
            opened_clean,
            lock_file: Mutex::new(Some(lock_file)),
        })
    }

    /// Whether the last open trusted a clean shutdown marker and so read no data bytes
    /// (only index files and the batches after each segment's last index entry).
    pub fn opened_clean(&self) -> bool {
        self.opened_clean
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The config in force.
    pub fn config(&self) -> LogConfig {
        self.inner.config()
    }

    /// Replaces the config of an open log. New limits apply from the next append, roll or
    /// retention pass; a durability change re-schedules the flusher, and a change to a
    /// policy that fsyncs flushes what is not durable yet. Data already written is not
    /// rewritten.
    ///
    /// # Errors
    /// [`StorageError::InvalidConfig`] and the old config stays.
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = config;
        if let Some(id) = self.inner.registration.get() {
            self.inner
                .flusher
                .set_interval(*id, flush_interval(config.durability));
        }
        // A policy that fsyncs covers what `never` left unsynced too, without waiting for
        // the next append to ask.
        if config.durability != Durability::Never && self.durable_offset() < self.log_end_offset() {
            self.inner.request_flush();
        }
        Ok(())
    }

    /// Reads whole batches from the batch containing `from_offset`, never including a
    /// batch whose last offset is at or above `max_offset` (exclusive; e.g. the high
    /// watermark, which should be a batch boundary). Returns at least one batch when one
    /// is available even if it exceeds `max_bytes`, then more while the total stays within
    /// `max_bytes`. Reads stop at a segment boundary. Does not take the append lock.
    ///
    /// # Errors
    /// [`StorageError::OffsetOutOfRange`] below the log start or above the log end;
    /// a mapping error; [`StorageError::Corrupt`] for a damaged header in committed data.
    pub fn read(&self, from_offset: u64, max_bytes: usize, max_offset: u64) -> Result<ReadResult> {
        // Load the end before the segment list: every segment holding data below this end
        // is already in the list.
        let log_end_offset = self.inner.log_end_offset();
        let segments = self.inner.segments();
        let log_start_offset = segments.first().map_or(0, |segment| segment.base_offset());
        if from_offset < log_start_offset || from_offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset: from_offset,
                log_start_offset,
                log_end_offset,
            });
        }
        let mut result = ReadResult {
            bytes: Bytes::new(),
            file: None,
            next_offset: from_offset,
            log_start_offset,
            log_end_offset,
        };
        let limit = max_offset.min(log_end_offset);
        if from_offset >= limit {
            return Ok(result);
        }
        let first = segments
            .partition_point(|segment| segment.base_offset() <= from_offset)
            .saturating_sub(1);
        for segment in segments.get(first..).unwrap_or_default() {
            if let Some(chunk) = segment.read(from_offset, max_bytes, limit)? {
                result.bytes = chunk.bytes;
                result.file = Some(chunk.file);
                result.next_offset = chunk.next_offset;
                break;
            }
        }
        Ok(result)
    }

    /// The first offset in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.inner
            .segments()
            .first()
            .map_or(0, |segment| segment.base_offset())
    }

    /// The offset the next batch will get.
    pub fn log_end_offset(&self) -> u64 {
        self.inner.log_end_offset()
    }

    /// Every offset below this is fsync'd.
    pub fn durable_offset(&self) -> u64 {
        *lock(&self.inner.durable)
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .segments()
            .iter()
            .map(|segment| segment.committed_bytes())
            .sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.inner.segments().len()
    }

    /// How many idempotent producers the log remembers.
    pub fn producer_count(&self) -> usize {
        lock(&self.inner.append).producers.len()
    }

    /// Why the log is poisoned, if it is.
    pub fn poisoned(&self) -> Option<&str> {
        self.inner.poisoned.get().map(String::as_str)
    }

    /// `Ok` unless the log is poisoned or closed.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`] with the first failure, or [`StorageError::Closed`].
    pub fn check_poisoned(&self) -> Result<()> {
        self.inner.check_writable()
    }

    /// The first record whose timestamp is at or after `timestamp`, as `(offset,
    /// timestamp)`, found through the time index; `None` if there is none.
    ///
    /// # Errors
    /// A mapping error or damaged committed data.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        for segment in self.inner.segments().iter() {
            if let Some(found) = segment.find_timestamp(timestamp)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The file of the segment holding `offset` (the last one for an offset past the
    /// end), to name in an error about data read from the log.
    pub fn segment_path(&self, offset: u64) -> PathBuf {
        let segments = self.inner.segments();
        let at = segments
            .partition_point(|segment| segment.base_offset() <= offset)
            .saturating_sub(1);
        let base = segments.get(at).map_or(0, |segment| segment.base_offset());
        crate::segment::log_path(&self.inner.dir, base)
    }

    /// Closes the log (without a clean shutdown marker) and deletes its whole directory
    /// (topic deletion). `Bytes` already handed out stay valid: unlinking a mapped file
    /// does not shrink it.
    ///
    /// # Errors
    /// The I/O error removing the directory or syncing its parent.
    pub fn delete(&self) -> Result<()> {
        {
            let mut maintenance = lock(&self.inner.maintenance);
            let _state = lock(&self.inner.append);
            self.inner.closed.store(true, Ordering::Release);
            maintenance.closed = true;
        }
        self.release();
        let dir = self.inner.dir.clone();
        match self.inner.io.remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(StorageError::io(&dir, error));
            }
            _ => {}
        }
        sync_parent(self.inner.io.as_ref(), &dir)
    }

    /// Leaves the flusher and releases the directory lock. Caller has marked the log
    /// closed under the maintenance lock, so no flush touches the directory afterwards.
    fn release(&self) {
        if let Some(&id) = self.inner.registration.get() {
            self.inner.flusher.deregister(id);
        }
        drop(lock(&self.lock_file).take());
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        // Waits for a flush in progress, so nothing of this log touches the directory once
        // the lock file is released (a reopen may follow immediately).
        lock(&self.inner.maintenance).closed = true;
        // No write-back step starts after this (each checks `closed` under its segment's
        // lock); one in flight may finish after.
        self.inner.closed.store(true, Ordering::Release);
        self.release();
    }
}

impl LogInner {
    fn config(&self) -> LogConfig {
        *self.config.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state of a freshly recovered log whose active segment is fsync'd.
    fn new(
        dir: PathBuf,
        config: LogConfig,
        io: Arc<dyn Io>,
        flusher: Flusher,
        segments: Vec<Arc<Segment>>,
        epochs: LeaderEpochs,
    ) -> Self {
        let active = Arc::clone(segments.last().expect("recovery leaves a segment"));
        let log_end_offset = active.next_offset();
        let active_since_ms = (!active.is_empty()).then(|| io.now_ms());
        Self {
            dir,
            config: RwLock::new(config),
            io,
            flusher,
            registration: OnceLock::new(),
            append: Mutex::new(AppendState {
                unsynced: Vec::new(),
                active_since_ms,
                producers: ProducerStates::default(),
                snapshots: Vec::new(),
                dir_unsynced: false,
                latest_epoch: epochs.latest(),
            }),
            maintenance: Mutex::new(Maintenance {
                closed: false,
                recovery_point: active.base_offset(),
            }),
            segments: RwLock::new(Arc::new(segments)),
            log_end_offset: AtomicU64::new(log_end_offset),
            epochs: Mutex::new(EpochState {
                cache: epochs,
                dirty: false,
            }),
            // The active segment was fsync'd during open, and sealed ones before it.
            durable: Mutex::new(log_end_offset),
            durable_changed: Condvar::new(),
            poisoned: OnceLock::new(),
            closed: AtomicBool::new(false),
            callbacks: Mutex::new(Vec::new()),
            write_back_callbacks: Mutex::new(Vec::new()),
            poisoned_callbacks: Mutex::new(Vec::new()),
            write_failure: Mutex::new(None),
            write_failure_callbacks: Mutex::new(Vec::new()),
        }
    }

    fn log_end_offset(&self) -> u64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&self.segments.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn active(&self) -> Arc<Segment> {
        Arc::clone(self.segments().last().expect("a log always has a segment"))
    }

    fn replace_segments(&self, segments: Vec<Arc<Segment>>) {
        assert!(!segments.is_empty(), "a log always has a segment");
        assert!(
            segments
                .windows(2)
                .all(|pair| pair[0].base_offset() < pair[1].base_offset()),
            "segments are ordered"
        );
        *self
            .segments
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(segments);
    }

    fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed {
                dir: self.dir.clone(),
            });
        }
        self.check_poisoned()
    }

    fn check_poisoned(&self) -> Result<()> {
        match self.poisoned.get() {
            Some(reason) => Err(StorageError::Poisoned {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&self, reason: String) {
        if self.poisoned.set(reason).is_err() {
            return;
        }
        let callbacks = lock(&self.poisoned_callbacks).clone();
        for callback in callbacks {
            callback();
        }
        // Take the lock so a waiter between its poison check and its wait is not missed.
        drop(lock(&self.durable));
        self.durable_changed.notify_all();
    }

    fn sync_dir(&self) -> Result<()> {
        self.io
            .sync_dir(&self.dir)
            .map_err(|source| StorageError::fsync(&self.dir, source))
    }

    fn request_flush(&self) {
        if let Some(&id) = self.registration.get() {
            self.flusher.request(id);
        }
    }
}
