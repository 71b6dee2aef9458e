//! How the topic commands change an [`Image`]: creates and growth (placed on the alive
//! brokers by `placement`), deletes and config changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::limits::topic_collision_key;
use strata_protocol::messages::ConfigEntry;

use super::unknown_topic;
use crate::cluster::metadata::{Image, Outcome, PartitionRecord, TopicRecord};
use crate::cluster::placement;
use crate::config::TopicConfig;

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

impl Image {
    pub(super) fn create_topic(
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

    pub(super) fn create_partitions(&mut self, name: &str, total: u32) -> Outcome {
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
        // A partition being moved counts its target's replicas.
        let replication_factor = topic
            .partitions
            .first()
            .map_or(1, |p| p.replicas.len() - p.removing.len());
        // The factor came from a u16 at creation (or a move's target, at most the brokers).
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

    pub(super) fn delete_topic(&mut self, name: &str, id: Option<u64>) -> Outcome {
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

    pub(super) fn alter_topic_config(
        &mut self,
        name: &str,
        entries: &[(String, String)],
    ) -> Outcome {
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
                let topic = Arc::make_mut(topic);
                topic.config = config;
                // Once the ISR is at a lowered min ISR, the high watermark moves on with
                // the ISR alone: the eligible replicas stop holding every record below it.
                for partition in &mut topic.partitions {
                    if !partition.elr.is_empty()
                        && partition.isr.len() >= partition.min_isr(&topic.config)
                    {
                        partition.elr.clear();
                        partition.partition_epoch += 1;
                    }
                }
                Outcome::Done
            }
            Err(error) => Outcome::refused(ErrorCode::InvalidConfig, error.to_string()),
        }
    }
}
