//! Named scenarios and one run of a scenario, start to verdict: start the brokers
//! behind their proxies, create the topic, run the workload while the nemesis plays the
//! seeded schedule, stop producing once the last heal is followed by an
//! acknowledgement (or the liveness bound passed), drain, read the committed offsets
//! back, and check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strata_client::Acks;
use tokio_util::sync::CancellationToken;

use super::checker::check;
use super::cluster::Cluster;
use super::error::ChaosError;
use super::history::Recorder;
use super::nemesis::{Driver, NemesisKind, Target, Targeting};
use super::node::{NodeSpec, sibling_binary};
use super::report::Report;
use super::roles::Roles;
use super::schedule::{FAULT_MS, GAP_MS, schedule};
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
/// How long they may take in a run that accepts a partition left unavailable: long
/// enough for any election after the last heal.
const UNAVAILABLE_DRAIN_WAIT: Duration = Duration::from_secs(20);
/// How long a fault lasts that must outlast the cluster's session timeout (3 s), in ms:
/// a paused or cut-off broker is fenced and its partitions move.
const PAST_SESSION_MS: (u64, u64) = (3_500, 5_000);
/// A multi-step fault's own planned length, in ms: its steps take what they take.
/// Three seconds leave room for one such fault in the shortest run.
const STEPS_MS: (u64, u64) = (3_000, 3_000);
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
    /// Brokers: 1, or a cluster of 3.
    pub brokers: u32,
    /// The nemesis.
    pub nemesis: NemesisKind,
    /// Which broker each fault goes to (with 1 broker, always broker 1).
    pub target: Target,
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
    /// Shortest and longest a fault lasts, in ms.
    pub fault_ms: (u64, u64),
    /// Whether a partition may end the run unavailable (its acknowledged writes then
    /// unverifiable, not lost).
    pub unavailable_allowed: bool,
    /// Where to write the whole history as JSON, if anywhere.
    pub history: Option<PathBuf>,
    /// A directory to copy every broker's log into at the end, if any.
    pub logs: Option<PathBuf>,
}

