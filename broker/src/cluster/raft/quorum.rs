//! [`Quorum`]: a running member of the metadata quorum.
//!
//! Proposals and leader calls go to the leader this node knows of: run here when this
//! node leads, forwarded once over the cluster listener otherwise. A node that answers
//! "not the leader" gives its own view of the leader, which is tried next; with no leader
//! known, the call waits for an election (or [`RETRY_BACKOFF`]) and tries again until its
//! deadline. A proposal whose reply is lost may be retried and so committed twice: the
//! state machine's commands must be safe to apply again (they refuse, as a create of an
//! existing topic does).

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::server::Incoming;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Raft, RaftMetrics, SnapshotPolicy};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::log_store::LogStore;
use super::network::{NetworkFactory, Peers, SNAPSHOT_CHUNK_BYTES};
use super::record;
use super::state_machine::{SnapshotWrites, StateMachineStore};
use super::types::{Forwarded, Payload, Request, Response, TypeConfig};
use super::{
    COMMAND_BYTES_MAX, LeaderService, ProposeError, Proposed, QuorumConfig, QuorumError,
    QuorumStatus, SNAPSHOT_INTERVAL_ENTRIES, StateMachine, VoterStatus,
};

/// The pause before trying again when no leader is known or the leader did not answer.
const RETRY_BACKOFF: Duration = Duration::from_millis(25);

/// A running quorum member. Cheap to clone; clones share it; thread-safe. Its tasks run
/// until [`Quorum::shutdown`]: dropping every clone does not stop them.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

/// What a [`Quorum`] shares with its server and background tasks.
pub(crate) struct Inner {
    node_id: u64,
    pub(crate) raft: Raft<TypeConfig>,
    peers: Peers,
    service: Arc<dyn LeaderService>,
    voters: Vec<u64>,
    applied: watch::Receiver<u64>,
    leader: watch::Receiver<Option<u64>>,
    committed: Arc<AtomicU64>,
    snapshot_writes: SnapshotWrites,
    pub(crate) cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl fmt::Debug for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quorum")
            .field("node_id", &self.inner.node_id)
            .field("voters", &self.inner.voters)
            .finish_non_exhaustive()
    }
}

impl Quorum {
    /// Opens the log in `config.dir` (creating it, fsynced), serves Raft and forwarded calls on
    /// `listener` (a listener already bound, or the connections the cluster listener hands
    /// over), and initialises a brand-new
    /// cluster (every voter may call this with the same voters; an existing log is never
    /// re-initialised). `state_machine` starts empty: it is rebuilt from the last snapshot
    /// and the log.
    ///
    /// # Errors
    /// A bad configuration, unreadable or damaged files, or openraft failing to start.
    pub async fn start(
        config: QuorumConfig,
        listener: impl Into<Incoming>,
        state_machine: impl StateMachine,
        service: Arc<dyn LeaderService>,
    ) -> Result<Self, QuorumError> {
        Self::start_with(
            config,
            listener,
            state_machine,
            service,
            SNAPSHOT_INTERVAL_ENTRIES,
        )
        .await
    }

