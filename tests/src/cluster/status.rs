//! `strata cluster status --output json`, read back into types, with the questions
//! tests ask of it.

use serde::Deserialize;

/// `strata cluster status --output json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterStatus {
    /// The controller quorum.
    pub controller: ControllerStatus,
    /// Every registered broker.
    pub brokers: Vec<BrokerStatus>,
    /// Partition counts.
    pub partitions: PartitionStatus,
}

/// The controller quorum in [`ClusterStatus`].
#[derive(Debug, Clone, Deserialize)]
pub struct ControllerStatus {
    /// The leader's id, if one is known.
    pub leader: Option<u32>,
    /// The Raft term.
    pub term: u64,
    /// Every voter.
    pub voters: Vec<VoterStatus>,
}

/// One voter in [`ClusterStatus`].
#[derive(Debug, Clone, Deserialize)]
pub struct VoterStatus {
    /// Its node id.
    pub id: u32,
    /// Log entries it is behind the leader, if known.
    pub lag: Option<u64>,
}

/// One broker in [`ClusterStatus`].
#[derive(Debug, Clone, Deserialize)]
pub struct BrokerStatus {
    /// Its node id.
    pub id: u32,
    /// Its client address.
    pub address: String,
    /// `alive`, `fenced` or `shutting_down`.
    pub state: String,
    /// 1 at its first registration, one more at each restart.
    pub incarnation: u64,
    /// Metadata entries it has yet to apply, if known.
    pub applied_lag: Option<u64>,
}

/// Partition counts in [`ClusterStatus`].
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PartitionStatus {
    /// Every partition.
    pub total: u32,
    /// Partitions without a leader.
    pub offline: u32,
    /// Partitions with fewer in-sync replicas than replicas.
    pub under_replicated: u32,
}

impl ClusterStatus {
    /// Whether a controller leader is known.
    pub fn has_leader(&self) -> bool {
        self.controller.leader.is_some()
    }

    /// Broker `id`, if registered.
    pub fn broker(&self, id: u32) -> Option<&BrokerStatus> {
        self.brokers.iter().find(|broker| broker.id == id)
    }

    /// Whether broker `id` is registered in `state`.
    pub fn is(&self, id: u32, state: &str) -> bool {
        self.broker(id).is_some_and(|broker| broker.state == state)
    }

    /// The ids of the alive brokers.
    pub fn alive(&self) -> Vec<u32> {
        self.brokers
            .iter()
            .filter(|broker| broker.state == "alive")
            .map(|broker| broker.id)
            .collect()
    }

    /// Broker `id`'s incarnation, 0 if it is not registered.
    pub fn incarnation(&self, id: u32) -> u64 {
        self.broker(id).map_or(0, |broker| broker.incarnation)
    }
}
