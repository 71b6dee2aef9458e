//! DescribeCluster (key 18): the cluster as the controller quorum and this broker see it,
//! for `strata cluster status`: the controller leader, its term and how far each voter's
//! log lags; every registered broker with its state and incarnation; and how many
//! partitions have no leader or too few in-sync replicas.

use crate::error::{DecodeError, ErrorCode};
use crate::wire::{Reader, Sink, Wire, wire_struct};

/// `ClusterController::leader` when there is no leader (an election is under way, or this
/// broker cannot reach a quorum).
pub const NO_CONTROLLER: i32 = -1;

/// A lag that is not known: a voter's, when this broker is not the controller leader
/// (only the leader tracks how far each voter has replicated), or a broker's, when it has
/// not reported what it applied.
pub const UNKNOWN_LAG: i64 = -1;

/// `ClusterBroker::state` of a broker that heartbeats in time.
pub const BROKER_STATE_ALIVE: u8 = 0;
/// `ClusterBroker::state` of a broker that missed its session timeout: its partitions
/// have lost their leader until it registers again.
pub const BROKER_STATE_FENCED: u8 = 1;
/// `ClusterBroker::state` of a broker that announced a graceful shutdown.
pub const BROKER_STATE_SHUTTING_DOWN: u8 = 2;

/// Asks for the cluster's state. It has no fields; a later version may add filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DescribeClusterRequest {}

impl Wire for DescribeClusterRequest {
    fn encode<S: Sink + ?Sized>(&self, _out: &mut S) {}

    fn decode(_reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {})
    }
}

wire_struct! {
    /// One controller voter.
    pub struct ClusterVoter {
        /// The voter's node id.
        pub id: u32,
        /// Log entries the voter is behind the leader's last entry, or [`UNKNOWN_LAG`].
        pub lag: i64,
    }
}

wire_struct! {
    /// The controller quorum: the Raft group that holds the metadata log.
    pub struct ClusterController {
        /// The leader's node id, or [`NO_CONTROLLER`].
        pub leader: i32,
        /// The Raft term this broker knows; each election starts a new one.
        pub term: u64,
        /// Every voter, by id.
        pub voters: Vec<ClusterVoter>,
    }
}

wire_struct! {
    /// One registered broker.
    pub struct ClusterBroker {
        /// The broker's node id.
        pub id: u32,
        /// The `host:port` clients connect to.
        pub address: String,
        /// [`BROKER_STATE_ALIVE`], [`BROKER_STATE_FENCED`] or
        /// [`BROKER_STATE_SHUTTING_DOWN`]; other values are states of later versions.
        pub state: u8,
        /// Starts at 1 and grows each time the broker registers (each start).
        pub incarnation: u64,
        /// Metadata log entries the broker is behind the last committed one, or
        /// [`UNKNOWN_LAG`].
        pub applied_lag: i64,
    }
}

wire_struct! {
    /// Partition counts over every topic.
    pub struct ClusterPartitions {
        /// Every partition.
        pub total: u32,
        /// Partitions with no leader.
        pub offline: u32,
        /// Partitions with fewer in-sync replicas than replicas.
        pub under_replicated: u32,
    }
}

wire_struct! {
    /// The cluster's state.
    pub struct DescribeClusterResponse {
        /// `None`, or why the cluster could not be described.
        pub error_code: ErrorCode,
        /// A human-readable explanation when `error_code` is not `None`.
        pub error_message: Option<String>,
        /// The controller quorum.
        pub controller: ClusterController,
        /// Every registered broker, by id.
        pub brokers: Vec<ClusterBroker>,
        /// Partition counts.
        pub partitions: ClusterPartitions,
    }
}
