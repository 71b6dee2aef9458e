//! What replication does to a partition's log: the leader answering its followers'
//! fetches and waiting for `acks = all`, the follower appending the leader's batches and
//! truncating where its log diverges. The rules come from `replication::engine`.

use std::time::Instant;

use bytes::Bytes;
use strata_protocol::batch;
use strata_storage::{Log, StorageError};
use tokio::sync::watch;

use super::replica::{Leadership, Role};
use super::{Partition, PartitionError, Read, now_ms};
use crate::replication::engine::{self, Diverging};

/// A follower's replica fetch, as the leader sees it.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaUpdate {
    /// The follower's node id.
    pub replica: u32,
    /// The incarnation of its broker.
    pub incarnation: u64,
    /// The leader epoch it follows.
    pub current_leader_epoch: u32,
    /// Its log end offset.
    pub fetch_offset: u64,
    /// The epoch of its last batch, if it has one.
    pub last_fetched_epoch: Option<u32>,
    /// Its durable offset.
    pub durable_offset: u64,
}

/// An in-sync set change a leader asks the controller for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrRequest {
    /// The leader epoch it is based on.
    pub leader_epoch: u32,
    /// The partition epoch it is based on.
    pub partition_epoch: u32,
    /// The set wanted.
    pub isr: Vec<u32>,
    /// The incarnation each member it adds fetched at (KIP-903).
    pub incarnations: Vec<(u32, u64)>,
}

/// The leader's answer to one partition of a replica fetch.
#[derive(Debug, Default)]
pub struct ReplicaRead {
    /// The leader's epoch.
    pub leader_epoch: u32,
    /// Its high watermark.
    pub high_watermark: u64,
    /// Its log start offset.
    pub log_start_offset: u64,
    /// Its log end offset.
    pub log_end_offset: u64,
    /// Where the follower's log diverges, if it does; no records then.
    pub diverging: Option<Diverging>,
    /// The batches from the fetch offset.
    pub read: Read,
    /// The follower reached the log end while out of the in-sync set: the leader should
    /// ask for it to join.
    pub may_join: bool,
}

fn ms() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

impl Partition {
    /// The partition's role now.
    pub fn role(&self) -> Role {
        self.replica.role().clone()
    }

    /// Leads the partition as the metadata says.
    pub fn lead(&self, leadership: Leadership) {
        self.replica.lead(
            leadership,
            (self.latest_epoch(), self.log_start_offset()),
            ms(),
        );
    }

    /// Follows `leader` at `epoch`: `acks = all` waiters fail (retriably), and client
    /// produces are refused.
    pub fn follow(&self, leader: Option<u32>, epoch: u32) {
        self.replica.follow(leader, epoch, self.log_start_offset());
    }

    pub(super) fn not_leading(&self, reason: &str) -> PartitionError {
        PartitionError::LeaderNotAvailable {
            topic: self.topic.clone(),
            partition: self.index,
            reason: reason.to_owned(),
        }
    }

    /// `Ok` if this broker leads the partition and may take a client's write.
    pub(super) fn check_leader(&self) -> Result<(), PartitionError> {
        match &*self.replica.role() {
            Role::Leader(_) => Ok(()),
            Role::Alone => Err(self.not_leading("this broker has not taken up its leadership yet")),
            Role::Follower { .. } => Err(self.not_leading("this broker no longer leads it")),
        }
    }

    /// `Ok` unless the in-sync set is below the minimum (KIP-966): an `acks = all` write
    /// is then refused before anything is appended.
    ///
    /// # Errors
    /// [`PartitionError::NotEnoughReplicas`].
    pub fn check_acks_all(&self) -> Result<(), PartitionError> {
        match &*self.replica.role() {
            Role::Leader(leading) if leading.isr.len() < leading.min_isr => {
                Err(PartitionError::NotEnoughReplicas {
                    topic: self.topic.clone(),
                    partition: self.index,
                    in_sync: leading.isr.len(),
                    min: leading.min_isr,
                })
            }
            _ => Ok(()),
        }
    }

    /// `Ok` once a leader's high watermark reached the log end it had when it took over
    /// (KIP-207): until then its latest offset may be below what consumers already read
    /// from the previous leader.
    ///
    /// # Errors
    /// [`PartitionError::OffsetNotAvailable`] (retriable).
    pub fn check_offsets_available(&self) -> Result<(), PartitionError> {
        let high_watermark = self.high_watermark();
        match &*self.replica.role() {
            Role::Leader(leading) if high_watermark < leading.epoch_start => {
                Err(PartitionError::OffsetNotAvailable {
                    topic: self.topic.clone(),
                    partition: self.index,
                    high_watermark,
                    epoch_start: leading.epoch_start,
                })
            }
            _ => Ok(()),
        }
    }

