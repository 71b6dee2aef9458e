//! InitProducerId: a new producer id, or the next epoch of one. Runs on a blocking thread
//! because one call in [`BLOCK`](crate::producer_ids::BLOCK) fsyncs a reservation. The
//! connection limits how often it runs (`connection_producer_id_requests_per_second_max`).

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

use super::Reply;
use crate::broker::Broker;

pub async fn handle(broker: Arc<Broker>, request: InitProducerIdRequest) -> Reply {
    let outcome = tokio::task::spawn_blocking(move || {
        broker
            .producer_ids
            .init(request.producer_id, request.producer_epoch)
    })
    .await;
    let (error_code, error_message, (producer_id, producer_epoch)) = match outcome {
        Ok(Ok(given)) => (ErrorCode::None, None, given),
        Ok(Err(error)) => (error.code(), Some(error.to_string()), (-1, -1)),
        Err(error) => (
            ErrorCode::Unknown,
            Some(format!("producer id task failed: {error}")),
            (-1, -1),
        ),
    };
    InitProducerIdResponse {
        error_code,
        error_message,
        producer_id,
        producer_epoch,
    }
    .into()
}
