//! `Consumer::poll` is cancel-safe against a real broker: a group member whose polls are
//! dropped at their first `Pending` (as `select!` with Ctrl-C does) still gets every
//! offset of every partition exactly once, in order, and what it commits on close is
//! the end of what it was given, never more.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, NewTopic, TopicPartition,
};
use strata_tests::{BrokerProcess, bounded, data_dir, produce_to_partitions};

const PARTITIONS: u32 = 3;
const PER_PARTITION: u32 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_dropped_at_their_first_pending_lose_and_skip_nothing() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &["group_heartbeat_interval_ms=100"]);
        let at = broker.address.clone();
        let admin = Admin::new(ClientConfig::new(&at)).unwrap();
        admin
            .create_topic(NewTopic::new("cancel", PARTITIONS))
            .await
            .unwrap();
        produce_to_partitions(&at, "cancel", PARTITIONS, PER_PARTITION).await;

        let mut consumer = Consumer::new(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            // Small polls and frequent auto-commits: many chances to drop a poll
            // between records being buffered and being returned.
            poll_records_max: 7,
            auto_commit_interval_ms: 20,
            ..ConsumerConfig::new(&at)
        })
        .unwrap();
        consumer.subscribe(["cancel"], "cancellers").unwrap();
        let mut seen: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        let (mut dropped, mut round) = (0u32, 0u64);
        let total = u64::from(PARTITIONS * PER_PARTITION);
        while seen.values().map(Vec::len).sum::<usize>() < total as usize {
            round += 1;
            assert!(round < 100_000, "never received everything: {seen:?}");
            // Most polls are dropped at their first `Pending`; every fifth may wait.
            let wait = if round % 5 == 0 {
                Duration::from_millis(50)
            } else {
                Duration::ZERO
            };
            let polled = tokio::time::timeout(wait, consumer.poll(Duration::from_secs(1))).await;
            let Ok(records) = polled else {
                dropped += 1;
                continue;
            };
            for record in records.unwrap() {
                seen.entry(record.partition)
                    .or_default()
                    .push(record.offset);
            }
        }
        assert!(
            dropped > 0,
            "no poll was ever dropped; the test proves nothing"
        );
        let expected: Vec<u64> = (0..u64::from(PER_PARTITION)).collect();
        for partition in 0..PARTITIONS {
            assert_eq!(
                seen.get(&partition),
                Some(&expected),
                "partition {partition}: every offset once, in order"
            );
        }
        consumer.close().await.unwrap();

        let committed = admin.group_offsets("cancellers").await.unwrap();
        let expected: Vec<(TopicPartition, u64)> = (0..PARTITIONS)
            .map(|partition| {
                (
                    TopicPartition::new("cancel", partition),
                    u64::from(PER_PARTITION),
                )
            })
            .collect();
        assert_eq!(
            committed, expected,
            "close commits exactly what was returned"
        );
    })
    .await;
}
