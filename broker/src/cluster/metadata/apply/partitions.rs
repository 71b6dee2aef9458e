//! How partition leadership, ISRs and ELRs change, following KRaft with KIP-966 (eligible
//! leader replicas): what brokers leaving and coming back do, the ISR changes leaders ask
//! for (`AlterPartition`), and the elections operators ask for (`ElectLeader`).
//!
//! # The rules
//! - A partition is led only by an alive member of its ISR.
//! - **ELR.** The high watermark does not advance while the ISR is below the effective
//!   min ISR, so a replica that leaves the ISR then still holds every record below it:
//!   it joins the ELR. A member joining the ISR leaves the ELR, and the ELR is emptied
//!   whenever the ISR is at least the min ISR (the high watermark moves on without the
//!   ELR then). ISR and ELR never overlap.
//! - **Elections.** A partition without an alive leader elects the first alive ISR member
//!   in replica order; if none, the first alive ELR member, which becomes the ISR `[it]`
//!   (the old ISR members join the ELR by the rule above); if none, it has no leader.
//!   Elections run whenever a broker leaves or comes back, so a leaderless partition
//!   never has an electable alive replica.
//! - **Leaving.** A broker that is fenced, shuts down or re-registers leaves every ISR it
//!   is not the last member of (the last is kept: the partition waits for the replica
//!   that has all its data) and every leadership.
//! - **Unclean restarts.** A broker that registers having maybe lost unflushed writes
//!   leaves every ELR. Where it is the last ISR member of a partition with more than one
//!   replica, it is not elected: the first ELR member takes its place in the ISR (and
//!   leads once alive); with no ELR, the partition waits for an unclean election
//!   ([`PartitionRecord::last_isr_unclean`]). A partition of one replica has no other
//!   copy to wait for, and elects it.
//! - **Reassignments.** Every change that can grow the ISR ends with
//!   `PartitionRecord::settle` (`reassign`), which finishes a move whose added replicas
//!   are all in sync.

use std::sync::Arc;

use strata_protocol::ErrorCode;

use super::change_partitions;
use crate::cluster::metadata::{BrokerState, Image, Outcome, PartitionRecord};

/// An `AlterPartition`'s claims and its new ISR.
pub(super) struct IsrChange<'a> {
    /// The broker asking, which claims to lead.
    pub(super) leader: u32,
    /// The leader epoch it holds.
    pub(super) leader_epoch: u32,
    /// The partition epoch its change is based on.
    pub(super) partition_epoch: u32,
    /// The new ISR.
    pub(super) isr: &'a [u32],
    /// The incarnation each added member fetched at.
    pub(super) incarnations: &'a [(u32, u64)],
}

impl Image {
    /// Takes broker `id`, no longer alive, out of every ISR it is not the last member of
    /// and out of every leadership, electing another leader where one is electable.
    pub(super) fn resign(&mut self, id: u32) {
        let brokers = &self.brokers;
        let is_alive = |broker: u32| {
            broker != id
                && brokers
                    .get(&broker)
                    .is_some_and(|broker| broker.state == BrokerState::Alive)
        };
        let leaves_isr =
            |partition: &PartitionRecord| partition.isr.len() > 1 && partition.isr.contains(&id);
        let leads = |partition: &PartitionRecord| partition.leader == Some(id);
        change_partitions(
            &mut self.topics,
            |partition| leaves_isr(partition) || leads(partition),
            |min_isr, partition| {
                if leaves_isr(partition) {
                    let isr = partition
                        .isr
                        .iter()
                        .copied()
                        .filter(|&member| member != id)
                        .collect();
                    partition.set_isr(isr, min_isr);
                }
                if leads(partition) {
                    partition.leader = None;
                    partition.elect(min_isr, is_alive);
                }
                partition.settle(min_isr, is_alive);
                partition.partition_epoch += 1;
            },
        );
    }

    /// Elects a leader for every leaderless partition that has an electable alive replica.
    pub(super) fn elect_leaderless(&mut self) {
        let brokers = &self.brokers;
        let is_alive = |broker: u32| {
            brokers
                .get(&broker)
                .is_some_and(|broker| broker.state == BrokerState::Alive)
        };
        change_partitions(
            &mut self.topics,
            |partition| partition.leader.is_none() && partition.candidate(is_alive).is_some(),
            |min_isr, partition| {
                partition.elect(min_isr, is_alive);
                partition.settle(min_isr, is_alive);
                partition.partition_epoch += 1;
            },
        );
    }

