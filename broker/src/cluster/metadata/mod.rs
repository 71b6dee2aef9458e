//! The cluster metadata: the records the Raft quorum replicates (brokers, topics and their
//! partitions, the producer-id counter), the commands that change them, and the state
//! machine that applies the commands.
//!
//! Every broker applies the same committed commands in the same order to its own
//! [`Image`], so all brokers hold the same image at the same applied index. Applying
//! therefore reads no clock, no randomness, no config and no disk: validation, placement
//! and leader election depend on the image alone. A command that was valid when it was
//! proposed but is not when it is applied (two creates racing for one name, a fence of a
//! broker that has restarted since) is [`Outcome::Refused`], identically everywhere.
//!
//! The rules follow Kafka's KRaft controller: a broker registers with a new incarnation on
//! every start, is fenced when its session lapses, and leads only while it is alive; see
//! `apply` for each rule and docs/cluster.md for the reasons.
//!
//! # Layout
//! - this file: the records, commands, outcomes, and queries on an image.
//! - `apply`: how each command changes an image.
//! - `state_machine`: [`MetadataStateMachine`], the image behind the Raft adapter, and
//!   the byte encoding of commands, outcomes and snapshots.

mod apply;
mod state_machine;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strata_protocol::ErrorCode;

use crate::config::TopicConfig;

pub use self::state_machine::{
    MetadataStateMachine, decode_command, decode_outcome, encode_command, encode_outcome,
};

/// Where a registered broker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BrokerState {
    /// Registered and heartbeating: it may lead partitions.
    Alive,
    /// Its session lapsed: it leads nothing until a heartbeat unfences it.
    Fenced,
    /// It announced a shutdown: it leads nothing, and is fenced once it goes silent.
    ShuttingDown,
}

impl BrokerState {
    /// The state as `cluster status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            BrokerState::Alive => "alive",
            BrokerState::Fenced => "fenced",
            BrokerState::ShuttingDown => "shutting_down",
        }
    }
}

/// A registered broker. Brokers are never removed: a broker that stops is fenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    /// The node id.
    pub id: u32,
    /// 1 on the first registration, one more on each later one: tells a restarted
    /// process from the one before it.
    pub incarnation: u64,
    /// The advertised client address, `host:port`.
    pub address: String,
    /// The cluster listener's address, `host:port`.
    pub cluster_address: String,
    /// Alive, fenced or shutting down.
    pub state: BrokerState,
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The brokers holding the partition; the first is the preferred leader. During a
    /// reassignment, the target's replicas in its order, then those being removed.
    pub replicas: Vec<u32>,
    /// The broker that serves it, if any: an alive member of `isr`.
    pub leader: Option<u32>,
    /// One more each time a broker becomes leader.
    pub leader_epoch: u32,
    /// One more on every change to the record (leader, ISR, ELR).
    pub partition_epoch: u32,
    /// The in-sync replicas, in the order the leader gave them: never empty, a subset of
    /// `replicas`.
    pub isr: Vec<u32>,
    /// Eligible leader replicas (KIP-966), in replica order: replicas that left the ISR
    /// while it was below the effective min ISR, so hold every record below the high
    /// watermark. Disjoint from `isr`; empty whenever the ISR is at least the min ISR.
    pub elr: Vec<u32>,
    /// The last ISR member restarted having lost unflushed writes (an unclean
    /// registration) and no eligible replica was left: no clean election picks it, and
    /// the partition waits, leaderless, for an unclean election. Absent from images
    /// written before it existed.
    #[serde(default)]
    pub last_isr_unclean: bool,
    /// Replicas a reassignment is adding (KIP-455): in `replicas`, not yet all in the ISR.
    /// Empty when no reassignment is in progress; absent from older images.
    #[serde(default)]
    pub adding: Vec<u32>,
    /// Replicas a reassignment removes once every added replica is in the ISR: in
    /// `replicas`, after the target's. Empty when no reassignment is in progress.
    #[serde(default)]
    pub removing: Vec<u32>,
}

