//! Nemeses, the faults a run injects, and the driver that plays a schedule of them.
//!
//! A [`Nemesis`] injects one fault into a broker and heals it. The fault mechanisms
//! that need more than signals and the proxy (power loss, disk full) plug in as further
//! implementations: before a broker first starts, a nemesis may change how it starts
//! (another binary, an environment variable, a data directory on a disk of its own).

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use super::cluster::Cluster;
use super::error::ChaosError;
use super::faults::{DiskFull, PowerLoss};
use super::history::{FaultWindow, Recorder};
use super::node::NodeSpec;
use super::proxy::Direction;
use super::schedule::PlannedFault;

/// One kind of fault. Driven from one thread, outside the async runtime: its calls
/// may block (a restarted broker is waited for).
pub trait Nemesis: Send + std::fmt::Debug {
    /// The name in reports, as given to `--nemesis`.
    fn name(&self) -> &'static str;

    /// Adapts how a broker starts, before its first start: e.g. a broker binary that
    /// records its fsyncs (with [`sibling_binary`](super::node::sibling_binary)), or a
    /// data directory on a small disk the nemesis mounted and keeps until it is dropped.
    /// The data directory is created after this.
    ///
    /// # Errors
    /// If the broker's start cannot be prepared.
    fn prepare(&mut self, _spec: &mut NodeSpec) -> Result<(), ChaosError> {
        Ok(())
    }

    /// Injects the fault into broker `node`.
    ///
    /// # Errors
    /// If the fault cannot be injected.
    fn inject(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError>;

    /// Heals the fault injected into broker `node`: it serves clients again afterwards.
    ///
    /// # Errors
    /// If it cannot be healed (a broker that does not restart).
    fn heal(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError>;
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
        }
    }

    /// The nemesis of this kind.
    ///
    pub fn build(self) -> Box<dyn Nemesis> {
        match self {
            NemesisKind::Kill => Box::new(Kill),
            NemesisKind::Pause => Box::new(Pause),
            NemesisKind::Partition => Box::new(ClientCut),
            NemesisKind::OneWayCut => Box::new(RepliesLost),
            NemesisKind::PowerLoss => Box::<PowerLoss>::default(),
            NemesisKind::DiskFull => Box::<DiskFull>::default(),
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

    fn inject(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.node(node).kill_9();
        Ok(())
    }

    fn heal(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.restart(node).map(drop)
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

    fn inject(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.node(node).pause();
        Ok(())
    }

    fn heal(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.node(node).resume();
        Ok(())
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

    fn inject(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.proxy(node).cut();
        Ok(())
    }

    fn heal(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.proxy(node).heal();
        Ok(())
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

    fn inject(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        cluster.proxy(node).cut_one_way(Direction::ToClient);
        Ok(())
    }

    fn heal(&mut self, cluster: &mut Cluster, node: usize) -> Result<(), ChaosError> {
        let proxy = cluster.proxy(node);
        proxy.heal();
        proxy.drop_connections();
        Ok(())
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

/// Plays a schedule of faults on its own thread, recording each fault window. Owns the
/// cluster and the nemesis while it plays and hands them back at the end; dropped early
/// (the run was interrupted), it stops at once and the cluster's brokers are killed.
#[derive(Debug)]
pub struct Driver {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<(Played, Result<(), ChaosError>)>>,
}

impl Driver {
    /// Starts playing `faults` (offsets from the recorder's start) on broker 0.
    pub fn start(
        mut cluster: Cluster,
        mut nemesis: Box<dyn Nemesis>,
        faults: Vec<PlannedFault>,
        recorder: Recorder,
    ) -> Self {
        let (stop, stopped) = channel();
        let thread = std::thread::spawn(move || {
            let outcome = play(&mut cluster, nemesis.as_mut(), &faults, &recorder, &stopped);
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
    stopped: &Receiver<()>,
) -> Result<(), ChaosError> {
    for fault in faults {
        if !wait_until(recorder.instant_at(fault.inject_at), stopped) {
            return Ok(());
        }
        let injected_us = recorder.now_us();
        nemesis.inject(cluster, 0)?;
        let stop_now = !wait_until(recorder.instant_at(fault.heal_at), stopped);
        nemesis.heal(cluster, 0)?;
        let healed_us = recorder.now_us();
        recorder.with(|history| {
            history.faults.push(FaultWindow {
                what: nemesis.name().to_owned(),
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

/// Waits until `deadline`; false if told to stop first.
fn wait_until(deadline: Instant, stopped: &Receiver<()>) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    matches!(stopped.recv_timeout(left), Err(RecvTimeoutError::Timeout))
}
