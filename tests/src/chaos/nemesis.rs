//! Nemeses, the faults a run injects, and the driver that plays a schedule of them.
//!
//! A [`Nemesis`] injects one fault at a [`Site`] (a broker, and the partition whose role
//! chose it) and heals it. The fault mechanisms that need more than signals and the
//! proxy (power loss, disk full) plug in as further implementations: before a broker
//! first starts, a nemesis may change how it starts (another binary, an environment
//! variable, a data directory on a disk of its own). The cluster's faults on the links
//! between brokers are in `links`, and the multi-step scenarios in `sequences`.
//!
//! Before each fault the driver picks the broker by its [`Target`] role at that moment,
//! asking the brokers (see [`Roles`]); with one broker every role is broker 1.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use strata_storage::sim::SplitMix;

use super::cluster::Cluster;
use super::error::ChaosError;
use super::faults::{DiskFull, PowerLoss};
use super::history::{FaultWindow, Recorder};
use super::links::{Isolate, Silence, SlowLinks};
use super::node::NodeSpec;
use super::proxy::Direction;
use super::roles::Roles;
use super::schedule::PlannedFault;
use super::sequences::{DivergentTails, LastReplicaStanding, RollingRestart};

/// Where a fault goes: the cluster, the broker chosen for it, and the partition of the
/// workload's topic whose role chose it.
#[derive(Debug)]
pub struct Site<'a> {
    /// The brokers.
    pub cluster: &'a mut Cluster,
    /// Asks the brokers who leads what.
    pub roles: &'a Roles,
    /// The broker, by index.
    pub node: usize,
    /// The partition.
    pub partition: u32,
    /// Disconnected once the run is being stopped (interrupted).
    stop: &'a Receiver<()>,
}

impl Site<'_> {
    /// Whether the run is being stopped: a fault of many steps ends early, leaving the
    /// brokers to be killed.
    pub fn stopping(&self) -> bool {
        matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
    }
}

/// One kind of fault. Driven from one thread, outside the async runtime: its calls
/// may block (a restarted broker is waited for, the brokers are asked who leads).
pub trait Nemesis: Send + std::fmt::Debug {
    /// The name in reports, as given to `--nemesis`.
    fn name(&self) -> &'static str;

    /// Adapts how a broker starts, before its first start (called once per broker, in
    /// order): e.g. a broker binary that records its fsyncs (with
    /// [`sibling_binary`](super::node::sibling_binary)), or a data directory on a small
    /// disk the nemesis mounted and keeps until it is dropped. The data directory is
    /// created after this.
    ///
    /// # Errors
    /// If the broker's start cannot be prepared.
    fn prepare(&mut self, _spec: &mut NodeSpec) -> Result<(), ChaosError> {
        Ok(())
    }

    /// Injects the fault at `site`; returns what it did, for the history, when that is
    /// more than its name says (a multi-step fault names its steps' outcomes).
    ///
    /// # Errors
    /// If the fault cannot be injected.
    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError>;

    /// Heals the fault injected at `site`: every broker serves clients again afterwards.
    /// Returns what came of it, for the history, when there is more to say.
    ///
    /// # Errors
    /// If it cannot be healed (a broker that does not restart).
    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError>;
}

/// The nemeses `--nemesis` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NemesisKind {
    /// `kill -9` a broker, then restart it on the same data.
    Kill,
    /// `SIGSTOP` a broker, then `SIGCONT` it.
    Pause,
    /// Kill a broker and drop everything it had not fsynced, then restart it.
    PowerLoss,
    /// Fill the disk under a broker's data directory, then free it.
    DiskFull,
    /// Cut the clients off a broker at its proxy, then heal the cut.
    Partition,
    /// Discard a broker's replies at its proxy while its clients' requests still reach
    /// it, then heal by resetting the connections.
    OneWayCut,
    /// Cut a broker off from the other brokers, both ways (clients still reach it).
    Isolate,
    /// Discard what a broker sends to the other brokers; it still hears them.
    Silence,
    /// Delay every chunk on a broker's links to the other brokers.
    Slow,
    /// Kill the followers one by one until the ISR is the leader alone, cut the
    /// leader's power, then bring the followers back before it.
    LastReplicaStanding,
    /// Cut the leader off, and once another leads, cut that one off and let the first
    /// back: two leader changes, each leaving an uncommitted tail behind.
    DivergentTails,
    /// Restart every broker in turn with `SIGTERM`, each once the one before is back in
    /// sync.
    RollingRestart,
}

