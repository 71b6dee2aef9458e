//! The cluster as the client sees it: a metadata cache and one connection per broker,
//! shared by everything a [`Producer`](crate::Producer), [`Consumer`](crate::Consumer) or
//! [`Admin`](crate::Admin) does.
//!
//! Connections are opened lazily and replaced when they close. A broker that failed is
//! retried after an exponential backoff with jitter (`reconnect_backoff_ms` doubling up
//! to `reconnect_backoff_ms_max`, ±20 %, see [`Backoff`](crate::backoff::Backoff)), so a
//! restarting broker is neither hammered nor met by every client at once. Metadata is
//! refreshed on an interval by a background task and on demand after leader errors;
//! concurrent on-demand refreshes collapse into one.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic, MetadataRequest, MetadataResponse,
    NO_LEADER,
};
use strata_protocol::{Request, Response};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::record::TopicPartition;

/// One partition's placement, as of the last metadata refresh.
///
/// # Example
/// ```no_run
/// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
/// let metadata = admin.cluster_metadata().await?;
/// for broker in &metadata.brokers {
///     println!("broker {} at {}", broker.node_id, broker.address);
/// }
/// for topic in &metadata.topics {
///     for partition in &topic.partitions {
///         println!("{}-{} led by {:?}", topic.name, partition.partition, partition.leader);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The partition index.
    pub partition: u32,
    /// The leader's node id, or `None` during an election.
    pub leader: Option<u32>,
    /// The leader's epoch.
    pub leader_epoch: u32,
    /// Node ids of every replica.
    pub replicas: Vec<u32>,
    /// Node ids of the in-sync replicas.
    pub in_sync_replicas: Vec<u32>,
}

/// One topic's partitions, by index.
///
/// # Example
/// ```no_run
/// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
/// let metadata = admin.cluster_metadata().await?;
/// for broker in &metadata.brokers {
///     println!("broker {} at {}", broker.node_id, broker.address);
/// }
/// for topic in &metadata.topics {
///     for partition in &topic.partitions {
///         println!("{}-{} led by {:?}", topic.name, partition.partition, partition.leader);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic name.
    pub name: String,
    /// Partitions, where `partitions[i].partition == i`.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicInfo {
    /// How many partitions the topic has.
    pub fn partition_count(&self) -> u32 {
        u32::try_from(self.partitions.len()).unwrap_or(u32::MAX)
    }
}

/// A broker in the cluster.
///
/// # Example
/// ```no_run
/// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
/// let metadata = admin.cluster_metadata().await?;
/// for broker in &metadata.brokers {
///     println!("broker {} at {}", broker.node_id, broker.address);
/// }
/// for topic in &metadata.topics {
///     for partition in &topic.partitions {
///         println!("{}-{} led by {:?}", topic.name, partition.partition, partition.leader);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The node id.
    pub node_id: u32,
    /// `host:port` clients connect to.
    pub address: String,
}

/// The whole cluster as one broker described it.
///
/// # Example
/// ```no_run
/// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
/// let metadata = admin.cluster_metadata().await?;
/// for broker in &metadata.brokers {
///     println!("broker {} at {}", broker.node_id, broker.address);
/// }
/// for topic in &metadata.topics {
///     for partition in &topic.partitions {
///         println!("{}-{} led by {:?}", topic.name, partition.partition, partition.leader);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// A stable id for the cluster.
    pub cluster_id: String,
    /// The controller's node id, if there is one.
    pub controller_id: Option<u32>,
    /// Live brokers.
    pub brokers: Vec<BrokerInfo>,
    /// Topics, sorted by name.
    pub topics: Vec<TopicInfo>,
}

#[derive(Default)]
struct Cache {
    brokers: HashMap<u32, String>,
    topics: HashMap<String, Arc<TopicInfo>>,
    refreshed_at: Option<Instant>,
}

