//! One segment: a `.log` file of batches laid end to end, starting at `base_offset`, with
//! its in-memory indexes and a read-only mapping shared with the `Bytes` handed to readers.
//!
//! # The mapping rule (SIGBUS)
//! The mapping of a growing segment is made with room to grow, so it may extend past the
//! end of the file, but readers only ever touch the bytes committed when they took their
//! [`View`], which never exceed the file's length. The file is only shrunk by
//! [`Segment::truncate`], and only when no live view reaches past the cut; otherwise the
//! kept prefix is copied to a new file renamed over the old name, and the old inode lives
//! on for as long as its mappings do.

mod view;

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_protocol::batch::{BatchHeader, BatchView};

use crate::error::{Result, StorageError};
use crate::index::SegmentIndex;
use crate::io::{
    Io, IoFile, WRITE_BACK_STEP_BYTES, remove_if_exists, replace_with_new_file, sync_parent,
    with_suffix, write_all_vectored, write_file_atomically,
};
use crate::scan::{Check, scan};

pub use self::view::{FileRange, View, map_file};
use self::view::{MapSlot, SharedMap};

/// `<dir>/<20-digit base offset>.log`
pub fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

/// `<dir>/<20-digit base offset>.index`
pub fn index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}

/// `<dir>/<20-digit base offset>.timeindex`
pub fn time_index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// Whole batches read from one segment.
#[derive(Debug)]
pub struct Chunk {
    /// The batches, sharing the mapping.
    pub bytes: Bytes,
    /// The same bytes, as a range of the segment file.
    pub file: FileRange,
    /// Offset after the last batch returned (the `from` offset if none).
    pub next_offset: u64,
}

/// Where an offset sits in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locate {
    /// A batch starts at this offset (or the segment ends there) at this byte position.
    Boundary(u64),
    /// The offset is inside the batch with this base offset.
    Inside(u64),
}

/// A failed append: the error, and whether the file was rolled back to its previous length
/// (if not, the log must be poisoned).
#[derive(Debug)]
pub struct AppendFailure {
    /// What failed.
    pub error: StorageError,
    /// Whether the partial write was removed.
    pub rolled_back: bool,
}

/// One segment. Thread-safe: the appender (under the log's append lock), readers and the
/// flusher use it concurrently; readers see only `committed_bytes`.
#[derive(Debug)]
pub struct Segment {
    base_offset: u64,
    dir: PathBuf,
    log_path: PathBuf,
    file: Arc<dyn IoFile>,
    committed_bytes: AtomicU64,
    /// Bytes from the start known written back to the device
    /// ([`Segment::write_back_step`]).
    written_back: AtomicU64,
    /// Held across each write-back step and each fsync; `true` once a step failed. The
    /// kernel reports a failed writeback once per open file, so whichever of the two
    /// comes second must learn of the first's failure from here.
    write_back_failed: Mutex<bool>,
    next_offset: AtomicU64,
    max_timestamp: AtomicI64,
    map: Mutex<MapSlot>,
    index: RwLock<SegmentIndex>,
}

impl Segment {
    /// A segment over an open file whose first `committed_bytes` hold valid batches.
    pub fn from_parts(
        dir: &Path,
        base_offset: u64,
        file: Arc<dyn IoFile>,
        committed_bytes: u64,
        next_offset: u64,
        index: SegmentIndex,
    ) -> Self {
        assert!(next_offset >= base_offset, "segment ends before it starts");
        Self {
            base_offset,
            dir: dir.to_owned(),
            log_path: log_path(dir, base_offset),
            file,
            committed_bytes: AtomicU64::new(committed_bytes),
            written_back: AtomicU64::new(0),
            write_back_failed: Mutex::new(false),
            next_offset: AtomicU64::new(next_offset),
            max_timestamp: AtomicI64::new(index.max_timestamp()),
            map: Mutex::new(MapSlot::default()),
            index: RwLock::new(index),
        }
    }

