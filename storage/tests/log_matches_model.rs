//! Model-based test: random sequences of append, replicated append, read, roll,
//! truncate_to, retention, timestamp lookup, clean close + reopen, and crash (drop without
//! close, optionally cutting the last segment file) + reopen, checked after every step
//! against an in-memory model, leader-epoch entries included (appends at random epochs,
//! the stale ones refused). Reproducible: the seed is printed and `STRATA_TEST_SEED`
//! replays it.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use strata_protocol::batch::{BatchView, stamp, verify_crc};
use strata_storage::{Durability, Flusher, Log, LogConfig, StorageError};

#[derive(Debug, Clone, Copy)]
enum Op {
    Append {
        records: usize,
        value_bytes: usize,
        timestamp_step: i64,
        epoch: u32,
    },
    AppendReplicated {
        records: usize,
        value_bytes: usize,
        epoch: u32,
    },
    Read {
        pick: u64,
        max_bytes: usize,
    },
    ReadAll {
        max_bytes: usize,
    },
    Roll,
    TruncateTo {
        pick: usize,
    },
    TruncateInside {
        pick: usize,
    },
    Retention {
        advance_ms: i64,
    },
    TruncateFully {
        skip: u64,
    },
    Timestamp {
        back_ms: i64,
    },
    CloseReopen,
    Crash {
        cut: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..700, -50i64..100, 5u32..9).prop_map(|(records, value_bytes, timestamp_step, epoch)| {
            Op::Append { records, value_bytes, timestamp_step, epoch }
        }),
        2 => (1usize..4, 0usize..300, 0u32..9).prop_map(|(records, value_bytes, epoch)| {
            Op::AppendReplicated { records, value_bytes, epoch }
        }),
        3 => (any::<u64>(), 1usize..3000).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        1 => (1usize..5000).prop_map(|max_bytes| Op::ReadAll { max_bytes }),
        1 => Just(Op::Roll),
        1 => any::<usize>().prop_map(|pick| Op::TruncateTo { pick }),
        1 => any::<usize>().prop_map(|pick| Op::TruncateInside { pick }),
        1 => (0i64..2000).prop_map(|advance_ms| Op::Retention { advance_ms }),
        1 => (0u64..50).prop_map(|skip| Op::TruncateFully { skip }),
        1 => (-100i64..600).prop_map(|back_ms| Op::Timestamp { back_ms }),
        1 => Just(Op::CloseReopen),
        1 => proptest::option::of(any::<u64>()).prop_map(|cut| Op::Crash { cut }),
    ]
}

fn config() -> impl Strategy<Value = LogConfig> {
    let durability = prop_oneof![
        Just(Durability::EveryBatch),
        Just(Durability::IntervalMs(5)),
        Just(Durability::Never)
    ];
    (
        1000u64..6000,
        0u32..1500,
        proptest::option::of(2000u64..20_000),
        proptest::option::of(500u64..3000),
        durability,
    )
        .prop_map(
            |(segment_bytes, index_interval_bytes, retention_bytes, retention_ms, durability)| {
                LogConfig {
                    segment_bytes,
                    index_interval_bytes,
                    retention_bytes,
                    retention_ms,
                    durability,
                    ..LogConfig::default()
                }
            },
        )
}

/// One batch as stored: stamped bytes and its record timestamps.
#[derive(Debug, Clone)]
struct Stored {
    base_offset: u64,
    leader_epoch: u32,
    bytes: Vec<u8>,
    timestamps: Vec<i64>,
}

impl Stored {
    fn next_offset(&self) -> u64 {
        self.base_offset + self.timestamps.len() as u64
    }
}

#[derive(Debug, Default)]
struct Model {
    start: u64,
    end: u64,
    batches: Vec<Stored>,
    clock_ms: i64,
}

impl Model {
    fn push(&mut self, bytes: Vec<u8>) {
        let header = verify_crc(&bytes).expect("model batch is valid");
        assert_eq!(header.base_offset, self.end);
        let timestamps = BatchView {
            header,
            bytes: &bytes,
        }
        .records()
        .map(|record| record.expect("record").timestamp)
        .collect();
        self.end = header.next_offset();
        self.batches.push(Stored {
            base_offset: header.base_offset,
            leader_epoch: header.leader_epoch,
            bytes,
            timestamps,
        });
    }

    fn truncate_to(&mut self, offset: u64) {
        self.batches.retain(|stored| stored.base_offset < offset);
        assert!(
            self.batches
                .last()
                .is_none_or(|last| last.next_offset() == offset),
            "boundary"
        );
        self.end = offset;
    }

    fn drop_before(&mut self, offset: u64) {
        assert!(
            offset == self.end
                || self
                    .batches
                    .iter()
                    .any(|stored| stored.base_offset == offset),
            "log start {offset} is not a batch boundary"
        );
        self.batches.retain(|stored| stored.base_offset >= offset);
        self.start = offset;
    }

