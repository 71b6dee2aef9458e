//! Running out of space (`ENOSPC`) or descriptors (`EMFILE`) while creating a new file
//! (an index file, a producer snapshot, the recovery-point checkpoint, a new segment)
//! changes nothing durable: the log is not poisoned, appends go on, the next flush
//! retries, the recovery point advances once the files are written, and a reopen
//! recovers everything acknowledged, after a power loss too. Retention still runs. A
//! failed fsync still poisons.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::FaultyIo;
use strata_storage::sim::PowerLossIo;
use strata_storage::{
    DirLock, Durability, Flusher, Io, IoFile, Log, LogConfig, RealIo, StorageError,
};

/// What `on_write_failure` reported, in order: the error's text, or `None` for "a
/// flush got through again".
type Reports = Arc<Mutex<Vec<Option<String>>>>;

fn open(dir: &Path, io: &FaultyIo, flusher: &Flusher, config: LogConfig) -> (Log, Reports) {
    let log = Log::open(dir, config, flusher.clone(), Arc::new(io.clone())).unwrap();
    let reports = Reports::default();
    let sink = Arc::clone(&reports);
    log.on_write_failure(move |error| {
        sink.lock().unwrap().push(error.map(ToString::to_string));
    });
    (log, reports)
}

/// The recovery point checkpointed in `dir` (0 before the first checkpoint).
fn recovery_point(dir: &Path) -> u64 {
    match std::fs::read(dir.join("recovery-point")) {
        Ok(bytes) => u64::from_be_bytes(bytes[6..14].try_into().unwrap()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => panic!("reading the recovery point: {error}"),
    }
}

/// Appends until the log has `segments` segments, flushing after each append; every
/// append is durable once flushed. Returns the bytes appended.
fn append_until(log: &Log, flusher: &Flusher, segments: usize, seed: u64) -> Vec<u8> {
    let mut appended = Vec::new();
    let mut index = seed;
    while log.segment_count() < segments {
        let info = log.append(&common::batch(2, 100, 10, index), 1).unwrap();
        flusher.run_pending();
        assert!(
            log.wait_durable(info.log_end_offset, Duration::ZERO)
                .unwrap(),
            "appended data is durable although a new file cannot be created"
        );
        appended.extend_from_slice(&log.read(info.base_offset, 1, u64::MAX).unwrap().bytes);
        index += 1;
    }
    appended
}

/// Creates of files named like `name` fail with `errno` across two rolls; then the fault
/// clears, and the next flush writes what the failed ones could not.
fn a_failed_create_is_retried(name: &'static str, errno: i32) {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let io = FaultyIo::default();
    let config = common::small_config(Durability::EveryBatch);
    let (log, reports) = open(dir.path(), &io, &flusher, config);
    *io.faults.fail_creates.lock().unwrap() = Some((name, errno));

    let mut acknowledged = append_until(&log, &flusher, 3, 0);
    assert_eq!(log.poisoned(), None);
    assert_eq!(
        recovery_point(dir.path()),
        0,
        "nothing claims the files exist"
    );
    let reported = reports.lock().unwrap().clone();
    assert!(!reported.is_empty(), "failures are reported");
    for report in &reported {
        let text = report.as_deref().expect("no flush got through");
        assert!(text.contains(name), "{text}");
    }
    assert!(
        log.durability_stalled(log.log_end_offset()).is_none(),
        "the data is durable; only the files after it failed"
    );

    *io.faults.fail_creates.lock().unwrap() = None;
    acknowledged.extend(append_until(&log, &flusher, 4, 100));
    let active_base_offset = log.log_end_offset() - 2;
    assert_eq!(recovery_point(dir.path()), active_base_offset);
    assert_eq!(
        reports.lock().unwrap().last(),
        Some(&None),
        "recovery reported"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for suffix in [".index", ".timeindex", ".snapshot"] {
        let count = names.iter().filter(|name| name.ends_with(suffix)).count();
        assert_eq!(count, 3, "one {suffix} per sealed segment: {names:?}");
    }
    assert!(
        !names.iter().any(|name| name.ends_with(".tmp")),
        "{names:?}"
    );

    // A crash, then a reopen, keeps everything acknowledged.
    drop(log);
    let log = common::open(dir.path(), config, &flusher).unwrap();
    assert_eq!(common::read_all(&log, 1 << 20), acknowledged);
}

#[test]
fn enospc_writing_an_index_file_does_not_poison() {
    a_failed_create_is_retried(".index", libc::ENOSPC);
}

#[test]
fn enospc_writing_a_producer_snapshot_does_not_poison() {
    a_failed_create_is_retried(".snapshot", libc::ENOSPC);
}

#[test]
fn enospc_writing_the_recovery_point_does_not_poison() {
    a_failed_create_is_retried("recovery-point", libc::ENOSPC);
}

#[test]
fn emfile_writing_a_producer_snapshot_does_not_poison() {
    a_failed_create_is_retried(".snapshot", libc::EMFILE);
}

#[test]
fn emfile_writing_an_index_file_does_not_poison() {
    a_failed_create_is_retried(".timeindex", libc::EMFILE);
}

#[test]
fn a_roll_that_cannot_create_its_segment_fails_the_append_only() {
    for errno in [libc::ENOSPC, libc::EMFILE, libc::ENFILE] {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::manual();
        let io = FaultyIo::default();
        let config = common::small_config(Durability::EveryBatch);
        let (log, _) = open(dir.path(), &io, &flusher, config);
        let mut acknowledged = append_until(&log, &flusher, 2, 0);
        *io.faults.fail_creates.lock().unwrap() = Some((".log", errno));
        let end = log.log_end_offset();
        let error = loop {
            match log.append(&common::batch(2, 100, 10, 7), 1) {
                Ok(info) => {
                    flusher.run_pending();
                    let read = log.read(info.base_offset, 1, u64::MAX).unwrap();
                    acknowledged.extend_from_slice(&read.bytes);
                }
                Err(error) => break error,
            }
        };
        assert!(error.out_of_resources(), "errno {errno}: {error}");
        assert_eq!(log.poisoned(), None, "errno {errno}");
        assert!(log.log_end_offset() >= end);

        *io.faults.fail_creates.lock().unwrap() = None;
        acknowledged.extend(append_until(&log, &flusher, 4, 50));
        drop(log);
        let log = common::open(dir.path(), config, &flusher).unwrap();
        assert_eq!(
            common::read_all(&log, 1 << 20),
            acknowledged,
            "errno {errno}"
        );
    }
}

#[test]
fn no_descriptor_for_the_directory_fsync_holds_the_durable_offset_and_wakes_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let io = FaultyIo::default();
    let config = common::small_config(Durability::EveryBatch);
    let (log, reports) = open(dir.path(), &io, &flusher, config);
    let mut acknowledged = append_until(&log, &flusher, 2, 0);
    let durable = log.durable_offset();

    // The roll's new directory entry needs a directory fsync before anything after it
    // counts as durable; the directory cannot even be opened.
    io.faults
        .dir_sync_errno
        .store(libc::EMFILE, Ordering::SeqCst);
    log.roll().unwrap();
    let info = log.append(&common::batch(2, 100, 10, 9), 1).unwrap();
    flusher.run_pending();
    assert_eq!(log.poisoned(), None);
    assert_eq!(
        log.durable_offset(),
        durable,
        "not durable without the fsync"
    );
    let error = log
        .wait_durable(info.log_end_offset, Duration::from_secs(60))
        .unwrap_err();
    assert!(error.out_of_resources(), "{error}");
    assert!(log.durability_stalled(info.log_end_offset).is_some());
    let later = info.log_end_offset + 1;
    assert!(
        log.durability_stalled(later).is_none(),
        "appended after the failed flush"
    );
    assert!(matches!(reports.lock().unwrap().as_slice(), [Some(_)]));

    io.faults.dir_sync_errno.store(0, Ordering::SeqCst);
    let next = log.append(&common::batch(2, 100, 10, 10), 1).unwrap();
    flusher.run_pending();
    assert!(
        log.wait_durable(next.log_end_offset, Duration::ZERO)
            .unwrap()
    );
    assert!(log.durability_stalled(info.log_end_offset).is_none());
    assert_eq!(reports.lock().unwrap().last(), Some(&None));
    for at in [info.base_offset, next.base_offset] {
        acknowledged.extend_from_slice(&log.read(at, 1, u64::MAX).unwrap().bytes);
    }
    drop(log);
    let log = common::open(dir.path(), config, &flusher).unwrap();
    assert_eq!(common::read_all(&log, 1 << 20), acknowledged);
}

#[test]
fn retention_runs_on_a_log_whose_writes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let io = FaultyIo::default();
    let config = common::small_config(Durability::EveryBatch);
    let (log, _) = open(dir.path(), &io, &flusher, config);
    append_until(&log, &flusher, 4, 0);

    // The device is full: every write fails, to segments and to new files alike.
    io.faults.space_left_bytes.store(0, Ordering::SeqCst);
    let error = loop {
        match log.append(&common::batch(2, 100, 10, 3), 1) {
            Ok(_) => flusher.run_pending(),
            Err(error) => break error,
        }
    };
    assert!(matches!(error, StorageError::NoSpace { .. }), "{error}");
    log.roll()
        .unwrap_or_else(|error| assert!(error.out_of_resources(), "{error}"));
    flusher.run_pending();
    assert_eq!(log.poisoned(), None);

    let smaller = LogConfig {
        retention_bytes: Some(1),
        ..config
    };
    log.set_config(smaller).unwrap();
    let outcome = log
        .apply_retention(io.faults.now_ms.load(Ordering::SeqCst))
        .unwrap();
    assert!(outcome.segments_deleted >= 3, "{outcome:?}");
    assert_eq!(log.log_start_offset(), outcome.log_start_offset);

    // Deleting freed the space: appends and flushes go on.
    io.faults.space_left_bytes.store(u64::MAX, Ordering::SeqCst);
    let info = log.append(&common::batch(2, 100, 10, 4), 1).unwrap();
    flusher.run_pending();
    assert!(
        log.wait_durable(info.log_end_offset, Duration::ZERO)
            .unwrap()
    );
    let end = log.log_end_offset();
    drop(log);
    let log = Log::open(dir.path(), config, flusher.clone(), Arc::new(RealIo)).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.log_start_offset(), outcome.log_start_offset);
}

