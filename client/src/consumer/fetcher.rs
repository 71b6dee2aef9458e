//! Fetching: one request per leader for every partition that is ready, run as a task,
//! and the answers taken back into the partitions' state. The next fetch of a partition
//! starts from the previous answer's batch headers, before its records are decoded.
//!
//! Each partition's fetch names the leader epoch the metadata gave and the epoch of the
//! last batch fetched (KIP-320): a leader whose epoch differs answers
//! `FencedLeaderEpoch` or `UnknownLeaderEpoch`, retried after a metadata refresh, and a
//! leader whose log diverged from what was fetched says where (see `truncation`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use strata_protocol::messages::{
    FetchPartition, FetchPartitionResponse, FetchRequest, FetchTopic, NO_EPOCH,
};
use strata_protocol::{ErrorCode, Request, Response};
use tokio::time::Instant;

use super::Consumer;
use super::decode::{Decode, Decoding, next_fetch_offset};
use crate::cluster::{Cluster, unexpected};
use crate::config::ConsumerConfig;
use crate::error::{Error, Result};
use crate::record::TopicPartition;

#[derive(Debug)]
struct FetchedPartition {
    tp: TopicPartition,
    epoch: u64,
    fetch_offset: u64,
    result: Result<Answer>,
}

/// A partition's answer without an error.
#[derive(Debug)]
enum Answer {
    /// Records (or none yet).
    Records(Fetched),
    /// The leader's log diverges from what was fetched: its epoch `epoch` ends at
    /// `end_offset`.
    Diverging { epoch: u32, end_offset: u64 },
}

/// A partition's answer, read up to its batch headers: where the next fetch starts and
/// the epoch of the batch that ends there, and the decode of its records (CRC checks
/// included).
#[derive(Debug)]
struct Fetched {
    next_offset: u64,
    last_epoch: Option<u32>,
    bytes: usize,
    records: Decode,
}

/// A partition and the epoch of the fetch that covered it.
type EpochPartition = (TopicPartition, u64);

/// A partition to fetch and what its fetch says.
#[derive(Debug)]
struct Wanted {
    tp: TopicPartition,
    fetch_offset: u64,
    /// The consumer's epoch of the partition (fresh on every seek).
    epoch: u64,
    /// The leader epoch the metadata gave.
    leader_epoch: u32,
    last_fetched_epoch: Option<u32>,
}

#[derive(Debug)]
pub(super) struct FetchOutcome {
    /// Per partition, or the error of the whole request with the partitions (and their
    /// epochs) it covered.
    result: Result<Vec<FetchedPartition>, (Error, Vec<EpochPartition>)>,
}

impl Consumer {
    /// When the first partition backing off may fetch again: a waiting `poll` wakes then.
    pub(super) fn earliest_retry(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter_map(|state| state.retry_at)
            .min()
    }

    /// Resolves missing positions, then starts a fetch per leader for every partition
    /// that is ready: assigned, positioned, not paused, not fetching, not backing off.
    /// `returning_bytes` of the buffer are about to be returned and do not count
    /// against `prefetch_bytes_max`; answers still being decoded do.
    ///
    /// # Cancel safety
    /// Cancel-safe: positions change only after a lookup's await, and a fetch's slot is
    /// taken only when its task is spawned.
    pub(super) async fn start_fetches(&mut self, returning_bytes: usize) {
        self.lookup_committed().await;
        self.reset_positions().await;
        let decoding_bytes: usize = self.decoding.iter().map(|decoding| decoding.bytes).sum();
        if (self.buffered_bytes + decoding_bytes).saturating_sub(returning_bytes)
            >= self.config.prefetch_bytes_max
        {
            return;
        }
        let now = Instant::now();
        let ready: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, state)| {
                state.position.is_some()
                    && state.fetch_in_flight.is_none()
                    && !state.paused
                    && state.retry_at.is_none_or(|at| at <= now)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        let mut by_leader: BTreeMap<u32, Vec<Wanted>> = BTreeMap::new();
        for tp in ready {
            match self.cluster.leader_and_epoch(&tp.topic, tp.partition).await {
                Ok((leader, leader_epoch)) => {
                    let state = self
                        .partitions
                        .get_mut(&tp)
                        .expect("ready partitions are assigned");
                    state.retry_at = None;
                    by_leader.entry(leader).or_default().push(Wanted {
                        tp,
                        fetch_offset: state.fetch_offset,
                        epoch: state.epoch,
                        leader_epoch,
                        last_fetched_epoch: state.last_fetched_epoch,
                    });
                }
                Err(error) => self.on_partition_error(&tp, error),
            }
        }
        for (leader, partitions) in by_leader {
            for wanted in &partitions {
                self.partitions
                    .get_mut(&wanted.tp)
                    .expect("assigned")
                    .fetch_in_flight = Some(wanted.epoch);
            }
            let names = partitions
                .iter()
                .map(|wanted| (wanted.tp.topic.clone(), self.topic_name(&wanted.tp.topic)))
                .collect();
            self.fetches.spawn(fetch(
                Arc::clone(&self.cluster),
                self.config.clone(),
                leader,
                partitions,
                names,
            ));
        }
    }

