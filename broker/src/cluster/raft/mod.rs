//! The metadata quorum: openraft 0.9 behind an adapter of our own.
//!
//! This is the only module of Strata that names openraft, so an upgrade of it touches
//! these files alone. Everything outside sees opaque command and outcome bytes, a
//! [`StateMachine`] to apply them, a [`LeaderService`] for requests that are not log
//! entries, and a [`Quorum`] handle.
//!
//! Goals: a durable log (length-prefixed, CRC-checked records with real fsyncs), forwarding
//! of proposals to the leader, snapshots every [`SNAPSHOT_INTERVAL_ENTRIES`] entries with
//! the log purged behind them, and a one-voter cluster that elects itself at once.
//! Non-goals: membership changes at run time (the voters come from the configuration),
//! and a persistent state machine (it is rebuilt from the last snapshot and the log).
//!
//! # Layout
//! - `types`: openraft's type configuration and the wire messages.
//! - `record`: the checked record format every file uses, and atomic file writes.
//! - `log_store`: the Raft log, vote and committed index on disk.
//! - `state_machine`: drives the [`StateMachine`] and keeps its snapshot on disk.
//! - `network`: Raft RPCs and forwarded calls to peers, over reused connections.
//! - `server`: answers peers on the cluster listener.
//! - `quorum`: [`Quorum`]: start, propose, call the leader, status, shutdown.

mod log_store;
mod network;
mod quorum;
mod record;
mod server;
mod state_machine;
mod types;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_disk;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

pub use quorum::Quorum;
pub use server::Incoming;

/// How many entries are applied between two snapshots; the log behind a snapshot is
/// purged, so this also bounds the log kept on disk and in memory.
pub const SNAPSHOT_INTERVAL_ENTRIES: u64 = 1000;

/// The largest command or leader request accepted. JSON writes each byte as up to four
/// characters, and an entry must fit in one log record and one frame.
pub const COMMAND_BYTES_MAX: usize = 8 * 1024 * 1024;
const _: () = assert!(COMMAND_BYTES_MAX * 5 < record::RECORD_BYTES_MAX);

/// What the quorum replicates. Called only from the adapter's apply task, one call at a time.
pub trait StateMachine: Send + 'static {
    /// Applies the committed command at log `index`; the returned bytes go back to its proposer.
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8>;
    /// A log entry that carries no command (a blank or a membership change) was applied at `index`.
    fn skip(&mut self, index: u64);
    /// The index of the last entry applied (0 when none).
    fn applied(&self) -> u64;
    /// The whole state, `applied` included, as bytes.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's.
    ///
    /// # Errors
    /// The snapshot's bytes do not decode.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}

/// Requests to the controller leader that are not log entries (broker heartbeats, status).
pub trait LeaderService: Send + Sync + 'static {
    /// Answers `request` from node `from`; runs only on the current leader.
    fn handle(&self, from: u64, request: Vec<u8>) -> BoxFuture<'static, Vec<u8>>;
}

/// How to start a quorum member.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id; one of `voters`.
    pub node_id: u64,
    /// Every voter's cluster address, this node's own included. One entry: a one-node cluster.
    pub voters: BTreeMap<u64, String>,
    /// Where the Raft log, vote and snapshots live: `<data_dir>/metadata`.
    pub dir: PathBuf,
    /// Raft's heartbeat, default 100 ms.
    pub heartbeat_interval: Duration,
    /// The shortest election timeout, default 500 ms.
    pub election_timeout_min: Duration,
    /// The longest election timeout, default 1000 ms.
    pub election_timeout_max: Duration,
}

/// A command committed and applied: its log index and what the state machine returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposed {
    /// The log index the command was committed at.
    pub index: u64,
    /// The bytes [`StateMachine::apply`] returned for it.
    pub outcome: Vec<u8>,
}

/// Why a proposal or a leader call did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader could be reached before the deadline (election, partition, dead voters). Retriable.
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
    /// The quorum is shutting down, or its Raft engine stopped (see [`Quorum::failure`]).
    #[error("the metadata quorum is shutting down")]
    ShuttingDown,
}

/// Where this node stands in the quorum, from openraft's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// This node's id.
    pub node_id: u64,
    /// The leader as this node knows it.
    pub leader: Option<u64>,
    /// The current Raft term.
    pub term: u64,
    /// The index of the last entry in this node's log.
    pub last_log_index: u64,
    /// The highest index known committed.
    pub committed: u64,
    /// The index this node's state machine has applied.
    pub applied: u64,
    /// Every voter, with its replication progress on the leader.
    pub voters: Vec<VoterStatus>,
}

/// One voter's replication progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterStatus {
    /// The voter's node id.
    pub id: u64,
    /// The last log index known replicated to it; known only on the leader.
    pub matched: Option<u64>,
}

/// Why a quorum member could not start.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// The configuration cannot form a quorum.
    #[error("invalid metadata quorum configuration: {0}")]
    Config(String),
    /// A file of the quorum could not be read or written.
    #[error("metadata quorum I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file holds bytes that are not what this adapter wrote (not a torn tail).
    #[error("metadata quorum file {path} is corrupt at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// openraft refused to start or to initialise the cluster.
    #[error("the metadata quorum's Raft engine failed: {0}")]
    Raft(String),
}
