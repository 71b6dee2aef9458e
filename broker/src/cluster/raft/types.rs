//! openraft's type configuration for the metadata quorum, and the messages peers exchange.
//!
//! Node ids are `u64` and nodes carry no data (`EmptyNode`): a voter's address always
//! comes from the configuration, never from the log, so moving a voter to a new address
//! needs no log entry.

use std::io::Cursor;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::Proposed;

/// A command's bytes, opaque to the adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Payload(pub Vec<u8>);

openraft::declare_raft_types!(
    /// The metadata quorum's openraft types.
    pub(crate) TypeConfig:
        D = Payload,
        R = Vec<u8>,
        NodeId = u64,
        Node = openraft::EmptyNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// A log entry as openraft sees it.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
/// A log position: term, leader and index.
pub(crate) type LogId = openraft::LogId<u64>;
/// A vote: term, candidate and whether a quorum granted it.
pub(crate) type Vote = openraft::Vote<u64>;
/// The membership as of a log position.
pub(crate) type StoredMembership = openraft::StoredMembership<u64, openraft::EmptyNode>;
/// What describes a snapshot: its last log id and membership.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::EmptyNode>;
/// The storage error openraft expects from the stores.
pub(crate) type StorageError = openraft::StorageError<u64>;

/// One request from a peer: a Raft RPC, or a call forwarded to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// Raft's AppendEntries (also the heartbeat).
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft's RequestVote.
    Vote(VoteRequest<u64>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Commit `command` if this node leads.
    Propose {
        /// The command's bytes.
        command: Vec<u8>,
        /// How long the proposer still waits.
        timeout_ms: u64,
    },
    /// Ask the leader's `LeaderService`.
    CallLeader {
        /// The calling node.
        from: u64,
        /// The request's bytes.
        request: Vec<u8>,
        /// How long the caller still waits.
        timeout_ms: u64,
    },
}

/// The answer to a [`Request`] of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    /// Answers [`Request::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// Answers [`Request::Vote`].
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// Answers [`Request::InstallSnapshot`].
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// Answers [`Request::Propose`].
    Propose(Forwarded<Proposed>),
    /// Answers [`Request::CallLeader`].
    CallLeader(Forwarded<Vec<u8>>),
}

/// What became of a call forwarded to the node believed to lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Forwarded<T> {
    /// The leader answered.
    Done(T),
    /// The node does not lead; `leader` is the one it knows of.
    NotLeader {
        /// The leader as the called node knows it.
        leader: Option<u64>,
    },
    /// The called node is stopping or its Raft engine failed.
    Unavailable(String),
}
