//! The contract of the public API, case by case: read semantics, limits, rolls, retention,
//! timestamps, replicated appends.

mod common;

use std::fs;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::FaultyIo;
use strata_protocol::batch::{Batches, stamp};
use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

fn open(dir: &std::path::Path, config: LogConfig) -> (Flusher, Log) {
    let flusher = Flusher::start().unwrap();
    let log = common::open(dir, config, &flusher).unwrap();
    (flusher, log)
}

fn bases(bytes: &[u8]) -> Vec<u64> {
    Batches::new(bytes)
        .map(|batch| batch.unwrap().header.base_offset)
        .collect()
}

#[test]
fn read_starts_at_the_batch_containing_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), LogConfig::default());
    for index in 0..4 {
        log.append(&common::batch(5, 10, 1, index), 1).unwrap();
    }
    let result = log.read(7, 1 << 20, u64::MAX).unwrap();
    assert_eq!(bases(&result.bytes), [5, 10, 15]);
    assert_eq!(result.next_offset, 20);
    assert_eq!((result.log_start_offset, result.log_end_offset), (0, 20));
}

#[test]
fn read_returns_one_whole_batch_even_above_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), LogConfig::default());
    for index in 0..3 {
        log.append(&common::batch(1, 500, 1, index), 1).unwrap();
    }
    let result = log.read(0, 10, u64::MAX).unwrap();
    assert_eq!(bases(&result.bytes), [0]);
    let two = log.read(0, 2 * result.bytes.len(), u64::MAX).unwrap();
    assert_eq!(bases(&two.bytes), [0, 1]);
}

#[test]
fn read_stops_below_max_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), LogConfig::default());
    for index in 0..4 {
        log.append(&common::batch(2, 10, 1, index), 1).unwrap();
    }
    assert_eq!(bases(&log.read(0, 1 << 20, 4).unwrap().bytes), [0, 2]);
    // A bound inside a batch excludes that batch.
    assert_eq!(bases(&log.read(0, 1 << 20, 5).unwrap().bytes), [0, 2]);
    assert!(log.read(4, 1 << 20, 4).unwrap().bytes.is_empty());
}

#[test]
fn offsets_outside_the_log_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), LogConfig::default());
    log.append(&common::batch(2, 10, 1, 0), 1).unwrap();
    assert!(
        log.read(2, 100, u64::MAX).unwrap().bytes.is_empty(),
        "the end itself is fine"
    );
    let result = log.read(3, 100, u64::MAX);
    assert!(
        matches!(
            result,
            Err(StorageError::OffsetOutOfRange { offset: 3, .. })
        ),
        "{result:?}"
    );
}

#[test]
fn append_stamps_offset_and_epoch_and_reports_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), LogConfig::default());
    log.append(&common::batch(3, 10, 100, 0), 1).unwrap();
    let info = log.append(&common::batch(2, 10, 200, 1), 9).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.log_end_offset),
        (3, 4, 5)
    );
    assert_eq!(info.max_timestamp, 201);
    let stored = log.read(3, 1, u64::MAX).unwrap().bytes;
    let header = strata_protocol::batch::verify_crc(&stored).unwrap();
    assert_eq!((header.base_offset, header.leader_epoch), (3, 9));
}

#[test]
fn replicated_append_keeps_offsets_and_checks_crc_and_continuity() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), LogConfig::default());
    let mut batch = common::batch(2, 10, 1, 0).to_vec();
    stamp(&mut batch, 0, 3);
    log.append_replicated(&batch).unwrap();
    let gap = log.append_replicated(&batch);
    assert!(
        matches!(
            gap,
            Err(StorageError::NonContiguous {
                base_offset: 0,
                log_end_offset: 2
            })
        ),
        "{gap:?}"
    );
    stamp(&mut batch, 2, 3);
    let last = batch.len() - 1;
    batch[last] ^= 1;
    let corrupt = log.append_replicated(&batch);
    assert!(
        matches!(corrupt, Err(StorageError::InvalidBatch { .. })),
        "{corrupt:?}"
    );
    assert_eq!(log.log_end_offset(), 2);
}

#[test]
fn under_never_a_roll_makes_the_sealed_segments_durable_and_not_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), common::small_config(Durability::Never));
    // Two batches of about 1.3 KiB fill most of a 4 KiB segment; the third rolls first,
    // then lands in the new active segment before the flush the roll asked for can look
    // (it takes the append lock the rolling append holds).
    for index in 0..3 {
        log.append(&common::batch(1, 1300, 1, index), 1).unwrap();
    }
    assert_eq!(log.segment_count(), 2);
    assert!(log.wait_durable(2, Duration::from_secs(10)).unwrap());
    assert_eq!(
        log.durable_offset(),
        2,
        "the flush fsyncs the sealed segment, not the one being appended to"
    );
    // An explicit sync covers the active segment too.
    assert_eq!(log.sync().unwrap(), 3);
    assert_eq!(log.durable_offset(), 3);
}

