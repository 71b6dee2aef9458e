//! Power loss of a real broker process: `strata-recorded-broker` runs the broker over a
//! [`SyncRecorder`], which writes to a sync log what each fsync made durable; after a
//! `SIGKILL`, [`apply`] rewrites the data directory to what a disk would hold after the
//! power went, and a restarted broker recovers from that.
//!
//! # What survives (Linux ext4 with `data=ordered`, and xfs)
//! - **File contents.** A completed `fdatasync` makes a file's bytes and its length
//!   durable. Bytes appended since are lost, all of them: the kernel may have written some
//!   back on its own, but nothing promises it, and the worst case is the one to test
//!   (`strata_storage::sim::PowerLossIo` can keep a torn prefix instead). A file created
//!   and never fsync'd is empty. A `set_len` since the last fsync counts as durable (the
//!   journal may commit a truncate before the crash): nothing past its length survives.
//! - **Directory entries.** A create, rename, unlink, `mkdir` or `rmdir` is durable only
//!   once its directory is fsync'd after it; fsyncing the file does not make its name
//!   durable (ext4 often commits it with the journal anyway; neither file system promises
//!   it). An entry not made durable is undone: a new file or directory vanishes with
//!   everything in it, a renamed file goes back to its old name, a file a rename replaced
//!   comes back, and a removed file or directory comes back with its durable contents.
//!
//! # How the changes stay observable
//! Every change goes through the storage crate's `Io` seam, which names creates, renames,
//! removes and directory fsyncs, so all of them are recorded; files are named by inode
//! number, so a file's fsyncs follow it through renames. A removed file and the file a
//! rename replaces must outlive the change until their directory is fsync'd, so the
//! recorder moves (or hard-links) them into `<data dir>/.power-loss-shadow/` and deletes
//! them after that fsync; their disk space is freed only then, or by `apply`. Each record
//! is appended and `fdatasync`'d before the operation returns to the broker, so a
//! `SIGKILL` cannot outrun it; a kill between an operation and its record takes that one
//! operation as durable, a legitimate outcome, since the broker never saw it return.
//!
//! # Limits
//! - Files the broker writes outside the seam (topic metadata, the producer-id
//!   reservation, the data directory's lock and cluster id) are left as they are. Each is
//!   written to a temporary file, fsync'd, renamed and its directory fsync'd, so a power
//!   loss would keep them too.
//! - The recorder takes the files it finds at start as durable: start it on a data
//!   directory that a clean shutdown, an [`apply`], or a `kill -9` without power loss left
//!   (the page cache survives a kill; recovery fsyncs the tail it keeps).
//! - No torn sector, no reordering by a disk cache that lies about flushes, no loss of
//!   inode metadata such as times.
//! - [`apply`] keeps the data directory's own entry, and everything it does not name as
//!   changed through the seam.
//!
//! # Layout
//! - This file: [`apply`] and its [`PowerLossReport`].
//! - `sync_log`: the log's format.
//! - `recorder`: [`SyncRecorder`], the recording `Io`.

mod recorder;
mod sync_log;
#[cfg(test)]
mod tests;

pub use recorder::SyncRecorder;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sync_log::Event;

/// The environment variable `strata-recorded-broker` reads the sync log's path from, when
/// `--sync-log` is not given.
pub const SYNC_LOG_VARIABLE: &str = "STRATA_SYNC_LOG";

/// Where the recorder keeps removed and replaced files until their removal is durable,
/// inside the data directory so that a rename can move them there.
pub(crate) const SHADOW_DIR: &str = ".power-loss-shadow";

/// What [`apply`] dropped and put back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PowerLossReport {
    /// Files cut back to the length their last fsync covered, and the bytes each lost.
    pub truncated: Vec<(PathBuf, u64)>,
    /// Files whose entry was never made durable, removed, and the bytes each held.
    pub removed: Vec<(PathBuf, u64)>,
    /// Entries a rename or removal had changed, put back because their directory was not
    /// fsync'd after it.
    pub restored: Vec<PathBuf>,
    /// Durable entries whose file could not be found: changed outside the seam.
    pub missing: Vec<PathBuf>,
}

