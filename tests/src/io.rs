//! Brokers started in the test process on an I/O layer of the test's: their
//! [`in_process_config`], and layers over the real file system: [`FaultyIo`] fails one
//! operation on chosen files while a switch is on, and [`RecordingIo`] logs what every
//! fsync covered.

use std::io::IoSlice;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use strata_broker::config::Config;
use strata_storage::{Io, IoFile, RealIo};

/// The defaults, with the client and metrics listeners on loopback ports the OS picks
/// and the data in `data_dir`: a broker for `Server::start_with` in the test process.
pub fn in_process_config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        metrics_listen: "127.0.0.1:0".parse().expect("loopback address"),
        data_dir: data_dir.to_owned(),
        ..Config::default()
    }
}

/// The operation that fails, and the `errno` it fails with.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Every write (`EIO`, `ENOSPC`, ...).
    Write(i32),
    /// Every `fdatasync`.
    Sync(i32),
    /// Every create of a new file and every write: with `ENOSPC`, a full disk.
    CreateOrWrite(i32),
    /// Every directory fsync (of directories whose path matches): with `EMFILE`, no
    /// descriptor to open the directory with.
    DirSync(i32),
}

/// The real file system, but files whose path contains `files_containing` (`""`: every
/// file) fail with `fault` while [`failing`](Self::failing) is set. Thread-safe.
#[derive(Debug)]
pub struct FaultyIo {
    files_containing: &'static str,
    fault: Fault,
    /// The switch: set it to make the chosen files fail, clear it to heal them.
    pub failing: Arc<AtomicBool>,
}

impl FaultyIo {
    /// A layer that fails nothing until its switch is set.
    pub fn new(files_containing: &'static str, fault: Fault) -> Self {
        Self {
            files_containing,
            fault,
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    fn wrap(&self, path: &Path, inner: Arc<dyn IoFile>) -> Arc<dyn IoFile> {
        if !path.to_string_lossy().contains(self.files_containing) {
            return inner;
        }
        Arc::new(FaultyFile {
            inner,
            fault: self.fault,
            failing: Arc::clone(&self.failing),
        })
    }
}

impl Io for FaultyIo {
    fn create(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        if let Fault::CreateOrWrite(errno) = self.fault
            && self.failing.load(Ordering::SeqCst)
            && path.to_string_lossy().contains(self.files_containing)
        {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        Ok(self.wrap(path, RealIo.create(path)?))
    }

    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        Ok(self.wrap(path, RealIo.open(path)?))
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        if let Fault::DirSync(errno) = self.fault
            && self.failing.load(Ordering::SeqCst)
            && path.to_string_lossy().contains(self.files_containing)
        {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        RealIo.sync_dir(path)
    }

    fn now_ms(&self) -> i64 {
        RealIo.now_ms()
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn IoFile>,
    fault: Fault,
    failing: Arc<AtomicBool>,
}

impl FaultyFile {
    fn fails(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }
}

impl IoFile for FaultyFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self.fault {
            Fault::Write(errno) | Fault::CreateOrWrite(errno) if self.fails() => {
                Err(std::io::Error::from_raw_os_error(errno))
            }
            _ => self.inner.write_vectored(bufs),
        }
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        match self.fault {
            Fault::Sync(errno) if self.fails() => Err(std::io::Error::from_raw_os_error(errno)),
            _ => self.inner.sync_data(),
        }
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// Every completed fsync: the file, and the length it covered.
pub type SyncLog = Arc<Mutex<Vec<(PathBuf, u64)>>>;

/// The longest length of `path` that a completed fsync in `synced` covered, if any.
pub fn fsync_covered(synced: &SyncLog, path: &Path) -> Option<u64> {
    synced
        .lock()
        .unwrap()
        .iter()
        .filter(|(synced_path, _)| synced_path == path)
        .map(|(_, length)| *length)
        .max()
}

/// The real file system, logging in [`synced`](Self::synced) what every fsync covered.
/// Thread-safe.
#[derive(Debug, Default)]
pub struct RecordingIo {
    /// The fsyncs so far, in the order they completed.
    pub synced: SyncLog,
}

impl RecordingIo {
    fn wrap(&self, path: &Path, inner: Arc<dyn IoFile>) -> Arc<dyn IoFile> {
        Arc::new(RecordingFile {
            inner,
            path: path.to_owned(),
            synced: Arc::clone(&self.synced),
        })
    }
}

impl Io for RecordingIo {
    fn create(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        Ok(self.wrap(path, RealIo.create(path)?))
    }

    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        Ok(self.wrap(path, RealIo.open(path)?))
    }

    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        RealIo.sync_dir(path)
    }

    fn now_ms(&self) -> i64 {
        RealIo.now_ms()
    }
}

#[derive(Debug)]
struct RecordingFile {
    inner: Arc<dyn IoFile>,
    path: PathBuf,
    synced: SyncLog,
}

impl IoFile for RecordingFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        // The length is read before the fsync: everything up to it is covered.
        let length = self.inner.file_bytes()?;
        self.inner.sync_data()?;
        self.synced
            .lock()
            .unwrap()
            .push((self.path.clone(), length));
        Ok(())
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}