#[test]
fn enospc_from_an_fsync_still_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let io = FaultyIo::default();
    let config = common::small_config(Durability::EveryBatch);
    let (log, reports) = open(dir.path(), &io, &flusher, config);
    // After a failed fsync the page cache's state is unknown, whatever the errno. The
    // first roll needs a directory fsync.
    io.faults
        .dir_sync_errno
        .store(libc::ENOSPC, Ordering::SeqCst);
    for index in 0..100 {
        if log.append(&common::batch(2, 100, 10, index), 1).is_err() {
            break;
        }
        flusher.run_pending();
    }
    assert!(log.poisoned().is_some());
    assert!(
        reports.lock().unwrap().is_empty(),
        "a poison is no write failure"
    );
}

/// The power-loss simulator, but no new index file can be created while `full` is set.
#[derive(Debug, Default)]
struct NoRoomForIndexes {
    disk: PowerLossIo,
    full: AtomicBool,
}

impl Io for NoRoomForIndexes {
    fn create(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        if self.full.load(Ordering::SeqCst) && path.to_string_lossy().contains("index") {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.disk.create(path)
    }

    fn open(&self, path: &Path) -> std::io::Result<Arc<dyn IoFile>> {
        self.disk.open(path)
    }

    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        self.disk.read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.disk.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.disk.remove_file(path)
    }