#[test]
fn segments_roll_by_size_and_get_index_files_when_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), common::small_config(Durability::Never));
    for index in 0..20 {
        log.append(&common::batch(2, 300, 1, index), 1).unwrap();
    }
    assert!(log.segment_count() > 3);
    log.sync().unwrap();
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.contains(&"00000000000000000000.log".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"00000000000000000000.index".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"00000000000000000000.timeindex".to_owned()),
        "{names:?}"
    );
    for name in names.iter().filter(|name| name.ends_with(".log")) {
        let length = fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(length <= 4096, "{name} has {length} bytes");
    }
}

#[test]
fn segments_roll_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let io = FaultyIo::default();
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let log = Log::open(dir.path(), config, flusher.clone(), Arc::new(io.clone())).unwrap();
    log.append(&common::batch(1, 10, 1, 0), 1).unwrap();
    io.faults.now_ms.fetch_add(999, Ordering::SeqCst);
    log.append(&common::batch(1, 10, 1, 1), 1).unwrap();
    assert_eq!(log.segment_count(), 1);
    io.faults.now_ms.fetch_add(1, Ordering::SeqCst);
    log.append(&common::batch(1, 10, 1, 2), 1).unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn retention_by_bytes_deletes_oldest_sealed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(1),
        ..common::small_config(Durability::Never)
    };
    let (_flusher, log) = open(dir.path(), config);
    for index in 0..10 {
        log.append(&common::batch(1, 1500, 1, index), 1).unwrap();
    }
    let segments = log.segment_count();
    // Two batches per segment: the active segment holds batches 8 and 9.
    let active_size = log.read(8, 1 << 20, u64::MAX).unwrap().bytes.len() as u64;
    let outcome = log.apply_retention(0).unwrap();
    assert_eq!(
        outcome.segments_deleted,
        segments - 1,
        "all but the active segment"
    );
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), active_size);
    assert_eq!(log.log_start_offset(), outcome.log_start_offset);
    let out_of_range = log.read(0, 10, u64::MAX);
    assert!(matches!(
        out_of_range,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    drop(log);
    let (_flusher, log) = open(dir.path(), config);
    assert_eq!(
        log.log_start_offset(),
        outcome.log_start_offset,
        "start survives reopen"
    );
}

#[test]
fn retention_by_bytes_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: Some(5000),
        ..common::small_config(Durability::Never)
    };
    let (_flusher, log) = open(dir.path(), config);
    for index in 0..12 {
        log.append(&common::batch(1, 1500, 1, index), 1).unwrap();
    }
    log.apply_retention(0).unwrap();
    assert!(log.size_bytes() >= 5000, "never below the limit");
    let mut smaller = log.size_bytes();
    let first_segment = log
        .read(log.log_start_offset(), 4096, u64::MAX)
        .unwrap()
        .bytes
        .len() as u64;
    smaller -= first_segment;
    assert!(
        smaller < 5000,
        "deleting one more segment would go below the limit"
    );
}

#[test]
fn retention_by_time_uses_the_newest_timestamp_of_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: Some(1000),
        ..common::small_config(Durability::Never)
    };
    let (_flusher, log) = open(dir.path(), config);
    for index in 0..6 {
        // Two batches per segment; segment k has newest timestamp 10_000 * k.
        log.append(
            &common::batch(1, 1500, 10_000 * (index / 2), index as u64),
            1,
        )
        .unwrap();
    }
    assert_eq!(log.segment_count(), 3);
    assert_eq!(log.apply_retention(1000).unwrap().segments_deleted, 0);
    assert_eq!(log.apply_retention(1001).unwrap().segments_deleted, 1);
    assert_eq!(log.log_start_offset(), 2);
    // The active segment is never deleted, however old.
    assert_eq!(log.apply_retention(i64::MAX).unwrap().segments_deleted, 1);
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), common::small_config(Durability::Never));
    for index in 0..30 {
        // Timestamps rise with a dip every third batch.
        let timestamp = 100 * index - if index % 3 == 0 { 150 } else { 0 };
        log.append(&common::batch(3, 200, timestamp, index as u64), 1)
            .unwrap();
    }
    assert_eq!(log.offset_for_timestamp(i64::MIN).unwrap(), Some((0, -150)));
    assert_eq!(log.offset_for_timestamp(101).unwrap(), Some((4, 101)));
    assert_eq!(log.offset_for_timestamp(2_000).unwrap(), Some((60, 2000)));
    assert_eq!(log.offset_for_timestamp(10_000).unwrap(), None);
    log.close().unwrap();
    let (_flusher, log) = open(dir.path(), common::small_config(Durability::Never));
    assert!(log.opened_clean());
    assert_eq!(log.offset_for_timestamp(2_000).unwrap(), Some((60, 2000)));
}

