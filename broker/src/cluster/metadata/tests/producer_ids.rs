//! Producer-id blocks never overlap, whatever brokers ask for and whatever floor they
//! give, so producer ids stay unique across the cluster.

use proptest::prelude::*;

use super::super::*;
use super::Log;
use super::model::{command, op};

#[test]
fn blocks_follow_each_other_and_respect_the_floor() {
    let mut log = Log::new();
    let mut allocate = |broker, count, at_least| {
        log.apply(&Command::AllocateProducerIds {
            broker,
            count,
            at_least,
        })
    };
    assert_eq!(
        allocate(1, 1000, 0),
        Outcome::ProducerIds {
            start: 0,
            end: 1000
        }
    );
    assert_eq!(
        allocate(2, 10, 0),
        Outcome::ProducerIds {
            start: 1000,
            end: 1010
        }
    );
    assert_eq!(
        allocate(1, 5, 5000),
        Outcome::ProducerIds {
            start: 5000,
            end: 5005
        }
    );
    assert_eq!(
        allocate(3, 5, 10),
        Outcome::ProducerIds {
            start: 5005,
            end: 5010
        }
    );
    assert!(allocate(3, 0, 0).refusal().is_some());
    assert!(allocate(3, 2, i64::MAX - 1).refusal().is_some());
    assert_eq!(
        allocate(3, 1, i64::MAX - 1),
        Outcome::ProducerIds {
            start: i64::MAX - 1,
            end: i64::MAX,
        }
    );
}

proptest! {
    #[test]
    fn producer_id_blocks_never_overlap(ops in proptest::collection::vec(op(), 1..80)) {
        let mut log = Log::new();
        let mut blocks: Vec<(i64, i64)> = Vec::new();
        for op in &ops {
            let command = command(op, &log.image);
            if let Outcome::ProducerIds { start, end } = log.apply(&command) {
                prop_assert!(start < end);
                for &(taken_start, taken_end) in &blocks {
                    prop_assert!(end <= taken_start || taken_end <= start);
                }
                blocks.push((start, end));
            }
        }
    }
}
