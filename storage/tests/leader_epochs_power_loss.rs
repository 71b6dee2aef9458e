//! The leader-epoch invariant under power loss, at every crash point: a fixed workload
//! that changes epochs through every path (appends, replicated appends, rolls, flushes,
//! truncation, retention, `truncate_fully`, clean close and reopen) runs on the simulated
//! disk with the power cut before its first change, its second, and so on to the end.
//! After each cut the log is reopened, and its entries must describe exactly the epochs
//! of the batches it recovered: one entry per epoch change, none past the log end. Then
//! the power is cut again right after that open (whose recovery point now trusts the
//! batches recovery read, so only the checkpoint knows their epochs) and after a clean
//! close, and the entries are checked each time. Every third point is run again with
//! torn writes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_protocol::batch::stamp;
use strata_storage::sim::PowerLossIo;
use strata_storage::{Durability, Flusher, Log, LogConfig, Result};

/// One run of the workload on a fresh simulated disk.
struct Run {
    io: PowerLossIo,
    flusher: Flusher,
    dir: PathBuf,
    config: LogConfig,
    seed: u64,
}

impl Run {
    fn open(&self) -> Result<Log> {
        Log::open(
            &self.dir,
            self.config,
            self.flusher.clone(),
            Arc::new(self.io.clone()),
        )
    }

    fn append(&mut self, log: &Log, epoch: u32) -> Result<u64> {
        self.seed += 1;
        let batch = common::batch(2, 150, 1_000, self.seed);
        Ok(log.append(&batch, epoch)?.base_offset)
    }

    fn append_replicated(&mut self, log: &Log, epoch: u32) -> Result<()> {
        self.seed += 1;
        let mut batch = common::batch(1, 100, 1_000, self.seed).to_vec();
        stamp(&mut batch, log.log_end_offset(), epoch);
        log.append_replicated(&batch).map(drop)
    }

    /// The workload; it stops at the first error (the power went).
    fn workload(&mut self, slot: &mut Option<Log>) -> Result<()> {
        let log = slot.insert(self.open()?);
        for epoch in [0, 0, 0, 2, 2] {
            self.append(log, epoch)?;
        }
        log.sync()?;
        self.append(log, 2)?;
        self.append_replicated(log, 3)?;
        self.flusher.run_pending();
        log.roll()?;
        let cut_at = self.append(log, 4)?;
        self.append(log, 4)?;
        log.sync()?;
        log.truncate_to(cut_at)?;
        for epoch in [3, 5, 5, 5, 5] {
            self.append(log, epoch)?;
        }
        log.roll()?;
        self.append(log, 6)?;
        self.flusher.run_pending();
        log.apply_retention(i64::MAX)?;
        self.append(log, 6)?;
        log.sync()?;
        log.close()?;
        let log = slot.insert(self.open()?);
        self.append(log, 7)?;
        self.append_replicated(log, 8)?;
        self.flusher.run_pending();
        let start = log.log_end_offset() + 3;
        log.truncate_fully(start)?;
        self.append(log, 8)?;
        self.append(log, 9)?;
        log.sync()?;
        log.roll()?;
        self.append(log, 10)?;
        self.flusher.run_pending();
        log.close()
    }
}

/// The entries describe exactly the recovered batches.
fn check(log: &Log, context: &str) {
    let expected = common::epochs_of_batches(log);
    assert_eq!(log.epoch_entries(), expected, "{context}");
    assert_eq!(
        log.latest_epoch(),
        expected.last().map(|&(epoch, _)| epoch),
        "{context}"
    );
}

/// Runs the workload with the power cut after `changes` changes; `None` when the
/// workload finished first.
fn crash_at(root: &Path, config: LogConfig, changes: u64, torn: Option<u64>) -> Option<()> {
    let dir = root.join(format!("run-{changes}-{}", torn.is_some()));
    let mut run = Run {
        io: PowerLossIo::default(),
        flusher: Flusher::manual(),
        dir,
        config,
        seed: 0,
    };
    run.io.cut_after(changes);
    let mut slot = None;
    let result = run.workload(&mut slot);
    if !run.io.powered_off() {
        result.unwrap_or_else(|error| panic!("cut {changes}: failed with the power on: {error}"));
        return None;
    }
    let context = format!("{config:?}: power cut after {changes} changes, torn {torn:?}");
    drop(slot);
    run.io.power_loss(torn);
    let log = run
        .open()
        .unwrap_or_else(|error| panic!("{context}: {error}"));
    check(&log, &format!("{context}: reopened"));
    let end = log.log_end_offset();
    drop(log);
    run.io.power_loss(None);
    let log = run.open().expect("reopen after the open's checkpoints");
    assert_eq!(
        log.log_end_offset(),
        end,
        "{context}: the open synced the log"
    );
    check(&log, &format!("{context}: second power loss"));
    let appended = run.append(&log, 50).expect("append after recovery");
    log.sync().expect("sync");
    drop(log);
    run.io.power_loss(None);
    let log = run.open().expect("reopen after a new epoch");
    check(&log, &format!("{context}: new epoch"));
    assert_eq!(
        log.epoch_entries().last(),
        Some(&(50, appended)),
        "{context}"
    );
    log.close().expect("close");
    let log = run.open().expect("clean reopen");
    assert!(log.opened_clean(), "{context}");
    check(&log, &format!("{context}: clean reopen"));
    Some(())
}

fn every_crash_point(durability: Durability) {
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 1000,
        index_interval_bytes: 200,
        retention_ms: Some(1),
        durability,
        ..LogConfig::default()
    };
    let mut changes = 0;
    while crash_at(root.path(), config, changes, None).is_some() {
        // Torn writes (a random prefix of each file's unsynced appends survives) at every
        // third point: each run replays the workload from the start.
        if changes % 3 == 0 {
            crash_at(root.path(), config, changes, Some(changes));
        }
        changes += 1;
    }
    eprintln!("{durability:?}: power cut at each of {changes} changes");
    assert!(changes > 100, "the workload makes {changes} changes");
}

#[test]
fn every_crash_point_under_every_batch() {
    every_crash_point(Durability::EveryBatch);
}

#[test]
fn every_crash_point_under_never() {
    every_crash_point(Durability::Never);
}
