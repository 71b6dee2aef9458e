//! ListOffsets: the log start, the high watermark, or the first offset at or after a time.

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, ListOffsetsPartitionResponse, ListOffsetsRequest,
    ListOffsetsResponse, ListOffsetsTopicResponse, NONE,
};

use super::{Reply, limits};
use crate::broker::Broker;

pub fn handle(broker: &Broker, request: ListOffsetsRequest) -> Reply {
    if let Err(refusal) = limits::check_topic_partitions(&broker.config, &request.topics) {
        return refusal;
    }
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|query| {
                    let mut response = ListOffsetsPartitionResponse {
                        partition: query.partition,
                        error_code: ErrorCode::None,
                        timestamp: NONE,
                        offset: NONE,
                    };
                    let partition =
                        match broker
                            .cluster
                            .route(&broker.topics, &topic.name, query.partition)
                        {
                            Ok(partition) => partition,
                            Err(error) => {
                                response.error_code = error.code();
                                return response;
                            }
                        };
                    // A new leader answers no offset until its high watermark has
                    // reached its own log end (KIP-207): a reset to it could skip
                    // records consumers have not read.
                    if let Err(error) = partition
                        .check_online()
                        .and_then(|()| partition.check_offsets_available())
                    {
                        response.error_code = error.code();
                        return response;
                    }
                    match query.timestamp {
                        EARLIEST_TIMESTAMP => response.offset = partition.log_start_offset() as i64,
                        LATEST_TIMESTAMP => response.offset = partition.high_watermark() as i64,
                        timestamp if timestamp >= 0 => {
                            match partition.offset_for_timestamp(timestamp) {
                                Ok(Some((offset, found))) => {
                                    response.offset = offset as i64;
                                    response.timestamp = found;
                                }
                                Ok(None) => {}
                                Err(error) => response.error_code = error.code(),
                            }
                        }
                        _ => response.error_code = ErrorCode::InvalidTimestamp,
                    }
                    response
                })
                .collect();
            ListOffsetsTopicResponse {
                name: topic.name,
                partitions,
            }
        })
        .collect();
    ListOffsetsResponse { topics }.into()
}
