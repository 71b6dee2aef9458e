//! The background sender: drains ready batches from the accumulator, sends one request
//! per broker in dispatch order, and resolves, retries or fails the batches by the
//! answer. It also obtains the idempotent producer's id.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use strata_protocol::batch::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use strata_protocol::messages::{
    Acks, InitProducerIdRequest, ProducePartition, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, ProduceTopic, RecordBatches,
};
use strata_protocol::{ErrorCode, Request, Response};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Shared;
use crate::accumulator::{ProducerBatch, ProducerIdentity};
use crate::cluster::unexpected;
use crate::error::{Error, Result};
use crate::record::TopicPartition;

/// Puts one broker's produce requests on its connection in dispatch order: each request
/// takes a ticket when dispatched and queues itself on the connection when `serving`
/// reaches it. Idempotent batches of a partition must reach the leader in sequence order.
#[derive(Debug, Default)]
pub(super) struct Turns {
    next: u64,
    serving: Arc<watch::Sender<u64>>,
}

/// One request's place in its broker's [`Turns`]; dropping it lets the next request go.
/// Produce tasks are never cancelled, so a turn is always waited for before it drops.
#[derive(Debug)]
struct Turn {
    ticket: u64,
    serving: Arc<watch::Sender<u64>>,
}

impl Turn {
    async fn wait(&self) {
        let mut serving = self.serving.subscribe();
        // The sender lives in `self`, so the channel cannot close.
        let _ = serving.wait_for(|serving| *serving == self.ticket).await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let ticket = self.ticket;
        self.serving.send_if_modified(|serving| {
            let mine = *serving == ticket;
            if mine {
                *serving += 1;
            }
            mine
        });
    }
}

