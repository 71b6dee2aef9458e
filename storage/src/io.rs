//! The I/O seam. Every file-system operation of the crate goes through [`Io`] (names:
//! create, open, read, rename, remove, list, directory fsync, the directory lock, the
//! clock) and [`IoFile`] (one open file: write, `set_len`, fsync, write-back, length, and
//! the read-only mapping that reads go through). Tests swap in implementations that inject
//! faults (`storage/tests/common/mod.rs`) or simulate a power loss ([`crate::sim`]).
//!
//! Every method defaults to the real file system, so a wrapper that injects one fault
//! overrides only that method. The production [`RealIo`] is the defaults: an append is one
//! `writev`, a read is an `mmap` of the segment, with no layer in between.

use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use memmap2::Mmap;
use memmap2::MmapOptions;

use crate::error::{Result, StorageError};

/// Files and directories by name, and the clock. Shared by all logs; thread-safe.
pub trait Io: Debug + Send + Sync {
    /// Creates a new file (failing if it exists), opened for reading and appending.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            // Logs hold whatever clients produced: only the broker's user may read them.
            .mode(0o600)
            .open(path)?;
        Ok(Arc::new(RealFile(file)))
    }

    /// Opens an existing file for reading and appending.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(Arc::new(RealFile(file)))
    }

    /// Reads a whole small file (an index, a checkpoint, a snapshot).
    ///
    /// # Errors
    /// The underlying I/O error; `NotFound` if it does not exist.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    /// Renames `from` over `to`. Durable once the directory is fsync'd.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    /// Unlinks a file. Durable once the directory is fsync'd; open files and their
    /// mappings stay valid.
    ///
    /// # Errors
    /// The underlying I/O error; `NotFound` if it does not exist.
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    /// The names of the entries of a directory, in no order.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        fs::read_dir(dir)?
            .map(|entry| entry.map(|entry| entry.file_name()))
            .collect()
    }

    /// Creates a directory and its missing parents; `Ok(false)` if it already existed.
    /// The new entry is durable once the parent is fsync'd.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create_dir_all(&self, dir: &Path) -> io::Result<bool> {
        if dir.is_dir() {
            return Ok(false);
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(true)
    }

    /// Removes a directory and everything in it. Durable once the parent is fsync'd.
    ///
    /// # Errors
    /// The underlying I/O error; `NotFound` if it does not exist.
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir_all(dir)
    }

    /// fsyncs a directory, making creates, renames and deletes in it durable.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Takes the exclusive lock of a partition directory, held until the [`DirLock`]
    /// drops. The real one is a non-blocking `flock` on `<dir>/.lock`, so it also keeps
    /// other processes out.
    ///
    /// # Errors
    /// `WouldBlock` if the lock is held, or the underlying I/O error.
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(".lock"))?;
        // SAFETY: `flock` only reads the descriptor, which `file` keeps open for the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirLock::new(file))
    }

    /// Wall-clock milliseconds since the Unix epoch (segment age for `segment_ms`).
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
    }
}

/// A held directory lock ([`Io::lock_dir`]); dropping it releases the lock.
pub struct DirLock {
    _held: Box<dyn Send + Sync>,
}

impl DirLock {
    /// A lock released when `held` drops.
    pub fn new(held: impl Send + Sync + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl Debug for DirLock {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DirLock")
    }
}

/// One open file. Writes always append at the end of the file (`O_APPEND`). Thread-safe:
/// the log writes under its append lock while the flusher fsyncs concurrently.
///
/// Every `IoFile` is a real descriptor ([`as_fd`](IoFile::as_fd)): reads map it and a
/// broker `sendfile`s from it, so no read copies data through this trait. The descriptor
/// is for those two only; everything that changes the file goes through the methods.
pub trait IoFile: Debug + Send + Sync {
    /// One `writev` call at the end of the file; may write fewer bytes than given.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// `ftruncate`. The log only shrinks ranges that no live view of a mapping reaches.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// `fdatasync`.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync_data(&self) -> io::Result<()>;

    /// The descriptor, to map and to `sendfile` from.
    fn as_fd(&self) -> BorrowedFd<'_>;

    /// Writes bytes `offset..offset + len` back to the device and waits for them
    /// ([`write_back_range`]), ahead of an `fdatasync`. Not a durability point on its own.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn write_back(&self, offset: u64, len: u64) -> io::Result<()> {
        write_back_range(self.as_fd(), offset, len)
    }

    /// The file's length in bytes (`fstat`).
    ///
    /// # Errors
    /// The underlying I/O error.
    fn file_bytes(&self) -> io::Result<u64> {
        let file = File::from(self.as_fd().try_clone_to_owned()?);
        Ok(file.metadata()?.len())
    }

