//! The metadata rules, one command at a time; the property tests, one file per invariant,
//! drive random command sequences ([`model`]).

mod invariants;
mod model;
mod partitions;
mod producer_ids;
mod reassign;
mod replay;

use std::sync::Arc;

use strata_protocol::ErrorCode;
use tokio::sync::watch;

use super::*;

/// Applies commands at consecutive indexes, checking the image after each.
pub(super) struct Log {
    pub(super) image: Image,
}

impl Log {
    pub(super) fn new() -> Self {
        Self {
            image: Image::default(),
        }
    }

    pub(super) fn apply(&mut self, command: &Command) -> Outcome {
        let index = self.image.applied + 1;
        let outcome = self.image.apply(index, command);
        assert_eq!(self.image.applied, index);
        if let Err(rule) = self.image.check() {
            panic!("after {command:?}: {rule}");
        }
        outcome
    }

    pub(super) fn done(&mut self, command: &Command) {
        assert_eq!(self.apply(command), Outcome::Done, "{command:?}");
    }

    pub(super) fn refused(&mut self, command: &Command, expected: ErrorCode) -> String {
        let before = self.image.clone();
        let outcome = self.apply(command);
        let Some((code, message)) = outcome.refusal() else {
            panic!("{command:?} was not refused: {outcome:?}");
        };
        assert_eq!(code, expected, "{message}");
        assert_eq!(
            self.image,
            Image {
                applied: self.image.applied,
                ..before
            },
            "a refusal changed the image"
        );
        message.to_owned()
    }

    /// Registers `id` and returns its incarnation.
    pub(super) fn register(&mut self, id: u32) -> u64 {
        match self.apply(&register(id)) {
            Outcome::Registered { incarnation } => incarnation,
            other => panic!("registration refused: {other:?}"),
        }
    }

    pub(super) fn partition(&self, topic: &str, index: u32) -> PartitionRecord {
        self.image.partition(topic, index).expect("exists").clone()
    }

    pub(super) fn leaders(&self, topic: &str) -> Vec<Option<u32>> {
        let topic = self.image.topic(topic).expect("exists");
        topic.partitions.iter().map(|p| p.leader).collect()
    }
}

pub(super) fn register(id: u32) -> Command {
    registration(id, false)
}

/// A registration of `id`, after a clean shutdown or not.
pub(super) fn registration(id: u32, unclean: bool) -> Command {
    Command::RegisterBroker {
        id,
        address: format!("127.0.0.1:{}", 9400 + id),
        cluster_address: format!("127.0.0.1:{}", 9500 + id),
        log_id: "test-log".to_owned(),
        unclean,
    }
}

pub(super) fn create(name: &str, partitions: u32, replication_factor: u16) -> Command {
    Command::CreateTopic {
        name: name.to_owned(),
        config: TopicConfig::default(),
        partitions,
        replication_factor,
    }
}

fn fence(id: u32, incarnation: u64) -> Command {
    Command::FenceBroker { id, incarnation }
}

fn unfence(id: u32, incarnation: u64) -> Command {
    Command::UnfenceBroker { id, incarnation }
}

fn shutdown(id: u32, incarnation: u64) -> Command {
    Command::ShutdownBroker { id, incarnation }
}

/// Three registered brokers.
fn three_brokers() -> Log {
    let mut log = Log::new();
    for id in 1..=3 {
        assert_eq!(log.register(id), 1);
    }
    log
}

#[test]
fn registering_again_is_a_new_incarnation_at_the_new_addresses() {
    let mut log = Log::new();
    assert_eq!(log.register(4), 1);
    log.done(&fence(4, 1));
    let moved = Command::RegisterBroker {
        id: 4,
        address: "10.0.0.4:9400".to_owned(),
        cluster_address: "10.0.0.4:9402".to_owned(),
        log_id: "another".to_owned(),
        unclean: false,
    };
    assert_eq!(log.apply(&moved), Outcome::Registered { incarnation: 2 });
    let broker = log.image.broker(4).unwrap();
    assert_eq!(broker.state, BrokerState::Alive);
    assert_eq!(broker.address, "10.0.0.4:9400");
    assert_eq!(broker.cluster_address, "10.0.0.4:9402");
    assert_eq!(log.image.alive_brokers(), vec![4]);
}

