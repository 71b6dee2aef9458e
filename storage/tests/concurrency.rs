//! Concurrency: group commit, concurrent appenders and readers, durable notifications,
//! and `Bytes` that outlive truncation and deletion (the SIGBUS rule).

mod common;

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::FaultyIo;
use strata_protocol::batch::{Batches, verify_crc};
use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

#[test]
fn one_fsync_covers_appends_that_arrive_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let config = LogConfig {
        durability: Durability::EveryBatch,
        ..LogConfig::default()
    };
    let log =
        Arc::new(Log::open(dir.path(), config, flusher.clone(), Arc::new(io.clone())).unwrap());
    let notified = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&notified);
    log.on_durable(move |offset, _elapsed| sink.lock().unwrap().push(offset));
    io.faults.hold_syncs();
    log.append(&common::batch(1, 10, 1, 0), 1).unwrap();
    io.faults.wait_held(1);
    let syncs_before = io.faults.syncs.load(Ordering::SeqCst);
    let appenders: Vec<_> = (0..4)
        .map(|thread| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for index in 0..25 {
                    log.append(&common::batch(1, 10, 1, thread * 100 + index), 1)
                        .unwrap();
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.join().unwrap();
    }
    let end = log.log_end_offset();
    assert_eq!(end, 101);
    assert!(
        log.durable_offset() < end,
        "nothing is durable while the fsync is held"
    );
    io.faults.release_syncs();
    assert!(log.wait_durable(end, Duration::from_secs(10)).unwrap());
    let syncs = io.faults.syncs.load(Ordering::SeqCst) - syncs_before;
    assert!(
        syncs <= 2,
        "100 appends during one fsync need one more fsync, not {syncs}"
    );
    let notified = notified.lock().unwrap().clone();
    assert_eq!(notified.last(), Some(&end));
    assert!(
        notified.windows(2).all(|pair| pair[0] < pair[1]),
        "{notified:?}"
    );
}

#[test]
fn concurrent_appenders_and_readers_see_dense_valid_batches() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = Arc::new(
        common::open(
            dir.path(),
            common::small_config(Durability::IntervalMs(2)),
            &flusher,
        )
        .unwrap(),
    );
    let appenders: Vec<_> = (0..3)
        .map(|thread| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for index in 0..150 {
                    log.append(&common::batch(2, 60, 1, thread * 1000 + index), 1)
                        .unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut offset = 0;
                while offset < 900 {
                    let result = log.read(offset, 1000, u64::MAX).unwrap();
                    for batch in Batches::new(&result.bytes) {
                        let header = verify_crc(batch.unwrap().bytes).unwrap();
                        assert_eq!(header.base_offset, offset, "dense offsets");
                        offset = header.next_offset();
                    }
                    if result.bytes.is_empty() {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for handle in appenders.into_iter().chain(readers) {
        handle.join().unwrap();
    }
    assert_eq!(log.log_end_offset(), 900);
    assert!(
        log.wait_durable(900, Duration::from_secs(10)).unwrap(),
        "the interval flush runs"
    );
}

#[test]
fn bytes_outlive_truncation_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = common::open(
        dir.path(),
        common::small_config(Durability::Never),
        &flusher,
    )
    .unwrap();
    for index in 0..6 {
        log.append(&common::batch(2, 100, 1, index), 1).unwrap();
    }
    let held = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
    let copy = held.to_vec();
    let first_batch = log.read(0, 1, u64::MAX).unwrap().bytes.to_vec();
    // The mapping is shared, so the segment is rewritten rather than shrunk in place.
    log.truncate_to(2).unwrap();
    assert_eq!(held[..], copy[..]);
    assert_eq!(log.log_end_offset(), 2);
    log.append(&common::batch(1, 3, 1, 77), 1).unwrap();
    let after = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
    assert_eq!(
        after[..first_batch.len()],
        first_batch[..],
        "the kept prefix"
    );
    log.delete().unwrap();
    assert!(!dir.path().exists());
    assert_eq!(held[..], copy[..], "unlinking keeps mapped bytes readable");
    assert_eq!(after[..first_batch.len()], first_batch[..]);
}

#[test]
fn a_directory_is_opened_by_one_log_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = common::open(dir.path(), LogConfig::default(), &flusher).unwrap();
    let second = common::open(dir.path(), LogConfig::default(), &flusher);
    assert!(
        matches!(second, Err(StorageError::Locked { .. })),
        "{second:?}"
    );
    drop(log);
    common::open(dir.path(), LogConfig::default(), &flusher).unwrap();
}

#[test]
fn an_old_shorter_mapping_still_held_survives_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = common::open(dir.path(), LogConfig::default(), &flusher).unwrap();
    for index in 0..4 {
        log.append(&common::batch(1, 5000, 1, index), 1).unwrap();
    }
    // Held: a mapping of the first 4 batches, kept alive by these bytes only.
    let held = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
    let copy = held.to_vec();
    for index in 4..8 {
        log.append(&common::batch(1, 5000, 1, index), 1).unwrap();
    }
    // A newer, longer mapping replaces it in the segment; nothing holds the newer one.
    drop(log.read(0, 1 << 20, u64::MAX).unwrap());
    log.truncate_to(1).unwrap();
    // Shrinking the file in place would make this a SIGBUS.
    assert_eq!(held[..], copy[..]);
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn a_reader_following_appends_keeps_one_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = growing_log(dir.path(), &flusher, 100);
    let first = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
    for index in 2..50 {
        log.append(&common::batch(1, 100, 1, index), 1).unwrap();
        let all = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
        // `first` keeps its mapping alive, so a remap would sit at another address.
        assert_eq!(all.as_ptr(), first.as_ptr(), "append {index} remapped");
        assert_eq!(batch_count(&all), index as usize + 1);
        let tail = log.read(index, 1 << 20, u64::MAX).unwrap().bytes;
        assert!(verify_crc(&tail).is_ok(), "the new batch reads whole");
    }
}

