//! The workload of a run, through `strata-client`: producers writing unique values
//! (producer id plus counter) round-robin over the partitions at a set rate, a consumer
//! group reading and committing, and after the faults the final drain of every
//! partition from log start to high watermark. Everything goes into the [`Recorder`].
//!
//! On a cluster the topic is replicated to every broker, and the run starts once every
//! partition has a leader and its whole replica set in sync.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use strata_client::{
    Acks, Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, Error, NewTopic,
    Producer, ProducerConfig, ProducerRecord, RebalanceListener, TopicPartition,
};
use strata_protocol::ErrorCode;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::error::ChaosError;
use super::history::{Commit, Read, Recorder, Session, WriteOutcome};
use super::roles::Roles;

/// How long stopping producers and consumers may take: outstanding writes settle, or
/// stay unknown.
const SETTLE_WAIT: Duration = Duration::from_secs(15);
/// How long a client request may wait: longer than any fault of the schedule, so a
/// paused broker's answers still arrive.
const REQUEST_TIMEOUT_MS: u64 = 10_000;
/// How long a poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(500);
/// The pause after a failed poll or lookup, so a dead broker is not spun on.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How long a new cluster may take to place the topic and get every replica in sync.
const READY_WAIT: Duration = Duration::from_secs(60);
/// How long one attempt at draining one partition may take.
const DRAIN_ATTEMPT_WAIT: Duration = Duration::from_secs(20);
/// The `min_insync_replicas` of a replicated topic: with three replicas, an
/// acknowledged write survives the loss of one.
const MIN_INSYNC_REPLICAS: u16 = 2;

/// What the workload writes and reads.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The proxies' addresses.
    pub bootstrap: String,
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Partitions of the topic.
    pub partitions: u32,
    /// Producers.
    pub producers: u32,
    /// Consumers in the group.
    pub consumers: u32,
    /// Records per second over all producers.
    pub rate: u32,
    /// The producers' acks.
    pub acks: Acks,
    /// Whether the producers are idempotent.
    pub idempotent: bool,
    /// The topic's replication factor: the number of brokers.
    pub replication_factor: u16,
}

impl Workload {
    fn client(&self) -> ClientConfig {
        ClientConfig {
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            ..ClientConfig::new(&self.bootstrap)
        }
    }

    fn consumer(&self) -> Result<Consumer, ChaosError> {
        Consumer::new(ConsumerConfig {
            client: self.client(),
            auto_offset_reset: AutoOffsetReset::Earliest,
            fetch_wait_ms_max: 200,
            enable_auto_commit: false,
            ..ConsumerConfig::default()
        })
        .map_err(ChaosError::client("build a consumer"))
    }

