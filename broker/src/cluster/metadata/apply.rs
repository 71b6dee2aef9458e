//! How each [`Command`] changes an [`Image`]: deterministic, from the image alone.
//!
//! # Leadership
//! A partition is led only by an alive member of its ISR. The rules that keep it so
//! follow KRaft:
//! - A broker that is fenced or shuts down leaves every ISR it is in, unless it is the
//!   last member (KRaft keeps the last one, so the partition waits for it rather than
//!   losing data), and gives up every leadership; a leaderless partition elects the first
//!   alive ISR member in replica order, if any. With one replica per partition, the
//!   partition goes offline until the broker is back.
//! - A broker that registers or is unfenced leads every leaderless partition whose ISR
//!   holds it. A re-registering broker first gives up what its previous incarnation led,
//!   as if fenced: the new process must not inherit the old one's leader epoch, so a
//!   partition it takes back gets a new one.
//!
//! Every change to a partition adds one to its partition epoch; every new leader adds one
//! to its leader epoch. Neither ever goes down.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::limits::topic_collision_key;
use strata_protocol::messages::ConfigEntry;

use super::{BrokerRecord, BrokerState, Command, Image, Outcome, PartitionRecord, TopicRecord};
use crate::cluster::placement;

/// The most partitions a topic may have, whatever the broker's config says: a bound on
/// what one command may cost every broker to apply (and to apply again at each replay),
/// should the cluster listener take a command no broker's checks passed.
const TOPIC_PARTITIONS_MAX: u32 = 1_000_000;