impl PowerLossReport {
    /// Bytes lost in all: cut from files, and in files removed.
    pub fn bytes_dropped(&self) -> u64 {
        let dropped = |files: &[(PathBuf, u64)]| files.iter().map(|(_, bytes)| bytes).sum::<u64>();
        dropped(&self.truncated) + dropped(&self.removed)
    }
}

impl fmt::Display for PowerLossReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "power loss dropped {} bytes: {} files truncated, {} removed, {} entries restored, {} missing",
            self.bytes_dropped(),
            self.truncated.len(),
            self.removed.len(),
            self.restored.len(),
            self.missing.len()
        )
    }
}

/// Rewrites `data_dir`, after its broker was killed, to what the disk held by the sync log
/// at `sync_log` (see the module docs), and consumes the log: it and the shadow directory
/// are removed.
///
/// Call it only once the broker process is gone: it renames and truncates its files.
///
/// # Errors
/// If the log cannot be read or is malformed (`InvalidData`), or a file cannot be
/// renamed, truncated or removed.
pub fn apply(data_dir: &Path, sync_log: &Path) -> io::Result<PowerLossReport> {
    let data_dir = std::path::absolute(data_dir)?;
    let text = fs::read_to_string(sync_log).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("sync log {}: {error}", sync_log.display()),
        )
    })?;
    let durable = Durable::replay(&sync_log::parse(&text)?, &data_dir);
    let shadow_dir = data_dir.join(SHADOW_DIR);
    let mut report = PowerLossReport::default();
    let mut set_aside = Vec::new();
    for (path, inode) in &durable.entries {
        restore_entry(&data_dir, path, *inode, &mut set_aside, &mut report)?;
    }
    truncate_files(&data_dir, &durable.files, &mut report)?;
    for (path, aside) in set_aside {
        if fs::symlink_metadata(&aside).is_ok() {
            walk(&aside, None, &mut |file, length| {
                let relative = file.strip_prefix(&aside).expect("walked under it");
                report.removed.push((path.join(relative), length));
                Ok(())
            })?;
        }
    }
    match fs::remove_dir_all(&shadow_dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    fs::remove_file(sync_log)?;
    Ok(report)
}

/// What the disk holds, by the sync log.
#[derive(Debug)]
struct Durable {
    /// Each entry changed through the seam, and the inode it names on the disk (`None`:
    /// no entry); parents before children.
    entries: Vec<(PathBuf, Option<u64>)>,
    /// By inode: the files the seam opened or created.
    files: HashMap<u64, DurableFile>,
}

/// A file the seam opened or created.
#[derive(Debug)]
struct DurableFile {
    /// How much of it survives.
    length: u64,
    /// Every path it had: an inode number the file system reused for a file written
    /// outside the seam is not this file.
    paths: HashSet<PathBuf>,
}

impl DurableFile {
    fn new(length: u64, path: &Path) -> Self {
        Self {
            length,
            paths: HashSet::from([path.to_owned()]),
        }
    }
}

impl Durable {
    fn replay(events: &[Event], data_dir: &Path) -> Self {
        let shadow_dir = data_dir.join(SHADOW_DIR);
        // By entry: the index of its first change, and what it named before.
        let mut changed: BTreeMap<&Path, (usize, Option<u64>)> = BTreeMap::new();
        // By directory: the index of its last fsync, and its entries then.
        let mut listed: HashMap<&Path, (usize, &BTreeMap<String, u64>)> = HashMap::new();
        let mut files: HashMap<u64, DurableFile> = HashMap::new();
        for (index, event) in events.iter().enumerate() {
            match event {
                Event::Opened {
                    inode,
                    length,
                    path,
                } => {
                    files
                        .entry(*inode)
                        .or_insert_with(|| DurableFile::new(*length, path));
                }
                Event::Created { inode, path } => {
                    files.insert(*inode, DurableFile::new(0, path));
                }
                Event::Synced { inode, length } => {
                    if let Some(file) = files.get_mut(inode) {
                        file.length = *length;
                    }
                }
                Event::Shrunk { inode, length } => {
                    if let Some(file) = files.get_mut(inode) {
                        file.length = file.length.min(*length);
                    }
                }
                Event::Changed {
                    path,
                    before,
                    after,
                } => {
                    if let Some(file) = after.and_then(|inode| files.get_mut(&inode)) {
                        file.paths.insert(path.clone());
                    }
                    let inside = path.starts_with(data_dir) && path != data_dir;
                    if inside && !path.starts_with(&shadow_dir) {
                        changed.entry(path).or_insert((index, *before));
                    }
                }
                Event::Listed { dir, entries } => {
                    listed.insert(dir, (index, entries));
                }
            }
        }
        // An fsync of the directory after the entry's first change says what the disk
        // holds; without one, the entry is as it was before that change.
        let mut entries: Vec<(PathBuf, Option<u64>)> = changed
            .into_iter()
            .map(|(path, (first, before))| {
                let listing = path
                    .parent()
                    .and_then(|dir| listed.get(dir))
                    .filter(|(at, _)| *at > first);
                let inode = match listing {
                    Some((_, names)) => path
                        .file_name()
                        .and_then(|name| name.to_str())
                        .and_then(|name| names.get(name))
                        .copied(),
                    None => before,
                };
                (path.to_owned(), inode)
            })
            .collect();
        entries.sort_by_key(|(path, _)| path.components().count());
        Self { entries, files }
    }
}

