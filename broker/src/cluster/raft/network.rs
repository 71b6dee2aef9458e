//! Calls to peers over the cluster listener: openraft's RPCs and calls forwarded to the
//! leader.
//!
//! ```text
//! frame := body_bytes: u32 BE | body (a `Request` or `Response` as JSON)
//! ```
//!
//! Each request gets exactly one response on the same connection. A body over
//! [`FRAME_BYTES_MAX`] is refused before any buffer is reserved (tokio-util's length
//! codec checks the prefix first). Connections are reused: each openraft client (one per
//! replication stream or vote) keeps one, and forwarded calls take an idle one per peer;
//! a failed call drops its connection and the next call opens a new one. Every call has a
//! deadline, connection setup included.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use openraft::EmptyNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::record::RECORD_BYTES_MAX;
use super::types::{Request, Response, TypeConfig};

/// The largest frame accepted or sent: a snapshot chunk, JSON-encoded, fits well within it.
pub(crate) const FRAME_BYTES_MAX: usize = RECORD_BYTES_MAX;
/// The largest snapshot chunk openraft sends in one frame. JSON writes a byte as up to four
/// characters, so a chunk's frame stays under [`FRAME_BYTES_MAX`].
pub(crate) const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
const _: () = assert!(SNAPSHOT_CHUNK_BYTES as usize * 5 < FRAME_BYTES_MAX);
/// Idle connections kept per peer for forwarded calls.
const IDLE_CONNECTIONS_MAX: usize = 4;

/// A framed connection to or from a peer.
pub(crate) type Connection = Framed<TcpStream, LengthDelimitedCodec>;

/// Frames a connection with the quorum's length codec.
pub(crate) fn frame(stream: TcpStream) -> Connection {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(FRAME_BYTES_MAX)
        .new_codec();
    Framed::new(stream, codec)
}

/// Why a call to a peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The peer is not among the configured voters.
    #[error("node {target} has no configured cluster address")]
    NoAddress {
        /// The peer.
        target: u64,
    },
    /// The connection could not be opened.
    #[error("cannot connect to node {target} at {address}: {source}")]
    Connect {
        /// The peer.
        target: u64,
        /// Its configured address.
        address: String,
        /// What the OS said.
        source: io::Error,
    },
    /// The connection failed or was closed mid-call.
    #[error("the connection to node {target} failed: {source}")]
    Io {
        /// The peer.
        target: u64,
        /// What went wrong.
        source: io::Error,
    },
    /// The peer answered with something that is not the expected response.
    #[error("node {target} sent a bad reply: {reason}")]
    BadReply {
        /// The peer.
        target: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer came before the deadline.
    #[error("node {target} did not answer in time")]
    Timeout {
        /// The peer.
        target: u64,
    },
}

/// Opens a framed connection to `target` at `address`.
async fn connect(target: u64, address: &str) -> Result<Connection, CallError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| CallError::Connect {
            target,
            address: address.to_string(),
            source,
        })?;
    stream
        .set_nodelay(true)
        .map_err(|source| CallError::Io { target, source })?;
    Ok(frame(stream))
}

/// Sends `request` and reads its response.
async fn exchange(
    target: u64,
    connection: &mut Connection,
    request: &Request,
) -> Result<Response, CallError> {
    let body = serde_json::to_vec(request).map_err(|error| CallError::Io {
        target,
        source: error.into(),
    })?;
    connection
        .send(Bytes::from(body))
        .await
        .map_err(|source| CallError::Io { target, source })?;
    let reply = match connection.next().await {
        Some(Ok(reply)) => reply,
        Some(Err(source)) => return Err(CallError::Io { target, source }),
        None => {
            let source = io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the peer");
            return Err(CallError::Io { target, source });
        }
    };
    serde_json::from_slice(&reply).map_err(|error| CallError::BadReply {
        target,
        reason: error.to_string(),
    })
}

/// Forwarded calls to peers, over pooled connections. Thread-safe.
#[derive(Debug)]
pub(crate) struct Peers {
    voters: Arc<BTreeMap<u64, String>>,
    idle: Mutex<HashMap<u64, Vec<Connection>>>,
}

