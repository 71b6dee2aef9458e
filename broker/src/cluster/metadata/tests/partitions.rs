//! ISR changes, eligible leader replicas, elections and unclean restarts, one rule at a
//! time.

use strata_protocol::ErrorCode;

use super::super::*;
use super::{Log, create, fence, registration, three_brokers, unfence};

/// An `AlterPartition` from the current leader at the current epochs.
fn alter(log: &Log, topic: &str, index: u32, isr: &[u32]) -> Command {
    let partition = log.partition(topic, index);
    Command::AlterPartition {
        topic: topic.to_owned(),
        topic_id: log.image.topic(topic).expect("exists").id,
        partition: index,
        leader: partition.leader.expect("led"),
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
        isr: isr.to_vec(),
        incarnations: Vec::new(),
    }
}

fn elect(log: &Log, topic: &str, index: u32, unclean: bool) -> Command {
    Command::ElectLeader {
        topic: topic.to_owned(),
        topic_id: log.image.topic(topic).expect("exists").id,
        partition: index,
        unclean,
    }
}

/// A topic of one partition on brokers 1, 2, 3 (led by 1) with this min ISR.
fn replicated(min_insync_replicas: u16) -> Log {
    let mut log = three_brokers();
    log.done(&Command::CreateTopic {
        name: "t".to_owned(),
        config: TopicConfig {
            min_insync_replicas,
            ..TopicConfig::default()
        },
        partitions: 1,
        replication_factor: 3,
    });
    assert_eq!(log.partition("t", 0).replicas, vec![1, 2, 3]);
    log
}

fn isr_and_elr(log: &Log) -> (Vec<u32>, Vec<u32>) {
    let partition = log.partition("t", 0);
    (partition.isr, partition.elr)
}

#[test]
fn the_min_isr_is_the_configured_one_but_at_most_the_replicas() {
    let mut log = three_brokers();
    log.done(&create("one", 1, 1));
    log.done(&create("three", 1, 3));
    let topic = |name: &str| log.image.topic(name).unwrap().clone();
    let (one, three) = (topic("one"), topic("three"));
    assert_eq!(one.partitions[0].min_isr(&one.config), 1);
    assert_eq!(three.partitions[0].min_isr(&three.config), 2);
    let strict = TopicConfig {
        min_insync_replicas: 5,
        ..TopicConfig::default()
    };
    assert_eq!(three.partitions[0].min_isr(&strict), 3);
}

#[test]
fn an_isr_change_from_a_stale_or_wrong_leader_is_refused() {
    let mut log = replicated(2);
    let valid = alter(&log, "t", 0, &[1, 2]);
    let with = |change: &dyn Fn(&mut Command)| {
        let mut command = valid.clone();
        change(&mut command);
        command
    };
    let set = |field: &'static str, value: u64| {
        with(&move |command| {
            let Command::AlterPartition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                ..
            } = command
            else {
                unreachable!()
            };
            let narrow = u32::try_from(value).unwrap();
            match field {
                "topic_id" => *topic_id = value,
                "partition" => *partition = narrow,
                "leader" => *leader = narrow,
                "leader_epoch" => *leader_epoch = narrow,
                _ => *partition_epoch = narrow,
            }
        })
    };
    let isr = |members: &[u32]| {
        let members = members.to_vec();
        with(&move |command| {
            let Command::AlterPartition { isr, .. } = command else {
                unreachable!()
            };
            isr.clone_from(&members);
        })
    };
    for command in [set("topic_id", 99), set("partition", 1)] {
        log.refused(&command, ErrorCode::UnknownTopicOrPartition);
    }
    for command in [set("leader", 2), set("leader_epoch", 1)] {
        log.refused(&command, ErrorCode::FencedLeaderEpoch);
    }
    log.refused(&set("partition_epoch", 1), ErrorCode::InvalidUpdateVersion);
    for members in [&[][..], &[2, 3], &[1, 4], &[1, 2, 1]] {
        let message = log.refused(&isr(members), ErrorCode::InvalidRequest);
        assert!(message.contains("the ISR"), "{message}");
    }
    log.done(&valid);
    log.done(&fence(3, 1));
    let message = log.refused(
        &alter(&log, "t", 0, &[1, 2, 3]),
        ErrorCode::IneligibleReplica,
    );
    assert!(message.contains("broker 3"), "{message}");
}

