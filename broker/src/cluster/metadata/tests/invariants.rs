//! Random command sequences never panic and keep the image's rules after every command
//! ([`Image::check`]: every leader an alive ISR member, replicas distinct and
//! registered, the ISR a non-empty subset of the replicas, the ELR other replicas and only
//! while the ISR is below the min ISR), and epochs only go up: a changed partition has a
//! new partition epoch, a new leader a new leader epoch, a broker never an older
//! incarnation. A refused command changes nothing; a leader not chosen by an unclean
//! election comes from the ISR or the ELR it replaces; and no partition lacks a leader
//! while it has an alive replica a clean election could pick. Only a reassignment changes
//! a partition's replicas, and none in progress is left unfinished once its added
//! replicas are all in sync (also part of `Image::check`).

use proptest::prelude::*;

use super::super::*;
use super::Log;
use super::model::{command, op};

fn check_epochs(before: &Image, after: &Image, command: &Command) -> Result<(), TestCaseError> {
    for (id, old) in &before.brokers {
        let new = after.broker(*id);
        prop_assert!(new.is_some_and(|new| new.incarnation >= old.incarnation));
    }
    for (name, old_topic) in &before.topics {
        let Some(new_topic) = after.topic(name) else {
            continue;
        };
        prop_assert!(new_topic.partitions.len() >= old_topic.partitions.len());
        for (old, new) in old_topic.partitions.iter().zip(&new_topic.partitions) {
            prop_assert!(
                new.partition_epoch >= old.partition_epoch,
                "{name}: {old:?} -> {new:?}"
            );
            prop_assert!(
                new.leader_epoch >= old.leader_epoch,
                "{name}: {old:?} -> {new:?}"
            );
            if new != old {
                prop_assert!(
                    new.partition_epoch > old.partition_epoch,
                    "{name}: {old:?} -> {new:?}"
                );
            }
            if new.leader.is_some() && new.leader != old.leader {
                prop_assert!(
                    new.leader_epoch > old.leader_epoch,
                    "{name}: {old:?} -> {new:?}"
                );
            }
            // Only a reassignment changes the replicas: its start, a cancel, or its finish.
            if !old.is_reassigning() && !matches!(command, Command::ReassignPartition { .. }) {
                prop_assert_eq!(&new.replicas, &old.replicas);
            }
        }
    }
    Ok(())
}

/// Every new leader, but one an unclean election chose, was in the ISR or the ELR.
fn check_clean_elections(
    before: &Image,
    after: &Image,
    command: &Command,
) -> Result<(), TestCaseError> {
    if matches!(command, Command::ElectLeader { unclean: true, .. }) {
        return Ok(());
    }
    // A replica an ISR change adds may lead at once: it finished a reassignment that
    // removed the leader.
    let joined: &[u32] = match command {
        Command::AlterPartition { isr, .. } => isr,
        _ => &[],
    };
    for (name, old_topic) in &before.topics {
        let Some(new_topic) = after.topic(name) else {
            continue;
        };
        for (old, new) in old_topic.partitions.iter().zip(&new_topic.partitions) {
            if let Some(leader) = new.leader.filter(|_| new.leader != old.leader) {
                prop_assert!(
                    old.isr.contains(&leader)
                        || old.elr.contains(&leader)
                        || joined.contains(&leader),
                    "{name} after {command:?}: {old:?} -> {new:?}"
                );
            }
        }
    }
    Ok(())
}

/// No partition without a leader has an alive ISR member (but one that lost unflushed
/// writes) or an alive ELR member: elections run whenever one could succeed.
fn check_no_missed_election(image: &Image) -> Result<(), TestCaseError> {
    let alive = image.alive_brokers();
    for (name, topic) in &image.topics {
        for partition in topic.partitions.iter().filter(|p| p.leader.is_none()) {
            let electable = partition
                .isr
                .iter()
                .filter(|_| !partition.last_isr_unclean)
                .chain(&partition.elr)
                .any(|id| alive.contains(id));
            prop_assert!(!electable, "{name}: {partition:?} with {alive:?} alive");
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn random_commands_keep_the_rules_and_never_lower_an_epoch(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut log = Log::new();
        for op in &ops {
            let before = log.image.clone();
            let command = command(op, &before);
            let outcome = log.apply(&command);
            check_epochs(&before, &log.image, &command)?;
            check_clean_elections(&before, &log.image, &command)?;
            check_no_missed_election(&log.image)?;
            if outcome.refusal().is_some() {
                prop_assert_eq!(
                    &log.image,
                    &Image { applied: log.image.applied, ..before },
                    "a refused {:?} changed the image", command
                );
            }
        }
    }
}
