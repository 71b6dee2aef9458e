//! [`apply`] on sync logs written by hand and by a [`SyncRecorder`] driven through the
//! `Io` seam, on a temporary directory.

use std::fs;
use std::io::{self, IoSlice};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use strata_storage::{Io, IoFile};
use tempfile::TempDir;

use super::*;

/// A data directory and a recorder writing its sync log beside it.
struct Disk {
    _root: TempDir,
    data: PathBuf,
    log: PathBuf,
    io: SyncRecorder,
}

impl Disk {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        fs::create_dir(&data).unwrap();
        let log = root.path().join("sync.log");
        let io = SyncRecorder::create(&log, &data).unwrap();
        Self {
            _root: root,
            data,
            log,
            io,
        }
    }

    /// A partition directory whose entry is durable.
    fn partition(&self, name: &str) -> PathBuf {
        let dir = self.data.join(name);
        self.io.create_dir_all(&dir).unwrap();
        self.io.sync_dir(&self.data).unwrap();
        dir
    }

    /// A file with `content`, fsync'd, whose entry is durable.
    fn durable_file(&self, path: &Path, content: &[u8]) -> std::sync::Arc<dyn IoFile> {
        let file = self.io.create(path).unwrap();
        write(file.as_ref(), content);
        file.sync_data().unwrap();
        self.io.sync_dir(path.parent().unwrap()).unwrap();
        file
    }

    fn apply(&self) -> PowerLossReport {
        apply(&self.data, &self.log).unwrap()
    }
}

