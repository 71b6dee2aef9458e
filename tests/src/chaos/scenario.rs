//! Named scenarios and one run of a scenario, start to verdict: start the brokers
//! behind their proxies, create the topic, run the workload while the nemesis plays the
//! seeded schedule, stop producing once the last heal is followed by an
//! acknowledgement (or the liveness bound passed), drain, read the committed offsets
//! back, and check.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_client::Acks;
use tokio_util::sync::CancellationToken;

use super::checker::check;
use super::cluster::Cluster;
use super::error::ChaosError;
use super::history::Recorder;
use super::nemesis::{Driver, NemesisKind};
use super::node::{NodeSpec, sibling_binary};
use super::report::Report;
use super::schedule::schedule;
use super::workload::Workload;

/// Invariant 8's bound: after the last heal, a write is acknowledged within this.
pub const LIVENESS_MS_MAX: u64 = 10_000;
/// When the first fault may come, after the workload started.
const FAULTS_FROM: Duration = Duration::from_secs(2);
/// The healthy end of the workload: no fault starts or lasts into it.
const QUIET_TAIL: Duration = Duration::from_secs(4);
/// Shortest run: room for at least one fault.
pub const SECONDS_MIN: u64 = 13;
/// Longest run.
pub const SECONDS_MAX: u64 = 24 * 3600;
/// Highest rate, in records per second.
pub const RATE_MAX: u32 = 100_000;
/// How long the drain and the read-back of commits may take.
const DRAIN_WAIT: Duration = Duration::from_secs(60);
/// Partitions of the topic; producers and consumers of the workload.
const PARTITIONS: u32 = 4;
const PRODUCERS: u32 = 2;
const CONSUMERS: u32 = 2;

/// A topic's durability policy, as `--durability` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Durability {
    /// fsync only sealed segments and on shutdown.
    Never,
    /// fsync every `flush_interval_ms`.
    Interval,
    /// fsync every batch before acknowledging `acks = all`.
    EveryBatch,
}

impl Durability {
    /// The topic config value.
    pub fn name(self) -> &'static str {
        match self {
            Durability::Never => "never",
            Durability::Interval => "interval",
            Durability::EveryBatch => "every_batch",
        }
    }
}

/// The producers' acks, as `--acks` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcksLevel {
    /// Appended to the leader's log.
    Leader,
    /// On every in-sync replica, and covered by the durability policy.
    All,
}

impl AcksLevel {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            AcksLevel::Leader => "leader",
            AcksLevel::All => "all",
        }
    }

    fn acks(self) -> Acks {
        match self {
            AcksLevel::Leader => Acks::Leader,
            AcksLevel::All => Acks::All,
        }
    }
}

/// Everything a run is given.
#[derive(Debug, Clone)]
pub struct Options {
    /// The scenario's name (`custom` without `--scenario`).
    pub scenario: String,
    /// Brokers (1 until the cluster lands).
    pub brokers: u32,
    /// The nemesis.
    pub nemesis: NemesisKind,
    /// The producers' acks.
    pub acks: AcksLevel,
    /// The topic's durability policy.
    pub durability: Durability,
    /// Whether the producers are idempotent.
    pub idempotent: bool,
    /// How long the workload runs (the liveness check may add up to its bound).
    pub seconds: u64,
    /// The seed of the fault schedule.
    pub seed: u64,
    /// Records per second over all producers.
    pub rate: u32,
    /// Where to write the whole history as JSON, if anywhere.
    pub history: Option<PathBuf>,
}