    fn topic_name(&mut self, topic: &str) -> Arc<str> {
        Arc::clone(
            self.topic_names
                .entry(topic.to_owned())
                .or_insert_with(|| Arc::from(topic)),
        )
    }

    /// A retriable error backs the partition off (and refreshes metadata if that can
    /// help); anything else is also reported to the application.
    pub(super) fn on_partition_error(&mut self, tp: &TopicPartition, error: Error) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.back_off(self.config.retry_backoff(), Instant::now());
        }
        if error.needs_metadata_refresh() {
            let cluster = Arc::clone(&self.cluster);
            let topic = tp.topic.clone();
            let seen_at = cluster.refreshed_at();
            tokio::spawn(async move { cluster.refresh_after_error(&topic, seen_at).await });
        }
        if !error.is_retriable() {
            self.errors.push_back(error);
        } else {
            tracing::debug!(%tp, %error, "fetch will be retried");
        }
    }

    /// Absorbs the fetches that already finished, so each partition's next fetch starts
    /// now rather than once the buffer has drained.
    pub(super) fn absorb_finished(&mut self) {
        while let Some(joined) = self.fetches.try_join_next() {
            self.absorb(joined.expect("fetch tasks do not panic"));
        }
    }

    pub(super) fn absorb(&mut self, outcome: FetchOutcome) {
        let fetched = match outcome.result {
            Ok(fetched) => fetched,
            Err((error, partitions)) => {
                for (tp, epoch) in &partitions {
                    let Some(state) = self.partitions.get_mut(tp) else {
                        continue; // unassigned meanwhile
                    };
                    if state.fetch_in_flight == Some(*epoch) {
                        state.fetch_in_flight = None;
                    }
                    self.on_partition_error(tp, error.clone());
                }
                return;
            }
        };
        for partition in fetched {
            let Some(state) = self.partitions.get_mut(&partition.tp) else {
                continue; // unassigned meanwhile
            };
            if state.fetch_in_flight == Some(partition.epoch) {
                state.fetch_in_flight = None;
            }
            if state.epoch != partition.epoch {
                continue; // sought meanwhile
            }
            match partition.result {
                Ok(Answer::Diverging { epoch, end_offset }) => {
                    state.failures = 0;
                    self.diverged(&partition.tp, epoch, end_offset);
                }
                Ok(Answer::Records(fetched)) => {
                    state.failures = 0;
                    state.fetch_offset = fetched.next_offset;
                    if fetched.last_epoch.is_some() {
                        state.last_fetched_epoch = fetched.last_epoch;
                    }
                    self.decoding.push_back(Decoding {
                        tp: partition.tp,
                        epoch: partition.epoch,
                        fetch_offset: partition.fetch_offset,
                        bytes: fetched.bytes,
                        records: fetched.records,
                    });
                }
                Err(error) if error.code() == Some(ErrorCode::OffsetOutOfRange) => {
                    let behind_a_decode = self.decoding.iter().any(|decoding| {
                        decoding.tp == partition.tp && decoding.epoch == partition.epoch
                    });
                    if behind_a_decode {
                        // This fetch started where an answer still being decoded says it
                        // ends. If that answer turns out corrupt, the offset was made up;
                        // so ask again after a back-off rather than reset the position.
                        state.back_off(self.config.retry_backoff(), Instant::now());
                    } else {
                        self.out_of_range(&partition.tp, partition.fetch_offset);
                    }
                }
                Err(error) => self.on_partition_error(&partition.tp, error),
            }
        }
    }
}

