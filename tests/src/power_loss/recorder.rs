//! [`SyncRecorder`]: the real file system, with every fsync and every change of a
//! directory entry written to the sync log before the operation returns to the broker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use strata_storage::{Io, IoFile, RealIo};

use super::SHADOW_DIR;
use super::sync_log::Event;

/// The real file system under a broker's data directory, recording to a sync log what a
/// power loss would keep (see the [`power_loss`](super) module docs). Thread-safe: one
/// lock serialises the log, and with it every change of a directory entry, so a
/// directory's listing at its fsync is exact.
#[derive(Debug, Clone)]
pub struct SyncRecorder {
    log: Arc<Mutex<Log>>,
}

#[derive(Debug)]
struct Log {
    file: File,
    path: PathBuf,
    data_dir: PathBuf,
    /// Files already in the log, so an `open` is recorded once per file.
    known: HashSet<u64>,
    /// By directory: the shadows that keep the inodes its entries named before a change,
    /// until the directory's fsync makes the change durable.
    shadows: HashMap<PathBuf, Vec<PathBuf>>,
}

impl Log {
    /// Appends `events` and makes them durable before returning, so that a `SIGKILL`
    /// right after the operation they record cannot lose them.
    fn append(&mut self, events: &[Event]) -> io::Result<()> {
        let mut text = String::new();
        for event in events {
            event.encode(&mut text)?;
        }
        let written = self.file.write_all(text.as_bytes());
        written
            .and_then(|()| self.file.sync_data())
            .map_err(|error| {
                io::Error::new(
                    error.kind(),
                    format!("sync log {}: {error}", self.path.display()),
                )
            })
    }

    /// Whether `path` lies in the data directory, where a power loss is simulated.
    fn covers(&self, path: &Path) -> bool {
        path.starts_with(&self.data_dir) && path != self.data_dir
    }

