//! Idempotent producer state in the log: retries are recognised and answered with the
//! original offsets, gaps and stale epochs are refused, and the state survives a clean
//! close, a crash, truncation and a damaged snapshot.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use strata_protocol::batch::BatchBuilder;
use strata_storage::sim::PowerLossIo;
use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

/// A batch of `records` records from producer `id` (epoch `epoch`) starting at `sequence`.
fn idempotent(id: i64, epoch: i16, sequence: i32, records: usize) -> Bytes {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut builder = BatchBuilder::new();
    builder.producer(id, epoch, sequence);
    for index in 0..records {
        let value = [index as u8; 100];
        builder.push(now_ms + index as i64, None, Some(&value), &[]);
    }
    builder.finish()
}

fn snapshots(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".snapshot"))
        .collect();
    names.sort();
    names
}

fn open(dir: &Path, config: LogConfig) -> (Flusher, Log) {
    let flusher = Flusher::start().unwrap();
    let log = common::open(dir, config, &flusher).unwrap();
    (flusher, log)
}

/// Appends batches of 3 records for producer 7, epoch 0, sequences 0, 3, 6, ...
fn append_run(log: &Log, batches: i32) -> Vec<u64> {
    (0..batches)
        .map(|index| {
            let info = log.append(&idempotent(7, 0, index * 3, 3), 1).unwrap();
            assert!(!info.duplicate);
            info.base_offset
        })
        .collect()
}

#[test]
fn a_retry_gets_the_original_offsets_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_flusher, log) = open(dir.path(), LogConfig::default());
    log.append(&common::batch(2, 10, 1, 0), 1).unwrap();
    assert_eq!(append_run(&log, 2), [2, 5]);
    let retry = log.append(&idempotent(7, 0, 0, 3), 1).unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.last_offset), (2, 4));
    assert_eq!(retry.log_end_offset, 8);
    assert_eq!(log.log_end_offset(), 8);
    // A gap and a stale epoch are refused and write nothing either.
    assert!(matches!(
        log.append(&idempotent(7, 0, 7, 1), 1),
        Err(StorageError::OutOfOrderSequence {
            producer_id: 7,
            expected: 6,
            received: 7
        })
    ));
    log.append(&idempotent(7, 1, 0, 1), 1).unwrap();
    assert!(matches!(
        log.append(&idempotent(7, 0, 6, 1), 1),
        Err(StorageError::ProducerFenced {
            epoch: 0,
            current_epoch: 1,
            ..
        })
    ));
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.producer_count(), 1);
}

#[test]
fn state_survives_a_clean_close_without_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (flusher, log) = open(dir.path(), LogConfig::default());
    append_run(&log, 3);
    log.close().unwrap();
    drop(log);
    let log = common::open(dir.path(), LogConfig::default(), &flusher).unwrap();
    assert!(log.opened_clean());
    assert_eq!(snapshots(dir.path()), [format!("{:020}.snapshot", 9)]);
    let retry = log.append(&idempotent(7, 0, 6, 3), 1).unwrap();
    assert!(retry.duplicate && retry.base_offset == 6);
    assert!(!log.append(&idempotent(7, 0, 9, 1), 1).unwrap().duplicate);
    // The next close replaces the earlier close's snapshot (at no segment base) instead
    // of adding to it.
    log.close().unwrap();
    assert_eq!(snapshots(dir.path()), [format!("{:020}.snapshot", 10)]);
}

#[test]
fn state_survives_a_crash_across_rolls_from_snapshots_and_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1200,
        ..common::small_config(Durability::Never)
    };
    let (flusher, log) = open(dir.path(), config);
    let bases = append_run(&log, 10);
    assert!(log.segment_count() > 3);
    log.sync().unwrap();
    assert!(!snapshots(dir.path()).is_empty());
    // A crash: no close, so the open loads the newest snapshot and replays after it.
    drop(log);
    let log = common::open(dir.path(), config, &flusher).unwrap();
    assert!(!log.opened_clean());
    for (index, &base) in bases.iter().enumerate().skip(5) {
        let retry = log
            .append(&idempotent(7, 0, index as i32 * 3, 3), 1)
            .unwrap();
        assert!(retry.duplicate, "batch {index} not recognised");
        assert_eq!(retry.base_offset, base);
    }
    assert!(log.append(&idempotent(7, 0, 31, 1), 1).is_err());
    assert!(!log.append(&idempotent(7, 0, 30, 1), 1).unwrap().duplicate);
}

