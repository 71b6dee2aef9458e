//! Which broker serves a partition, from the metadata this broker applied, and what a
//! client is told when it is not this one: `NotLeader` naming the leader, or
//! `LeaderNotAvailable` while the partition has none. Both are retriable; the client
//! refreshes its metadata and retries.

use std::sync::Arc;

use strata_protocol::shown;

use super::Cluster;
use crate::group::store::OFFSETS_LOG;
use crate::partition::{Partition, PartitionError};
use crate::topics::TopicRegistry;

impl Cluster {
    /// The local log of `topic`'s partition `index` if this broker leads it.
    ///
    /// # Errors
    /// `UnknownPartition` if the metadata has no such partition, `NotLeader` if another
    /// broker leads it, `LeaderNotAvailable` if none does or this broker has not opened
    /// its log yet.
    pub fn route(
        &self,
        topics: &TopicRegistry,
        topic: &str,
        index: u32,
    ) -> Result<Arc<Partition>, PartitionError> {
        let unknown = || PartitionError::UnknownPartition {
            topic: shown(topic).to_string(),
            partition: index,
        };
        if topic == OFFSETS_LOG {
            return Err(unknown());
        }
        let image = self.image();
        let (id, record) = image
            .topics
            .get(topic)
            .and_then(|record| Some((record.id, record.partitions.get(index as usize)?)))
            .ok_or_else(unknown)?;
        let not_available = |reason: String| PartitionError::LeaderNotAvailable {
            topic: topic.to_owned(),
            partition: index,
            reason,
        };
        match record.leader {
            Some(_) if !self.is_ready() => Err(not_available(
                "this broker is still joining the cluster".into(),
            )),
            Some(leader) if leader == self.node_id => topics
                .get(topic)
                .filter(|local| local.is_copy_of(&image.log_id, id))
                .and_then(|local| local.partitions.get(index as usize)?.clone())
                .ok_or_else(|| {
                    not_available("this broker leads it but has not opened its log yet".into())
                }),
            Some(leader) => Err(PartitionError::NotLeader {
                topic: topic.to_owned(),
                partition: index,
                leader,
                address: image
                    .brokers
                    .get(&leader)
                    .map_or_else(String::new, |broker| broker.address.clone()),
            }),
            None => Err(not_available(format!(
                "its replicas (brokers {:?}) are fenced or shutting down",
                record.replicas
            ))),
        }
    }
}
