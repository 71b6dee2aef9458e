//! DeleteTopics: deletes topics and their data.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::Reply;
use super::admin::{check_topics, result, run_blocking};
use crate::broker::Broker;
use crate::topics::AdminError;

pub async fn handle(broker: Arc<Broker>, request: DeleteTopicsRequest) -> Reply {
    if let Err(refusal) = check_topics(&broker, request.names.iter().map(String::as_str)) {
        return refusal;
    }
    run_blocking(broker, move |broker| {
        DeleteTopicsResponse {
            topics: request
                .names
                .into_iter()
                .map(|name| {
                    let outcome = broker.topics.delete(&name).and_then(|()| {
                        broker.groups.delete_topic_offsets(&name).map_err(|error| {
                            AdminError {
                                code: ErrorCode::StorageError,
                                message: format!(
                                    "topic '{name}' is deleted, but its committed group offsets are not: {error}"
                                ),
                            }
                        })
                    });
                    result(name, outcome)
                })
                .collect(),
        }
    })
    .await
}
