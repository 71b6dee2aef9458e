//! Metadata as one named broker has applied it, asked of that broker alone. Every other
//! Admin call goes to whichever broker answers first, which is right for using the
//! cluster but hides how far each broker's copy of the metadata lags: this one is for
//! watching a change spread (`strata bench metadata`) and for checking a broker.

use strata_protocol::Response;
use strata_protocol::messages::{MetadataRequest, MetadataResponse};

use super::Admin;
use crate::cluster::{BrokerInfo, ClusterMetadata, topic_info, unexpected};
use crate::error::Result;

impl Admin {
    /// The named `topics` (every topic with `None`) as the broker at `address` describes
    /// them, over a connection to that broker only. Topics it does not know are left
    /// out; a partition without a leader, or offline there, has `leader: None`. The
    /// answer does not change the client's metadata cache.
    ///
    /// # Errors
    /// Connection errors for `address` (after the reconnect backoff, if it failed
    /// before); `LimitExceeded` if the answer would not fit in a frame.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    ///
    /// # Example
    /// ```no_run
    /// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
    /// let seen = admin.broker_metadata("127.0.0.1:9410", Some(&["orders"])).await?;
    /// let led = seen.topics.first().is_some_and(|topic| {
    ///     topic.partitions.iter().all(|partition| partition.leader.is_some())
    /// });
    /// println!("broker at 127.0.0.1:9410 knows every leader of orders: {led}");
    /// # Ok(()) }
    /// ```
    pub async fn broker_metadata(
        &self,
        address: &str,
        topics: Option<&[&str]>,
    ) -> Result<ClusterMetadata> {
        let request = MetadataRequest {
            topics: topics.map(|names| names.iter().map(|name| (*name).to_owned()).collect()),
        }
        .into();
        let connection = self.cluster.connection(address).await?;
        match connection.call(&request, std::time::Duration::ZERO).await? {
            Response::Metadata(response) => Ok(described(&response)),
            other => Err(unexpected(&other)),
        }
    }
}

/// The brokers of a Metadata response in client types, by node id.
pub(crate) fn broker_infos(response: &MetadataResponse) -> Vec<BrokerInfo> {
    let mut brokers: Vec<BrokerInfo> = response
        .brokers
        .iter()
        .map(|broker| BrokerInfo {
            node_id: broker.node_id,
            address: format!("{}:{}", broker.host, broker.port),
        })
        .collect();
    brokers.sort_by_key(|broker| broker.node_id);
    brokers
}

/// The answer in client types: brokers and topics sorted, unknown topics left out.
fn described(response: &MetadataResponse) -> ClusterMetadata {
    let brokers = broker_infos(response);
    let mut topics: Vec<_> = response
        .topics
        .iter()
        .filter(|topic| topic.error_code.is_ok())
        .map(topic_info)
        .collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    ClusterMetadata {
        cluster_id: response.cluster_id.clone(),
        controller_id: u32::try_from(response.controller_id).ok(),
        brokers,
        topics,
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::ErrorCode;
    use strata_protocol::messages::{BrokerMetadata, NO_LEADER, PartitionMetadata, TopicMetadata};

    use super::*;

    fn partition(index: u32, leader_id: i32, error_code: ErrorCode) -> PartitionMetadata {
        PartitionMetadata {
            error_code,
            partition: index,
            leader_id,
            leader_epoch: 0,
            replicas: vec![2],
            in_sync_replicas: vec![2],
        }
    }

    #[test]
    fn unknown_topics_are_left_out_and_missing_leaders_are_none() {
        let response = MetadataResponse {
            cluster_id: "c".into(),
            controller_id: -1,
            brokers: vec![
                BrokerMetadata {
                    node_id: 3,
                    host: "127.0.0.1".into(),
                    port: 9420,
                },
                BrokerMetadata {
                    node_id: 1,
                    host: "127.0.0.1".into(),
                    port: 9400,
                },
            ],
            topics: vec![
                TopicMetadata {
                    error_code: ErrorCode::UnknownTopicOrPartition,
                    name: "gone".into(),
                    partitions: Vec::new(),
                },
                TopicMetadata {
                    error_code: ErrorCode::None,
                    name: "t".into(),
                    partitions: vec![
                        partition(1, NO_LEADER, ErrorCode::LeaderNotAvailable),
                        partition(0, 2, ErrorCode::None),
                    ],
                },
            ],
        };
        let seen = described(&response);
        assert_eq!(seen.controller_id, None);
        assert_eq!(
            seen.brokers.iter().map(|b| b.node_id).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(seen.brokers[0].address, "127.0.0.1:9400");
        assert_eq!(seen.topics.len(), 1);
        let leaders: Vec<_> = seen.topics[0].partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, [Some(2), None]);
    }
}