    fn shadow_dir(&self) -> io::Result<PathBuf> {
        let dir = self.data_dir.join(SHADOW_DIR);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Keeps `inode`, which `path` names now, in the shadow directory until `path`'s
    /// directory is fsync'd: `keep` links or moves it there.
    fn shadow(
        &mut self,
        path: &Path,
        inode: u64,
        keep: fn(&Path, &Path) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        let shadow = self.shadow_dir()?.join(inode.to_string());
        keep(path, &shadow)?;
        let dir = path.parent().unwrap_or(path).to_owned();
        self.shadows.entry(dir).or_default().push(shadow.clone());
        Ok(shadow)
    }
}

fn absolute(path: &Path) -> io::Result<PathBuf> {
    std::path::absolute(path)
}

fn inode_of(path: &Path) -> io::Result<u64> {
    Ok(fs::symlink_metadata(path)?.ino())
}

fn inode_of_file(file: &dyn IoFile) -> io::Result<(u64, u64)> {
    let metadata = File::from(file.as_fd().try_clone_to_owned()?).metadata()?;
    Ok((metadata.ino(), metadata.len()))
}

impl SyncRecorder {
    /// Starts a new sync log at `sync_log` (replacing any old one) for a broker whose data
    /// is in `data_dir`, and clears a shadow directory an earlier run left.
    ///
    /// # Errors
    /// If the log cannot be created, or an old shadow directory removed.
    pub fn create(sync_log: &Path, data_dir: &Path) -> io::Result<Self> {
        let data_dir = absolute(data_dir)?;
        match fs::remove_dir_all(data_dir.join(SHADOW_DIR)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(sync_log)?;
        let log = Log {
            file,
            path: sync_log.to_owned(),
            data_dir,
            known: HashSet::new(),
            shadows: HashMap::new(),
        };
        Ok(Self {
            log: Arc::new(Mutex::new(log)),
        })
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wrap(&self, inner: Arc<dyn IoFile>, inode: u64) -> Arc<dyn IoFile> {
        Arc::new(RecordedFile {
            inner,
            inode,
            log: Arc::clone(&self.log),
        })
    }

    /// Moves `path` (a file or a whole directory) to the shadow directory instead of
    /// deleting it, so that `apply` can put it back if the removal was not made durable.
    /// Outside the data directory, `elsewhere` removes it.
    fn remove(&self, path: &Path, elsewhere: fn(&Path) -> io::Result<()>) -> io::Result<()> {
        let path = absolute(path)?;
        let mut log = self.log();
        if !log.covers(&path) {
            return elsewhere(&path);
        }
        let inode = inode_of(&path)?;
        log.shadow(&path, inode, |from, to| fs::rename(from, to))?;
        log.append(&[Event::Changed {
            path,
            before: Some(inode),
            after: None,
        }])
    }
}

impl Io for SyncRecorder {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let path = absolute(path)?;
        let mut log = self.log();
        let file = RealIo.create(&path)?;
        let (inode, _) = inode_of_file(file.as_ref())?;
        log.known.insert(inode);
        let mut events = vec![Event::Created {
            inode,
            path: path.clone(),
        }];
        if log.covers(&path) {
            events.push(Event::Changed {
                path,
                before: None,
                after: Some(inode),
            });
        }
        log.append(&events)?;
        drop(log);
        Ok(self.wrap(file, inode))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let path = absolute(path)?;
        let file = RealIo.open(&path)?;
        let (inode, length) = inode_of_file(file.as_ref())?;
        let mut log = self.log();
        if log.known.insert(inode) {
            log.append(&[Event::Opened {
                inode,
                length,
                path,
            }])?;
        }
        drop(log);
        Ok(self.wrap(file, inode))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (absolute(from)?, absolute(to)?);
        let mut log = self.log();
        let moved = inode_of(&from)?;
        // The file a rename replaces must outlive it: the old name is what survives
        // until the directory is fsync'd.
        let replaced = match inode_of(&to) {
            Ok(inode) if log.covers(&to) => Some((
                inode,
                log.shadow(&to, inode, |from, to| fs::hard_link(from, to))?,
            )),
            Ok(_) => None,
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        if let Err(error) = fs::rename(&from, &to) {
            if let Some((_, shadow)) = replaced {
                fs::remove_file(shadow)?;
            }
            return Err(error);
        }
        let replaced = replaced.map(|(inode, _)| inode);
        let changes = [(from, Some(moved), None), (to, replaced, Some(moved))];
        let events: Vec<Event> = changes
            .into_iter()
            .filter(|(path, _, _)| log.covers(path))
            .map(|(path, before, after)| Event::Changed {
                path,
                before,
                after,
            })
            .collect();
        log.append(&events)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.remove(path, |path| fs::remove_file(path))
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.remove(dir, |dir| fs::remove_dir_all(dir))
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<bool> {
        let dir = absolute(dir)?;
        let mut log = self.log();
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|ancestor| !ancestor.is_dir())
            .map(Path::to_path_buf)
            .collect();
        if !RealIo.create_dir_all(&dir)? {
            return Ok(false);
        }
        let mut events = Vec::new();
        for path in missing.into_iter().filter(|path| log.covers(path)) {
            let after = Some(inode_of(&path)?);
            events.push(Event::Changed {
                path,
                before: None,
                after,
            });
        }
        log.append(&events)?;
        Ok(true)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let dir = absolute(dir)?;
        let mut log = self.log();
        let mut entries = BTreeMap::new();
        for name in RealIo.read_dir(&dir)? {
            if dir == log.data_dir && name == SHADOW_DIR {
                continue;
            }
            let name_text = name.to_str().map(str::to_owned).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "a file name not UTF-8")
            })?;
            // A file the broker changes outside the seam may go between the two calls.
            match inode_of(&dir.join(&name)) {
                Ok(inode) => entries.insert(name_text, inode),
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
        }
        RealIo.sync_dir(&dir)?;
        log.append(&[Event::Listed {
            dir: dir.clone(),
            entries,
        }])?;
        // The directory's entries are durable now: the inodes they named before are no
        // longer what a power loss would bring back.
        for shadow in log.shadows.remove(&dir).unwrap_or_default() {
            let removed = fs::remove_file(&shadow).or_else(|_| fs::remove_dir_all(&shadow));
            if let Err(error) = removed
                && error.kind() != io::ErrorKind::NotFound
            {
                return Err(error);
            }
        }
        Ok(())
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<OsString>> {
        let names = RealIo.read_dir(dir)?;
        let shadow = OsString::from(SHADOW_DIR);
        Ok(names.into_iter().filter(|name| *name != shadow).collect())
    }
}

/// A real file whose fsyncs and shrinks the sync log records.
#[derive(Debug)]
struct RecordedFile {
    inner: Arc<dyn IoFile>,
    inode: u64,
    log: Arc<Mutex<Log>>,
}

impl RecordedFile {
    fn record(&self, event: Event) -> io::Result<()> {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.append(&[event])
    }
}

impl IoFile for RecordedFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner.write_vectored(bufs)
    }

    fn set_len(&self, length: u64) -> io::Result<()> {
        self.inner.set_len(length)?;
        self.record(Event::Shrunk {
            inode: self.inode,
            length,
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        // The length is read before the fsync: everything up to it is covered.
        let length = self.inner.file_bytes()?;
        self.inner.sync_data()?;
        self.record(Event::Synced {
            inode: self.inode,
            length,
        })
    }

    fn write_back(&self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.write_back(offset, len)
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }

    fn file_bytes(&self) -> io::Result<u64> {
        self.inner.file_bytes()
    }
}