    /// Forgets broker `id` as a holder of every acknowledged record: it restarted having
    /// maybe lost unflushed writes. It leaves every ELR; where it is the last ISR member
    /// of a leaderless partition of several replicas, the first ELR member takes its place,
    /// or with no ELR the partition waits for an unclean election.
    pub(super) fn forget_unflushed(&mut self, id: u32) {
        let brokers = &self.brokers;
        let is_alive = |broker: u32| {
            brokers
                .get(&broker)
                .is_some_and(|broker| broker.state == BrokerState::Alive)
        };
        let last_in_sync = |partition: &PartitionRecord| {
            partition.isr == [id]
                && partition.replicas.len() > 1
                && partition.leader.is_none()
                && !partition.last_isr_unclean
        };
        change_partitions(
            &mut self.topics,
            |partition| partition.elr.contains(&id) || last_in_sync(partition),
            |min_isr, partition| {
                partition.elr.retain(|&member| member != id);
                if last_in_sync(partition) {
                    match partition.elr.first().copied() {
                        Some(eligible) => {
                            partition.isr = vec![eligible];
                            partition.elr.retain(|&member| member != eligible);
                        }
                        None => partition.last_isr_unclean = true,
                    }
                }
                partition.settle(min_isr, is_alive);
                partition.partition_epoch += 1;
            },
        );
    }

    /// A leader changes its partition's ISR.
    pub(super) fn alter_partition(
        &mut self,
        topic: &str,
        topic_id: u64,
        index: u32,
        change: &IsrChange<'_>,
    ) -> Outcome {
        let (min_isr, current) = match self.located(topic, topic_id, index) {
            Ok(located) => located,
            Err(refused) => return refused,
        };
        if current.leader != Some(change.leader) || current.leader_epoch != change.leader_epoch {
            return Outcome::refused(
                ErrorCode::FencedLeaderEpoch,
                format!(
                    "broker {} at leader epoch {} does not lead {topic}-{index}: its leader is {:?} at epoch {}",
                    change.leader, change.leader_epoch, current.leader, current.leader_epoch
                ),
            );
        }
        if current.partition_epoch != change.partition_epoch {
            return Outcome::refused(
                ErrorCode::InvalidUpdateVersion,
                format!(
                    "{topic}-{index} is at partition epoch {}, not {}",
                    current.partition_epoch, change.partition_epoch
                ),
            );
        }
        if let Err(rule) = check_isr(current, change) {
            return Outcome::refused(
                ErrorCode::InvalidRequest,
                format!("the ISR {:?} of {topic}-{index} {rule}", change.isr),
            );
        }
        let ineligible = change
            .isr
            .iter()
            .find(|id| !current.isr.contains(id) && !self.is_alive(**id));
        if let Some(id) = ineligible {
            return Outcome::refused(
                ErrorCode::IneligibleReplica,
                format!("broker {id} is not alive, so it cannot join the ISR of {topic}-{index}"),
            );
        }
        let restarted = change.incarnations.iter().find(|(id, incarnation)| {
            !current.isr.contains(id)
                && self
                    .broker(*id)
                    .is_some_and(|broker| broker.incarnation != *incarnation)
        });
        if let Some((id, incarnation)) = restarted {
            return Outcome::refused(
                ErrorCode::IneligibleReplica,
                format!(
                    "broker {id} caught up at incarnation {incarnation} but has registered again since, so it cannot join the ISR of {topic}-{index} (KIP-903)"
                ),
            );
        }
        let mut next = current.clone();
        next.set_isr(change.isr.to_vec(), min_isr);
        next.settle(min_isr, |id| self.is_alive(id));
        next.partition_epoch += 1;
        self.store(topic, index, next);
        Outcome::Done
    }

    /// An election an operator asked for: clean (the preferred replica takes over) or
    /// unclean (a leaderless partition takes any alive replica).
    pub(super) fn elect_leader(
        &mut self,
        topic: &str,
        topic_id: u64,
        index: u32,
        unclean: bool,
    ) -> Outcome {
        let (min_isr, current) = match self.located(topic, topic_id, index) {
            Ok(located) => located,
            Err(refused) => return refused,
        };
        let chosen = if unclean {
            self.unclean_choice(topic, index, current)
        } else {
            self.preferred_choice(topic, index, current)
        };
        let leader = match chosen {
            Ok(leader) => leader,
            Err(refused) => return refused,
        };
        let mut next = current.clone();
        if unclean {
            next.isr = vec![leader];
            next.elr.clear();
            next.last_isr_unclean = false;
        }
        next.leader = Some(leader);
        next.leader_epoch += 1;
        next.settle(min_isr, |id| self.is_alive(id));
        next.partition_epoch += 1;
        self.store(topic, index, next);
        Outcome::Done
    }

    /// The preferred replica, if a clean election may make it the leader.
    fn preferred_choice(
        &self,
        topic: &str,
        index: u32,
        current: &PartitionRecord,
    ) -> Result<u32, Outcome> {
        let preferred = current.replicas[0];
        if current.leader == Some(preferred) {
            return Err(Outcome::refused(
                ErrorCode::ElectionNotNeeded,
                format!("{topic}-{index} is already led by its preferred replica {preferred}"),
            ));
        }
        if !self.is_alive(preferred)
            || !current.isr.contains(&preferred)
            || current.last_isr_unclean
        {
            return Err(Outcome::refused(
                ErrorCode::EligibleLeadersNotAvailable,
                format!(
                    "the preferred replica {preferred} of {topic}-{index} is not alive and in sync"
                ),
            ));
        }
        Ok(preferred)
    }

