//! AlterTopicConfigs: changes topics' configs.

use std::sync::Arc;

use strata_protocol::messages::{AlterTopicConfigsRequest, AlterTopicConfigsResponse};

use super::Reply;
use super::admin::{check_topics, each_topic, result};
use crate::broker::Broker;
use crate::cluster::metadata::Command;
use crate::topics::checks::check_alter;

pub async fn handle(broker: Arc<Broker>, request: AlterTopicConfigsRequest) -> Reply {
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
            let checked = check_alter(
                &broker.config,
                &broker.cluster.image(),
                &change.name,
                &change.configs,
            );
            let outcome = match checked {
                Ok(_) if !validate_only => {
                    let command = Command::AlterTopicConfig {
                        name: change.name.clone(),
                        entries: change
                            .configs
                            .iter()
                            .map(|entry| (entry.key.clone(), entry.value.clone()))
                            .collect(),
                    };
                    broker.cluster.change(&command).await.map(drop)
                }
                Ok(_) => Ok(()),
                Err(error) => Err(error),
            };
            result(change.name, outcome)
        }
    })
    .await;
    AlterTopicConfigsResponse { topics }.into()
}
