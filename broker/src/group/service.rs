//! The group coordinator as the broker runs it: the pure [`Coordinator`] behind one
//! mutex, the [`OffsetsLog`] its records go to, and the timer that expires sessions.
//! It holds the groups of the offsets-log partitions this broker leads, loaded when it
//! took the lead (`group::leadership`).
//!
//! Every change is decided by the engine and appended to the offsets log under the same
//! lock, so the log's order is the engine's order and replaying the log rebuilds the
//! state the broker had. The lock also covers the check that the group's partition is
//! loaded, and a partition stops being led only under it, so nothing is ever appended to
//! a partition this broker follows. A commit is validated first, appended, and only
//! then applied, so an offset is never visible (to OffsetFetch, lag, or a restarted
//! consumer) before it is in the log. It is acknowledged later, once the offsets log's
//! durability policy covers it ([`PendingCommit::durable`]), outside the lock: like
//! records under `acks = all`, a commit is visible before it is acknowledged, and
//! applying it in log order under the lock keeps memory in the log's order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cluster::metadata::Image;
use crate::config::Config;
use crate::group::engine::{
    CommitOutcome, Committer, Coordinator, GroupConfig, GroupDescription, GroupError, GroupSummary,
    Heartbeat, HeartbeatReply, MemberEpoch, TopicPartition,
};
use crate::group::open_error::GroupOpenError;
use crate::group::records::Record;
use crate::group::store::{Appended, OffsetsLog};
use crate::partition::{Partition, PartitionError, Storage, now_ms};
use crate::topics::TopicRegistry;

/// Why a group request failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The engine refused it.
    #[error(transparent)]
    Refused(#[from] GroupError),
    /// Its records could not be appended to the offsets log; nothing changed.
    #[error("cannot persist group state: {source}")]
    Storage {
        #[source]
        source: PartitionError,
    },
    /// This broker does not lead the group's partition of the offsets log (any more),
    /// or is still loading it.
    #[error(
        "this broker does not coordinate the group now: it does not lead partition {partition} of the offsets log, or is still loading its groups; find the coordinator and retry"
    )]
    NotCoordinator {
        /// The group's partition of the offsets log.
        partition: u32,
    },
}

/// One OffsetCommit in domain terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The group id.
    pub group_id: String,
    /// Who commits.
    pub committer: Committer,
    /// Each partition's next offset to consume and its metadata, in request order.
    pub offsets: Vec<(TopicPartition, u64, Option<String>)>,
}

/// A commit in the offsets log and applied, not yet acknowledged.
#[derive(Debug)]
#[must_use = "a commit is acknowledged only once it is durable"]
pub struct PendingCommit {
    outcomes: BTreeMap<TopicPartition, CommitOutcome>,
    appended: Appended,
}

impl PendingCommit {
    /// Waits until the offsets log's durability policy covers the commit, then returns
    /// each partition's outcome.
    ///
    /// # Errors
    /// `Storage` with `Timeout` at `deadline`, or with the storage error of an offsets
    /// log poisoned by a failed fsync, at once.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn durable(
        self,
        deadline: Instant,
    ) -> Result<BTreeMap<TopicPartition, CommitOutcome>, CoordinatorError> {
        self.appended
            .wait_durable(deadline)
            .await
            .map_err(|source| match source {
                // The leadership moved before every in-sync replica had the commit: the
                // client finds the new coordinator and commits again there.
                PartitionError::LeaderNotAvailable { partition, .. } => {
                    CoordinatorError::NotCoordinator { partition }
                }
                source => CoordinatorError::Storage { source },
            })?;
        Ok(self.outcomes)
    }
}

/// A group as DescribeGroups shows it: the engine's snapshot and, for every partition
/// the group committed, owns or targets, how far behind it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    /// The engine's snapshot.
    pub group: GroupDescription,
    /// Sorted by topic, then partition.
    pub partitions: Vec<PartitionLag>,
}

/// One partition's committed offset against its high watermark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub tp: TopicPartition,
    /// The group's committed offset, if any.
    pub committed_offset: Option<u64>,
    /// The partition's high watermark, if it still exists.
    pub high_watermark: Option<u64>,
    /// `high_watermark - committed_offset` (at least 0), if both are known.
    pub lag: Option<u64>,
    /// The member that owns it, if any.
    pub owner: Option<String>,
}