    /// A read-only shared mapping of the first `length` (non-zero) bytes, which may
    /// extend past the end of the file. Touching a mapped byte past the end of the file
    /// raises SIGBUS: callers read only bytes the file is known to hold, and never shrink
    /// it below a live view (see the `segment` module docs).
    ///
    /// # Errors
    /// The `mmap` error.
    fn map(&self, length: usize) -> io::Result<Mmap> {
        // SAFETY: the mapping is read-only, and other processes are kept out of the
        // directory by its lock, so the mapped bytes change only by this crate's appends,
        // which never rewrite written bytes. See the contract above for the length.
        unsafe { MmapOptions::new().len(length).map(self.as_fd().as_raw_fd()) }
    }
}

/// Bytes a sealed segment is written back in at a time ([`Segment::write_back_step`]).
///
/// [`Segment::write_back_step`]: crate::segment::Segment::write_back_step
pub const WRITE_BACK_STEP_BYTES: u64 = 1 << 20;

/// Writes bytes `offset..offset + len` of `file` back to the device and waits until they
/// are written (`sync_file_range` with `WAIT_BEFORE`, `WRITE` and `WAIT_AFTER`). Does not
/// flush metadata or the device cache: only `fdatasync` makes anything durable.
///
/// # Errors
/// The system call's error; `EFBIG` for a range past `off64_t`.
pub fn write_back_range(file: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let (Ok(at), Ok(count)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: a system call on a descriptor `file` keeps open; no memory is passed.
    if unsafe { libc::sync_file_range(file.as_raw_fd(), at, count, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The real file system and clock: every default of [`Io`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

impl Io for RealIo {}

/// A real file opened by [`RealIo`].
#[derive(Debug)]
pub struct RealFile(File);

impl RealFile {
    /// Wraps an open file.
    pub fn new(file: File) -> Self {
        Self(file)
    }
}

impl IoFile for RealFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.0).write_vectored(bufs)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn file_bytes(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// Writes all of `bufs`, looping over short writes.
///
/// # Errors
/// The first I/O error; `WriteZero` if the file accepts no bytes.
pub(crate) fn write_all_vectored(
    file: &dyn IoFile,
    mut bufs: &mut [IoSlice<'_>],
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut bufs, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `bytes` to a new file at `temporary` (replacing a leftover), fsyncs it and
/// renames it over `path`. Returns the file; the caller fsyncs the directory.
///
/// # Errors
/// The first failing step, with its path.
pub(crate) fn replace_with_new_file(
    io: &dyn Io,
    temporary: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<Arc<dyn IoFile>> {
    remove_if_exists(io, temporary)?;
    let file = io.create(temporary).map_err(StorageError::at(temporary))?;
    write_all_vectored(file.as_ref(), &mut [IoSlice::new(bytes)])
        .map_err(StorageError::at(temporary))?;
    // A failed fsync of the temporary file is harmless: it is never renamed, and the next
    // attempt replaces it. So `ENOSPC` here stays retriable (`out_of_resources`).
    file.sync_data().map_err(StorageError::at(temporary))?;
    io.rename(temporary, path).map_err(StorageError::at(path))?;
    Ok(file)
}

/// Replaces `path` with `bytes` atomically: write a temporary file, fsync it, rename it
/// over `path`, fsync the directory. A crash leaves either the old or the new content.
///
/// # Errors
/// The first failing step, with its path. An error that is
/// [`out_of_resources`](StorageError::out_of_resources) changed nothing durable, and the
/// same call can be retried; a failed directory fsync is not.
pub(crate) fn write_file_atomically(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = with_suffix(path, ".tmp");
    drop(replace_with_new_file(io, &temporary, path, bytes)?);
    sync_parent(io, path)
}

/// fsyncs the directory that holds `path`.
///
/// # Errors
/// The I/O error, with the directory's path.
pub(crate) fn sync_parent(io: &dyn Io, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir)
        .map_err(|source| StorageError::fsync(dir, source))
}

/// Removes a file; a file that is already gone is fine.
///
/// # Errors
/// Any other I/O error.
pub(crate) fn remove_if_exists(io: &dyn Io, path: &Path) -> Result<()> {
    match io.remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(StorageError::io(path, error)),
        _ => Ok(()),
    }
}

/// Reads a whole small file, `None` if it does not exist.
///
/// # Errors
/// An I/O error other than "not found".
pub(crate) fn read_if_exists(io: &dyn Io, path: &Path) -> Result<Option<Vec<u8>>> {
    match io.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(StorageError::io(path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_back_range_takes_any_range_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        fs::write(&path, vec![7u8; 3 << 20]).unwrap();
        let file = File::open(&path).unwrap();
        write_back_range(file.as_fd(), 0, 1 << 20).unwrap();
        write_back_range(file.as_fd(), (1 << 20) + 5, 2 << 20).unwrap();
        let error = write_back_range(file.as_fd(), u64::MAX, 1).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EFBIG), "{error}");
        // A pipe has no pages to write back.
        let (reader, _writer) = io::pipe().unwrap();
        let error = write_back_range(reader.as_fd(), 0, 1).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESPIPE), "{error}");
    }
}
