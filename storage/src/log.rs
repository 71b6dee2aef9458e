//! [`Log`]: one partition's log, the API the broker calls.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_protocol::BatchError;
use strata_protocol::batch::{self, BatchHeader, STAMPED_PREFIX_BYTES};

use crate::checkpoint::{self, CleanShutdown};
use crate::config::{Durability, LogConfig};
use crate::error::{Result, StorageError};
use crate::flusher::{Flushable, Flusher};
use crate::io::{Io, remove_if_exists, sync_parent, write_file_atomically};
use crate::producer::{self, ProducerStates, Verdict};
use crate::recovery;
use crate::scan::{Check, scan};
use crate::segment::{FileRange, Locate, Segment};

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

/// State changed only by appends and rolls, under the append lock.
struct AppendState {
    /// Sealed segments whose data and index files are not yet fsync'd, oldest first.
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
    /// (docs/benchmarks.md, "Sixth round").
    dir_unsynced: bool,
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
    durable: Mutex<u64>,
    durable_changed: Condvar,
    poisoned: OnceLock<String>,
    /// Set by `close` and `delete` under the append lock; writes then fail.
    closed: AtomicBool,
    callbacks: Mutex<Vec<DurableCallback>>,
    write_back_callbacks: Mutex<Vec<WriteBackCallback>>,
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
    lock_file: Mutex<Option<File>>,
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

/// Takes an exclusive, non-blocking `flock` on `<dir>/.lock`.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StorageError::at(&path))?;
    // SAFETY: `flock` only reads the descriptor, which `file` keeps open for the call.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(StorageError::Locked {
                dir: dir.to_owned(),
            });
        }
        return Err(StorageError::io(&path, error));
    }
    Ok(file)
}

