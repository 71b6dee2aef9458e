//! Named corruption cases. Each damages a file in a known way, reopens, and checks that
//! recovery keeps exactly the valid prefix (or repairs the index) and that appends
//! continue at the right offset.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

const BATCHES: usize = 10;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 200,
        durability: Durability::Never,
        ..LogConfig::default()
    }
}

/// A log left by a crash (or a clean close): its batches, their positions and offsets.
struct Fixture {
    dir: tempfile::TempDir,
    flusher: Flusher,
    config: LogConfig,
    batches: Vec<Vec<u8>>,
    positions: Vec<usize>,
    base_offsets: Vec<u64>,
}

impl Fixture {
    fn new(config: LogConfig, clean: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start().unwrap();
        let log = common::open(dir.path(), config, &flusher).unwrap();
        let (mut batches, mut positions, mut base_offsets) = (Vec::new(), Vec::new(), Vec::new());
        let mut position = 0;
        for index in 0..BATCHES {
            let batch = common::batch(3, 50 + index * 7, 1000 + 10 * index as i64, index as u64);
            let info = log.append(&batch, 4).unwrap();
            let stored = log
                .read(info.base_offset, 1, u64::MAX)
                .unwrap()
                .bytes
                .to_vec();
            positions.push(position);
            position += stored.len();
            base_offsets.push(info.base_offset);
            batches.push(stored);
        }
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        Self {
            dir,
            flusher,
            config,
            batches,
            positions,
            base_offsets,
        }
    }

    fn segment(&self) -> PathBuf {
        self.dir.path().join(format!("{:020}.log", 0))
    }

    fn file(&self, extension: &str) -> PathBuf {
        self.dir.path().join(format!("{:020}.{extension}", 0))
    }

    fn open(&self) -> Log {
        common::open(self.dir.path(), self.config, &self.flusher).unwrap()
    }

    /// Reopens and checks that exactly the first `kept` batches survived.
    fn expect_prefix(&self, kept: usize) -> Log {
        let log = self.open();
        let expected: Vec<u8> = self.batches[..kept].concat();
        assert_eq!(common::read_all(&log, 1 << 20), expected);
        let end = self
            .base_offsets
            .get(kept)
            .copied()
            .unwrap_or(3 * BATCHES as u64);
        assert_eq!(log.log_end_offset(), end);
        let info = log.append(&common::batch(1, 5, 1, 1), 5).unwrap();
        assert_eq!(
            info.base_offset, end,
            "appends continue at the end of the prefix"
        );
        log
    }
}

fn flip_bit(path: &Path, at: usize, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_bit_in_a_header_cuts_from_that_batch() {
    let fixture = Fixture::new(config(), false);
    // Byte 40 is inside max_timestamp, covered by the CRC.
    flip_bit(&fixture.segment(), fixture.positions[6] + 40, 3);
    fixture.expect_prefix(6);
}

#[test]
fn flipped_bit_in_a_length_field_cuts_from_that_batch() {
    let fixture = Fixture::new(config(), false);
    flip_bit(&fixture.segment(), fixture.positions[4] + 10, 6);
    fixture.expect_prefix(4);
}

#[test]
fn flipped_bit_in_a_base_offset_cuts_from_that_batch() {
    let fixture = Fixture::new(config(), false);
    flip_bit(&fixture.segment(), fixture.positions[5] + 7, 0);
    fixture.expect_prefix(5);
}

#[test]
fn flipped_bit_in_a_payload_cuts_from_that_batch() {
    let fixture = Fixture::new(config(), false);
    let at = fixture.positions[8] + fixture.batches[8].len() - 5;
    flip_bit(&fixture.segment(), at, 7);
    fixture.expect_prefix(8);
}

#[test]
fn zeroed_tail_cuts_the_damaged_batches() {
    let fixture = Fixture::new(config(), false);
    let path = fixture.segment();
    let mut bytes = fs::read(&path).unwrap();
    let from = fixture.positions[7] + 3;
    bytes[from..].fill(0);
    fs::write(&path, bytes).unwrap();
    fixture.expect_prefix(7);
}

#[test]
fn zeros_after_the_last_batch_are_cut() {
    let fixture = Fixture::new(config(), false);
    let path = fixture.segment();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&path, bytes).unwrap();
    fixture.expect_prefix(BATCHES);
    assert_eq!(
        fs::metadata(&path).unwrap().len() as usize,
        fixture.batches.concat().len() + common::batch(1, 5, 1, 1).len(),
        "the zeros are gone and the new batch follows the last valid one"
    );
}