#[test]
fn a_damaged_or_missing_snapshot_falls_back_to_replaying_more() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1200,
        ..common::small_config(Durability::Never)
    };
    let (flusher, log) = open(dir.path(), config);
    append_run(&log, 10);
    log.close().unwrap();
    drop(log);
    let names = snapshots(dir.path());
    let newest = dir.path().join(names.last().unwrap());
    fs::write(&newest, b"not a snapshot").unwrap();
    let log = common::open(dir.path(), config, &flusher).unwrap();
    assert!(log.append(&idempotent(7, 0, 27, 3), 1).unwrap().duplicate);
    log.close().unwrap();
    drop(log);
    for name in snapshots(dir.path()) {
        fs::remove_file(dir.path().join(name)).unwrap();
    }
    let log = common::open(dir.path(), config, &flusher).unwrap();
    assert!(log.append(&idempotent(7, 0, 27, 3), 1).unwrap().duplicate);
    assert!(log.append(&idempotent(7, 0, 31, 1), 1).is_err());
}

#[test]
fn truncation_rebuilds_the_state_below_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1200,
        ..common::small_config(Durability::Never)
    };
    let (_flusher, log) = open(dir.path(), config);
    let bases = append_run(&log, 8);
    log.sync().unwrap();
    log.truncate_to(bases[2]).unwrap();
    // Batches 2.. are gone: their sequences are new again, and batch 1 is still known.
    assert!(log.append(&idempotent(7, 0, 3, 3), 1).unwrap().duplicate);
    assert!(log.append(&idempotent(7, 0, 9, 3), 1).is_err());
    let info = log.append(&idempotent(7, 0, 6, 3), 1).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, bases[2]);
    assert!(
        snapshots(dir.path()).iter().all(|name| name
            .trim_end_matches(".snapshot")
            .parse::<u64>()
            .unwrap()
            <= bases[2])
    );
    log.truncate_fully(1000).unwrap();
    assert_eq!(log.producer_count(), 0);
    assert!(snapshots(dir.path()).is_empty());
    assert!(!log.append(&idempotent(7, 0, 100, 1), 1).unwrap().duplicate);
}

#[test]
fn retention_deletes_snapshots_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1200,
        retention_bytes: Some(2000),
        ..common::small_config(Durability::Never)
    };
    let (_flusher, log) = open(dir.path(), config);
    append_run(&log, 12);
    log.sync().unwrap();
    let before = snapshots(dir.path()).len();
    let outcome = log.apply_retention(i64::MAX).unwrap();
    assert!(outcome.segments_deleted > 0);
    let after = snapshots(dir.path());
    assert!(after.len() < before);
    assert!(after.iter().all(|name| {
        name.trim_end_matches(".snapshot").parse::<u64>().unwrap() >= outcome.log_start_offset
    }));
}

#[test]
fn producers_past_the_limit_evict_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        producers_max: 2,
        ..LogConfig::default()
    };
    let (_flusher, log) = open(dir.path(), config);
    for id in 0..3 {
        log.append(&idempotent(id, 0, 0, 1), 1).unwrap();
    }
    assert_eq!(log.producer_count(), 2);
}

#[test]
fn producers_idle_past_the_expiration_are_forgotten_at_a_roll() {
    // Expiry goes by the broker's clock: a batch stamped long ago by its client counts as
    // fresh, and one stamped in the far future does not keep an idle producer.
    let dir = tempfile::tempdir().unwrap();
    let io = PowerLossIo::default();
    let config = LogConfig {
        producer_expiration_ms: 1_000,
        ..LogConfig::default()
    };
    let flusher = Flusher::start().unwrap();
    let log = Log::open(dir.path(), config, flusher, Arc::new(io.clone())).unwrap();
    let stamped = |id, timestamp_ms| {
        let mut batch = BatchBuilder::new();
        batch
            .producer(id, 0, 0)
            .push(timestamp_ms, None, Some(b"v"), &[]);
        batch.finish()
    };
    log.append(&stamped(1, i64::MAX / 2), 1).unwrap();
    io.set_now_ms(1_000_000 + 600);
    log.append(&stamped(2, 1_000), 1).unwrap();
    assert_eq!(log.producer_count(), 2);
    io.set_now_ms(1_000_000 + 1_500);
    log.roll().unwrap();
    assert_eq!(log.producer_count(), 1);
    // Producer 1 is unknown now, so any sequence starts it afresh; 2 is still known.
    log.append(&idempotent(1, 0, 5, 1), 1).unwrap();
    assert!(log.append(&idempotent(2, 0, 5, 1), 1).is_err());
}
