//! Keeps this broker's logs in step with the metadata: after each applied change, the
//! partitions placed on this broker exist with their topic's config (a replica a
//! reassignment adds here gets its empty log, which its fetcher fills), and those of
//! deleted topics, or moved off this broker, are gone, with the group offsets committed
//! for deleted topics. Every local
//! partition, the offsets log's included, then takes the role the image gives it
//! (leader or follower), and the group coordinator loads the groups of the offsets-log
//! partitions this broker starts leading (`group::leadership`).
//!
//! Local topics carry the id of the metadata entry that created them (the log index of
//! the create) and the name of the metadata log (`Image::log_id`), so a topic deleted and
//! created again under the same name while this broker was down is never mistaken for the
//! old one. A topic this log did not make (one from an older single node's data
//! directory, or from a metadata log since wiped) is never deleted on its word: it is
//! left alone until [`import`] enters it into the metadata and adopts it (a one-node
//! cluster), and a broker with peers refuses to start with one.
//!
//! The work is file I/O, so it runs on the blocking pool; a failure (a full disk) is
//! logged and retried on the next change or after [`RETRY`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::metadata::{Command, Image, TopicRecord};
use crate::broker::Broker;
use crate::config::{Config, TopicConfig};
use crate::group::store::OFFSETS_LOG;
use crate::partition::Leadership;
use crate::replication::Followed;
use strata_protocol::ErrorCode;

use crate::topics::AdminError;

/// The offsets log's replication factor in a cluster of at least that many brokers.
const OFFSETS_LOG_REPLICAS: u16 = 3;

/// How soon a failed step is tried again when nothing else changes.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the image until `stop` fires, reporting each reconciled index to the cluster.
pub async fn follow(broker: Arc<Broker>, stop: CancellationToken) {
    let cluster = broker.cluster.clone();
    let mut images = cluster.subscribe();
    // The first pass compares with no image: the topics deleted while this broker was
    // down are those with committed offsets that the image does not have.
    let mut previous: Option<Arc<Image>> = None;
    loop {
        let image = images.borrow_and_update().clone();
        let step = (broker.clone(), previous.take(), image.clone());
        let complete = tokio::task::spawn_blocking(move || {
            let (broker, previous, image) = step;
            // The offsets log first: the groups of a partition this broker starts leading
            // are loaded before the offsets of deleted topics are looked for.
            let offsets = broker.groups.assign_roles(&image, broker.cluster.node_id());
            let complete = reconcile(&broker, previous.as_deref(), &image, offsets.loaded);
            assign_roles(&broker, &image, offsets.followed);
            complete && offsets.complete
        })
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "reconciling the metadata panicked");
            false
        });
        cluster.reconciled.send_replace(image.applied);
        cluster
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        previous = Some(image);
        tokio::select! {
            () = stop.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY), if !complete => {}
        }
    }
}

