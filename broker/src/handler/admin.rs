//! What the topic admin handlers (CreateTopics, DeleteTopics, CreatePartitions,
//! AlterTopicConfigs) share: each topic succeeds or fails on its own, and the registry does
//! blocking file I/O, so the work runs on the blocking pool.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::TopicResult;

use super::Reply;
use crate::broker::Broker;
use crate::topics::AdminError;

/// One topic's outcome.
pub fn result(name: String, outcome: Result<(), AdminError>) -> TopicResult {
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
pub async fn run_blocking<T: Into<Reply> + Send + 'static>(
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
