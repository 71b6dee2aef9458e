//! Talking to a group's coordinator: finding it, remembering it, finding it again when it
//! moves, and the group requests that [`Consumer`](crate::Consumer) and
//! [`Admin`](crate::Admin) share (OffsetFetch, OffsetCommit).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use strata_protocol::limits::GROUP_ID_BYTES_MAX;
use strata_protocol::messages::{
    FindCoordinatorRequest, NO_OFFSET, OffsetCommitPartition, OffsetCommitRequest,
    OffsetCommitTopic, OffsetFetchRequest, TopicPartitions,
};
use strata_protocol::{Request, Response};

use crate::backoff::Backoff;
use crate::cluster::{Cluster, unexpected};
use crate::error::{Error, Result};
use crate::record::TopicPartition;

/// Attempts of a retried coordinator request (the first included).
const COORDINATOR_ATTEMPTS_MAX: u32 = 5;

/// One group's coordinator, looked up lazily and forgotten when it stops answering for
/// the group. Thread-safe: the address sits behind a std mutex held only to copy it.
#[derive(Debug)]
pub(crate) struct Coordinator {
    group_id: String,
    address: Mutex<Option<String>>,
    /// The waits between retries.
    backoff: Backoff,
}

impl Coordinator {
    /// A coordinator handle for `group_id`, which is checked to be 1 to 255 bytes.
    pub(crate) fn new(group_id: &str, backoff: Backoff) -> Result<Self> {
        check_group_id(group_id)?;
        Ok(Self {
            group_id: group_id.to_owned(),
            address: Mutex::new(None),
            backoff,
        })
    }

    pub(crate) fn group_id(&self) -> &str {
        &self.group_id
    }

    /// Sends `request` to the coordinator once. An error that suggests the coordinator
    /// moved makes the next call look it up again.
    ///
    /// # Cancel safety
    /// Cancel-safe; the request may or may not reach the broker.
    pub(crate) async fn call_once(&self, cluster: &Cluster, request: &Request) -> Result<Response> {
        let result = async {
            let address = self.address(cluster).await?;
            let connection = cluster.connection(&address).await?;
            connection.call(request, Duration::ZERO).await
        }
        .await;
        if let Err(error) = &result
            && error.needs_coordinator_lookup()
        {
            tracing::debug!(group = self.group_id, %error, "looking the coordinator up again");
            *self.address.lock().expect("coordinator lock") = None;
        }
        result
    }

