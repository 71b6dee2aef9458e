//! The cluster as one broker takes part in it: the metadata quorum, this broker's
//! registration and heartbeats, the controller's duties while this broker leads the
//! quorum, and the local logs kept in step with the committed metadata.
//!
//! Metadata is one Raft log (openraft, behind [`raft`]) whose commands are
//! [`metadata::Command`]s. Every broker applies every committed command to its own
//! [`metadata::Image`], so every broker knows every topic, partition and leader, and the
//! offset it has applied. A change (create a topic, fence a broker) is proposed on any
//! broker, forwarded to the quorum's leader, and answered once this broker has applied
//! it and brought its own logs in step ([`reconcile`]), so a client that created a topic
//! through a broker can use it there at once.
//!
//! The quorum's leader is the controller: it tracks broker sessions and fences a broker
//! whose heartbeats stop ([`membership`]). A broker with no peers is a one-node cluster
//! of itself; it registers before it serves, so the single node behaves as before.
//!
//! docs/cluster.md has the whole design and the reasons behind it.

pub mod controller;
pub mod listener;
pub mod membership;
pub mod metadata;
pub mod placement;
pub mod raft;
pub mod reconcile;
mod route;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use strata_protocol::ErrorCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::topics::AdminError;
use metadata::{Command, Image, MetadataStateMachine, Outcome};
use raft::{ProposeError, Quorum, QuorumConfig, QuorumStatus};

/// How long an admin change waits for the quorum before it is answered with a
/// retriable error.
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping broker tries to tell the controller before it stops anyway.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// This broker's part in the cluster. Thread-safe; shared through the `Broker`.
#[derive(Debug)]
pub struct Cluster {
    node_id: u32,
    quorum: Quorum,
    controller: Arc<membership::ControllerService>,
    image: watch::Receiver<Arc<Image>>,
    /// This broker's incarnation once registered, 0 before.
    incarnation: AtomicU64,
    /// The image index whose changes this broker's logs reflect.
    reconciled: watch::Sender<u64>,
    /// Whether `--peers` named other brokers.
    multi_node: bool,
    /// Set once registered and the local logs followed the metadata of the registration:
    /// until then the image may be a stale one read back from the local log.
    ready: std::sync::atomic::AtomicBool,
    /// Topics whose local copy the last reconcile could not bring in step, and why.
    local_failures: std::sync::Mutex<BTreeMap<String, AdminError>>,
    /// Replicas' connections to the cluster listener, until the server takes them.
    replication_streams: std::sync::Mutex<Option<mpsc::Receiver<TcpStream>>>,
    /// Stops the cluster listener.
    stop_listener: CancellationToken,
}