impl NemesisKind {
    /// The name `--nemesis` takes.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::PowerLoss => "power-loss",
            NemesisKind::DiskFull => "disk-full",
            NemesisKind::Partition => "partition",
            NemesisKind::OneWayCut => "one-way-cut",
            NemesisKind::Isolate => "isolate",
            NemesisKind::Silence => "silence",
            NemesisKind::Slow => "slow",
            NemesisKind::LastReplicaStanding => "last-replica-standing",
            NemesisKind::DivergentTails => "divergent-tails",
            NemesisKind::RollingRestart => "rolling-restart",
        }
    }

    /// Whether it needs more than one broker.
    pub fn needs_cluster(self) -> bool {
        matches!(
            self,
            NemesisKind::Isolate
                | NemesisKind::Silence
                | NemesisKind::Slow
                | NemesisKind::LastReplicaStanding
                | NemesisKind::DivergentTails
                | NemesisKind::RollingRestart
        )
    }

    /// The nemesis of this kind.
    pub fn build(self) -> Box<dyn Nemesis> {
        match self {
            NemesisKind::Kill => Box::new(Kill),
            NemesisKind::Pause => Box::new(Pause),
            NemesisKind::Partition => Box::new(ClientCut),
            NemesisKind::OneWayCut => Box::new(RepliesLost),
            NemesisKind::PowerLoss => Box::<PowerLoss>::default(),
            NemesisKind::DiskFull => Box::<DiskFull>::default(),
            NemesisKind::Isolate => Box::new(Isolate),
            NemesisKind::Silence => Box::new(Silence),
            NemesisKind::Slow => Box::new(SlowLinks),
            NemesisKind::LastReplicaStanding => Box::<LastReplicaStanding>::default(),
            NemesisKind::DivergentTails => Box::<DivergentTails>::default(),
            NemesisKind::RollingRestart => Box::new(RollingRestart),
        }
    }
}

/// Which broker a fault goes to, chosen at the fault's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The leader of a partition of the workload's topic.
    Leader,
    /// A follower (an in-sync one if any) of a partition of the workload's topic.
    Follower,
    /// The controller: the metadata quorum's leader.
    Controller,
    /// A broker drawn from the seed.
    Random,
}

impl Target {
    /// The name `--target` takes.
    pub fn name(self) -> &'static str {
        match self {
            Target::Leader => "leader",
            Target::Follower => "follower",
            Target::Controller => "controller",
            Target::Random => "random",
        }
    }
}

/// `kill -9`, and a restart on the same data as the heal.
#[derive(Debug)]
struct Kill;

impl Nemesis for Kill {
    fn name(&self) -> &'static str {
        "kill"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.node(site.node).kill_9();
        Ok(None)
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.restart(site.node)?;
        Ok(None)
    }
}

/// `SIGSTOP`, healed by `SIGCONT`: a broker that holds its connections and answers
/// nothing, then wakes up as if no time had passed.
#[derive(Debug)]
struct Pause;

impl Nemesis for Pause {
    fn name(&self) -> &'static str {
        "pause"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.node(site.node).pause();
        Ok(None)
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.node(site.node).resume();
        Ok(None)
    }
}

/// A client↔broker cut at the broker's proxy: open connections dropped, new ones
/// closed at once, until healed.
#[derive(Debug)]
struct ClientCut;

impl Nemesis for ClientCut {
    fn name(&self) -> &'static str {
        "partition"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.proxy(site.node).cut();
        Ok(None)
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster.proxy(site.node).heal();
        Ok(None)
    }
}

/// A one-way cut at the broker's proxy: requests reach the broker and are carried out,
/// but every reply is discarded, so clients see only timeouts. Healed by resetting the
/// connections, as the network would once the reply stream is broken: a client's
/// retries then meet what the broker already did.
#[derive(Debug)]
struct RepliesLost;

impl Nemesis for RepliesLost {
    fn name(&self) -> &'static str {
        "one-way-cut"
    }

    fn inject(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        site.cluster
            .proxy(site.node)
            .cut_one_way(Direction::ToClient);
        Ok(None)
    }

    fn heal(&mut self, site: &mut Site<'_>) -> Result<Option<String>, ChaosError> {
        let proxy = site.cluster.proxy(site.node);
        proxy.heal();
        proxy.drop_connections();
        Ok(None)
    }
}

/// The cluster and the nemesis, handed back when a schedule ends. Dropping it kills the
/// brokers first, then drops the nemesis (which may undo what `prepare` set up, such
/// as a mount under a data directory).
#[derive(Debug)]
pub struct Played {
    /// The cluster, healed.
    pub cluster: Cluster,
    /// The nemesis.
    pub nemesis: Box<dyn Nemesis>,
}

/// How the driver picks each fault's broker.
#[derive(Debug, Clone)]
pub struct Targeting {
    /// The role.
    pub target: Target,
    /// Asks the brokers who plays it.
    pub roles: Roles,
    /// The seed partitions (and random brokers) are drawn from.
    pub seed: u64,
}

