//! Moving partitions to other replicas (KIP-455), one rule at a time; the property that
//! every move ends at its target once the added replicas catch up.

use proptest::prelude::*;
use strata_protocol::ErrorCode;

use super::super::*;
use super::model::{command, op};
use super::{Log, create, fence, three_brokers};

fn reassign(log: &Log, topic: &str, index: u32, replicas: &[u32]) -> Command {
    Command::ReassignPartition {
        topic: topic.to_owned(),
        topic_id: log.image.topic(topic).map_or(0, |record| record.id),
        partition: index,
        replicas: replicas.to_vec(),
    }
}

/// The leader of `topic`-`index` sets its ISR to `isr`.
fn alter(log: &mut Log, topic: &str, index: u32, isr: &[u32]) {
    let partition = log.partition(topic, index);
    log.done(&Command::AlterPartition {
        topic: topic.to_owned(),
        topic_id: log.image.topic(topic).expect("exists").id,
        partition: index,
        leader: partition.leader.expect("led"),
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
        isr: isr.to_vec(),
        incarnations: Vec::new(),
    });
}

/// Four brokers and a topic `t` of one partition on brokers 1 and 2, led by 1.
fn on_one_and_two() -> Log {
    let mut log = three_brokers();
    log.register(4);
    log.done(&create("t", 1, 2));
    let partition = log.partition("t", 0);
    assert_eq!(partition.replicas, vec![1, 2]);
    assert_eq!(partition.leader, Some(1));
    log
}

#[test]
fn a_move_adds_then_switches_once_the_new_replicas_are_in_sync() {
    let mut log = on_one_and_two();
    let before = log.partition("t", 0);
    log.done(&reassign(&log, "t", 0, &[2, 3]));
    let moving = log.partition("t", 0);
    assert_eq!(
        moving.replicas,
        vec![2, 3, 1],
        "the target's, then the removed"
    );
    assert_eq!(
        (moving.adding.clone(), moving.removing.clone()),
        (vec![3], vec![1])
    );
    assert_eq!(moving.isr, vec![1, 2]);
    assert_eq!(moving.leader, Some(1));
    assert_eq!(moving.partition_epoch, before.partition_epoch + 1);
    assert_eq!(moving.target(), vec![2, 3]);
    assert!(
        !moving.is_under_replicated(),
        "two in sync of a target of two"
    );
    assert!(log.image.partitions_on(3).any(|(name, _, _)| name == "t"));

    alter(&mut log, "t", 0, &[1, 2, 3]);
    let moved = log.partition("t", 0);
    assert_eq!(moved.replicas, vec![2, 3]);
    assert!(!moved.is_reassigning());
    assert_eq!(moved.isr, vec![2, 3]);
    assert_eq!(moved.leader, Some(2), "the first target replica in sync");
    assert_eq!(moved.leader_epoch, before.leader_epoch + 1);
    assert!(log.image.partitions_on(1).next().is_none());
}

#[test]
fn a_leader_that_stays_keeps_its_epoch() {
    let mut log = on_one_and_two();
    log.done(&reassign(&log, "t", 0, &[1, 3]));
    alter(&mut log, "t", 0, &[1, 2, 3]);
    let moved = log.partition("t", 0);
    assert_eq!((moved.replicas, moved.isr), (vec![1, 3], vec![1, 3]));
    assert_eq!((moved.leader, moved.leader_epoch), (Some(1), 0));
}

#[test]
fn a_move_waits_for_every_added_replica() {
    let mut log = on_one_and_two();
    log.done(&reassign(&log, "t", 0, &[3, 4]));
    alter(&mut log, "t", 0, &[1, 2, 3]);
    assert_eq!(log.partition("t", 0).adding, vec![3, 4]);
    alter(&mut log, "t", 0, &[1, 2, 3, 4]);
    let moved = log.partition("t", 0);
    assert_eq!((moved.replicas, moved.isr), (vec![3, 4], vec![3, 4]));
    assert_eq!(moved.leader, Some(3));
}

#[test]
fn a_move_with_nothing_to_add_finishes_at_once() {
    let mut log = three_brokers();
    log.done(&create("t", 1, 3));
    log.done(&reassign(&log, "t", 0, &[3, 2]));
    let moved = log.partition("t", 0);
    assert!(!moved.is_reassigning());
    assert_eq!((moved.replicas, moved.isr), (vec![3, 2], vec![2, 3]));
    assert_eq!(moved.leader, Some(3), "the leader was removed");
}

#[test]
fn removing_every_in_sync_replica_waits_for_a_target_one_to_catch_up() {
    let mut log = on_one_and_two();
    alter(&mut log, "t", 0, &[1]);
    log.done(&reassign(&log, "t", 0, &[2]));
    let moving = log.partition("t", 0);
    assert_eq!(
        (moving.adding.clone(), moving.removing.clone()),
        (vec![], vec![1])
    );
    assert_eq!(moving.leader, Some(1));
    alter(&mut log, "t", 0, &[1, 2]);
    let moved = log.partition("t", 0);
    assert_eq!(
        (moved.replicas, moved.isr, moved.leader),
        (vec![2], vec![2], Some(2))
    );
}

#[test]
fn asking_again_changes_nothing_and_another_target_is_refused() {
    let mut log = on_one_and_two();
    log.done(&reassign(&log, "t", 0, &[2, 3]));
    let moving = log.image.clone();
    log.done(&reassign(&log, "t", 0, &[2, 3]));
    assert_eq!(log.image.topics, moving.topics);
    let message = log.refused(
        &reassign(&log, "t", 0, &[3, 4]),
        ErrorCode::ReassignmentInProgress,
    );
    assert!(message.contains("cancel by asking for [2, 1]"), "{message}");
    log.done(&reassign(&log, "t", 0, &[1, 2]));
    assert_ne!(log.image.topics, moving.topics);
}