/// The background sender: drains ready batches, groups them by leader, and sends one
/// request per broker. Sleeps on a notification or the next linger/retry deadline.
pub(super) async fn run_sender(shared: Arc<Shared>) {
    loop {
        let notified = shared.wake_sender.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let identity_due = shared
            .accumulator
            .lock()
            .expect("accumulator lock")
            .identity_due();
        if let Some(current) = identity_due {
            obtain_identity(&shared, current).await;
        }
        let now = Instant::now();
        let (ready, deadline, idle) = {
            let mut accumulator = shared.accumulator.lock().expect("accumulator lock");
            let ready = accumulator.drain(now);
            (ready, accumulator.next_deadline(now), accumulator.is_idle())
        };
        if idle && ready.is_empty() && shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        if !ready.is_empty() {
            dispatch(&shared, ready);
            // Draining may have left more to do (e.g. other partitions' deadlines).
            continue;
        }
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// Asks the cluster for a producer id (`current` is `None`) or the next epoch of
/// `current`, and renumbers the buffered batches under it. Retriable failures are retried
/// after a backoff; a failure that is not, or `retries_max` of them, fails every buffered
/// batch with that error (a later record tries again). A cluster without InitProducerId
/// gets a producer without idempotence.
async fn obtain_identity(shared: &Arc<Shared>, current: Option<ProducerIdentity>) {
    let config = &shared.config;
    let request = Request::InitProducerId(InitProducerIdRequest {
        producer_id: current.map_or(NO_PRODUCER_ID, |identity| identity.id),
        producer_epoch: current.map_or(NO_PRODUCER_EPOCH, |identity| identity.epoch),
    });
    let mut attempts = 0;
    loop {
        let outcome = match shared.cluster.call_any(&request).await {
            Ok(Response::InitProducerId(response)) if response.error_code.is_ok() => {
                Ok(ProducerIdentity {
                    id: response.producer_id,
                    epoch: response.producer_epoch,
                })
            }
            Ok(Response::InitProducerId(response)) => {
                Err(Error::broker(response.error_code, response.error_message))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(error) => Err(error),
        };
        let mut accumulator = shared.accumulator.lock().expect("accumulator lock");
        let error = match outcome {
            Ok(identity) => {
                tracing::debug!(
                    id = identity.id,
                    epoch = identity.epoch,
                    "producer identity"
                );
                accumulator.set_identity(Some(identity));
                return;
            }
            Err(Error::UnsupportedApi { address, .. }) => {
                tracing::warn!(%address, "the broker has no InitProducerId; producing without idempotence");
                accumulator.set_identity(None);
                return;
            }
            Err(error) => error,
        };
        attempts += 1;
        if !error.is_retriable() || attempts > config.retries_max {
            tracing::warn!(%error, "no producer id; failing the buffered records");
            let taken = accumulator.drain_all();
            drop(accumulator);
            for (tp, batches) in taken {
                fail(shared, &tp, batches, &error);
            }
            return;
        }
        drop(accumulator);
        tracing::debug!(attempts, %error, "retrying InitProducerId");
        tokio::time::sleep(config.retry_backoff().delay(attempts)).await;
    }
}

type Ready = Vec<(TopicPartition, Vec<ProducerBatch>)>;

/// Groups ready batches by their leader and spawns one request per broker. Partitions
/// whose leader is unknown go back with a backoff and trigger a metadata refresh.
fn dispatch(shared: &Arc<Shared>, ready: Ready) {
    let mut by_leader: HashMap<u32, Ready> = HashMap::new();
    for (tp, batches) in ready {
        let leader = shared.cluster.cached_topic(&tp.topic).and_then(|topic| {
            topic
                .partitions
                .get(tp.partition as usize)
                .and_then(|info| info.leader)
        });
        match leader {
            Some(leader) => by_leader.entry(leader).or_default().push((tp, batches)),
            None => {
                let error = Error::LeaderNotAvailable {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                };
                fail_or_retry(shared, &tp, batches, &error);
            }
        }
    }
    let mut turns = shared.turns.lock().expect("turns lock");
    for (leader, parts) in by_leader {
        let turns = turns.entry(leader).or_default();
        for request in split_requests(parts, shared.config.request_bytes_max) {
            let turn = Turn {
                ticket: turns.next,
                serving: Arc::clone(&turns.serving),
            };
            turns.next += 1;
            tokio::spawn(produce(Arc::clone(shared), leader, request, turn));
        }
    }
}

/// Splits one broker's partitions into requests of at most `request_bytes_max` bytes of
/// batches each (a partition is never split; each carries at most
/// `request_partition_bytes_max`, which is below the limit).
fn split_requests(parts: Ready, request_bytes_max: usize) -> Vec<Ready> {
    let mut requests: Vec<Ready> = Vec::new();
    let mut bytes = 0;
    for part in parts {
        let part_bytes: usize = part.1.iter().map(ProducerBatch::len).sum();
        match requests.last_mut() {
            Some(request) if bytes + part_bytes <= request_bytes_max => {
                bytes += part_bytes;
                request.push(part);
            }
            _ => {
                bytes = part_bytes;
                requests.push(vec![part]);
            }
        }
    }
    requests
}

/// Sends one produce request when its turn comes; `None` with `acks = none`.
async fn send_produce(
    shared: &Shared,
    leader: u32,
    request: &Request,
    turn: Turn,
) -> Result<Option<ProduceResponse>> {
    let config = &shared.config;
    turn.wait().await;
    let connection = shared.cluster.broker_connection(leader).await?;
    if config.acks == Acks::None {
        connection.send_only(request).await?;
        return Ok(None);
    }
    let wait = Duration::from_millis(u64::from(config.produce_timeout_ms));
    match connection.call_then(request, wait, || drop(turn)).await? {
        Response::Produce(response) => Ok(Some(response)),
        other => Err(unexpected(&other)),
    }
}

/// One produce request to one broker, and the handling of its outcome per partition.
async fn produce(shared: Arc<Shared>, leader: u32, mut parts: Ready, turn: Turn) {
    let config = &shared.config;
    let request = Request::Produce(ProduceRequest {
        acks: config.acks,
        timeout_ms: config.produce_timeout_ms,
        topics: produce_topics(&mut parts),
    });
    let outcome = send_produce(&shared, leader, &request, turn).await;
    match outcome {
        Err(error) => {
            for (tp, batches) in parts {
                fail_or_retry(&shared, &tp, batches, &error);
            }
        }
        Ok(None) => {
            for (tp, batches) in parts {
                succeed(&shared, &tp, batches, None);
            }
        }
        Ok(Some(response)) => {
            let mut answers: HashMap<(String, u32), ProducePartitionResponse> = HashMap::new();
            for topic in response.topics {
                for partition in topic.partitions {
                    answers.insert((topic.name.clone(), partition.partition), partition);
                }
            }
            for (tp, batches) in parts {
                match answers.remove(&(tp.topic.clone(), tp.partition)) {
                    Some(answer) if answer.error_code.is_ok() => {
                        succeed(&shared, &tp, batches, Some(answer.base_offset));
                    }
                    Some(answer) => {
                        let error = Error::broker(answer.error_code, answer.error_message);
                        fail_or_retry(&shared, &tp, batches, &error);
                    }
                    None => {
                        let error = Error::Protocol {
                            address: String::new(),
                            reason: format!("produce response lacks {tp}"),
                        };
                        fail_or_retry(&shared, &tp, batches, &error);
                    }
                }
            }
        }
    }
    shared.wake_sender.notify_one();
}

/// The request's topics. Batches are finished here, in the request's own task, the first
/// time they are sent.
fn produce_topics(parts: &mut Ready) -> Vec<ProduceTopic> {
    let mut topics: Vec<ProduceTopic> = Vec::new();
    for (tp, batches) in parts {
        // The batches go out as they are, one chunk each: never joined into a copy.
        let records = RecordBatches::new(batches.iter_mut().map(ProducerBatch::bytes).collect());
        let partition = ProducePartition {
            partition: tp.partition,
            records,
        };
        match topics.iter_mut().find(|topic| topic.name == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(ProduceTopic {
                name: tp.topic.clone(),
                partitions: vec![partition],
            }),
        }
    }
    topics
}

/// Resolves every record of the batches: offsets are dense from `base_offset`.
fn succeed(
    shared: &Shared,
    tp: &TopicPartition,
    batches: Vec<ProducerBatch>,
    base_offset: Option<u64>,
) {
    let mut index = 0u64;
    let mut resolved = Vec::with_capacity(batches.len());
    let mut reserved = 0;
    for batch in batches {
        reserved += batch.reserved_bytes;
        resolved.push(batch.first_record);
        batch.resolver.succeed(base_offset.map(|base| base + index));
        index += u64::from(batch.records);
    }
    resolve(shared, tp, &resolved, reserved, false);
}

/// Retries the batches (back into their queue in seal order, after a backoff) if the
/// error is retriable and attempts remain; otherwise fails every record with it.
///
/// OutOfOrderSequence is retriable when the producer expected it: an earlier batch of the
/// partition is unresolved (it failed or is still on its way, so the leader has not
/// written it yet), or a renumbering is pending. Otherwise the leader's sequence and the
/// producer's disagree, and the batch fails.
fn fail_or_retry(
    shared: &Shared,
    tp: &TopicPartition,
    mut batches: Vec<ProducerBatch>,
    error: &Error,
) {
    let config = &shared.config;
    let attempts = batches.first().map_or(0, |batch| batch.attempts) + 1;
    if error.needs_metadata_refresh() {
        let cluster = Arc::clone(&shared.cluster);
        let topic = tp.topic.clone();
        let seen_at = cluster.refreshed_at();
        tokio::spawn(async move { cluster.refresh_after_error(&topic, seen_at).await });
    }
    let retriable = match error.code() {
        Some(ErrorCode::OutOfOrderSequence) => {
            let accumulator = shared.accumulator.lock().expect("accumulator lock");
            batches
                .first()
                .is_some_and(|batch| accumulator.out_of_order_is_expected(tp, batch))
        }
        _ => error.is_retriable(),
    };
    if retriable && attempts <= config.retries_max {
        tracing::debug!(%tp, attempts, %error, "retrying produce");
        shared.retries.fetch_add(1, Ordering::Relaxed);
        for batch in &mut batches {
            batch.attempts = attempts;
        }
        let retry_at = Instant::now() + config.retry_backoff().delay(attempts);
        shared
            .accumulator
            .lock()
            .expect("accumulator lock")
            .requeue(tp, batches, retry_at);
        return;
    }
    fail(shared, tp, batches, error);
}

/// Fails every record of the batches with `error`, for good.
fn fail(shared: &Shared, tp: &TopicPartition, batches: Vec<ProducerBatch>, error: &Error) {
    let mut resolved = Vec::with_capacity(batches.len());
    let mut reserved = 0;
    let mut numbered = false;
    for batch in batches {
        reserved += batch.reserved_bytes;
        resolved.push(batch.first_record);
        numbered |= batch.numbered;
        batch.resolver.fail(error);
        if batch.forgotten > 0 {
            tracing::warn!(%tp, %error, records = batch.forgotten, "records not delivered");
        }
    }
    resolve(shared, tp, &resolved, reserved, numbered);
}

/// Marks batches of `tp` resolved and frees their memory. `gap`: a numbered batch failed,
/// so the partition's sequence must be renumbered before anything more is sent.
fn resolve(
    shared: &Shared,
    tp: &TopicPartition,
    batches: &[u64],
    reserved_bytes: usize,
    gap: bool,
) {
    {
        let mut accumulator = shared.accumulator.lock().expect("accumulator lock");
        accumulator.complete(tp, batches);
        if gap {
            accumulator.renumber_later();
        }
    }
    shared.memory.add_permits(reserved_bytes);
    shared.completed.notify_waiters();
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn part(partition: u32, bytes: usize) -> (TopicPartition, Vec<ProducerBatch>) {
        let batch = ProducerBatch::encoded(Bytes::from(vec![0; bytes]), 1, bytes);
        (TopicPartition::new("t", partition), vec![batch])
    }

    #[test]
    fn requests_to_one_broker_are_split_at_request_bytes_max_without_splitting_a_partition() {
        let parts = vec![
            part(0, 400),
            part(1, 400),
            part(2, 300),
            part(3, 900),
            part(4, 50),
        ];
        let requests = split_requests(parts, 1_000);
        let shape: Vec<Vec<u32>> = requests
            .iter()
            .map(|request| request.iter().map(|(tp, _)| tp.partition).collect())
            .collect();
        assert_eq!(shape, [vec![0, 1], vec![2], vec![3, 4]]);
    }

    #[test]
    fn produce_topics_group_partitions_by_topic_and_keep_batches_as_chunks() {
        let mut two_batches = part(1, 10);
        two_batches.1.push(part(1, 5).1.remove(0));
        let mut parts = vec![part(0, 10), two_batches];
        let topics = produce_topics(&mut parts);
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions.len(), 2);
        let records = &topics[0].partitions[1].records;
        assert_eq!(records.len(), 15);
        assert_eq!(records.chunks().len(), 2);
    }
}
