//! CreateTopics: creates topics, or with `validate_only` only checks that it could.

use std::sync::Arc;

use strata_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::Reply;
use super::admin::{check_topics, result, run_blocking};
use crate::broker::Broker;

pub async fn handle(broker: Arc<Broker>, request: CreateTopicsRequest) -> Reply {
    if let Err(refusal) = check_topics(
        &broker,
        request.topics.iter().map(|topic| topic.name.as_str()),
    ) {
        return refusal;
    }
    run_blocking(broker, move |broker| CreateTopicsResponse {
        topics: request
            .topics
            .into_iter()
            .map(|topic| {
                let outcome = broker.topics.create(
                    &topic.name,
                    topic.partition_count,
                    topic.replication_factor,
                    &topic.configs,
                    request.validate_only,
                );
                result(topic.name, outcome)
            })
            .collect(),
    })
    .await
}
