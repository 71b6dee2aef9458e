//! The leader-epoch cache through the public API: entries from appends, stale epochs
//! refused, truncation and retention, the KIP-279 lookups, and reopening after a clean
//! close, a crash, or with the checkpoint file missing (a log written before it existed)
//! or damaged.

mod common;

use std::fs;
use std::path::Path;

use strata_protocol::batch::stamp;
use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

const CHECKPOINT: &str = "leader-epoch-checkpoint";

fn open(dir: &Path, config: LogConfig, flusher: &Flusher) -> Log {
    common::open(dir, config, flusher).expect("open")
}

/// Appends a two-record batch at `epoch`; returns its base offset.
fn append(log: &Log, epoch: u32) -> u64 {
    let batch = common::batch(2, 300, 1_000, u64::from(epoch));
    log.append(&batch, epoch).expect("append").base_offset
}

#[test]
fn appends_start_an_entry_per_new_epoch_and_refuse_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let log = open(
        dir.path(),
        common::small_config(Durability::Never),
        &flusher,
    );
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    append(&log, 0);
    append(&log, 0);
    append(&log, 3);
    append(&log, 3);
    append(&log, 5);
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (5, 8)]);
    assert_eq!(log.latest_epoch(), Some(5));

    let end = log.log_end_offset();
    let stale = log.append(&common::batch(1, 10, 1, 0), 4).unwrap_err();
    assert!(
        matches!(
            stale,
            StorageError::StaleLeaderEpoch {
                epoch: 4,
                latest: 5
            }
        ),
        "{stale}"
    );
    assert_eq!(log.log_end_offset(), end, "nothing written");

    let mut replicated = common::batch(1, 10, 1, 0).to_vec();
    stamp(&mut replicated, end, 2);
    let stale = log.append_replicated(&replicated).unwrap_err();
    assert!(
        matches!(stale, StorageError::StaleLeaderEpoch { epoch: 2, .. }),
        "{stale}"
    );
    stamp(&mut replicated, end, 9);
    log.append_replicated(&replicated).unwrap();
    assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (5, 8), (9, 10)]);
    assert_eq!(log.epoch_entries(), common::epochs_of_batches(&log));
}

#[test]
fn end_offsets_and_epochs_of_offsets_follow_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let log = open(
        dir.path(),
        common::small_config(Durability::Never),
        &flusher,
    );
    for epoch in [1, 1, 4, 6, 6] {
        append(&log, epoch);
    }
    // Entries (1, 0), (4, 4), (6, 6); the log ends at 10.
    assert_eq!(log.end_offset_for_epoch(6), Some((6, 10)));
    assert_eq!(log.end_offset_for_epoch(5), Some((4, 6)));
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 6)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(0), None);
    assert_eq!(
        log.end_offset_for_epoch(7),
        Some((6, 10)),
        "newer than any: the log end"
    );
    assert_eq!(log.epoch_for_offset(3), Some(1));
    assert_eq!(log.epoch_for_offset(4), Some(4));
    assert_eq!(log.epoch_for_offset(9), Some(6));
}

#[test]
fn truncation_drops_entries_and_lets_an_older_epoch_continue() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let log = open(
        dir.path(),
        common::small_config(Durability::Never),
        &flusher,
    );
    append(&log, 1);
    let second = append(&log, 2);
    let third = append(&log, 3);
    log.truncate_to(third).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, second)]);
    log.truncate_to(second).unwrap();
    assert_eq!(log.epoch_entries(), vec![(1, 0)]);
    append(&log, 1);
    assert_eq!(log.epoch_entries(), vec![(1, 0)]);
    log.truncate_fully(100).unwrap();
    assert_eq!(log.epoch_entries(), vec![]);
    assert_eq!(log.latest_epoch(), None);
    append(&log, 0);
    assert_eq!(log.epoch_entries(), vec![(0, 100)]);
}

#[test]
fn retention_moves_the_entry_covering_the_new_start() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let config = LogConfig {
        retention_ms: Some(1),
        ..common::small_config(Durability::Never)
    };
    let log = open(dir.path(), config, &flusher);
    for epoch in [1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3] {
        append(&log, epoch);
    }
    assert!(log.segment_count() > 2, "{}", log.segment_count());
    assert_eq!(log.epoch_entries(), vec![(1, 0), (2, 2), (3, 28)]);
    let outcome = log.apply_retention(i64::MAX).unwrap();
    let start = outcome.log_start_offset;
    assert!(start > 2 && start < 28, "{outcome:?}");
    assert_eq!(log.epoch_entries(), vec![(2, start), (3, 28)]);
    assert_eq!(log.epoch_entries(), common::epochs_of_batches(&log));
}

#[test]
fn entries_survive_a_clean_close_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let config = common::small_config(Durability::EveryBatch);
    let log = open(dir.path(), config, &flusher);
    for epoch in [0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 7] {
        append(&log, epoch);
    }
    let expected = log.epoch_entries();
    log.close().unwrap();
    assert!(dir.path().join(CHECKPOINT).exists());
    let log = open(dir.path(), config, &flusher);
    assert!(log.opened_clean());
    assert_eq!(log.epoch_entries(), expected);
    append(&log, 8);
    let expected = log.epoch_entries();
    drop(log);
    let log = open(dir.path(), config, &flusher);
    assert!(!log.opened_clean());
    assert_eq!(log.epoch_entries(), expected);
    assert_eq!(log.latest_epoch(), Some(8));
}

#[test]
fn a_missing_or_damaged_checkpoint_is_rebuilt_from_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let config = common::small_config(Durability::EveryBatch);
    let log = open(dir.path(), config, &flusher);
    for epoch in [0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, 3, 3, 4] {
        append(&log, epoch);
    }
    assert!(log.segment_count() > 2);
    let expected = log.epoch_entries();
    log.close().unwrap();
    let path = dir.path().join(CHECKPOINT);

    // A log written before the checkpoint existed: walks every batch header once.
    fs::remove_file(&path).unwrap();
    let log = open(dir.path(), config, &flusher);
    assert_eq!(log.epoch_entries(), expected);
    assert!(path.exists(), "the rebuilt entries are written at open");
    log.close().unwrap();

    let mut bytes = fs::read(&path).unwrap();
    bytes[12] ^= 0x40;
    fs::write(&path, &bytes).unwrap();
    let log = open(dir.path(), config, &flusher);
    assert_eq!(log.epoch_entries(), expected);
    assert_ne!(fs::read(&path).unwrap(), bytes, "rewritten");
}

#[test]
fn a_log_of_epoch_zero_batches_written_before_the_cache_gets_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::manual();
    let config = common::small_config(Durability::EveryBatch);
    let log = open(dir.path(), config, &flusher);
    for _ in 0..12 {
        append(&log, 0);
    }
    drop(log);
    fs::remove_file(dir.path().join(CHECKPOINT)).ok();
    let log = open(dir.path(), config, &flusher);
    assert_eq!(log.epoch_entries(), vec![(0, log.log_start_offset())]);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, log.log_end_offset())));
}
