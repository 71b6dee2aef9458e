//! Random command sequences, as a cluster's controller, partition leaders and admin
//! clients might propose them: registrations and restarts (some unclean), fences and
//! unfences (some at stale incarnations), shutdowns, topic creates that race (the same
//! name, colliding names, too many replicas), growth, deletes, config changes (the min
//! ISR among them), ISR changes (some from stale leaders or on stale epochs), clean and
//! unclean elections, reassignments (some cancelled, some to bad targets), and
//! producer-id blocks.

use proptest::prelude::*;

use super::super::*;
use super::{create, registration};

/// Broker ids the model uses; one more than this is never registered.
pub(super) const BROKERS: u32 = 4;
/// Topic names, two of which collide.
const TOPICS: [&str; 4] = ["a", "b", "c.d", "C_d"];

#[derive(Debug, Clone)]
pub(super) enum Op {
    Register {
        id: u32,
        unclean: bool,
    },
    Fence {
        id: u32,
        stale: bool,
    },
    Unfence {
        id: u32,
        stale: bool,
    },
    Shutdown {
        id: u32,
        stale: bool,
    },
    Create {
        topic: usize,
        partitions: u32,
        replication_factor: u16,
    },
    Delete {
        topic: usize,
    },
    Grow {
        topic: usize,
        partitions: u32,
    },
    Alter {
        topic: usize,
        retention_ms: i64,
    },
    ProducerIds {
        broker: u32,
        count: i64,
        at_least: i64,
    },
    AlterMinIsr {
        topic: usize,
        min_insync_replicas: u16,
    },
    AlterIsr {
        topic: usize,
        partition: u32,
        /// Which replicas, by position, the new ISR holds besides the leader.
        members: u8,
        with_leader: bool,
        stale: Stale,
    },
    Elect {
        topic: usize,
        partition: u32,
        unclean: bool,
    },
    Reassign {
        topic: usize,
        partition: u32,
        /// The target's brokers; an empty one may stand for a cancel.
        replicas: Vec<u32>,
        cancel: bool,
    },
}

/// What an `AlterPartition` gets wrong, if anything.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stale {
    Nothing,
    TopicId,
    Leader,
    LeaderEpoch,
    PartitionEpoch,
}

fn stale_field() -> impl Strategy<Value = Stale> {
    prop_oneof![
        6 => Just(Stale::Nothing),
        1 => Just(Stale::TopicId),
        1 => Just(Stale::Leader),
        1 => Just(Stale::LeaderEpoch),
        1 => Just(Stale::PartitionEpoch),
    ]
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let id = 1..=BROKERS + 1;
    let topic = 0..TOPICS.len();
    let stale = prop::bool::weighted(0.2);
    prop_oneof![
        2 => (id.clone(), prop::bool::weighted(0.3))
            .prop_map(|(id, unclean)| Op::Register { id, unclean }),
        2 => (id.clone(), stale).prop_map(|(id, stale)| Op::Fence { id, stale }),
        2 => (id.clone(), stale).prop_map(|(id, stale)| Op::Unfence { id, stale }),
        1 => (id.clone(), stale).prop_map(|(id, stale)| Op::Shutdown { id, stale }),
        5 => (topic.clone(), 0u32..6, 0u16..4).prop_map(|(topic, partitions, replication_factor)| {
            Op::Create { topic, partitions, replication_factor }
        }),
        1 => topic.clone().prop_map(|topic| Op::Delete { topic }),
        2 => (topic.clone(), 0u32..10).prop_map(|(topic, partitions)| Op::Grow { topic, partitions }),
        1 => (topic.clone(), -1i64..1000).prop_map(|(topic, retention_ms)| Op::Alter { topic, retention_ms }),
        1 => (topic.clone(), 0u16..5).prop_map(|(topic, min_insync_replicas)| {
            Op::AlterMinIsr { topic, min_insync_replicas }
        }),
        6 => (topic.clone(), 0u32..10, any::<u8>(), prop::bool::weighted(0.9), stale_field())
            .prop_map(|(topic, partition, members, with_leader, stale)| {
                Op::AlterIsr { topic, partition, members, with_leader, stale }
            }),
        2 => (topic.clone(), 0u32..10, any::<bool>()).prop_map(|(topic, partition, unclean)| {
            Op::Elect { topic, partition, unclean }
        }),
        5 => (
            topic.clone(),
            0u32..10,
            proptest::collection::vec(id.clone(), 0..4),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(topic, partition, replicas, cancel)| {
                Op::Reassign { topic, partition, replicas, cancel }
            }),
        1 => (id, -1i64..50, 0i64..300).prop_map(|(broker, count, at_least)| {
            Op::ProducerIds { broker, count, at_least }
        }),
    ]
}

