//! Injected faults through the I/O seam: ENOSPC, short writes and failed fsyncs surface as
//! errors and never corrupt what was already committed; a failed fsync poisons the log.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::FaultyIo;
use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

fn open(dir: &std::path::Path, io: &FaultyIo, flusher: &Flusher, durability: Durability) -> Log {
    let config = common::small_config(durability);
    Log::open(dir, config, flusher.clone(), Arc::new(io.clone())).unwrap()
}

#[test]
fn enospc_mid_batch_leaves_committed_data_intact_and_the_log_usable() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let log = open(dir.path(), &io, &flusher, Durability::Never);
    for index in 0..3 {
        log.append(&common::batch(2, 100, 10, index), 1).unwrap();
    }
    let committed = common::read_all(&log, 1 << 20);
    let end = log.log_end_offset();
    io.faults.space_left_bytes.store(100, Ordering::SeqCst);
    let result = log.append(&common::batch(2, 300, 10, 9), 1);
    assert!(
        matches!(result, Err(StorageError::NoSpace { .. })),
        "{result:?}"
    );
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.poisoned(), None, "a rolled-back ENOSPC does not poison");
    assert_eq!(common::read_all(&log, 1 << 20), committed);
    let segment = dir.path().join(format!("{:020}.log", 0));
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        committed.len() as u64,
        "partial bytes removed"
    );
    io.faults.space_left_bytes.store(u64::MAX, Ordering::SeqCst);
    let info = log.append(&common::batch(1, 10, 10, 10), 1).unwrap();
    assert_eq!(info.base_offset, end);
    drop(log);
    let log = open(dir.path(), &io, &flusher, Durability::Never);
    assert_eq!(
        log.log_end_offset(),
        end + 1,
        "nothing lost or invented across a crash"
    );
    assert_eq!(
        common::read_all(&log, 1 << 20)[..committed.len()],
        committed[..]
    );
}

#[test]
fn short_writes_are_completed() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    io.faults.write_bytes_max.store(7, Ordering::SeqCst);
    let log = open(dir.path(), &io, &flusher, Durability::EveryBatch);
    let mut expected = Vec::new();
    for index in 0..20 {
        let info = log.append(&common::batch(3, 77, 10, index), 2).unwrap();
        expected.push(log.read(info.base_offset, 1, u64::MAX).unwrap().bytes);
    }
    assert!(
        log.wait_durable(log.log_end_offset(), Duration::from_secs(10))
            .unwrap()
    );
    log.close().unwrap();
    let log = open(dir.path(), &io, &flusher, Durability::EveryBatch);
    assert_eq!(common::read_all(&log, 1 << 20), expected.concat());
}

#[test]
fn a_roll_writes_the_sealed_segment_back_once_before_its_fsync_and_a_failed_write_back_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let log = open(dir.path(), &io, &flusher, Durability::Never);
    let reported = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reports = Arc::clone(&reported);
    log.on_write_back(move |bytes, _| reports.lock().unwrap().push(bytes));
    // About 1.3 KiB each: two fill a 4 KiB segment, the third rolls.
    for index in 0..3 {
        log.append(&common::batch(1, 1300, 1, index), 1).unwrap();
    }
    assert!(log.wait_durable(2, Duration::from_secs(10)).unwrap());
    let sealed = std::fs::metadata(dir.path().join("00000000000000000000.log"))
        .unwrap()
        .len();
    assert_eq!(
        *io.faults.write_backs.lock().unwrap(),
        [(0, sealed)],
        "the whole sealed segment, once (the fsync does not write it back again), \
         and not the active one"
    );
    assert_eq!(
        *reported.lock().unwrap(),
        [sealed],
        "reported once, before the fsync"
    );

    // The next roll's write-back fails: the flush fails as if its fsync had.
    io.faults.fail_write_back.store(true, Ordering::SeqCst);
    for index in 3..5 {
        log.append(&common::batch(1, 1300, 1, index), 1).unwrap();
    }
    assert_eq!(log.segment_count(), 3);
    let waited = log.wait_durable(4, Duration::from_secs(10));
    assert!(
        matches!(waited, Err(StorageError::Poisoned { .. })),
        "{waited:?}"
    );
    assert_eq!(log.durable_offset(), 2, "durable never passes what synced");
    assert_eq!(io.faults.write_backs.lock().unwrap().len(), 1);
    assert_eq!(
        reported.lock().unwrap().len(),
        1,
        "a failed write-back is not reported"
    );
}

