//! Random command sequences, as a cluster's controller and admin clients might propose
//! them: registrations and restarts, fences and unfences (some at stale incarnations),
//! shutdowns, topic creates that race (the same name, colliding names, too many
//! replicas), growth, deletes, config changes and producer-id blocks.

use proptest::prelude::*;

use super::super::*;
use super::{create, register};

/// Broker ids the model uses; one more than this is never registered.
pub(super) const BROKERS: u32 = 4;
/// Topic names, two of which collide.
const TOPICS: [&str; 4] = ["a", "b", "c.d", "C_d"];

#[derive(Debug, Clone)]
pub(super) enum Op {
    Register(u32),
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
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let id = 1..=BROKERS + 1;
    let topic = 0..TOPICS.len();
    let stale = prop::bool::weighted(0.2);
    prop_oneof![
        2 => id.clone().prop_map(Op::Register),
        2 => (id.clone(), stale).prop_map(|(id, stale)| Op::Fence { id, stale }),
        2 => (id.clone(), stale).prop_map(|(id, stale)| Op::Unfence { id, stale }),
        1 => (id.clone(), stale).prop_map(|(id, stale)| Op::Shutdown { id, stale }),
        3 => (topic.clone(), 0u32..6, 0u16..4).prop_map(|(topic, partitions, replication_factor)| {
            Op::Create { topic, partitions, replication_factor }
        }),
        1 => topic.clone().prop_map(|topic| Op::Delete { topic }),
        2 => (topic.clone(), 0u32..10).prop_map(|(topic, partitions)| Op::Grow { topic, partitions }),
        1 => (topic, -1i64..1000).prop_map(|(topic, retention_ms)| Op::Alter { topic, retention_ms }),
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
        Op::Register(id) => register(id),
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
    }
}
