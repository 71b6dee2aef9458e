//! Removing the partitions of a topic that the metadata moved off this broker (a
//! reassignment finished without it), while the topic and its other partitions stay.
//!
//! The topic's metadata file stops listing the partitions before their directories are
//! deleted: a broker that dies in between finds directories no topic hosts, which
//! startup removes as orphans (`orphans`).

use std::sync::Arc;

use super::{AdminError, Topic, TopicRecord, TopicRegistry, unknown_topic};
use crate::partition::Partition;

impl TopicRegistry {
    /// Closes and deletes every local partition of topic `name` whose index is not in
    /// `hosted`, with its data; the others are untouched.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, or a storage error (a partition whose files could not
    /// be removed is no longer served, and startup removes what is left of it).
    pub fn remove_local(&self, name: &str, hosted: &[u32]) -> Result<(), AdminError> {
        let _admin = self.admin.lock().expect("admin lock");
        let topic = self.get(name).ok_or_else(|| unknown_topic(name))?;
        let removed: Vec<Arc<Partition>> = topic
            .local()
            .filter(|partition| !hosted.contains(&partition.index()))
            .cloned()
            .collect();
        if removed.is_empty() {
            return Ok(());
        }
        let mut partitions = topic.partitions.clone();
        for partition in &removed {
            partitions[partition.index() as usize] = None;
        }
        let kept: Vec<u32> = partitions
            .iter()
            .flatten()
            .map(|partition| partition.index())
            .collect();
        self.write_record(
            name,
            &TopicRecord {
                id: topic.id,
                log_id: topic.log_id.clone(),
                partition_count: partitions.len() as u32,
                hosted: Some(kept),
                config: topic.config.clone(),
            },
        )?;
        self.replace(Topic {
            name: name.to_owned(),
            id: topic.id,
            log_id: topic.log_id.clone(),
            config: topic.config.clone(),
            partitions,
            traffic: topic.traffic.clone(),
        });
        for partition in removed {
            // A removed leader's `acks = all` waiters fail at once (retriably) rather than
            // wait for followers that now fetch from the new leader.
            partition.follow(None, partition.leader_epoch());
            partition.delete()?;
            tracing::info!(
                topic = name,
                partition = partition.index(),
                "deleted the local copy of a partition moved off this broker"
            );
        }
        Ok(())
    }
}
