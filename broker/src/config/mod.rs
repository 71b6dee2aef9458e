//! Broker configuration: every key, its default, and how file, environment and flags
//! combine.
//!
//! Precedence, highest first: command-line flags, `STRATA_<KEY>` environment variables,
//! the TOML file given with `--config`, built-in defaults. Every key can be set all three
//! ways; the environment variable for `segment_bytes` is `STRATA_SEGMENT_BYTES`. Unknown
//! keys in the file are errors; unknown `STRATA_*` variables are ignored (the CLI uses
//! some too).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod cluster;
mod error;
mod load;
mod topic;
mod validate;

pub use cluster::{CLUSTER_LISTEN_DEFAULT, ClusterConfigError, Peer, PeerSyntaxError};
pub use error::{ConfigError, ValueError};
pub use load::Override;
pub use topic::{SEGMENT_BYTES_MIN, TopicConfig, TopicConfigError};

/// How a partition's writes reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityPolicy {
    /// fsync after every batch (group-committed across concurrent producers).
    EveryBatch,
    /// fsync every `flush_interval_ms`.
    Interval,
    /// Never fsync; the OS writes back on its own schedule.
    Never,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Text for people, coloured only on a terminal and without `NO_COLOR`.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Every broker setting. Limits are named `<noun>_max` with units last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This broker's id in the cluster.
    pub node_id: u32,
    /// Address the client protocol listens on.
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to; defaults to `listen`.
    pub advertised_listen: Option<String>,
    /// Address the Prometheus `/metrics` endpoint listens on.
    pub metrics_listen: SocketAddr,
    /// Where topic metadata and partition logs live.
    pub data_dir: PathBuf,
    /// Where the operating system's boot id is read: a broker that crashed and finds
    /// a new boot id may have lost writes that were only in the page cache (a power
    /// loss), and says so when it registers (KIP-966). Tests point it at a file of their
    /// own to play a reboot.
    pub boot_id_file: PathBuf,
    /// A tracing filter such as `info` or `strata_broker=debug`; `RUST_LOG` overrides it.
    pub log_level: String,
    /// Text or JSON log lines.
    pub log_format: LogFormat,

    /// Largest request frame accepted, in bytes; a larger length prefix closes the connection.
    pub frame_bytes_max: usize,
    /// Open client connections at once; further connections are closed at once.
    pub connections_max: usize,
    /// Requests read from one connection but not yet answered; reading pauses at the limit.
    pub connection_in_flight_requests_max: usize,
    /// A connection with no request for this long is closed.
    pub connection_idle_ms_max: u64,
    /// InitProducerId requests one connection may make per second (a token bucket that
    /// holds one second's worth); past it they are answered `LimitExceeded`. A producer
    /// asks once when it starts and once per restart of its sequences, so this only
    /// slows a client minting ids to flood the producer state.
    pub connection_producer_id_requests_per_second_max: u32,
    /// Longest a fetch may wait for `min_bytes` (a request's `max_wait_ms` is capped to it).
    pub fetch_wait_ms_max: u64,
    /// Largest fetch response, in bytes (a request's `max_bytes` is capped to it).
    pub fetch_response_bytes_max: usize,

    /// Request frame bytes held at once over all connections: a frame's bytes are reserved
    /// once its length prefix is read, before its body is buffered, and released when the
    /// request is done with them. While it is spent, connections stop reading and TCP
    /// pushes back. At least `frame_bytes_max`, so any frame fits.
    pub request_memory_bytes_max: usize,
    /// Reply bytes queued for connection writers at once over all connections: a reply's
    /// bytes (its response less the record bytes sent from segment files) are reserved
    /// before it is queued and released once it is written. While it is spent, the
    /// connections with a reply to queue stop reading and TCP pushes back. A separate
    /// budget from the request one, so connections that hold request frames and wait to
    /// queue a reply never wait on each other. At least `frame_bytes_max`.
    pub response_memory_bytes_max: usize,
    /// Once a request frame's bytes are reserved, a read that brings none of them for
    /// this long closes the connection, so stalled clients cannot hold the request budget.
    pub frame_read_timeout_ms: u64,
    /// A reply write that makes no progress for this long closes its connection: a client
    /// that stops reading loses its queued replies, its waiting requests and the segment
    /// files they held.
    pub write_timeout_ms: u64,
    /// Partitions one long-poll fetch (`max_wait_ms` above 0) may name; past it the fetch
    /// is answered `LimitExceeded`. The default is `partitions_max`'s, so a consumer of
    /// every partition on the broker can still wait in one fetch.
    pub fetch_wait_partitions_max: usize,
    /// Partitions the parked fetches of one connection may watch together; a fetch that
    /// would pass it is answered at once with what there is, without waiting. A consumer
    /// keeps one fetch in flight per broker, so the default equals the per-fetch one.
    pub connection_fetch_wait_partitions_max: usize,
    /// Partitions the parked fetches of all connections may watch together (each costs
    /// about 250 bytes while it waits); a fetch that would pass it is answered at once
    /// with what there is, as past the per-connection limit.
    pub fetch_wait_partitions_total_max: usize,
    /// Longest an `acks = all` produce waits for durability (its `timeout_ms` is capped).
    pub produce_timeout_ms_max: u64,
    /// How far ahead of the broker's clock a batch's max timestamp may be; a batch further
    /// ahead is refused, since one far-future timestamp would hold back time-based
    /// retention of every segment after it.
    pub message_timestamp_after_ms_max: u64,
    /// Partitions on this broker, over all topics.
    pub partitions_max: u32,
    /// Partitions of one topic.
    pub topic_partitions_max: u32,
    /// Topics named in one request, of any API (a Metadata or DescribeTopics request
    /// for every topic names none).
    pub request_topics_max: usize,
    /// Partition entries in one request, over all its topics (Produce, Fetch,
    /// ListOffsets, OffsetCommit, OffsetFetch, a heartbeat's owned partitions).
    pub request_partitions_max: usize,
    /// Group ids in one DescribeGroups or DeleteGroups request, and states in one
    /// ListGroups filter.
    pub request_groups_max: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_ms: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,

    /// Defaults for new topics, as flat keys (`retention_ms`, `segment_bytes`, ...) beside
    /// the broker's own: a topic's config is these with its overrides applied.
    #[serde(flatten)]
    pub topic_defaults: TopicConfig,

    /// A group member that sends no heartbeat for this long is removed and its partitions
    /// move to other members.
    pub group_session_timeout_ms: u64,
    /// How often members heartbeat. A revoked partition reaches its new owner within
    /// about one interval after the old owner confirms.
    pub group_heartbeat_interval_ms: u64,
    /// How long a member may take to confirm a revocation before it is removed.
    pub group_rebalance_timeout_ms: u64,
    /// Members of one group.
    pub group_members_max: usize,
    /// Partitions of the internal offsets log (`__consumer_offsets`). Fixed when the data
    /// directory is first used: changing it would move groups between partitions.
    pub group_offsets_partitions: u32,
    /// The durability policy of the offsets log: an OffsetCommit is acknowledged once it
    /// covers the commit, as `acks = all` waits for a topic's. Its fsync interval under
    /// `interval` is the broker's `flush_interval_ms`.
    pub group_offsets_durability: DurabilityPolicy,

    /// Address for inter-broker and controller traffic (Raft, broker registration and
    /// heartbeats, calls forwarded to the controller leader).
    pub cluster_listen: SocketAddr,
    /// The controller voters, `ID@HOST:PORT` each, this broker included (its entry is the
    /// address the others dial); 3 or 5 of them, or none for a one-node cluster.
    #[serde(deserialize_with = "cluster::deserialize_peers")]
    pub peers: Vec<Peer>,
    /// How often a broker heartbeats the controller leader.
    pub broker_heartbeat_interval_ms: u64,
    /// A broker whose heartbeats stop for this long is fenced: its partitions lose their
    /// leader. More than twice the heartbeat interval.
    pub broker_session_timeout_ms: u64,
    /// Replicas of a new topic's partitions when its create names no replication factor;
    /// at most the brokers the cluster is configured with
    /// ([`default_replication_factor_clamped`](Self::default_replication_factor_clamped)).
    pub default_replication_factor: u16,
    /// A follower not caught up with its leader for this long leaves the in-sync set.
    pub replica_lag_max_ms: u64,
    /// The bytes per second this broker, as a leader, sends to the replicas reassignments
    /// are adding (their catch-up copy); 0 for no limit, as Kafka's default.
    pub replica_reassignment_throttle_bytes_per_second: u64,
    /// How often the Raft leader of the metadata log heartbeats its followers.
    pub metadata_heartbeat_interval_ms: u64,
    /// The shortest time a voter waits without hearing from a leader before it calls an
    /// election; each wait is drawn between this and twice this. More than twice the
    /// metadata heartbeat interval.
    pub metadata_election_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
            advertised_listen: None,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9401)),
            data_dir: PathBuf::from("./strata-data"),
            boot_id_file: PathBuf::from("/proc/sys/kernel/random/boot_id"),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            frame_bytes_max: strata_protocol::limits::FRAME_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            connection_in_flight_requests_max: 128,
            connection_idle_ms_max: 600_000,
            connection_producer_id_requests_per_second_max: 10,
            fetch_wait_ms_max: 30_000,
            fetch_response_bytes_max: strata_protocol::limits::FETCH_RESPONSE_BYTES_MAX_DEFAULT,
            request_memory_bytes_max: 256 << 20,
            response_memory_bytes_max: 256 << 20,
            frame_read_timeout_ms: 30_000,
            write_timeout_ms: 30_000,
            fetch_wait_partitions_max: 10_000,
            connection_fetch_wait_partitions_max: 10_000,
            fetch_wait_partitions_total_max: 1_000_000,
            produce_timeout_ms_max: 60_000,
            message_timestamp_after_ms_max: 3_600_000,
            partitions_max: 10_000,
            topic_partitions_max: 4_096,
            request_topics_max: 1_000,
            request_partitions_max: 10_000,
            request_groups_max: 1_000,
            shutdown_timeout_ms: 30_000,
            retention_check_interval_ms: 60_000,
            topic_defaults: TopicConfig::default(),
            group_session_timeout_ms: 45_000,
            group_heartbeat_interval_ms: 1_000,
            group_rebalance_timeout_ms: 60_000,
            group_members_max: 1_000,
            group_offsets_partitions: 8,
            group_offsets_durability: DurabilityPolicy::EveryBatch,
            cluster_listen: CLUSTER_LISTEN_DEFAULT,
            peers: Vec::new(),
            broker_heartbeat_interval_ms: 250,
            broker_session_timeout_ms: 3_000,
            replica_lag_max_ms: 5_000,
            replica_reassignment_throttle_bytes_per_second: 0,
            default_replication_factor: 3,
            metadata_heartbeat_interval_ms: 100,
            metadata_election_timeout_ms: 500,
        }
    }
}