#[test]
fn a_new_topic_is_led_by_its_first_replicas_spread_over_the_brokers() {
    let mut log = three_brokers();
    log.done(&create("orders", 6, 1));
    assert_eq!(log.leaders("orders"), [1, 2, 3, 1, 2, 3].map(Some).to_vec());
    let partition = log.partition("orders", 4);
    assert_eq!(partition.replicas, vec![2]);
    assert_eq!(partition.isr, vec![2]);
    assert_eq!((partition.leader_epoch, partition.partition_epoch), (0, 0));
    assert_eq!(log.image.leader("orders", 4), Ok(2));
    assert_eq!(
        log.image.leader("orders", 6),
        Err(LeaderError::UnknownTopicOrPartition)
    );
    assert_eq!(
        log.image.leader("payments", 0),
        Err(LeaderError::UnknownTopicOrPartition)
    );
}

#[test]
fn each_broker_knows_the_partitions_it_keeps() {
    let mut log = three_brokers();
    log.done(&create("a", 3, 2));
    log.done(&create("b", 2, 1));
    let on_2: Vec<(&str, u32)> = log
        .image
        .partitions_on(2)
        .map(|(topic, index, _)| (topic, index))
        .collect();
    // "a" is on [1, 2], [2, 3], [3, 1]; "b" on [1], [2].
    assert_eq!(on_2, vec![("a", 0), ("a", 1), ("b", 1)]);
    assert_eq!(log.image.partitions_on(4).count(), 0);
}

#[test]
fn small_topics_take_turns_on_the_brokers() {
    let mut log = three_brokers();
    for name in ["a", "b", "c", "d"] {
        log.done(&create(name, 1, 1));
    }
    let leaders: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|name| log.image.leader(name, 0).unwrap())
        .collect();
    assert_eq!(leaders, vec![1, 2, 3, 1]);
}

#[test]
fn creates_that_lost_a_race_or_cannot_be_placed_are_refused() {
    let mut log = three_brokers();
    log.done(&create("orders.eu", 1, 1));
    log.refused(&create("orders.eu", 3, 1), ErrorCode::TopicAlreadyExists);
    let message = log.refused(&create("Orders_EU", 1, 1), ErrorCode::InvalidTopic);
    assert!(message.contains("'orders.eu'"), "{message}");
    log.refused(&create("t", 0, 1), ErrorCode::InvalidPartitions);
    log.refused(&create("t", 1, 0), ErrorCode::InvalidReplicationFactor);
    log.refused(&create("t", 1, 4), ErrorCode::InvalidReplicationFactor);
    log.done(&fence(3, 1));
    log.refused(&create("t", 1, 3), ErrorCode::InvalidReplicationFactor);
    log.done(&create("t", 2, 2));
    // Broker 1 already leads "orders.eu", so "t" starts on broker 2.
    assert_eq!(log.partition("t", 0).replicas, vec![2, 1]);
    assert_eq!(log.partition("t", 1).replicas, vec![1, 2]);
}

#[test]
fn a_fenced_broker_gives_its_partitions_back_on_restart() {
    let mut log = three_brokers();
    log.done(&create("orders", 3, 1));
    log.done(&fence(2, 1));
    assert_eq!(log.leaders("orders"), vec![Some(1), None, Some(3)]);
    let offline = log.partition("orders", 1);
    assert_eq!(
        (offline.isr.as_slice(), offline.partition_epoch),
        (&[2][..], 1)
    );
    assert_eq!(
        log.image.leader("orders", 1),
        Err(LeaderError::LeaderNotAvailable)
    );
    let counts = log.image.partition_counts();
    assert_eq!(
        (counts.total, counts.offline, counts.under_replicated),
        (3, 1, 0)
    );

    assert_eq!(log.register(2), 2);
    assert_eq!(log.leaders("orders"), [1, 2, 3].map(Some).to_vec());
    let back = log.partition("orders", 1);
    assert_eq!((back.leader_epoch, back.partition_epoch), (1, 2));
    assert_eq!(log.partition("orders", 0).partition_epoch, 0);
    assert_eq!(log.image.partition_counts().offline, 0);
}