fn inode_at(path: &Path) -> io::Result<Option<u64>> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => Ok(Some(metadata.ino())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Makes `path` name `durable` again: what it names now moves to the shadow directory
/// (and is reported removed unless another entry takes it back), and the durable file or
/// directory moves back from wherever it is now.
fn restore_entry(
    data_dir: &Path,
    path: &Path,
    durable: Option<u64>,
    set_aside: &mut Vec<(PathBuf, PathBuf)>,
    report: &mut PowerLossReport,
) -> io::Result<()> {
    // A directory that did not survive took its entries with it.
    if !path.parent().is_some_and(Path::is_dir) {
        return Ok(());
    }
    let current = inode_at(path)?;
    if current == durable {
        return Ok(());
    }
    if let Some(inode) = current {
        let shadow_dir = data_dir.join(SHADOW_DIR);
        fs::create_dir_all(&shadow_dir)?;
        let aside = shadow_dir.join(format!("dropped-{inode}"));
        fs::rename(path, &aside)?;
        set_aside.push((path.to_owned(), aside));
    }
    let Some(inode) = durable else {
        return Ok(());
    };
    let mut found = None;
    walk_entries(data_dir, &mut |candidate, metadata| {
        if metadata.ino() == inode && found.is_none() {
            found = Some(candidate.to_owned());
        }
    })?;
    match found {
        Some(found) => {
            fs::rename(found, path)?;
            report.restored.push(path.to_owned());
        }
        None => report.missing.push(path.to_owned()),
    }
    Ok(())
}

/// Cuts every file the log knows back to its durable length.
fn truncate_files(
    data_dir: &Path,
    files: &HashMap<u64, DurableFile>,
    report: &mut PowerLossReport,
) -> io::Result<()> {
    let shadow_dir = data_dir.join(SHADOW_DIR);
    walk(data_dir, Some(&shadow_dir), &mut |file, length| {
        let inode = fs::symlink_metadata(file)?.ino();
        match files.get(&inode) {
            Some(durable) if durable.paths.contains(file) && length > durable.length => {
                let durable = durable.length;
                OpenOptions::new()
                    .write(true)
                    .open(file)?
                    .set_len(durable)?;
                report.truncated.push((file.to_owned(), length - durable));
            }
            _ => {}
        }
        Ok(())
    })
}

/// Calls `visit` with every regular file under `path` (or `path` itself) and its length,
/// skipping the tree at `skip`.
fn walk(
    path: &Path,
    skip: Option<&Path>,
    visit: &mut dyn FnMut(&Path, u64) -> io::Result<()>,
) -> io::Result<()> {
    if Some(path) == skip {
        return Ok(());
    }
    let metadata = fs::symlink_metadata(path)?;
    if metadata.is_dir() {
        for entry in fs::read_dir(path)? {
            walk(&entry?.path(), skip, visit)?;
        }
    } else if metadata.is_file() {
        visit(path, metadata.len())?;
    }
    Ok(())
}

/// Calls `visit` with every entry under `dir`, directories included, at any depth.
fn walk_entries(dir: &Path, visit: &mut dyn FnMut(&Path, &fs::Metadata)) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let metadata = fs::symlink_metadata(&path)?;
        visit(&path, &metadata);
        if metadata.is_dir() {
            walk_entries(&path, visit)?;
        }
    }
    Ok(())
}