impl Options {
    /// Checks the options.
    ///
    /// # Errors
    /// [`ChaosError::InvalidInput`] for a value out of range, a broker count other than
    /// 1 or 3, or a cluster nemesis on one broker.
    pub fn validate(&self) -> Result<(), ChaosError> {
        if !matches!(self.brokers, 1 | 3) {
            return Err(ChaosError::InvalidInput(format!(
                "--brokers must be 1 or 3 (a cluster of three voters), got {}",
                self.brokers
            )));
        }
        if self.brokers == 1 && self.nemesis.needs_cluster() {
            return Err(ChaosError::InvalidInput(format!(
                "--nemesis {} needs a cluster: add --brokers 3",
                self.nemesis.name()
            )));
        }
        let seconds_min =
            (FAULTS_FROM + QUIET_TAIL).as_secs() + (GAP_MS.1 + self.fault_ms.1).div_ceil(1000);
        let seconds_min = seconds_min.max(SECONDS_MIN);
        if !(seconds_min..=SECONDS_MAX).contains(&self.seconds) {
            return Err(ChaosError::InvalidInput(format!(
                "--seconds must be {seconds_min} to {SECONDS_MAX}, got {}",
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
    /// Brokers.
    pub brokers: u32,
    /// The nemesis.
    pub nemesis: NemesisKind,
    /// Which broker each fault goes to.
    pub target: Target,
    /// The producers' acks.
    pub acks: AcksLevel,
    /// The durability policy.
    pub durability: Durability,
    /// Its length in CI, in seconds.
    pub seconds: u64,
    /// Its rate in CI.
    pub rate: u32,
    /// Shortest and longest a fault lasts, in ms.
    pub fault_ms: (u64, u64),
    /// Whether a partition may end the run unavailable.
    pub unavailable_allowed: bool,
    /// Whether it is in the CI set.
    pub ci: bool,
}

const fn scenario(name: &'static str, about: &'static str, nemesis: NemesisKind) -> Scenario {
    Scenario {
        name,
        about,
        brokers: 1,
        nemesis,
        target: Target::Leader,
        acks: AcksLevel::All,
        durability: Durability::EveryBatch,
        seconds: 18,
        rate: 100,
        fault_ms: FAULT_MS,
        unavailable_allowed: false,
        ci: true,
    }
}

/// A scenario on a cluster of three: a topic with three replicas and
/// `min_insync_replicas` 2, at a rate three brokers share two cores with.
const fn on_cluster(
    name: &'static str,
    about: &'static str,
    nemesis: NemesisKind,
    target: Target,
    fault_ms: (u64, u64),
) -> Scenario {
    Scenario {
        brokers: 3,
        target,
        seconds: 13 + fault_ms.1.saturating_sub(FAULT_MS.1).div_ceil(1000),
        rate: 40,
        fault_ms,
        ..scenario(name, about, nemesis)
    }
}

/// Every named scenario: one broker's, then the cluster's (the 1 to 8).
pub const SCENARIOS: [Scenario; 20] = [
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
    on_cluster(
        "leader-kill",
        "1: kill -9 the leader of a partition, repeatedly, and restart it",
        NemesisKind::Kill,
        Target::Leader,
        FAULT_MS,
    ),
    on_cluster(
        "leader-pause",
        "2: SIGSTOP the leader past the session timeout (a zombie), then SIGCONT",
        NemesisKind::Pause,
        Target::Leader,
        PAST_SESSION_MS,
    ),
    on_cluster(
        "leader-isolated",
        "3: cut the leader off from the other brokers both ways; clients still reach it",
        NemesisKind::Isolate,
        Target::Leader,
        PAST_SESSION_MS,
    ),
    on_cluster(
        "leader-silenced",
        "3: an asymmetric cut: the leader hears the other brokers, they do not hear it",
        NemesisKind::Silence,
        Target::Leader,
        PAST_SESSION_MS,
    ),
    on_cluster(
        "majority-split",
        "3: the controller alone in a minority of one, the other two a majority",
        NemesisKind::Isolate,
        Target::Controller,
        PAST_SESSION_MS,
    ),
    on_cluster(
        "follower-kill",
        "4: kill -9 a follower; acks=all goes on with the rest of the ISR",
        NemesisKind::Kill,
        Target::Follower,
        FAULT_MS,
    ),
    on_cluster(
        "follower-pause",
        "4: SIGSTOP a follower past the session timeout, then SIGCONT",
        NemesisKind::Pause,
        Target::Follower,
        PAST_SESSION_MS,
    ),
    on_cluster(
        "slow-follower",
        "4: delay every message on a follower's links to the other brokers",
        NemesisKind::Slow,
        Target::Follower,
        FAULT_MS,
    ),
    Scenario {
        durability: Durability::Never,
        ..on_cluster(
            "leader-power-loss",
            "5: power loss of the leader under durability=never: the others hold its writes",
            NemesisKind::PowerLoss,
            Target::Leader,
            FAULT_MS,
        )
    },
    Scenario {
        durability: Durability::Never,
        unavailable_allowed: true,
        ..on_cluster(
            "last-replica-standing",
            "6: ISR down to the leader, its power cut, the others back: unavailable or intact, never truncated",
            NemesisKind::LastReplicaStanding,
            Target::Leader,
            STEPS_MS,
        )
    },
    on_cluster(
        "divergent-tails",
        "7: two leader changes in quick succession, each old leader left with an uncommitted tail",
        NemesisKind::DivergentTails,
        Target::Leader,
        STEPS_MS,
    ),
    on_cluster(
        "rolling-restart",
        "8: restart every broker in turn with SIGTERM, under load",
        NemesisKind::RollingRestart,
        Target::Leader,
        STEPS_MS,
    ),
    on_cluster(
        "controller-kill",
        "8: kill -9 the controller (the metadata quorum's leader), and restart it",
        NemesisKind::Kill,
        Target::Controller,
        FAULT_MS,
    ),
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
            brokers: self.brokers,
            nemesis: self.nemesis,
            target: self.target,
            acks: self.acks,
            durability: self.durability,
            idempotent: true,
            seconds: self.seconds,
            seed,
            rate: self.rate,
            fault_ms: self.fault_ms,
            unavailable_allowed: self.unavailable_allowed,
            history: None,
            logs: None,
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
    let mut specs = Vec::new();
    for index in 0..options.brokers {
        let mut spec = NodeSpec {
            binary: sibling_binary("strata-broker")?,
            env: Vec::new(),
            data_dir: directory.path().join(format!("broker-{index}")),
            log: directory.path().join(format!("broker-{index}.log")),
            settings: Vec::new(),
            args: Vec::new(),
        };
        nemesis.prepare(&mut spec)?;
        std::fs::create_dir_all(&spec.data_dir).map_err(ChaosError::io(format!(
            "create the data directory {}",
            spec.data_dir.display()
        )))?;
        specs.push(spec);
    }
    let cluster = Cluster::start(specs).await?;
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
        replication_factor: u16::try_from(options.brokers).expect("1 or 3 brokers"),
    };
    workload.create_topic(options.durability.name()).await?;
    let roles = Roles::new(cluster.client_addresses(), &workload.topic, PARTITIONS);
    workload.wait_until_replicated(&roles).await?;

    let recorder = Recorder::new(options.idempotent, options.unavailable_allowed);
    let end = Duration::from_secs(options.seconds);
    let window = (FAULTS_FROM, end - QUIET_TAIL);
    let faults = schedule(options.seed, window, options.fault_ms);
    let stop = CancellationToken::new();
    let mut tasks = workload.start(&recorder, &stop)?;
    let targeting = Targeting {
        target: options.target,
        roles,
        seed: options.seed,
    };
    let driver = Driver::start(cluster, nemesis, faults, recorder.clone(), targeting);
    wait_for_end_of_production(&driver, &recorder, recorder.instant_at(end)).await;
    stop.cancel();
    let stopped_us = recorder.now_us();
    recorder.with(|history| history.production_us = (0, stopped_us));
    let settled = async { while tasks.join_next().await.is_some() {} };
    tokio::time::timeout(Duration::from_secs(30), settled)
        .await
        .map_err(|_| ChaosError::TimedOut("stopping the workload"))?;
    let played = tokio::task::block_in_place(|| driver.finish())?;

    let allowed = options.unavailable_allowed;
    let deadline = Instant::now()
        + if allowed {
            UNAVAILABLE_DRAIN_WAIT
        } else {
            DRAIN_WAIT
        };
    workload.drain(&recorder, deadline, allowed).await?;
    workload
        .read_final_commits(&recorder, deadline, allowed)
        .await?;
    drop(played);
    let history = recorder.snapshot();
    if let Some(path) = &options.history {
        let json = serde_json::to_vec(&history).expect("a history serializes");
        std::fs::write(path, json).map_err(ChaosError::io(format!("write {}", path.display())))?;
    }
    if let Some(logs) = &options.logs {
        copy_logs(directory.path(), options.brokers, logs)?;
    }
    let verdict = check(&history, LIVENESS_MS_MAX);
    Ok(Report::new(
        options,
        history.faults.len(),
        &verdict,
        LIVENESS_MS_MAX,
    ))
}

/// Copies each broker's log from the run's `directory` into `logs`, created if need be.
fn copy_logs(directory: &Path, brokers: u32, logs: &Path) -> Result<(), ChaosError> {
    std::fs::create_dir_all(logs).map_err(ChaosError::io(format!("create {}", logs.display())))?;
    for index in 0..brokers {
        let name = format!("broker-{index}.log");
        std::fs::copy(directory.join(&name), logs.join(&name))
            .map_err(ChaosError::io(format!("copy {name} to {}", logs.display())))?;
    }
    Ok(())
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