impl Peers {
    /// Peers at the voters' configured addresses.
    pub(crate) fn new(voters: Arc<BTreeMap<u64, String>>) -> Self {
        Peers {
            voters,
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` to `target` and returns its response, by `deadline`.
    ///
    /// # Errors
    /// No address, connection failure, bad reply or timeout; the connection is dropped.
    pub(crate) async fn call(
        &self,
        target: u64,
        request: &Request,
        deadline: Instant,
    ) -> Result<Response, CallError> {
        let address = self
            .voters
            .get(&target)
            .ok_or(CallError::NoAddress { target })?;
        let idle = self
            .idle
            .lock()
            .expect("idle connections lock")
            .get_mut(&target)
            .and_then(Vec::pop);
        let call = async {
            let mut connection = match idle {
                Some(connection) => connection,
                None => connect(target, address).await?,
            };
            let response = exchange(target, &mut connection, request).await?;
            Ok((connection, response))
        };
        let (connection, response) = timeout_at(deadline, call)
            .await
            .map_err(|_| CallError::Timeout { target })??;
        let mut idle = self.idle.lock().expect("idle connections lock");
        let pool = idle.entry(target).or_default();
        if pool.len() < IDLE_CONNECTIONS_MAX {
            pool.push(connection);
        }
        Ok(response)
    }
}

/// Makes openraft's per-peer clients.
pub(crate) struct NetworkFactory {
    voters: Arc<BTreeMap<u64, String>>,
}

impl NetworkFactory {
    /// Clients to the voters' configured addresses.
    pub(crate) fn new(voters: Arc<BTreeMap<u64, String>>) -> Self {
        NetworkFactory { voters }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, _node: &EmptyNode) -> PeerClient {
        PeerClient {
            target,
            address: self.voters.get(&target).cloned(),
            connection: None,
        }
    }
}

/// One openraft client of one peer, with its own connection (reopened after a failure).
pub(crate) struct PeerClient {
    target: u64,
    address: Option<String>,
    connection: Option<Connection>,
}

impl PeerClient {
    /// Sends `request` within `ttl`, connecting first if needed.
    async fn call(&mut self, request: Request, ttl: Duration) -> Result<Response, CallError> {
        let target = self.target;
        let address = self
            .address
            .as_deref()
            .ok_or(CallError::NoAddress { target })?;
        // The connection is out of `self` while the call runs and goes back only after a
        // whole response was read: a call dropped half way (openraft times it out with a
        // timer of its own) must not leave a connection whose next read would return this
        // call's late response as the answer to the next request.
        let taken = self.connection.take();
        let call = async {
            let mut open = match taken {
                Some(open) => open,
                None => connect(target, address).await?,
            };
            let response = exchange(target, &mut open, &request).await?;
            Ok((open, response))
        };
        match timeout_at(Instant::now() + ttl, call).await {
            Ok(Ok((open, response))) => {
                self.connection = Some(open);
                Ok(response)
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(CallError::Timeout { target }),
        }
    }

    /// A reply of the wrong kind.
    fn wrong_reply(&self) -> CallError {
        CallError::BadReply {
            target: self.target,
            reason: "a response to another request".to_string(),
        }
    }
}

/// openraft's view of a failed call: unreachable peers are backed off, others retried.
fn rpc_error<E: std::error::Error>(error: &CallError) -> RPCError<u64, EmptyNode, E> {
    match error {
        CallError::NoAddress { .. } | CallError::Connect { .. } | CallError::Timeout { .. } => {
            RPCError::Unreachable(Unreachable::new(error))
        }
        CallError::Io { .. } | CallError::BadReply { .. } => {
            RPCError::Network(NetworkError::new(error))
        }
    }
}

/// A remote Raft error, for openraft.
fn remote<E: std::error::Error>(target: u64, error: E) -> RPCError<u64, EmptyNode, E> {
    RPCError::RemoteError(RemoteError::new(target, error))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, EmptyNode, RaftError<u64>>> {
        match self
            .call(Request::AppendEntries(rpc), option.soft_ttl())
            .await
        {
            Ok(Response::AppendEntries(result)) => {
                result.map_err(|error| remote(self.target, error))
            }
            Ok(_) => Err(rpc_error(&self.wrong_reply())),
            Err(error) => Err(rpc_error(&error)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, EmptyNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .call(Request::InstallSnapshot(rpc), option.soft_ttl())
            .await
        {
            Ok(Response::InstallSnapshot(result)) => {
                result.map_err(|error| remote(self.target, error))
            }
            Ok(_) => Err(rpc_error(&self.wrong_reply())),
            Err(error) => Err(rpc_error(&error)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, EmptyNode, RaftError<u64>>> {
        match self.call(Request::Vote(rpc), option.soft_ttl()).await {
            Ok(Response::Vote(result)) => result.map_err(|error| remote(self.target, error)),
            Ok(_) => Err(rpc_error(&self.wrong_reply())),
            Err(error) => Err(rpc_error(&error)),
        }
    }
}
