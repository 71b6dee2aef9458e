//! CreateTopics, DeleteTopics and CreatePartitions. Each topic succeeds or fails on its
//! own. The registry does blocking file I/O, so the work runs on the blocking pool.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    AlterTopicConfigsRequest, AlterTopicConfigsResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, TopicResult,
};

use super::Reply;
use crate::broker::Broker;
use crate::topics::AdminError;

fn result(name: String, outcome: Result<(), AdminError>) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name,
            error_code: ErrorCode::None,
            error_message: None,
        },
        Err(error) => TopicResult {
            name,
            error_code: error.code,
            error_message: Some(error.message),
        },
    }
}

/// Runs `work` on the blocking pool after checking the request's topic count.
async fn run_blocking<T: Into<Reply> + Send + 'static>(
    broker: Arc<Broker>,
    topic_count: usize,
    work: impl FnOnce(&Broker) -> T + Send + 'static,
) -> Reply {
    let limit = broker.config.request_topics_max;
    if topic_count > limit {
        return Reply::Error(
            ErrorCode::LimitExceeded,
            format!("the request names {topic_count} topics; request_topics_max is {limit}"),
        );
    }
    match tokio::task::spawn_blocking(move || work(&broker)).await {
        Ok(reply) => reply.into(),
        Err(error) => Reply::Error(ErrorCode::Unknown, format!("admin task failed: {error}")),
    }
}

pub async fn create_topics(broker: Arc<Broker>, request: CreateTopicsRequest) -> Reply {
    run_blocking(broker, request.topics.len(), move |broker| {
        CreateTopicsResponse {
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
        }
    })
    .await
}

pub async fn delete_topics(broker: Arc<Broker>, request: DeleteTopicsRequest) -> Reply {
    run_blocking(broker, request.names.len(), move |broker| {
        DeleteTopicsResponse {
            topics: request
                .names
                .into_iter()
                .map(|name| {
                    let outcome = broker.topics.delete(&name);
                    result(name, outcome)
                })
                .collect(),
        }
    })
    .await
}

pub async fn create_partitions(broker: Arc<Broker>, request: CreatePartitionsRequest) -> Reply {
    run_blocking(broker, request.topics.len(), move |broker| {
        CreatePartitionsResponse {
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
        }
    })
    .await
}

pub async fn alter_topic_configs(broker: Arc<Broker>, request: AlterTopicConfigsRequest) -> Reply {
    run_blocking(broker, request.topics.len(), move |broker| {
        AlterTopicConfigsResponse {
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
        }
    })
    .await
}
