//! CreatePartitions: grows topics to a new partition count.

use std::sync::Arc;

use strata_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::Reply;
use super::admin::{check_topics, result, run_blocking};
use crate::broker::Broker;

pub async fn handle(broker: Arc<Broker>, request: CreatePartitionsRequest) -> Reply {
    if let Err(refusal) = check_topics(
        &broker,
        request.topics.iter().map(|topic| topic.name.as_str()),
    ) {
        return refusal;
    }
    run_blocking(broker, move |broker| CreatePartitionsResponse {
        topics: request
            .topics
            .into_iter()
            .map(|change| {
                let outcome = broker.topics.add_partitions(
                    &change.name,
                    change.partition_count,
                    request.validate_only,
                );
                result(change.name, outcome)
            })
            .collect(),
    })
    .await
}