impl Options {
    /// Checks the options.
    ///
    /// # Errors
    /// [`ChaosError::ClusterNotYet`] for more than one broker;
    /// [`ChaosError::InvalidInput`] for a value out of range.
    pub fn validate(&self) -> Result<(), ChaosError> {
        match self.brokers {
            0 => {
                return Err(ChaosError::InvalidInput(
                    "--brokers must be at least 1".into(),
                ));
            }
            1 => {}
            brokers => return Err(ChaosError::ClusterNotYet(brokers)),
        }
        if !(SECONDS_MIN..=SECONDS_MAX).contains(&self.seconds) {
            return Err(ChaosError::InvalidInput(format!(
                "--seconds must be {SECONDS_MIN} to {SECONDS_MAX}, got {}",
                self.seconds
            )));
        }
        if !(1..=RATE_MAX).contains(&self.rate) {
            return Err(ChaosError::InvalidInput(format!(
                "--rate must be 1 to {RATE_MAX} records per second, got {}",
                self.rate
            )));
        }
        Ok(())
    }
}

/// A named scenario: the settings `--scenario NAME` starts from.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name.
    pub name: &'static str,
    /// What it checks.
    pub about: &'static str,
    /// The nemesis.
    pub nemesis: NemesisKind,
    /// The producers' acks.
    pub acks: AcksLevel,
    /// The durability policy.
    pub durability: Durability,
    /// Its length in CI, in seconds.
    pub seconds: u64,
    /// Its rate in CI.
    pub rate: u32,
    /// Whether it is in the CI set.
    pub ci: bool,
}

const fn scenario(name: &'static str, about: &'static str, nemesis: NemesisKind) -> Scenario {
    Scenario {
        name,
        about,
        nemesis,
        acks: AcksLevel::All,
        durability: Durability::EveryBatch,
        seconds: 18,
        rate: 100,
        ci: true,
    }
}

/// Every named scenario.
pub const SCENARIOS: [Scenario; 7] = [
    scenario(
        "kill",
        "kill -9 the broker, restart it on the same data",
        NemesisKind::Kill,
    ),
    scenario(
        "pause",
        "SIGSTOP the broker, SIGCONT it later",
        NemesisKind::Pause,
    ),
    scenario(
        "client-cut",
        "cut every client off the broker at the proxy, then heal",
        NemesisKind::Partition,
    ),
    scenario(
        "lost-replies",
        "discard the broker's replies while requests still reach it, then reset the connections",
        NemesisKind::OneWayCut,
    ),
    scenario(
        "power-loss",
        "kill the broker and drop what it had not fsynced",
        NemesisKind::PowerLoss,
    ),
    scenario(
        "disk-full",
        "fill the disk under the broker's data, then free it",
        NemesisKind::DiskFull,
    ),
    Scenario {
        acks: AcksLevel::Leader,
        durability: Durability::Never,
        ci: false,
        ..scenario(
            "lossy-power-loss",
            "power loss under acks=leader and durability=never: must report lost writes",
            NemesisKind::PowerLoss,
        )
    },
];

impl Scenario {
    /// The scenario named `name`.
    ///
    /// # Errors
    /// [`ChaosError::InvalidInput`] naming the scenarios, if there is none.
    pub fn find(name: &str) -> Result<&'static Scenario, ChaosError> {
        SCENARIOS
            .iter()
            .find(|scenario| scenario.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = SCENARIOS.iter().map(|scenario| scenario.name).collect();
                ChaosError::InvalidInput(format!(
                    "unknown scenario '{name}'; the scenarios are {}",
                    names.join(", ")
                ))
            })
    }

    /// The CI set: the scenarios marked for CI.
    pub fn ci_set() -> impl Iterator<Item = &'static Scenario> {
        SCENARIOS.iter().filter(|scenario| scenario.ci)
    }

    /// The options of this scenario with `seed`.
    pub fn options(&self, seed: u64) -> Options {
        Options {
            scenario: self.name.to_owned(),
            brokers: 1,
            nemesis: self.nemesis,
            acks: self.acks,
            durability: self.durability,
            idempotent: true,
            seconds: self.seconds,
            seed,
            rate: self.rate,
            history: None,
        }
    }
}

