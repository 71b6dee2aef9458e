//! The cluster's state as `DescribeCluster` reports it, in client types: the controller
//! quorum, every registered broker, and partition counts. Wire sentinels (-1 for no
//! leader or an unknown lag) become `Option`s here, so callers cannot mistake them for
//! numbers.

use strata_protocol::Response;
use strata_protocol::messages::{
    BROKER_STATE_ALIVE, BROKER_STATE_FENCED, BROKER_STATE_SHUTTING_DOWN, ClusterBroker,
    DescribeClusterRequest, DescribeClusterResponse,
};

use super::Admin;
use crate::cluster::unexpected;
use crate::error::{Error, Result};

/// The cluster as [`Admin::describe_cluster`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The controller quorum.
    pub controller: ControllerDescription,
    /// Every registered broker, by id.
    pub brokers: Vec<BrokerDescription>,
    /// Partition counts over every topic.
    pub partitions: PartitionCounts,
}

/// The controller quorum: the voters that hold the metadata log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerDescription {
    /// The leader's node id, or `None` during an election or without a quorum.
    pub leader: Option<u32>,
    /// The Raft term; each election starts a new one.
    pub term: u64,
    /// Every voter, by id.
    pub voters: Vec<VoterDescription>,
}

/// One controller voter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterDescription {
    /// The voter's node id.
    pub id: u32,
    /// Log entries the voter is behind the leader, or `None` when the answering broker
    /// does not know (only the controller leader tracks it).
    pub lag: Option<u64>,
}

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// The broker's node id.
    pub id: u32,
    /// The `host:port` clients connect to.
    pub address: String,
    /// Alive, fenced or shutting down.
    pub state: BrokerState,
    /// 1 at the broker's first registration, one more at each restart.
    pub incarnation: u64,
    /// Metadata log entries the broker has yet to apply, or `None` when not known.
    pub applied_lag: Option<u64>,
}

/// Where a broker stands with the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// It heartbeats in time.
    Alive,
    /// It missed its session timeout; its partitions have no leader until it registers
    /// again.
    Fenced,
    /// It announced a graceful shutdown.
    ShuttingDown,
    /// A state this client does not know (a newer broker's), by its wire value.
    Unknown(u8),
}

impl BrokerState {
    /// The state a wire value stands for.
    fn from_wire(state: u8) -> Self {
        match state {
            BROKER_STATE_ALIVE => BrokerState::Alive,
            BROKER_STATE_FENCED => BrokerState::Fenced,
            BROKER_STATE_SHUTTING_DOWN => BrokerState::ShuttingDown,
            other => BrokerState::Unknown(other),
        }
    }
}

impl std::fmt::Display for BrokerState {
    /// `alive`, `fenced`, `shutting_down`, or `unknown(N)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrokerState::Alive => f.write_str("alive"),
            BrokerState::Fenced => f.write_str("fenced"),
            BrokerState::ShuttingDown => f.write_str("shutting_down"),
            BrokerState::Unknown(state) => write!(f, "unknown({state})"),
        }
    }
}

/// Partition counts over every topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionCounts {
    /// Every partition.
    pub total: u32,
    /// Partitions with no leader.
    pub offline: u32,
    /// Partitions with fewer in-sync replicas than replicas.
    pub under_replicated: u32,
}

/// A wire lag: -1 (or any negative) is unknown.
fn lag(value: i64) -> Option<u64> {
    u64::try_from(value).ok()
}

impl ClusterDescription {
    fn from_wire(response: DescribeClusterResponse) -> Result<Self> {
        if !response.error_code.is_ok() {
            return Err(Error::broker(response.error_code, response.error_message));
        }
        let controller = response.controller;
        let broker = |broker: ClusterBroker| BrokerDescription {
            id: broker.id,
            address: broker.address,
            state: BrokerState::from_wire(broker.state),
            incarnation: broker.incarnation,
            applied_lag: lag(broker.applied_lag),
        };
        Ok(Self {
            controller: ControllerDescription {
                leader: u32::try_from(controller.leader).ok(),
                term: controller.term,
                voters: controller
                    .voters
                    .into_iter()
                    .map(|voter| VoterDescription {
                        id: voter.id,
                        lag: lag(voter.lag),
                    })
                    .collect(),
            },
            brokers: response.brokers.into_iter().map(broker).collect(),
            partitions: PartitionCounts {
                total: response.partitions.total,
                offline: response.partitions.offline,
                under_replicated: response.partitions.under_replicated,
            },
        })
    }
}

