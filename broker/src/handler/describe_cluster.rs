//! DescribeCluster: the controller quorum, every registered broker and partition counts,
//! for `strata cluster status`. Voter and broker lags are known only to the controller,
//! so a broker that is not the controller asks it; if it cannot, those lags are unknown
//! and the rest is this broker's view.

use std::sync::Arc;

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    BROKER_STATE_ALIVE, BROKER_STATE_FENCED, BROKER_STATE_SHUTTING_DOWN, ClusterBroker,
    ClusterController, ClusterPartitions, ClusterVoter, DescribeClusterResponse, NO_CONTROLLER,
    UNKNOWN_LAG,
};

use super::Reply;
use crate::broker::Broker;
use crate::cluster::metadata::BrokerState;
use crate::group::store::OFFSETS_LOG;

pub async fn handle(broker: Arc<Broker>) -> Reply {
    let cluster = &broker.cluster;
    let controller = cluster.controller_status().await;
    let image = cluster.image();
    let quorum = cluster.quorum_status();
    let lag = |behind: Option<u64>| behind.map_or(UNKNOWN_LAG, |behind| behind as i64);
    let voters = match &controller {
        Some(status) => status
            .voters
            .iter()
            .map(|&(id, behind)| ClusterVoter {
                id,
                lag: lag(behind),
            })
            .collect(),
        None => quorum
            .voters
            .iter()
            .map(|voter| ClusterVoter {
                id: voter.id as u32,
                lag: UNKNOWN_LAG,
            })
            .collect(),
    };
    let brokers = image
        .brokers
        .values()
        .map(|record| {
            let applied_lag = controller.as_ref().and_then(|status| {
                let (_, applied) = status.applied.iter().find(|(id, _)| *id == record.id)?;
                Some(status.last_log_index.saturating_sub(*applied))
            });
            ClusterBroker {
                id: record.id,
                address: record.address.clone(),
                state: match record.state {
                    BrokerState::Alive => BROKER_STATE_ALIVE,
                    BrokerState::Fenced => BROKER_STATE_FENCED,
                    BrokerState::ShuttingDown => BROKER_STATE_SHUTTING_DOWN,
                },
                incarnation: record.incarnation,
                applied_lag: lag(applied_lag),
            }
        })
        .collect();
    // The topics' partitions, as Metadata lists them: the offsets log is internal.
    let partitions = image
        .topics
        .iter()
        .filter(|(name, _)| *name != OFFSETS_LOG)
        .flat_map(|(_, topic)| &topic.partitions);
    let count = |keep: &dyn Fn(&&crate::cluster::metadata::PartitionRecord) -> bool| {
        partitions.clone().filter(keep).count() as u32
    };
    DescribeClusterResponse {
        error_code: ErrorCode::None,
        error_message: None,
        controller: ClusterController {
            leader: controller.as_ref().map_or_else(
                || quorum.leader.map_or(NO_CONTROLLER, |leader| leader as i32),
                |status| status.leader as i32,
            ),
            term: controller
                .as_ref()
                .map_or(quorum.term, |status| status.term),
            voters,
        },
        brokers,
        partitions: ClusterPartitions {
            total: count(&|_| true),
            offline: count(&|partition| partition.leader.is_none()),
            under_replicated: count(&|partition| partition.is_under_replicated()),
        },
    }
    .into()
}
