//! Partition replication, the Kafka way: each partition has one leader, and followers
//! pull its batches with the replica-fetch API on the cluster listener.
//!
//! - `engine`: the rules, with no I/O (high watermark, in-sync set, divergence).
//! - `follower`: one fetcher task per leader broker.
//! - `isr`: the leader asking the controller to change a partition's in-sync set.
//! - `throttle`: the limit on the bytes a leader sends to replicas a reassignment adds.
//! - The leader's side of a fetch is `handler::replica_fetch` and
//!   `Partition::serve_replica`; the partition's role and high watermark are in
//!   `partition::replica`.
//!
//! The metadata says who leads and who is in sync; `cluster::reconcile` hands this
//! module the partitions this broker follows, by leader ([`Replication::follow`]).

pub mod engine;
mod follower;
mod isr;
pub mod throttle;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::partition::Partition;

/// A partition this broker follows.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The topic.
    pub topic: String,
    /// The topic's id in the metadata.
    pub topic_id: u64,
    /// The local log.
    pub partition: Arc<Partition>,
    /// The leader epoch it follows.
    pub leader_epoch: u32,
}

/// One fetcher task and what it fetches.
#[derive(Debug)]
struct Fetcher {
    partitions: watch::Sender<Vec<Followed>>,
    stop: CancellationToken,
}

/// The broker's replication tasks. Thread-safe; one per broker.
#[derive(Debug)]
pub struct Replication {
    runtime: tokio::runtime::Handle,
    fetchers: Mutex<BTreeMap<u32, Fetcher>>,
    /// Wakes the in-sync set check before its next tick.
    isr_check: Arc<Notify>,
    /// The bytes this broker sends, as a leader, to replicas a reassignment adds.
    pub throttle: throttle::Throttle,
    stop: CancellationToken,
}

impl Replication {
    /// The tasks, stopped by `stop`, with a reassignment throttle of
    /// `throttle_bytes_per_second` (0: none). Call within the runtime.
    pub fn new(stop: CancellationToken, throttle_bytes_per_second: u64) -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            fetchers: Mutex::default(),
            isr_check: Arc::new(Notify::new()),
            throttle: throttle::Throttle::new(throttle_bytes_per_second, std::time::Instant::now()),
            stop,
        }
    }

    /// Starts the in-sync set checks of the partitions `broker` leads.
    pub fn start(broker: &Arc<Broker>) {
        let replication = &broker.replication;
        replication.runtime.spawn(isr::run(
            broker.clone(),
            replication.isr_check.clone(),
            replication.stop.clone(),
        ));
    }

    /// Stops leading every partition this broker leads, at a shutdown once the
    /// controller was told (or could not be): `acks = all` waits and offset commits still
    /// waiting fail at once with a retriable error, instead of holding the shutdown until
    /// their timeouts, since the followers have gone to fetch from the new leaders.
    pub fn step_down(broker: &Broker) {
        let partitions = broker
            .topics
            .all()
            .iter()
            .flat_map(|topic| topic.local().cloned().collect::<Vec<_>>())
            .chain(broker.groups.partitions().iter().cloned())
            .collect::<Vec<_>>();
        for partition in partitions {
            if let crate::partition::Role::Leader(leading) = partition.role() {
                partition.follow(None, leading.epoch);
            }
        }
    }

    /// A follower reached the log end while out of sync: check the in-sync sets now.
    pub fn isr_may_change(&self) {
        self.isr_check.notify_one();
    }

    /// Fetches `by_leader`'s partitions from each leader, and nothing else: fetchers of
    /// leaders with no partition left stop.
    pub fn follow(&self, broker: &Arc<Broker>, by_leader: BTreeMap<u32, Vec<Followed>>) {
        let mut fetchers = self.fetchers.lock().unwrap_or_else(PoisonError::into_inner);
        fetchers.retain(|leader, fetcher| {
            let keep = by_leader.contains_key(leader);
            if !keep {
                fetcher.stop.cancel();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            match fetchers.get(&leader) {
                Some(fetcher) => {
                    fetcher.partitions.send_if_modified(|current| {
                        let same = current.len() == partitions.len()
                            && current.iter().zip(&partitions).all(|(a, b)| {
                                Arc::ptr_eq(&a.partition, &b.partition)
                                    && a.leader_epoch == b.leader_epoch
                            });
                        if !same {
                            *current = partitions;
                        }
                        !same
                    });
                }
                None => {
                    let (sender, receiver) = watch::channel(partitions);
                    let stop = self.stop.child_token();
                    self.runtime.spawn(follower::run(
                        broker.clone(),
                        leader,
                        receiver,
                        stop.clone(),
                    ));
                    fetchers.insert(
                        leader,
                        Fetcher {
                            partitions: sender,
                            stop,
                        },
                    );
                }
            }
        }
    }
}