#[test]
fn truncate_to_drops_later_batches_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), common::small_config(Durability::Never));
    for index in 0..20 {
        log.append(&common::batch(2, 300, 1, index), 1).unwrap();
    }
    let inside = log.truncate_to(5);
    assert!(
        matches!(
            inside,
            Err(StorageError::NotBatchBoundary {
                offset: 5,
                batch_base_offset: 4
            })
        ),
        "{inside:?}"
    );
    log.truncate_to(40).unwrap();
    log.truncate_to(100).unwrap();
    assert_eq!(log.log_end_offset(), 40, "at or past the end is a no-op");
    log.truncate_to(6).unwrap();
    assert_eq!(log.log_end_offset(), 6);
    // Six ~680-byte batches fit a 4096-byte segment: offset 6 is in the first one.
    assert_eq!(log.segment_count(), 1, "later segments are gone");
    assert_eq!(
        log.append(&common::batch(1, 1, 1, 0), 1)
            .unwrap()
            .base_offset,
        6
    );
    drop(log);
    let (_flusher, log) = open(dir.path(), common::small_config(Durability::Never));
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn invalid_config_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let config = LogConfig {
        segment_bytes: 10,
        ..LogConfig::default()
    };
    let result = common::open(dir.path(), config, &flusher);
    assert!(
        matches!(result, Err(StorageError::InvalidConfig { .. })),
        "{result:?}"
    );
}

#[test]
fn a_closed_log_refuses_writes_and_releases_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (flusher, log) = open(dir.path(), LogConfig::default());
    log.append(&common::batch(2, 10, 1, 0), 1).unwrap();
    let durable = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&durable);
    log.on_durable(move |offset, _elapsed| sink.lock().unwrap().push(offset));
    log.close().unwrap();
    log.close().unwrap();
    assert_eq!(
        *durable.lock().unwrap(),
        [2],
        "close makes everything durable"
    );
    let refused = log.append(&common::batch(1, 10, 1, 1), 1);
    assert!(
        matches!(refused, Err(StorageError::Closed { .. })),
        "{refused:?}"
    );
    assert!(matches!(
        log.check_poisoned(),
        Err(StorageError::Closed { .. })
    ));
    assert_eq!(
        log.read(0, 100, u64::MAX).unwrap().next_offset,
        2,
        "reads still work"
    );
    // The old handle is still alive, but the directory is free.
    let reopened = common::open(dir.path(), LogConfig::default(), &flusher).unwrap();
    assert!(reopened.opened_clean());
    assert_eq!(reopened.log_end_offset(), 2);
    reopened.delete().unwrap();
    assert!(!dir.path().exists());
}

#[test]
fn truncate_fully_restarts_the_log_at_a_new_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (flusher, log) = open(dir.path(), common::small_config(Durability::EveryBatch));
    for index in 0..20 {
        log.append(&common::batch(2, 300, 1, index), 1).unwrap();
    }
    let held = log.read(0, 1 << 20, u64::MAX).unwrap().bytes;
    let copy = held.to_vec();
    log.truncate_fully(1000).unwrap();
    assert_eq!(held[..], copy[..], "bytes handed out survive");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1000));
    assert_eq!(log.durable_offset(), 1000);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        log.append(&common::batch(1, 1, 1, 0), 1)
            .unwrap()
            .base_offset,
        1000
    );
    drop(log);
    let log = common::open(
        dir.path(),
        common::small_config(Durability::EveryBatch),
        &flusher,
    )
    .unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (1000, 1001));
}

#[test]
fn truncate_fully_below_existing_segments_leaves_one_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (flusher, log) = open(dir.path(), common::small_config(Durability::Never));
    for index in 0..20 {
        log.append(&common::batch(2, 300, 1, index), 1).unwrap();
    }
    assert!(log.segment_count() > 2);
    log.truncate_fully(12).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
    log.close().unwrap();
    let files = fs::read_dir(dir.path()).unwrap().count();
    let log = common::open(
        dir.path(),
        common::small_config(Durability::Never),
        &flusher,
    )
    .unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
    assert!(
        files <= 8,
        "one segment, its indexes, a snapshot, three checkpoints and the lock: {files} files"
    );
}

#[test]
fn set_config_applies_new_limits_and_durability_to_an_open_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(
        dir.path(),
        LogConfig {
            durability: Durability::Never,
            ..LogConfig::default()
        },
    );
    log.append(&common::batch(2, 100, 1, 0), 0).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert!(
        !log.wait_durable(2, Duration::from_millis(50)).unwrap(),
        "never: nothing fsyncs on its own"
    );

    let smaller = LogConfig {
        segment_bytes: 4096,
        durability: Durability::EveryBatch,
        ..log.config()
    };
    log.set_config(smaller).unwrap();
    assert_eq!(log.config(), smaller);
    for index in 1..20 {
        log.append(&common::batch(2, 500, 1, index), 0).unwrap();
    }
    assert!(
        log.segment_count() > 3,
        "rolls at the new segment size: {} segments",
        log.segment_count()
    );
    assert!(
        log.wait_durable(40, Duration::from_secs(10)).unwrap(),
        "every_batch now fsyncs"
    );

    let invalid = LogConfig {
        segment_ms: 0,
        ..smaller
    };
    assert!(matches!(
        log.set_config(invalid),
        Err(StorageError::InvalidConfig { .. })
    ));
    assert_eq!(log.config(), smaller, "a rejected config changes nothing");
}