#[test]
fn a_cancel_puts_the_original_replicas_back() {
    let mut log = on_one_and_two();
    log.done(&reassign(&log, "t", 0, &[3, 4]));
    alter(&mut log, "t", 0, &[1, 2, 3]);
    log.done(&reassign(&log, "t", 0, &[1, 2]));
    let back = log.partition("t", 0);
    assert!(!back.is_reassigning());
    assert_eq!((back.replicas, back.isr), (vec![1, 2], vec![1, 2]));
    assert_eq!(back.leader, Some(1));
}

#[test]
fn a_cancel_with_only_added_replicas_in_sync_is_refused() {
    let mut log = on_one_and_two();
    log.done(&reassign(&log, "t", 0, &[3, 4]));
    alter(&mut log, "t", 0, &[1, 3]);
    // Broker 1 leaves: 3 takes over, the only in-sync replica.
    log.done(&fence(1, 1));
    assert_eq!(log.partition("t", 0).isr, vec![3]);
    assert_eq!(log.partition("t", 0).leader, Some(3));
    log.refused(
        &reassign(&log, "t", 0, &[1, 2]),
        ErrorCode::ReassignmentInProgress,
    );
}

#[test]
fn bad_targets_are_refused() {
    let mut log = on_one_and_two();
    for (target, needle) in [
        (vec![], "empty"),
        (vec![2, 2], "twice"),
        (vec![2, 9], "not registered"),
    ] {
        let message = log.refused(
            &reassign(&log, "t", 0, &target),
            ErrorCode::InvalidReplicaAssignment,
        );
        assert!(message.contains(needle), "{message}");
    }
    log.done(&fence(3, 1));
    let message = log.refused(
        &reassign(&log, "t", 0, &[2, 3]),
        ErrorCode::InvalidReplicaAssignment,
    );
    assert!(message.contains("not alive"), "{message}");
    log.refused(
        &reassign(&log, "t", 1, &[2, 4]),
        ErrorCode::UnknownTopicOrPartition,
    );
    log.refused(
        &reassign(&log, "x", 0, &[2, 4]),
        ErrorCode::UnknownTopicOrPartition,
    );
    let mut stale = reassign(&log, "t", 0, &[2, 4]);
    if let Command::ReassignPartition { topic_id, .. } = &mut stale {
        *topic_id += 1;
    }
    log.refused(&stale, ErrorCode::UnknownTopicOrPartition);
}

#[test]
fn a_replica_that_is_kept_may_be_fenced_meanwhile() {
    let mut log = on_one_and_two();
    log.done(&fence(2, 1));
    log.done(&reassign(&log, "t", 0, &[2, 3]));
    assert_eq!(log.partition("t", 0).adding, vec![3]);
}

#[test]
fn older_images_read_without_a_reassignment() {
    let log = on_one_and_two();
    let mut json = serde_json::to_value(&log.image).unwrap();
    let partition = &mut json["topics"]["t"]["partitions"][0];
    let object = partition.as_object_mut().unwrap();
    object.remove("adding");
    object.remove("removing");
    let image: Image = serde_json::from_value(json).unwrap();
    assert_eq!(image, log.image);
}

/// Brings every broker back and puts every replica of every partition in sync, as the
/// added replicas catching up would.
fn catch_up(log: &mut Log) {
    let ids: Vec<u32> = log.image.brokers.keys().copied().collect();
    for id in ids {
        log.register(id);
    }
    let partitions: Vec<(String, u32)> = log
        .image
        .topics
        .iter()
        .flat_map(|(name, topic)| {
            (0..)
                .zip(&topic.partitions)
                .map(move |(index, _)| (name.clone(), index))
        })
        .collect();
    for (name, index) in partitions {
        let partition = log.partition(&name, index);
        if !partition.is_reassigning() {
            continue;
        }
        if partition.leader.is_none() {
            log.done(&Command::ElectLeader {
                topic: name.clone(),
                topic_id: log.image.topic(&name).expect("exists").id,
                partition: index,
                unclean: true,
            });
        }
        let replicas = log.partition(&name, index).replicas;
        alter(log, &name, index, &replicas);
    }
}

proptest! {
    // Most random sequences end with no move in progress: more cases find some.
    #![proptest_config(ProptestConfig::with_cases(1_024))]

    #[test]
    fn every_move_ends_at_its_target_once_the_added_replicas_catch_up(
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut log = Log::new();
        for op in &ops {
            let command = command(op, &log.image);
            log.apply(&command);
        }
        let targets: Vec<(String, usize, Vec<u32>)> = log
            .image
            .topics
            .iter()
            .flat_map(|(name, topic)| {
                topic.partitions.iter().enumerate().filter(|(_, p)| p.is_reassigning())
                    .map(move |(index, p)| (name.clone(), index, p.target()))
            })
            .collect();
        catch_up(&mut log);
        for (name, index, target) in targets {
            let partition = &log.image.topic(&name).expect("not deleted").partitions[index];
            prop_assert_eq!(&partition.replicas, &target, "{}-{}: {:?}", name, index, partition);
            prop_assert!(!partition.is_reassigning());
            prop_assert!(partition.leader.is_some_and(|leader| partition.isr.contains(&leader)));
        }
    }
}