#[test]
fn a_restart_before_the_fence_gives_the_leaderships_a_new_epoch() {
    let mut log = three_brokers();
    log.done(&create("orders", 3, 1));
    assert_eq!(log.register(1), 2);
    let partition = log.partition("orders", 0);
    assert_eq!(partition.leader, Some(1));
    assert_eq!((partition.leader_epoch, partition.partition_epoch), (1, 2));
    // The old incarnation's session lapses after the restart: its fence is stale.
    let message = log.refused(&fence(1, 1), ErrorCode::InvalidRequest);
    assert!(message.contains("stale"), "{message}");
}

#[test]
fn an_unfenced_broker_takes_its_partitions_back() {
    let mut log = three_brokers();
    log.done(&create("orders", 3, 1));
    log.done(&fence(3, 1));
    log.done(&unfence(3, 1));
    assert_eq!(log.leaders("orders"), [1, 2, 3].map(Some).to_vec());
    assert_eq!(log.partition("orders", 2).leader_epoch, 1);
    // Unfencing an alive broker changes nothing.
    let before = log.image.clone();
    log.done(&unfence(3, 1));
    assert_eq!(log.image.topics, before.topics);
    // A fence repeated after it was applied changes nothing either.
    log.done(&fence(3, 1));
    let fenced = log.image.clone();
    log.done(&fence(3, 1));
    assert_eq!(log.image.topics, fenced.topics);
}

#[test]
fn fences_unfences_and_shutdowns_need_the_current_incarnation() {
    let mut log = three_brokers();
    log.register(2);
    for command in [fence(2, 1), unfence(2, 1), shutdown(2, 3), fence(9, 1)] {
        log.refused(&command, ErrorCode::InvalidRequest);
    }
    assert_eq!(log.image.broker(2).unwrap().state, BrokerState::Alive);
}

#[test]
fn a_shutting_down_broker_leads_nothing_and_is_not_unfenced() {
    let mut log = three_brokers();
    log.done(&create("orders", 3, 1));
    log.done(&shutdown(1, 1));
    assert_eq!(
        log.image.broker(1).unwrap().state,
        BrokerState::ShuttingDown
    );
    assert_eq!(log.leaders("orders"), vec![None, Some(2), Some(3)]);
    assert_eq!(log.image.alive_brokers(), vec![2, 3]);
    log.refused(&unfence(1, 1), ErrorCode::BrokerShuttingDown);
    log.done(&fence(1, 1));
    assert_eq!(log.image.broker(1).unwrap().state, BrokerState::Fenced);
    log.register(1);
    assert_eq!(log.leaders("orders"), [1, 2, 3].map(Some).to_vec());
}

