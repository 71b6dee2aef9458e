//! [`PowerLossIo`]: an [`Io`] that simulates a power loss, for tests and the fault harness.
//!
//! The real file system under a test directory plays the page cache: every operation
//! happens there, so reads still `mmap` real files. Beside it the simulator keeps what the
//! disk itself holds, which only fsyncs change:
//! - a file's durable content is its whole content at its last successful `sync_data`
//!   (an fsync is atomic: it makes every byte and the length durable, or nothing);
//! - a directory's durable entries (files and subdirectories, by name) are its entries at
//!   its last successful `sync_dir`. A created file's content is empty until fsync'd.
//!   Directories the simulator did not create (the test's own directory) are durable.
//!
//! [`PowerLossIo::power_loss`] then rewrites the test directory to the durable state: every
//! entry not durable vanishes (a create, rename or remove since the last directory fsync
//! is undone), and every file reverts to its durable content. Bytes written since the last
//! fsync are lost; with a seed, a file that was only appended to since its fsync keeps a
//! random prefix of the appended bytes, as when the kernel wrote some back on its own.
//! Any other change since the fsync (a shrink, an overwrite) is undone whole.
//!
//! [`PowerLossIo::cut_after`] turns the power off in the middle of the workload: after that
//! many more operations that change the disk, each of them fails with `EIO`, so the log
//! stops where the power went. Reads keep working (the page cache is still there) until
//! [`PowerLossIo::power_loss`] is called.
//!
//! Thread-safe; one lock serialises the simulated disk, which is fine for tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::io::{DirLock, Io, IoFile};

/// The simulated disk under one test directory. See the module docs.
#[derive(Debug, Clone)]
pub struct PowerLossIo {
    disk: Arc<Mutex<Disk>>,
    now_ms: Arc<AtomicI64>,
}

