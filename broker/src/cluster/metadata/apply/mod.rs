//! How each [`Command`] changes an [`Image`]: deterministic, from the image alone (and a
//! topic's config in it, for its min ISR).
//!
//! # Layout
//! - this file: dispatch, the broker commands and producer ids.
//! - `topics`: creates, growth, deletes and config changes.
//! - `partitions`: leadership, ISR and ELR: what brokers coming and going do to them,
//!   the ISR changes leaders ask for, and the elections operators ask for.
//! - `reassign`: moving a partition to other replicas (KIP-455).
//!
//! Every change to a partition adds one to its partition epoch; every new leader adds one
//! to its leader epoch. Neither ever goes down.

mod partitions;
mod reassign;
mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_protocol::ErrorCode;

use self::partitions::IsrChange;
use super::{BrokerRecord, BrokerState, Command, Image, Outcome, PartitionRecord, TopicRecord};

impl Image {
    /// Applies the committed `command` at log `index` and says how it went.
    ///
    /// Deterministic: the same commands in the same order give the same image on every
    /// broker. Placement happens here, from the image's alive brokers, so it is never
    /// stale. A refused command changes nothing but `applied`.
    ///
    /// # Panics
    /// If `index` does not follow the last applied one: the Raft adapter applies each
    /// entry once, in order.
    pub fn apply(&mut self, index: u64, command: &Command) -> Outcome {
        self.skip(index);
        match command {
            Command::RegisterBroker {
                id,
                address,
                cluster_address,
                log_id,
                unclean,
            } => {
                if self.log_id.is_empty() {
                    self.log_id.clone_from(log_id);
                }
                self.register_broker(*id, address, cluster_address, *unclean)
            }
            Command::FenceBroker { id, incarnation } => {
                self.leave(*id, *incarnation, BrokerState::Fenced)
            }
            Command::ShutdownBroker { id, incarnation } => {
                self.leave(*id, *incarnation, BrokerState::ShuttingDown)
            }
            Command::UnfenceBroker { id, incarnation } => self.unfence(*id, *incarnation),
            Command::CreateTopic {
                name,
                config,
                partitions,
                replication_factor,
            } => self.create_topic(name, config, *partitions, *replication_factor),
            Command::DeleteTopic { name, id } => self.delete_topic(name, *id),
            Command::CreatePartitions { name, partitions } => {
                self.create_partitions(name, *partitions)
            }
            Command::AlterTopicConfig { name, entries } => self.alter_topic_config(name, entries),
            Command::AlterPartition {
                topic,
                topic_id,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
                incarnations,
            } => self.alter_partition(
                topic,
                *topic_id,
                *partition,
                &IsrChange {
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    isr,
                    incarnations,
                },
            ),
            Command::ElectLeader {
                topic,
                topic_id,
                partition,
                unclean,
            } => self.elect_leader(topic, *topic_id, *partition, *unclean),
            Command::ReassignPartition {
                topic,
                topic_id,
                partition,
                replicas,
            } => self.reassign_partition(topic, *topic_id, *partition, replicas),
            Command::AllocateProducerIds {
                broker,
                count,
                at_least,
            } => self.allocate_producer_ids(*broker, *count, *at_least),
        }
    }

    /// Records that the entry at `index` carried no command (a blank or a membership
    /// change).
    ///
    /// # Panics
    /// If `index` does not follow the last applied one. The first index may be 0:
    /// openraft puts a new cluster's first membership there.
    pub fn skip(&mut self, index: u64) {
        assert!(
            index > self.applied || index == 0 && self.applied == 0,
            "metadata log index {index} applied after {}",
            self.applied
        );
        self.applied = index;
    }

    fn register_broker(
        &mut self,
        id: u32,
        address: &str,
        cluster_address: &str,
        unclean: bool,
    ) -> Outcome {
        let incarnation = match self.brokers.get(&id).map(|previous| previous.incarnation) {
            Some(previous) => {
                self.resign(id);
                previous + 1
            }
            None => 1,
        };
        let broker = BrokerRecord {
            id,
            incarnation,
            address: address.to_owned(),
            cluster_address: cluster_address.to_owned(),
            state: BrokerState::Alive,
        };
        self.brokers.insert(id, broker);
        if unclean {
            self.forget_unflushed(id);
        }
        self.elect_leaderless();
        Outcome::Registered { incarnation }
    }

    /// Fences the broker or marks it shutting down, at its current incarnation.
    fn leave(&mut self, id: u32, incarnation: u64, state: BrokerState) -> Outcome {
        let broker = match self.current_broker(id, incarnation) {
            Ok(broker) => broker,
            Err(refused) => return refused,
        };
        broker.state = state;
        self.resign(id);
        Outcome::Done
    }

    fn unfence(&mut self, id: u32, incarnation: u64) -> Outcome {
        let broker = match self.current_broker(id, incarnation) {
            Ok(broker) => broker,
            Err(refused) => return refused,
        };
        match broker.state {
            BrokerState::Alive => Outcome::Done,
            BrokerState::ShuttingDown => Outcome::refused(
                ErrorCode::BrokerShuttingDown,
                format!("broker {id} is shutting down; it is alive again once it re-registers"),
            ),
            BrokerState::Fenced => {
                broker.state = BrokerState::Alive;
                self.elect_leaderless();
                Outcome::Done
            }
        }
    }

    /// The broker, if `incarnation` is its current one.
    fn current_broker(&mut self, id: u32, incarnation: u64) -> Result<&mut BrokerRecord, Outcome> {
        match self.brokers.get_mut(&id) {
            None => Err(Outcome::refused(
                ErrorCode::InvalidRequest,
                format!("broker {id} is not registered"),
            )),
            Some(broker) if broker.incarnation != incarnation => Err(Outcome::refused(
                ErrorCode::InvalidRequest,
                format!(
                    "broker {id} incarnation {incarnation} is stale: the current one is {}",
                    broker.incarnation
                ),
            )),
            Some(broker) => Ok(broker),
        }
    }

    fn allocate_producer_ids(&mut self, broker: u32, count: i64, at_least: i64) -> Outcome {
        if count <= 0 {
            return Outcome::refused(
                ErrorCode::InvalidRequest,
                format!("broker {broker} asked for {count} producer ids"),
            );
        }
        let start = self.next_producer_id.max(at_least);
        let Some(end) = start.checked_add(count) else {
            return Outcome::refused(
                ErrorCode::LimitExceeded,
                format!("no block of {count} producer ids is left above {start}"),
            );
        };
        self.next_producer_id = end;
        Outcome::ProducerIds { start, end }
    }
}

fn unknown_topic(name: &str) -> Outcome {
    Outcome::refused(
        ErrorCode::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}

/// Runs `change` on every partition that `affects` picks, with the partition's effective
/// min ISR, copying a shared topic only when it has such a partition.
fn change_partitions(
    topics: &mut BTreeMap<String, Arc<TopicRecord>>,
    affects: impl Fn(&PartitionRecord) -> bool,
    mut change: impl FnMut(usize, &mut PartitionRecord),
) {
    for topic in topics.values_mut() {
        if !topic.partitions.iter().any(&affects) {
            continue;
        }
        let topic = Arc::make_mut(topic);
        for partition in &mut topic.partitions {
            if affects(partition) {
                let min_isr = partition.min_isr(&topic.config);
                change(min_isr, partition);
            }
        }
    }
}