impl Config {
    /// The address clients should connect to, as `(host, port)`.
    pub fn advertised(&self) -> (String, u16) {
        self.advertised_listen
            .as_deref()
            .and_then(|text| text.rsplit_once(':'))
            .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
            .unwrap_or_else(|| (self.listen.ip().to_string(), self.listen.port()))
    }

    /// The replication factor of a create that names none: `default_replication_factor`,
    /// but no more than the brokers the cluster is configured with (its voters), so the
    /// default of 3 gives a one-node cluster topics of one replica.
    pub fn default_replication_factor_clamped(&self) -> u16 {
        let brokers = u16::try_from(self.peers.len().max(1)).unwrap_or(u16::MAX);
        self.default_replication_factor.min(brokers)
    }

    /// `connection_idle_ms_max` as a duration.
    pub fn connection_idle(&self) -> Duration {
        Duration::from_millis(self.connection_idle_ms_max)
    }

    /// `frame_read_timeout_ms` as a duration.
    pub fn frame_read_timeout(&self) -> Duration {
        Duration::from_millis(self.frame_read_timeout_ms)
    }

    /// `write_timeout_ms` as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
}

/// Longest an offset commit waits for the offsets log's fsync before it is answered
/// `RequestTimedOut`. An fsync takes milliseconds; this only bounds a stalled disk, and
/// `group_offsets_durability = interval` must flush well within it.
pub const COMMIT_DURABLE_WAIT_MS_MAX: u64 = 60_000;
