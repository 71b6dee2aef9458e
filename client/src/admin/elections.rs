//! Partition leader elections (`ElectLeaders`), in client types: a preferred election
//! hands each partition back to its first replica, an unclean one gives a partition with
//! no leader any alive replica. The wire's "no leader" sentinel becomes an `Option`, and a
//! refused election the broker's error.

use strata_protocol::messages::{
    ElectLeadersPartitionResponse, ElectLeadersRequest, ElectLeadersResponse, ElectLeadersTopic,
    NO_ELECTED_LEADER,
};
use strata_protocol::{ErrorCode, Response};

use super::Admin;
use crate::cluster::unexpected;
use crate::error::{Error, Result};

/// One partition's outcome of [`Admin::elect_leaders`].
#[derive(Debug, Clone)]
pub struct ElectResult {
    /// The partition index.
    pub partition: u32,
    /// The partition's leader after the request: the one elected, or on a refusal the one
    /// it has; `None` if it has none.
    pub leader: Option<u32>,
    /// That leader's epoch.
    pub leader_epoch: u32,
    /// `Ok` if a leader was elected; else why not: `ElectionNotNeeded` (the preferred
    /// replica leads already, or an unclean election of a partition that has a leader),
    /// `EligibleLeadersNotAvailable` (no replica may lead), `UnknownTopicOrPartition`.
    pub result: Result<()>,
}

impl ElectResult {
    /// Whether the partition already had the leader this election would choose (the
    /// preferred replica leads already, or an unclean election found a leader): nothing
    /// was done, and nothing is wrong.
    pub fn not_needed(&self) -> bool {
        matches!(
            &self.result,
            Err(Error::Broker {
                code: ErrorCode::ElectionNotNeeded,
                ..
            })
        )
    }

    fn from_wire(partition: ElectLeadersPartitionResponse) -> Self {
        let result = if partition.error_code.is_ok() {
            Ok(())
        } else {
            Err(Error::broker(partition.error_code, partition.error_message))
        };
        Self {
            partition: partition.partition,
            leader: (partition.leader != NO_ELECTED_LEADER).then_some(partition.leader),
            leader_epoch: partition.leader_epoch,
            result,
        }
    }
}

/// The results for `topic` in `response`, by partition.
fn results(topic: &str, response: ElectLeadersResponse) -> Result<Vec<ElectResult>> {
    let answered = response
        .topics
        .into_iter()
        .find(|answered| answered.name == topic)
        .ok_or_else(|| Error::Protocol {
            address: String::new(),
            reason: format!("ElectLeaders response has no result for topic {topic}"),
        })?;
    let mut results: Vec<ElectResult> = answered
        .partitions
        .into_iter()
        .map(ElectResult::from_wire)
        .collect();
    results.sort_by_key(|result| result.partition);
    Ok(results)
}

impl Admin {
    /// Elects leaders for `partitions` of `topic`, or for all its partitions if
    /// `partitions` is empty. Each partition succeeds or fails on its own.
    ///
    /// A preferred election (`unclean = false`) makes each partition's preferred replica
    /// (the first in its replica list) its leader, if that replica is alive and in sync:
    /// use it to move leadership back after a failover. An unclean election
    /// (`unclean = true`) is only for a partition with no leader: it elects any alive
    /// replica, in sync or not, so **acknowledged records that only the lost in-sync
    /// replicas held are lost**.
    ///
    /// # Errors
    /// The outer error if the request as a whole failed (no broker reachable, a broker
    /// without `ElectLeaders`) or, for all partitions, `UnknownTopicOrPartition`; per
    /// partition, see [`ElectResult::result`].
    ///
    /// # Cancel safety
    /// Not cancel-safe: the elections may happen even if the future is dropped.
    ///
    /// # Example
    /// ```no_run
    /// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
    /// for elected in admin.elect_leaders(false, "orders", &[]).await? {
    ///     match elected.result {
    ///         Ok(()) => println!("{}: leader {:?}", elected.partition, elected.leader),
    ///         Err(error) => println!("{}: {error}", elected.partition),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn elect_leaders(
        &self,
        unclean: bool,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Vec<ElectResult>> {
        let partitions = if partitions.is_empty() {
            let described = self.describe_topic(topic).await?;
            (0..described.partition_count()).collect()
        } else {
            partitions.to_vec()
        };
        let request = ElectLeadersRequest {
            unclean,
            topics: vec![ElectLeadersTopic {
                name: topic.to_owned(),
                partitions,
            }],
        }
        .into();
        let response = self.cluster.call_any(&request).await;
        // Leaders may have moved, whatever the answer.
        self.cluster.invalidate(topic);
        match response? {
            Response::ElectLeaders(response) => results(topic, response),
            other => Err(unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::messages::ElectLeadersTopicResponse;

    use super::*;

    fn answered(
        partition: u32,
        error_code: ErrorCode,
        leader: u32,
    ) -> ElectLeadersPartitionResponse {
        ElectLeadersPartitionResponse {
            partition,
            error_code,
            error_message: (!error_code.is_ok()).then(|| "why".to_owned()),
            leader,
            leader_epoch: 3,
        }
    }

    fn response(partitions: Vec<ElectLeadersPartitionResponse>) -> ElectLeadersResponse {
        ElectLeadersResponse {
            topics: vec![ElectLeadersTopicResponse {
                name: "orders".into(),
                partitions,
            }],
        }
    }

    #[test]
    fn outcomes_become_results_by_partition() {
        let results = results(
            "orders",
            response(vec![
                answered(2, ErrorCode::EligibleLeadersNotAvailable, NO_ELECTED_LEADER),
                answered(0, ErrorCode::None, 1),
                answered(1, ErrorCode::ElectionNotNeeded, 2),
            ]),
        )
        .unwrap();
        let partitions: Vec<u32> = results.iter().map(|result| result.partition).collect();
        assert_eq!(partitions, [0, 1, 2]);
        assert!(results[0].result.is_ok());
        assert_eq!(results[0].leader, Some(1));
        assert_eq!(results[0].leader_epoch, 3);
        assert!(results[1].not_needed());
        assert_eq!(results[2].leader, None);
        assert!(!results[2].not_needed());
        assert!(
            matches!(&results[2].result, Err(Error::Broker { code: ErrorCode::EligibleLeadersNotAvailable, message }) if message == "why"),
            "{:?}",
            results[2].result
        );
    }

    #[test]
    fn a_response_without_the_topic_is_a_protocol_error() {
        let error = results("payments", response(Vec::new())).unwrap_err();
        assert!(matches!(error, Error::Protocol { .. }), "{error}");
    }
}