/// Plays a schedule of faults on its own thread, recording each fault window. Owns the
/// cluster and the nemesis while it plays and hands them back at the end; dropped early
/// (the run was interrupted), it stops at once and the cluster's brokers are killed.
#[derive(Debug)]
pub struct Driver {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<(Played, Result<(), ChaosError>)>>,
}

impl Driver {
    /// Starts playing `faults` (offsets from the recorder's start), each at the broker
    /// `targeting` picks when it comes.
    pub fn start(
        mut cluster: Cluster,
        mut nemesis: Box<dyn Nemesis>,
        faults: Vec<PlannedFault>,
        recorder: Recorder,
        targeting: Targeting,
    ) -> Self {
        let (stop, stopped) = channel();
        let thread = std::thread::spawn(move || {
            let outcome = play(
                &mut cluster,
                nemesis.as_mut(),
                &faults,
                &recorder,
                &targeting,
                &stopped,
            );
            (Played { cluster, nemesis }, outcome)
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
    /// Whether every fault has been played (or playing failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the schedule to end (blocking); returns the cluster, healed, and the
    /// nemesis.
    ///
    /// # Errors
    /// The error that stopped the schedule; the cluster is dropped with it.
    pub fn finish(mut self) -> Result<Played, ChaosError> {
        let (played, outcome) = self.join().expect("joined once");
        outcome.map(|()| played)
    }

    fn join(&mut self) -> Option<(Played, Result<(), ChaosError>)> {
        let thread = self.thread.take()?;
        Some(thread.join().expect("the nemesis thread does not panic"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop = None;
        self.join();
    }
}

/// Injects and heals each fault at its time; returns early when `stopped` says so.
fn play(
    cluster: &mut Cluster,
    nemesis: &mut dyn Nemesis,
    faults: &[PlannedFault],
    recorder: &Recorder,
    targeting: &Targeting,
    stopped: &Receiver<()>,
) -> Result<(), ChaosError> {
    let mut rng = SplitMix(targeting.seed ^ TARGET_STREAM);
    for fault in faults {
        if !wait_until(recorder.instant_at(fault.inject_at), stopped) {
            return Ok(());
        }
        let (node, partition, chosen) = choose(cluster, targeting, &mut rng);
        let injected_us = recorder.now_us();
        let mut site = Site {
            cluster: &mut *cluster,
            roles: &targeting.roles,
            node,
            partition,
            stop: stopped,
        };
        let injected = nemesis.inject(&mut site)?;
        let stop_now = !wait_until(recorder.instant_at(fault.heal_at), stopped);
        let healed = nemesis.heal(&mut site)?;
        let healed_us = recorder.now_us();
        let target = [Some(chosen), injected, healed]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        recorder.with(|history| {
            history.faults.push(FaultWindow {
                what: nemesis.name().to_owned(),
                target,
                injected_us,
                healed_us,
            });
        });
        if stop_now {
            return Ok(());
        }
    }
    Ok(())
}

/// Keeps the draws of targets apart from the schedule's, which uses the seed as is.
const TARGET_STREAM: u64 = 0x7a52_6f6c_6573_2121;

/// The broker and partition of the next fault, and how they were chosen. Draws the
/// same numbers whatever the brokers answer, so the seed alone fixes the draws.
fn choose(cluster: &Cluster, targeting: &Targeting, rng: &mut SplitMix) -> (usize, u32, String) {
    let roles = &targeting.roles;
    let partition = u32::try_from(rng.next_u64() % u64::from(roles.partitions().max(1)))
        .expect("below a u32 count");
    let random =
        usize::try_from(rng.next_u64() % cluster.len().max(1) as u64).expect("below a usize count");
    if cluster.len() == 1 {
        return (0, partition, "broker 1".to_owned());
    }
    let answering = cluster.answering();
    let topic = roles.topic();
    let found = match targeting.target {
        Target::Leader => roles
            .view(partition, &answering)
            .and_then(|view| view.leader)
            .map(|node| (node, format!("leader of {topic}/{partition}"))),
        Target::Follower => roles
            .view(partition, &answering)
            .and_then(|view| view.follower())
            .map(|node| (node, format!("follower of {topic}/{partition}"))),
        Target::Controller => roles
            .controller(&answering)
            .map(|node| (node, "the controller".to_owned())),
        Target::Random => Some((random, "drawn from the seed".to_owned())),
    };
    let (node, why) = found.unwrap_or_else(|| {
        let role = targeting.target.name();
        (random, format!("drawn from the seed: no {role} found"))
    });
    (node, partition, format!("broker {}, {why}", node + 1))
}

/// Waits until `deadline`; false if told to stop first.
fn wait_until(deadline: Instant, stopped: &Receiver<()>) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    matches!(stopped.recv_timeout(left), Err(RecvTimeoutError::Timeout))
}