#[test]
fn with_several_replicas_a_fence_moves_leadership_within_the_isr() {
    let mut log = three_brokers();
    log.done(&create("orders", 3, 2));
    // Partition 0 on [1, 2], 1 on [2, 3], 2 on [3, 1].
    log.done(&fence(1, 1));
    let moved = log.partition("orders", 0);
    assert_eq!((moved.leader, moved.isr.as_slice()), (Some(2), &[2][..]));
    assert_eq!((moved.leader_epoch, moved.partition_epoch), (1, 1));
    // The ISR fell below the min ISR (2) without broker 1: it still has every record
    // below the high watermark, so it is an eligible leader.
    assert_eq!(moved.elr, vec![1]);
    let shrunk = log.partition("orders", 2);
    assert_eq!((shrunk.leader, shrunk.isr.as_slice()), (Some(3), &[3][..]));
    assert_eq!((shrunk.leader_epoch, shrunk.partition_epoch), (0, 1));
    let untouched = log.partition("orders", 1);
    assert_eq!(untouched.partition_epoch, 0);
    assert_eq!(log.image.partition_counts().under_replicated, 2);
    // The last ISR member keeps its place when it goes too: the partition waits for it.
    log.done(&fence(2, 1));
    let waiting = log.partition("orders", 0);
    assert_eq!((waiting.leader, waiting.isr.as_slice()), (None, &[2][..]));
    assert_eq!(waiting.elr, vec![1]);
    // Back from the fence, the eligible broker 1 leads, and broker 2 becomes eligible.
    log.register(1);
    let back = log.partition("orders", 0);
    assert_eq!((back.leader, back.isr.as_slice()), (Some(1), &[1][..]));
    assert_eq!((back.elr.as_slice(), back.leader_epoch), (&[2][..], 2));
    log.register(2);
    assert_eq!(log.partition("orders", 0).leader, Some(1));
}

#[test]
fn with_a_min_isr_of_one_a_replica_that_left_the_isr_is_not_eligible() {
    let mut log = three_brokers();
    log.done(&Command::CreateTopic {
        name: "orders".to_owned(),
        config: TopicConfig {
            min_insync_replicas: 1,
            ..TopicConfig::default()
        },
        partitions: 1,
        replication_factor: 2,
    });
    log.done(&fence(1, 1));
    assert_eq!(log.partition("orders", 0).elr, Vec::<u32>::new());
    log.done(&fence(2, 1));
    // Only the ISR member leads again: broker 1 left the ISR while the high watermark
    // moved on without it.
    log.register(1);
    assert_eq!(log.partition("orders", 0).leader, None);
    log.register(2);
    assert_eq!(log.partition("orders", 0).leader, Some(2));
}

#[test]
fn partitions_grow_with_the_topic_spread_and_factor() {
    let mut log = three_brokers();
    log.done(&create("orders", 2, 2));
    let grow = |total| Command::CreatePartitions {
        name: "orders".to_owned(),
        partitions: total,
    };
    log.refused(&grow(2), ErrorCode::InvalidPartitions);
    log.refused(&grow(1), ErrorCode::InvalidPartitions);
    log.done(&grow(6));
    assert_eq!(log.leaders("orders"), [1, 2, 3, 1, 2, 3].map(Some).to_vec());
    assert!(
        log.image
            .topic("orders")
            .unwrap()
            .partitions
            .iter()
            .all(|p| p.replicas.len() == 2)
    );
    let missing = Command::CreatePartitions {
        name: "payments".to_owned(),
        partitions: 4,
    };
    log.refused(&missing, ErrorCode::UnknownTopicOrPartition);
    log.done(&fence(1, 1));
    log.done(&fence(2, 1));
    log.refused(&grow(7), ErrorCode::InvalidReplicationFactor);
}

#[test]
fn topics_are_deleted_and_reconfigured_by_name() {
    let mut log = three_brokers();
    log.done(&create("orders", 1, 1));
    let config = TopicConfig {
        retention_ms: 60_000,
        ..TopicConfig::default()
    };
    let alter = |name: &str| Command::AlterTopicConfig {
        name: name.to_owned(),
        entries: vec![("retention_ms".to_owned(), "60000".to_owned())],
    };
    log.done(&alter("orders"));
    assert_eq!(log.image.topic("orders").unwrap().config, config);
    log.refused(&alter("payments"), ErrorCode::UnknownTopicOrPartition);
    let delete = |name: &str| Command::DeleteTopic {
        name: name.to_owned(),
        id: None,
    };
    log.done(&delete("orders"));
    assert!(log.image.topic("orders").is_none());
    log.refused(&delete("orders"), ErrorCode::UnknownTopicOrPartition);
    log.done(&create("ORDERS", 1, 1));
}