    /// Creates an empty segment file and fsyncs the directory.
    ///
    /// # Errors
    /// The I/O error, e.g. if the file already exists.
    pub fn create(io: &dyn Io, dir: &Path, base_offset: u64, interval_bytes: u32) -> Result<Self> {
        let segment = Self::create_unsynced(io, dir, base_offset, interval_bytes)?;
        if let Err(error) = sync_parent(io, &segment.log_path) {
            // Leave no file behind that a retry (or recovery) would trip over.
            let _ = io.remove_file(&segment.log_path);
            return Err(error);
        }
        Ok(segment)
    }

    /// Creates an empty segment file; the caller fsyncs the directory before it counts
    /// anything in the segment durable.
    ///
    /// # Errors
    /// The I/O error, e.g. if the file already exists.
    pub fn create_unsynced(
        io: &dyn Io,
        dir: &Path,
        base_offset: u64,
        interval_bytes: u32,
    ) -> Result<Self> {
        let path = log_path(dir, base_offset);
        let file = io.create(&path).map_err(StorageError::at(&path))?;
        let index = SegmentIndex::new(interval_bytes);
        Ok(Self::from_parts(
            dir,
            base_offset,
            file,
            0,
            base_offset,
            index,
        ))
    }

    /// The offset of the first batch.
    pub fn base_offset(&self) -> u64 {
        self.base_offset
    }

    /// Bytes of whole batches visible to readers.
    pub fn committed_bytes(&self) -> u64 {
        self.committed_bytes.load(Ordering::Acquire)
    }