/// One fetch request to one broker, decoded into records off the caller's task.
async fn fetch(
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    leader: u32,
    partitions: Vec<Wanted>,
    names: HashMap<String, Arc<str>>,
) -> FetchOutcome {
    let request = Request::Fetch(fetch_request(&config, &partitions));
    let wait = Duration::from_millis(u64::from(config.fetch_wait_ms_max));
    let response = async {
        let connection = cluster.broker_connection(leader).await?;
        match connection.call(&request, wait).await? {
            Response::Fetch(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }
    .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            let tps = partitions
                .into_iter()
                .map(|wanted| (wanted.tp, wanted.epoch))
                .collect();
            return FetchOutcome {
                result: Err((error, tps)),
            };
        }
    };
    let mut answers = HashMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            answers.insert((topic.name.clone(), partition.partition), partition);
        }
    }
    let fetched = partitions
        .into_iter()
        .map(
            |Wanted {
                 tp,
                 fetch_offset,
                 epoch,
                 ..
             }| {
                let result = match answers.remove(&(tp.topic.clone(), tp.partition)) {
                    None => Err(Error::Protocol {
                        address: String::new(),
                        reason: format!("fetch response lacks {tp}"),
                    }),
                    Some(answer) => take_answer(
                        Arc::clone(&names[&tp.topic]),
                        tp.partition,
                        fetch_offset,
                        answer,
                    ),
                };
                FetchedPartition {
                    tp,
                    epoch,
                    fetch_offset,
                    result,
                }
            },
        )
        .collect();
    FetchOutcome {
        result: Ok(fetched),
    }
}

/// The fetch request for `partitions`: each names the leader epoch the metadata gave
/// and the epoch of the last batch fetched.
fn fetch_request(config: &ConsumerConfig, partitions: &[Wanted]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for Wanted {
        tp,
        fetch_offset,
        leader_epoch,
        last_fetched_epoch,
        ..
    } in partitions
    {
        let partition = FetchPartition {
            partition: tp.partition,
            current_leader_epoch: *leader_epoch,
            fetch_offset: *fetch_offset,
            last_fetched_epoch: last_fetched_epoch.unwrap_or(NO_EPOCH),
            partition_max_bytes: config.partition_fetch_bytes_max,
        };
        match topics.iter_mut().find(|topic| topic.name == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(FetchTopic {
                name: tp.topic.clone(),
                partitions: vec![partition],
            }),
        }
    }
    FetchRequest {
        max_wait_ms: config.fetch_wait_ms_max,
        min_bytes: config.fetch_bytes_min,
        max_bytes: config.fetch_bytes_max,
        topics,
    }
}

