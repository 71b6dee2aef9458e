//! The group coordinator as the broker runs it: the pure [`Coordinator`] behind one
//! mutex, the [`OffsetsLog`] its records go to, and the timer that expires sessions.
//!
//! Every change is decided by the engine and appended to the offsets log under the same
//! lock, so the log's order is the engine's order and replaying the log at startup
//! rebuilds the state the broker had. A commit is validated first, appended, and only
//! then applied, so an offset is never visible (to OffsetFetch, lag, or a restarted
//! consumer) before it is in the log.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use strata_protocol::ErrorCode;
use strata_protocol::messages::{
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, DescribedGroup,
    GroupMember, GroupOffsetPartition, GroupOffsetTopic, GroupResult, JOIN_EPOCH,
    ListGroupsRequest, ListGroupsResponse, ListedGroup, NO_OFFSET, OffsetCommitRequest,
    OffsetCommitResponse, OffsetCommitTopicResponse, OffsetFetchPartition, OffsetFetchRequest,
    OffsetFetchResponse, OffsetFetchTopic, PartitionResult, TopicPartitions,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::group::engine::{Coordinator, GroupConfig, GroupError, Heartbeat, TopicPartition};
use crate::group::open_error::GroupOpenError;
use crate::group::records::Record;
use crate::group::store::OffsetsLog;
use crate::partition::{Storage, now_ms};
use crate::topics::TopicRegistry;

/// A whole-request failure: the code and a message for the client.
pub type Failure = (ErrorCode, String);

/// The broker's group coordinator. Thread-safe.
#[derive(Debug)]
pub struct Groups {
    engine: Mutex<Coordinator>,
    group_config: GroupConfig,
    log: OffsetsLog,
    /// Wakes the expiry task when a deadline may have moved earlier.
    deadlines_changed: Notify,
    member_ids: AtomicU64,
}

impl Groups {
    /// Opens the offsets log and rebuilds every group from it.
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
        let engine = load(&log, &group_config)?;
        tracing::info!(
            groups = engine.list_groups().len(),
            "loaded consumer groups"
        );
        Ok(Self {
            engine: Mutex::new(engine),
            group_config,
            log,
            deadlines_changed: Notify::new(),
            member_ids: AtomicU64::new(0),
        })
    }

    fn engine(&self) -> MutexGuard<'_, Coordinator> {
        // A panic while holding the lock leaves the engine as it was at the panic; the
        // records already appended describe it, so carrying on is what a restart would do.
        self.engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends what the engine decided. The log is the truth: if the append fails (a full
    /// disk, a record over 32 MiB), the change must not live on in memory either, or a
    /// later change that does reach the log (say, granting a partition whose release was
    /// never written) would contradict the log after a restart. So the engine is rebuilt
    /// from the log, undoing the change, and the client gets the storage error. Rebuilding
    /// reads the whole offsets log, which is acceptable on this failure path.
    fn persist(&self, engine: &mut Coordinator, records: &[Record]) -> Result<(), Failure> {
        self.append(records).inspect_err(|_| {
            tracing::error!("reloading group state from the offsets log");
            match load(&self.log, &self.group_config) {
                Ok(reloaded) => *engine = reloaded,
                Err(message) => tracing::error!(
                    %message,
                    "cannot reload group state; keeping the unpersisted change in memory"
                ),
            }
        })
    }

    fn append(&self, records: &[Record]) -> Result<(), Failure> {
        if records.is_empty() {
            return Ok(());
        }
        self.log.append(records).map_err(|error| {
            tracing::error!(%error, "cannot append to the offsets log");
            (error.code(), format!("cannot persist group state: {error}"))
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

    /// Handles a ConsumerGroupHeartbeat.
    ///
    /// # Errors
    /// The engine's error (unknown member, fenced epoch, ...) or a storage failure.
    pub fn heartbeat(
        &self,
        request: ConsumerGroupHeartbeatRequest,
        client_id: &str,
        client_host: &str,
        topics: &TopicRegistry,
    ) -> Result<ConsumerGroupHeartbeatResponse, Failure> {
        // Only a join without a client-chosen id needs one minted.
        let joining_anonymously =
            request.member_epoch == JOIN_EPOCH && request.member_id.is_empty();
        let heartbeat = Heartbeat {
            new_member_id: if joining_anonymously {
                self.new_member_id(client_id)
            } else {
                String::new()
            },
            group_id: request.group_id,
            member_id: request.member_id,
            member_epoch: request.member_epoch,
            instance_id: request.instance_id,
            subscribed_topics: request.subscribed_topics,
            assignor: request.assignor,
            owned: request.owned_partitions.map(|owned| to_set(&owned)),
            client_id: client_id.to_owned(),
            client_host: client_host.to_owned(),
        };
        let partition_count =
            |topic: &str| topics.get(topic).map(|topic| topic.partitions.len() as u32);
        let mut records = Vec::new();
        let reply = {
            let mut engine = self.engine();
            let reply = engine.heartbeat(heartbeat, &partition_count, Instant::now(), &mut records);
            self.persist(&mut engine, &records)?;
            reply.map_err(failure)?
        };
        self.deadlines_changed.notify_one();
        Ok(ConsumerGroupHeartbeatResponse {
            member_id: reply.member_id,
            member_epoch: reply.member_epoch,
            heartbeat_interval_ms: reply.heartbeat_interval_ms,
            assignment: Some(to_topic_partitions(reply.assignment.iter())),
        })
    }

    /// Handles an OffsetCommit: validated by the engine (membership, epoch, ownership),
    /// appended, then applied.
    ///
    /// # Errors
    /// The engine's whole-request error or a storage failure.
    pub fn commit(
        &self,
        request: &OffsetCommitRequest,
        topics: &TopicRegistry,
    ) -> Result<OffsetCommitResponse, Failure> {
        let mut unknown = BTreeSet::new();
        let mut offsets = Vec::new();
        for topic in &request.topics {
            let count = topics
                .get(&topic.name)
                .map_or(0, |topic| topic.partitions.len() as u32);
            for partition in &topic.partitions {
                let tp = TopicPartition {
                    topic: topic.name.clone(),
                    partition: partition.partition,
                };
                if partition.partition < count {
                    offsets.push((tp, partition.offset, partition.metadata.clone()));
                } else {
                    unknown.insert(tp);
                }
            }
        }
        let mut records = Vec::new();
        let outcomes = {
            let mut engine = self.engine();
            let outcomes = engine
                .commit(
                    &request.group_id,
                    &request.member_id,
                    request.member_epoch,
                    &offsets,
                    now_ms(),
                    &mut records,
                )
                .map_err(failure)?;
            // Nothing changed yet: a failed append needs no undoing.
            self.append(&records)?;
            let now = Instant::now();
            for record in records {
                engine.replay(record, now);
            }
            outcomes
        };
        let mut codes: BTreeMap<(&str, u32), ErrorCode> = outcomes
            .iter()
            .map(|(tp, code)| ((tp.topic.as_str(), tp.partition), *code))
            .collect();
        for tp in &unknown {
            codes.insert(
                (tp.topic.as_str(), tp.partition),
                ErrorCode::UnknownTopicOrPartition,
            );
        }
        Ok(OffsetCommitResponse {
            topics: request
                .topics
                .iter()
                .map(|topic| OffsetCommitTopicResponse {
                    name: topic.name.clone(),
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|partition| PartitionResult {
                            partition: partition.partition,
                            error_code: codes
                                .get(&(topic.name.as_str(), partition.partition))
                                .copied()
                                .unwrap_or(ErrorCode::Unknown),
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// Handles an OffsetFetch. A group that never committed has no offsets.
    pub fn fetch_offsets(&self, request: &OffsetFetchRequest) -> OffsetFetchResponse {
        let committed = self.engine().committed(&request.group_id);
        let wanted: Vec<TopicPartitions> = match &request.topics {
            Some(topics) => topics.clone(),
            None => to_topic_partitions(committed.keys()),
        };
        OffsetFetchResponse {
            topics: wanted
                .into_iter()
                .map(|topic| OffsetFetchTopic {
                    partitions: topic
                        .partitions
                        .iter()
                        .map(|&partition| {
                            let found = committed.get(&TopicPartition {
                                topic: topic.topic.clone(),
                                partition,
                            });
                            OffsetFetchPartition {
                                partition,
                                offset: found.map_or(NO_OFFSET, |(offset, _)| *offset as i64),
                                metadata: found.and_then(|(_, metadata)| metadata.clone()),
                                error_code: ErrorCode::None,
                            }
                        })
                        .collect(),
                    name: topic.topic,
                })
                .collect(),
        }
    }

    /// Handles a ListGroups.
    pub fn list(&self, request: &ListGroupsRequest) -> ListGroupsResponse {
        let groups = self.engine().list_groups();
        ListGroupsResponse {
            groups: groups
                .into_iter()
                .filter(|group| {
                    request.states_filter.is_empty()
                        || request
                            .states_filter
                            .iter()
                            .any(|state| state.eq_ignore_ascii_case(group.state.name()))
                })
                .map(|group| ListedGroup {
                    group_id: group.group_id,
                    state: group.state.name().to_owned(),
                    member_count: group.member_count as u32,
                })
                .collect(),
        }
    }

    /// Handles a DescribeGroups: members, assignment, committed offsets and lag against
    /// each partition's high watermark.
    pub fn describe(
        &self,
        request: &DescribeGroupsRequest,
        topics: &TopicRegistry,
    ) -> DescribeGroupsResponse {
        let engine = self.engine();
        let groups = request
            .group_ids
            .iter()
            .map(|group_id| match engine.describe(group_id) {
                None => DescribedGroup {
                    group_id: group_id.clone(),
                    error_code: ErrorCode::GroupIdNotFound,
                    state: String::new(),
                    group_epoch: 0,
                    assignment_epoch: 0,
                    assignor: String::new(),
                    members: Vec::new(),
                    offsets: Vec::new(),
                },
                Some(group) => {
                    let mut owners: BTreeMap<&TopicPartition, &str> = BTreeMap::new();
                    let mut partitions: BTreeSet<&TopicPartition> =
                        group.committed.keys().collect();
                    for member in &group.members {
                        for tp in &member.assigned {
                            owners.insert(tp, &member.member_id);
                        }
                        partitions.extend(member.assigned.iter().chain(&member.target));
                    }
                    let offsets = partitions.into_iter().map(|tp| {
                        let committed = group
                            .committed
                            .get(tp)
                            .map_or(NO_OFFSET, |(offset, _)| *offset as i64);
                        let high_watermark = topics
                            .partition(&tp.topic, tp.partition)
                            .map_or(NO_OFFSET, |partition| partition.high_watermark() as i64);
                        (
                            tp,
                            GroupOffsetPartition {
                                partition: tp.partition,
                                committed_offset: committed,
                                high_watermark,
                                lag: lag(committed, high_watermark),
                                owner: owners.get(tp).map(|owner| (*owner).to_owned()),
                            },
                        )
                    });
                    DescribedGroup {
                        group_id: group_id.clone(),
                        error_code: ErrorCode::None,
                        state: group.state.name().to_owned(),
                        group_epoch: group.group_epoch,
                        assignment_epoch: group.assignment_epoch,
                        assignor: group.assignor.name().to_owned(),
                        members: group
                            .members
                            .iter()
                            .map(|member| GroupMember {
                                member_id: member.member_id.clone(),
                                instance_id: member.instance_id.clone(),
                                client_id: member.client_id.clone(),
                                client_host: member.client_host.clone(),
                                member_epoch: member.member_epoch,
                                subscribed_topics: member.subscribed_topics.clone(),
                                assignment: to_topic_partitions(member.assigned.iter()),
                                pending_revocation: to_topic_partitions(
                                    member.pending_revocation.iter(),
                                ),
                                target_assignment: to_topic_partitions(member.target.iter()),
                            })
                            .collect(),
                        offsets: group_by_topic(offsets),
                    }
                }
            })
            .collect();
        DescribeGroupsResponse { groups }
    }

    /// Handles a DeleteGroups: each group must have no members.
    pub fn delete(&self, request: &DeleteGroupsRequest) -> DeleteGroupsResponse {
        let groups = request
            .group_ids
            .iter()
            .map(|group_id| {
                let mut records = Vec::new();
                let mut engine = self.engine();
                let outcome = engine
                    .delete_group(group_id, &mut records)
                    .map_err(failure)
                    .and_then(|()| self.persist(&mut engine, &records));
                let (error_code, error_message) = match outcome {
                    Ok(()) => (ErrorCode::None, None),
                    Err((code, message)) => (code, Some(message)),
                };
                GroupResult {
                    group_id: group_id.clone(),
                    error_code,
                    error_message,
                }
            })
            .collect();
        DeleteGroupsResponse { groups }
    }

    /// Expires members whose session or revocation deadline passed, sleeping until the
    /// earliest deadline (or until a heartbeat moves one), until `shutdown`.
    pub async fn expire_sessions(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = {
                let mut engine = self.engine();
                let mut records = Vec::new();
                engine.expire(Instant::now(), &mut records);
                if let Err((_, message)) = self.persist(&mut engine, &records) {
                    tracing::error!(%message, "expired members could not be persisted");
                }
                engine.next_deadline()
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
        let engine = self.engine();
        let mut text = String::new();
        for (group, tp, offset) in engine.all_committed() {
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

/// Rebuilds every group by replaying the offsets log.
fn load(log: &OffsetsLog, config: &GroupConfig) -> Result<Coordinator, GroupOpenError> {
    let mut engine = Coordinator::new(config.clone());
    let now = Instant::now();
    for record in log.load()? {
        engine.replay(record, now);
    }
    Ok(engine)
}

fn failure(error: GroupError) -> Failure {
    (error.code, error.message)
}

fn lag(committed: i64, high_watermark: i64) -> i64 {
    if committed < 0 || high_watermark < 0 {
        NO_OFFSET
    } else {
        (high_watermark - committed).max(0)
    }
}

/// Escapes a Prometheus label value.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn to_set(topics: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|&partition| TopicPartition {
                topic: topic.topic.clone(),
                partition,
            })
        })
        .collect()
}

fn to_topic_partitions<'a>(tps: impl Iterator<Item = &'a TopicPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for tp in tps {
        match out.last_mut() {
            Some(last) if last.topic == tp.topic => last.partitions.push(tp.partition),
            _ => out.push(TopicPartitions {
                topic: tp.topic.clone(),
                partitions: vec![tp.partition],
            }),
        }
    }
    out
}

fn group_by_topic<'a>(
    partitions: impl Iterator<Item = (&'a TopicPartition, GroupOffsetPartition)>,
) -> Vec<GroupOffsetTopic> {
    let mut out: Vec<GroupOffsetTopic> = Vec::new();
    for (tp, partition) in partitions {
        match out.last_mut() {
            Some(last) if last.name == tp.topic => last.partitions.push(partition),
            _ => out.push(GroupOffsetTopic {
                name: tp.topic.clone(),
                partitions: vec![partition],
            }),
        }
    }
    out
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
        assert_eq!(lag(NO_OFFSET, 10), NO_OFFSET);
        assert_eq!(lag(4, 10), 6);
        assert_eq!(lag(12, 10), 0);
    }
}