#[test]
fn a_write_back_in_progress_holds_up_no_fsync_of_another_log() {
    let (rolled_dir, durable_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let rolled = open(rolled_dir.path(), &io, &flusher, Durability::Never);
    let durable = open(durable_dir.path(), &io, &flusher, Durability::EveryBatch);
    io.faults.hold_write_backs();
    // About 1.3 KiB each: two fill a 4 KiB segment, the third rolls.
    for index in 0..3 {
        rolled.append(&common::batch(1, 1300, 1, index), 1).unwrap();
    }
    io.faults.wait_write_backs_held(1);
    // The sealed segment's write-back is stuck, yet the other log's fsyncs go on.
    let fsynced_meanwhile = (0..3).all(|index| {
        let info = durable.append(&common::batch(1, 10, 10, index), 1).unwrap();
        durable
            .wait_durable(info.log_end_offset, Duration::from_secs(10))
            .unwrap()
    });
    let rolled_durable_meanwhile = rolled.durable_offset();
    // Released before asserting: a flusher stuck at the gate would hang the logs' drop.
    io.faults.release_write_backs();
    assert!(
        fsynced_meanwhile,
        "an fsync waited for another log's write-back"
    );
    assert_eq!(
        rolled_durable_meanwhile, 0,
        "not fsync'd before its write-back"
    );
    assert!(rolled.wait_durable(2, Duration::from_secs(10)).unwrap());
    assert_eq!(rolled.poisoned(), None);
}

#[test]
fn under_never_a_flush_stops_at_a_sealed_segment_not_yet_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let log = open(dir.path(), &io, &flusher, Durability::Never);
    io.faults.hold_write_backs();
    // About 1.3 KiB each: two fill a 4 KiB segment, so the third and the fifth roll.
    for index in 0..3 {
        log.append(&common::batch(1, 1300, 1, index), 1).unwrap();
    }
    io.faults.wait_write_backs_held(1);
    for index in 3..5 {
        log.append(&common::batch(1, 1300, 1, index), 1).unwrap();
    }
    assert_eq!(log.segment_count(), 3);
    // The first sealed segment's write-back goes through, and its flush follows while
    // the second sealed segment's write-back is held.
    io.faults.let_one_write_back_through();
    let first_durable = log.wait_durable(2, Duration::from_secs(10)).unwrap();
    io.faults.wait_write_backs_held(1);
    let durable_meanwhile = log.durable_offset();
    // Released before asserting: a flusher stuck at the gate would hang the log's drop.
    io.faults.release_write_backs();
    assert!(first_durable);
    assert_eq!(
        durable_meanwhile, 2,
        "the flush stops at the segment still being written back"
    );
    assert!(log.wait_durable(4, Duration::from_secs(10)).unwrap());
    assert_eq!(log.poisoned(), None);
}

#[test]
fn failed_fsync_poisons_and_never_advances_the_durable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let log = open(dir.path(), &io, &flusher, Durability::EveryBatch);
    let poisonings = Arc::new(AtomicUsize::new(0));
    let counted = poisonings.clone();
    log.on_poisoned(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let first = log.append(&common::batch(1, 10, 10, 1), 1).unwrap();
    assert!(
        log.wait_durable(first.log_end_offset, Duration::from_secs(10))
            .unwrap()
    );
    assert_eq!(poisonings.load(Ordering::SeqCst), 0);
    io.faults.fail_sync.store(true, Ordering::SeqCst);
    let second = log.append(&common::batch(1, 10, 10, 2), 1).unwrap();
    let waited = log.wait_durable(second.log_end_offset, Duration::from_secs(10));
    assert!(
        matches!(waited, Err(StorageError::Poisoned { .. })),
        "{waited:?}"
    );
    assert_eq!(
        log.durable_offset(),
        first.log_end_offset,
        "durable never passes what synced"
    );
    assert_eq!(
        poisonings.load(Ordering::SeqCst),
        1,
        "the poisoned hook ran, once, before the waiter woke"
    );
    let refused = log.append(&common::batch(1, 10, 10, 3), 1);
    assert!(
        matches!(refused, Err(StorageError::Poisoned { .. })),
        "{refused:?}"
    );
    assert!(matches!(log.sync(), Err(StorageError::Poisoned { .. })));
    assert!(matches!(
        log.truncate_to(0),
        Err(StorageError::Poisoned { .. })
    ));
    assert!(
        matches!(log.close(), Err(StorageError::Poisoned { .. })),
        "no clean marker"
    );
    // Reopening re-runs recovery: the page cache still holds both batches.
    io.faults.fail_sync.store(false, Ordering::SeqCst);
    let log = open(dir.path(), &io, &flusher, Durability::EveryBatch);
    assert!(!log.opened_clean());
    assert_eq!(log.log_end_offset(), second.log_end_offset);
    assert_eq!(
        log.durable_offset(),
        second.log_end_offset,
        "open fsyncs what it recovered"
    );
    log.append(&common::batch(1, 10, 10, 4), 1).unwrap();
}