/// One partition's answer to a fetch from `fetch_offset`: its error, where its log
/// diverges, or its records read up to their batch headers.
fn take_answer(
    topic: Arc<str>,
    partition: u32,
    fetch_offset: u64,
    answer: FetchPartitionResponse,
) -> Result<Answer> {
    if !answer.error_code.is_ok() {
        return Err(Error::broker(answer.error_code, None));
    }
    if answer.diverging_epoch != NO_EPOCH {
        return Ok(Answer::Diverging {
            epoch: answer.diverging_epoch,
            end_offset: answer.diverging_end_offset,
        });
    }
    let (next_offset, last_epoch) = next_fetch_offset(
        &topic,
        partition,
        fetch_offset,
        answer.high_watermark,
        &answer.records,
    )?;
    Ok(Answer::Records(Fetched {
        next_offset,
        last_epoch,
        bytes: answer.records.len(),
        records: Decode::start(topic, partition, fetch_offset, answer.records),
    }))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::config::ConsumerConfig;
    use crate::consumer::tests::{batch_at, record};

    /// What a fetch task returns for one partition's answer.
    fn answered(
        tp: &TopicPartition,
        epoch: u64,
        fetch_offset: u64,
        answer: Vec<u8>,
    ) -> FetchOutcome {
        let answer = Bytes::from(answer);
        let (next_offset, last_epoch) =
            next_fetch_offset(&tp.topic, tp.partition, fetch_offset, u64::MAX, &answer).unwrap();
        FetchOutcome {
            result: Ok(vec![FetchedPartition {
                tp: tp.clone(),
                epoch,
                fetch_offset,
                result: Ok(Answer::Records(Fetched {
                    next_offset,
                    last_epoch,
                    bytes: answer.len(),
                    records: Decode::start(
                        Arc::from(&*tp.topic),
                        tp.partition,
                        fetch_offset,
                        answer,
                    ),
                })),
            }]),
        }
    }

    /// A consumer assigned `t-0` and sought to offset 0 (no broker behind it), with the
    /// partition's epoch.
    fn consumer_at_zero() -> (Consumer, TopicPartition, u64) {
        let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:1")).unwrap();
        let tp = TopicPartition::new("t", 0);
        consumer.assign(std::slice::from_ref(&tp));
        consumer.seek(&tp, 0).unwrap();
        let epoch = consumer.partitions[&tp].epoch;
        (consumer, tp, epoch)
    }

    fn answer_of(records: Vec<u8>) -> FetchPartitionResponse {
        FetchPartitionResponse {
            partition: 0,
            error_code: ErrorCode::None,
            leader_epoch: 5,
            high_watermark: 100,
            log_start_offset: 0,
            diverging_epoch: NO_EPOCH,
            diverging_end_offset: 0,
            records: Bytes::from(records),
        }
    }

    #[test]
    fn a_fetch_names_the_metadata_epoch_and_the_last_fetched_epoch() {
        let config = ConsumerConfig::new("127.0.0.1:1");
        let wanted = |partition, last_fetched_epoch| Wanted {
            tp: TopicPartition::new("t", partition),
            fetch_offset: 7,
            epoch: 1,
            leader_epoch: 4,
            last_fetched_epoch,
        };
        let request = fetch_request(&config, &[wanted(0, Some(3)), wanted(1, None)]);
        let partitions = &request.topics[0].partitions;
        assert_eq!(
            partitions
                .iter()
                .map(|partition| (partition.current_leader_epoch, partition.last_fetched_epoch))
                .collect::<Vec<_>>(),
            [(4, 3), (4, NO_EPOCH)]
        );
    }

    #[test]
    fn answers_are_taken_as_errors_divergences_or_records_with_their_last_epoch() {
        let topic: Arc<str> = Arc::from("t");
        for code in [ErrorCode::FencedLeaderEpoch, ErrorCode::UnknownLeaderEpoch] {
            let answer = FetchPartitionResponse {
                error_code: code,
                ..answer_of(Vec::new())
            };
            let error = take_answer(Arc::clone(&topic), 0, 7, answer).unwrap_err();
            assert_eq!(error.code(), Some(code));
            assert!(error.is_retriable() && error.needs_metadata_refresh());
        }
        let diverging = FetchPartitionResponse {
            diverging_epoch: 3,
            diverging_end_offset: 5,
            ..answer_of(Vec::new())
        };
        assert!(matches!(
            take_answer(Arc::clone(&topic), 0, 7, diverging),
            Ok(Answer::Diverging {
                epoch: 3,
                end_offset: 5
            })
        ));
        let records = answer_of(crate::consumer::tests::batch_of_epoch(7, 2, 5));
        let Ok(Answer::Records(fetched)) = take_answer(topic, 0, 7, records) else {
            panic!("records expected");
        };
        assert_eq!((fetched.next_offset, fetched.last_epoch), (9, Some(5)));
    }

    #[tokio::test]
    async fn the_next_fetch_names_the_epoch_of_the_last_batch_fetched() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
        let outcome = FetchOutcome {
            result: Ok(vec![FetchedPartition {
                tp: tp.clone(),
                epoch,
                fetch_offset: 0,
                result: take_answer(
                    Arc::from("t"),
                    0,
                    0,
                    answer_of(crate::consumer::tests::batch_of_epoch(0, 3, 6)),
                ),
            }]),
        };
        consumer.absorb(outcome);
        let state = &consumer.partitions[&tp];
        assert_eq!((state.fetch_offset, state.last_fetched_epoch), (3, Some(6)));

        // An answer without batches keeps it.
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
        consumer.absorb(answered(&tp, epoch, 3, Vec::new()));
        assert_eq!(consumer.partitions[&tp].last_fetched_epoch, Some(6));
    }

    #[tokio::test]
    async fn a_diverging_answer_moves_the_position_back_and_is_reported() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        consumer.seek(&tp, 20).unwrap();
        let epoch_after_seek = consumer.partitions[&tp].epoch;
        assert_ne!(epoch, epoch_after_seek);
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch_after_seek);
        consumer.absorb(FetchOutcome {
            result: Ok(vec![FetchedPartition {
                tp: tp.clone(),
                epoch: epoch_after_seek,
                fetch_offset: 20,
                result: Ok(Answer::Diverging {
                    epoch: 2,
                    end_offset: 15,
                }),
            }]),
        });
        let state = &consumer.partitions[&tp];
        assert_eq!((state.position, state.fetch_offset), (Some(15), 15));
        assert_eq!(state.last_fetched_epoch, Some(2));
        assert_eq!(state.fetch_in_flight, None);
        assert_eq!(consumer.take_truncations().len(), 1);
    }

    #[tokio::test]
    async fn a_fenced_epoch_backs_off_without_reporting_an_error() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
        consumer.absorb(FetchOutcome {
            result: Ok(vec![FetchedPartition {
                tp: tp.clone(),
                epoch,
                fetch_offset: 0,
                result: Err(Error::broker(ErrorCode::FencedLeaderEpoch, None)),
            }]),
        });
        let state = &consumer.partitions[&tp];
        assert_eq!(state.position, Some(0), "kept");
        assert!(state.retry_at.is_some());
        assert!(consumer.errors.is_empty());
    }

    #[tokio::test]
    async fn a_poll_with_records_buffered_absorbs_a_finished_fetch() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        // Records of an earlier answer are buffered, and the fetch after them has finished.
        consumer
            .buffer
            .push_back(vec![record(0, 0), record(0, 1)].into_iter());
        consumer.recount_buffer();
        let state = consumer.partitions.get_mut(&tp).unwrap();
        state.fetch_offset = 2;
        state.fetch_in_flight = Some(epoch);
        let outcome = answered(&tp, epoch, 2, batch_at(2, 4));
        let (finished, finishing) = tokio::sync::oneshot::channel();
        consumer.fetches.spawn(async move {
            let _ = finished.send(());
            outcome
        });
        // One thread: the task returns in the same poll that wakes this one.
        finishing.await.unwrap();
        let records = tokio::time::timeout(Duration::from_secs(5), consumer.poll(Duration::ZERO))
            .await
            .expect("buffered records come back at once")
            .unwrap();
        // The poll took the finished fetch in (and its decode), so the next fetch can start
        // from past it.
        let offsets: Vec<u64> = records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, [0, 1, 2, 3, 4, 5]);
        let state = &consumer.partitions[&tp];
        assert_eq!(state.fetch_offset, 6);
        assert_eq!(state.fetch_in_flight, None);
    }

    #[tokio::test]
    async fn a_corrupt_answer_refetches_from_its_start_and_drops_what_was_fetched_past_it() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        let mut corrupt = batch_at(4, 4);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        // Three answers in a row, each absorbed before the one before it is decoded: the
        // next fetch offset comes from the headers, so it moves past the corrupt batch.
        for (fetch_offset, answer) in [(0, batch_at(0, 4)), (4, corrupt), (8, batch_at(8, 4))] {
            consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
            consumer.absorb(answered(&tp, epoch, fetch_offset, answer));
        }
        assert_eq!(consumer.partitions[&tp].fetch_offset, 12);
        assert_eq!(consumer.decoding.len(), 3);

        consumer.take_decoded();
        let offsets: Vec<u64> = consumer.buffered().map(|record| record.offset).collect();
        assert_eq!(
            offsets,
            [0, 1, 2, 3],
            "only records before the corrupt batch"
        );
        let state = &consumer.partitions[&tp];
        assert_eq!(
            state.fetch_offset, 4,
            "fetched again from the corrupt answer"
        );
        assert_ne!(state.epoch, epoch, "fetches issued past it are dropped");
        assert!(state.retry_at.is_some(), "backs off before fetching again");
        assert!(
            consumer.decoding.is_empty(),
            "the answer after it is dropped"
        );
        let error = consumer
            .errors
            .pop_front()
            .expect("the corruption is reported");
        assert!(error.to_string().contains("CRC"), "{error}");
    }

    #[tokio::test]
    async fn out_of_range_behind_a_decode_backs_off_instead_of_resetting() {
        let (mut consumer, tp, epoch) = consumer_at_zero();
        // The answer's headers claim offsets up to 1003; its CRC will say otherwise.
        let mut corrupt = batch_at(0, 4);
        corrupt[23..27].copy_from_slice(&1_003u32.to_be_bytes());
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
        consumer.absorb(answered(&tp, epoch, 0, corrupt));
        assert_eq!(consumer.partitions[&tp].fetch_offset, 1_004);

        // The fetch from that made-up offset is refused before the decode is looked at.
        consumer.partitions.get_mut(&tp).unwrap().fetch_in_flight = Some(epoch);
        consumer.absorb(FetchOutcome {
            result: Ok(vec![FetchedPartition {
                tp: tp.clone(),
                epoch,
                fetch_offset: 1_004,
                result: Err(Error::broker(ErrorCode::OffsetOutOfRange, None)),
            }]),
        });
        let state = &consumer.partitions[&tp];
        assert_eq!(state.position, Some(0), "the position is not reset");
        assert!(state.retry_at.is_some() && state.fetch_in_flight.is_none());
        assert!(consumer.errors.is_empty(), "no out-of-range error reported");

        consumer.take_decoded();
        let state = &consumer.partitions[&tp];
        assert_eq!(
            state.fetch_offset, 0,
            "fetched again from the corrupt answer"
        );
        assert_ne!(state.epoch, epoch);
        let error = consumer
            .errors
            .pop_front()
            .expect("the corruption is reported");
        assert!(error.to_string().contains("CRC"), "{error}");
    }
}