    /// Sends `request`, retrying retriable errors (a moved or restarting coordinator)
    /// with backoff, up to [`COORDINATOR_ATTEMPTS_MAX`] attempts. Only for requests that
    /// are safe to repeat.
    ///
    /// # Cancel safety
    /// Cancel-safe, as [`call_once`](Self::call_once).
    pub(crate) async fn call(&self, cluster: &Cluster, request: &Request) -> Result<Response> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(cluster, request).await {
                Err(error) if error.is_retriable() && attempt < COORDINATOR_ATTEMPTS_MAX => {
                    let wait = self.backoff.delay(attempt);
                    tracing::debug!(group = self.group_id, %error, ?wait, "retrying");
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }

    async fn address(&self, cluster: &Cluster) -> Result<String> {
        if let Some(address) = self.address.lock().expect("coordinator lock").clone() {
            return Ok(address);
        }
        let request = Request::FindCoordinator(FindCoordinatorRequest {
            group_id: self.group_id.clone(),
        });
        let response = match cluster.call_any(&request).await {
            Ok(Response::FindCoordinator(response)) => response,
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => return Err(self.error(error)),
        };
        let address = format!("{}:{}", response.host, response.port);
        tracing::debug!(
            group = self.group_id,
            address,
            node = response.node_id,
            "coordinator found"
        );
        *self.address.lock().expect("coordinator lock") = Some(address.clone());
        Ok(address)
    }

    /// Rewords a broker error with this group's id.
    pub(crate) fn error(&self, error: Error) -> Error {
        match error {
            Error::Broker { code, message } => Error::group(&self.group_id, code, Some(message)),
            error => error,
        }
    }

    /// The group's committed offsets of `partitions` (every committed partition with
    /// `None`); partitions without a committed offset are left out.
    ///
    /// # Errors
    /// The request's error, or the first partition's error.
    pub(crate) async fn fetch_offsets(
        &self,
        cluster: &Cluster,
        partitions: Option<&BTreeSet<TopicPartition>>,
    ) -> Result<BTreeMap<TopicPartition, u64>> {
        let request = Request::OffsetFetch(OffsetFetchRequest {
            group_id: self.group_id.clone(),
            topics: partitions.map(to_wire),
        });
        let response = match self.call(cluster, &request).await {
            Ok(Response::OffsetFetch(response)) => response,
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => return Err(self.error(error)),
        };
        let mut offsets = BTreeMap::new();
        for topic in response.topics {
            for partition in topic.partitions {
                let tp = TopicPartition::new(&topic.name, partition.partition);
                if !partition.error_code.is_ok() {
                    return Err(
                        self.error(Error::broker(partition.error_code, Some(tp.to_string())))
                    );
                }
                if partition.offset == NO_OFFSET {
                    continue;
                }
                let offset = u64::try_from(partition.offset).map_err(|_| Error::Protocol {
                    address: String::new(),
                    reason: format!("OffsetFetch gave {tp} offset {}", partition.offset),
                })?;
                offsets.insert(tp, offset);
            }
        }
        Ok(offsets)
    }

    /// Commits `offsets` as member `member_id` at `member_epoch` (an administrator
    /// commits with an empty member id and `ADMIN_COMMIT_EPOCH`).
    ///
    /// # Errors
    /// The request's error (a fenced member, a group with members for an administrator),
    /// or the first partition's error (`PartitionNotAssigned`, ...).
    pub(crate) async fn commit(
        &self,
        cluster: &Cluster,
        member_id: &str,
        member_epoch: i32,
        offsets: &BTreeMap<TopicPartition, u64>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut topics: Vec<OffsetCommitTopic> = Vec::new();
        for (tp, offset) in offsets {
            let partition = OffsetCommitPartition {
                partition: tp.partition,
                offset: *offset,
                metadata: None,
            };
            match topics.last_mut() {
                Some(topic) if topic.name == tp.topic => topic.partitions.push(partition),
                _ => topics.push(OffsetCommitTopic {
                    name: tp.topic.clone(),
                    partitions: vec![partition],
                }),
            }
        }
        let request = Request::OffsetCommit(OffsetCommitRequest {
            group_id: self.group_id.clone(),
            member_id: member_id.to_owned(),
            member_epoch,
            topics,
        });
        let response = match self.call(cluster, &request).await {
            Ok(Response::OffsetCommit(response)) => response,
            Ok(other) => return Err(unexpected(&other)),
            Err(error) => return Err(self.error(error)),
        };
        for topic in response.topics {
            for partition in topic.partitions {
                if !partition.error_code.is_ok() {
                    return Err(self.error(Error::broker(
                        partition.error_code,
                        Some(format!(
                            "cannot commit {} for group '{}'",
                            TopicPartition::new(&topic.name, partition.partition),
                            self.group_id
                        )),
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Group ids are 1 to 255 bytes.
pub(crate) fn check_group_id(group_id: &str) -> Result<()> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        return Err(Error::InvalidConfig(format!(
            "group ids are 1 to {GROUP_ID_BYTES_MAX} bytes, not {}",
            group_id.len()
        )));
    }
    Ok(())
}

/// Partitions in wire form: one entry per topic, partitions ascending.
pub(crate) fn to_wire(partitions: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut topics: Vec<TopicPartitions> = Vec::new();
    for tp in partitions {
        match topics.last_mut() {
            Some(topic) if topic.topic == tp.topic => topic.partitions.push(tp.partition),
            _ => topics.push(TopicPartitions {
                topic: tp.topic.clone(),
                partitions: vec![tp.partition],
            }),
        }
    }
    topics
}

/// Partitions from wire form.
pub(crate) fn from_wire(topics: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| TopicPartition::new(&topic.topic, *partition))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_groups_partitions_by_topic_in_order() {
        let partitions: BTreeSet<TopicPartition> = [
            TopicPartition::new("b", 0),
            TopicPartition::new("a", 2),
            TopicPartition::new("a", 0),
        ]
        .into();
        let wire = to_wire(&partitions);
        assert_eq!(wire.len(), 2);
        assert_eq!(
            (wire[0].topic.as_str(), &wire[0].partitions[..]),
            ("a", &[0, 2][..])
        );
        assert_eq!(
            (wire[1].topic.as_str(), &wire[1].partitions[..]),
            ("b", &[0][..])
        );
        assert_eq!(from_wire(&wire), partitions);
        assert!(to_wire(&BTreeSet::new()).is_empty());
    }

    #[test]
    fn group_ids_are_checked() {
        assert!(check_group_id("").is_err());
        assert!(check_group_id(&"g".repeat(256)).is_err());
        assert!(check_group_id(&"g".repeat(255)).is_ok());
    }
}