    fn read_dir(&self, dir: &Path) -> std::io::Result<Vec<OsString>> {
        self.disk.read_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> std::io::Result<bool> {
        self.disk.create_dir_all(dir)
    }

    fn remove_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        self.disk.remove_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.disk.sync_dir(dir)
    }

    fn lock_dir(&self, dir: &Path) -> std::io::Result<DirLock> {
        self.disk.lock_dir(dir)
    }

    fn now_ms(&self) -> i64 {
        self.disk.now_ms()
    }
}

#[test]
fn what_is_acknowledged_while_index_files_fail_survives_a_power_loss() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let io = Arc::new(NoRoomForIndexes::default());
    let config = common::small_config(Durability::EveryBatch);
    let log = Log::open(
        dir.path(),
        config,
        flusher.clone(),
        Arc::clone(&io) as Arc<dyn Io>,
    )
    .unwrap();
    io.full.store(true, Ordering::SeqCst);
    // Every append is acknowledged once durable; no sealed segment gets index files.
    let acknowledged = append_until(&log, &flusher, 4, 0);
    assert_eq!(log.poisoned(), None);
    let names = std::fs::read_dir(dir.path()).unwrap();
    assert!(
        !names
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .any(|name| name.ends_with("index")),
        "no index file was written"
    );

    drop(log);
    io.disk.power_loss(None);
    io.full.store(false, Ordering::SeqCst);
    let log = Log::open(dir.path(), config, flusher.clone(), io).unwrap();
    assert_eq!(common::read_all(&log, 1 << 20), acknowledged);
}

#[test]
fn retention_without_a_descriptor_for_its_directory_fsync_leaves_it_to_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let io = FaultyIo::default();
    let config = common::small_config(Durability::EveryBatch);
    let (log, _) = open(dir.path(), &io, &flusher, config);
    append_until(&log, &flusher, 4, 0);
    log.set_config(LogConfig {
        retention_bytes: Some(1),
        ..config
    })
    .unwrap();

    io.faults
        .dir_sync_errno
        .store(libc::EMFILE, Ordering::SeqCst);
    let now_ms = io.faults.now_ms.load(Ordering::SeqCst);
    let error = log.apply_retention(now_ms).unwrap_err();
    assert!(error.out_of_resources(), "{error}");
    assert_eq!(log.poisoned(), None);
    assert_eq!(log.segment_count(), 1, "the segments are gone all the same");

    io.faults.dir_sync_errno.store(0, Ordering::SeqCst);
    let dir_syncs = io.faults.dir_syncs.load(Ordering::SeqCst);
    flusher.run_pending();
    assert!(
        io.faults.dir_syncs.load(Ordering::SeqCst) > dir_syncs,
        "the flush retention asked for fsyncs the directory"
    );
    let start = log.log_start_offset();
    drop(log);
    let log = common::open(dir.path(), config, &flusher).unwrap();
    assert_eq!(log.log_start_offset(), start);
}