impl Admin {
    /// Describes the cluster: the controller leader and term, each voter's lag, every
    /// registered broker, and how many partitions are offline or under-replicated.
    ///
    /// # Errors
    /// The broker's error if it could not describe the cluster (no controller quorum
    /// reachable, or a broker that does not implement `DescribeCluster`); connection
    /// errors.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    ///
    /// # Example
    /// ```no_run
    /// # async fn example(admin: strata_client::Admin) -> strata_client::Result<()> {
    /// let cluster = admin.describe_cluster().await?;
    /// match cluster.controller.leader {
    ///     Some(leader) => println!("controller {leader}, term {}", cluster.controller.term),
    ///     None => println!("no controller leader"),
    /// }
    /// for broker in &cluster.brokers {
    ///     println!("{} at {}: {}", broker.id, broker.address, broker.state);
    /// }
    /// println!("{} partitions offline", cluster.partitions.offline);
    /// # Ok(()) }
    /// ```
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let request = DescribeClusterRequest {}.into();
        match self.cluster.call_any(&request).await? {
            Response::DescribeCluster(response) => ClusterDescription::from_wire(*response),
            other => Err(unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::ErrorCode;
    use strata_protocol::messages::{
        ClusterController, ClusterPartitions, ClusterVoter, NO_CONTROLLER, UNKNOWN_LAG,
    };

    use super::*;

    fn response(leader: i32, lag: i64, state: u8) -> DescribeClusterResponse {
        DescribeClusterResponse {
            error_code: ErrorCode::None,
            error_message: None,
            controller: ClusterController {
                leader,
                term: 4,
                voters: vec![ClusterVoter { id: 1, lag }],
            },
            brokers: vec![ClusterBroker {
                id: 1,
                address: "127.0.0.1:9400".into(),
                state,
                incarnation: 7,
                applied_lag: lag,
            }],
            partitions: ClusterPartitions {
                total: 12,
                offline: 1,
                under_replicated: 2,
            },
        }
    }

    #[test]
    fn wire_sentinels_become_none() {
        let known = ClusterDescription::from_wire(response(1, 3, BROKER_STATE_FENCED)).unwrap();
        assert_eq!(known.controller.leader, Some(1));
        assert_eq!(known.controller.term, 4);
        assert_eq!(known.controller.voters[0].lag, Some(3));
        assert_eq!(known.brokers[0].state, BrokerState::Fenced);
        assert_eq!(known.brokers[0].applied_lag, Some(3));
        assert_eq!(known.brokers[0].incarnation, 7);
        assert_eq!(
            known.partitions,
            PartitionCounts {
                total: 12,
                offline: 1,
                under_replicated: 2
            }
        );
        let unknown =
            ClusterDescription::from_wire(response(NO_CONTROLLER, UNKNOWN_LAG, 9)).unwrap();
        assert_eq!(unknown.controller.leader, None);
        assert_eq!(unknown.controller.voters[0].lag, None);
        assert_eq!(unknown.brokers[0].applied_lag, None);
        assert_eq!(unknown.brokers[0].state, BrokerState::Unknown(9));
        assert_eq!(unknown.brokers[0].state.to_string(), "unknown(9)");
    }

    #[test]
    fn a_refusal_is_the_brokers_error() {
        let mut refused = response(NO_CONTROLLER, UNKNOWN_LAG, 0);
        refused.error_code = ErrorCode::LeaderNotAvailable;
        refused.error_message = Some("no controller quorum".into());
        let error = ClusterDescription::from_wire(refused).unwrap_err();
        assert!(
            matches!(&error, Error::Broker { code: ErrorCode::LeaderNotAvailable, message } if message == "no controller quorum"),
            "{error}"
        );
    }

    #[test]
    fn states_read_as_words() {
        let states = [
            BROKER_STATE_ALIVE,
            BROKER_STATE_FENCED,
            BROKER_STATE_SHUTTING_DOWN,
        ]
        .map(|state| BrokerState::from_wire(state).to_string());
        assert_eq!(states, ["alive", "fenced", "shutting_down"]);
    }
}