fn too_many_partitions(name: &str, partitions: u32) -> Outcome {
    Outcome::refused(
        ErrorCode::InvalidPartitions,
        format!(
            "topic '{name}' would have {partitions} partitions, above the {TOPIC_PARTITIONS_MAX} any topic may have"
        ),
    )
}
use crate::config::TopicConfig;

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
            } => {
                if self.log_id.is_empty() {
                    self.log_id.clone_from(log_id);
                }
                self.register_broker(*id, address, cluster_address)
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

    fn register_broker(&mut self, id: u32, address: &str, cluster_address: &str) -> Outcome {
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
        self.take_leaderships(id);
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
                self.take_leaderships(id);
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

    /// Takes broker `id`, no longer alive, out of every ISR it is not the last member of
    /// and out of every leadership, electing other alive ISR members where there are any.
    fn resign(&mut self, id: u32) {
        let brokers = &self.brokers;
        let is_alive = |broker: u32| {
            broker != id
                && brokers
                    .get(&broker)
                    .is_some_and(|broker| broker.state == BrokerState::Alive)
        };
        let leaves_isr =
            |partition: &PartitionRecord| partition.isr.len() > 1 && partition.isr.contains(&id);
        let leads = |partition: &PartitionRecord| partition.leader == Some(id);
        change_partitions(
            &mut self.topics,
            |partition| leaves_isr(partition) || leads(partition),
            |partition| {
                if leaves_isr(partition) {
                    partition.isr.retain(|&member| member != id);
                }
                if leads(partition) {
                    partition.leader = None;
                    elect(partition, is_alive);
                }
                partition.partition_epoch += 1;
            },
        );
    }

    /// Makes broker `id`, now alive, the leader of every leaderless partition whose ISR
    /// holds it.
    fn take_leaderships(&mut self, id: u32) {
        change_partitions(
            &mut self.topics,
            |partition| partition.leader.is_none() && partition.isr.contains(&id),
            |partition| {
                partition.leader = Some(id);
                partition.leader_epoch += 1;
                partition.partition_epoch += 1;
            },
        );
    }

    fn create_topic(
        &mut self,
        name: &str,
        config: &TopicConfig,
        partitions: u32,
        replication_factor: u16,
    ) -> Outcome {
        if self.topics.contains_key(name) {
            return Outcome::refused(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            );
        }
        let key = topic_collision_key(name);
        if let Some(existing) = self.topics.keys().find(|t| topic_collision_key(t) == key) {
            return Outcome::refused(
                ErrorCode::InvalidTopic,
                format!(
                    "topic '{name}' collides with existing topic '{existing}': names that differ only in case or in '.' versus '_' share a directory on some file systems and a metric name"
                ),
            );
        }
        if partitions > TOPIC_PARTITIONS_MAX {
            return too_many_partitions(name, partitions);
        }
        if partitions == 0 {
            return Outcome::refused(
                ErrorCode::InvalidPartitions,
                format!("topic '{name}' needs at least one partition"),
            );
        }
        let alive = match self.alive_for(replication_factor) {
            Ok(alive) => alive,
            Err(refused) => return refused,
        };
        let replica_lists = placement::assign(
            &alive,
            &BTreeMap::new(),
            &self.leader_counts(),
            partitions,
            replication_factor,
        );
        let topic = TopicRecord {
            id: self.applied,
            config: config.clone(),
            partitions: replica_lists
                .into_iter()
                .map(PartitionRecord::new)
                .collect(),
        };
        self.topics.insert(name.to_owned(), Arc::new(topic));
        Outcome::Done
    }

    fn create_partitions(&mut self, name: &str, total: u32) -> Outcome {
        let Some(topic) = self.topics.get(name) else {
            return unknown_topic(name);
        };
        let current = topic.partitions.len();
        if total > TOPIC_PARTITIONS_MAX {
            return too_many_partitions(name, total);
        }
        let added = match usize::try_from(total)
            .ok()
            .and_then(|t| t.checked_sub(current))
        {
            Some(added) if added > 0 => u32::try_from(added).expect("added is at most total"),
            _ => {
                return Outcome::refused(
                    ErrorCode::InvalidPartitions,
                    format!(
                        "topic '{name}' has {current} partitions; the new count {total} must be larger"
                    ),
                );
            }
        };
        let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
        // The factor came from a u16 at creation.
        let replication_factor = u16::try_from(replication_factor).unwrap_or(u16::MAX);
        let topic_leaders =
            placement::leader_counts(topic.partitions.iter().map(|p| &p.replicas[..]));
        let alive = match self.alive_for(replication_factor) {
            Ok(alive) => alive,
            Err(refused) => return refused,
        };
        let replica_lists = placement::assign(
            &alive,
            &topic_leaders,
            &self.leader_counts(),
            added,
            replication_factor,
        );
        let topic = self.topics.get_mut(name).expect("looked up above");
        let partitions = &mut Arc::make_mut(topic).partitions;
        partitions.extend(replica_lists.into_iter().map(PartitionRecord::new));
        Outcome::Done
    }

    /// The alive brokers, if there are at least `replication_factor` (and it is not 0).
    fn alive_for(&self, replication_factor: u16) -> Result<Vec<u32>, Outcome> {
        let alive = self.alive_brokers();
        if alive.is_empty() {
            // Brokers fenced or restarting: a wait, not a wrong request.
            return Err(Outcome::refused(
                ErrorCode::LeaderNotAvailable,
                "no broker is alive to place partitions on; retry once brokers have registered",
            ));
        }
        if replication_factor == 0 || usize::from(replication_factor) > alive.len() {
            return Err(Outcome::refused(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "replication factor {replication_factor} needs between 1 and {} alive brokers",
                    alive.len()
                ),
            ));
        }
        Ok(alive)
    }

    /// How many partitions each broker is the preferred leader of, over every topic.
    fn leader_counts(&self) -> BTreeMap<u32, usize> {
        placement::leader_counts(
            self.topics
                .values()
                .flat_map(|topic| &topic.partitions)
                .map(|partition| &partition.replicas[..]),
        )
    }

    fn delete_topic(&mut self, name: &str, id: Option<u64>) -> Outcome {
        match self.topics.get(name) {
            Some(topic) if id.is_none_or(|id| id == topic.id) => {
                self.topics.remove(name);
                Outcome::Done
            }
            Some(_) => Outcome::refused(
                ErrorCode::UnknownTopicOrPartition,
                format!(
                    "topic '{name}' was deleted and created again since this delete was asked for"
                ),
            ),
            None => unknown_topic(name),
        }
    }

    fn alter_topic_config(&mut self, name: &str, entries: &[(String, String)]) -> Outcome {
        let Some(topic) = self.topics.get_mut(name) else {
            return unknown_topic(name);
        };
        let entries: Vec<ConfigEntry> = entries
            .iter()
            .map(|(key, value)| ConfigEntry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect();
        match topic.config.with_overrides(&entries) {
            Ok(config) => {
                Arc::make_mut(topic).config = config;
                Outcome::Done
            }
            Err(error) => Outcome::refused(ErrorCode::InvalidConfig, error.to_string()),
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

/// Makes the first alive ISR member, in replica order, the leader of a leaderless
/// partition.
fn elect(partition: &mut PartitionRecord, is_alive: impl Fn(u32) -> bool) {
    let isr = &partition.isr;
    partition.leader = partition
        .replicas
        .iter()
        .copied()
        .find(|&replica| isr.contains(&replica) && is_alive(replica));
    if partition.leader.is_some() {
        partition.leader_epoch += 1;
    }
}

/// Runs `change` on every partition that `affects` picks, copying a shared topic only
/// when it has such a partition.
fn change_partitions(
    topics: &mut BTreeMap<String, Arc<TopicRecord>>,
    affects: impl Fn(&PartitionRecord) -> bool,
    mut change: impl FnMut(&mut PartitionRecord),
) {
    for topic in topics.values_mut() {
        if !topic.partitions.iter().any(&affects) {
            continue;
        }
        for partition in &mut Arc::make_mut(topic).partitions {
            if affects(partition) {
                change(partition);
            }
        }
    }
}