#[derive(Default)]
struct Link {
    connection: Option<Arc<Connection>>,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Owns the metadata cache and the connections. Thread-safe.
pub(crate) struct Cluster {
    config: ClientConfig,
    cache: RwLock<Cache>,
    /// Counts changes to the cache's topics, so a producer can keep a topic's partition
    /// count and know when to look it up again.
    generation: AtomicU64,
    links: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Link>>>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bootstrap", &self.config.bootstrap)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster handle and its periodic metadata refresh task (which ends when the last
    /// handle is dropped). Connects to nothing yet.
    pub(crate) fn new(config: ClientConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let period = Duration::from_millis(config.metadata_refresh_ms.max(1));
        let cluster = Arc::new(Self {
            config,
            cache: RwLock::new(Cache::default()),
            generation: AtomicU64::new(0),
            links: Mutex::new(HashMap::new()),
            refresh_lock: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(refresh_periodically(Arc::downgrade(&cluster), period));
        Ok(cluster)
    }

    /// A live connection to `address`, opened if needed. After a failure, waits out the
    /// backoff before trying again.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn connection(&self, address: &str) -> Result<Arc<Connection>> {
        let link = {
            let mut links = self.links.lock().expect("links lock");
            Arc::clone(links.entry(address.to_owned()).or_default())
        };
        let mut link = link.lock().await;
        if let Some(connection) = &link.connection {
            if !connection.is_closed() {
                return Ok(Arc::clone(connection));
            }
            link.connection = None;
        }
        if let Some(retry_at) = link.retry_at {
            tokio::time::sleep_until(retry_at).await;
        }
        match Connection::connect(address, &self.config).await {
            Ok(connection) => {
                let connection = Arc::new(connection);
                *link = Link {
                    connection: Some(Arc::clone(&connection)),
                    failures: 0,
                    retry_at: None,
                };
                Ok(connection)
            }
            Err(error) => {
                link.failures = link.failures.saturating_add(1);
                let backoff = self.config.reconnect_backoff().delay(link.failures);
                link.retry_at = Some(Instant::now() + backoff);
                tracing::debug!(address, %error, ?backoff, "connect failed");
                Err(error)
            }
        }
    }

    /// A connection to any broker: known brokers first, then the bootstrap list.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn any_connection(&self) -> Result<Arc<Connection>> {
        let mut addresses: Vec<String> = {
            let cache = self.cache.read().expect("cache lock");
            cache.brokers.values().cloned().collect()
        };
        addresses.sort();
        addresses.extend(self.config.bootstrap.iter().cloned());
        addresses.dedup();
        let mut last = None;
        for address in &addresses {
            match self.connection(address).await {
                Ok(connection) => return Ok(connection),
                Err(error) => last = Some(error),
            }
        }
        let last = last.expect("the bootstrap list is not empty");
        // With one address, its own error says it all ("cannot reach broker at ...").
        if addresses.len() == 1 {
            return Err(last);
        }
        Err(Error::NoBrokerAvailable {
            last: Box::new(last),
        })
    }

    /// Sends `request` to any broker.
    pub(crate) async fn call_any(&self, request: &Request) -> Result<Response> {
        let connection = self.any_connection().await?;
        connection.call(request, Duration::ZERO).await
    }

    /// A connection to the broker with node id `node_id`.
    pub(crate) async fn broker_connection(&self, node_id: u32) -> Result<Arc<Connection>> {
        let address = self
            .cache
            .read()
            .expect("cache lock")
            .brokers
            .get(&node_id)
            .cloned();
        match address {
            Some(address) => self.connection(&address).await,
            // A leader the metadata still names after its broker left the broker list
            // (fenced or stopped): retriable, and a refresh finds the new leader.
            None => Err(Error::Broker {
                code: ErrorCode::LeaderNotAvailable,
                message: format!("the metadata names no alive broker with node id {node_id}"),
            }),
        }
    }

    /// The cached metadata of `topic`, fetched if it is not cached.
    ///
    /// # Errors
    /// [`ErrorCode::UnknownTopicOrPartition`] if the topic does not exist.
    pub(crate) async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        self.refresh(Some(&[topic.to_owned()])).await?;
        self.cached_topic(topic).ok_or_else(|| {
            Error::broker(
                ErrorCode::UnknownTopicOrPartition,
                Some(format!("topic {topic} does not exist")),
            )
        })
    }

