//! Damage to data recovery must keep (below the recovery point, or anywhere in a log
//! closed cleanly) is reported as `CorruptBelowRecoveryPoint`, naming the file, the byte
//! position, the offset and what is wrong, and nothing on disk is cut or rewritten: that
//! data was acknowledged as durable. Each case is named after what it breaks.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

/// Small segments, so the fixture has several, each of a few batches.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 200,
        durability: Durability::Never,
        ..LogConfig::default()
    }
}

/// A log of several segments, each batch's segment, position and base offset known.
struct Fixture {
    dir: tempfile::TempDir,
    flusher: Flusher,
    /// `(segment base offset, position in it, base offset, stored length)` per batch.
    batches: Vec<(u64, usize, u64, usize)>,
}

impl Fixture {
    /// Writes 30 batches; `clean` closes the log, else it is dropped (a crash) after a
    /// reopen that seals, indexes and fsyncs every segment but the last, so the recovery
    /// point is the last segment's base offset.
    fn new(clean: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::start().unwrap();
        let log = common::open(dir.path(), config(), &flusher).unwrap();
        for index in 0..30 {
            let batch = common::batch(3, 50 + index * 7, 1000 + index as i64, index as u64);
            log.append(&batch, 4).unwrap();
        }
        log.close().unwrap();
        drop(log);
        let log = common::open(dir.path(), config(), &flusher).unwrap();
        assert!(log.segment_count() >= 4, "the fixture has middle segments");
        let batches = batch_positions(dir.path(), &log);
        if clean {
            log.close().unwrap();
        } else {
            // Open consumed the clean-shutdown marker: the next open is a crash recovery.
            drop(log);
            assert!(!dir.path().join("clean-shutdown").exists());
        }
        Self {
            dir,
            flusher,
            batches,
        }
    }

    fn segment(&self, base_offset: u64) -> PathBuf {
        self.dir.path().join(format!("{base_offset:020}.log"))
    }

    /// Base offsets of the segments, oldest first.
    fn segment_bases(&self) -> Vec<u64> {
        let mut bases: Vec<u64> = self.batches.iter().map(|batch| batch.0).collect();
        bases.dedup();
        bases
    }

    /// The batch `index`'s `(segment path, position, base offset, length)`.
    fn batch(&self, index: usize) -> (PathBuf, usize, u64, usize) {
        let (segment, position, base_offset, length) = self.batches[index];
        (self.segment(segment), position, base_offset, length)
    }

    /// Opens, expecting the corruption error; checks that no segment file changed, and
    /// that opening again reports the same damage (a failed open does not consume the
    /// clean shutdown marker, which would let the next open cut the data).
    fn expect_corrupt(&self) -> (PathBuf, u64, u64, String) {
        let before = self.segment_files();
        let error = self.open_error();
        assert!(error.is_corruption(), "{error}");
        assert_eq!(self.segment_files(), before, "recovery cut nothing");
        assert_eq!(self.open_error().to_string(), error.to_string());
        assert_eq!(self.segment_files(), before, "the second open cut nothing");
        match error {
            StorageError::CorruptBelowRecoveryPoint {
                path,
                position,
                offset,
                reason,
            } => (path, position, offset, reason),
            other => panic!("expected CorruptBelowRecoveryPoint, got {other}"),
        }
    }

    fn open_error(&self) -> StorageError {
        match common::open(self.dir.path(), config(), &self.flusher) {
            Err(error) => error,
            Ok(log) => panic!("the damaged log opened: {log:?}"),
        }
    }

    fn segment_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
            .map(|path| {
                let bytes = fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        files.sort();
        files
    }
}

/// Walks the log batch by batch, noting where each lives.
fn batch_positions(dir: &Path, log: &Log) -> Vec<(u64, usize, u64, usize)> {
    let mut bases: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let read = log.read(offset, 1, u64::MAX).unwrap();
        let position = read.file.expect("a batch was read").position() as usize;
        let segment = bases[bases.partition_point(|&base| base <= offset) - 1];
        batches.push((segment, position, offset, read.bytes.len()));
        offset = read.next_offset;
    }
    batches
}

