//! CreateTopics: creates topics, or with `validate_only` only checks that it could.

use std::sync::Arc;

use strata_protocol::messages::{CreatableTopic, CreateTopicsRequest, CreateTopicsResponse};

use super::Reply;
use super::admin::{check_topics, each_topic, result};
use crate::broker::Broker;
use crate::cluster::metadata::Command;
use crate::topics::AdminError;
use crate::topics::checks::check_create;

pub async fn handle(broker: Arc<Broker>, request: CreateTopicsRequest) -> Reply {
    if let Err(refusal) = check_topics(
        &broker,
        request.topics.iter().map(|topic| topic.name.as_str()),
    ) {
        return refusal;
    }
    let validate_only = request.validate_only;
    let topics = each_topic(request.topics, |topic| {
        let broker = broker.clone();
        async move {
            let outcome = create(&broker, &topic, validate_only).await;
            result(topic.name, outcome)
        }
    })
    .await;
    CreateTopicsResponse { topics }.into()
}

async fn create(
    broker: &Broker,
    topic: &CreatableTopic,
    validate_only: bool,
) -> Result<(), AdminError> {
    let checked = check_create(
        &broker.config,
        &broker.cluster.image(),
        &topic.name,
        topic.partition_count,
        topic.replication_factor,
        &topic.configs,
    )?;
    if validate_only {
        return Ok(());
    }
    let command = Command::CreateTopic {
        name: topic.name.clone(),
        config: checked.config,
        partitions: topic.partition_count,
        replication_factor: checked.replication_factor,
    };
    broker.cluster.change(&command).await?;
    // This broker could not create its partitions (a full disk, a file in the way): the
    // create fails as a whole, and the topic goes again.
    if let Some(error) = broker.cluster.local_failure(&topic.name) {
        let delete = Command::DeleteTopic {
            name: topic.name.clone(),
            id: broker
                .cluster
                .image()
                .topics
                .get(&topic.name)
                .map(|record| record.id),
        };
        if let Err(undo) = broker.cluster.change(&delete).await {
            tracing::error!(topic = %topic.name, %undo.message, "cannot delete a topic whose create failed");
        }
        return Err(error);
    }
    Ok(())
}
