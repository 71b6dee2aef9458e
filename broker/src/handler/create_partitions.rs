//! CreatePartitions: grows topics to a new partition count.

use std::sync::Arc;

use strata_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::Reply;
use super::admin::{check_topics, each_topic, result};
use crate::broker::Broker;
use crate::cluster::metadata::Command;
use crate::topics::AdminError;
use crate::topics::checks::check_grow;

pub async fn handle(broker: Arc<Broker>, request: CreatePartitionsRequest) -> Reply {
    if let Err(refusal) = check_topics(
        &broker,
        request.topics.iter().map(|topic| topic.name.as_str()),
    ) {
        return refusal;
    }
    let validate_only = request.validate_only;
    let topics = each_topic(request.topics, |change| {
        let broker = broker.clone();
        async move {
            let checked = check_grow(
                &broker.config,
                &broker.cluster.image(),
                &change.name,
                change.partition_count,
            );
            let outcome = match checked {
                Ok(()) if !validate_only => {
                    let command = Command::CreatePartitions {
                        name: change.name.clone(),
                        partitions: change.partition_count,
                    };
                    match broker.cluster.change(&command).await {
                        Ok(_) => broker.cluster.local_failure(&change.name).map_or(Ok(()), |error| {
                            Err(AdminError::new(
                                error.code,
                                format!(
                                    "the topic has {} partitions now, but this broker cannot open its new ones yet and keeps trying: {}",
                                    change.partition_count, error.message
                                ),
                            ))
                        }),
                        Err(error) => Err(error),
                    }
                }
                outcome => outcome,
            };
            result(change.name, outcome)
        }
    })
    .await;
    CreatePartitionsResponse { topics }.into()
}
