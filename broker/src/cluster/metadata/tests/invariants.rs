//! Random command sequences never panic and keep the image's rules after every command
//! ([`Image::check`]: every leader an alive ISR member, replicas distinct and
//! registered), and epochs only go up: a changed partition has a new partition epoch, a
//! new leader a new leader epoch, a broker never an older incarnation.

use proptest::prelude::*;

use super::super::*;
use super::Log;
use super::model::{command, op};

fn check_epochs(before: &Image, after: &Image) -> Result<(), TestCaseError> {
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
            prop_assert_eq!(&new.replicas, &old.replicas);
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
            log.apply(&command(op, &before));
            check_epochs(&before, &log.image)?;
        }
    }
}
