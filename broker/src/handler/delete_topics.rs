//! DeleteTopics: deletes topics and their data.

use std::sync::Arc;

use strata_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::Reply;
use super::admin::{result, run_blocking};
use crate::broker::Broker;

pub async fn handle(broker: Arc<Broker>, request: DeleteTopicsRequest) -> Reply {
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
