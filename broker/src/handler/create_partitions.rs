//! CreatePartitions: grows topics to a new partition count.

use std::sync::Arc;

use strata_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::Reply;
use super::admin::{result, run_blocking};
use crate::broker::Broker;

pub async fn handle(broker: Arc<Broker>, request: CreatePartitionsRequest) -> Reply {
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