/// The command `op` stands for, given the image it is applied to (incarnations are
/// current unless the op is stale).
pub(super) fn command(op: &Op, image: &Image) -> Command {
    let incarnation = |id: u32, stale: bool| {
        let current = image.broker(id).map_or(1, |broker| broker.incarnation);
        if stale { current + 1 } else { current }
    };
    match *op {
        Op::Register { id, unclean } => registration(id, unclean),
        Op::Fence { id, stale } => Command::FenceBroker {
            id,
            incarnation: incarnation(id, stale),
        },
        Op::Unfence { id, stale } => Command::UnfenceBroker {
            id,
            incarnation: incarnation(id, stale),
        },
        Op::Shutdown { id, stale } => Command::ShutdownBroker {
            id,
            incarnation: incarnation(id, stale),
        },
        Op::Create {
            topic,
            partitions,
            replication_factor,
        } => create(TOPICS[topic], partitions, replication_factor),
        Op::Delete { topic } => Command::DeleteTopic {
            name: TOPICS[topic].to_owned(),
            id: None,
        },
        Op::Grow { topic, partitions } => Command::CreatePartitions {
            name: TOPICS[topic].to_owned(),
            partitions,
        },
        Op::Alter {
            topic,
            retention_ms,
        } => Command::AlterTopicConfig {
            name: TOPICS[topic].to_owned(),
            entries: vec![("retention_ms".to_owned(), retention_ms.to_string())],
        },
        Op::ProducerIds {
            broker,
            count,
            at_least,
        } => Command::AllocateProducerIds {
            broker,
            count,
            at_least,
        },
        Op::AlterMinIsr {
            topic,
            min_insync_replicas,
        } => Command::AlterTopicConfig {
            name: TOPICS[topic].to_owned(),
            entries: vec![(
                "min_insync_replicas".to_owned(),
                min_insync_replicas.to_string(),
            )],
        },
        Op::AlterIsr {
            topic,
            partition,
            members,
            with_leader,
            stale,
        } => {
            let (name, partition) = existing(image, topic, partition);
            alter_isr(image, name, partition, members, with_leader, stale)
        }
        Op::Elect {
            topic,
            partition,
            unclean,
        } => {
            let (name, partition) = existing(image, topic, partition);
            Command::ElectLeader {
                topic: name.to_owned(),
                topic_id: image.topic(name).map_or(0, |record| record.id),
                partition,
                unclean,
            }
        }
        Op::Reassign {
            topic,
            partition,
            ref replicas,
            cancel,
        } => {
            let (name, partition) = existing(image, topic, partition);
            let original = image
                .partition(name, partition)
                .map(PartitionRecord::original);
            Command::ReassignPartition {
                topic: name.to_owned(),
                topic_id: image.topic(name).map_or(0, |record| record.id),
                partition,
                replicas: match original {
                    Some(original) if cancel => original,
                    _ => replicas.clone(),
                },
            }
        }
    }
}

/// The `topic`-th existing topic and its `partition`-th partition, both taken modulo
/// what exists, so that most partition commands find their partition; with no topic, one
/// of the model's names and `partition` as is.
fn existing(image: &Image, topic: usize, partition: u32) -> (&str, u32) {
    match image.topics.iter().nth(topic % image.topics.len().max(1)) {
        Some((name, record)) => {
            let count = u32::try_from(record.partitions.len()).expect("a few partitions");
            (name.as_str(), partition % count.max(1))
        }
        None => (TOPICS[topic % TOPICS.len()], partition),
    }
}

/// An `AlterPartition` as the partition's leader would send it, but for what `stale` gets
/// wrong; for a partition that does not exist or has no leader, one from broker 1.
fn alter_isr(
    image: &Image,
    topic: &str,
    partition: u32,
    members: u8,
    with_leader: bool,
    stale: Stale,
) -> Command {
    let topic_id = image.topic(topic).map_or(0, |record| record.id);
    let current = image.partition(topic, partition);
    let leader = current.and_then(|current| current.leader).unwrap_or(1);
    let replicas = current.map_or_else(|| vec![1, 2, 3], |current| current.replicas.clone());
    let mut isr: Vec<u32> = (0..)
        .zip(&replicas)
        .filter(|&(bit, &id)| id != leader && members >> bit & 1 == 1)
        .map(|(_, &id)| id)
        .collect();
    if with_leader {
        isr.insert(usize::from(members) % (isr.len() + 1), leader);
    }
    let epoch = |pick: fn(&PartitionRecord) -> u32| current.map_or(0, pick);
    let mut command = Command::AlterPartition {
        topic: topic.to_owned(),
        topic_id,
        partition,
        leader,
        leader_epoch: epoch(|current| current.leader_epoch),
        partition_epoch: epoch(|current| current.partition_epoch),
        isr,
        incarnations: Vec::new(),
    };
    if let Command::AlterPartition {
        topic_id,
        leader,
        leader_epoch,
        partition_epoch,
        ..
    } = &mut command
    {
        match stale {
            Stale::Nothing => {}
            Stale::TopicId => *topic_id += 1,
            Stale::Leader => *leader = leader.wrapping_add(1),
            Stale::LeaderEpoch => *leader_epoch = leader_epoch.wrapping_sub(1),
            Stale::PartitionEpoch => *partition_epoch += 1,
        }
    }
    command
}