#[test]
fn the_same_commands_give_the_same_image() {
    let commands = [
        register(1),
        register(2),
        create("a", 5, 1),
        fence(1, 1),
        create("b", 3, 1),
        register(1),
        Command::CreatePartitions {
            name: "a".to_owned(),
            partitions: 9,
        },
    ];
    let run = || {
        let mut log = Log::new();
        for command in &commands {
            log.apply(command);
        }
        log.image
    };
    assert_eq!(run(), run());
}

#[test]
#[should_panic(expected = "metadata log index 3 applied after 3")]
fn an_index_applied_twice_is_a_bug() {
    let mut image = Image::default();
    image.skip(0);
    image.skip(3);
    image.apply(3, &register(1));
}

#[test]
fn the_state_machine_publishes_every_version() {
    let (sender, mut receiver) = watch::channel(Arc::new(Image::default()));
    let mut machine = MetadataStateMachine::new(sender);
    let outcome = machine.apply_bytes(1, &encode_command(&register(1)));
    assert_eq!(
        decode_outcome(&outcome),
        Ok(Outcome::Registered { incarnation: 1 })
    );
    assert!(receiver.has_changed().unwrap());
    assert_eq!(receiver.borrow_and_update().alive_brokers(), vec![1]);
    machine.skip(2);
    assert_eq!(receiver.borrow_and_update().applied, 2);
    assert_eq!(machine.applied(), 2);
}

#[test]
fn undecodable_commands_are_refused_and_still_applied() {
    let (sender, receiver) = watch::channel(Arc::new(Image::default()));
    let mut machine = MetadataStateMachine::new(sender);
    for (index, garbage) in [&b""[..], b"{", b"\xff", b"{\"DeleteTopic\":{}}", b"[1,2]"]
        .into_iter()
        .enumerate()
    {
        let index = index as u64 + 1;
        let outcome = decode_outcome(&machine.apply_bytes(index, garbage)).unwrap();
        let (code, message) = outcome.refusal().expect("refused");
        assert_eq!(code, ErrorCode::InvalidRequest, "{message}");
        assert_eq!(receiver.borrow().applied, index);
    }
    assert!(decode_outcome(b"{\"Nope\":1}").is_err());
}

#[test]
fn a_snapshot_restores_the_same_image() {
    let (sender, _receiver) = watch::channel(Arc::new(Image::default()));
    let mut machine = MetadataStateMachine::new(sender);
    let commands = [register(1), register(2), create("a", 4, 2), fence(2, 1)];
    for (index, command) in commands.iter().enumerate() {
        machine.apply_bytes(index as u64 + 1, &encode_command(command));
    }
    let snapshot = machine.snapshot();
    let (sender, receiver) = watch::channel(Arc::new(Image::default()));
    let mut restored = MetadataStateMachine::new(sender);
    restored.restore(&snapshot).unwrap();
    assert_eq!(**restored.image(), **machine.image());
    assert_eq!(**receiver.borrow(), **machine.image());
    assert_eq!(restored.applied(), 4);
}

#[test]
fn a_broken_snapshot_is_refused_and_the_image_kept() {
    let (sender, _receiver) = watch::channel(Arc::new(Image::default()));
    let mut machine = MetadataStateMachine::new(sender);
    machine.apply_bytes(1, &encode_command(&register(1)));
    machine.apply_bytes(2, &encode_command(&create("a", 1, 1)));
    let kept = machine.image().clone();
    let truncated = machine.snapshot()[..20].to_vec();
    let error = machine.restore(&truncated).unwrap_err();
    assert!(error.contains("does not decode"), "{error}");
    // Decodes, but the partition is led by a broker that never registered.
    let mut inconsistent = (*kept).clone();
    Arc::make_mut(inconsistent.topics.get_mut("a").unwrap()).partitions[0].leader = Some(9);
    let error = machine
        .restore(&serde_json::to_vec(&inconsistent).unwrap())
        .unwrap_err();
    assert!(error.contains("partition a-0"), "{error}");
    assert_eq!(*machine.image(), kept);
}