    /// Waits until every in-sync replica covers everything below `offset` (alone: until
    /// the durability policy does), or `deadline` passes. `leader_epoch` is the epoch the
    /// write was appended under ([`AppendResult::leader_epoch`](super::AppendResult)):
    /// if the partition is led at another one since, the write may be gone.
    ///
    /// # Errors
    /// [`PartitionError::Timeout`] at the deadline; `NotEnoughReplicasAfterAppend` if the
    /// in-sync set falls below the minimum, `LeaderNotAvailable` if this broker stops
    /// leading at that epoch (both retriable: the write may or may not survive); a storage
    /// error if the log is poisoned, or if a flush ran out of disk space or descriptors
    /// first.
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits.
    pub async fn wait_committed(
        &self,
        offset: u64,
        leader_epoch: Option<u32>,
        deadline: Instant,
    ) -> Result<(), PartitionError> {
        let log = self.log()?;
        let mut high_watermark = self.replica.high_watermark.subscribe();
        let mut durable = self.durable_offset.subscribe();
        loop {
            high_watermark.borrow_and_update();
            durable.borrow_and_update();
            // The role first: a high watermark this broker reached as a follower, or
            // at a later epoch, says nothing of this write.
            match &*self.replica.role() {
                Role::Leader(leading)
                    if leader_epoch.is_some_and(|epoch| epoch != leading.epoch) =>
                {
                    return Err(self.not_leading(
                        "leadership changed before every in-sync replica had the write",
                    ));
                }
                Role::Leader(leading) if leading.isr.len() < leading.min_isr => {
                    return Err(PartitionError::NotEnoughReplicasAfterAppend {
                        topic: self.topic.clone(),
                        partition: self.index,
                    });
                }
                Role::Follower { .. } => {
                    return Err(self.not_leading(
                        "leadership moved before every in-sync replica had the write",
                    ));
                }
                _ => {}
            }
            if self.high_watermark() >= offset {
                return Ok(());
            }
            log.check_poisoned()?;
            if let Some(error) = log.durability_stalled(offset) {
                return Err(error.into());
            }
            let woken = tokio::time::timeout_at(deadline.into(), async {
                tokio::select! {
                    changed = high_watermark.changed() => changed.is_ok(),
                    changed = durable.changed() => changed.is_ok(),
                }
            })
            .await;
            if !matches!(woken, Ok(true)) {
                return Err(PartitionError::Timeout);
            }
        }
    }

    /// A receiver that changes whenever the log end offset moves (or the role changes).
    pub fn subscribe_log_end(&self) -> watch::Receiver<u64> {
        self.replica.log_end.subscribe()
    }

    /// Answers a follower's fetch of this partition, which this broker leads: checks its
    /// epoch, finds where its log diverges, records its progress (moving the high
    /// watermark), and reads from its fetch offset up to the log end.
    ///
    /// # Errors
    /// `LeaderNotAvailable` if this broker does not lead the partition or the fetcher is
    /// not a replica; `FencedLeaderEpoch`/`UnknownLeaderEpoch` for an epoch older/newer
    /// than the leader's; `OffsetOutOfRange` for a fetch offset outside the log;
    /// `Offline`.
    pub fn serve_replica(
        &self,
        update: ReplicaUpdate,
        max_bytes: usize,
    ) -> Result<ReplicaRead, PartitionError> {
        let log = self.log()?;
        let (leader_epoch, may_join) = {
            let mut role = self.replica.role();
            let Role::Leader(leading) = &mut *role else {
                return Err(self.not_leading("this broker does not lead it"));
            };
            if update.current_leader_epoch < leading.epoch {
                return Err(PartitionError::FencedLeaderEpoch {
                    topic: self.topic.clone(),
                    partition: self.index,
                    given: update.current_leader_epoch,
                    current: leading.epoch,
                });
            }
            if update.current_leader_epoch > leading.epoch {
                return Err(PartitionError::UnknownLeaderEpoch {
                    topic: self.topic.clone(),
                    partition: self.index,
                    given: update.current_leader_epoch,
                    current: leading.epoch,
                });
            }
            if update.replica == leading.me || !leading.replicas.contains(&update.replica) {
                return Err(self.not_leading(&format!(
                    "broker {} is not a follower of it",
                    update.replica
                )));
            }
            let end_for_epoch = update
                .last_fetched_epoch
                .and_then(|epoch| log.end_offset_for_epoch(epoch));
            let diverging = engine::divergence(
                update.last_fetched_epoch,
                update.fetch_offset,
                end_for_epoch,
            );
            if diverging.is_some() {
                return Ok(ReplicaRead {
                    leader_epoch: leading.epoch,
                    high_watermark: self.high_watermark(),
                    log_start_offset: log.log_start_offset(),
                    log_end_offset: log.log_end_offset(),
                    diverging,
                    ..ReplicaRead::default()
                });
            }
            let log_end = log.log_end_offset();
            if update.fetch_offset > log_end || update.fetch_offset < log.log_start_offset() {
                return Err(StorageError::OffsetOutOfRange {
                    offset: update.fetch_offset,
                    log_start_offset: log.log_start_offset(),
                    log_end_offset: log_end,
                }
                .into());
            }
            let now = ms();
            let progress = leading
                .followers
                .entry(update.replica)
                .or_insert_with(|| engine::Progress::new(update.incarnation, now));
            if progress.incarnation != update.incarnation {
                *progress = engine::Progress::new(update.incarnation, now);
            }
            progress.on_fetch(now, update.fetch_offset, update.durable_offset, log_end);
            let may_join = !leading.isr.contains(&update.replica) && update.fetch_offset >= log_end;
            (leading.epoch, may_join)
        };
        self.replica.refresh();
        let log_end_offset = log.log_end_offset();
        // 0: the reassignment throttle holds the records back; the progress still counts.
        let read = if max_bytes == 0 {
            Read::default()
        } else {
            self.read_below(update.fetch_offset, max_bytes, log_end_offset)?
        };
        Ok(ReplicaRead {
            leader_epoch,
            high_watermark: self.high_watermark(),
            log_start_offset: log.log_start_offset(),
            log_end_offset,
            diverging: None,
            read,
            may_join,
        })
    }