/// Why the metadata quorum could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the metadata quorum: {0}")]
pub struct ClusterStartError(#[from] raft::QuorumError);

impl Cluster {
    /// Starts the metadata quorum over `<data_dir>/metadata`, serving Raft on `listener`,
    /// which it shares with partition replication ([`listener`]).
    ///
    /// # Errors
    /// [`ClusterStartError`] if the Raft log cannot be opened or read back.
    pub async fn start(
        config: &Config,
        listener: TcpListener,
    ) -> Result<Arc<Self>, ClusterStartError> {
        let cluster_address = listener
            .local_addr()
            .map(|address| address.to_string())
            .unwrap_or_default();
        // A one-node cluster's Raft never dials itself; its address is the bound one.
        let voters = if config.peers.is_empty() {
            BTreeMap::from([(u64::from(config.node_id), cluster_address)])
        } else {
            config.voters()
        };
        let quorum_config = QuorumConfig {
            node_id: u64::from(config.node_id),
            voters,
            dir: config.data_dir.join("metadata"),
            heartbeat_interval: config.metadata_heartbeat_interval(),
            election_timeout_min: config.metadata_election_timeout_min(),
            election_timeout_max: config.metadata_election_timeout_max(),
        };
        let (published, image) = watch::channel(Arc::new(Image::default()));
        let service = membership::ControllerService::new(config, image.clone());
        let stop_listener = CancellationToken::new();
        let split = listener::split(listener, stop_listener.clone());
        let quorum = Quorum::start(
            quorum_config,
            raft::Incoming::Streams(split.quorum),
            MetadataStateMachine::new(published),
            service.clone(),
        )
        .await
        .inspect_err(|_| stop_listener.cancel())?;
        service.attach(quorum.clone());
        Ok(Arc::new(Self {
            node_id: config.node_id,
            quorum,
            controller: service,
            image,
            incarnation: AtomicU64::new(0),
            reconciled: watch::Sender::new(0),
            multi_node: !config.peers.is_empty(),
            ready: std::sync::atomic::AtomicBool::new(false),
            local_failures: std::sync::Mutex::default(),
            replication_streams: std::sync::Mutex::new(Some(split.replication)),
            stop_listener,
        }))
    }

    /// This broker's node id.
    pub fn node_id(&self) -> u32 {
        self.node_id
    }

    /// Whether other brokers were configured.
    pub fn is_multi_node(&self) -> bool {
        self.multi_node
    }

    /// The metadata as this broker last applied it.
    pub fn image(&self) -> Arc<Image> {
        self.image.borrow().clone()
    }

    /// Changes to the image, for tasks that follow it.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Image>> {
        self.image.clone()
    }

    /// The quorum as this broker sees it.
    pub fn quorum_status(&self) -> QuorumStatus {
        self.quorum.status()
    }

    /// The controller's view of the quorum and the brokers: this broker's own if it
    /// leads the quorum, else the controller's, asked for; `None` if it cannot be had.
    pub async fn controller_status(&self) -> Option<membership::ControllerStatus> {
        if let Some(status) = self.controller.status() {
            return Some(status);
        }
        let request = controller::encode_request(&controller::LeaderRequest::Status);
        let deadline = Instant::now() + Duration::from_secs(2);
        let reply = self.quorum.call_leader(request, deadline).await.ok()?;
        match serde_json::from_slice(&reply).ok()? {
            membership::LeaderReply::Status(status) => Some(status),
            _ => None,
        }
    }

    /// Whether this broker has registered and its logs follow the metadata: until then it
    /// serves no partition and takes no admin change, since its image may be stale.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// This broker's incarnation, once registered.
    pub fn incarnation(&self) -> Option<u64> {
        match self.incarnation.load(Ordering::Acquire) {
            0 => None,
            incarnation => Some(incarnation),
        }
    }

    /// Proposes `command`, waits until this broker has applied it and brought its logs in
    /// step, and returns what applying it gave.
    ///
    /// # Errors
    /// `LeaderNotAvailable` (retriable) if no quorum answered in time, or
    /// `BrokerShuttingDown` while shutting down.
    pub async fn propose(&self, command: &Command) -> Result<Outcome, AdminError> {
        let deadline = Instant::now() + PROPOSE_TIMEOUT;
        let (index, outcome) = self.commit(command, deadline).await?;
        self.await_reconciled(index, deadline).await?;
        Ok(outcome)
    }

    /// Proposes `command` and returns, with its index, what applying it gave once this
    /// broker applied it, without waiting for the logs to follow.
    async fn commit(
        &self,
        command: &Command,
        deadline: Instant,
    ) -> Result<(u64, Outcome), AdminError> {
        let proposed = self
            .quorum
            .propose(metadata::encode_command(command), deadline)
            .await
            .map_err(|error| propose_error(&error))?;
        let outcome = metadata::decode_outcome(&proposed.outcome)
            .map_err(|message| AdminError::new(ErrorCode::Unknown, message))?;
        Ok((proposed.index, outcome))
    }

    /// Proposes `command` and turns a refusal into an error.
    ///
    /// # Errors
    /// As [`propose`](Self::propose), and the refusal's code and message.
    pub async fn change(&self, command: &Command) -> Result<Outcome, AdminError> {
        match self.propose(command).await? {
            Outcome::Refused { code, message } => {
                let code = ErrorCode::from_u16(code).unwrap_or(ErrorCode::Unknown);
                Err(AdminError::new(code, message))
            }
            outcome => Ok(outcome),
        }
    }

    /// Why this broker's copy of `topic` could not follow the metadata at the last
    /// reconcile, if it could not (a full disk, a file in the way).
    pub fn local_failure(&self, topic: &str) -> Option<AdminError> {
        self.local_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(topic)
            .cloned()
    }

    /// Records whether `topic`'s local copy followed the metadata.
    fn set_local_failure(&self, topic: &str, failure: Option<AdminError>) {
        let mut failures = self
            .local_failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match failure {
            Some(error) => failures.insert(topic.to_owned(), error),
            None => failures.remove(topic),
        };
    }

    /// Waits until the local logs reflect the image at `index`.
    async fn await_reconciled(&self, index: u64, deadline: Instant) -> Result<(), AdminError> {
        let mut reconciled = self.reconciled.subscribe();
        match tokio::time::timeout_at(deadline, reconciled.wait_for(|done| *done >= index)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AdminError::new(
                ErrorCode::LeaderNotAvailable,
                format!(
                    "the change was committed at metadata offset {index}, but this broker has not applied it yet; retry"
                ),
            )),
        }
    }

    /// Tells the controller this broker is stopping (Kafka's controlled shutdown): its
    /// leaderships move to other in-sync replicas at once, instead of after the session
    /// timeout. Best effort, within [`LEAVE_TIMEOUT`]; a one-node cluster skips it.
    pub async fn leave(&self) {
        let Some(incarnation) = self.incarnation().filter(|_| self.multi_node) else {
            return;
        };
        let command = Command::ShutdownBroker {
            id: self.node_id,
            incarnation,
        };
        let deadline = Instant::now() + LEAVE_TIMEOUT;
        if let Err(error) = self.commit(&command, deadline).await {
            tracing::warn!(%error.message, "cannot tell the controller this broker is stopping");
        }
    }

    /// Stops the quorum and the cluster listener. Call it after the broker stopped
    /// serving.
    pub async fn shutdown(&self) {
        self.stop_listener.cancel();
        self.quorum.shutdown().await;
    }

    /// Replicas' connections to the cluster listener; `None` after the first call.
    pub fn take_replication_streams(&self) -> Option<mpsc::Receiver<TcpStream>> {
        self.replication_streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Proposes `command` and returns what applying it gave, once this broker applied
    /// it, without waiting for its logs to follow: for changes this broker's own
    /// replication makes (an in-sync set), which its logs need not reflect first.
    ///
    /// # Errors
    /// As [`propose`](Self::propose).
    pub async fn commit_within(
        &self,
        command: &Command,
        timeout: Duration,
    ) -> Result<Outcome, AdminError> {
        let (_, outcome) = self.commit(command, Instant::now() + timeout).await?;
        Ok(outcome)
    }

    /// Registers this broker, retrying until the quorum answers or `stop` fires, then
    /// heartbeats to the controller and, while this broker leads the quorum, fences
    /// brokers whose heartbeats stop. Returns once registered; the rest runs in tasks.
    pub async fn join(
        self: &Arc<Self>,
        config: &Config,
        (address, cluster_address): (String, String),
        unclean: bool,
        stop: CancellationToken,
    ) -> bool {
        membership::join(self, config, (address, cluster_address), unclean, stop).await
    }
}

fn propose_error(error: &ProposeError) -> AdminError {
    match error {
        ProposeError::ShuttingDown => {
            AdminError::new(ErrorCode::BrokerShuttingDown, "the broker is shutting down")
        }
        ProposeError::Unavailable(why) => AdminError::new(
            ErrorCode::LeaderNotAvailable,
            format!("the metadata quorum did not answer: {why}; retry"),
        ),
    }
}

impl raft::StateMachine for MetadataStateMachine {
    fn apply(&mut self, index: u64, command: &[u8]) -> Vec<u8> {
        self.apply_bytes(index, command)
    }

    fn skip(&mut self, index: u64) {
        MetadataStateMachine::skip(self, index);
    }

    fn applied(&self) -> u64 {
        MetadataStateMachine::applied(self)
    }

    fn snapshot(&self) -> Vec<u8> {
        MetadataStateMachine::snapshot(self)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        MetadataStateMachine::restore(self, snapshot)
    }
}