fn write(file: &dyn IoFile, bytes: &[u8]) {
    assert_eq!(
        file.write_vectored(&[IoSlice::new(bytes)]).unwrap(),
        bytes.len()
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn bytes_written_after_the_last_fsync_are_cut() {
    let disk = Disk::new();
    let dir = disk.partition("t-0");
    let segment = disk.durable_file(&dir.join("0.log"), b"durable");
    write(segment.as_ref(), b" lost");
    let report = disk.apply();
    assert_eq!(fs::read(dir.join("0.log")).unwrap(), b"durable");
    assert_eq!(report.truncated, [(dir.join("0.log"), 5)]);
    assert_eq!(report.bytes_dropped(), 5);
    assert!(report.removed.is_empty() && report.restored.is_empty());
}

#[test]
fn a_new_file_is_empty_until_fsynced_and_gone_until_its_directory_is() {
    let disk = Disk::new();
    let dir = disk.partition("t-0");
    let entry_durable = disk.io.create(&dir.join("entry-durable")).unwrap();
    disk.io.sync_dir(&dir).unwrap();
    write(entry_durable.as_ref(), b"never fsynced");
    let content_durable = disk.io.create(&dir.join("content-durable")).unwrap();
    write(content_durable.as_ref(), b"fsynced");
    content_durable.sync_data().unwrap();
    let report = disk.apply();
    assert_eq!(names(&dir), ["entry-durable"]);
    assert_eq!(fs::read(dir.join("entry-durable")).unwrap(), b"");
    assert_eq!(report.truncated, [(dir.join("entry-durable"), 13)]);
    assert_eq!(report.removed, [(dir.join("content-durable"), 7)]);
}

#[test]
fn a_directory_whose_entry_is_not_durable_vanishes_with_its_files() {
    let disk = Disk::new();
    let dir = disk.data.join("t-1");
    disk.io.create_dir_all(&dir).unwrap();
    disk.durable_file(&dir.join("0.log"), b"in a new directory");
    let report = disk.apply();
    assert!(!dir.exists());
    assert_eq!(report.removed, [(dir.join("0.log"), 18)]);
    assert!(names(&disk.data).is_empty(), "the shadow directory is gone");
}

#[test]
fn a_rename_not_made_durable_is_undone_with_the_file_it_replaced() {
    let disk = Disk::new();
    let dir = disk.partition("t-0");
    disk.durable_file(&dir.join("0.index"), b"old");
    disk.durable_file(&dir.join("0.index.tmp"), b"new");
    disk.io
        .rename(&dir.join("0.index.tmp"), &dir.join("0.index"))
        .unwrap();
    let report = disk.apply();
    assert_eq!(names(&dir), ["0.index", "0.index.tmp"]);
    assert_eq!(fs::read(dir.join("0.index")).unwrap(), b"old");
    assert_eq!(fs::read(dir.join("0.index.tmp")).unwrap(), b"new");
    assert_eq!(report.restored.len(), 2, "{report:?}");
    assert_eq!(report.bytes_dropped(), 0);
}

#[test]
fn a_rename_made_durable_stays() {
    let disk = Disk::new();
    let dir = disk.partition("t-0");
    disk.durable_file(&dir.join("0.index"), b"old");
    disk.durable_file(&dir.join("0.index.tmp"), b"new");
    disk.io
        .rename(&dir.join("0.index.tmp"), &dir.join("0.index"))
        .unwrap();
    disk.io.sync_dir(&dir).unwrap();
    let report = disk.apply();
    assert_eq!(names(&dir), ["0.index"]);
    assert_eq!(fs::read(dir.join("0.index")).unwrap(), b"new");
    assert_eq!(report, PowerLossReport::default());
}

#[test]
fn a_removal_not_made_durable_is_undone_and_a_durable_one_stays() {
    let disk = Disk::new();
    let dir = disk.partition("t-0");
    disk.durable_file(&dir.join("0.log"), b"removed for good");
    disk.io.remove_file(&dir.join("0.log")).unwrap();
    disk.io.sync_dir(&dir).unwrap();
    disk.durable_file(&dir.join("1.log"), b"comes back");
    disk.io.remove_file(&dir.join("1.log")).unwrap();
    let gone = disk.partition("t-1");
    disk.durable_file(&gone.join("0.log"), b"a whole partition");
    disk.io.remove_dir_all(&gone).unwrap();
    assert!(!gone.exists());
    let report = disk.apply();
    assert_eq!(names(&dir), ["1.log"]);
    assert_eq!(fs::read(dir.join("1.log")).unwrap(), b"comes back");
    assert_eq!(fs::read(gone.join("0.log")).unwrap(), b"a whole partition");
    assert_eq!(report.restored, [gone, dir.join("1.log")]);
}

#[test]
fn a_shrink_since_the_last_fsync_counts_and_what_follows_it_is_lost() {
    let disk = Disk::new();
    let dir = disk.partition("t-0");
    let segment = disk.durable_file(&dir.join("0.log"), b"0123456789");
    segment.set_len(4).unwrap();
    write(segment.as_ref(), b"abcdef");
    let report = disk.apply();
    assert_eq!(fs::read(dir.join("0.log")).unwrap(), b"0123");
    assert_eq!(report.truncated, [(dir.join("0.log"), 6)]);
}

#[test]
fn a_file_that_existed_before_keeps_its_length_at_open_and_others_are_left_alone() {
    let disk = Disk::new();
    let dir = disk.data.join("t-0");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("0.log"), b"from the last run").unwrap();
    fs::write(disk.data.join("topic.toml"), b"written outside the seam").unwrap();
    let segment = disk.io.open(&dir.join("0.log")).unwrap();
    write(segment.as_ref(), b", and more");
    let report = disk.apply();
    assert_eq!(fs::read(dir.join("0.log")).unwrap(), b"from the last run");
    assert_eq!(
        fs::read(disk.data.join("topic.toml")).unwrap(),
        b"written outside the seam"
    );
    assert_eq!(report.truncated, [(dir.join("0.log"), 10)]);
}

fn inode(path: &Path) -> u64 {
    fs::metadata(path).unwrap().ino()
}

#[test]
fn apply_reads_a_hand_made_log_and_consumes_it() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let dir = data.join("t-0");
    fs::create_dir_all(&dir).unwrap();
    let (old, new) = (dir.join("0.log"), dir.join("5.log"));
    fs::write(&old, b"0123456789").unwrap();
    fs::write(&new, b"never listed").unwrap();
    let text = format!(
        "open\t{old_inode}\t10\t{old}\nsync\t{old_inode}\t6\n\
         create\t{new_inode}\t{new}\nname\t-\t{new_inode}\t{new}\nsync\t{new_inode}\t12\n\
         list\t{dir}\t{old_inode}:0.log\nsync\t{old_inode}\t8",
        old_inode = inode(&old),
        new_inode = inode(&new),
        old = old.display(),
        new = new.display(),
        dir = dir.display(),
    );
    let log = root.path().join("sync.log");
    fs::write(&log, text).unwrap();
    let report = apply(&data, &log).unwrap();
    assert_eq!(
        fs::read(&old).unwrap(),
        b"012345",
        "the cut last line is ignored"
    );
    assert!(!new.exists());
    assert_eq!(report.truncated, [(old, 4)]);
    assert_eq!(report.removed, [(new, 12)]);
    let again = apply(&data, &log).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::NotFound);
}

#[test]
fn a_malformed_log_is_refused_and_nothing_changes() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("0.log");
    fs::write(&file, b"kept").unwrap();
    let log = root.path().join("sync.log");
    fs::write(&log, format!("sync\t{}\tnot-a-length\n", inode(&file))).unwrap();
    let error = apply(root.path(), &log).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("line 1"), "{error}");
    assert_eq!(fs::read(&file).unwrap(), b"kept");
}