/// Brings the local logs in step with `image`; `previous` is the image last reconciled,
/// `None` at the first pass; `loaded` says whether groups were loaded since. Returns false
/// if a step failed and should be retried.
fn reconcile(broker: &Broker, previous: Option<&Image>, image: &Image, loaded: bool) -> bool {
    let mut complete = true;
    let mut gone: BTreeSet<String> = previous
        .map(|previous| {
            previous
                .topics
                .iter()
                .filter(|(name, record)| {
                    image
                        .topics
                        .get(*name)
                        .is_none_or(|now| now.id != record.id)
                })
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    // Groups loaded now (or at startup) may hold offsets of topics deleted while another
    // broker led their partition, or while this one was down. The image is at least as
    // new as their records: a commit names a topic of its coordinator's image, and this
    // broker leads at an epoch the metadata gave after it. A local copy the log has not
    // taken in yet (an older directory's topic, before `import`) keeps its offsets.
    if previous.is_none() || loaded {
        gone.extend(
            broker.groups.committed_topics().into_iter().filter(|name| {
                !image.topics.contains_key(name) && broker.topics.get(name).is_none()
            }),
        );
    }
    for name in gone {
        if let Err(error) = broker.groups.delete_topic_offsets(&name) {
            tracing::error!(topic = name, %error, "cannot delete the group offsets of a deleted topic");
        }
    }
    let single = !broker.cluster.is_multi_node();
    for topic in broker.topics.all() {
        let ours = topic.is_of(&image.log_id);
        let outcome = match image.topics.get(&topic.name) {
            // Entered into the metadata from this copy by `import`.
            Some(record)
                if !ours && single && record.partitions.len() == topic.partitions.len() =>
            {
                broker.topics.adopt(&topic.name, (&image.log_id, record.id))
            }
            // Not made by this log: never deleted on its word.
            _ if !ours => Ok(()),
            Some(record) if topic.id == Some(record.id) => Ok(()),
            _ => broker.topics.delete(&topic.name),
        };
        complete &= logged(&topic.name, "remove", outcome);
    }
    for (name, record) in &image.topics {
        if name == OFFSETS_LOG {
            continue;
        }
        let outcome = bring_in_step(broker, image, name, record);
        broker
            .cluster
            .set_local_failure(name, outcome.as_ref().err().cloned());
        complete &= logged(name, "bring in step", outcome);
    }
    complete
}

/// Creates, grows or reconfigures the local copy of `record`.
fn bring_in_step(
    broker: &Broker,
    image: &Image,
    name: &str,
    record: &TopicRecord,
) -> Result<(), AdminError> {
    let me = broker.cluster.node_id();
    let hosted: Vec<u32> = (0..record.partitions.len() as u32)
        .filter(|&index| record.partitions[index as usize].replicas.contains(&me))
        .collect();
    let count = record.partitions.len() as u32;
    match broker.topics.get(name) {
        None if hosted.is_empty() => Ok(()),
        None => broker.topics.create_local(
            name,
            (&image.log_id, record.id),
            count,
            &hosted,
            &record.config,
        ),
        Some(local) if local.is_of(&image.log_id) && local.id != Some(record.id) => {
            Err(AdminError::new(
                ErrorCode::StorageError,
                format!("the local copy of an earlier topic named '{name}' is not deleted yet"),
            ))
        }
        Some(local) if !local.is_of(&image.log_id) => Ok(()),
        Some(local) => {
            // A partition moved off this broker goes before any comes in, so the file
            // that lists them never names one that is gone.
            if local
                .local()
                .any(|partition| !hosted.contains(&partition.index()))
            {
                broker.topics.remove_local(name, &hosted)?;
            }
            let missing = hosted.iter().any(|&index| {
                local
                    .partitions
                    .get(index as usize)
                    .is_none_or(Option::is_none)
            });
            if missing || local.partitions.len() as u32 != count {
                broker.topics.grow_local(name, count, &hosted)?;
            }
            if local.config != record.config {
                broker.topics.set_config(name, &record.config)?;
            }
            Ok(())
        }
    }
}

/// Gives every local partition of the image's topics the role the image gives it, and
/// hands the partitions this broker follows to replication, by leader, with those of the
/// offsets log (`by_leader`, whose roles the group coordinator gave).
fn assign_roles(broker: &Arc<Broker>, image: &Image, mut by_leader: BTreeMap<u32, Vec<Followed>>) {
    let me = broker.cluster.node_id();
    for (name, record) in &image.topics {
        let Some(local) = broker
            .topics
            .get(name)
            .filter(|local| name != OFFSETS_LOG && local.is_copy_of(&image.log_id, record.id))
        else {
            continue;
        };
        for (placed, partition) in record.partitions.iter().zip(&local.partitions) {
            let Some(partition) = partition.clone().filter(|p| p.check_online().is_ok()) else {
                continue;
            };
            match placed.leader {
                Some(leader) if leader == me => partition.lead(Leadership {
                    me,
                    epoch: placed.leader_epoch,
                    partition_epoch: placed.partition_epoch,
                    replicas: placed.replicas.clone(),
                    isr: placed.isr.clone(),
                    min_isr: placed.min_isr(&record.config),
                }),
                leader => {
                    partition.follow(leader, placed.leader_epoch);
                    if let Some(leader) = leader {
                        by_leader.entry(leader).or_default().push(Followed {
                            topic: name.clone(),
                            topic_id: record.id,
                            partition,
                            leader_epoch: placed.leader_epoch,
                        });
                    }
                }
            }
        }
    }
    broker.replication.follow(broker, by_leader);
}

fn logged(topic: &str, what: &str, outcome: Result<(), AdminError>) -> bool {
    match outcome {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(topic, %error.message, "cannot {what} the local copy of a topic; retrying");
            false
        }
    }
}

/// Enters the topics of an older single node's data directory into the metadata, so
/// that they keep working: each becomes a topic placed on this broker, and the next
/// reconcile adopts the local copy. Only for a broker with no peers; a broker that
/// joins a cluster with such topics refuses to start.
///
/// # Errors
/// The first topic the quorum did not take.
pub async fn import(broker: &Broker) -> Result<(), AdminError> {
    for topic in broker.topics.all() {
        let image = broker.cluster.image();
        if topic.is_of(&image.log_id) || image.topics.contains_key(&topic.name) {
            continue;
        }
        let command = Command::CreateTopic {
            name: topic.name.clone(),
            config: topic.config.clone(),
            partitions: topic.partitions.len() as u32,
            replication_factor: 1,
        };
        broker.cluster.change(&command).await?;
        tracing::info!(
            topic = topic.name,
            "entered a topic of this data directory into the cluster metadata"
        );
    }
    Ok(())
}

/// The create of the offsets log: three replicas (at most the configured brokers, as for
/// a topic's default factor) and `min_insync_replicas` 2 (at most the factor), so an
/// acknowledged commit survives the loss of a broker. A one-node cluster's has one
/// replica.
pub fn offsets_log_create(config: &Config) -> Command {
    let brokers = u16::try_from(config.peers.len().max(1)).unwrap_or(u16::MAX);
    let replication_factor = brokers.min(OFFSETS_LOG_REPLICAS);
    Command::CreateTopic {
        name: OFFSETS_LOG.to_owned(),
        config: TopicConfig {
            min_insync_replicas: replication_factor.min(2),
            ..config.topic_defaults.clone()
        },
        partitions: config.group_offsets_partitions,
        replication_factor,
    }
}

/// Creates the offsets log in the metadata, placed over the brokers alive now. A race
/// with another broker creating it is no error.
///
/// # Errors
/// The quorum did not take the change; `NotCoordinator` (retriable) while fewer brokers
/// are alive than its replication factor.
pub async fn create_offsets_log(broker: &Broker) -> Result<(), AdminError> {
    match broker
        .cluster
        .change(&offsets_log_create(&broker.config))
        .await
    {
        Err(error) if error.code == ErrorCode::InvalidReplicationFactor => Err(AdminError::new(
            ErrorCode::NotCoordinator,
            format!(
                "the offsets log is not created yet: {}; retry once more brokers are alive",
                error.message
            ),
        )),
        Err(error) if error.code != ErrorCode::TopicAlreadyExists => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Peer;

    fn brokers(count: u32) -> Config {
        Config {
            node_id: 1,
            peers: (1..=count)
                .map(|id| Peer {
                    id,
                    address: format!("127.0.0.1:{}", 9500 + id),
                })
                .collect(),
            ..Config::default()
        }
    }

    /// The replication factor and `min_insync_replicas` of the offsets log's create.
    fn replication(config: &Config) -> (u16, u16) {
        match offsets_log_create(config) {
            Command::CreateTopic {
                name,
                config,
                replication_factor,
                ..
            } => {
                assert_eq!(name, OFFSETS_LOG);
                (replication_factor, config.min_insync_replicas)
            }
            other => panic!("not a create: {other:?}"),
        }
    }

    #[test]
    fn the_offsets_log_has_three_replicas_and_min_isr_two_when_the_cluster_allows() {
        assert_eq!(replication(&Config::default()), (1, 1), "one node");
        assert_eq!(replication(&brokers(3)), (3, 2));
        assert_eq!(replication(&brokers(5)), (3, 2));
    }
}