/// The broker's group coordinator. Thread-safe.
#[derive(Debug)]
pub struct Groups {
    state: Mutex<State>,
    group_config: GroupConfig,
    pub(super) log: OffsetsLog,
    /// Wakes the expiry task when a deadline may have moved earlier.
    pub(super) deadlines_changed: Notify,
    member_ids: AtomicU64,
}

/// The groups in memory and the offsets-log partitions they come from.
#[derive(Debug)]
pub(super) struct State {
    /// The groups of the loaded partitions.
    pub(super) engine: Coordinator,
    /// The partitions whose groups are loaded, each with the leader epoch this broker
    /// leads it at: the partitions this broker leads, once loaded.
    pub(super) loaded: BTreeMap<u32, u32>,
}

impl Groups {
    /// Opens the offsets log. No group is served until this broker leads its partition
    /// and has loaded it ([`assign_roles`](Self::assign_roles)).
    ///
    /// # Errors
    /// [`GroupOpenError`] if the log cannot be opened or holds an unreadable record.
    pub fn open(config: &Config, storage: &Storage) -> Result<Self, GroupOpenError> {
        let log = OffsetsLog::open(config, storage)?;
        let group_config = GroupConfig {
            session_timeout: Duration::from_millis(config.group_session_timeout_ms),
            heartbeat_interval: Duration::from_millis(config.group_heartbeat_interval_ms),
            rebalance_timeout: Duration::from_millis(config.group_rebalance_timeout_ms),
            members_max: config.group_members_max,
        };
        Ok(Self {
            state: Mutex::new(State {
                engine: Coordinator::new(group_config.clone()),
                loaded: BTreeMap::new(),
            }),
            group_config,
            log,
            deadlines_changed: Notify::new(),
            member_ids: AtomicU64::new(0),
        })
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the engine as it was at the panic; the
        // records already appended describe it, so carrying on is what a restart would do.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Ok` if this broker serves `group_id` now: its partition of the offsets log is
    /// online, led here and loaded. Called under the lock that appends.
    fn check_serving(&self, state: &State, group_id: &str) -> Result<(), CoordinatorError> {
        self.log
            .check_group(group_id)
            .map_err(|source| CoordinatorError::Storage { source })?;
        let partition = self.log.partition_of(group_id) as u32;
        if state.loaded.contains_key(&partition) {
            Ok(())
        } else {
            Err(CoordinatorError::NotCoordinator { partition })
        }
    }

    /// Why this broker cannot serve `group_id` yet although the metadata makes it the
    /// coordinator: its partition is online but not loaded (being loaded, or the
    /// metadata moved on since this broker last followed it). `None` if loaded, or if
    /// offline (the group's requests then answer that the partition is offline).
    pub fn not_loaded(&self, group_id: &str) -> Option<String> {
        match self.check_serving(&self.state(), group_id) {
            Err(error @ CoordinatorError::NotCoordinator { .. }) => Some(error.to_string()),
            _ => None,
        }
    }

    /// Appends what the engine decided. The log is the truth: if the append fails (a full
    /// disk, a record over 32 MiB), the change must not live on in memory either, or a
    /// later change that does reach the log (say, granting a partition whose release was
    /// never written) would contradict the log after a restart. So the engine is rebuilt
    /// from the log, undoing the change, and the client gets the storage error. Rebuilding
    /// reads every loaded partition whole, which is acceptable on this failure path.
    fn persist(&self, state: &mut State, records: &[Record]) -> Result<(), CoordinatorError> {
        self.append(records).map(drop).inspect_err(|_| {
            tracing::error!("reloading group state from the offsets log");
            if let Err(message) = self.reload(state) {
                tracing::error!(
                    %message,
                    "cannot reload group state; keeping the unpersisted change in memory"
                );
            }
        })
    }

    /// Rebuilds the engine from the loaded partitions' logs.
    fn reload(&self, state: &mut State) -> Result<(), GroupOpenError> {
        let mut engine = Coordinator::new(self.group_config.clone());
        let now = Instant::now();
        for &index in state.loaded.keys() {
            for record in self.log.load(index)? {
                engine.replay(record, now);
            }
        }
        state.engine = engine;
        Ok(())
    }

    fn append(&self, records: &[Record]) -> Result<Appended, CoordinatorError> {
        if records.is_empty() {
            return Ok(Appended::default());
        }
        self.log.append(records).map_err(|source| {
            tracing::error!(error = %source, "cannot append to the offsets log");
            CoordinatorError::Storage { source }
        })
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let sequence = self.member_ids.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let prefix: String = client_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .take(64)
            .collect();
        let prefix = if prefix.is_empty() { "member" } else { &prefix };
        format!("{prefix}-{nanos:016x}-{sequence:x}")
    }

    /// Runs one heartbeat, minting a member id for a join that brings none.
    ///
    /// # Errors
    /// The engine's refusal (unknown member, fenced epoch, ...) or a storage failure.
    pub fn heartbeat(
        &self,
        mut heartbeat: Heartbeat,
        metadata: &Image,
    ) -> Result<HeartbeatReply, CoordinatorError> {
        if heartbeat.member_epoch == MemberEpoch::Join && heartbeat.member_id.is_empty() {
            heartbeat.new_member_id = self.new_member_id(&heartbeat.client_id);
        }
        let partition_count = |topic: &str| {
            metadata
                .topics
                .get(topic)
                .map(|topic| topic.partitions.len() as u32)
        };
        let mut records = Vec::new();
        let reply = {
            let mut state = self.state();
            self.check_serving(&state, &heartbeat.group_id)?;
            let reply =
                state
                    .engine
                    .heartbeat(heartbeat, &partition_count, Instant::now(), &mut records);
            self.persist(&mut state, &records)?;
            reply?
        };
        self.deadlines_changed.notify_one();
        Ok(reply)
    }

    /// Commits offsets: validated by the engine (membership, epoch, ownership),
    /// appended, then applied. Returns each partition's outcome, to be answered once the
    /// commit is durable; a partition of a topic that does not exist is
    /// `UnknownPartition`.
    ///
    /// # Errors
    /// The engine's whole-request refusal or a storage failure.
    pub fn commit(
        &self,
        commit: &OffsetCommit,
        metadata: &Image,
    ) -> Result<PendingCommit, CoordinatorError> {
        let (offsets, unknown): (Vec<_>, Vec<_>) =
            commit.offsets.iter().cloned().partition(|(tp, _, _)| {
                metadata
                    .topics
                    .get(&tp.topic)
                    .is_some_and(|topic| tp.partition < topic.partitions.len() as u32)
            });
        let mut records = Vec::new();
        let (outcomes, appended) = {
            let mut state = self.state();
            self.check_serving(&state, &commit.group_id)?;
            self.log
                .check_replicas(&commit.group_id)
                .map_err(|source| CoordinatorError::Storage { source })?;
            let outcomes = state.engine.commit(
                &commit.group_id,
                &commit.committer,
                &offsets,
                now_ms(),
                &mut records,
            )?;
            // Nothing changed yet: a failed append needs no undoing.
            let appended = self.append(&records)?;
            let now = Instant::now();
            for record in records {
                state.engine.replay(record, now);
            }
            (outcomes, appended)
        };
        let mut outcomes: BTreeMap<TopicPartition, CommitOutcome> = outcomes.into_iter().collect();
        for (tp, _, _) in unknown {
            outcomes.insert(tp, CommitOutcome::UnknownPartition);
        }
        Ok(PendingCommit { outcomes, appended })
    }

    /// A group's committed offsets and their metadata; empty for a group that never
    /// committed.
    ///
    /// # Errors
    /// `Storage` with `Offline` when the group's offsets partition is offline;
    /// `NotCoordinator` when it is not loaded here.
    pub fn committed(
        &self,
        group_id: &str,
    ) -> Result<BTreeMap<TopicPartition, (u64, Option<String>)>, CoordinatorError> {
        let state = self.state();
        self.check_serving(&state, group_id)?;
        Ok(state.engine.committed(group_id))
    }

    /// The offsets log's local partitions, by index, for replication.
    pub fn partitions(&self) -> &[Arc<Partition>] {
        self.log.partitions()
    }

    /// Whether an offsets-log partition was not closed cleanly at the last stop.
    pub fn opened_unclean(&self) -> bool {
        self.log.opened_unclean()
    }

    /// How many offsets-log partitions are offline.
    pub fn offline_count(&self) -> usize {
        self.log.offline_count()
    }

    /// Every group this broker serves, sorted by group id.
    pub fn list(&self) -> Vec<GroupSummary> {
        self.state().engine.list_groups()
    }

    /// Describes each group (`None` if it does not exist), with committed offsets and
    /// lag against each partition's high watermark, all as of one moment.
    pub fn describe(
        &self,
        group_ids: &[String],
        topics: &TopicRegistry,
    ) -> Vec<Option<GroupReport>> {
        let state = self.state();
        group_ids
            .iter()
            .map(|group_id| {
                let group = state.engine.describe(group_id)?;
                let partitions = partition_lags(&group, topics);
                Some(GroupReport { group, partitions })
            })
            .collect()
    }

    /// Deletes a group with no members, and its committed offsets.
    ///
    /// # Errors
    /// The engine's refusal (no such group, members left) or a storage failure.
    pub fn delete(&self, group_id: &str) -> Result<(), CoordinatorError> {
        let mut records = Vec::new();
        let mut state = self.state();
        self.check_serving(&state, group_id)?;
        state.engine.delete_group(group_id, &mut records)?;
        self.persist(&mut state, &records)
    }

    /// Deletes every group's committed offsets on `topic`, so a topic created again
    /// under its name starts with none: of the groups this broker serves; the others'
    /// coordinators do the same.
    ///
    /// # Errors
    /// A storage failure; then no offset was deleted.
    pub fn delete_topic_offsets(&self, topic: &str) -> Result<(), CoordinatorError> {
        self.forget(topic)
    }

    /// Every topic some group this broker serves has committed offsets for.
    pub fn committed_topics(&self) -> BTreeSet<String> {
        self.state().engine.committed_topics()
    }

    fn forget(&self, topic: &str) -> Result<(), CoordinatorError> {
        let mut records = Vec::new();
        let mut state = self.state();
        state.engine.forget_topic(topic, &mut records);
        self.append(&records)?;
        let now = Instant::now();
        for record in records {
            state.engine.replay(record, now);
        }
        Ok(())
    }

    /// Expires members whose session or revocation deadline passed, sleeping until the
    /// earliest deadline (or until a heartbeat moves one), until `shutdown`.
    pub async fn expire_sessions(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = {
                let mut state = self.state();
                let mut records = Vec::new();
                state.engine.expire(Instant::now(), &mut records);
                if let Err(error) = self.persist(&mut state, &records) {
                    tracing::error!(%error, "expired members could not be persisted");
                }
                state.engine.next_deadline()
            };
            let sleep = async {
                match next {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep => {}
                () = self.deadlines_changed.notified() => {}
            }
        }
    }

    /// `strata_group_lag` in Prometheus text format, computed now: one gauge per group
    /// and committed partition.
    pub fn lag_metrics(&self, topics: &TopicRegistry) -> String {
        let state = self.state();
        let mut text = String::new();
        for (group, tp, offset) in state.engine.all_committed() {
            let Some(partition) = topics.partition(&tp.topic, tp.partition) else {
                continue;
            };
            if text.is_empty() {
                text.push_str("# HELP strata_group_lag Records between a group's committed offset and the partition's high watermark.\n# TYPE strata_group_lag gauge\n");
            }
            let lag = partition.high_watermark().saturating_sub(offset);
            let _ = writeln!(
                text,
                "strata_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{}\"}} {lag}",
                escape_label(group),
                escape_label(&tp.topic),
                tp.partition
            );
        }
        text
    }

    /// Flushes and closes the offsets log.
    pub fn close(&self) {
        self.log.close();
    }
}

/// The lag of every partition the group committed, owns or targets, sorted.
fn partition_lags(group: &GroupDescription, topics: &TopicRegistry) -> Vec<PartitionLag> {
    let mut owners: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
    let mut partitions: BTreeSet<&TopicPartition> = group.committed.keys().collect();
    for member in &group.members {
        for tp in &member.assigned {
            owners.insert(tp, &member.member_id);
        }
        partitions.extend(member.assigned.iter().chain(&member.target));
    }
    partitions
        .into_iter()
        .map(|tp| {
            let committed_offset = group.committed.get(tp).map(|(offset, _)| *offset);
            let high_watermark = topics
                .partition(&tp.topic, tp.partition)
                .map(|partition| partition.high_watermark());
            PartitionLag {
                tp: tp.clone(),
                committed_offset,
                high_watermark,
                lag: lag(committed_offset, high_watermark),
                owner: owners.get(tp).map(|owner| (*owner).to_owned()),
            }
        })
        .collect()
}

fn lag(committed: Option<u64>, high_watermark: Option<u64>) -> Option<u64> {
    Some(high_watermark?.saturating_sub(committed?))
}

/// Escapes a Prometheus label value.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn lag_is_missing_without_a_committed_offset() {
        assert_eq!(lag(None, Some(10)), None);
        assert_eq!(lag(Some(4), Some(10)), Some(6));
        assert_eq!(lag(Some(12), Some(10)), Some(0));
        assert_eq!(lag(Some(4), None), None);
    }
}
