//! The I/O seam. Every write, truncation and fsync of the log goes through [`Io`] and
//! [`IoFile`], so tests can inject short writes, `ENOSPC`, failed fsyncs and a manual
//! clock (see `storage/tests/common/mod.rs`). Reads go through `mmap` of the real file
//! that [`IoFile::file`] exposes, so a fault-injecting implementation wraps real files.

use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, StorageError};

/// Opens files, syncs directories and tells the time. Shared by all logs; thread-safe.
pub trait Io: Debug + Send + Sync {
    /// Creates a new file (failing if it exists), opened for reading and appending.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn IoFile>>;

    /// Opens an existing file for reading and appending.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn IoFile>>;

    /// fsyncs a directory, making creates, renames and deletes in it durable.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Wall-clock milliseconds since the Unix epoch (segment age for `segment_ms_max`).
    fn now_ms(&self) -> i64;
}

/// One open file. Writes always append at the end of the file (`O_APPEND`). Thread-safe:
/// the log writes under its append lock while the flusher fsyncs concurrently.
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

    /// Writes bytes `offset..offset + len` back to the device and waits for them
    /// ([`write_back_range`]), ahead of an `fdatasync`. Not a durability point on its own.
    ///
    /// # Errors
    /// The underlying I/O error.
    fn write_back(&self, offset: u64, len: u64) -> io::Result<()> {
        write_back_range(self.file(), offset, len)
    }

    /// The real file, for `mmap` and metadata.
    fn file(&self) -> &File;
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
pub fn write_back_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
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

/// The real file system and clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

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

    fn file(&self) -> &File {
        &self.0
    }
}

impl Io for RealIo {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Arc::new(RealFile(file)))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(Arc::new(RealFile(file)))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            })
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

/// Replaces `path` with `bytes` atomically: write a temporary file, fsync it, rename it
/// over `path`, fsync the directory. A crash leaves either the old or the new content.
///
/// # Errors
/// The first failing step, with its path.
pub(crate) fn write_file_atomically(io: &dyn Io, path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = with_suffix(path, ".tmp");
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(StorageError::io(&temporary, error));
        }
        _ => {}
    }
    let file = io
        .create(&temporary)
        .map_err(StorageError::at(&temporary))?;
    write_all_vectored(file.as_ref(), &mut [IoSlice::new(bytes)])
        .map_err(StorageError::at(&temporary))?;
    file.sync_data().map_err(StorageError::at(&temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(StorageError::at(path))?;
    sync_parent(io, path)
}

/// fsyncs the directory that holds `path`.
///
/// # Errors
/// The I/O error, with the directory's path.
pub(crate) fn sync_parent(io: &dyn Io, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    io.sync_dir(dir).map_err(StorageError::at(dir))
}

/// Removes a file; a file that is already gone is fine.
///
/// # Errors
/// Any other I/O error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(StorageError::io(path, error)),
        _ => Ok(()),
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
        write_back_range(&file, 0, 1 << 20).unwrap();
        write_back_range(&file, (1 << 20) + 5, 2 << 20).unwrap();
        let error = write_back_range(&file, u64::MAX, 1).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EFBIG), "{error}");
        // A pipe has no pages to write back.
        let (reader, _writer) = io::pipe().unwrap();
        let pipe = File::from(std::os::fd::OwnedFd::from(reader));
        let error = write_back_range(&pipe, 0, 1).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESPIPE), "{error}");
    }
}