fn flip_bit(path: &Path, at: usize, bit: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 1 << bit;
    fs::write(path, bytes).unwrap();
}

/// The last batch of the first segment: after its last index entry, so even an open
/// that trusts the index files reads it.
fn last_batch_of_first_segment(fixture: &Fixture) -> usize {
    let first = fixture.segment_bases()[0];
    fixture
        .batches
        .iter()
        .rposition(|batch| batch.0 == first)
        .unwrap()
}

#[test]
fn flipped_payload_bit_in_a_sealed_segment_is_reported_with_its_place() {
    let fixture = Fixture::new(false);
    let index = last_batch_of_first_segment(&fixture);
    let (path, position, base_offset, length) = fixture.batch(index);
    flip_bit(&path, position + length - 3, 2);
    let (reported, at, offset, reason) = fixture.expect_corrupt();
    assert_eq!(reported, path);
    assert_eq!(at, position as u64);
    assert_eq!(offset, base_offset);
    assert!(reason.contains("CRC"), "{reason}");
}

#[test]
fn flipped_length_field_in_a_sealed_segment_is_reported() {
    let fixture = Fixture::new(false);
    let index = last_batch_of_first_segment(&fixture);
    let (path, position, base_offset, _) = fixture.batch(index);
    // Byte 8 is the high byte of the batch length: the batch now runs past the file.
    flip_bit(&path, position + 8, 6);
    let (reported, at, offset, _) = fixture.expect_corrupt();
    assert_eq!((reported, at, offset), (path, position as u64, base_offset));
}

#[test]
fn flipped_bit_in_the_active_segment_of_a_cleanly_closed_log_is_reported_not_cut() {
    let fixture = Fixture::new(true);
    let last = fixture.batches.len() - 1;
    let (path, position, base_offset, length) = fixture.batch(last);
    flip_bit(&path, position + length - 3, 5);
    let (reported, at, offset, _) = fixture.expect_corrupt();
    assert_eq!((reported, at, offset), (path, position as u64, base_offset));
}

#[test]
fn missing_middle_segment_is_reported_as_a_gap() {
    let fixture = Fixture::new(false);
    let bases = fixture.segment_bases();
    fs::remove_file(fixture.segment(bases[1])).unwrap();
    let (reported, at, offset, reason) = fixture.expect_corrupt();
    assert_eq!(reported, fixture.segment(bases[2]));
    assert_eq!((at, offset), (0, bases[1]));
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn middle_segment_cut_inside_a_batch_is_reported() {
    let fixture = Fixture::new(true);
    let bases = fixture.segment_bases();
    let index = fixture
        .batches
        .iter()
        .rposition(|batch| batch.0 == bases[1])
        .unwrap();
    let (path, position, base_offset, length) = fixture.batch(index);
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len((position + length / 2) as u64).unwrap();
    drop(file);
    let (reported, at, offset, _) = fixture.expect_corrupt();
    assert_eq!((reported, at, offset), (path, position as u64, base_offset));
}

#[test]
fn index_that_cannot_be_rebuilt_is_reported() {
    let fixture = Fixture::new(false);
    let (path, position, base_offset, length) = fixture.batch(0);
    // Without its index the whole segment is scanned, and its first batch is damaged.
    fs::remove_file(path.with_extension("index")).unwrap();
    flip_bit(&path, position + length / 2, 0);
    let (reported, at, offset, _) = fixture.expect_corrupt();
    assert_eq!((reported, at, offset), (path, 0, base_offset));
}

#[test]
fn damage_above_the_recovery_point_is_still_cut_as_a_torn_tail() {
    let fixture = Fixture::new(false);
    let last = fixture.batches.len() - 1;
    let (path, position, _, length) = fixture.batch(last);
    flip_bit(&path, position + length - 3, 5);
    let log = common::open(fixture.dir.path(), config(), &fixture.flusher).unwrap();
    assert_eq!(log.log_end_offset(), fixture.batches[last].2);
    assert_eq!(fs::metadata(&path).unwrap().len(), position as u64);
}