    /// The offset after the last batch.
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// The largest batch max timestamp, `i64::MIN` if empty.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// Whether the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.committed_bytes() == 0
    }

    fn relative(&self, offset: u64) -> u32 {
        let delta = offset
            .checked_sub(self.base_offset)
            .expect("offset below segment base");
        u32::try_from(delta).expect("relative offset fits u32; the log rolls before")
    }

    /// A view of all committed bytes; `None` if empty. The mapping behind it is kept, and a
    /// growing segment's has room to grow, so a reader that follows the appends does not
    /// remap (an `mmap`, and an `munmap` with its TLB shootdown) after each of them.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn mapping(&self) -> Result<Option<View>> {
        let mut slot = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the slot lock: `truncate` lowers it under the same lock, so a view
        // made here never reaches bytes a truncation is about to cut.
        let committed = self.committed_bytes();
        slot.view(&self.file, committed, &self.log_path)
    }

    /// Appends one batch (`prefix` then `rest`) at the end of the file, then publishes it
    /// to readers. Caller holds the log's append lock and has checked size and offsets.
    ///
    /// # Errors
    /// The write error; the partial write is rolled back if possible.
    pub fn append(
        &self,
        prefix: &[u8],
        rest: &[u8],
        header: &BatchHeader,
    ) -> Result<(), AppendFailure> {
        let position = self.committed_bytes();
        let length = prefix.len() + rest.len();
        assert_eq!(
            length,
            header.total_len(),
            "batch length disagrees with its header"
        );
        let mut bufs = [IoSlice::new(prefix), IoSlice::new(rest)];
        if let Err(error) = write_all_vectored(self.file.as_ref(), &mut bufs) {
            // No view reaches bytes past `position`, so shrinking back is safe.
            let rolled_back = self.file.set_len(position).is_ok();
            let error = StorageError::io(&self.log_path, error);
            return Err(AppendFailure { error, rolled_back });
        }
        let position_u32 = u32::try_from(position).expect("segment positions fit u32");
        let length_u32 = u32::try_from(length).expect("batch length fits u32");
        let relative = self.relative(header.base_offset);
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .on_batch(relative, position_u32, length_u32, header.max_timestamp);
        self.max_timestamp
            .fetch_max(header.max_timestamp, Ordering::AcqRel);
        self.next_offset
            .store(header.next_offset(), Ordering::Release);
        self.committed_bytes
            .store(position + length as u64, Ordering::Release);
        Ok(())
    }

    /// Position of the index entry at or below `offset` inside `visible` bytes.
    fn floor_position(&self, offset: u64, visible: usize) -> usize {
        let relative = offset
            .saturating_sub(self.base_offset)
            .min(u64::from(u32::MAX));
        let relative = u32::try_from(relative).unwrap_or(u32::MAX);
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index.lookup(relative, visible as u64).position as usize
    }

    fn header_at(&self, data: &[u8], position: usize) -> Result<BatchHeader> {
        let rest = data.get(position..).unwrap_or_default();
        let header = BatchHeader::parse(rest).map_err(|error| {
            StorageError::corrupt(&self.log_path, format!("at {position}: {error}"))
        })?;
        if header.total_len() > rest.len() {
            let reason = format!("batch at {position} runs past the committed end");
            return Err(StorageError::corrupt(&self.log_path, reason));
        }
        Ok(header)
    }

    /// Whole batches from the one containing `from`: at least one if any is below `limit`,
    /// then more while the total stays within `max_bytes`. `None` if `from` is at or past
    /// the end of this segment.
    ///
    /// # Errors
    /// A mapping error, or a damaged header in committed data.
    pub fn read(&self, from: u64, max_bytes: usize, limit: u64) -> Result<Option<Chunk>> {
        let Some(map) = self.mapping()? else {
            return Ok(None);
        };
        let data: &[u8] = &map;
        let mut position = self.floor_position(from, data.len());
        let mut header = loop {
            if position >= data.len() {
                return Ok(None);
            }
            let header = self.header_at(data, position)?;
            if header.next_offset() > from {
                break header;
            }
            position += header.total_len();
        };
        let start = position;
        let mut next_offset = from;
        while header.last_offset() < limit {
            let end = position + header.total_len();
            if position > start && end - start > max_bytes {
                break;
            }
            position = end;
            next_offset = header.next_offset();
            if position >= data.len() {
                break;
            }
            header = self.header_at(data, position)?;
        }
        let file = FileRange {
            view: map.clone(),
            position: start,
            len: position - start,
        };
        let bytes = Bytes::from_owner(SharedMap(map)).slice(start..position);
        Ok(Some(Chunk {
            bytes,
            file,
            next_offset,
        }))
    }

    /// The first record at or after `timestamp` in this segment, as `(offset, timestamp)`.
    ///
    /// # Errors
    /// A mapping error or damaged committed data.
    pub fn find_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        if self.max_timestamp() < timestamp {
            return Ok(None);
        }
        let Some(map) = self.mapping()? else {
            return Ok(None);
        };
        let data: &[u8] = &map;
        let start_relative = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            index.time_lookup(timestamp)
        };
        let mut position =
            self.floor_position(self.base_offset + u64::from(start_relative), data.len());
        while position < data.len() {
            let header = self.header_at(data, position)?;
            let bytes = data
                .get(position..position + header.total_len())
                .unwrap_or_default();
            position += header.total_len();
            if header.max_timestamp < timestamp {
                continue;
            }
            for record in (BatchView { header, bytes }).records() {
                let record = record
                    .map_err(|error| StorageError::corrupt(&self.log_path, error.to_string()))?;
                if record.timestamp >= timestamp {
                    return Ok(Some((record.offset, record.timestamp)));
                }
            }
        }
        Ok(None)
    }

    /// Where `offset` sits. `offset` must be within `[base_offset, next_offset]`.
    ///
    /// # Errors
    /// A mapping error or damaged committed data.
    pub fn locate(&self, offset: u64) -> Result<Locate> {
        assert!(
            offset >= self.base_offset && offset <= self.next_offset(),
            "offset outside segment"
        );
        let Some(map) = self.mapping()? else {
            return Ok(Locate::Boundary(0));
        };
        let data: &[u8] = &map;
        let mut position = self.floor_position(offset, data.len());
        while position < data.len() {
            let header = self.header_at(data, position)?;
            if header.base_offset == offset {
                return Ok(Locate::Boundary(position as u64));
            }
            if header.next_offset() > offset {
                return Ok(Locate::Inside(header.base_offset));
            }
            position += header.total_len();
        }
        Ok(Locate::Boundary(data.len() as u64))
    }

    /// Writes `.index` and `.timeindex` from memory, each atomically.
    ///
    /// # Errors
    /// The I/O error.
    pub fn persist_index(&self, io: &dyn Io) -> Result<()> {
        let (offsets, times) = {
            let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
            (index.encode_offsets(), index.encode_times())
        };
        write_file_atomically(io, &index_path(&self.dir, self.base_offset), &offsets)?;
        write_file_atomically(io, &time_index_path(&self.dir, self.base_offset), &times)
    }

    /// Adds the final time index entry before the segment is sealed or closed.
    pub fn seal_index(&self) {
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .seal();
    }

    /// fsyncs the `.log` file.
    ///
    /// # Errors
    /// The fsync error.
    pub fn sync(&self) -> Result<()> {
        let failed = self.lock_write_back();
        if *failed {
            return Err(self.earlier_write_back_failure());
        }
        self.file
            .sync_data()
            .map_err(|source| StorageError::fsync(&self.log_path, source))
    }

    fn lock_write_back(&self) -> std::sync::MutexGuard<'_, bool> {
        self.write_back_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn earlier_write_back_failure(&self) -> StorageError {
        let error = std::io::Error::other("an earlier write-back of this segment failed");
        StorageError::io(&self.log_path, error)
    }

    /// Writes the next [`WRITE_BACK_STEP_BYTES`] (at most) of the committed bytes not yet
    /// written back to the device, and waits for them ([`IoFile::write_back`]). Returns
    /// the step's bytes and duration, or `None` if every committed byte is written back
    /// or `stop` (read with the step's lock held) is set. Not a durability point: only
    /// [`sync`](Self::sync) is, and it fails once a step has.
    ///
    /// # Errors
    /// [`StorageError::Io`] with the path; again on every later call.
    pub fn write_back_step(&self, stop: &AtomicBool) -> Result<Option<(u64, Duration)>> {
        let mut failed = self.lock_write_back();
        if *failed {
            return Err(self.earlier_write_back_failure());
        }
        let end = self.committed_bytes();
        let offset = self.written_back.load(Ordering::Acquire);
        if offset >= end || stop.load(Ordering::Acquire) {
            return Ok(None);
        }
        let step = WRITE_BACK_STEP_BYTES.min(end - offset);
        let started = Instant::now();
        if let Err(error) = self.file.write_back(offset, step) {
            *failed = true;
            // Writing back is the first half of an fsync: its failure, `ENOSPC` included,
            // leaves the page cache's state unknown, as a failed fsync does.
            return Err(StorageError::fsync(&self.log_path, error));
        }
        self.written_back.fetch_max(offset + step, Ordering::AcqRel);
        Ok(Some((step, started.elapsed())))
    }

    /// Whether every committed byte is written back
    /// ([`write_back_step`](Self::write_back_step)).
    pub fn is_written_back(&self) -> bool {
        self.written_back.load(Ordering::Acquire) >= self.committed_bytes()
    }

    /// [`sync`](Self::sync) for a sealed segment: what is not yet written back is first
    /// written back in steps ([`write_back_step`](Self::write_back_step)), so the fsync of
    /// up to 2 GiB does not queue it all at once.
    ///
    /// # Errors
    /// [`StorageError::Io`] with the path.
    pub fn sync_sealed(&self) -> Result<()> {
        let never = AtomicBool::new(false);
        while self.write_back_step(&never)?.is_some() {}
        self.sync()
    }

    /// Unlinks the segment's files. Mappings stay valid: unlinking does not shrink.
    ///
    /// # Errors
    /// An I/O error other than "not found".
    pub fn remove_files(&self, io: &dyn Io) -> Result<()> {
        remove_if_exists(io, &self.log_path)?;
        remove_if_exists(io, &index_path(&self.dir, self.base_offset))?;
        remove_if_exists(io, &time_index_path(&self.dir, self.base_offset))
    }

    /// Indexes of the batches in the first `position` bytes, and the offset after them.
    fn prefix_index(&self, position: u64, interval_bytes: u32) -> Result<(SegmentIndex, u64)> {
        let map = self.mapping()?;
        let data: &[u8] = map.as_deref().map_or(&[], |map| map);
        let data = data.get(..position as usize).unwrap_or(data);
        let mut index = SegmentIndex::new(interval_bytes);
        let scanned = scan(
            data,
            0,
            self.base_offset,
            Check::HeadersOnly,
            |at, header| {
                let relative = self.relative(header.base_offset);
                let length = u32::try_from(header.total_len()).expect("fits u32");
                index.on_batch(relative, at as u32, length, header.max_timestamp);
            },
        );
        if scanned.stopped.is_some() || scanned.end_position as u64 != position {
            let reason = format!("truncation point {position} is not after a valid batch");
            return Err(StorageError::corrupt(&self.log_path, reason));
        }
        Ok((index, scanned.next_offset))
    }

    /// Cuts the segment to its first `position` bytes (a batch boundary). Shrinks the file
    /// in place when no live view reaches past the cut, else writes the prefix to a new
    /// file and renames it over (returning a new `Segment`; the old one keeps the old
    /// inode). The stale index files are removed; the result is fsync'd.
    ///
    /// # Errors
    /// Any I/O error; the caller poisons the log.
    pub fn truncate(
        self: &Arc<Self>,
        io: &dyn Io,
        position: u64,
        interval_bytes: u32,
    ) -> Result<Arc<Self>> {
        let (index, next_offset) = self.prefix_index(position, interval_bytes)?;
        remove_if_exists(io, &index_path(&self.dir, self.base_offset))?;
        remove_if_exists(io, &time_index_path(&self.dir, self.base_offset))?;
        // Taken first: waiting for a write-back step under the slot lock would hold up
        // every reader. Under it, no step raises the watermark past the cut.
        let write_back = self.lock_write_back();
        let mut slot = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        self.committed_bytes.store(position, Ordering::Release);
        self.written_back.fetch_min(position, Ordering::AcqRel);
        drop(write_back);
        slot.current = None;
        if slot.live_beyond(position) {
            // A reader still holds bytes past the cut: shrinking this inode would turn them
            // into SIGBUS. Write the prefix to a new file instead; the old inode lives on.
            let map = map_file(self.file.as_ref(), position, &self.log_path)?;
            drop(slot);
            let kept: &[u8] = map.as_deref().map_or(&[], |map| map);
            let file = copy_to_new_file(io, &self.log_path, kept)?;
            let segment = Self::from_parts(
                &self.dir,
                self.base_offset,
                file,
                position,
                next_offset,
                index,
            );
            return Ok(Arc::new(segment));
        }
        // Holding the slot lock: no reader can take a view of the range being cut.
        self.file
            .set_len(position)
            .map_err(StorageError::at(&self.log_path))?;
        drop(slot);
        self.sync()?;
        self.max_timestamp
            .store(index.max_timestamp(), Ordering::Release);
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
        self.next_offset.store(next_offset, Ordering::Release);
        Ok(Arc::clone(self))
    }
}

