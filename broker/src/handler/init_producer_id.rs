//! InitProducerId: a new producer id, or the next epoch of one. Ids come from blocks the
//! cluster metadata hands this broker (see [`crate::producer_ids`]); when the block is
//! used up, one request at a time asks the quorum for the next, and the others wait for
//! it. The connection limits how often this runs
//! (`connection_producer_id_requests_per_second_max`).

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

use super::Reply;
use crate::broker::Broker;
use crate::cluster::metadata::{Command, Outcome};
use crate::producer_ids::{BLOCK, ProducerIdError};
use crate::topics::AdminError;

pub async fn handle(broker: Arc<Broker>, request: InitProducerIdRequest) -> Reply {
    let given = give(&broker, request.producer_id, request.producer_epoch).await;
    let (error_code, error_message, (producer_id, producer_epoch)) = match given {
        Ok(given) => (ErrorCode::None, None, given),
        Err(error) => (error.code(), Some(error.to_string()), (-1, -1)),
    };
    InitProducerIdResponse {
        error_code,
        error_message,
        producer_id,
        producer_epoch,
    }
    .into()
}

/// The id and epoch for the request, asking the metadata for a block when one is due.
async fn give(
    broker: &Broker,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(i64, i16), ProducerIdError> {
    let ids = &broker.producer_ids;
    loop {
        if let Some(given) = ids.init(producer_id, producer_epoch)? {
            return Ok(given);
        }
        let _refill = ids.refilling().await;
        // Another request may have brought a block while this one waited.
        if !ids.needs_block() {
            continue;
        }
        let command = Command::AllocateProducerIds {
            broker: broker.config.node_id,
            count: BLOCK,
            at_least: ids.at_least(),
        };
        match broker.cluster.change(&command).await {
            Ok(Outcome::ProducerIds { start, end }) => ids.add_block(start, end)?,
            Ok(other) => {
                return Err(ProducerIdError::Metadata(AdminError::new(
                    ErrorCode::Unknown,
                    format!("the metadata answered {other:?} to a request for producer ids"),
                )));
            }
            Err(error) => return Err(ProducerIdError::Metadata(error)),
        }
    }
}
