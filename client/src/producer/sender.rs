//! The background sender: drains ready batches from the accumulator, sends one request
//! per broker in dispatch order, and resolves, retries or fails the batches by the
//! answer, marking a retried batch that an attempt may have written (`outcome`). It also
//! obtains the idempotent producer's id, and fails the marked batches a new epoch would
//! otherwise renumber.

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
use super::outcome::Written;
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
        let identity = match outcome {
            Ok(identity) => {
                tracing::debug!(
                    id = identity.id,
                    epoch = identity.epoch,
                    "producer identity"
                );
                Ok(Some(identity))
            }
            Err(Error::UnsupportedApi { address, .. }) => {
                tracing::warn!(%address, "the broker has no InitProducerId; producing without idempotence");
                Ok(None)
            }
            Err(error) => Err(error),
        };
        let error = match identity {
            Ok(identity) => {
                let maybe_written = accumulator.set_identity(identity);
                drop(accumulator);
                for (tp, batches) in maybe_written {
                    fail_outcome_unknown(shared, &tp, batches);
                }
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
                fail_or_retry(shared, &tp, batches, &error, Written::No);
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
///
/// # Errors
/// The error, and whether the request may have reached the broker: it may once it was
/// handed to the connection's writer (with `acks = none`, once the connection was up).
async fn send_produce(
    shared: &Shared,
    leader: u32,
    request: &Request,
    turn: Turn,
) -> Result<Option<ProduceResponse>, (Error, Written)> {
    let config = &shared.config;
    turn.wait().await;
    let unsent = |error| (error, Written::No);
    let connection = shared
        .cluster
        .broker_connection(leader)
        .await
        .map_err(unsent)?;
    if config.acks == Acks::None {
        let sent = connection.send_only(request).await;
        return sent.map(|()| None).map_err(|error| (error, Written::Maybe));
    }
    let wait = Duration::from_millis(u64::from(config.produce_timeout_ms));
    let mut queued = false;
    let answer = connection
        .call_then(request, wait, || {
            queued = true;
            drop(turn);
        })
        .await;
    let written = Written::unanswered(queued);
    match answer {
        Ok(Response::Produce(response)) => Ok(Some(response)),
        Ok(other) => Err((unexpected(&other), written)),
        Err(error) => Err((error, written)),
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
        Err((error, written)) => {
            for (tp, batches) in parts {
                fail_or_retry(&shared, &tp, batches, &error, written);
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
                        let written = Written::answered(answer.error_code, config.acks);
                        let error = Error::broker(answer.error_code, answer.error_message);
                        fail_or_retry(&shared, &tp, batches, &error, written);
                    }
                    None => {
                        let error = Error::Protocol {
                            address: String::new(),
                            reason: format!("produce response lacks {tp}"),
                        };
                        fail_or_retry(&shared, &tp, batches, &error, Written::Maybe);
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
/// error is retriable and attempts remain; otherwise fails every record with it. A
/// retried batch this attempt may have written (`written`) keeps the mark for good: a
/// later refusal does not undo what this attempt may have done.
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
    written: Written,
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
            if written == Written::Maybe && batch.maybe_written.is_none() {
                batch.maybe_written = Some(error.clone());
            }
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
    let numbered = batches.iter().any(|batch| batch.numbered);
    fail_each(shared, tp, batches, numbered, |_| error.clone());
}

/// Fails the batches a renumbering left out, each with [`Error::OutcomeUnknown`]: an
/// attempt may have written them. They leave no gap: the batches left were renumbered
/// without them.
fn fail_outcome_unknown(shared: &Shared, tp: &TopicPartition, batches: Vec<ProducerBatch>) {
    fail_each(shared, tp, batches, false, |batch| Error::OutcomeUnknown {
        topic: tp.topic.clone(),
        partition: tp.partition,
        cause: Box::new(
            batch
                .maybe_written
                .clone()
                .expect("only batches that may have been written are left out"),
        ),
    });
}

/// Fails every record of each batch with `error_of(batch)`, for good. `gap`: a numbered
/// batch failed, leaving its partition's sequence with a gap.
fn fail_each(
    shared: &Shared,
    tp: &TopicPartition,
    batches: Vec<ProducerBatch>,
    gap: bool,
    error_of: impl Fn(&ProducerBatch) -> Error,
) {
    let mut resolved = Vec::with_capacity(batches.len());
    let mut reserved = 0;
    for batch in batches {
        reserved += batch.reserved_bytes;
        resolved.push(batch.first_record);
        let error = error_of(&batch);
        batch.resolver.fail(&error);
        if batch.forgotten > 0 {
            tracing::warn!(%tp, %error, records = batch.forgotten, "records not delivered");
        }
    }
    resolve(shared, tp, &resolved, reserved, gap);
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
    use strata_protocol::batch::{self, Batches};
    use strata_protocol::messages::{
        BrokerMetadata, InitProducerIdResponse, MetadataResponse, PartitionMetadata,
        ProduceTopicResponse, TopicMetadata,
    };

    use super::*;
    use crate::config::ProducerConfig;
    use crate::producer::Producer;
    use crate::record::ProducerRecord;
    use crate::test_support::scripted_broker;

    /// (epoch, base sequence, value) of each batch a leader was sent, in order.
    type Seen = Arc<watch::Sender<Vec<(i16, i32, String)>>>;

    /// The leader's answer to a batch of one record `value` under producer `epoch`.
    fn answer(epoch: i16, value: &str) -> ErrorCode {
        match value {
            _ if epoch > 0 => ErrorCode::None,
            // Appended, and its acks wait expired before the replicas had it.
            "timed-out" => ErrorCode::RequestTimedOut,
            // Refused before the append.
            "refused" => ErrorCode::NotLeader,
            // Fails for good: the producer must start a new epoch.
            _ => ErrorCode::MessageTooLarge,
        }
    }

    /// A broker leading the one partition of `t`, which gives producer id 9 and bumps
    /// its epoch, and answers each produce of a one-record batch by [`answer`].
    async fn leader(seen: Seen) -> String {
        let port = Arc::new(std::sync::atomic::AtomicU16::new(0));
        let known_port = Arc::clone(&port);
        let address = scripted_broker(move |request| match request {
            Request::Metadata(_) => Response::from(MetadataResponse {
                cluster_id: "c".into(),
                controller_id: 0,
                brokers: vec![BrokerMetadata {
                    node_id: 0,
                    host: "127.0.0.1".into(),
                    port: known_port.load(Ordering::Acquire),
                }],
                topics: vec![TopicMetadata {
                    error_code: ErrorCode::None,
                    name: "t".into(),
                    partitions: vec![PartitionMetadata {
                        error_code: ErrorCode::None,
                        partition: 0,
                        leader_id: 0,
                        leader_epoch: 1,
                        replicas: vec![0],
                        in_sync_replicas: vec![0],
                    }],
                }],
            }),
            Request::InitProducerId(request) => Response::from(InitProducerIdResponse {
                error_code: ErrorCode::None,
                error_message: None,
                producer_id: 9,
                producer_epoch: if request.producer_id == 9 {
                    request.producer_epoch + 1
                } else {
                    0
                },
            }),
            Request::Produce(request) => {
                let bytes = request.topics[0].partitions[0].records.to_bytes();
                let view = Batches::new(&bytes).next().unwrap().unwrap();
                let header = batch::verify_crc(view.bytes).unwrap();
                let record = view.records().next().unwrap().unwrap();
                let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
                let error_code = answer(header.producer_epoch, &value);
                seen.send_modify(|seen| {
                    seen.push((header.producer_epoch, header.base_sequence, value));
                });
                Response::from(ProduceResponse {
                    topics: vec![ProduceTopicResponse {
                        name: "t".into(),
                        partitions: vec![ProducePartitionResponse {
                            partition: 0,
                            error_code,
                            error_message: None,
                            base_offset: seen.borrow().len() as u64,
                            log_append_time: -1,
                            log_start_offset: 0,
                        }],
                    }],
                })
            }
            other => panic!("unexpected request {other:?}"),
        })
        .await;
        let bound: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
        port.store(bound, Ordering::Release);
        address
    }

    #[tokio::test]
    async fn a_new_epoch_fails_a_batch_the_leader_may_have_written_and_renumbers_a_refused_one() {
        let seen: Seen = Arc::new(watch::channel(Vec::new()).0);
        let address = leader(Arc::clone(&seen)).await;
        let producer = Producer::new(ProducerConfig {
            acks: Acks::All,
            linger_ms: 0,
            retries_max: 1_000_000,
            retry_backoff_ms: 1,
            retry_backoff_ms_max: 5,
            ..ProducerConfig::new(&address)
        })
        .unwrap();
        let run = async {
            let mut deliveries = Vec::new();
            for value in ["timed-out", "refused", "too-large"] {
                let record = ProducerRecord::new("t", value).partition(0);
                deliveries.push(producer.send(record).await.unwrap());
                // A batch of its own: the next record waits until the leader saw this one.
                let mut watched = seen.subscribe();
                let sent =
                    |seen: &Vec<(i16, i32, String)>| seen.iter().any(|(_, _, sent)| sent == value);
                watched.wait_for(sent).await.unwrap();
            }
            let mut outcomes = Vec::new();
            for delivery in deliveries {
                outcomes.push(delivery.await);
            }
            outcomes
        };
        let outcomes = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("every record resolved");
        match &outcomes[0] {
            Err(Error::OutcomeUnknown {
                topic,
                partition: 0,
                cause,
            }) if topic == "t" => {
                assert_eq!(cause.code(), Some(ErrorCode::RequestTimedOut));
            }
            other => panic!("the timed-out batch: {other:?}"),
        }
        assert!(outcomes[1].is_ok(), "the refused batch: {:?}", outcomes[1]);
        let too_large = outcomes[2].as_ref().unwrap_err();
        assert_eq!(too_large.code(), Some(ErrorCode::MessageTooLarge));
        let seen = seen.borrow();
        assert!(seen.contains(&(0, 1, "refused".to_owned())));
        assert_eq!(
            seen.iter()
                .filter(|(epoch, _, _)| *epoch > 0)
                .collect::<Vec<_>>(),
            [&(1, 0, "refused".to_owned())],
            "only the refused batch is sent under the new epoch, from sequence 0"
        );
        producer.close().await;
    }

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
