//! Cluster administration: topics, partitions, metadata, consumer groups, the cluster's
//! state, partition leader elections.

mod broker_metadata;
mod cluster;
mod elections;
mod groups;
mod leader_offsets;
mod reassignments;

use std::sync::Arc;

use strata_protocol::messages::{
    AlterTopicConfigsRequest, ConfigEntry, CreatableTopic, CreatePartitionsRequest,
    CreateTopicsRequest, DeleteTopicsRequest, DescribeTopicsRequest, DescribedTopic,
    PartitionCountChange, TopicConfigChange, TopicResult,
};
use strata_protocol::{ErrorCode, Request, Response};

use crate::backoff::Backoff;
use crate::cluster::{Cluster, ClusterMetadata, TopicInfo, unexpected};
use crate::config::ClientConfig;
use crate::error::{Error, Result};

pub use cluster::{
    BrokerDescription, BrokerState, ClusterDescription, ControllerDescription, PartitionCounts,
    VoterDescription,
};
pub use elections::ElectResult;
pub use groups::{
    GroupDescription, GroupListing, GroupMemberDescription, GroupPartitionOffset, OffsetSpec,
};

/// Timeout the broker gets for topic changes.
const ADMIN_TIMEOUT_MS: u32 = 30_000;

/// A topic to create.
///
/// # Example
/// ```
/// use strata_client::NewTopic;
///
/// let topic = NewTopic::new("orders", 12).config("retention_ms", "86400000");
/// assert_eq!(topic.replication_factor, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The name: 1 to 249 characters from `[A-Za-z0-9._-]`.
    pub name: String,
    /// Partitions to create.
    pub partition_count: u32,
    /// Copies of each partition.
    pub replication_factor: u16,
    /// Overrides of the broker's topic defaults.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partition_count` partitions and one replica each.
    pub fn new(name: impl Into<String>, partition_count: u32) -> Self {
        Self {
            name: name.into(),
            partition_count,
            replication_factor: 1,
            configs: Vec::new(),
        }
    }

    /// Sets the replication factor.
    #[must_use]
    pub fn replication_factor(mut self, replication_factor: u16) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    /// Adds a configuration override.
    #[must_use]
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// A topic as [`Admin::describe_topic`] reports it.
///
/// # Example
/// ```no_run
/// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
/// let topic = admin.describe_topic("orders").await?;
/// println!("{} has {} partitions", topic.name, topic.partitions.len());
/// # Ok(()) }
/// ```
pub type TopicDescription = TopicInfo;

/// One partition as [`Admin::describe_topics`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDetails {
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
    /// The first offset in the log.
    pub log_start_offset: u64,
    /// Offsets below this are visible to consumers.
    pub high_watermark: u64,
    /// The offset the next record will get.
    pub log_end_offset: u64,
    /// Bytes on the leader's disk.
    pub size_bytes: u64,
    /// Why the partition is offline (its data failed its checks when the broker opened
    /// it: the file and the damage), or `None` when it is serving.
    pub offline: Option<String>,
}

/// A topic in detail: its effective configs and its partitions' offsets and sizes.
///
/// # Example
/// ```no_run
/// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
/// for (name, details) in admin.describe_topics(Some(&["orders"])).await? {
///     let details = details?;
///     let bytes: u64 = details.partitions.iter().map(|p| p.size_bytes).sum();
///     println!("{name}: {bytes} bytes, configs {:?}", details.configs);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDetails {
    /// The topic name.
    pub name: String,
    /// Every effective config, as `(key, value)`, sorted by key.
    pub configs: Vec<(String, String)>,
    /// Keys of `configs` the topic overrides (its value differs from the broker's
    /// default), sorted.
    pub overridden_keys: Vec<String>,
    /// Partitions, by index.
    pub partitions: Vec<PartitionDetails>,
}

impl TopicDetails {
    fn from_wire(topic: DescribedTopic) -> Result<Self> {
        if !topic.error_code.is_ok() {
            return Err(Error::broker(topic.error_code, topic.error_message));
        }
        let mut configs: Vec<(String, String)> = topic
            .configs
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect();
        configs.sort();
        let mut overridden_keys = topic.overridden_keys;
        overridden_keys.sort();
        let partitions = topic
            .partitions
            .into_iter()
            .map(|partition| PartitionDetails {
                partition: partition.partition,
                leader: u32::try_from(partition.leader_id).ok(),
                leader_epoch: partition.leader_epoch,
                replicas: partition.replicas,
                in_sync_replicas: partition.in_sync_replicas,
                log_start_offset: partition.log_start_offset,
                high_watermark: partition.high_watermark,
                log_end_offset: partition.log_end_offset,
                size_bytes: partition.size_bytes,
                offline: (!partition.error_code.is_ok()).then(|| {
                    partition
                        .error_message
                        .unwrap_or_else(|| partition.error_code.to_string())
                }),
            })
            .collect();
        Ok(Self {
            name: topic.name,
            configs,
            overridden_keys,
            partitions,
        })
    }
}