    /// The replica an unclean election picks: the first alive one in the ISR, then in the
    /// ELR, then any, in replica order.
    fn unclean_choice(
        &self,
        topic: &str,
        index: u32,
        current: &PartitionRecord,
    ) -> Result<u32, Outcome> {
        if let Some(leader) = current.leader {
            return Err(Outcome::refused(
                ErrorCode::ElectionNotNeeded,
                format!("{topic}-{index} has a leader, broker {leader}"),
            ));
        }
        let alive = |members: &[u32]| {
            current
                .replicas
                .iter()
                .copied()
                .find(|replica| members.contains(replica) && self.is_alive(*replica))
        };
        alive(&current.isr)
            .or_else(|| alive(&current.elr))
            .or_else(|| alive(&current.replicas))
            .ok_or_else(|| {
                Outcome::refused(
                    ErrorCode::EligibleLeadersNotAvailable,
                    format!("no replica of {topic}-{index} is alive"),
                )
            })
    }

    pub(super) fn is_alive(&self, id: u32) -> bool {
        self.broker(id)
            .is_some_and(|broker| broker.state == BrokerState::Alive)
    }

    /// The partition a command names, with its effective min ISR, if the topic still has
    /// that id.
    pub(super) fn located(
        &self,
        topic: &str,
        topic_id: u64,
        index: u32,
    ) -> Result<(usize, &PartitionRecord), Outcome> {
        let record = self.topic(topic).filter(|record| record.id == topic_id);
        let partition = record.zip(self.partition(topic, index));
        match partition {
            Some((record, partition)) => Ok((partition.min_isr(&record.config), partition)),
            None => Err(Outcome::refused(
                ErrorCode::UnknownTopicOrPartition,
                format!("partition {topic}-{index} of topic id {topic_id} does not exist"),
            )),
        }
    }

    /// Replaces a partition [`located`](Self::located) before.
    pub(super) fn store(&mut self, topic: &str, index: u32, partition: PartitionRecord) {
        let record = self.topics.get_mut(topic).expect("located before");
        let index = usize::try_from(index).expect("located before");
        Arc::make_mut(record).partitions[index] = partition;
    }
}

/// Why `change`'s ISR cannot be `current`'s: it must be distinct replicas, the leader
/// among them.
fn check_isr(current: &PartitionRecord, change: &IsrChange<'_>) -> Result<(), &'static str> {
    let isr = change.isr;
    if isr.is_empty() {
        return Err("is empty");
    }
    if !isr.contains(&change.leader) {
        return Err("leaves out the leader");
    }
    if !isr.iter().all(|id| current.replicas.contains(id)) {
        return Err("names a broker that is no replica");
    }
    if isr
        .iter()
        .enumerate()
        .any(|(at, id)| isr[at + 1..].contains(id))
    {
        return Err("names a broker twice");
    }
    Ok(())
}

impl PartitionRecord {
    /// Sets the ISR, keeping the ELR rule: below `min_isr`, every replica that was in the
    /// ISR or the ELR and is not in the new ISR is in the ELR; at or above it, none is.
    pub(super) fn set_isr(&mut self, isr: Vec<u32>, min_isr: usize) {
        self.elr = if isr.len() >= min_isr {
            Vec::new()
        } else {
            self.replicas
                .iter()
                .copied()
                .filter(|replica| {
                    !isr.contains(replica)
                        && (self.isr.contains(replica) || self.elr.contains(replica))
                })
                .collect()
        };
        self.isr = isr;
    }

    /// The replica an election would pick, and whether it comes from the ELR.
    fn candidate(&self, is_alive: impl Fn(u32) -> bool) -> Option<(u32, bool)> {
        if self.last_isr_unclean {
            return None;
        }
        let first_alive = |members: &[u32]| {
            self.replicas
                .iter()
                .copied()
                .find(|replica| members.contains(replica) && is_alive(*replica))
        };
        first_alive(&self.isr)
            .map(|leader| (leader, false))
            .or_else(|| first_alive(&self.elr).map(|leader| (leader, true)))
    }

    /// Elects a leader for a leaderless partition, if one is electable; an ELR member
    /// becomes the ISR `[it]`. The caller counts the change in the partition epoch.
    pub(super) fn elect(&mut self, min_isr: usize, is_alive: impl Fn(u32) -> bool) {
        debug_assert!(self.leader.is_none(), "an election with a leader: {self:?}");
        let Some((leader, from_elr)) = self.candidate(is_alive) else {
            return;
        };
        if from_elr {
            self.set_isr(vec![leader], min_isr);
        }
        self.leader = Some(leader);
        self.leader_epoch += 1;
    }
}
