//! Crash cut: the last segment is cut at every byte inside its last batch. Recovery must
//! yield exactly the batches before it, and appends continue at the right offset.

mod common;

use std::fs;
use std::path::PathBuf;

use strata_storage::{Durability, Flusher, LogConfig};

fn cut_every_byte_of_the_last_batch(config: LogConfig, batches: usize) {
    let dir = tempfile::tempdir().unwrap();
    let flusher = Flusher::start().unwrap();
    let log = common::open(dir.path(), config, &flusher).unwrap();
    let mut ends = Vec::new();
    for index in 0..batches {
        let batch = common::batch(
            1 + index % 3,
            40 + index * 13,
            1000 + index as i64,
            index as u64,
        );
        ends.push(log.append(&batch, 1).unwrap().log_end_offset);
    }
    // Make earlier segments trusted (recovery point advanced), as in a long-running log.
    log.sync().unwrap();
    let last_base = log
        .read(ends[batches - 2], 1, u64::MAX)
        .unwrap()
        .next_offset;
    assert_eq!(last_base, ends[batches - 1], "last batch");
    let before_last = ends[batches - 2];
    let expected = common::read_all(&log, 1 << 20);
    drop(log);
    let segment: PathBuf = {
        let mut logs: Vec<PathBuf> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
            .collect();
        logs.sort();
        logs.pop().unwrap()
    };
    let original = fs::read(&segment).unwrap();
    let last_batch_len = {
        let log = common::open(dir.path(), config, &flusher).unwrap();
        log.read(before_last, 1, u64::MAX).unwrap().bytes.len()
    };
    let prefix_len = original.len() - last_batch_len;
    let kept = expected.len() - last_batch_len;
    for cut in prefix_len..original.len() {
        fs::write(&segment, &original[..cut]).unwrap();
        let log = common::open(dir.path(), config, &flusher).unwrap();
        assert_eq!(log.log_end_offset(), before_last, "cut at byte {cut}");
        assert_eq!(
            common::read_all(&log, 1 << 20),
            expected[..kept],
            "cut at byte {cut}"
        );
        let info = log.append(&common::batch(2, 10, 5, 99), 2).unwrap();
        assert_eq!(
            info.base_offset, before_last,
            "append after cut at byte {cut}"
        );
        drop(log);
    }
}

#[test]
fn single_segment() {
    let config = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 100,
        durability: Durability::Never,
        ..LogConfig::default()
    };
    cut_every_byte_of_the_last_batch(config, 12);
}

#[test]
fn last_of_several_segments() {
    let config = LogConfig {
        segment_bytes: 1500,
        index_interval_bytes: 64,
        durability: Durability::EveryBatch,
        ..LogConfig::default()
    };
    cut_every_byte_of_the_last_batch(config, 20);
}