    /// The leader-epoch entries the batches call for: one per epoch change.
    fn epochs(&self) -> Vec<(u32, u64)> {
        let mut entries: Vec<(u32, u64)> = Vec::new();
        for stored in &self.batches {
            if entries
                .last()
                .is_none_or(|&(epoch, _)| epoch != stored.leader_epoch)
            {
                entries.push((stored.leader_epoch, stored.base_offset));
            }
        }
        entries
    }

    /// Whether an append at `epoch` is refused as stale.
    fn stale(&self, epoch: u32) -> bool {
        self.epochs()
            .last()
            .is_some_and(|&(latest, _)| epoch < latest)
    }

    fn bytes(&self) -> Vec<u8> {
        self.batches
            .iter()
            .flat_map(|stored| stored.bytes.iter().copied())
            .collect()
    }
}

struct Case {
    dir: tempfile::TempDir,
    config: LogConfig,
    flusher: Flusher,
    log: Option<Log>,
    model: Model,
    seed: u64,
}

impl Case {
    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn reopen(&mut self) {
        self.log = Some(common::open(self.dir.path(), self.config, &self.flusher).expect("reopen"));
    }

    fn check(&self) {
        let log = self.log();
        assert_eq!(log.log_end_offset(), self.model.end, "log end offset");
        assert_eq!(log.log_start_offset(), self.model.start, "log start offset");
        let epochs = self.model.epochs();
        assert_eq!(log.epoch_entries(), epochs, "leader-epoch entries");
        assert_eq!(
            log.latest_epoch(),
            epochs.last().map(|&(epoch, _)| epoch),
            "latest epoch"
        );
        let size: usize = self
            .model
            .batches
            .iter()
            .map(|stored| stored.bytes.len())
            .sum();
        assert_eq!(log.size_bytes(), size as u64, "size");
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Append {
                records,
                value_bytes,
                timestamp_step,
                epoch,
            } => {
                self.model.clock_ms += timestamp_step;
                self.seed += 1;
                let batch = common::batch(records, value_bytes, self.model.clock_ms, self.seed);
                if self.model.stale(epoch) {
                    let result = self.log().append(&batch, epoch);
                    assert!(
                        matches!(result, Err(StorageError::StaleLeaderEpoch { epoch: refused, .. }) if refused == epoch),
                        "{result:?}"
                    );
                    return self.check();
                }
                if batch.len() as u64 > self.config.segment_bytes {
                    let result = self.log().append(&batch, epoch);
                    assert!(
                        matches!(result, Err(StorageError::BatchTooLarge { .. })),
                        "{result:?}"
                    );
                    return;
                }
                let info = self.log().append(&batch, epoch).expect("append");
                let mut stored = batch.to_vec();
                stamp(&mut stored, self.model.end, epoch);
                assert_eq!(info.base_offset, self.model.end);
                self.model.push(stored);
                assert_eq!(info.log_end_offset, self.model.end);
            }
            Op::AppendReplicated {
                records,
                value_bytes,
                epoch,
            } => {
                self.seed += 1;
                let batch = common::batch(records, value_bytes, self.model.clock_ms, self.seed);
                let mut bytes = batch.to_vec();
                stamp(&mut bytes, self.model.end + 1, epoch);
                let gap = self.log().append_replicated(&bytes);
                assert!(
                    matches!(gap, Err(StorageError::NonContiguous { .. })),
                    "{gap:?}"
                );
                stamp(&mut bytes, self.model.end, epoch);
                if self.model.stale(epoch) {
                    let result = self.log().append_replicated(&bytes);
                    assert!(
                        matches!(result, Err(StorageError::StaleLeaderEpoch { .. })),
                        "{result:?}"
                    );
                    return self.check();
                }
                self.log()
                    .append_replicated(&bytes)
                    .expect("replicated append");
                self.model.push(bytes);
            }
            Op::Read { pick, max_bytes } => self.check_read(pick, max_bytes),
            Op::ReadAll { max_bytes } => {
                assert_eq!(
                    common::read_all(self.log(), max_bytes),
                    self.model.bytes(),
                    "read all"
                );
            }
            Op::Roll => self.log().roll().expect("roll"),
            Op::TruncateTo { pick } => self.truncate(pick),
            Op::TruncateInside { pick } => self.truncate_inside(pick),
            Op::Retention { advance_ms } => self.retention(advance_ms),
            Op::TruncateFully { skip } => {
                let start = self.model.end + skip;
                self.log().truncate_fully(start).expect("truncate_fully");
                self.model.batches.clear();
                self.model.start = start;
                self.model.end = start;
            }
            Op::Timestamp { back_ms } => self.check_timestamp(self.model.clock_ms - back_ms),
            Op::CloseReopen => {
                self.log.take().expect("open").close().expect("close");
                self.reopen();
                assert!(self.log().opened_clean(), "clean reopen");
            }
            Op::Crash { cut } => self.crash(cut),
        }
        self.check();
    }

    fn check_read(&self, pick: u64, max_bytes: usize) {
        let model = &self.model;
        let from = model.start + pick % (model.end - model.start + 1);
        let result = self.log().read(from, max_bytes, u64::MAX).expect("read");
        let Some(first) = model
            .batches
            .iter()
            .position(|stored| stored.next_offset() > from)
        else {
            assert!(result.bytes.is_empty(), "read at the end returns nothing");
            assert_eq!(result.next_offset, from);
            return;
        };
        let mut expected = Vec::new();
        let mut next_offset = from;
        for stored in &model.batches[first..] {
            if expected.len() >= result.bytes.len() {
                break;
            }
            expected.extend_from_slice(&stored.bytes);
            next_offset = stored.next_offset();
        }
        assert!(
            !result.bytes.is_empty(),
            "a read below the end returns a batch"
        );
        assert_eq!(
            &result.bytes[..],
            &expected[..],
            "read returns whole consecutive batches"
        );
        assert_eq!(result.next_offset, next_offset);
        let first_len = model.batches[first].bytes.len();
        assert!(
            result.bytes.len() <= max_bytes.max(first_len),
            "max_bytes respected"
        );
        // A bound below the end: no batch reaching it is returned.
        let bounded = self
            .log()
            .read(from, usize::MAX, next_offset)
            .expect("bounded read");
        assert!(bounded.next_offset <= next_offset);
    }

    fn truncate(&mut self, pick: usize) {
        let boundaries: Vec<u64> = self
            .model
            .batches
            .iter()
            .map(|stored| stored.base_offset)
            .chain([self.model.end])
            .collect();
        let offset = boundaries[pick % boundaries.len()];
        // Hold a read result across the truncation: its bytes must stay readable.
        let held = self
            .log()
            .read(self.model.start, 1 << 20, u64::MAX)
            .expect("read");
        let copy = held.bytes.to_vec();
        self.log().truncate_to(offset).expect("truncate_to");
        assert_eq!(
            &held.bytes[..],
            &copy[..],
            "bytes handed out survive truncation"
        );
        self.model.truncate_to(offset);
    }

    fn truncate_inside(&mut self, pick: usize) {
        let inside: Vec<u64> = self
            .model
            .batches
            .iter()
            .filter(|stored| stored.timestamps.len() > 1)
            .map(|stored| stored.base_offset + 1)
            .collect();
        if let Some(&offset) = inside.get(pick % inside.len().max(1)) {
            let result = self.log().truncate_to(offset);
            assert!(
                matches!(result, Err(StorageError::NotBatchBoundary { .. })),
                "{result:?}"
            );
        }
    }

    fn retention(&mut self, advance_ms: i64) {
        let now = self.model.clock_ms + advance_ms;
        let outcome = self.log().apply_retention(now).expect("retention");
        assert!(self.log().segment_count() >= 1);
        assert_eq!(outcome.log_start_offset, self.log().log_start_offset());
        self.model.drop_before(outcome.log_start_offset);
    }

    fn check_timestamp(&self, target: i64) {
        let expected = self.model.batches.iter().find_map(|stored| {
            let at = stored
                .timestamps
                .iter()
                .position(|timestamp| *timestamp >= target)?;
            Some((stored.base_offset + at as u64, stored.timestamps[at]))
        });
        let found = self
            .log()
            .offset_for_timestamp(target)
            .expect("timestamp lookup");
        assert_eq!(found, expected, "offset_for_timestamp({target})");
    }

    fn crash(&mut self, cut: Option<u64>) {
        drop(self.log.take());
        if let Some(cut) = cut {
            let path = last_segment(self.dir.path());
            let length = fs::metadata(&path).expect("segment").len();
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open segment");
            file.set_len(cut % (length + 1)).expect("cut");
        }
        self.reopen();
        let end = self.log().log_end_offset();
        assert!(end <= self.model.end, "recovery invents nothing");
        if cut.is_none() {
            assert_eq!(end, self.model.end, "a process crash loses nothing written");
        }
        self.model.truncate_to(end);
        assert_eq!(
            common::read_all(self.log(), 1 << 16),
            self.model.bytes(),
            "exact prefix"
        );
    }
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .expect("dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

fn run(config: LogConfig, ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flusher = Flusher::start().expect("flusher");
    let log = common::open(dir.path(), config, &flusher).expect("open");
    let mut case = Case {
        dir,
        config,
        flusher,
        log: Some(log),
        model: Model::default(),
        seed: 0,
    };
    case.model.clock_ms = 1_000_000;
    for op in ops {
        case.apply(op);
    }
    assert_eq!(common::read_all(case.log(), 1 << 20), case.model.bytes());
    case.log.take().expect("open").close().expect("close");
}

#[test]
fn log_matches_model() {
    let seed = common::seed("log_matches_model");
    let cases = std::env::var("STRATA_MODEL_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(128);
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    });
    let strategy = (config(), proptest::collection::vec(op(), 1..60));
    if let Err(failure) = runner.run(&strategy, |(config, ops)| {
        run(config, ops);
        Ok(())
    }) {
        panic!("seed {seed}: {failure}");
    }
}
