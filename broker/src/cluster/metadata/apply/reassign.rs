//! Moving a partition to other replicas, as Kafka's KIP-455 does it: add the new replicas,
//! let them catch up and join the ISR, then switch to the target and remove the rest.
//!
//! # The rules
//! - **Start.** `ReassignPartition` with a target sets `replicas` to the target followed by
//!   the current replicas it leaves out, `adding` to the target's new replicas and
//!   `removing` to the ones left out. The new replicas must be alive: they get a new copy.
//!   The record alone holds the target, in its order: `replicas` without `removing`.
//! - **Catch-up.** The added replicas follow the leader like any follower and join the ISR
//!   through the leader's `AlterPartition` once they reach its log end.
//! - **Completion.** The change that puts the last added replica in the ISR (or the start
//!   itself, if there is nothing to add), provided the ISR keeps a member once the removed
//!   replicas leave it, also finishes the move: `replicas` becomes the target, the removed
//!   replicas leave the ISR and ELR, and a leader being removed hands over to the first
//!   alive target replica in the ISR (a new leader epoch). Every change that can grow the
//!   ISR looks (`settle`), so no image holds a finished move still in progress.
//! - **Cancel.** Asking for the original replicas (the current ones without `adding`)
//!   while a move is in progress reverts it: the added replicas leave the ISR, ELR and
//!   leadership. Asking for the same target again changes nothing; any other target is
//!   refused until the move finishes.

use std::collections::BTreeSet;

use strata_protocol::ErrorCode;

use crate::cluster::metadata::{Image, Outcome, PartitionRecord};

impl Image {
    /// Starts, repeats or cancels the move of a partition to the `target` replicas.
    pub(super) fn reassign_partition(
        &mut self,
        topic: &str,
        topic_id: u64,
        index: u32,
        target: &[u32],
    ) -> Outcome {
        let current = match self.located(topic, topic_id, index) {
            Ok((_, current)) => current,
            Err(refused) => return refused,
        };
        if let Err(rule) = self.check_target(current, target) {
            return Outcome::refused(
                ErrorCode::InvalidReplicaAssignment,
                format!("the replicas {target:?} for {topic}-{index} {rule}"),
            );
        }
        if current.target() == target {
            return Outcome::Done;
        }
        let config = &self.topic(topic).expect("located").config;
        let is_alive = |id| self.is_alive(id);
        let mut next = current.clone();
        if !current.is_reassigning() {
            next.start(target);
            // The min ISR now counts the target's replicas: the ELR follows it.
            let min_isr = next.min_isr(config);
            next.set_isr(next.isr.clone(), min_isr);
            next.settle(min_isr, is_alive);
        } else if same_members(&current.original(), target) {
            next.revert(target);
            if next.isr.is_empty() {
                return Outcome::refused(
                    ErrorCode::ReassignmentInProgress,
                    format!(
                        "{topic}-{index} cannot go back to {target:?}: none of them is in sync; let the move to {:?} finish",
                        current.target()
                    ),
                );
            }
            next.settle_revert(current, next.min_isr(config), is_alive);
        } else {
            return Outcome::refused(
                ErrorCode::ReassignmentInProgress,
                format!(
                    "{topic}-{index} is moving to {:?}; wait until it has, or cancel by asking for {:?}",
                    current.target(),
                    current.original()
                ),
            );
        }
        next.partition_epoch += 1;
        self.store(topic, index, next);
        Outcome::Done
    }

    /// Why `target` cannot be `current`'s replicas: it must be distinct registered
    /// brokers, the new ones alive.
    fn check_target(&self, current: &PartitionRecord, target: &[u32]) -> Result<(), String> {
        if target.is_empty() {
            return Err("are empty".to_owned());
        }
        if target.iter().collect::<BTreeSet<_>>().len() != target.len() {
            return Err("name a broker twice".to_owned());
        }
        if let Some(unknown) = target.iter().find(|id| self.broker(**id).is_none()) {
            return Err(format!("name broker {unknown}, which is not registered"));
        }
        let new = target
            .iter()
            .find(|id| !current.replicas.contains(id) && !self.is_alive(**id));
        match new {
            Some(id) => Err(format!(
                "name broker {id}, which is not alive, so it cannot take a new copy"
            )),
            None => Ok(()),
        }
    }
}

/// Whether `a` and `b` hold the same brokers, in any order.
fn same_members(a: &[u32], b: &[u32]) -> bool {
    a.len() == b.len() && a.iter().all(|id| b.contains(id))
}

impl PartitionRecord {
    /// Starts the move to `target`: the target's replicas in its order, then the current
    /// ones it leaves out. The caller counts the change in the partition epoch.
    fn start(&mut self, target: &[u32]) {
        self.removing = self
            .replicas
            .iter()
            .copied()
            .filter(|replica| !target.contains(replica))
            .collect();
        self.adding = target
            .iter()
            .copied()
            .filter(|replica| !self.replicas.contains(replica))
            .collect();
        self.replicas = target.iter().chain(&self.removing).copied().collect();
    }

    /// Finishes a move in progress if every added replica is in the ISR and the ISR keeps
    /// a member without the removed ones: the replicas become the target, the removed ones
    /// leave the ISR, the ELR and the leadership. `min_isr` is the partition's, which the
    /// finish does not change (it counts the target's replicas). The caller counts the
    /// change in the partition epoch.
    pub(super) fn settle(&mut self, min_isr: usize, is_alive: impl Fn(u32) -> bool) {
        if !self.is_reassigning() || !self.adding.iter().all(|id| self.isr.contains(id)) {
            return;
        }
        let removing = std::mem::take(&mut self.removing);
        let isr: Vec<u32> = self
            .isr
            .iter()
            .copied()
            .filter(|member| !removing.contains(member))
            .collect();
        if isr.is_empty() {
            self.removing = removing;
            return;
        }
        self.adding.clear();
        self.replicas.retain(|replica| !removing.contains(replica));
        self.set_isr(isr, min_isr);
        if self.leader.is_some_and(|leader| removing.contains(&leader)) {
            self.leader = None;
        }
        if self.leader.is_none() {
            self.elect(min_isr, is_alive);
        }
    }

    /// Puts back the `original` replicas, in the order asked for, ending the move; the
    /// ISR loses the added replicas, and is empty if only they were in it.
    fn revert(&mut self, original: &[u32]) {
        let adding = std::mem::take(&mut self.adding);
        self.removing.clear();
        self.replicas = original.to_vec();
        self.isr.retain(|member| !adding.contains(member));
    }

    /// After [`revert`](Self::revert) from `before`: the ELR without the added replicas
    /// (by the rule of [`set_isr`](Self::set_isr) at the original replicas' min ISR), and
    /// a leader that was an added replica replaced.
    fn settle_revert(
        &mut self,
        before: &PartitionRecord,
        min_isr: usize,
        is_alive: impl Fn(u32) -> bool,
    ) {
        let isr = std::mem::replace(&mut self.isr, before.isr.clone());
        self.set_isr(isr, min_isr);
        if self
            .leader
            .is_some_and(|leader| before.adding.contains(&leader))
        {
            self.leader = None;
        }
        if self.leader.is_none() {
            self.elect(min_isr, is_alive);
        }
    }
}
