//! The data directory as a whole: created on first start, locked for as long as one
//! broker uses it, and named by a cluster id written once.
//!
//! The lock is an advisory `flock` on `<data_dir>/.lock`. Two brokers recovering and
//! appending to the same logs would corrupt them, so the second one must not start. The
//! kernel drops the lock when its holder exits, even by `kill -9`, so a crash never leaves
//! a stale lock behind the way a pid file would.
//!
//! The broker keeps its data private: it creates the directory with mode 0700 and its
//! own files in it with 0600, since logs hold whatever clients produced.

use std::fs::{DirBuilder, File, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const LOCK_FILE: &str = ".lock";
const CLUSTER_ID_FILE: &str = "cluster_id";
const BOOT_ID_FILE: &str = "boot_id";
/// Mode of the directories the broker creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the broker creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates (or truncates) a file for writing, with mode [`FILE_MODE`] if it is new.
///
/// # Errors
/// The underlying I/O error.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates `dir` and any missing parents with mode [`DIR_MODE`]; an existing directory
/// keeps its mode.
///
/// # Errors
/// The underlying I/O error.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory could not be created.
    #[error("cannot create data_dir {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another broker holds the lock: only brokers take it.
    #[error(
        "the data directory {data_dir} is in use by another broker (it holds the lock on {path}); stop that broker, or give this one another --data-dir"
    )]
    Locked {
        /// The directory.
        data_dir: PathBuf,
        /// The lock file.
        path: PathBuf,
    },
    /// The cluster id could not be read.
    #[error("cannot read {path}: {source}")]
    ReadClusterId {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster id could not be written.
    #[error("cannot write {path}: {source}")]
    WriteClusterId {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The boot id could not be recorded.
    #[error("cannot write {path}: {source}")]
    WriteBootId {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The exclusive lock on a data directory. Thread-safe. Held until [`release`] or drop.
///
/// [`release`]: Self::release
#[derive(Debug)]
pub struct DataDirLock {
    file: Mutex<Option<File>>,
}

impl DataDirLock {
    /// Creates `data_dir` if needed and locks it.
    ///
    /// # Errors
    /// [`DataDirError::Locked`] if another process holds the lock; another
    /// [`DataDirError`] if the directory or the lock file cannot be created.
    pub fn acquire(data_dir: &Path) -> Result<Self, DataDirError> {
        create_private_dir(data_dir).map_err(|source| DataDirError::Create {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(LOCK_FILE);
        let lock_error = |source| DataDirError::Lock {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                file: Mutex::new(Some(file)),
            }),
            Err(TryLockError::WouldBlock) => Err(DataDirError::Locked {
                data_dir: data_dir.to_owned(),
                path,
            }),
            Err(TryLockError::Error(source)) => Err(lock_error(source)),
        }
    }

    /// Unlocks the directory, so another broker (or this process, restarting) may open
    /// it. Call it once every log is closed: whatever still holds the broker after that
    /// (a connection past the shutdown grace) can no longer write.
    pub fn release(&self) {
        // Closing the file drops the `flock`.
        drop(
            self.file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
    }
}

/// The cluster id stored in `data_dir`, or a new one written there (fsync'd with its
/// directory) on first start.
///
/// # Errors
/// [`DataDirError::ReadClusterId`] or [`DataDirError::WriteClusterId`].
pub fn load_or_create_cluster_id(data_dir: &Path) -> Result<String, DataDirError> {
    let path = data_dir.join(CLUSTER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) => return Ok(id.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(DataDirError::ReadClusterId { path, source }),
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let id = format!("strata-{:016x}{:08x}", nanos as u64, std::process::id());
    let write = || -> std::io::Result<()> {
        let mut file = create_private_file(&path)?;
        file.write_all(id.as_bytes())?;
        file.sync_all()?;
        File::open(data_dir)?.sync_all()
    };
    write().map_err(|source| DataDirError::WriteClusterId {
        path: path.clone(),
        source,
    })?;
    Ok(id)
}

/// Records the operating system's boot id (read from `boot_id_file`) in `data_dir`,
/// and says whether it differs from the one the last start recorded: the machine
/// rebooted since, so if the last run did not shut down cleanly, writes that were only
/// in the page cache may be gone. `false` on a first start, or where no boot id can be
/// read (not Linux).
///
/// # Errors
/// [`DataDirError::WriteBootId`] if the new id cannot be stored.
pub fn rebooted_since_last_start(
    data_dir: &Path,
    boot_id_file: &Path,
) -> Result<bool, DataDirError> {
    let Ok(current) = std::fs::read_to_string(boot_id_file) else {
        tracing::debug!(file = %boot_id_file.display(), "no boot id to tell a reboot by");
        return Ok(false);
    };
    let current = current.trim();
    let path = data_dir.join(BOOT_ID_FILE);
    let previous = std::fs::read_to_string(&path).ok();
    if previous.as_deref().map(str::trim) == Some(current) {
        return Ok(false);
    }
    let temporary = data_dir.join(format!("{BOOT_ID_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = create_private_file(&temporary)?;
        file.write_all(current.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        File::open(data_dir)?.sync_all()
    };
    write().map_err(|source| DataDirError::WriteBootId {
        path: path.clone(),
        source,
    })?;
    Ok(previous.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_data_dir_refuses_a_second_lock_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = DataDirLock::acquire(&data_dir).unwrap();
        assert!(matches!(
            DataDirLock::acquire(&data_dir),
            Err(DataDirError::Locked { .. })
        ));
        first.release();
        DataDirLock::acquire(&data_dir).unwrap();
    }

    #[test]
    fn the_data_dir_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let _lock = DataDirLock::acquire(&data_dir).unwrap();
        load_or_create_cluster_id(&data_dir).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir), DIR_MODE);
        assert_eq!(mode(&data_dir.join(LOCK_FILE)), FILE_MODE);
        assert_eq!(mode(&data_dir.join(CLUSTER_ID_FILE)), FILE_MODE);
    }

    #[test]
    fn a_changed_boot_id_is_a_reboot_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        std::fs::write(&boot, "one\n").unwrap();
        assert!(!rebooted_since_last_start(dir.path(), &boot).unwrap());
        assert!(!rebooted_since_last_start(dir.path(), &boot).unwrap());
        std::fs::write(&boot, "two\n").unwrap();
        assert!(rebooted_since_last_start(dir.path(), &boot).unwrap());
        assert!(!rebooted_since_last_start(dir.path(), &boot).unwrap());
        let missing = dir.path().join("missing");
        assert!(!rebooted_since_last_start(dir.path(), &missing).unwrap());
    }

    #[test]
    fn the_cluster_id_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create_cluster_id(dir.path()).unwrap();
        assert!(id.starts_with("strata-"), "{id}");
        assert_eq!(load_or_create_cluster_id(dir.path()).unwrap(), id);
    }
}
