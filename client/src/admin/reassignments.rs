//! Moving a partition to other replicas (`AlterPartitionReassignments`, Kafka's
//! KIP-455), in client types: the move is recorded, then finishes in the cluster once the
//! new replicas have caught up; [`Admin::reassignment_done`] tells when.

use strata_protocol::Response;
use strata_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ReassignablePartition,
    ReassignableTopic,
};

use super::Admin;
use crate::cluster::unexpected;
use crate::error::{Error, Result};

/// The outcome for `topic`-`partition` in `response`.
fn outcome(
    topic: &str,
    partition: u32,
    response: AlterPartitionReassignmentsResponse,
) -> Result<()> {
    let answered = response
        .topics
        .into_iter()
        .find(|answered| answered.name == topic)
        .and_then(|answered| {
            answered
                .partitions
                .into_iter()
                .find(|answered| answered.partition == partition)
        })
        .ok_or_else(|| Error::Protocol {
            address: String::new(),
            reason: format!(
                "AlterPartitionReassignments response has no result for {topic}-{partition}"
            ),
        })?;
    if answered.error_code.is_ok() {
        Ok(())
    } else {
        Err(Error::broker(answered.error_code, answered.error_message))
    }
}

impl Admin {
    /// Moves partition `partition` of `topic` to `replicas` (preferred leader first): the
    /// new replicas are added and copy the partition from its leader (at the rate the
    /// leader's `replica_reassignment_throttle_bytes_per_second` allows), and once they
    /// are all in sync the replicas left out are removed, and leadership moves if its
    /// leader was one of them. Returns once the move is recorded; see
    /// [`reassignment_done`](Self::reassignment_done). Asking for the partition's original
    /// replicas while it moves cancels the move; asking again for the same target
    /// changes nothing.
    ///
    /// # Errors
    /// `InvalidReplicaAssignment` (empty, a broker twice, a broker not registered, or a
    /// new replica on a broker not alive), `ReassignmentInProgress` (it is moving to
    /// other replicas), `UnknownTopicOrPartition`, connection errors.
    ///
    /// # Cancel safety
    /// Not cancel-safe: the move may be recorded even if the future is dropped.
    ///
    /// # Example
    /// ```no_run
    /// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
    /// admin.reassign_partition("orders", 0, &[2, 3]).await?;
    /// while !admin.reassignment_done("orders", 0, &[2, 3]).await? {
    ///     tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: u32,
        replicas: &[u32],
    ) -> Result<()> {
        let request = AlterPartitionReassignmentsRequest {
            topics: vec![ReassignableTopic {
                name: topic.to_owned(),
                partitions: vec![ReassignablePartition {
                    partition,
                    replicas: replicas.to_vec(),
                }],
            }],
        }
        .into();
        let response = self.cluster.call_any(&request).await;
        // Replicas and leaders may change, whatever the answer.
        self.cluster.invalidate(topic);
        match response? {
            Response::AlterPartitionReassignments(response) => outcome(topic, partition, response),
            other => Err(unexpected(&other)),
        }
    }

    /// Whether partition `partition` of `topic` has exactly `replicas`, in that order: a
    /// move to them is done (a move in progress lists the replicas being removed too).
    ///
    /// # Errors
    /// `UnknownTopicOrPartition` if the topic or partition does not exist; connection
    /// errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn reassignment_done(
        &self,
        topic: &str,
        partition: u32,
        replicas: &[u32],
    ) -> Result<bool> {
        let described = self.describe_topic(topic).await?;
        let placed = described
            .partitions
            .iter()
            .find(|placed| placed.partition == partition)
            .ok_or_else(|| {
                Error::broker(
                    strata_protocol::ErrorCode::UnknownTopicOrPartition,
                    Some(format!("topic '{topic}' has no partition {partition}")),
                )
            })?;
        Ok(placed.replicas == replicas)
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::ErrorCode;
    use strata_protocol::messages::{ReassignablePartitionResponse, ReassignableTopicResponse};

    use super::*;

    fn response(error_code: ErrorCode) -> AlterPartitionReassignmentsResponse {
        AlterPartitionReassignmentsResponse {
            topics: vec![ReassignableTopicResponse {
                name: "orders".into(),
                partitions: vec![ReassignablePartitionResponse {
                    partition: 1,
                    error_code,
                    error_message: Some("why".into()),
                }],
            }],
        }
    }

    #[test]
    fn a_refusal_is_the_brokers_error_and_a_missing_answer_a_protocol_error() {
        assert!(outcome("orders", 1, response(ErrorCode::None)).is_ok());
        let refused = outcome("orders", 1, response(ErrorCode::ReassignmentInProgress));
        assert!(
            matches!(
                refused,
                Err(Error::Broker {
                    code: ErrorCode::ReassignmentInProgress,
                    ..
                })
            ),
            "{refused:?}"
        );
        let missing = outcome("orders", 0, response(ErrorCode::None));
        assert!(
            matches!(missing, Err(Error::Protocol { .. })),
            "{missing:?}"
        );
    }
}