#[test]
fn a_member_that_registered_again_since_it_caught_up_cannot_join() {
    let mut log = replicated(2);
    log.done(&alter(&log, "t", 0, &[1, 2]));
    // Broker 3 caught up at incarnation 1, then restarted before the change applied.
    let caught_up_before = |log: &Log| {
        let Command::AlterPartition {
            topic,
            topic_id,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
            ..
        } = alter(log, "t", 0, &[1, 2, 3])
        else {
            unreachable!()
        };
        Command::AlterPartition {
            topic,
            topic_id,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
            incarnations: vec![(3, 1)],
        }
    };
    let before_restart = caught_up_before(&log);
    assert_eq!(log.register(3), 2);
    let message = log.refused(&before_restart, ErrorCode::IneligibleReplica);
    assert!(message.contains("registered again"), "{message}");
    let stale = caught_up_before(&log);
    log.refused(&stale, ErrorCode::IneligibleReplica);
}

#[test]
fn members_that_leave_an_isr_below_the_min_isr_become_eligible() {
    let mut log = replicated(2);
    log.done(&alter(&log, "t", 0, &[1, 2]));
    // At the min ISR the high watermark moves on without broker 3: it is not eligible.
    assert_eq!(isr_and_elr(&log), (vec![1, 2], vec![]));
    assert_eq!(log.partition("t", 0).partition_epoch, 1);
    log.done(&alter(&log, "t", 0, &[1]));
    assert_eq!(isr_and_elr(&log), (vec![1], vec![2]));
    // Back at the min ISR, the ELR is no longer needed.
    log.done(&alter(&log, "t", 0, &[1, 3]));
    assert_eq!(isr_and_elr(&log), (vec![1, 3], vec![]));

    let mut log = replicated(3);
    log.done(&alter(&log, "t", 0, &[1]));
    assert_eq!(isr_and_elr(&log), (vec![1], vec![2, 3]));
    // A member joining the ISR leaves the ELR; the others stay while it is below 3.
    log.done(&alter(&log, "t", 0, &[1, 3]));
    assert_eq!(isr_and_elr(&log), (vec![1, 3], vec![2]));
    assert_eq!(log.partition("t", 0).leader_epoch, 0);
}

#[test]
fn a_leader_lost_below_the_min_isr_is_followed_by_an_eligible_replica() {
    let mut log = replicated(2);
    log.done(&alter(&log, "t", 0, &[1]));
    log.done(&fence(1, 1));
    let partition = log.partition("t", 0);
    assert_eq!(partition.leader, Some(2));
    assert_eq!((partition.isr, partition.elr), (vec![2], vec![1, 3]));
    assert_eq!((partition.leader_epoch, partition.partition_epoch), (1, 2));
}

#[test]
fn a_fenced_follower_below_the_min_isr_stays_eligible() {
    let mut log = replicated(3);
    log.done(&fence(3, 1));
    assert_eq!(isr_and_elr(&log), (vec![1, 2], vec![3]));
    log.done(&fence(2, 1));
    assert_eq!(isr_and_elr(&log), (vec![1], vec![2, 3]));
    log.done(&fence(1, 1));
    assert_eq!(log.partition("t", 0).leader, None);
    assert_eq!(isr_and_elr(&log), (vec![1], vec![2, 3]));
    // The first eligible replica back leads.
    log.done(&unfence(3, 1));
    let partition = log.partition("t", 0);
    assert_eq!(partition.leader, Some(3));
    assert_eq!((partition.isr, partition.elr), (vec![3], vec![1, 2]));
}

#[test]
fn an_unclean_restart_leaves_every_elr() {
    let mut log = replicated(3);
    log.done(&alter(&log, "t", 0, &[1]));
    log.apply(&registration(2, true));
    assert_eq!(isr_and_elr(&log), (vec![1], vec![3]));
    assert_eq!(log.partition("t", 0).leader, Some(1));
}

#[test]
fn an_unclean_last_isr_member_hands_the_partition_to_an_eligible_replica() {
    let mut log = replicated(2);
    log.done(&alter(&log, "t", 0, &[1]));
    log.done(&fence(2, 1));
    log.done(&fence(3, 1));
    log.done(&fence(1, 1));
    assert_eq!(isr_and_elr(&log), (vec![1], vec![2, 3]));
    log.apply(&registration(1, true));
    let partition = log.partition("t", 0);
    assert_eq!(
        (partition.leader, partition.isr, partition.elr),
        (None, vec![2], vec![3])
    );
    // Broker 3 is back first: eligible, it leads; broker 1 is nowhere.
    log.register(3);
    let partition = log.partition("t", 0);
    assert_eq!(
        (partition.leader, partition.isr, partition.elr),
        (Some(3), vec![3], vec![2])
    );
}