impl PartitionRecord {
    /// A new partition on `replicas`, led by the first, with every replica in sync.
    fn new(replicas: Vec<u32>) -> Self {
        Self {
            leader: replicas.first().copied(),
            leader_epoch: 0,
            partition_epoch: 0,
            isr: replicas.clone(),
            elr: Vec::new(),
            last_isr_unclean: false,
            adding: Vec::new(),
            removing: Vec::new(),
            replicas,
        }
    }

    /// Whether a reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the partition ends with: `replicas` without `removing`, in order (the
    /// target's order while a reassignment is in progress).
    pub fn target(&self) -> Vec<u32> {
        self.replicas
            .iter()
            .copied()
            .filter(|replica| !self.removing.contains(replica))
            .collect()
    }

    /// The replicas the partition had before its reassignment: `replicas` without
    /// `adding`.
    pub fn original(&self) -> Vec<u32> {
        self.replicas
            .iter()
            .copied()
            .filter(|replica| !self.adding.contains(replica))
            .collect()
    }

    /// Whether the partition has no leader, so it serves nothing.
    pub fn is_offline(&self) -> bool {
        self.leader.is_none()
    }

    /// Whether fewer replicas are in sync than there are replicas (while a reassignment is
    /// in progress, than the target has, as in Kafka's KIP-455: a move is not a lack).
    pub fn is_under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len() - self.removing.len()
    }

    /// The effective min ISR under the topic's `config`: `min_insync_replicas`, but no
    /// more than the replicas (a partition of one replica needs one; during a
    /// reassignment, the target's replicas, so that moving a partition of one replica
    /// does not stop its high watermark) and at least 1. An
    /// `acks = all` write needs this many in-sync replicas, and the high watermark does
    /// not advance while the ISR is smaller.
    pub fn min_isr(&self, config: &TopicConfig) -> usize {
        usize::from(config.min_insync_replicas)
            .min(self.replicas.len() - self.removing.len())
            .max(1)
    }
}

/// A topic: its config and partitions (at least one, by index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The log index of the create: a topic deleted and created again under its name is
    /// another topic, and a broker that missed both tells its old copy from the new.
    pub id: u64,
    /// The effective config.
    pub config: TopicConfig,
    /// The partitions, by index.
    pub partitions: Vec<PartitionRecord>,
}

/// The whole cluster metadata at one applied index. Cloning is cheap: topics are shared
/// `Arc`s, copied only when a command changes them. Not shared mutably: each version is
/// published as an `Arc<Image>` and never changed after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The log index of the last command applied (0 when none).
    pub applied: u64,
    /// Every broker that ever registered, by id.
    pub brokers: BTreeMap<u32, BrokerRecord>,
    /// Every topic, by name.
    pub topics: BTreeMap<String, Arc<TopicRecord>>,
    /// The first producer id not yet handed to a broker.
    pub next_producer_id: i64,
    /// Names this metadata log: set by the first registration, never changed. A broker's
    /// local copy of a topic records it with the topic's id, so a copy made under another
    /// log (one since wiped or re-formed, whose ids may repeat) is never taken for, or
    /// deleted as, a topic of this one.
    pub log_id: String,
}