#[test]
fn truncation_shrinks_in_place_unless_a_view_past_the_cut_is_alive() {
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = growing_log(dir.path(), &flusher, 5000);
    // A view of 2 batches through a mapping with room for all that follow.
    let below = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
    let copy = below.to_vec();
    for index in 2..6 {
        log.append(&common::batch(1, 5000, 1, index), 1).unwrap();
    }
    // A view of all 6, dropped: it no longer counts.
    drop(log.read(0, 1 << 20, u64::MAX).unwrap());
    let segment = dir.path().join(format!("{:020}.log", 0));
    let inode = std::fs::metadata(&segment).unwrap().ino();
    // The live view ends below the cut, so the file shrinks in place under its mapping.
    log.truncate_to(3).unwrap();
    assert_eq!(std::fs::metadata(&segment).unwrap().ino(), inode);
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(below[..], copy[..]);
    // A live view past the cut forces the copy, and stays readable.
    let past = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
    log.truncate_to(1).unwrap();
    assert_ne!(std::fs::metadata(&segment).unwrap().ino(), inode);
    assert_eq!(batch_count(&past), 3);
    assert_eq!(below[..], copy[..]);
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn a_read_names_its_bytes_in_the_segment_file_and_truncation_keeps_them() {
    use std::os::unix::fs::FileExt;

    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = growing_log(dir.path(), &flusher, 5000);
    log.append(&common::batch(1, 5000, 1, 2), 1).unwrap();
    // From offset 1: the range starts at the second batch, not at the file's start.
    let read = log.read(1, 1 << 20, u64::MAX).unwrap();
    let range = read
        .file
        .clone()
        .expect("a non-empty read has a file range");
    assert!(std::ptr::eq(range.bytes(), read.bytes.as_ref()));
    assert!(range.position() > 0);
    let in_file = |range: &strata_storage::FileRange| {
        let mut buf = vec![0; range.bytes().len()];
        let file = std::fs::File::from(range.as_fd().try_clone_to_owned().unwrap());
        file.read_exact_at(&mut buf, range.position()).unwrap();
        buf
    };
    assert_eq!(in_file(&range), read.bytes[..]);
    // The range reaches past the cut: the kept prefix goes to a new file, and the range's
    // file still holds its bytes.
    drop(read);
    log.truncate_to(1).unwrap();
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(in_file(&range), range.bytes());
    assert_eq!(batch_count(range.bytes()), 2);
    // Nothing to read: no range.
    assert!(log.read(1, 1 << 20, u64::MAX).unwrap().file.is_none());
}

/// A log of 2 batches of one `value_bytes` record each, read in between. Its segment's
/// first mapping is exact; having outgrown it, the segment is growing, and the next read
/// maps it with room to grow.
fn growing_log(dir: &std::path::Path, flusher: &Flusher, value_bytes: usize) -> Log {
    let log = common::open(dir, LogConfig::default(), flusher).unwrap();
    log.append(&common::batch(1, value_bytes, 1, 0), 1).unwrap();
    drop(log.read(0, 1 << 20, u64::MAX).unwrap());
    log.append(&common::batch(1, value_bytes, 1, 1), 1).unwrap();
    log
}

fn batch_count(bytes: &[u8]) -> usize {
    Batches::new(bytes)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .len()
}