#[test]
fn a_roll_leaves_the_directory_fsync_to_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let log = Arc::new(open(dir.path(), &io, &flusher, Durability::Never));
    log.append(&common::batch(1, 10, 10, 1), 1).unwrap();
    log.sync().unwrap();
    let dir_syncs = io.faults.dir_syncs.load(Ordering::SeqCst);
    io.faults.hold_syncs();
    // The roll, under the append lock, does not wait for the directory fsync: the
    // flusher it wakes does, and waits at the gate.
    let (done, rolled) = std::sync::mpsc::channel();
    let roller = Arc::clone(&log);
    std::thread::spawn(move || {
        roller.roll().unwrap();
        roller.append(&common::batch(1, 10, 10, 2), 1).unwrap();
        done.send(()).unwrap();
    });
    rolled
        .recv_timeout(Duration::from_secs(10))
        .expect("the roll and the append finish while fsyncs are held");
    io.faults.wait_held(1);
    assert_eq!(io.faults.dir_syncs.load(Ordering::SeqCst), dir_syncs);
    assert_eq!(log.durable_offset(), 1, "nothing in the new segment yet");
    io.faults.release_syncs();
    assert_eq!(log.sync().unwrap(), 2);
    assert_eq!(log.durable_offset(), 2);
    assert!(io.faults.dir_syncs.load(Ordering::SeqCst) > dir_syncs);
}

#[test]
fn a_failed_directory_fsync_after_a_roll_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let log = open(dir.path(), &io, &flusher, Durability::Never);
    log.append(&common::batch(1, 10, 10, 1), 1).unwrap();
    log.sync().unwrap();
    io.faults.fail_sync.store(true, Ordering::SeqCst);
    log.roll().unwrap();
    // The flush fsyncs the directory first, which fails: here, or first on the flusher
    // thread the roll woke, which poisons the log.
    let flushed = log.sync();
    assert!(
        matches!(
            flushed,
            Err(StorageError::Io { .. } | StorageError::Poisoned { .. })
        ),
        "{flushed:?}"
    );
    assert!(log.poisoned().is_some());
    assert_eq!(log.durable_offset(), 1, "nothing past the fsync'd batch");
    let refused = log.append(&common::batch(1, 10, 10, 2), 1);
    assert!(
        matches!(refused, Err(StorageError::Poisoned { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_failed_directory_fsync_in_retention_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let config = LogConfig {
        retention_bytes: Some(1),
        ..common::small_config(Durability::Never)
    };
    let log = Log::open(dir.path(), config, flusher.clone(), Arc::new(io.clone())).unwrap();
    log.append(&common::batch(1, 10, 10, 1), 1).unwrap();
    log.roll().unwrap();
    log.append(&common::batch(1, 10, 10, 2), 1).unwrap();
    log.sync().unwrap();
    io.faults.fail_sync.store(true, Ordering::SeqCst);
    // Its directory fsync could also be the one covering a roll's new entry: a failure
    // must not leave a later, retried fsync to claim it durable.
    let retained = log.apply_retention(io.faults.now_ms.load(Ordering::SeqCst));
    assert!(
        matches!(retained, Err(StorageError::Io { .. })),
        "{retained:?}"
    );
    assert!(log.poisoned().is_some());
}
