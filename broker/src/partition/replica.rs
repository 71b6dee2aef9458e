//! A partition's place in replication: whether this broker leads it (and what it knows
//! of its followers) or follows another broker, and the high watermark that follows.
//!
//! - **Alone**: not placed by the metadata (the offsets log, or a partition the
//!   reconcile has not reached yet). It serves alone, as a single node's partitions
//!   always did: its high watermark is what its own durability policy covers.
//! - **Leader**: the high watermark is the engine's, over the in-sync set the metadata
//!   committed (`replication::engine::high_watermark`). Followers' fetches move it.
//! - **Follower**: it takes the leader's high watermark, bounded by its own log end.
//!
//! Every role or in-sync change pokes the high-watermark channel, so `acks = all`
//! waiters and parked fetches look again at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::replication::engine::{self, Coverage, Progress};

/// Raises a high watermark to `offset` if that is higher. Appends of concurrent requests
/// finish out of order, and durable offsets arrive from the flusher: neither may pull
/// the high watermark back below records already read.
pub(super) fn raise(high_watermark: &watch::Sender<u64>, offset: u64) {
    high_watermark.send_if_modified(|current| {
        let advanced = offset > *current;
        *current = (*current).max(offset);
        advanced
    });
}

/// What this broker leads a partition as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leading {
    /// This broker's node id.
    pub me: u32,
    /// The leader epoch the metadata gave it.
    pub epoch: u32,
    /// The epoch its batches are stamped with: `epoch`, unless the log already holds a
    /// newer one (its metadata log was wiped and started its epochs again).
    pub stamp: u32,
    /// The partition epoch of the metadata this follows.
    pub partition_epoch: u32,
    /// Every replica, preferred leader first.
    pub replicas: Vec<u32>,
    /// The in-sync set the metadata committed.
    pub isr: Vec<u32>,
    /// Followers this leader asked the controller to add, not committed yet: they count
    /// toward the high watermark already (Kafka's "maximal ISR").
    pub joining: Vec<u32>,
    /// The effective `min_insync_replicas`.
    pub min_isr: usize,
    /// What each follower's fetches said.
    pub followers: BTreeMap<u32, Progress>,
    /// The log end offset when this broker became leader at this epoch: its high
    /// watermark must reach it before it answers the latest offset (KIP-207).
    pub epoch_start: u64,
}

/// A partition's role on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not placed by the metadata: serves alone.
    Alone,
    /// This broker leads it.
    Leader(Leading),
    /// Another broker leads it (`None`: no broker does right now).
    Follower {
        /// The leader's node id.
        leader: Option<u32>,
        /// The leader epoch this follows.
        epoch: u32,
    },
}

/// The leadership the metadata gives a partition, for [`Replica::lead`].
#[derive(Debug, Clone)]
pub struct Leadership {
    /// This broker's node id.
    pub me: u32,
    /// The leader epoch.
    pub epoch: u32,
    /// The partition epoch.
    pub partition_epoch: u32,
    /// Every replica.
    pub replicas: Vec<u32>,
    /// The in-sync set.
    pub isr: Vec<u32>,
    /// The effective minimum in-sync set.
    pub min_isr: usize,
}

/// The replication state a partition's log callbacks share with it.
#[derive(Debug)]
pub(super) struct Replica {
    role: Mutex<Role>,
    /// Offsets below this are visible to consumers and acknowledged to `acks = all`.
    pub(super) high_watermark: watch::Sender<u64>,
    /// The log end offset, for parked replica fetches.
    pub(super) log_end: watch::Sender<u64>,
    /// The log's durable offset, as the flusher last reported it.
    durable: AtomicU64,
    /// 0: [`Coverage::LogEnd`], 1: [`Coverage::Durable`].
    coverage: AtomicU64,
    /// The epoch batches were stamped with before this broker led the partition.
    base_epoch: AtomicU64,
}

fn coverage_code(coverage: Coverage) -> u64 {
    match coverage {
        Coverage::LogEnd => 0,
        Coverage::Durable => 1,
    }
}

impl Replica {
    pub(super) fn new(log_end: u64, durable: u64, coverage: Coverage, base_epoch: u32) -> Self {
        let high_watermark = match coverage {
            Coverage::LogEnd => log_end,
            Coverage::Durable => durable,
        };
        Self {
            role: Mutex::new(Role::Alone),
            high_watermark: watch::channel(high_watermark).0,
            log_end: watch::channel(log_end).0,
            durable: AtomicU64::new(durable),
            coverage: AtomicU64::new(coverage_code(coverage)),
            base_epoch: AtomicU64::new(u64::from(base_epoch)),
        }
    }

    pub(super) fn role(&self) -> MutexGuard<'_, Role> {
        self.role.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn coverage(&self) -> Coverage {
        match self.coverage.load(Ordering::Acquire) {
            0 => Coverage::LogEnd,
            _ => Coverage::Durable,
        }
    }

    pub(super) fn set_coverage(&self, coverage: Coverage) {
        self.coverage
            .store(coverage_code(coverage), Ordering::Release);
        self.refresh();
    }

    /// What this broker's own log covers.
    fn covered(&self) -> u64 {
        match self.coverage() {
            Coverage::LogEnd => *self.log_end.borrow(),
            Coverage::Durable => self.durable.load(Ordering::Acquire),
        }
    }