#[derive(Debug, Default)]
struct Disk {
    /// Bumped by each power loss: files opened before refuse every change.
    generation: u64,
    /// Each file's durable content, by inode number.
    durable_content: HashMap<u64, Vec<u8>>,
    next_inode: u64,
    /// The files the real file system holds now, and their inodes.
    files: BTreeMap<PathBuf, u64>,
    /// The file entries the disk holds.
    durable_files: BTreeMap<PathBuf, u64>,
    /// Every directory created through the simulator (others count as durable).
    created_dirs: BTreeSet<PathBuf>,
    /// Those that exist now.
    dirs: BTreeSet<PathBuf>,
    /// Those whose entry in their parent is durable.
    durable_dirs: BTreeSet<PathBuf>,
    /// Locked directories and the token of their lock.
    locked: HashMap<PathBuf, u64>,
    next_lock: u64,
    /// Changes still allowed before the power goes; `None`: no cut armed.
    changes_left: Option<u64>,
    powered_off: bool,
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

impl Disk {
    /// Counts one change to the disk; fails once the power is off.
    fn change(&mut self, generation: u64) -> io::Result<()> {
        if self.powered_off || generation != self.generation {
            return Err(eio());
        }
        match self.changes_left {
            Some(0) => {
                self.powered_off = true;
                Err(eio())
            }
            Some(left) => {
                self.changes_left = Some(left - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether a directory's entry survives a power loss, up to the first directory the
    /// simulator did not create.
    fn dir_survives(&self, dir: &Path) -> bool {
        if !self.created_dirs.contains(dir) {
            return true;
        }
        self.durable_dirs.contains(dir)
            && dir.parent().is_none_or(|parent| self.dir_survives(parent))
    }

    /// What a file keeps of its content: the durable bytes, plus for a file only
    /// appended to since, a prefix of the rest drawn by `torn`.
    fn surviving_content(&self, inode: u64, torn: &mut Option<SplitMix>) -> Vec<u8> {
        let mut durable = self
            .durable_content
            .get(&inode)
            .cloned()
            .unwrap_or_default();
        let Some(rng) = torn else {
            return durable;
        };
        let current = self
            .files
            .iter()
            .find(|&(_, &number)| number == inode)
            .and_then(|(path, _)| fs::read(path).ok());
        if let Some(current) = current
            && let Some(appended) = current.strip_prefix(durable.as_slice())
        {
            let kept =
                usize::try_from(rng.next_u64() % (appended.len() as u64 + 1)).expect("fits usize");
            durable.extend_from_slice(appended.get(..kept).unwrap_or_default());
        }
        durable
    }
}

/// A small seeded generator (SplitMix64): where torn writes tear, and the draws of
/// seeded workloads that run on this disk.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        value ^ (value >> 31)
    }
}

impl Default for PowerLossIo {
    fn default() -> Self {
        Self {
            disk: Arc::default(),
            now_ms: Arc::new(AtomicI64::new(1_000_000)),
        }
    }
}

impl PowerLossIo {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the clock that [`Io::now_ms`] reads.
    pub fn set_now_ms(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Turns the power off after `changes` more operations that change the disk (writes,
    /// truncations, fsyncs, creates, renames, removes); the one after fails, and so does
    /// every change after it.
    pub fn cut_after(&self, changes: u64) {
        self.disk().changes_left = Some(changes);
    }

    /// Disarms a cut that has not happened yet.
    pub fn cancel_cut(&self) {
        self.disk().changes_left = None;
    }

    /// Whether a cut has turned the power off.
    pub fn powered_off(&self) -> bool {
        self.disk().powered_off
    }

    /// Loses everything not durable (see the module docs) and turns the power back on.
    /// `torn`: `None` loses every unsynced byte; a seed keeps a random prefix of each
    /// file's unsynced appends. Files opened before refuse every change afterwards; the
    /// caller drops whatever used them first.
    ///
    /// # Panics
    /// If the real file system under the test directory fails.
    pub fn power_loss(&self, torn: Option<u64>) {
        let mut disk = self.disk();
        let mut torn = torn.map(SplitMix);
        let survivors: Vec<(PathBuf, u64, Vec<u8>)> = disk
            .durable_files
            .iter()
            .filter(|(path, _)| path.parent().is_none_or(|dir| disk.dir_survives(dir)))
            .map(|(path, &inode)| {
                let content = disk.surviving_content(inode, &mut torn);
                (path.clone(), inode, content)
            })
            .collect();
        for path in disk.files.keys() {
            fs::remove_file(path).expect("remove a file at power loss");
        }
        for dir in disk.dirs.iter().rev() {
            if !disk.dir_survives(dir) && dir.exists() {
                fs::remove_dir_all(dir).expect("remove a directory at power loss");
            }
        }
        let dirs: BTreeSet<PathBuf> = disk
            .created_dirs
            .iter()
            .filter(|dir| disk.dir_survives(dir))
            .cloned()
            .collect();
        for dir in &dirs {
            fs::create_dir_all(dir).expect("restore a directory at power loss");
        }
        disk.files.clear();
        for (path, inode, content) in survivors {
            fs::write(&path, &content).expect("restore a file at power loss");
            disk.durable_content.insert(inode, content);
            disk.files.insert(path, inode);
        }
        disk.durable_files = disk.files.clone();
        disk.durable_dirs = dirs.clone();
        disk.dirs = dirs;
        disk.locked.clear();
        disk.generation += 1;
        disk.changes_left = None;
        disk.powered_off = false;
    }

    fn file(&self, file: File, inode: u64, generation: u64) -> Arc<dyn IoFile> {
        Arc::new(SimFile {
            file,
            inode,
            generation,
            disk: Arc::clone(&self.disk),
        })
    }
}

impl Io for PowerLossIo {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let mut disk = self.disk();
        let generation = disk.generation;
        disk.change(generation)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(path)?;
        let inode = disk.next_inode;
        disk.next_inode += 1;
        disk.durable_content.insert(inode, Vec::new());
        disk.files.insert(path.to_owned(), inode);
        Ok(self.file(file, inode, generation))
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn IoFile>> {
        let disk = self.disk();
        let Some(&inode) = disk.files.get(path) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        let file = OpenOptions::new().read(true).append(true).open(path)?;
        Ok(self.file(file, inode, disk.generation))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        let generation = disk.generation;
        disk.change(generation)?;
        fs::rename(from, to)?;
        let inode = disk.files.remove(from).expect("a renamed file is known");
        disk.files.insert(to.to_owned(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        let generation = disk.generation;
        disk.change(generation)?;
        fs::remove_file(path)?;
        disk.files.remove(path);
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<bool> {
        if dir.is_dir() {
            return Ok(false);
        }
        let mut disk = self.disk();
        let generation = disk.generation;
        disk.change(generation)?;
        let missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|ancestor| !ancestor.is_dir())
            .map(Path::to_path_buf)
            .collect();
        fs::create_dir_all(dir)?;
        disk.created_dirs.extend(missing.iter().cloned());
        disk.dirs.extend(missing);
        Ok(true)
    }

    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        let generation = disk.generation;
        disk.change(generation)?;
        fs::remove_dir_all(dir)?;
        disk.files.retain(|path, _| !path.starts_with(dir));
        disk.dirs.retain(|path| !path.starts_with(dir));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk();
        let generation = disk.generation;
        disk.change(generation)?;
        if !dir.is_dir() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let in_dir = |path: &Path| path.parent() == Some(dir);
        disk.durable_files.retain(|path, _| !in_dir(path));
        let files: Vec<(PathBuf, u64)> = disk
            .files
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, &inode)| (path.clone(), inode))
            .collect();
        disk.durable_files.extend(files);
        disk.durable_dirs.retain(|path| !in_dir(path));
        let dirs: Vec<PathBuf> = disk
            .dirs
            .iter()
            .filter(|path| in_dir(path))
            .cloned()
            .collect();
        disk.durable_dirs.extend(dirs);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let mut disk = self.disk();
        if disk.locked.contains_key(dir) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let token = disk.next_lock;
        disk.next_lock += 1;
        disk.locked.insert(dir.to_owned(), token);
        Ok(DirLock::new(SimLock {
            dir: dir.to_owned(),
            token,
            disk: Arc::clone(&self.disk),
        }))
    }

    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// A directory lock of the simulator; releases on drop unless a power loss did.
struct SimLock {
    dir: PathBuf,
    token: u64,
    disk: Arc<Mutex<Disk>>,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut disk = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        if disk.locked.get(&self.dir) == Some(&self.token) {
            disk.locked.remove(&self.dir);
        }
    }
}

/// A real file whose changes the simulated disk counts, and whose fsync it records.
#[derive(Debug)]
struct SimFile {
    file: File,
    inode: u64,
    generation: u64,
    disk: Arc<Mutex<Disk>>,
}

impl SimFile {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn content(&self) -> io::Result<Vec<u8>> {
        let length = usize::try_from(self.file.metadata()?.len()).map_err(io::Error::other)?;
        let mut content = vec![0; length];
        self.file.read_exact_at(&mut content, 0)?;
        Ok(content)
    }
}

impl IoFile for SimFile {
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.disk().change(self.generation)?;
        (&self.file).write_vectored(bufs)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk().change(self.generation)?;
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.disk();
        disk.change(self.generation)?;
        let content = self.content()?;
        disk.durable_content.insert(self.inode, content);
        Ok(())
    }

    /// Not a durability point, and nothing to simulate: only counted as a change, so a
    /// cut can fall between the steps of a write-back.
    fn write_back(&self, _offset: u64, _len: u64) -> io::Result<()> {
        self.disk().change(self.generation)
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn file_bytes(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(file: &dyn IoFile, bytes: &[u8]) {
        assert_eq!(
            file.write_vectored(&[IoSlice::new(bytes)]).unwrap(),
            bytes.len()
        );
    }

    #[test]
    fn unsynced_bytes_and_entries_vanish_and_synced_ones_stay() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("topic-0");
        let io = PowerLossIo::default();
        assert!(io.create_dir_all(&dir).unwrap());
        io.sync_dir(root.path()).unwrap();
        let kept = io.create(&dir.join("kept")).unwrap();
        write(kept.as_ref(), b"durable");
        kept.sync_data().unwrap();
        write(kept.as_ref(), b" lost");
        let unsynced_entry = io.create(&dir.join("unsynced-entry")).unwrap();
        unsynced_entry.sync_data().unwrap();
        io.sync_dir(&dir).unwrap();
        io.rename(&dir.join("kept"), &dir.join("renamed")).unwrap();
        io.remove_file(&dir.join("unsynced-entry")).unwrap();
        io.create(&dir.join("new")).unwrap();
        io.power_loss(None);
        let mut names = io.read_dir(&dir).unwrap();
        names.sort();
        assert_eq!(names, ["kept", "unsynced-entry"]);
        assert_eq!(io.read(&dir.join("kept")).unwrap(), b"durable");
        assert!(
            write_fails(kept.as_ref()),
            "a file opened before refuses changes"
        );
        let reopened = io.open(&dir.join("kept")).unwrap();
        write(reopened.as_ref(), b"!");
        assert_eq!(io.read(&dir.join("kept")).unwrap(), b"durable!");
    }

    fn write_fails(file: &dyn IoFile) -> bool {
        file.write_vectored(&[IoSlice::new(b"x")]).is_err()
    }

    #[test]
    fn a_directory_whose_entry_is_not_durable_vanishes_with_its_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b");
        let io = PowerLossIo::default();
        io.create_dir_all(&dir).unwrap();
        let file = io.create(&dir.join("file")).unwrap();
        file.sync_data().unwrap();
        io.sync_dir(&dir).unwrap();
        io.power_loss(None);
        assert!(!root.path().join("a").exists());
    }

    #[test]
    fn a_cut_fails_every_change_after_it_and_a_torn_loss_keeps_a_prefix() {
        let root = tempfile::tempdir().unwrap();
        let io = PowerLossIo::default();
        let file = io.create(&root.path().join("file")).unwrap();
        io.sync_dir(root.path()).unwrap();
        write(file.as_ref(), b"0123");
        file.sync_data().unwrap();
        io.cut_after(1);
        write(file.as_ref(), b"456789");
        assert!(write_fails(file.as_ref()));
        assert!(io.powered_off());
        assert!(file.sync_data().is_err(), "no fsync once the power is off");
        io.power_loss(Some(7));
        let content = io.read(&root.path().join("file")).unwrap();
        assert!(b"0123456789".starts_with(&content), "{content:?}");
        assert!(content.starts_with(b"0123"), "{content:?}");
        assert!(!io.powered_off());
    }
}
