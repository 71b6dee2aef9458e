//! Power loss: a seeded random workload (appends, rolls, syncs, flusher rounds,
//! truncations, retention, clean reopens) on the simulated disk of `strata_storage::sim`,
//! with the power cut at random points, between operations and inside them (and inside
//! the recovery that follows). After each cut, recovery must return exactly what was
//! durable: every batch below the durable offset the log last reported is there, and the
//! log is a contiguous run of the batches written, byte for byte, and its leader-epoch
//! entries describe exactly the epochs of those batches (appends move to a new epoch now
//! and then). The flusher is manual,
//! so a seed replays the same run: `STRATA_TEST_SEED`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use strata_protocol::batch::stamp;
use strata_storage::sim::{PowerLossIo, SplitMix};
use strata_storage::{Durability, Flusher, Log, LogConfig, Result};

/// Cases by default; `STRATA_POWER_LOSS_CASES` runs more.
const CASES_DEFAULT: u64 = 24;
const STEPS_PER_CASE: usize = 120;

/// SplitMix64: the workload's only source of randomness.
struct Rng(SplitMix);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One batch as written: its offsets and stamped bytes.
struct Stored {
    base_offset: u64,
    next_offset: u64,
    bytes: Vec<u8>,
}

/// What a step that the power cut short may have deleted, so recovery may lack it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MayLose {
    Nothing,
    /// `truncate_to`: batches at and after the offset.
    From(u64),
    /// Retention: whole segments from the start.
    Start,
    /// `truncate_fully`: everything; the log may also restart empty at the offset.
    All(u64),
}

struct Case {
    rng: Rng,
    seed: u64,
    io: PowerLossIo,
    flusher: Flusher,
    dir: PathBuf,
    config: LogConfig,
    log: Option<Log>,
    start: u64,
    end: u64,
    batches: Vec<Stored>,
    /// The durable offset the log reported last.
    durable: u64,
    /// The leader epoch appends use; it only grows, so no append is stale.
    epoch: u32,
    clock_ms: i64,
    _root: tempfile::TempDir,
}