#[test]
fn clean_open_reads_no_data_bytes() {
    let fixture = Fixture::new(config(), true);
    // Damage a batch before the last index entry: a clean open must not notice, because
    // it does not read data bytes (only the tail after the last index entry).
    let at = fixture.positions[1] + fixture.batches[1].len() - 5;
    flip_bit(&fixture.segment(), at, 1);
    let log = fixture.open();
    assert!(log.opened_clean());
    assert_eq!(log.log_end_offset(), 3 * BATCHES as u64);
}

#[test]
fn stale_clean_marker_is_not_trusted() {
    let fixture = Fixture::new(config(), true);
    let path = fixture.segment();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"garbage after the clean shutdown");
    fs::write(&path, bytes).unwrap();
    let log = fixture.expect_prefix(BATCHES);
    assert!(!log.opened_clean());
}

#[test]
fn truncated_index_is_rebuilt() {
    let fixture = Fixture::new(config(), true);
    let index = fixture.file("index");
    let length = fs::metadata(&index).unwrap().len();
    assert!(length >= 16, "the fixture has index entries");
    fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(length - 3)
        .unwrap();
    let log = fixture.expect_prefix(BATCHES);
    assert_eq!(log.offset_for_timestamp(1050).unwrap(), Some((15, 1050)));
}

#[test]
fn index_entry_pointing_past_the_end_is_rebuilt() {
    let fixture = Fixture::new(config(), true);
    let index = fixture.file("index");
    let mut bytes = fs::read(&index).unwrap();
    let last = bytes.len() - 4;
    bytes[last..].copy_from_slice(&u32::MAX.to_be_bytes());
    fs::write(&index, bytes).unwrap();
    fixture.expect_prefix(BATCHES);
}

#[test]
fn index_entry_pointing_inside_a_batch_is_rebuilt() {
    let fixture = Fixture::new(config(), true);
    let index = fixture.file("index");
    let mut bytes = fs::read(&index).unwrap();
    let last = bytes.len() - 4;
    let position = u32::from_be_bytes(bytes[last..].try_into().unwrap());
    bytes[last..].copy_from_slice(&(position + 1).to_be_bytes());
    fs::write(&index, bytes).unwrap();
    fixture.expect_prefix(BATCHES);
}

#[test]
fn missing_index_file_is_rebuilt() {
    let fixture = Fixture::new(config(), true);
    fs::remove_file(fixture.file("index")).unwrap();
    let log = fixture.expect_prefix(BATCHES);
    assert!(!log.opened_clean(), "rebuilding the index read the data");
}

#[test]
fn missing_time_index_is_rebuilt() {
    let fixture = Fixture::new(config(), true);
    fs::remove_file(fixture.file("timeindex")).unwrap();
    let log = fixture.expect_prefix(BATCHES);
    assert_eq!(log.offset_for_timestamp(1071).unwrap(), Some((22, 1071)));
    assert_eq!(log.offset_for_timestamp(999).unwrap(), Some((0, 1000)));
}

#[test]
fn corrupt_sealed_segment_below_the_recovery_point_is_reported() {
    let config = LogConfig {
        segment_bytes: 1000,
        ..config()
    };
    let fixture = Fixture::new(config, false);
    {
        // Open once so recovery seals, indexes and fsyncs the earlier segments.
        let log = fixture.open();
        assert!(log.segment_count() > 2);
        log.close().unwrap();
    }
    let first = fixture.segment();
    let length = fs::metadata(&first).unwrap().len() as usize;
    flip_bit(&first, length - 3, 2);
    // Remove the clean marker: a crash-style open trusts sealed segments below the
    // recovery point, checks their tails, and refuses to silently drop acknowledged data.
    fs::remove_file(fixture.dir.path().join("clean-shutdown")).unwrap();
    let result = common::open(fixture.dir.path(), config, &fixture.flusher);
    assert!(
        matches!(result, Err(StorageError::CorruptBelowRecoveryPoint { .. })),
        "{result:?}"
    );
}