/// Runs `options` to a report. Brokers, proxies, clients and the temporary directory
/// all belong to the returned future: dropping it (an interrupt) kills and removes
/// them.
///
/// # Errors
/// If the run cannot be carried out (bad options, a broker that does not start, a
/// drain that cannot finish). Violations are in the report, not errors.
///
/// # Panics
/// On a current-thread runtime.
pub async fn run(options: &Options) -> Result<Report, ChaosError> {
    options.validate()?;
    let mut nemesis = options.nemesis.build();
    let directory = tempfile::Builder::new()
        .prefix("strata-chaos-")
        .tempdir()
        .map_err(ChaosError::io("create a temporary directory"))?;
    let mut spec = NodeSpec {
        binary: sibling_binary("strata-broker")?,
        env: Vec::new(),
        data_dir: directory.path().join("broker-0"),
        log: directory.path().join("broker-0.log"),
        settings: Vec::new(),
    };
    nemesis.prepare(&mut spec)?;
    std::fs::create_dir_all(&spec.data_dir).map_err(ChaosError::io(format!(
        "create the data directory {}",
        spec.data_dir.display()
    )))?;
    let cluster = Cluster::start(vec![spec]).await?;
    let workload = Workload {
        bootstrap: cluster.bootstrap(),
        topic: "chaos".into(),
        group: "chaos".into(),
        partitions: PARTITIONS,
        producers: PRODUCERS,
        consumers: CONSUMERS,
        rate: options.rate,
        acks: options.acks.acks(),
        idempotent: options.idempotent,
    };
    workload.create_topic(options.durability.name()).await?;

    let recorder = Recorder::new(options.idempotent);
    let end = Duration::from_secs(options.seconds);
    let faults = schedule(options.seed, (FAULTS_FROM, end - QUIET_TAIL));
    let stop = CancellationToken::new();
    let mut tasks = workload.start(&recorder, &stop)?;
    let driver = Driver::start(cluster, nemesis, faults, recorder.clone());
    wait_for_end_of_production(&driver, &recorder, recorder.instant_at(end)).await;
    stop.cancel();
    let stopped_us = recorder.now_us();
    recorder.with(|history| history.production_us = (0, stopped_us));
    let settled = async { while tasks.join_next().await.is_some() {} };
    tokio::time::timeout(Duration::from_secs(30), settled)
        .await
        .map_err(|_| ChaosError::TimedOut("stopping the workload"))?;
    let played = tokio::task::block_in_place(|| driver.finish())?;

    let deadline = Instant::now() + DRAIN_WAIT;
    workload.drain(&recorder, deadline).await?;
    workload.read_final_commits(&recorder, deadline).await?;
    drop(played);
    let history = recorder.snapshot();
    if let Some(path) = &options.history {
        let json = serde_json::to_vec(&history).expect("a history serializes");
        std::fs::write(path, json).map_err(ChaosError::io(format!("write {}", path.display())))?;
    }
    let verdict = check(&history, LIVENESS_MS_MAX);
    Ok(Report::new(
        options,
        history.faults.len(),
        &verdict,
        LIVENESS_MS_MAX,
    ))
}

/// Waits until the workload's time is up and the schedule is over, then until a write
/// is acknowledged after the last heal or the liveness bound has passed.
async fn wait_for_end_of_production(driver: &Driver, recorder: &Recorder, end: Instant) {
    let bound_us = LIVENESS_MS_MAX * 1000;
    loop {
        if Instant::now() >= end && driver.is_finished() {
            let now_us = recorder.now_us();
            let done = recorder.with(|history| {
                let Some(healed_us) = history.faults.iter().map(|fault| fault.healed_us).max()
                else {
                    return true;
                };
                let acknowledged_since = history.writes.iter().any(|write| {
                    write.done_us.is_some_and(|done_us| done_us >= healed_us)
                        && matches!(write.outcome, super::history::WriteOutcome::Acked { .. })
                });
                acknowledged_since || now_us > healed_us + bound_us
            });
            if done {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
