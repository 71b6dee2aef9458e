//! What the topic admin handlers (CreateTopics, DeleteTopics, CreatePartitions,
//! AlterTopicConfigs) share: a request names each topic once and at most
//! `request_topics_max` of them, and each topic succeeds or fails on its own: checked
//! against the metadata this broker applied, then proposed to the metadata quorum, all
//! topics of a request at once.

use futures_util::future::join_all;
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
    limits::check_distinct_topics(names)?;
    if !broker.cluster.is_ready() {
        return Err(Reply::Error(
            ErrorCode::LeaderNotAvailable,
            "this broker is still joining the cluster; retry".into(),
        ));
    }
    Ok(())
}

/// Runs `change` on every item at once; each gives its topic's result.
pub async fn each_topic<T, F>(items: Vec<T>, change: impl Fn(T) -> F) -> Vec<TopicResult>
where
    F: Future<Output = TopicResult>,
{
    join_all(items.into_iter().map(change)).await
}