    /// Creates the topic with the `durability` policy; replicated, with
    /// `min_insync_replicas` 2, on a cluster. A cluster may refuse to place it until every
    /// broker has registered: that is retried until [`READY_WAIT`].
    ///
    /// # Errors
    /// If the broker refuses it.
    pub async fn create_topic(&self, durability: &str) -> Result<(), ChaosError> {
        let admin = Admin::new(self.client()).map_err(ChaosError::client("build an admin"))?;
        let mut topic =
            NewTopic::new(self.topic.clone(), self.partitions).config("durability", durability);
        if self.replication_factor > 1 {
            topic = topic
                .replication_factor(self.replication_factor)
                .config("min_insync_replicas", MIN_INSYNC_REPLICAS.to_string());
        }
        let deadline = Instant::now() + READY_WAIT;
        loop {
            match admin.create_topic(topic.clone()).await {
                Ok(()) => return Ok(()),
                // An earlier attempt created it, and its answer was lost.
                Err(error)
                    if self.replication_factor > 1
                        && error.code() == Some(ErrorCode::TopicAlreadyExists) =>
                {
                    return Ok(());
                }
                Err(error) if Instant::now() > deadline || self.replication_factor == 1 => {
                    return Err(ChaosError::client(format!("create topic {}", self.topic))(
                        error,
                    ));
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }

    /// Waits until every partition has a leader and every replica in sync, as every
    /// broker sees it (nothing to wait for on one broker).
    ///
    /// # Errors
    /// [`ChaosError::TimedOut`] after [`READY_WAIT`].
    pub async fn wait_until_replicated(&self, roles: &Roles) -> Result<(), ChaosError> {
        if self.replication_factor == 1 {
            return Ok(());
        }
        let every: Vec<usize> = (0..usize::from(self.replication_factor)).collect();
        let roles = roles.clone();
        let replicas = usize::from(self.replication_factor);
        let ready = tokio::task::spawn_blocking(move || {
            roles.wait_for(
                &every,
                READY_WAIT,
                || false,
                |views| {
                    views.iter().all(|view| {
                        view.as_ref().is_some_and(|view| {
                            view.leader.is_some() && view.in_sync.len() == replicas
                        })
                    })
                },
            )
        })
        .await
        .unwrap_or(false);
        if ready {
            Ok(())
        } else {
            Err(ChaosError::TimedOut(
                "placing the topic with every replica in sync",
            ))
        }
    }

    /// Starts the producers and consumers; they run until `stop` is cancelled, then
    /// settle (bounded) and end.
    ///
    /// # Errors
    /// If a client cannot be built from the configuration.
    pub fn start(
        &self,
        recorder: &Recorder,
        stop: &CancellationToken,
    ) -> Result<JoinSet<()>, ChaosError> {
        let mut tasks = JoinSet::new();
        for id in 0..self.producers {
            let producer = Producer::new(ProducerConfig {
                client: self.client(),
                acks: self.acks,
                idempotence: self.idempotent,
                buffer_wait_ms_max: 2_000,
                ..ProducerConfig::default()
            })
            .map_err(ChaosError::client("build a producer"))?;
            let run = produce(self.clone(), id, producer, recorder.clone(), stop.clone());
            tasks.spawn(run);
        }
        for id in 0..self.consumers {
            let mut consumer = self.consumer()?;
            let sessions = Sessions {
                reader: format!("c{id}"),
                recorder: recorder.clone(),
                open: Arc::default(),
            };
            consumer.set_rebalance_listener(sessions.clone());
            consumer
                .subscribe([self.topic.as_str()], &self.group)
                .map_err(ChaosError::client("subscribe"))?;
            let run = consume(
                self.clone(),
                sessions,
                consumer,
                recorder.clone(),
                stop.clone(),
            );
            tasks.spawn(run);
        }
        Ok(tasks)
    }

    /// Reads every partition from its log start to its high watermark into drain
    /// sessions, retrying until `deadline` (and once more for each partition left after
    /// it); a partition read to the end is marked drained. If `unavailable_allowed`, a
    /// partition that cannot be read is left undrained for the checker to report.
    ///
    /// # Errors
    /// The last error, if a partition could not be read whole by `deadline` and
    /// unavailability is not allowed.
    pub async fn drain(
        &self,
        recorder: &Recorder,
        deadline: Instant,
        unavailable_allowed: bool,
    ) -> Result<(), ChaosError> {
        let mut consumer = self.consumer()?;
        for partition in 0..self.partitions {
            let tp = TopicPartition::new(self.topic.clone(), partition);
            loop {
                let attempt = drain_partition(&mut consumer, &tp, recorder);
                let error = match tokio::time::timeout(DRAIN_ATTEMPT_WAIT, attempt).await {
                    Ok(Ok(())) => {
                        recorder.with(|history| history.drained.push(partition));
                        break;
                    }
                    Ok(Err(error)) => ChaosError::client(format!("the final drain of {tp}"))(error),
                    Err(_) => ChaosError::TimedOut("an attempt at the final drain"),
                };
                if Instant::now() > deadline {
                    if unavailable_allowed {
                        break;
                    }
                    return Err(error);
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        Ok(())
    }

    /// Reads the group's committed offsets into the history, retrying until `deadline`.
    ///
    /// # Errors
    /// The last error, if they could not be read by `deadline` and unavailability is not
    /// allowed.
    pub async fn read_final_commits(
        &self,
        recorder: &Recorder,
        deadline: Instant,
        unavailable_allowed: bool,
    ) -> Result<(), ChaosError> {
        let admin = Admin::new(self.client()).map_err(ChaosError::client("build an admin"))?;
        loop {
            match admin.group_offsets(&self.group).await {
                Ok(offsets) => {
                    recorder.with(|history| {
                        history.final_commits = offsets
                            .into_iter()
                            .map(|(tp, offset)| (tp.partition, offset))
                            .collect();
                        history.final_commits_read = true;
                    });
                    return Ok(());
                }
                Err(_) if Instant::now() > deadline && unavailable_allowed => return Ok(()),
                Err(error) if Instant::now() > deadline => {
                    return Err(ChaosError::client("reading the group's committed offsets")(
                        error,
                    ));
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
}

/// One producer: a record per tick until `stop`, each outcome recorded when it arrives.
async fn produce(
    workload: Workload,
    id: u32,
    producer: Producer,
    recorder: Recorder,
    stop: CancellationToken,
) {
    let period = Duration::from_secs_f64(f64::from(workload.producers) / f64::from(workload.rate));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut outcomes = JoinSet::new();
    let topic: Arc<str> = workload.topic.as_str().into();
    for counter in 0u64.. {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        while outcomes.try_join_next().is_some() {}
        let partition = u32::try_from(counter % u64::from(workload.partitions)).expect("fits");
        let value = format!("p{id}-{counter}");
        let index = recorder.start_write(partition, value.clone());
        let record = ProducerRecord::new(Arc::clone(&topic), value).partition(partition);
        match producer.send(record).await {
            Ok(delivery) => {
                let recorder = recorder.clone();
                outcomes.spawn(async move {
                    let outcome = match delivery.await {
                        Ok(metadata) => WriteOutcome::Acked {
                            offset: metadata.offset.expect("acks leader or all name an offset"),
                        },
                        Err(error) => failed(&error),
                    };
                    recorder.finish_write(index, outcome);
                });
            }
            Err(error) => recorder.finish_write(index, failed(&error)),
        }
    }
    let settled = async {
        producer.flush().await;
        while outcomes.join_next().await.is_some() {}
        producer.close().await;
    };
    // Past the bound, the writes still out stay unknown.
    let _ = tokio::time::timeout(SETTLE_WAIT, settled).await;
}

fn failed(error: &Error) -> WriteOutcome {
    WriteOutcome::Failed {
        error: error.to_string(),
    }
}

/// One group member: polls until `stop`, recording each record in its partition's
/// session, and commits what each poll returned.
async fn consume(
    workload: Workload,
    mut sessions: Sessions,
    mut consumer: Consumer,
    recorder: Recorder,
    stop: CancellationToken,
) {
    loop {
        let polled = tokio::select! {
            () = stop.cancelled() => break,
            polled = consumer.poll(POLL_WAIT) => polled,
        };
        let Ok(records) = polled else {
            tokio::time::sleep(RETRY_PAUSE).await;
            continue;
        };
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for record in records {
            let session = sessions.session(record.partition);
            let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
            recorder.with(|history| {
                history.reads.push(Read {
                    session,
                    offset: record.offset,
                    value: value.into_owned(),
                });
            });
            next.insert(record.partition, record.offset + 1);
        }
        let offsets: Vec<(TopicPartition, u64)> = next
            .iter()
            .map(|(partition, offset)| {
                (
                    TopicPartition::new(workload.topic.clone(), *partition),
                    *offset,
                )
            })
            .collect();
        if !offsets.is_empty() && consumer.commit_offsets(&offsets).await.is_ok() {
            let acked_us = recorder.now_us();
            recorder.with(|history| {
                history
                    .commits
                    .extend(next.iter().map(|(partition, offset)| Commit {
                        partition: *partition,
                        offset: *offset,
                        acked_us,
                        admin_reset: false,
                    }));
            });
        }
    }
    let _ = tokio::time::timeout(SETTLE_WAIT, consumer.close()).await;
}

/// A consumer's open read sessions, one per owned partition: opened by `on_assigned`,
/// closed by `on_revoked` and `on_lost`. Cloning shares them.
#[derive(Debug, Clone)]
struct Sessions {
    reader: String,
    recorder: Recorder,
    open: Arc<Mutex<BTreeMap<u32, usize>>>,
}

impl Sessions {
    fn open(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session of `partition`, opened now if the consumer returned a record of it
    /// before announcing its assignment.
    fn session(&mut self, partition: u32) -> usize {
        if let Some(session) = self.open().get(&partition) {
            return *session;
        }
        self.start(partition, self.recorder.now_us())
    }

    /// Opens a session of `partition` starting at `started_us`; returns its index.
    fn start(&self, partition: u32, started_us: u64) -> usize {
        let session = self.recorder.with(|history| {
            history.open_session(Session {
                reader: self.reader.clone(),
                partition,
                started_us,
                resumes_from_commit: true,
            })
        });
        self.open().insert(partition, session);
        session
    }
}

impl RebalanceListener for Sessions {
    fn on_assigned(&mut self, partitions: &[TopicPartition]) {
        let started_us = self.recorder.now_us();
        for tp in partitions {
            self.start(tp.partition, started_us);
        }
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        let mut open = self.open();
        for tp in partitions {
            open.remove(&tp.partition);
        }
    }
}

/// Reads `tp` from log start to its high watermark in a new drain session.
async fn drain_partition(
    consumer: &mut Consumer,
    tp: &TopicPartition,
    recorder: &Recorder,
) -> Result<(), Error> {
    consumer.assign(std::slice::from_ref(tp));
    let end = consumer.end_offsets(std::slice::from_ref(tp)).await?;
    let high_watermark = end.first().map_or(0, |(_, offset)| *offset);
    consumer.seek_to_beginning(std::slice::from_ref(tp)).await?;
    let started_us = recorder.now_us();
    let session = recorder.with(|history| {
        history.open_session(Session {
            reader: "drain".into(),
            partition: tp.partition,
            started_us,
            resumes_from_commit: false,
        })
    });
    while consumer.position(tp).await? < high_watermark {
        for record in consumer.poll(POLL_WAIT).await? {
            let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
            recorder.with(|history| {
                history.reads.push(Read {
                    session,
                    offset: record.offset,
                    value: value.into_owned(),
                });
            });
        }
    }
    Ok(())
}