/// Administers topics and reads cluster metadata. Cheap to clone and thread-safe; clones
/// share connections.
///
/// # Example
/// ```no_run
/// use strata_client::{Admin, ClientConfig, NewTopic};
///
/// # async fn example() -> strata_client::Result<()> {
/// let admin = Admin::new(ClientConfig::new("127.0.0.1:9400"))?;
/// admin.create_topic(NewTopic::new("orders", 6)).await?;
/// admin.add_partitions("orders", 12).await?;
/// assert_eq!(admin.describe_topic("orders").await?.partitions.len(), 12);
/// println!("{:?}", admin.list_topics().await?);
/// admin.delete_topic("orders").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
    /// Backoff of retried coordinator requests (`reconnect_backoff_ms` and its max).
    backoff: Backoff,
}

impl Admin {
    /// An admin client. Connects lazily.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`], or [`Error::InvalidBootstrap`] for a bootstrap address
    /// that is not `host:port`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(config: ClientConfig) -> Result<Self> {
        Ok(Self {
            backoff: config.reconnect_backoff(),
            cluster: Cluster::new(config)?,
        })
    }

    /// Creates topics; each succeeds or fails on its own.
    ///
    /// # Errors
    /// The outer error if the request as a whole failed (no broker reachable, timeout);
    /// per topic, the broker's error (`TopicAlreadyExists`, `InvalidTopic`, ...).
    ///
    /// # Cancel safety
    /// Not cancel-safe: the topics may be created even if the future is dropped.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<Vec<(String, Result<()>)>> {
        let request = Request::CreateTopics(CreateTopicsRequest {
            topics: topics
                .iter()
                .map(|topic| CreatableTopic {
                    name: topic.name.clone(),
                    partition_count: topic.partition_count,
                    replication_factor: topic.replication_factor,
                    configs: topic
                        .configs
                        .iter()
                        .map(|(key, value)| ConfigEntry {
                            key: key.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect(),
            timeout_ms: ADMIN_TIMEOUT_MS,
            validate_only: false,
        });
        match self.cluster.call_any(&request).await? {
            Response::CreateTopics(response) => Ok(self.results(response.topics)),
            other => Err(unexpected(&other)),
        }
    }

    /// Creates one topic.
    ///
    /// # Errors
    /// As for [`create_topics`](Self::create_topics), flattened.
    ///
    /// # Cancel safety
    /// Not cancel-safe (see [`create_topics`](Self::create_topics)).
    pub async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        single(self.create_topics(std::slice::from_ref(&topic)).await?)
    }

    /// Deletes topics and all their data; each succeeds or fails on its own.
    ///
    /// # Errors
    /// As for [`create_topics`](Self::create_topics).
    ///
    /// # Cancel safety
    /// Not cancel-safe.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<Vec<(String, Result<()>)>> {
        let request = Request::DeleteTopics(DeleteTopicsRequest {
            names: names.iter().map(|name| (*name).to_owned()).collect(),
            timeout_ms: ADMIN_TIMEOUT_MS,
        });
        match self.cluster.call_any(&request).await? {
            Response::DeleteTopics(response) => Ok(self.results(response.topics)),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes one topic.
    ///
    /// # Errors
    /// As for [`delete_topics`](Self::delete_topics), flattened.
    ///
    /// # Cancel safety
    /// Not cancel-safe.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        single(self.delete_topics(&[name]).await?)
    }

    /// Grows a topic to `partition_count` partitions in total.
    ///
    /// # Errors
    /// `InvalidPartitions` if that would not grow it; the errors of
    /// [`create_topics`](Self::create_topics).
    ///
    /// # Cancel safety
    /// Not cancel-safe.
    pub async fn add_partitions(&self, topic: &str, partition_count: u32) -> Result<()> {
        let request = Request::CreatePartitions(CreatePartitionsRequest {
            topics: vec![PartitionCountChange {
                name: topic.to_owned(),
                partition_count,
            }],
            timeout_ms: ADMIN_TIMEOUT_MS,
            validate_only: false,
        });
        match self.cluster.call_any(&request).await? {
            Response::CreatePartitions(response) => single(self.results(response.topics)),
            other => Err(unexpected(&other)),
        }
    }

    /// Describes one topic, fresh from a broker.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition` if it does not exist; connection errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        self.cluster
            .fetch_metadata(Some(vec![topic.to_owned()]))
            .await?;
        self.cluster
            .cached_topic(topic)
            .map(|info| (*info).clone())
            .ok_or_else(|| {
                Error::broker(
                    ErrorCode::UnknownTopicOrPartition,
                    Some(format!("topic {topic} does not exist")),
                )
            })
    }

    /// Sets some of a live topic's configs (`retention_ms`, `durability`, ...); keys not
    /// listed keep their values. The change applies at once and is persisted.
    ///
    /// # Errors
    /// `UnknownTopicOrPartition`, `InvalidConfig` naming the bad key or value, connection
    /// errors.
    ///
    /// # Cancel safety
    /// Not cancel-safe: the change may be applied even if the future is dropped.
    ///
    /// # Example
    /// ```no_run
    /// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
    /// admin.alter_topic_configs("orders", &[("retention_ms", "3600000")]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn alter_topic_configs(&self, topic: &str, configs: &[(&str, &str)]) -> Result<()> {
        let request = Request::AlterTopicConfigs(AlterTopicConfigsRequest {
            topics: vec![TopicConfigChange {
                name: topic.to_owned(),
                configs: configs
                    .iter()
                    .map(|(key, value)| ConfigEntry {
                        key: (*key).to_owned(),
                        value: (*value).to_owned(),
                    })
                    .collect(),
            }],
            validate_only: false,
        });
        match self.cluster.call_any(&request).await? {
            Response::AlterTopicConfigs(response) => single(self.results(response.topics)),
            other => Err(unexpected(&other)),
        }
    }

    /// Describes topics in detail (configs, offsets, sizes): the named ones, or every
    /// topic with `None`. Each topic succeeds or fails on its own. In a cluster each
    /// partition's offsets and size come from its leader, asked in turn.
    ///
    /// # Errors
    /// The outer error if the request as a whole failed; per topic,
    /// `UnknownTopicOrPartition` if it does not exist.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn describe_topics(
        &self,
        names: Option<&[&str]>,
    ) -> Result<Vec<(String, Result<TopicDetails>)>> {
        let request = Request::DescribeTopics(DescribeTopicsRequest {
            names: names.map(|names| names.iter().map(|name| (*name).to_owned()).collect()),
        });
        let mut topics = match self.cluster.call_any(&request).await? {
            Response::DescribeTopics(response) => response.topics,
            other => return Err(unexpected(&other)),
        };
        leader_offsets::from_leaders(&self.cluster, &mut topics).await;
        Ok(topics
            .into_iter()
            .map(|topic| (topic.name.clone(), TopicDetails::from_wire(topic)))
            .collect())
    }

    /// The names of every topic, sorted.
    ///
    /// # Errors
    /// Connection errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let metadata = self.cluster_metadata().await?;
        Ok(metadata
            .topics
            .into_iter()
            .map(|topic| topic.name)
            .collect())
    }

    /// Brokers, controller and every topic.
    ///
    /// # Errors
    /// Connection errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn cluster_metadata(&self) -> Result<ClusterMetadata> {
        let response = self.cluster.fetch_metadata(None).await?;
        let brokers = broker_metadata::broker_infos(&response);
        let mut topics: Vec<TopicInfo> = response
            .topics
            .iter()
            .filter(|topic| topic.error_code.is_ok())
            .filter_map(|topic| {
                self.cluster
                    .cached_topic(&topic.name)
                    .map(|info| (*info).clone())
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ClusterMetadata {
            cluster_id: response.cluster_id,
            controller_id: u32::try_from(response.controller_id).ok(),
            brokers,
            topics,
        })
    }

    fn results(&self, topics: Vec<TopicResult>) -> Vec<(String, Result<()>)> {
        topics
            .into_iter()
            .map(|topic| {
                self.cluster.invalidate(&topic.name);
                let result = if topic.error_code.is_ok() {
                    Ok(())
                } else {
                    Err(Error::broker(topic.error_code, topic.error_message))
                };
                (topic.name, result)
            })
            .collect()
    }
}

fn single(results: Vec<(String, Result<()>)>) -> Result<()> {
    match results.into_iter().next() {
        Some((_, result)) => result,
        None => Err(Error::Protocol {
            address: String::new(),
            reason: "admin response has no result".into(),
        }),
    }
}
