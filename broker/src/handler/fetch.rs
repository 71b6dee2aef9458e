//! Fetch: long-poll reads up to the high watermark.
//!
//! The handler subscribes to every requested partition's high watermark before reading,
//! so an append between the read and the wait still wakes it. It answers as soon as
//! `min_bytes` are available, a partition reports an error, or `max_wait_ms` passes.
//! Records are `Bytes` slices of the log's mmap, and the reply carries their segment file
//! ranges too, so large ones reach the socket by `sendfile` (see `crate::send`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::select_all;
use strata_protocol::messages::{
    FetchPartitionResponse, FetchRequest, FetchResponse, FetchTopicResponse,
};
use strata_protocol::{ErrorCode, Response};
use strata_storage::FileRange;
use tokio::sync::watch;

use super::{Reply, limits};
use crate::broker::Broker;
use crate::metrics;

struct Pass {
    response: FetchResponse,
    /// Where the response's record bytes lie in segment files.
    files: Vec<FileRange>,
    bytes: usize,
    errors: bool,
}

impl Pass {
    fn into_reply(self, broker: &Broker) -> Reply {
        record_fetch_metrics(broker, &self.response);
        Reply::Records(Response::Fetch(self.response), self.files)
    }
}

fn read_all(broker: &Broker, request: &FetchRequest, max_bytes: usize) -> Pass {
    let mut pass = Pass {
        response: FetchResponse {
            topics: Vec::with_capacity(request.topics.len()),
        },
        files: Vec::new(),
        bytes: 0,
        errors: false,
    };
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let mut response = FetchPartitionResponse {
                partition: wanted.partition,
                error_code: ErrorCode::None,
                high_watermark: 0,
                log_start_offset: 0,
                records: Bytes::new(),
            };
            match broker.topics.partition(&topic.name, wanted.partition) {
                None => response.error_code = ErrorCode::UnknownTopicOrPartition,
                Some(partition) => {
                    let budget = (wanted.partition_max_bytes as usize)
                        .min(max_bytes.saturating_sub(pass.bytes));
                    // Once something is in the response, a partition gets data only within the
                    // budget; the first batch of a response may exceed it so nobody stalls.
                    if budget > 0 || pass.bytes == 0 {
                        match partition.read(wanted.fetch_offset, budget) {
                            Ok(read) => {
                                response.records = read.bytes;
                                pass.files.extend(read.file);
                            }
                            Err(error) => response.error_code = error.code(),
                        }
                    }
                    // Read after the records, so the records never end past it (an append
                    // may move it between the two reads).
                    response.high_watermark = partition.high_watermark();
                    response.log_start_offset = partition.log_start_offset();
                }
            }
            pass.errors |= !response.error_code.is_ok();
            pass.bytes += response.records.len();
            partitions.push(response);
        }
        pass.response.topics.push(FetchTopicResponse {
            name: topic.name.clone(),
            partitions,
        });
    }
    pass
}

fn subscribe(broker: &Broker, request: &FetchRequest) -> Vec<watch::Receiver<u64>> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter_map(|wanted| broker.topics.partition(&topic.name, wanted.partition))
        })
        .map(|partition| partition.subscribe())
        .collect()
}

pub async fn handle(broker: &Broker, request: FetchRequest) -> Reply {
    if let Err(refusal) = limits::check_topic_partitions(&broker.config, &request.topics) {
        return refusal;
    }
    let max_wait =
        Duration::from_millis(u64::from(request.max_wait_ms).min(broker.config.fetch_wait_ms_max));
    let deadline = tokio::time::Instant::from_std(Instant::now() + max_wait);
    let max_bytes = (request.max_bytes as usize).min(broker.config.fetch_response_bytes_max);
    let min_bytes = (request.min_bytes as usize).min(max_bytes);
    loop {
        let mut watches = subscribe(broker, &request);
        let pass = read_all(broker, &request, max_bytes);
        let done = pass.bytes >= min_bytes.max(1)
            || pass.errors
            || watches.is_empty()
            || tokio::time::Instant::now() >= deadline;
        if done {
            return pass.into_reply(broker);
        }
        // Subscribed before the read, so an append from here on wakes it.
        let _waiting = metrics::FetchWaiting::start();
        let changed = select_all(watches.iter_mut().map(|watch| Box::pin(watch.changed())));
        let woken = tokio::select! {
            _ = changed => true,
            () = tokio::time::sleep_until(deadline) => false,
            () = broker.shutdown.cancelled() => false,
        };
        if !woken {
            return read_all(broker, &request, max_bytes).into_reply(broker);
        }
    }
}

fn record_fetch_metrics(broker: &Broker, response: &FetchResponse) {
    for topic in &response.topics {
        let bytes: usize = topic
            .partitions
            .iter()
            .map(|partition| partition.records.len())
            .sum();
        if bytes == 0 {
            continue;
        }
        // A topic deleted since the read has no series left to count in.
        let Some(found) = broker.topics.get(&topic.name) else {
            continue;
        };
        let records = topic
            .partitions
            .iter()
            .map(|partition| count_records(&partition.records))
            .sum();
        found.traffic.record_fetch(bytes, records);
    }
}

fn count_records(records: &[u8]) -> u64 {
    strata_protocol::batch::Batches::new(records)
        .filter_map(Result::ok)
        .map(|batch| u64::from(batch.header.record_count))
        .sum()
}