#[test]
fn an_unclean_last_isr_member_without_eligible_replicas_waits_for_an_unclean_election() {
    let mut log = replicated(1);
    log.done(&fence(2, 1));
    log.done(&fence(3, 1));
    log.done(&fence(1, 1));
    assert_eq!(isr_and_elr(&log), (vec![1], vec![]));
    log.apply(&registration(1, true));
    let waiting = log.partition("t", 0);
    assert!(waiting.last_isr_unclean);
    assert_eq!(waiting.leader, None);
    // Not a lapse and an unfence, nor a clean restart, nor the others' return elect it.
    log.done(&fence(1, 2));
    log.done(&unfence(1, 2));
    log.register(1);
    log.register(2);
    assert_eq!(log.partition("t", 0).leader, None);
    log.refused(
        &elect(&log, "t", 0, false),
        ErrorCode::EligibleLeadersNotAvailable,
    );
    log.done(&elect(&log, "t", 0, true));
    let elected = log.partition("t", 0);
    assert_eq!(
        (elected.leader, elected.isr.as_slice()),
        (Some(1), &[1][..])
    );
    assert!(!elected.last_isr_unclean);
    assert_eq!(elected.leader_epoch, waiting.leader_epoch + 1);
}

#[test]
fn an_unclean_restart_of_the_only_replica_leads_again() {
    let mut log = three_brokers();
    log.done(&create("t", 1, 1));
    log.done(&fence(1, 1));
    log.apply(&registration(1, true));
    let partition = log.partition("t", 0);
    assert_eq!(partition.leader, Some(1));
    assert!(!partition.last_isr_unclean);
}

#[test]
fn a_clean_election_moves_leadership_back_to_the_preferred_replica() {
    let mut log = replicated(2);
    log.refused(&elect(&log, "t", 0, false), ErrorCode::ElectionNotNeeded);
    log.refused(&elect(&log, "t", 0, true), ErrorCode::ElectionNotNeeded);
    log.done(&fence(1, 1));
    assert_eq!(log.partition("t", 0).leader, Some(2));
    log.register(1);
    // Back, but not in sync until the leader adds it.
    log.refused(
        &elect(&log, "t", 0, false),
        ErrorCode::EligibleLeadersNotAvailable,
    );
    log.done(&alter(&log, "t", 0, &[2, 3, 1]));
    log.done(&elect(&log, "t", 0, false));
    let partition = log.partition("t", 0);
    assert_eq!((partition.leader, partition.leader_epoch), (Some(1), 2));
    assert_eq!(partition.isr, vec![2, 3, 1]);
    let mut gone = elect(&log, "t", 0, false);
    if let Command::ElectLeader { topic_id, .. } = &mut gone {
        *topic_id += 1;
    }
    log.refused(&gone, ErrorCode::UnknownTopicOrPartition);
}

#[test]
fn an_unclean_election_takes_the_isr_then_the_elr_then_any_replica() {
    let mut log = replicated(3);
    log.done(&alter(&log, "t", 0, &[1, 2]));
    log.done(&fence(3, 1));
    log.done(&fence(1, 1));
    log.done(&fence(2, 1));
    // Broker 2 is the last ISR member; 1 and 3 left the ISR below the min ISR.
    assert_eq!(isr_and_elr(&log), (vec![2], vec![1, 3]));
    log.refused(
        &elect(&log, "t", 0, true),
        ErrorCode::EligibleLeadersNotAvailable,
    );
    log.apply(&registration(3, true));
    // Broker 3 lost its eligibility; only an unclean election takes it.
    assert_eq!(isr_and_elr(&log), (vec![2], vec![1]));
    log.done(&elect(&log, "t", 0, true));
    let partition = log.partition("t", 0);
    assert_eq!(
        (partition.leader, partition.isr, partition.elr),
        (Some(3), vec![3], vec![])
    );
}

#[test]
fn lowering_the_min_isr_ends_the_eligibility() {
    let mut log = replicated(3);
    log.done(&alter(&log, "t", 0, &[1, 2]));
    assert_eq!(isr_and_elr(&log), (vec![1, 2], vec![3]));
    let epoch = log.partition("t", 0).partition_epoch;
    log.done(&Command::AlterTopicConfig {
        name: "t".to_owned(),
        entries: vec![("min_insync_replicas".to_owned(), "2".to_owned())],
    });
    assert_eq!(isr_and_elr(&log), (vec![1, 2], vec![]));
    assert_eq!(log.partition("t", 0).partition_epoch, epoch + 1);
}