    /// The cache's generation: it changes whenever the cached topics do (a metadata
    /// answer, an invalidation). Read before the cache, a value kept from it is current
    /// while the generation is.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn cached_topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        self.cache
            .read()
            .expect("cache lock")
            .topics
            .get(topic)
            .cloned()
    }

    /// The leader's node id of a partition, from the cache (fetching the topic if needed,
    /// or if the partition is beyond the cached count).
    pub(crate) async fn leader(&self, topic: &str, partition: u32) -> Result<u32> {
        self.leader_and_epoch(topic, partition)
            .await
            .map(|(leader, _)| leader)
    }

    /// The leader's node id of a partition and its leader epoch, as for
    /// [`leader`](Self::leader).
    pub(crate) async fn leader_and_epoch(&self, topic: &str, partition: u32) -> Result<(u32, u32)> {
        let mut info = self.topic(topic).await?;
        if info.partitions.len() <= partition as usize {
            // The topic may have grown since it was cached.
            self.refresh(Some(&[topic.to_owned()])).await?;
            info = self.topic(topic).await?;
        }
        let Some(partition_info) = info.partitions.get(partition as usize) else {
            return Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                partition_count: info.partition_count(),
            });
        };
        partition_info
            .leader
            .map(|leader| (leader, partition_info.leader_epoch))
            .ok_or_else(|| Error::LeaderNotAvailable {
                topic: topic.to_owned(),
                partition,
            })
    }

    /// Refreshes the metadata of `topics` (every cached topic if `None`).
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub(crate) async fn refresh(&self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let _single_flight = self.refresh_lock.lock().await;
        let names = match topics {
            Some(topics) => topics.to_vec(),
            None => {
                let cache = self.cache.read().expect("cache lock");
                cache.topics.keys().cloned().collect()
            }
        };
        self.fetch_metadata(Some(names)).await
    }

    /// Refreshes after an error, at most once per error wave: callers that saw the same
    /// stale metadata share one refresh.
    pub(crate) async fn refresh_after_error(&self, topic: &str, seen_at: Instant) {
        let _single_flight = self.refresh_lock.lock().await;
        let fresh = self
            .cache
            .read()
            .expect("cache lock")
            .refreshed_at
            .is_some_and(|at| at > seen_at);
        if fresh && self.cached_topic(topic).is_some() {
            return;
        }
        if let Err(error) = self.fetch_metadata(Some(vec![topic.to_owned()])).await {
            tracing::debug!(%error, topic, "metadata refresh failed");
        }
    }

    /// When the cache was last refreshed (or now, if never).
    pub(crate) fn refreshed_at(&self) -> Instant {
        self.cache
            .read()
            .expect("cache lock")
            .refreshed_at
            .unwrap_or_else(Instant::now)
    }

    /// Sends a Metadata request and folds the answer into the cache. `None` asks for
    /// every topic and replaces the cached topic set.
    pub(crate) async fn fetch_metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse> {
        let all = topics.is_none();
        let request = Request::Metadata(MetadataRequest { topics });
        let response = match self.call_any(&request).await? {
            Response::Metadata(response) => response,
            other => return Err(unexpected(&other)),
        };
        let mut cache = self.cache.write().expect("cache lock");
        cache.brokers = response
            .brokers
            .iter()
            .map(|broker| (broker.node_id, format!("{}:{}", broker.host, broker.port)))
            .collect();
        if all {
            cache.topics.clear();
        }
        for topic in &response.topics {
            if topic.error_code.is_ok() {
                cache
                    .topics
                    .insert(topic.name.clone(), Arc::new(topic_info(topic)));
            } else {
                cache.topics.remove(&topic.name);
            }
        }
        cache.refreshed_at = Some(Instant::now());
        self.generation.fetch_add(1, Ordering::Release);
        Ok(response)
    }

    /// Forgets a topic (after it was deleted or changed through Admin).
    pub(crate) fn invalidate(&self, topic: &str) {
        let mut cache = self.cache.write().expect("cache lock");
        cache.topics.remove(topic);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Looks offsets up by time (or [`EARLIEST_TIMESTAMP`] / [`LATEST_TIMESTAMP`]), one
    /// request per leader. Here rather than in the consumer because the admin's offset
    /// lookups need it too.
    ///
    /// A new leader answers `OffsetNotAvailable` until its high watermark reaches the
    /// log end it took over (KIP-207): its answer could still be below what consumers
    /// read from the old leader. Those partitions are asked again after `backoff`,
    /// until `request_timeout_ms` has passed; then the error is theirs, and it is
    /// retriable. It is never taken for a missing offset.
    ///
    /// [`EARLIEST_TIMESTAMP`]: strata_protocol::messages::EARLIEST_TIMESTAMP
    /// [`LATEST_TIMESTAMP`]: strata_protocol::messages::LATEST_TIMESTAMP
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub(crate) async fn list_offsets(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
        backoff: Backoff,
    ) -> Vec<(TopicPartition, Result<u64>)> {
        let deadline = Instant::now() + self.config.request_timeout();
        let mut results = Vec::with_capacity(partitions.len());
        let mut asking = partitions.to_vec();
        let mut failures = 0;
        loop {
            let answers = self.list_offsets_once(&asking, timestamp).await;
            let (unavailable, done): (Vec<_>, Vec<_>) = answers
                .into_iter()
                .partition(|(_, result)| offset_not_available(result));
            results.extend(done);
            failures += 1;
            let retry_at = Instant::now() + backoff.delay(failures);
            if unavailable.is_empty() || retry_at > deadline {
                results.extend(unavailable);
                return results;
            }
            tracing::debug!(
                partitions = unavailable.len(),
                "a new leader has no offsets to give yet (OffsetNotAvailable); asking again"
            );
            asking = unavailable.into_iter().map(|(tp, _)| tp).collect();
            tokio::time::sleep_until(retry_at).await;
        }
    }

    /// One round of [`list_offsets`](Self::list_offsets), without retries.
    async fn list_offsets_once(
        &self,
        partitions: &[TopicPartition],
        timestamp: i64,
    ) -> Vec<(TopicPartition, Result<u64>)> {
        let mut results = Vec::new();
        let mut by_leader: BTreeMap<u32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in partitions {
            match self.leader(&tp.topic, tp.partition).await {
                Ok(leader) => by_leader.entry(leader).or_default().push(tp.clone()),
                Err(error) => results.push((tp.clone(), Err(error))),
            }
        }
        for (leader, tps) in by_leader {
            let mut topics: Vec<ListOffsetsTopic> = Vec::new();
            for tp in &tps {
                let partition = ListOffsetsPartition {
                    partition: tp.partition,
                    timestamp,
                };
                match topics.iter_mut().find(|topic| topic.name == tp.topic) {
                    Some(topic) => topic.partitions.push(partition),
                    None => topics.push(ListOffsetsTopic {
                        name: tp.topic.clone(),
                        partitions: vec![partition],
                    }),
                }
            }
            let request = Request::ListOffsets(ListOffsetsRequest { topics });
            let response = async {
                let connection = self.broker_connection(leader).await?;
                match connection.call(&request, Duration::ZERO).await? {
                    Response::ListOffsets(response) => Ok(response),
                    other => Err(unexpected(&other)),
                }
            }
            .await;
            let response = match response {
                Ok(response) => response,
                Err(error) => {
                    results.extend(tps.into_iter().map(|tp| (tp, Err(error.clone()))));
                    continue;
                }
            };
            let mut answers = HashMap::new();
            for topic in response.topics {
                for partition in topic.partitions {
                    answers.insert((topic.name.clone(), partition.partition), partition);
                }
            }
            for tp in tps {
                let result = match answers.remove(&(tp.topic.clone(), tp.partition)) {
                    Some(answer) if answer.error_code.is_ok() => {
                        u64::try_from(answer.offset).map_err(|_| Error::NoOffsetFound)
                    }
                    Some(answer) => Err(Error::broker(answer.error_code, None)),
                    None => Err(Error::Protocol {
                        address: String::new(),
                        reason: format!("ListOffsets response lacks {tp}"),
                    }),
                };
                results.push((tp, result));
            }
        }
        results
    }
}