/// A change to the metadata, as proposed to the quorum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A broker starts: a new incarnation, alive, at these addresses.
    RegisterBroker {
        /// The node id.
        id: u32,
        /// The advertised client address.
        address: String,
        /// The cluster listener's address.
        cluster_address: String,
        /// A fresh name for the log, taken if the log has none yet.
        log_id: String,
        /// The broker may have lost writes it had not flushed (it stopped without a clean
        /// shutdown, under a durability policy that does not fsync every batch): it
        /// leaves every ELR and is not elected as the last member of an ISR.
        #[serde(default)]
        unclean: bool,
    },
    /// The controller saw no heartbeat for a session timeout.
    FenceBroker {
        /// The node id.
        id: u32,
        /// The incarnation whose session lapsed.
        incarnation: u64,
    },
    /// A fenced broker heartbeats again.
    UnfenceBroker {
        /// The node id.
        id: u32,
        /// The incarnation that heartbeats.
        incarnation: u64,
    },
    /// A broker is stopping and gives up its leaderships first.
    ShutdownBroker {
        /// The node id.
        id: u32,
        /// The incarnation that stops.
        incarnation: u64,
    },
    /// Creates a topic, placing its partitions on the alive brokers.
    CreateTopic {
        /// The name, already checked against the naming rules.
        name: String,
        /// The effective config.
        config: TopicConfig,
        /// How many partitions.
        partitions: u32,
        /// Replicas per partition.
        replication_factor: u16,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// The name.
        name: String,
        /// The topic's id when the delete was asked for: a topic created again under the
        /// name since (a retried delete landing late) is not deleted. `None` for any.
        id: Option<u64>,
    },
    /// Grows a topic to `partitions` in total.
    CreatePartitions {
        /// The name.
        name: String,
        /// The new total.
        partitions: u32,
    },
    /// Sets some of a topic's config keys; the others keep their values. The change is
    /// applied to the config as it is when the command applies, so two alters of
    /// different keys never undo each other.
    AlterTopicConfig {
        /// The name.
        name: String,
        /// The keys to set and their values.
        entries: Vec<(String, String)>,
    },
    /// A partition's leader changes its ISR (a follower fell behind or caught up).
    AlterPartition {
        /// The topic's name.
        topic: String,
        /// The topic's id, so a change meant for a deleted topic's namesake is refused.
        topic_id: u64,
        /// The partition index.
        partition: u32,
        /// The broker asking: it must be the current leader.
        leader: u32,
        /// The leader epoch the leader holds: it must be the current one.
        leader_epoch: u32,
        /// The partition epoch the change is based on: it must be the current one.
        partition_epoch: u32,
        /// The new ISR: distinct replicas, the leader among them.
        isr: Vec<u32>,
        /// The incarnation each member it adds fetched at (KIP-903): a member whose
        /// broker has registered again since is refused, its log may be behind. Absent
        /// from older logs, where only aliveness is checked.
        #[serde(default)]
        incarnations: Vec<(u32, u64)>,
    },
    /// An operator (or a client) asks for a leader election on one partition.
    ElectLeader {
        /// The topic's name.
        topic: String,
        /// The topic's id.
        topic_id: u64,
        /// The partition index.
        partition: u32,
        /// `false`: the preferred replica takes over if it is alive and in sync. `true`:
        /// a partition without a leader elects any alive replica, at the risk of losing
        /// acknowledged records that only the missing replicas hold.
        unclean: bool,
    },
    /// An operator moves a partition to other replicas (KIP-455): the new ones are added,
    /// catch up and join the ISR, then the ones left out are removed.
    ReassignPartition {
        /// The topic's name.
        topic: String,
        /// The topic's id.
        topic_id: u64,
        /// The partition index.
        partition: u32,
        /// The target replicas, preferred leader first.
        replicas: Vec<u32>,
    },
    /// Hands a block of `count` producer ids to a broker, none below `at_least`.
    AllocateProducerIds {
        /// The broker asking.
        broker: u32,
        /// How many ids.
        count: i64,
        /// The lowest id the block may start at.
        at_least: i64,
    },
}

/// What applying a command gave, returned to its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied.
    Done,
    /// The broker registered with this incarnation.
    Registered {
        /// The new incarnation.
        incarnation: u64,
    },
    /// The block `start..end` is the broker's.
    ProducerIds {
        /// The first id of the block.
        start: i64,
        /// One past the last id of the block.
        end: i64,
    },
    /// The command was valid when proposed but not when applied (a race), or not valid
    /// at all; the image is unchanged but for `applied`.
    Refused {
        /// An [`ErrorCode`] as `u16`.
        code: u16,
        /// What was wrong, for the client.
        message: String,
    },
}