impl Log {
    /// Opens (or creates) the log in `dir`, running recovery (see `docs/storage.md`).
    /// `flusher` is shared by all logs of a broker; `io` is [`RealIo`](crate::RealIo) in
    /// production and a fault-injecting implementation in tests.
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
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(StorageError::at(&dir))?;
            sync_parent(io.as_ref(), &dir)?;
        }
        let lock_file = lock_dir(&dir)?;
        let recovered = recovery::recover(io.as_ref(), &dir, &config)?;
        let opened_clean = recovered.clean;
        let segments = recovered.segments;
        let active = Arc::clone(segments.last().expect("recovery leaves a segment"));
        // Recovered bytes may only be in the page cache: make them durable before anyone
        // is told so. After a clean shutdown this finds nothing dirty.
        active.sync()?;
        // Writing the checkpoint fsyncs the directory, which also makes the active
        // segment's entry durable if a crash came between its roll and the next flush. If
        // the checkpoint already names it, a flush fsync'd the directory after the roll.
        if recovered.recovery_point != active.base_offset() {
            checkpoint::write_recovery_point(io.as_ref(), &dir, active.base_offset())?;
        }
        let inner = Arc::new(LogInner::new(dir, config, io, flusher, segments));
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
    /// retention pass; a durability change re-schedules the flusher. Data already written
    /// is not rewritten.
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
        Ok(())
    }

    /// Appends a batch as the leader: the batch gets `base_offset = log_end_offset` and
    /// `leader_epoch`, stamped into its first 16 bytes on the way to disk (the CRC does not
    /// cover them). The caller has validated it with `batch::validate`. The batch is in the
    /// page cache when this returns (it survives `kill -9`); durability follows the policy.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`], [`StorageError::BatchTooLarge`],
    /// [`StorageError::InvalidBatch`] if the length or counts disagree,
    /// [`StorageError::NoSpace`] or [`StorageError::Io`] (nothing became visible).
    pub fn append(&self, batch: &[u8], leader_epoch: u32) -> Result<AppendInfo> {
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        let base_offset = self.inner.log_end_offset();
        let header = check_shape(batch, base_offset)?;
        if let Verdict::Duplicate(base_offset, last_offset, max_timestamp) =
            state.producers.check(&header)?
        {
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
    /// exactly at the log end offset. Its CRC is verified.
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
        let (prefix, rest) = batch.split_at(STAMPED_PREFIX_BYTES);
        self.inner.write_batch(&mut state, prefix, rest, &header)
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

    /// Seals the active segment and starts a new one at the log end offset, unless the
    /// active segment is empty. The sealed segment is fsync'd by the flusher.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`] or the I/O error creating the new segment.
    pub fn roll(&self) -> Result<()> {
        let mut state = lock(&self.inner.append);
        self.inner.check_writable()?;
        self.inner.roll_locked(&mut state).map(drop)
    }

    /// Deletes every batch at and after `offset` (follower truncation). `offset` must be a
    /// batch boundary; at or above the log end offset this does nothing. The result is
    /// fsync'd before returning.
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
    /// offsets become `start_offset`. A crash part-way leaves a contiguous part of the
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

    /// Deletes the oldest sealed segments while their newest timestamp is older than
    /// `retention_ms` before `now_ms`, or while the log would still hold at least
    /// `retention_bytes` without them. Never deletes the active segment. Advances the log
    /// start offset to the first remaining segment.
    ///
    /// # Errors
    /// An I/O error unlinking files or syncing the directory.
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
        state
            .unsynced
            .retain(|segment| !removed.iter().any(|gone| Arc::ptr_eq(gone, segment)));
        drop(state);
        for segment in removed {
            segment.remove_files()?;
        }
        self.inner
            .remove_snapshots(|offset| offset < outcome.log_start_offset)?;
        if let Err(error) = self.inner.sync_dir() {
            // The same fsync may cover a rolled segment's entry (`dir_unsynced`), and
            // after a failed fsync a retry can succeed without making it durable.
            self.inner
                .poison(format!("directory fsync after retention failed: {error}"));
            return Err(error);
        }
        Ok(outcome)
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

    /// Registers `callback`, called with the new durable offset and the time the flush's
    /// fsyncs took, each time the durable offset advances, on the thread that ran the
    /// fsync (the flusher, or a caller of `sync`), before `wait_durable` waiters wake. It
    /// must be quick and must not call this log's `sync`, `truncate_to`,
    /// `apply_retention` or `close` (it runs under their lock); a broker pokes a tokio
    /// `watch` channel from it.
    pub fn on_durable(&self, callback: impl Fn(u64, Duration) + Send + Sync + 'static) {
        lock(&self.inner.callbacks).push(Arc::new(callback));
    }

    /// Registers `callback`, called on the write-back thread each time it has written a
    /// sealed segment back after a roll, with the bytes it wrote back and the time that
    /// took, pauses included. It must be quick; a broker records metrics from it.
    pub fn on_write_back(&self, callback: impl Fn(u64, Duration) + Send + Sync + 'static) {
        lock(&self.inner.write_back_callbacks).push(Arc::new(callback));
    }

    /// `Ok` unless the log is poisoned or closed.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`] with the first failure, or [`StorageError::Closed`].
    pub fn check_poisoned(&self) -> Result<()> {
        self.inner.check_writable()
    }

    /// Blocks until every offset below `offset` is durable (`Ok(true)`) or `timeout`
    /// passes (`Ok(false)`). Under `Durability::Never` only rolls, `sync` and `close`
    /// advance the durable offset.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`] if the log is or becomes poisoned while waiting.
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
    /// [`StorageError::Poisoned`], or the fsync error (which poisons the log).
    pub fn sync(&self) -> Result<u64> {
        self.inner.flush(true)
    }

    /// Clean shutdown: fsyncs all data, writes every index file, the recovery point and
    /// the clean shutdown marker, so the next open reads no data bytes. Afterwards writes
    /// fail with [`StorageError::Closed`], reads of what is there still work, and the
    /// directory lock is released. Closing a closed log does nothing.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`] (no marker is written; the next open recovers), or an
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
        match fs::remove_dir_all(&dir) {
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
fn flush_interval(durability: Durability) -> Option<Duration> {
    match durability {
        Durability::IntervalMs(ms) => Some(Duration::from_millis(ms)),
        Durability::EveryBatch | Durability::Never => None,
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
            }),
            maintenance: Mutex::new(Maintenance {
                closed: false,
                recovery_point: active.base_offset(),
            }),
            segments: RwLock::new(Arc::new(segments)),
            log_end_offset: AtomicU64::new(log_end_offset),
            // The active segment was fsync'd during open, and sealed ones before it.
            durable: Mutex::new(log_end_offset),
            durable_changed: Condvar::new(),
            poisoned: OnceLock::new(),
            closed: AtomicBool::new(false),
            callbacks: Mutex::new(Vec::new()),
            write_back_callbacks: Mutex::new(Vec::new()),
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
        let _ = self.poisoned.set(reason);
        // Take the lock so a waiter between its poison check and its wait is not missed.
        drop(lock(&self.durable));
        self.durable_changed.notify_all();
    }

    fn sync_dir(&self) -> Result<()> {
        self.io
            .sync_dir(&self.dir)
            .map_err(StorageError::at(&self.dir))
    }

    fn request_flush(&self) {
        if let Some(&id) = self.registration.get() {
            self.flusher.request(id);
        }
    }

    fn write_batch(
        &self,
        state: &mut AppendState,
        prefix: &[u8],
        rest: &[u8],
        header: &BatchHeader,
    ) -> Result<AppendInfo> {
        let length = header.total_len();
        if length as u64 > self.config().segment_bytes_max {
            return Err(StorageError::BatchTooLarge {
                batch_bytes: length,
                segment_bytes_max: self.config().segment_bytes_max,
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
        if state.active_since_ms.is_none() {
            state.active_since_ms = Some(self.io.now_ms());
        }
        state.producers.apply(header, self.config().producers_max);
        self.log_end_offset
            .store(header.next_offset(), Ordering::Release);
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
            active.committed_bytes() + header.total_len() as u64 > self.config().segment_bytes_max;
        let old = state.active_since_ms.is_some_and(|since| {
            let age = self.io.now_ms().saturating_sub(since);
            u64::try_from(age).is_ok_and(|age| age >= self.config().segment_ms_max)
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
                // ENOSPC creating a file changed nothing; any other failure leaves the
                // directory's state unknown.
                if !matches!(error, StorageError::NoSpace { .. }) {
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
        self.log_end_offset.store(offset, Ordering::Release);
        state.unsynced.retain(|segment| {
            !Arc::ptr_eq(segment, target) && !removed.iter().any(|gone| Arc::ptr_eq(gone, segment))
        });
        state.active_since_ms = (!truncated.is_empty()).then(|| self.io.now_ms());
        {
            let mut durable = lock(&self.durable);
            *durable = (*durable).min(offset);
        }
        for segment in removed {
            segment.remove_files()?;
        }
        self.sync_dir()
    }

    /// The body of `truncate_fully`. The order keeps every crash state recoverable to a
    /// contiguous log: first unlink segments at or above `start_offset` (newest first, so
    /// a prefix remains), then create the new segment (recovery drops it while older
    /// segments remain, because of the gap), then unlink the rest oldest first.
    fn restart_at(
        &self,
        maintenance: &mut Maintenance,
        state: &mut AppendState,
        start_offset: u64,
    ) -> Result<()> {
        let segments = self.segments();
        let (below, at_or_above): (Vec<_>, Vec<_>) = segments
            .iter()
            .partition(|segment| segment.base_offset() < start_offset);
        for segment in at_or_above.iter().rev() {
            segment.remove_files()?;
        }
        self.sync_dir()?;
        let interval = self.config().index_interval_bytes;
        let fresh = Segment::create(self.io.as_ref(), &self.dir, start_offset, interval)?;
        for segment in &below {
            segment.remove_files()?;
        }
        self.sync_dir()?;
        self.replace_segments(vec![Arc::new(fresh)]);
        self.log_end_offset.store(start_offset, Ordering::Release);
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

    /// The producer state at `end` (a batch boundary): the newest readable snapshot at or
    /// below `end` and not below the log start, plus the batches after it; the whole log
    /// if there is none. Snapshots above `end` describe batches that are gone and are
    /// deleted.
    fn rebuild_producers(&self, end: u64) -> Result<ProducerStates> {
        let segments = self.segments();
        let start = segments.first().map_or(0, |segment| segment.base_offset());
        self.remove_snapshots(|offset| offset > end)?;
        let mut loaded = None;
        for offset in producer::list_snapshots(&self.dir)?.into_iter().rev() {
            if offset < start {
                break;
            }
            let path = producer::snapshot_path(&self.dir, offset);
            let bytes = fs::read(&path).map_err(StorageError::at(&path))?;
            if let Some((states, at)) = ProducerStates::decode(&bytes)
                && at == offset
            {
                loaded = Some((states, offset));
                break;
            }
        }
        let (mut states, from) = loaded.unwrap_or_else(|| (ProducerStates::default(), start));
        let producers_max = self.config().producers_max;
        let first = segments
            .partition_point(|segment| segment.base_offset() <= from)
            .saturating_sub(1);
        for segment in segments.get(first..).unwrap_or_default() {
            if segment.base_offset() >= end {
                break;
            }
            let (position, offset) = if from > segment.base_offset() {
                match segment.locate(from)? {
                    Locate::Boundary(position) => (position, from),
                    Locate::Inside(batch_base_offset) => {
                        let path = producer::snapshot_path(&self.dir, from);
                        let reason = format!("inside the batch at {batch_base_offset}");
                        return Err(StorageError::corrupt(&path, reason));
                    }
                }
            } else {
                (0, segment.base_offset())
            };
            let Some(map) = segment.mapping()? else {
                continue;
            };
            let position = usize::try_from(position).expect("mapped positions fit usize");
            scan(&map, position, offset, Check::HeadersOnly, |_, header| {
                if header.base_offset < end {
                    states.apply(header, producers_max);
                }
            });
        }
        Ok(states)
    }

    /// After the log was cut at `offset`: forget snapshots above it and rebuild the state.
    fn reset_producers(&self, state: &mut AppendState, offset: u64) -> Result<()> {
        state.snapshots.retain(|&(at, _)| at <= offset);
        state.producers = self.rebuild_producers(offset)?;
        Ok(())
    }

    /// Deletes the snapshot files whose offset matches `doomed`.
    fn remove_snapshots(&self, doomed: impl Fn(u64) -> bool) -> Result<()> {
        for offset in producer::list_snapshots(&self.dir)? {
            if doomed(offset) {
                remove_if_exists(&producer::snapshot_path(&self.dir, offset))?;
            }
        }
        Ok(())
    }

    fn write_snapshots(&self, snapshots: &[(u64, Vec<u8>)]) -> Result<()> {
        for (offset, bytes) in snapshots {
            let path = producer::snapshot_path(&self.dir, *offset);
            write_file_atomically(self.io.as_ref(), &path, bytes)?;
        }
        Ok(())
    }

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
    fn publish_durable(&self, target: u64, elapsed: Duration) {
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