    /// The in-sync set this leader should ask the controller for, with the leader and
    /// partition epochs it is based on; `None` if it leads nothing here or the set is
    /// right. `eligible` says whether a broker may join at an incarnation. Members it
    /// adds count toward the high watermark from now on (Kafka's "maximal ISR"): once
    /// the controller commits them they are electable, so they must hold everything
    /// below it. If the change is refused, call
    /// [`isr_change_failed`](Self::isr_change_failed); if its fate is unknown, they stay
    /// counted until the image shows it, or the set is right again.
    pub fn wanted_isr(
        &self,
        lag_max_ms: u64,
        eligible: impl Fn(u32, u64) -> bool,
    ) -> Option<IsrRequest> {
        let mut role = self.replica.role();
        let Role::Leader(leading) = &mut *role else {
            return None;
        };
        let Some(wanted) = engine::wanted_isr(
            leading.me,
            &leading.replicas,
            &leading.isr,
            &leading.followers,
            (ms(), lag_max_ms),
            eligible,
        ) else {
            leading.joining.clear();
            return None;
        };
        leading.joining = wanted
            .iter()
            .copied()
            .filter(|member| !leading.isr.contains(member))
            .collect();
        let incarnations = leading
            .joining
            .iter()
            .filter_map(|member| {
                let progress = leading.followers.get(member)?;
                Some((*member, progress.incarnation))
            })
            .collect();
        Some(IsrRequest {
            leader_epoch: leading.epoch,
            partition_epoch: leading.partition_epoch,
            isr: wanted,
            incarnations,
        })
    }

    /// The in-sync set change asked for at `leader_epoch` was refused or not committed:
    /// the members it would have added stop counting toward the high watermark.
    pub fn isr_change_failed(&self, leader_epoch: u32) {
        if let Role::Leader(leading) = &mut *self.replica.role()
            && leading.epoch == leader_epoch
        {
            leading.joining.clear();
        }
        self.replica.refresh();
    }

    /// The epoch of the last batch in the log.
    pub fn latest_epoch(&self) -> Option<u32> {
        self.log.as_ref().ok().and_then(|log| log.latest_epoch())
    }

    /// The offset below which the log is fsynced, as the log has it now (lowered by a
    /// truncation), at most the log end.
    pub fn durable_offset(&self) -> u64 {
        self.log
            .as_ref()
            .map_or(0, |log| log.durable_offset().min(log.log_end_offset()))
    }

    /// Under `durability = every_batch`, waits (at most `timeout`) until the log is
    /// fsynced up to its end: a follower reports its durable offset in its next fetch,
    /// and the leader's `acks = all` waits for it, so a fetch sent before the fsync would
    /// leave the write waiting for the one after, up to the leader's park time.
    pub async fn settle_durable(&self, timeout: std::time::Duration) {
        if self.settings().durability != crate::config::DurabilityPolicy::EveryBatch {
            return;
        }
        let target = self.log_end_offset();
        let mut durable = self.durable_offset.subscribe();
        let _ = tokio::time::timeout(timeout, durable.wait_for(|durable| *durable >= target)).await;
    }