impl Outcome {
    /// A refusal with `code`.
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Outcome::Refused {
            code: code.code(),
            message: message.into(),
        }
    }

    /// The code and message of a refusal; a code this version does not know is
    /// [`ErrorCode::Unknown`].
    pub fn refusal(&self) -> Option<(ErrorCode, &str)> {
        match self {
            Outcome::Refused { code, message } => Some((
                ErrorCode::from_u16(*code).unwrap_or(ErrorCode::Unknown),
                message,
            )),
            _ => None,
        }
    }
}

/// Why a partition cannot be served, as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaderError {
    /// The topic or the partition does not exist.
    #[error("no such topic or partition")]
    UnknownTopicOrPartition,
    /// The partition exists but has no leader (its replicas are fenced).
    #[error("the partition has no leader")]
    LeaderNotAvailable,
}

impl LeaderError {
    /// The wire code.
    pub fn code(self) -> ErrorCode {
        match self {
            LeaderError::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
            LeaderError::LeaderNotAvailable => ErrorCode::LeaderNotAvailable,
        }
    }
}

/// The rules of a reassignment in progress: `adding` and `removing` distinct replicas,
/// apart, leaving a target; and not complete, since the change that made it complete
/// would have finished it.
fn check_reassignment(
    partition: &PartitionRecord,
    replicas: &BTreeSet<u32>,
    isr: &BTreeSet<u32>,
) -> Result<(), &'static str> {
    let adding: BTreeSet<u32> = partition.adding.iter().copied().collect();
    let removing: BTreeSet<u32> = partition.removing.iter().copied().collect();
    if adding.len() != partition.adding.len()
        || removing.len() != partition.removing.len()
        || !adding.is_subset(replicas)
        || !removing.is_subset(replicas)
        || !adding.is_disjoint(&removing)
        || removing.len() >= replicas.len()
    {
        return Err("has a reassignment adding or removing a replica twice, or no target left");
    }
    if partition.is_reassigning() && adding.is_subset(isr) && !isr.is_subset(&removing) {
        return Err("has a reassignment whose added replicas are all in sync, not finished");
    }
    Ok(())
}

/// Partition counts over the cluster, for `cluster status` and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PartitionCounts {
    /// Every partition of every topic.
    pub total: usize,
    /// Partitions without a leader.
    pub offline: usize,
    /// Partitions with fewer in-sync replicas than replicas.
    pub under_replicated: usize,
}

impl Image {
    /// The ids of the alive brokers, ascending.
    pub fn alive_brokers(&self) -> Vec<u32> {
        self.brokers
            .values()
            .filter(|broker| broker.state == BrokerState::Alive)
            .map(|broker| broker.id)
            .collect()
    }

    /// A registered broker.
    pub fn broker(&self, id: u32) -> Option<&BrokerRecord> {
        self.brokers.get(&id)
    }

    /// A topic.
    pub fn topic(&self, name: &str) -> Option<&TopicRecord> {
        self.topics.get(name).map(|topic| &**topic)
    }

    /// A partition of a topic.
    pub fn partition(&self, topic: &str, index: u32) -> Option<&PartitionRecord> {
        let index = usize::try_from(index).ok()?;
        self.topic(topic)?.partitions.get(index)
    }

    /// The id of the broker that leads a partition.
    ///
    /// # Errors
    /// [`LeaderError`] when the partition does not exist or has no leader.
    pub fn leader(&self, topic: &str, index: u32) -> Result<u32, LeaderError> {
        self.partition(topic, index)
            .ok_or(LeaderError::UnknownTopicOrPartition)?
            .leader
            .ok_or(LeaderError::LeaderNotAvailable)
    }

