//! Keeps this broker's logs in step with the metadata: after each applied change, the
//! partitions placed on this broker exist with their topic's config, and those of
//! deleted topics are gone, with the group offsets committed for them.
//!
//! Local topics carry the id of the metadata entry that created them (the log index of
//! the create), so a topic deleted and created again under the same name while this
//! broker was down is never mistaken for the old one. A topic from before the cluster
//! existed (a data directory of an older single node) has no id; it is left alone until
//! [`import`] enters it into the metadata and adopts it.
//!
//! The work is file I/O, so it runs on the blocking pool; a failure (a full disk) is
//! logged and retried on the next change or after [`RETRY`].

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::metadata::{Command, Image, TopicRecord};
use crate::broker::Broker;
use crate::group::store::OFFSETS_LOG;
use crate::topics::AdminError;

/// How soon a failed step is tried again when nothing else changes.
const RETRY: Duration = Duration::from_secs(1);

/// Follows the image until `stop` fires, reporting each reconciled index to the cluster.
pub async fn follow(broker: Arc<Broker>, stop: CancellationToken) {
    let cluster = broker.cluster.clone();
    let mut images = cluster.subscribe();
    let mut previous = Arc::new(Image::default());
    loop {
        let image = images.borrow_and_update().clone();
        let step = (broker.clone(), previous.clone(), image.clone());
        let complete = tokio::task::spawn_blocking(move || {
            let (broker, previous, image) = step;
            reconcile(&broker, &previous, &image)
        })
        .await
        .unwrap_or_else(|error| {
            tracing::error!(%error, "reconciling the metadata panicked");
            false
        });
        cluster.reconciled.send_replace(image.applied);
        previous = image;
        tokio::select! {
            () = stop.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RETRY), if !complete => {}
        }
    }
}

/// Brings the local logs in step with `image`; `previous` is the image last reconciled.
/// Returns false if a step failed and should be retried.
fn reconcile(broker: &Broker, previous: &Image, image: &Image) -> bool {
    let me = broker.cluster.node_id();
    let mut complete = true;
    for (name, record) in &previous.topics {
        let replaced = image.topics.get(name).is_none_or(|now| now.id != record.id);
        if replaced && let Err(error) = broker.groups.delete_topic_offsets(name) {
            tracing::error!(topic = name, %error, "cannot delete the group offsets of a deleted topic");
        }
    }
    for topic in broker.topics.all() {
        let outcome = match (topic.id, image.topics.get(&topic.name)) {
            (None, Some(record)) if record.partitions.len() == topic.partitions.len() => {
                broker.topics.adopt(&topic.name, record.id)
            }
            (None, _) => Ok(()),
            (Some(id), Some(record)) if id == record.id => Ok(()),
            (Some(_), _) => broker.topics.delete(&topic.name),
        };
        complete &= logged(&topic.name, "remove", outcome);
    }
    for (name, record) in &image.topics {
        if name == OFFSETS_LOG {
            continue;
        }
        let outcome = bring_in_step(broker, me, name, record);
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
    me: u32,
    name: &str,
    record: &TopicRecord,
) -> Result<(), AdminError> {
    let hosted: Vec<u32> = (0..record.partitions.len() as u32)
        .filter(|&index| record.partitions[index as usize].replicas.contains(&me))
        .collect();
    let count = record.partitions.len() as u32;
    match broker.topics.get(name) {
        None if hosted.is_empty() => Ok(()),
        None => broker
            .topics
            .create_local(name, record.id, count, &hosted, &record.config),
        Some(local) if local.id != Some(record.id) => Ok(()),
        Some(local) => {
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
        if topic.id.is_some() || broker.cluster.image().topics.contains_key(&topic.name) {
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

/// Creates the offsets log in the metadata, placed over the brokers alive now. A race
/// with another broker creating it is no error.
///
/// # Errors
/// The quorum did not take the change.
pub async fn create_offsets_log(broker: &Broker) -> Result<(), AdminError> {
    let command = Command::CreateTopic {
        name: OFFSETS_LOG.to_owned(),
        config: broker.config.topic_defaults.clone(),
        partitions: broker.config.group_offsets_partitions,
        replication_factor: 1,
    };
    match broker.cluster.change(&command).await {
        Err(error) if error.code != strata_protocol::ErrorCode::TopicAlreadyExists => Err(error),
        _ => Ok(()),
    }
}