    /// Whether this broker follows the partition from `leader` at `epoch`.
    pub fn follows(&self, (leader, epoch): (u32, u32)) -> bool {
        *self.replica.role()
            == Role::Follower {
                leader: Some(leader),
                epoch,
            }
    }

    /// Runs `change` on the log if this broker still follows the partition from `leader`
    /// at `epoch`, holding the role's lock throughout, so that a leadership taken up
    /// meanwhile waits for it and no answer of the old leader touches the log after; then
    /// reports the new log end. `None` if the role had moved on (nothing done).
    fn as_follower(
        &self,
        following: (u32, u32),
        change: impl FnOnce(&Log) -> Result<(), PartitionError>,
    ) -> Result<Option<()>, PartitionError> {
        let log = self.log()?;
        let before = log.log_end_offset();
        {
            let role = self.replica.role();
            let expected = Role::Follower {
                leader: Some(following.0),
                epoch: following.1,
            };
            if *role != expected {
                return Ok(None);
            }
            change(log)?;
        }
        let after = log.log_end_offset();
        self.replica.on_log_end(after, after < before);
        Ok(Some(()))
    }

    /// Appends the leader's batches as they are (their offsets and epochs kept), after
    /// checking each one's CRC, if this broker still follows `following` = (leader,
    /// epoch); `None` if not.
    ///
    /// # Errors
    /// A storage error: a batch that does not start at the log end, fails its checks or
    /// carries an older epoch than the log's last; a poisoned or full log.
    pub fn append_replicated(
        &self,
        records: &Bytes,
        following: (u32, u32),
    ) -> Result<Option<()>, PartitionError> {
        self.as_follower(following, |log| {
            let mut rest = &records[..];
            while !rest.is_empty() {
                let length = batch::total_len(rest)
                    .filter(|&length| length <= rest.len())
                    .ok_or(StorageError::InvalidBatch {
                        offset: log.log_end_offset(),
                        source: strata_protocol::BatchError::Truncated {
                            need: batch::LOG_OVERHEAD_BYTES,
                            have: rest.len(),
                        },
                    })?;
                log.append_replicated(&rest[..length])?;
                rest = &rest[length..];
            }
            Ok(())
        })
    }

    /// Takes the leader's high watermark, bounded by this log's end.
    pub fn follow_high_watermark(&self, leader_high_watermark: u64) {
        super::replica::raise(
            &self.replica.high_watermark,
            leader_high_watermark.min(self.log_end_offset()),
        );
    }

    /// Truncates where the leader says this log diverges (KIP-279), if this broker still
    /// follows `following`.
    ///
    /// # Errors
    /// A storage error (which poisons the log).
    pub fn truncate_diverging(
        &self,
        diverging: Diverging,
        following: (u32, u32),
    ) -> Result<Option<()>, PartitionError> {
        self.as_follower(following, |log| {
            let own = diverging
                .epoch
                .and_then(|epoch| log.end_offset_for_epoch(epoch));
            truncate(log, engine::truncation_point(diverging, own))
        })
    }

    /// Deletes every batch at and after `offset` (all of them, if it is below the log
    /// start), if this broker still follows `following`.
    ///
    /// # Errors
    /// A storage error (which poisons the log).
    pub fn truncate_to(
        &self,
        offset: u64,
        following: (u32, u32),
    ) -> Result<Option<()>, PartitionError> {
        self.as_follower(following, |log| truncate(log, offset))
    }

    /// Empties the log and restarts it at `start` (a follower behind the leader's log
    /// start), if this broker still follows `following`.
    ///
    /// # Errors
    /// A storage error (which poisons the log).
    pub fn restart_at(
        &self,
        start: u64,
        following: (u32, u32),
    ) -> Result<Option<()>, PartitionError> {
        self.as_follower(following, |log| Ok(log.truncate_fully(start)?))
    }
}

/// Deletes every batch of `log` at and after `offset` (all of them, below the log start).
fn truncate(log: &Log, offset: u64) -> Result<(), PartitionError> {
    if offset < log.log_start_offset() {
        log.truncate_fully(offset)?;
    } else {
        match log.truncate_to(offset) {
            // The point fell inside a batch: cut before the whole batch.
            Err(StorageError::NotBatchBoundary {
                batch_base_offset, ..
            }) => log.truncate_to(batch_base_offset)?,
            result => result?,
        }
    }
    tracing::info!(dir = %log.dir().display(), log_end = log.log_end_offset(), "truncated the log to follow its leader");
    Ok(())
}