/// Whether a lookup failed because the leader is new and its offsets not yet known.
fn offset_not_available(result: &Result<u64>) -> bool {
    matches!(result, Err(error) if error.code() == Some(ErrorCode::OffsetNotAvailable))
}

pub(crate) fn topic_info(topic: &strata_protocol::messages::TopicMetadata) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = topic
        .partitions
        .iter()
        .map(|partition| PartitionInfo {
            partition: partition.partition,
            leader: (partition.leader_id != NO_LEADER && partition.error_code.is_ok())
                .then(|| u32::try_from(partition.leader_id).ok())
                .flatten(),
            leader_epoch: partition.leader_epoch,
            replicas: partition.replicas.clone(),
            in_sync_replicas: partition.in_sync_replicas.clone(),
        })
        .collect();
    partitions.sort_by_key(|partition| partition.partition);
    TopicInfo {
        name: topic.name.clone(),
        partitions,
    }
}

pub(crate) fn unexpected(response: &Response) -> Error {
    Error::Protocol {
        address: String::new(),
        reason: format!("unexpected {:?} response", response.api_key()),
    }
}

async fn refresh_periodically(cluster: Weak<Cluster>, period: Duration) {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        let has_topics = !cluster.cache.read().expect("cache lock").topics.is_empty();
        if has_topics && let Err(error) = cluster.refresh(None).await {
            tracing::debug!(%error, "periodic metadata refresh failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use strata_protocol::messages::{
        BrokerMetadata, LATEST_TIMESTAMP, ListOffsetsPartitionResponse, ListOffsetsResponse,
        ListOffsetsTopicResponse, PartitionMetadata, TopicMetadata,
    };

    use super::*;
    use crate::test_support::scripted_broker;

    /// A broker leading `t-0` whose ListOffsets answers `OffsetNotAvailable` `refusals`
    /// times, then offset 42; and the number of ListOffsets it was sent.
    async fn new_leader(refusals: usize) -> (String, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let port = Arc::new(AtomicU64::new(0));
        let (counted, known_port) = (Arc::clone(&asked), Arc::clone(&port));
        let address = scripted_broker(move |request| match request {
            Request::Metadata(_) => Response::from(MetadataResponse {
                cluster_id: "c".into(),
                controller_id: 0,
                brokers: vec![BrokerMetadata {
                    node_id: 0,
                    host: "127.0.0.1".into(),
                    port: known_port.load(Ordering::Acquire) as u16,
                }],
                topics: vec![TopicMetadata {
                    error_code: ErrorCode::None,
                    name: "t".into(),
                    partitions: vec![PartitionMetadata {
                        error_code: ErrorCode::None,
                        partition: 0,
                        leader_id: 0,
                        leader_epoch: 3,
                        replicas: vec![0],
                        in_sync_replicas: vec![0],
                    }],
                }],
            }),
            Request::ListOffsets(_) => {
                let refused = counted.fetch_add(1, Ordering::AcqRel) < refusals;
                Response::from(ListOffsetsResponse {
                    topics: vec![ListOffsetsTopicResponse {
                        name: "t".into(),
                        partitions: vec![ListOffsetsPartitionResponse {
                            partition: 0,
                            error_code: if refused {
                                ErrorCode::OffsetNotAvailable
                            } else {
                                ErrorCode::None
                            },
                            timestamp: -1,
                            offset: if refused { -1 } else { 42 },
                        }],
                    }],
                })
            }
            other => panic!("unexpected request {other:?}"),
        })
        .await;
        let bound: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
        port.store(u64::from(bound), Ordering::Release);
        (address, asked)
    }

    fn cluster(address: &str, request_timeout_ms: u64) -> Arc<Cluster> {
        Cluster::new(ClientConfig {
            request_timeout_ms,
            ..ClientConfig::new(address)
        })
        .unwrap()
    }

    #[tokio::test]
    async fn offset_not_available_is_asked_again_after_a_backoff_not_taken_for_an_offset() {
        let (address, asked) = new_leader(2).await;
        let cluster = cluster(&address, 30_000);
        let tp = TopicPartition::new("t", 0);
        let found = cluster
            .list_offsets(
                std::slice::from_ref(&tp),
                LATEST_TIMESTAMP,
                Backoff::new(1, 5),
            )
            .await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.as_ref().ok(), Some(&42));
        assert_eq!(asked.load(Ordering::Acquire), 3);
    }

    #[tokio::test]
    async fn offset_not_available_past_the_request_timeout_stays_a_retriable_error() {
        let (address, _) = new_leader(usize::MAX).await;
        let cluster = cluster(&address, 50);
        let tp = TopicPartition::new("t", 0);
        let found = cluster
            .list_offsets(
                std::slice::from_ref(&tp),
                LATEST_TIMESTAMP,
                Backoff::new(20, 20),
            )
            .await;
        let error = found[0].1.clone().unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::OffsetNotAvailable));
        assert!(error.is_retriable());
    }
}