    /// Every partition that has a replica on broker `id`, as topic, index and record:
    /// the partitions whose logs that broker keeps.
    pub fn partitions_on(&self, id: u32) -> impl Iterator<Item = (&str, u32, &PartitionRecord)> {
        self.topics.iter().flat_map(move |(name, topic)| {
            (0u32..)
                .zip(&topic.partitions)
                .filter(move |(_, partition)| partition.replicas.contains(&id))
                .map(move |(index, partition)| (name.as_str(), index, partition))
        })
    }

    /// How many partitions there are, and how many are offline or under-replicated.
    pub fn partition_counts(&self) -> PartitionCounts {
        let mut counts = PartitionCounts::default();
        for partition in self.topics.values().flat_map(|topic| &topic.partitions) {
            counts.total += 1;
            counts.offline += usize::from(partition.is_offline());
            counts.under_replicated += usize::from(partition.is_under_replicated());
        }
        counts
    }

    /// Checks what every applied image holds: each broker under its own id with an
    /// incarnation; each topic with partitions; each partition on distinct registered
    /// brokers, with a non-empty ISR among its replicas, led (if at all) by an alive
    /// member of its ISR, with an ELR of other replicas only while the ISR is below the
    /// min ISR. [`MetadataStateMachine::restore`] refuses a snapshot that fails
    /// it, and the tests check it after every command.
    ///
    /// # Errors
    /// The first broken rule, naming the broker or partition.
    pub fn check(&self) -> Result<(), String> {
        for (id, broker) in &self.brokers {
            if broker.id != *id || broker.incarnation == 0 {
                return Err(format!("broker {id} is recorded as {broker:?}"));
            }
        }
        for (name, topic) in &self.topics {
            if topic.partitions.is_empty() {
                return Err(format!("topic '{name}' has no partitions"));
            }
            for (index, partition) in topic.partitions.iter().enumerate() {
                self.check_partition(partition, &topic.config)
                    .map_err(|rule| format!("partition {name}-{index} {rule}: {partition:?}"))?;
            }
        }
        if self.next_producer_id < 0 {
            return Err(format!(
                "next producer id {} is negative",
                self.next_producer_id
            ));
        }
        Ok(())
    }

    fn check_partition(
        &self,
        partition: &PartitionRecord,
        config: &TopicConfig,
    ) -> Result<(), &'static str> {
        let replicas: BTreeSet<u32> = partition.replicas.iter().copied().collect();
        let isr: BTreeSet<u32> = partition.isr.iter().copied().collect();
        let elr: BTreeSet<u32> = partition.elr.iter().copied().collect();
        if replicas.is_empty() || replicas.len() != partition.replicas.len() {
            return Err("has no replicas or one twice");
        }
        if !replicas.iter().all(|id| self.brokers.contains_key(id)) {
            return Err("has a replica on an unregistered broker");
        }
        if isr.is_empty() || isr.len() != partition.isr.len() || !isr.is_subset(&replicas) {
            return Err("has an empty ISR, one member twice, or a member that is no replica");
        }
        if elr.len() != partition.elr.len() || !elr.is_subset(&replicas) || !elr.is_disjoint(&isr) {
            return Err("has an eligible leader twice, one that is no replica, or one in the ISR");
        }
        if !elr.is_empty() && isr.len() >= partition.min_isr(config) {
            return Err("has eligible leaders while its ISR is at the min ISR");
        }
        if partition.last_isr_unclean
            && (partition.leader.is_some() || isr.len() != 1 || !elr.is_empty())
        {
            return Err(
                "waits for an unclean election but has a leader, an ELR, or several in sync",
            );
        }
        check_reassignment(partition, &replicas, &isr)?;
        match partition.leader {
            Some(leader) if !isr.contains(&leader) => Err("is led from outside its ISR"),
            Some(leader)
                if self.broker(leader).map(|broker| broker.state) != Some(BrokerState::Alive) =>
            {
                Err("is led by a broker that is not alive")
            }
            _ => Ok(()),
        }
    }
}
