//! A partition's offsets and size are known to the broker that holds it, so a
//! DescribeTopics answered by one broker of a cluster has them only for its own
//! partitions. The admin asks each partition's leader for the rest and takes each
//! partition's figures from its leader's answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use strata_protocol::messages::{DescribeTopicsRequest, DescribedTopic};
use strata_protocol::{Request, Response};

use super::broker_metadata::broker_infos;
use crate::cluster::Cluster;

/// Fills in every partition of `topics` from its leader's own answer. A leader that
/// cannot be asked leaves its partitions as they are; a one-broker cluster asks nobody.
pub(super) async fn from_leaders(cluster: &Cluster, topics: &mut [DescribedTopic]) {
    let Ok(metadata) = cluster.fetch_metadata(Some(Vec::new())).await else {
        return;
    };
    let brokers = broker_infos(&metadata);
    if brokers.len() <= 1 {
        return;
    }
    for broker in brokers {
        let led: BTreeSet<String> = topics
            .iter()
            .filter(|topic| {
                topic
                    .partitions
                    .iter()
                    .any(|partition| partition.leader_id == broker.node_id as i32)
            })
            .map(|topic| topic.name.clone())
            .collect();
        if led.is_empty() {
            continue;
        }
        let request = Request::DescribeTopics(DescribeTopicsRequest {
            names: Some(led.into_iter().collect()),
        });
        let Ok(connection) = cluster.connection(&broker.address).await else {
            continue;
        };
        let Ok(Response::DescribeTopics(answer)) = connection.call(&request, Duration::ZERO).await
        else {
            continue;
        };
        take_own(topics, broker.node_id, &answer.topics);
    }
}

/// Copies, for each partition `leader` leads, its offsets and size from `answer`.
fn take_own(topics: &mut [DescribedTopic], leader: u32, answer: &[DescribedTopic]) {
    let answered: BTreeMap<&str, &DescribedTopic> = answer
        .iter()
        .map(|topic| (topic.name.as_str(), topic))
        .collect();
    for topic in topics {
        let Some(own) = answered.get(topic.name.as_str()) else {
            continue;
        };
        for partition in &mut topic.partitions {
            if partition.leader_id != leader as i32 {
                continue;
            }
            if let Some(from) = own
                .partitions
                .iter()
                .find(|from| from.partition == partition.partition)
            {
                partition.log_start_offset = from.log_start_offset;
                partition.high_watermark = from.high_watermark;
                partition.log_end_offset = from.log_end_offset;
                partition.size_bytes = from.size_bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::ErrorCode;
    use strata_protocol::messages::DescribedPartition;

    use super::*;

    fn topic(name: &str, partitions: &[(i32, u64)]) -> DescribedTopic {
        DescribedTopic {
            error_code: ErrorCode::None,
            error_message: None,
            name: name.to_owned(),
            configs: Vec::new(),
            overridden_keys: Vec::new(),
            partitions: partitions
                .iter()
                .enumerate()
                .map(|(index, &(leader, offset))| DescribedPartition {
                    error_code: ErrorCode::None,
                    error_message: None,
                    partition: index as u32,
                    leader_id: leader,
                    leader_epoch: 0,
                    replicas: Vec::new(),
                    in_sync_replicas: Vec::new(),
                    log_start_offset: 0,
                    high_watermark: offset,
                    log_end_offset: offset,
                    size_bytes: offset * 10,
                })
                .collect(),
        }
    }

    #[test]
    fn each_partition_takes_the_figures_of_its_own_leader_only() {
        // Broker 1 answered first: it knows its partition 0 and nothing of 1 and 2.
        let mut topics = vec![topic("orders", &[(1, 5), (2, 0), (3, 0)])];
        // Broker 2's answer: its own partition 1, and zeros for those it does not hold.
        take_own(
            &mut topics,
            2,
            &[topic("orders", &[(1, 0), (2, 7), (3, 0)])],
        );
        take_own(
            &mut topics,
            3,
            &[topic("orders", &[(1, 0), (2, 0), (3, 9)])],
        );
        let offsets: Vec<(u64, u64)> = topics[0]
            .partitions
            .iter()
            .map(|partition| (partition.high_watermark, partition.size_bytes))
            .collect();
        assert_eq!(offsets, [(5, 50), (7, 70), (9, 90)]);
    }

    #[test]
    fn an_answer_without_the_topic_changes_nothing() {
        let mut topics = vec![topic("orders", &[(2, 3)])];
        take_own(&mut topics, 2, &[topic("other", &[(2, 8)])]);
        assert_eq!(topics[0].partitions[0].high_watermark, 3);
    }
}
