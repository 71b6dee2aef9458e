//! AlterTopicConfigs: changes topics' configs.

use std::sync::Arc;

use strata_protocol::messages::{AlterTopicConfigsRequest, AlterTopicConfigsResponse};

use super::Reply;
use super::admin::{check_topics, result, run_blocking};
use crate::broker::Broker;

pub async fn handle(broker: Arc<Broker>, request: AlterTopicConfigsRequest) -> Reply {
    if let Err(refusal) = check_topics(
        &broker,
        request.topics.iter().map(|topic| topic.name.as_str()),
    ) {
        return refusal;
    }
    run_blocking(broker, move |broker| AlterTopicConfigsResponse {
        topics: request
            .topics
            .into_iter()
            .map(|change| {
                let outcome = broker.topics.alter_config(
                    &change.name,
                    &change.configs,
                    request.validate_only,
                );
                result(change.name, outcome)
            })
            .collect(),
    })
    .await
}