    /// [`Quorum::start`], with a snapshot every `snapshot_interval_entries` applied entries.
    pub(crate) async fn start_with(
        config: QuorumConfig,
        listener: impl Into<Incoming>,
        state_machine: impl StateMachine,
        service: Arc<dyn LeaderService>,
        snapshot_interval_entries: u64,
    ) -> Result<Self, QuorumError> {
        let raft_config = raft_config(&config, snapshot_interval_entries)?;
        let dir = config.dir.clone();
        let (log, machine) = tokio::task::spawn_blocking(move || {
            record::create_dir(&dir)?;
            Ok::<_, QuorumError>((
                LogStore::open(&dir)?,
                StateMachineStore::open(&dir, state_machine)?,
            ))
        })
        .await
        .map_err(|error| QuorumError::Raft(error.to_string()))??;
        let committed = log.committed_index();
        let snapshot_writes = machine.writes();
        let voters = Arc::new(config.voters.clone());
        let network = NetworkFactory::new(voters.clone());
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, machine)
            .await
            .map_err(|error| QuorumError::Raft(error.to_string()))?;
        let (applied_sender, applied) = watch::channel(0);
        let (leader_sender, leader) = watch::channel(None);
        let inner = Arc::new(Inner {
            node_id: config.node_id,
            raft: raft.clone(),
            peers: Peers::new(voters),
            service,
            voters: config.voters.keys().copied().collect(),
            applied,
            leader,
            committed,
            snapshot_writes,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let metrics = publish_metrics(
            raft.metrics(),
            applied_sender,
            leader_sender,
            inner.cancel.clone(),
        );
        inner.tasks.spawn(metrics);
        inner
            .tasks
            .spawn(super::server::serve(listener.into(), inner.clone()));
        let quorum = Quorum { inner };
        if let Err(error) = quorum.initialize().await {
            quorum.shutdown().await;
            return Err(error);
        }
        Ok(quorum)
    }

    /// Initialises the cluster with every voter if this node's log and vote are brand new;
    /// otherwise checks that the log's voters are the configured ones.
    async fn initialize(&self) -> Result<(), QuorumError> {
        let raft = &self.inner.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|error| QuorumError::Raft(error.to_string()))?;
        let members: BTreeSet<u64> = self.inner.voters.iter().copied().collect();
        if initialized {
            let logged: BTreeSet<u64> = {
                let metrics = raft.metrics();
                let membership = metrics.borrow().membership_config.clone();
                membership.membership().voter_ids().collect()
            };
            if !logged.is_empty() && logged != members {
                return Err(QuorumError::Config(format!(
                    "the metadata log's voters are {logged:?} but the configured ones are \
                     {members:?}; changing the voters is not supported"
                )));
            }
            return Ok(());
        }
        match raft.initialize(members).await {
            // Another voter's entries arrived first: the cluster is formed already.
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(error) => Err(QuorumError::Raft(error.to_string())),
        }
    }

    /// Commits `command` through the leader (forwarding over the cluster listener when this node
    /// is not the leader, retrying across elections until `deadline`), and returns once this
    /// node's state machine has applied it.
    ///
    /// # Errors
    /// [`ProposeError::Unavailable`] when no leader committed it by `deadline` (or this node
    /// had not applied it by then), or at once for a command over [`COMMAND_BYTES_MAX`];
    /// [`ProposeError::ShuttingDown`].
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled proposal may still be committed.
    pub async fn propose(
        &self,
        command: Vec<u8>,
        deadline: Instant,
    ) -> Result<Proposed, ProposeError> {
        check_size(&command)?;
        let inner = &self.inner;
        let proposed = inner
            .with_leader(deadline, |leader| {
                inner.propose_at(leader, &command, deadline)
            })
            .await?;
        inner.wait_applied(proposed.index, deadline).await?;
        Ok(proposed)
    }

    /// Sends `request` to the current leader's `LeaderService` (locally if this node leads).
    ///
    /// # Errors
    /// As [`Quorum::propose`].
    pub async fn call_leader(
        &self,
        request: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<u8>, ProposeError> {
        check_size(&request)?;
        let inner = &self.inner;
        inner
            .with_leader(deadline, |leader| inner.call_at(leader, &request, deadline))
            .await
    }

    /// Where this node stands; voters' `matched` is known only on the leader.
    pub fn status(&self) -> QuorumStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let last_log_index = metrics.last_log_index.unwrap_or(0);
        let leads = metrics.current_leader == Some(self.inner.node_id);
        let replication = metrics.replication.as_ref();
        let matched = |id: u64| match replication.and_then(|progress| progress.get(&id)) {
            Some(matched) => matched.map(|log_id| log_id.index),
            None if leads && id == self.inner.node_id => Some(last_log_index),
            None => None,
        };
        QuorumStatus {
            node_id: self.inner.node_id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index,
            committed: self.inner.committed.load(Ordering::Acquire),
            applied: metrics.last_applied.map_or(0, |applied| applied.index),
            voters: self
                .inner
                .voters
                .iter()
                .map(|&id| VoterStatus {
                    id,
                    matched: matched(id),
                })
                .collect(),
        }
    }