    /// The leader epoch the partition is led or followed at (as the metadata says).
    pub(super) fn leader_epoch(&self) -> u32 {
        match &*self.role() {
            Role::Leader(leading) => leading.epoch,
            Role::Follower { epoch, .. } => *epoch,
            Role::Alone => u32::try_from(self.base_epoch.load(Ordering::Acquire)).unwrap_or(0),
        }
    }

    /// The epoch a partition alone stamps its batches with: its log's newest.
    pub(super) fn base_epoch(&self) -> u32 {
        u32::try_from(self.base_epoch.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// The epoch a batch appended now is stamped with.
    pub(super) fn stamp_epoch(&self) -> u32 {
        match &*self.role() {
            Role::Leader(leading) => leading.stamp,
            Role::Follower { epoch, .. } => *epoch,
            Role::Alone => u32::try_from(self.base_epoch.load(Ordering::Acquire)).unwrap_or(0),
        }
    }

    /// Records the log end offset after an append (or a truncation, `lowered`).
    pub(super) fn on_log_end(&self, log_end: u64, lowered: bool) {
        if lowered {
            // A truncation takes back what was durable above the new end too.
            self.durable.fetch_min(log_end, Ordering::AcqRel);
            self.log_end.send_replace(log_end);
            self.high_watermark
                .send_if_modified(|hw| std::mem::replace(hw, (*hw).min(log_end)) != *hw);
        } else {
            raise(&self.log_end, log_end);
        }
        self.refresh();
    }

    /// Records the log's durable offset, from the flusher.
    pub(super) fn on_durable(&self, durable: u64) {
        self.durable.fetch_max(durable, Ordering::AcqRel);
        self.refresh();
    }

    /// Recomputes the high watermark from the role and what the replicas cover.
    pub(super) fn refresh(&self) {
        let covered = self.covered();
        let target = match &*self.role() {
            Role::Alone => Some(covered),
            Role::Leader(leading) => {
                let mut counted = leading.isr.clone();
                counted.extend(&leading.joining);
                engine::high_watermark(
                    leading.me,
                    covered,
                    &counted,
                    &leading.followers,
                    self.coverage(),
                    leading.min_isr,
                )
            }
            Role::Follower { .. } => None,
        };
        if let Some(target) = target {
            raise(&self.high_watermark, target);
        }
    }

    /// Wakes everything waiting on the high watermark, to look at the role again.
    pub(super) fn poke(&self) {
        self.high_watermark.send_modify(|_| ());
        self.log_end.send_modify(|_| ());
    }

    /// Leads the partition as `leadership` says: at a new epoch, with every follower
    /// starting over (given `replica_lag_max_ms` from `now_ms` to fetch); at the same
    /// epoch, taking the in-sync set and replicas the metadata committed since. Batches
    /// are stamped with the epoch, or with `log_epoch` if that is newer.
    pub(super) fn lead(
        &self,
        leadership: Leadership,
        (log_epoch, log_start): (Option<u32>, u64),
        now_ms: u64,
    ) {
        {
            let mut role = self.role();
            let log_end = *self.log_end.borrow();
            if *role == Role::Alone && leadership.replicas.len() > 1 {
                self.forget_high_watermark(log_start);
            }
            match &mut *role {
                Role::Leader(leading) if leading.epoch == leadership.epoch => {
                    leading.partition_epoch = leadership.partition_epoch;
                    leading
                        .joining
                        .retain(|member| !leadership.isr.contains(member));
                    leading.isr = leadership.isr;
                    leading.min_isr = leadership.min_isr;
                    leading
                        .followers
                        .retain(|id, _| leadership.replicas.contains(id));
                    for &replica in &leadership.replicas {
                        if replica != leadership.me {
                            leading
                                .followers
                                .entry(replica)
                                .or_insert_with(|| Progress::new(0, now_ms));
                        }
                    }
                    leading.replicas = leadership.replicas;
                }
                role => {
                    // A partition with other replicas may hold records the previous
                    // leader never committed; one alone commits all it has.
                    let epoch_start = if leadership.replicas.len() > 1 {
                        log_end
                    } else {
                        0
                    };
                    let followers = leadership
                        .replicas
                        .iter()
                        .filter(|&&replica| replica != leadership.me)
                        .map(|&replica| (replica, Progress::new(0, now_ms)))
                        .collect();
                    *role = Role::Leader(Leading {
                        me: leadership.me,
                        epoch: leadership.epoch,
                        stamp: leadership.epoch.max(log_epoch.unwrap_or(0)),
                        partition_epoch: leadership.partition_epoch,
                        replicas: leadership.replicas,
                        isr: leadership.isr,
                        joining: Vec::new(),
                        min_isr: leadership.min_isr,
                        followers,
                        epoch_start,
                    });
                }
            }
        }
        self.refresh();
        self.poke();
    }

    /// Follows `leader` (or no one) at `epoch`.
    pub(super) fn follow(&self, leader: Option<u32>, epoch: u32, log_start: u64) {
        let following = Role::Follower { leader, epoch };
        {
            let mut role = self.role();
            if *role == following {
                return;
            }
            if *role == Role::Alone {
                self.forget_high_watermark(log_start);
            }
            *role = following;
        }
        self.poke();
    }

    /// Drops the high watermark a replica of several opened with (its log end or durable
    /// offset: its tail may never have been committed) down to its log start; its leader,
    /// or as a leader its followers, raise it again to what is committed.
    fn forget_high_watermark(&self, log_start: u64) {
        self.high_watermark.send_replace(log_start);
    }
}
