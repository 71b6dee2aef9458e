//! The group coordinator follows the offsets log's leadership: this broker serves the
//! groups of the offsets-log partitions it leads, and only those.
//!
//! The offsets log is replicated like any topic. After each metadata change
//! ([`Groups::assign_roles`], called by `cluster::reconcile`), every local partition of
//! it takes the role the metadata gives it:
//!
//! - **Led here**: the partition leads (its appends are stamped with the leader epoch,
//!   and a commit waits for the high watermark, so for every in-sync replica), and its
//!   groups are loaded from its log, up to its log end, before any of them is served.
//!   A new leader epoch loads them again: the log may have changed under another leader
//!   meanwhile.
//! - **Led elsewhere, or by no one**: the partition follows, and its groups are dropped
//!   from memory; their members find the new coordinator and carry on there, from what
//!   the log holds (Kafka's coordinator moves the same way).
//!
//! A partition stops being led only under the lock that appends, so no group record is
//! ever appended to a partition this broker follows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::cluster::metadata::{Image, PartitionRecord, TopicRecord};
use crate::group::open_error::GroupOpenError;
use crate::group::service::{Groups, State};
use crate::group::store::{OFFSETS_LOG, offsets_partition};
use crate::partition::{Leadership, Partition};
use crate::replication::Followed;

/// What [`Groups::assign_roles`] did.
#[derive(Debug, Default)]
pub struct OffsetsRoles {
    /// The offsets-log partitions this broker follows, by leader, for replication.
    pub followed: BTreeMap<u32, Vec<Followed>>,
    /// Whether a partition's groups were loaded: they may hold offsets of topics deleted
    /// while another broker led it.
    pub loaded: bool,
    /// False if a partition could not be loaded: its groups are not served, and the
    /// caller should try again.
    pub complete: bool,
}

impl Groups {
    /// Gives each local partition of the offsets log the role `image` gives it on
    /// broker `me`: loads the groups of each partition it starts leading, drops those of
    /// each it stops leading. Offline partitions are left alone.
    pub fn assign_roles(&self, image: &Image, me: u32) -> OffsetsRoles {
        let mut roles = OffsetsRoles {
            complete: true,
            ..OffsetsRoles::default()
        };
        let Some(record) = image.topics.get(OFFSETS_LOG) else {
            return roles;
        };
        if record.partitions.len() != self.log.partition_count() as usize {
            tracing::error!(
                in_metadata = record.partitions.len(),
                group_offsets_partitions = self.log.partition_count(),
                "the offsets log has another partition count in the metadata than group_offsets_partitions here: this broker coordinates no group; set group_offsets_partitions as the other brokers do"
            );
            return roles;
        }
        for (index, (placed, partition)) in record
            .partitions
            .iter()
            .zip(self.log.partitions())
            .enumerate()
        {
            if partition.check_online().is_err() {
                continue;
            }
            let index = index as u32;
            if placed.leader == Some(me) {
                match self.lead(index, partition, leadership(me, record, placed)) {
                    Ok(loaded) => roles.loaded |= loaded,
                    Err(error) => {
                        tracing::error!(partition = index, %error, "cannot load the groups of an offsets-log partition this broker leads; its groups are not served");
                        roles.complete = false;
                    }
                }
                continue;
            }
            // A broker that is no replica keeps its old copy, unused and unfetched.
            let leader = placed.leader.filter(|_| placed.replicas.contains(&me));
            self.stop_leading(index, partition, leader, placed.leader_epoch);
            if let Some(leader) = leader {
                roles.followed.entry(leader).or_default().push(Followed {
                    topic: OFFSETS_LOG.to_owned(),
                    topic_id: record.id,
                    partition: partition.clone(),
                    leader_epoch: placed.leader_epoch,
                });
            }
        }
        if roles.loaded {
            self.deadlines_changed.notify_one();
        }
        roles
    }

    /// Leads partition `index` as `leadership` says, loading its groups unless they are
    /// loaded at this epoch already. Returns whether it loaded them.
    fn lead(
        &self,
        index: u32,
        partition: &Arc<Partition>,
        leadership: Leadership,
    ) -> Result<bool, GroupOpenError> {
        let epoch = leadership.epoch;
        {
            let mut state = self.state();
            if state.loaded.get(&index) == Some(&epoch) {
                partition.lead(leadership);
                return Ok(false);
            }
            self.unload(&mut state, index);
            partition.lead(leadership);
        }
        // Read outside the lock, so other groups are served meanwhile: nothing appends to
        // this partition until it is marked loaded below.
        let records = self.log.load(index)?;
        let mut state = self.state();
        let before = state.engine.list_groups().len();
        let now = Instant::now();
        for record in records {
            state.engine.replay(record, now);
        }
        state.loaded.insert(index, epoch);
        tracing::info!(
            partition = index,
            leader_epoch = epoch,
            groups = state.engine.list_groups().len() - before,
            "this broker leads a partition of the offsets log: its groups are loaded and served here"
        );
        Ok(true)
    }

    /// Follows `leader` (or no one) in partition `index`, dropping its groups if they
    /// were loaded.
    fn stop_leading(
        &self,
        index: u32,
        partition: &Partition,
        leader: Option<u32>,
        leader_epoch: u32,
    ) {
        let mut state = self.state();
        partition.follow(leader, leader_epoch);
        if self.unload(&mut state, index) {
            tracing::info!(
                partition = index,
                ?leader,
                "this broker no longer leads a partition of the offsets log: its groups move to the new leader"
            );
        }
        drop(state);
        self.log.forget_read_at_open(index);
    }

    /// Drops partition `index`'s groups from memory; true if they were loaded.
    fn unload(&self, state: &mut State, index: u32) -> bool {
        if state.loaded.remove(&index).is_none() {
            return false;
        }
        let count = self.log.partition_count();
        state
            .engine
            .unload(|group_id| offsets_partition(group_id, count) == index);
        true
    }
}

/// The leadership of an offsets-log partition this broker leads.
fn leadership(me: u32, record: &TopicRecord, placed: &PartitionRecord) -> Leadership {
    Leadership {
        me,
        epoch: placed.leader_epoch,
        partition_epoch: placed.partition_epoch,
        replicas: placed.replicas.clone(),
        isr: placed.isr.clone(),
        min_isr: usize::from(record.config.min_insync_replicas)
            .clamp(1, placed.replicas.len().max(1)),
    }
}