    /// The index this node's state machine has applied; changes after each apply.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.inner.applied.clone()
    }

    /// The current leader's id, as this node knows it; changes with each election.
    pub fn leader(&self) -> watch::Receiver<Option<u64>> {
        self.inner.leader.clone()
    }

    /// Why this node's Raft engine stopped (a failed fsync, say, or [`Quorum::shutdown`]);
    /// `None` while it runs. A stopped engine never restarts: proposals on this node answer
    /// [`ProposeError::ShuttingDown`].
    pub fn failure(&self) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let running = &metrics.borrow().running_state;
        running.as_ref().err().map(ToString::to_string)
    }

    /// Stops Raft and the listener; the log stays on disk.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, "the metadata quorum's Raft task ended badly");
        }
        *self.inner.snapshot_writes.lock().await = true;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Asks openraft to build a snapshot (ignored while one is being built); for tests.
    #[cfg(test)]
    pub(crate) async fn snapshot_now(&self) {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .expect("trigger a snapshot");
    }

    /// The raw openraft metrics; for tests.
    #[cfg(test)]
    pub(crate) fn metrics(&self) -> watch::Receiver<RaftMetrics<u64, openraft::EmptyNode>> {
        self.inner.raft.metrics()
    }
}

impl Inner {
    /// Runs `attempt` against the leader this node knows of until it is answered, the
    /// deadline passes or the quorum shuts down.
    async fn with_leader<T, F, Fut>(
        &self,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, ProposeError>
    where
        F: FnMut(u64) -> Fut,
        Fut: Future<Output = Forwarded<T>>,
    {
        let mut leader = self.leader.clone();
        let mut hint = None;
        let mut failure = "no leader is known".to_string();
        loop {
            let stopped = self.raft.metrics().borrow().running_state.is_err();
            if stopped || self.cancel.is_cancelled() {
                return Err(ProposeError::ShuttingDown);
            }
            let hinted = hint.is_some();
            let target = hint.take().or(*leader.borrow_and_update());
            if let Some(target) = target {
                match timeout_at(deadline, attempt(target)).await {
                    Ok(Forwarded::Done(value)) => return Ok(value),
                    Ok(Forwarded::NotLeader { leader: known }) => {
                        failure = format!("node {target} does not lead");
                        hint = known.filter(|&known| known != target);
                    }
                    Ok(Forwarded::Unavailable(reason)) => {
                        failure = format!("node {target}: {reason}");
                    }
                    Err(_) => failure = format!("node {target} did not answer in time"),
                }
            }
            if Instant::now() >= deadline {
                return Err(ProposeError::Unavailable(failure));
            }
            // A hint is followed at once, but only once per pause, so two nodes that each
            // name the other do not spin.
            if hint.is_none() || hinted {
                let retry_at = (Instant::now() + RETRY_BACKOFF).min(deadline);
                tokio::select! {
                    () = self.cancel.cancelled() => return Err(ProposeError::ShuttingDown),
                    () = sleep_until(retry_at) => {}
                    changed = leader.changed() => if changed.is_err() {
                        return Err(ProposeError::ShuttingDown);
                    },
                }
            }
        }
    }

    /// Proposes `command` to `leader`: here, or forwarded.
    async fn propose_at(
        &self,
        leader: u64,
        command: &[u8],
        deadline: Instant,
    ) -> Forwarded<Proposed> {
        if leader == self.node_id {
            return self.propose_here(command.to_vec()).await;
        }
        let request = Request::Propose {
            command: command.to_vec(),
            timeout_ms: remaining_ms(deadline),
        };
        match self.peers.call(leader, &request, deadline).await {
            Ok(Response::Propose(forwarded)) => forwarded,
            Ok(_) => Forwarded::Unavailable("a response to another request".to_string()),
            Err(error) => Forwarded::Unavailable(error.to_string()),
        }
    }

    /// Commits `command` if this node leads.
    pub(crate) async fn propose_here(&self, command: Vec<u8>) -> Forwarded<Proposed> {
        match self.raft.client_write(Payload(command)).await {
            Ok(written) => Forwarded::Done(Proposed {
                index: written.log_id.index,
                outcome: written.data,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Forwarded::NotLeader {
                    leader: forward.leader_id,
                }
            }
            Err(error) => Forwarded::Unavailable(error.to_string()),
        }
    }

    /// Calls `leader`'s service: here, or forwarded.
    async fn call_at(&self, leader: u64, request: &[u8], deadline: Instant) -> Forwarded<Vec<u8>> {
        if leader == self.node_id {
            return self.call_here(self.node_id, request.to_vec()).await;
        }
        let from = self.node_id;
        let request = Request::CallLeader {
            from,
            request: request.to_vec(),
            timeout_ms: remaining_ms(deadline),
        };
        match self.peers.call(leader, &request, deadline).await {
            Ok(Response::CallLeader(forwarded)) => forwarded,
            Ok(_) => Forwarded::Unavailable("a response to another request".to_string()),
            Err(error) => Forwarded::Unavailable(error.to_string()),
        }
    }

    /// Answers a leader call from `from` if this node leads.
    pub(crate) async fn call_here(&self, from: u64, request: Vec<u8>) -> Forwarded<Vec<u8>> {
        let leader = *self.leader.borrow();
        if leader != Some(self.node_id) {
            return Forwarded::NotLeader { leader };
        }
        Forwarded::Done(self.service.handle(from, request).await)
    }

    /// Waits until this node's state machine has applied `index`.
    async fn wait_applied(&self, index: u64, deadline: Instant) -> Result<(), ProposeError> {
        let mut applied = self.applied.clone();
        match timeout_at(deadline, applied.wait_for(|&applied| applied >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ProposeError::ShuttingDown),
            Err(_) => Err(ProposeError::Unavailable(format!(
                "entry {index} is committed but this node had not applied it by the deadline"
            ))),
        }
    }
}

/// Refuses a command or request over [`COMMAND_BYTES_MAX`]: it could not be logged or sent.
fn check_size(bytes: &[u8]) -> Result<(), ProposeError> {
    if bytes.len() > COMMAND_BYTES_MAX {
        let reason = format!(
            "{} bytes, over the {COMMAND_BYTES_MAX}-byte maximum of a command",
            bytes.len()
        );
        return Err(ProposeError::Unavailable(reason));
    }
    Ok(())
}

/// The milliseconds left until `deadline`.
fn remaining_ms(deadline: Instant) -> u64 {
    u64::try_from(
        deadline
            .saturating_duration_since(Instant::now())
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// openraft's configuration for `config`.
fn raft_config(
    config: &QuorumConfig,
    snapshot_interval_entries: u64,
) -> Result<openraft::Config, QuorumError> {
    if !config.voters.contains_key(&config.node_id) {
        let voters: Vec<&u64> = config.voters.keys().collect();
        return Err(QuorumError::Config(format!(
            "node {} is not among the voters {voters:?}",
            config.node_id
        )));
    }
    let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    openraft::Config {
        cluster_name: "strata-metadata".to_string(),
        heartbeat_interval: millis(config.heartbeat_interval),
        election_timeout_min: millis(config.election_timeout_min),
        election_timeout_max: millis(config.election_timeout_max),
        install_snapshot_timeout: millis(config.election_timeout_max),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_interval_entries),
        max_in_snapshot_log_to_keep: 0,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        ..openraft::Config::default()
    }
    .validate()
    .map_err(|error| QuorumError::Config(error.to_string()))
}

/// Publishes the applied index and the leader from openraft's metrics until shutdown.
async fn publish_metrics(
    mut metrics: watch::Receiver<RaftMetrics<u64, openraft::EmptyNode>>,
    applied: watch::Sender<u64>,
    leader: watch::Sender<Option<u64>>,
    cancel: CancellationToken,
) {
    let mut failure_reported = false;
    loop {
        {
            let now = metrics.borrow_and_update();
            if let Err(fatal) = &now.running_state
                && !failure_reported
                && !cancel.is_cancelled()
            {
                tracing::error!(%fatal, "the metadata quorum's Raft engine stopped");
                failure_reported = true;
            }
            let index = now.last_applied.map_or(0, |applied| applied.index);
            applied.send_if_modified(|applied| std::mem::replace(applied, index) != index);
            let current = now.current_leader;
            leader.send_if_modified(|leader| std::mem::replace(leader, current) != current);
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() {
                return;
            },
        }
    }
}
