//! What the topic admin handlers (CreateTopics, DeleteTopics, CreatePartitions,
//! AlterTopicConfigs) share: a request names each topic once and at most
//! `request_topics_max` of them, each topic succeeds or fails on its own, and the registry
//! does blocking file I/O, so the work runs on the blocking pool.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::TopicResult;

use super::{Reply, limits};
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

/// Refuses a request naming more than `request_topics_max` topics, or one topic twice.
pub fn check_topics<'a>(
    broker: &Broker,
    names: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), Reply> {
    limits::check_topic_count(&broker.config, names.len())?;
    limits::check_distinct_topics(names)
}

/// Runs `work` on the blocking pool.
pub async fn run_blocking<T: Into<Reply> + Send + 'static>(
    broker: Arc<Broker>,
    work: impl FnOnce(&Broker) -> T + Send + 'static,
) -> Reply {
    match tokio::task::spawn_blocking(move || work(&broker)).await {
        Ok(reply) => reply.into(),
        Err(error) => Reply::Error(ErrorCode::Unknown, format!("admin task failed: {error}")),
    }
}