impl Case {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(SplitMix(seed));
        let durability = match rng.below(3) {
            0 => Durability::EveryBatch,
            // The manual flusher never lets an interval elapse: only syncs and rolls flush.
            1 => Durability::IntervalMs(1000),
            _ => Durability::Never,
        };
        let config = LogConfig {
            segment_bytes: 1000 + rng.below(3000),
            index_interval_bytes: u32::try_from(rng.below(1000)).expect("small"),
            retention_ms: (rng.below(2) == 0).then(|| 500 + rng.below(3000)),
            retention_bytes: (rng.below(2) == 0).then(|| 2000 + rng.below(20_000)),
            durability,
            ..LogConfig::default()
        };
        let root = tempfile::tempdir().expect("tempdir");
        let mut case = Self {
            rng,
            seed,
            io: PowerLossIo::default(),
            flusher: Flusher::manual(),
            dir: root.path().join("topic-0"),
            config,
            log: None,
            start: 0,
            end: 0,
            batches: Vec::new(),
            durable: 0,
            epoch: 0,
            clock_ms: 1_000_000,
            _root: root,
        };
        case.log = Some(case.open().expect("first open"));
        case
    }

    fn open(&self) -> Result<Log> {
        self.io.set_now_ms(self.clock_ms);
        Log::open(
            &self.dir,
            self.config,
            self.flusher.clone(),
            Arc::new(self.io.clone()),
        )
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn step(&mut self) {
        let (result, may_lose) = match self.rng.below(100) {
            0..40 => (self.append(), MayLose::Nothing),
            40..48 => (self.log().roll(), MayLose::Nothing),
            48..58 => (self.log().sync().map(drop), MayLose::Nothing),
            58..68 => {
                self.flusher.run_pending();
                (Ok(()), MayLose::Nothing)
            }
            68..73 => self.truncate_to(),
            73..78 => (self.retention(), MayLose::Start),
            78..80 => self.truncate_fully(),
            80..84 => (self.close_reopen(), MayLose::Nothing),
            84..90 => {
                let changes = self.rng.below(40);
                self.io.cut_after(changes);
                (Ok(()), MayLose::Nothing)
            }
            _ => return self.crash(MayLose::Nothing),
        };
        if let Some(log) = &self.log {
            self.durable = log.durable_offset();
        }
        if self.io.powered_off() {
            return self.crash(may_lose);
        }
        if let Err(error) = result {
            panic!("seed {}: failed with the power on: {error}", self.seed);
        }
        assert!(
            self.durable <= self.end,
            "seed {}: durable past the end",
            self.seed
        );
    }

    fn append(&mut self) -> Result<()> {
        self.clock_ms += i64::try_from(self.rng.below(200)).expect("small");
        let records = 1 + self.rng.below(4) as usize;
        let value_bytes = self.rng.below(150) as usize;
        let seed = self.rng.next();
        let batch = common::batch(records, value_bytes, self.clock_ms, seed);
        if self.rng.below(8) == 0 {
            self.epoch += 1;
        }
        let info = self.log().append(&batch, self.epoch)?;
        assert_eq!(info.base_offset, self.end, "seed {}", self.seed);
        let mut bytes = batch.to_vec();
        stamp(&mut bytes, self.end, self.epoch);
        self.batches.push(Stored {
            base_offset: self.end,
            next_offset: info.log_end_offset,
            bytes,
        });
        self.end = info.log_end_offset;
        Ok(())
    }

    fn truncate_to(&mut self) -> (Result<()>, MayLose) {
        let pick = self.rng.below(self.batches.len() as u64 + 1) as usize;
        let offset = self
            .batches
            .get(pick)
            .map_or(self.end, |stored| stored.base_offset);
        let result = self.log().truncate_to(offset);
        if result.is_ok() {
            self.batches.retain(|stored| stored.base_offset < offset);
            self.end = offset;
        }
        (result, MayLose::From(offset))
    }

    fn retention(&mut self) -> Result<()> {
        self.clock_ms += i64::try_from(self.rng.below(2000)).expect("small");
        let outcome = self.log().apply_retention(self.clock_ms)?;
        self.batches
            .retain(|stored| stored.base_offset >= outcome.log_start_offset);
        self.start = outcome.log_start_offset;
        Ok(())
    }

    fn truncate_fully(&mut self) -> (Result<()>, MayLose) {
        let start = self.end + self.rng.below(5);
        let result = self.log().truncate_fully(start);
        if result.is_ok() {
            self.batches.clear();
            (self.start, self.end) = (start, start);
        }
        (result, MayLose::All(start))
    }

    fn close_reopen(&mut self) -> Result<()> {
        self.log.take().expect("open").close()?;
        let log = self.open()?;
        assert!(log.opened_clean(), "seed {}: clean reopen", self.seed);
        check_epochs(&log, self.seed);
        self.log = Some(log);
        Ok(())
    }

    /// Drops the log, loses what the disk does not hold, reopens (the power may be cut
    /// during recovery too, once) and checks what recovery returned.
    fn crash(&mut self, may_lose: MayLose) {
        drop(self.log.take());
        self.power_loss();
        if self.rng.below(4) == 0 {
            let changes = self.rng.below(20);
            self.io.cut_after(changes);
        }
        let log = match self.open() {
            Ok(log) if !self.io.powered_off() => log,
            opened => {
                assert!(
                    self.io.powered_off(),
                    "seed {}: recovery failed: {:?}",
                    self.seed,
                    opened.err()
                );
                drop(opened);
                self.power_loss();
                self.open()
                    .unwrap_or_else(|error| panic!("seed {}: recovery failed: {error}", self.seed))
            }
        };
        self.io.cancel_cut();
        self.check_recovered(&log, may_lose);
        check_epochs(&log, self.seed);
        self.durable = log.durable_offset();
        assert_eq!(
            self.durable, self.end,
            "seed {}: recovered is durable",
            self.seed
        );
        self.log = Some(log);
    }

    fn power_loss(&mut self) {
        let torn = (self.rng.below(2) == 0).then(|| self.rng.next());
        self.io.power_loss(torn);
    }

    fn check_recovered(&mut self, log: &Log, may_lose: MayLose) {
        let seed = self.seed;
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let bytes = common::read_all(log, 1 << 20);
        if let MayLose::All(restart) = may_lose
            && (start, end) == (restart, restart)
        {
            self.batches.clear();
            (self.start, self.end) = (start, end);
            return;
        }
        let required = match may_lose {
            MayLose::From(offset) => self.durable.min(offset),
            MayLose::All(_) => 0,
            MayLose::Nothing | MayLose::Start => self.durable,
        };
        assert!(
            end >= required,
            "seed {seed}: recovery lost durable batches: end {end} < durable {required}"
        );
        assert!(
            end <= self.end,
            "seed {seed}: recovery invented offsets up to {end}"
        );
        assert!(
            start >= self.start,
            "seed {seed}: start moved back to {start}"
        );
        if !matches!(may_lose, MayLose::Start | MayLose::All(_)) {
            assert_eq!(start, self.start, "seed {seed}: start moved");
        }
        let boundary = |offset: u64| {
            offset == self.end
                || self
                    .batches
                    .iter()
                    .any(|stored| stored.base_offset == offset)
        };
        assert!(
            boundary(start) && boundary(end),
            "seed {seed}: [{start}, {end}) is not whole batches"
        );
        self.batches
            .retain(|stored| stored.base_offset >= start && stored.next_offset <= end);
        let expected: Vec<u8> = self
            .batches
            .iter()
            .flat_map(|stored| stored.bytes.iter().copied())
            .collect();
        assert!(
            bytes == expected,
            "seed {seed}: recovered bytes differ from those written"
        );
        (self.start, self.end) = (start, end);
    }
}

/// The leader-epoch entries describe exactly the log's batches.
fn check_epochs(log: &Log, seed: u64) {
    assert_eq!(
        log.epoch_entries(),
        common::epochs_of_batches(log),
        "seed {seed}: leader-epoch entries"
    );
}

#[test]
fn recovery_returns_exactly_what_was_durable() {
    let seed = common::seed("power_loss");
    let cases = std::env::var("STRATA_POWER_LOSS_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES_DEFAULT);
    for case in 0..cases {
        let case_seed = seed.wrapping_add(case);
        let mut case = Case::new(case_seed);
        for _ in 0..STEPS_PER_CASE {
            case.step();
        }
        case.crash(MayLose::Nothing);
    }
}