/// Writes `data` to a temporary file, fsyncs it and renames it over `path`, leaving any
/// mapping of the old file valid. Returns the new file, open for appending.
///
/// # Errors
/// The first failing step.
pub fn copy_to_new_file(io: &dyn Io, path: &Path, data: &[u8]) -> Result<Arc<dyn IoFile>> {
    let temporary = with_suffix(path, ".truncating");
    let file = replace_with_new_file(io, &temporary, path, data)?;
    sync_parent(io, path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::{AsFd, BorrowedFd};

    use super::*;
    use crate::io::write_back_range;

    /// A real file whose write-backs fail while `fail` is set.
    #[derive(Debug)]
    struct FailingWriteBack {
        file: File,
        fail: AtomicBool,
    }

    impl IoFile for FailingWriteBack {
        fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
            (&self.file).write_vectored(bufs)
        }

        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.file.set_len(len)
        }

        fn sync_data(&self) -> std::io::Result<()> {
            self.file.sync_data()
        }

        fn write_back(&self, offset: u64, len: u64) -> std::io::Result<()> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(libc::EIO));
            }
            write_back_range(self.file.as_fd(), offset, len)
        }

        fn as_fd(&self) -> BorrowedFd<'_> {
            self.file.as_fd()
        }
    }

    #[test]
    fn a_failed_write_back_step_fails_every_later_step_and_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let len = 2 * WRITE_BACK_STEP_BYTES + 7;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(log_path(dir.path(), 0))
            .unwrap();
        file.write_all(&vec![1u8; usize::try_from(len).unwrap()])
            .unwrap();
        let io_file = Arc::new(FailingWriteBack {
            file,
            fail: AtomicBool::new(false),
        });
        let segment = Segment::from_parts(
            dir.path(),
            0,
            Arc::clone(&io_file) as Arc<dyn IoFile>,
            len,
            0,
            SegmentIndex::new(4096),
        );
        let no_stop = AtomicBool::new(false);
        let step = segment.write_back_step(&no_stop).unwrap().unwrap().0;
        assert_eq!(step, WRITE_BACK_STEP_BYTES);
        assert!(!segment.is_written_back());
        // A set `stop` flag stops the write-back before the next step.
        assert_eq!(
            segment.write_back_step(&AtomicBool::new(true)).unwrap(),
            None
        );
        io_file.fail.store(true, Ordering::SeqCst);
        assert!(segment.write_back_step(&no_stop).is_err());
        // The device recovers, but the kernel reported the failure once, to that step:
        // every later step and fsync of the segment fails.
        io_file.fail.store(false, Ordering::SeqCst);
        let error = segment.sync().unwrap_err();
        assert!(error.to_string().contains("earlier write-back"), "{error}");
        assert!(segment.write_back_step(&no_stop).is_err());
        assert!(segment.sync_sealed().is_err());
    }

    #[test]
    fn a_write_back_goes_in_steps_and_on_from_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let io = crate::io::RealIo;
        let segment = Arc::new(Segment::create_unsynced(&io, dir.path(), 0, 4096).unwrap());
        let len = 2 * WRITE_BACK_STEP_BYTES + 7;
        let bytes = vec![1u8; usize::try_from(len).unwrap()];
        write_all_vectored(segment.file.as_ref(), &mut [IoSlice::new(&bytes)]).unwrap();
        segment.committed_bytes.store(len, Ordering::Release);
        let no_stop = AtomicBool::new(false);
        let mut steps = Vec::new();
        while let Some((step, _)) = segment.write_back_step(&no_stop).unwrap() {
            steps.push(step);
        }
        assert_eq!(steps, [WRITE_BACK_STEP_BYTES, WRITE_BACK_STEP_BYTES, 7]);
        assert!(segment.is_written_back());
        // The mark lowered, as a truncation lowers it: only the bytes past it go again.
        segment
            .written_back
            .fetch_min(WRITE_BACK_STEP_BYTES, Ordering::AcqRel);
        assert!(!segment.is_written_back());
        let (step, _) = segment.write_back_step(&no_stop).unwrap().unwrap();
        assert_eq!(step, WRITE_BACK_STEP_BYTES);
    }
}
