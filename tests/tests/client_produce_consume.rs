//! Producer and Consumer against a real broker: records round-trip with keys, headers
//! and nulls; keyed records land on their murmur2 partition in send order, and follow a
//! topic that grew once the producer's metadata refreshes; flush and
//! close deliver everything; acks none and all; backpressure when the buffer is full;
//! seek semantics, also with many answers prefetched; auto offset reset; many producers
//! and consumers at once.

use std::collections::{BTreeMap, HashMap};
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use strata_client::partitioner::partition_for_key;
use strata_client::{
    Acks, Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, Error,
    NewTopic, OnBufferFull, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use strata_tests::{BrokerProcess, assert_polls_nothing, bounded, data_dir, read_records};

async fn create(address: &str, topic: &str, partitions: u32) {
    Admin::new(ClientConfig::new(address))
        .unwrap()
        .create_topic(NewTopic::new(topic, partitions))
        .await
        .unwrap();
}

fn consumer(address: &str, reset: AutoOffsetReset) -> Consumer {
    Consumer::new(ConsumerConfig {
        auto_offset_reset: reset,
        fetch_wait_ms_max: 100,
        ..ConsumerConfig::new(address)
    })
    .unwrap()
}

fn value(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.as_deref().unwrap_or_default().to_vec()).unwrap()
}

#[tokio::test]
async fn keyed_records_follow_a_topic_that_grew_once_the_metadata_refreshes() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "growing", 3).await;
        let producer = |metadata_refresh_ms| {
            let mut config = ProducerConfig::new(&broker.address);
            config.linger_ms = 0;
            config.client.metadata_refresh_ms = metadata_refresh_ms;
            Producer::new(config).unwrap()
        };
        let (refreshing, steady) = (producer(100), producer(60_000));
        // A key whose partition differs between 3 and 6 partitions.
        let key = (0..)
            .map(|index| format!("key-{index}"))
            .find(|key| {
                partition_for_key(key.as_bytes(), 3) != partition_for_key(key.as_bytes(), 6)
            })
            .unwrap();
        let keyed = || ProducerRecord::new("growing", "keyed").key(key.clone());
        let before = refreshing.send(keyed()).await.unwrap().await.unwrap();
        assert_eq!(before.partition, partition_for_key(key.as_bytes(), 3));
        steady.send(keyed()).await.unwrap().await.unwrap();
        Admin::new(ClientConfig::new(&broker.address))
            .unwrap()
            .add_partitions("growing", 6)
            .await
            .unwrap();
        // An explicit partition beyond the count a producer routes with makes it look the
        // topic up again at once.
        let explicit = ProducerRecord::new("growing", "explicit").partition(5);
        let metadata = steady.send(explicit).await.unwrap().await.unwrap();
        assert_eq!(metadata.partition, 5);
        // A keyed record is routed with the count the producer keeps until its metadata
        // changes: the refresh every 100 ms brings the new count.
        let grown = partition_for_key(key.as_bytes(), 6);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let after = refreshing.send(keyed()).await.unwrap().await.unwrap();
            if after.partition == grown {
                break;
            }
            assert_eq!(after.partition, before.partition);
            assert!(
                tokio::time::Instant::now() < deadline,
                "keyed records still go by 3 partitions 10 s after the topic grew to 6"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn keyed_records_round_trip_on_their_murmur2_partition_in_order() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "events", 3).await;
        let producer = Producer::new(ProducerConfig {
            linger_ms: 2,
            ..ProducerConfig::new(&broker.address)
        })
        .unwrap();
        let mut deliveries = Vec::new();
        for index in 0..300 {
            let key = format!("key-{}", index % 10);
            let record = ProducerRecord::new("events", format!("value-{index}"))
                .key(key.clone())
                .header("index", index.to_string());
            deliveries.push((key, index, producer.send(record).await.unwrap()));
        }
        let mut expected: BTreeMap<(u32, u64), (String, String)> = BTreeMap::new();
        let mut last_offset: HashMap<u32, u64> = HashMap::new();
        for (key, index, delivery) in deliveries {
            let metadata = delivery.await.unwrap();
            assert_eq!(
                metadata.partition,
                partition_for_key(key.as_bytes(), 3),
                "{key}"
            );
            let offset = metadata.offset.unwrap();
            if let Some(last) = last_offset.insert(metadata.partition, offset) {
                assert!(
                    offset > last,
                    "offsets grow in send order within a partition"
                );
            }
            expected.insert(
                (metadata.partition, offset),
                (key, format!("value-{index}")),
            );
        }
        // Nulls survive too.
        let mut null_value = ProducerRecord::new("events", "").partition(0);
        null_value.value = None;
        let null_offset = producer
            .send(null_value)
            .await
            .unwrap()
            .await
            .unwrap()
            .offset
            .unwrap();
        producer.close().await;

        let mut consumer = consumer(&broker.address, AutoOffsetReset::Earliest);
        consumer.assign(
            &(0..3)
                .map(|partition| TopicPartition::new("events", partition))
                .collect::<Vec<_>>(),
        );
        let records = read_records(&mut consumer, 301).await;
        assert_eq!(records.len(), 301, "more records than produced");
        for record in &records {
            if record.partition == 0 && record.offset == null_offset {
                assert_eq!((record.key.as_ref(), record.value.as_ref()), (None, None));
                continue;
            }
            let (key, value_wanted) = &expected[&(record.partition, record.offset)];
            assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
            assert_eq!(&value(record), value_wanted);
            let index = value_wanted.trim_start_matches("value-");
            assert_eq!(record.headers[0].key, "index");
            assert_eq!(record.headers[0].value.as_deref(), Some(index.as_bytes()));
        }
        for partition in 0..3 {
            let offsets: Vec<u64> = records
                .iter()
                .filter(|r| r.partition == partition)
                .map(|r| r.offset)
                .collect();
            assert_eq!(
                offsets,
                (0..offsets.len() as u64).collect::<Vec<_>>(),
                "dense, ordered offsets in {partition}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn flush_and_close_deliver_everything_for_every_acks_level() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "acks", 1).await;
        for (acks, count) in [(Acks::None, 100), (Acks::Leader, 100), (Acks::All, 100)] {
            // A long linger: only flush/close can send these.
            let config = ProducerConfig {
                acks,
                linger_ms: 60_000,
                ..ProducerConfig::new(&broker.address)
            };
            let producer = Producer::new(config).unwrap();
            for index in 0..count / 2 {
                producer
                    .send_forget(ProducerRecord::new("acks", format!("{acks:?}-{index}")))
                    .await
                    .unwrap();
            }
            producer.flush().await;
            let mut last = Vec::new();
            for index in count / 2..count {
                last.push(
                    producer
                        .send(ProducerRecord::new("acks", format!("{acks:?}-{index}")))
                        .await
                        .unwrap(),
                );
            }
            producer.close().await;
            for delivery in last {
                let metadata = delivery.await.unwrap();
                assert_eq!(metadata.offset.is_none(), acks == Acks::None);
            }
            let closed = producer
                .send(ProducerRecord::new("acks", "late"))
                .await
                .unwrap_err();
            assert!(matches!(closed, Error::ProducerClosed), "{closed}");
        }
        let mut consumer = consumer(&broker.address, AutoOffsetReset::Earliest);
        consumer.assign(&[TopicPartition::new("acks", 0)]);
        let mut values: Vec<String> = read_records(&mut consumer, 300)
            .await
            .iter()
            .map(value)
            .collect();
        let expected: Vec<String> = ["None", "Leader", "All"]
            .iter()
            .flat_map(|acks| (0..100).map(move |index| format!("{acks}-{index}")))
            .collect();
        // With acks = none the broker may apply pipelined requests out of order (see
        // client_acks_none_order.rs), so only the set is checked for those.
        values[..100].sort_by_key(|value| value[5..].parse::<u32>().unwrap());
        assert_eq!(values, expected);
    })
    .await;
}

#[tokio::test]
async fn a_full_buffer_fails_sends_or_makes_them_wait() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "pressure", 1).await;
        let base = ProducerConfig {
            linger_ms: 60_000,
            buffer_bytes_max: 4_096,
            record_bytes_max: 1_024,
            ..ProducerConfig::new(&broker.address)
        };
        let record = || ProducerRecord::new("pressure", vec![7u8; 500]);

        // Error: the send that does not fit fails at once, and nothing is lost.
        let producer = Producer::new(ProducerConfig {
            on_buffer_full: OnBufferFull::Error,
            ..base.clone()
        })
        .unwrap();
        let mut accepted = Vec::new();
        let full = loop {
            match producer.send(record()).await {
                Ok(delivery) => accepted.push(delivery),
                Err(error) => break error,
            }
            assert!(accepted.len() < 100, "the buffer never filled");
        };
        assert!(
            matches!(
                full,
                Error::BufferFull {
                    buffer_bytes_max: 4_096
                }
            ),
            "{full}"
        );
        assert!(full.is_retriable());
        assert!(
            (6..=8).contains(&accepted.len()),
            "{} records of ~530 bytes fit in 4096",
            accepted.len()
        );
        producer.flush().await;
        for delivery in accepted {
            delivery.await.unwrap();
        }
        assert_eq!(
            producer.buffer_bytes_free(),
            4_096,
            "delivery releases the memory"
        );
        producer.send(record()).await.unwrap();
        producer.close().await;

        // Wait: the send blocks until a flush frees memory, or times out.
        let producer = Producer::new(ProducerConfig {
            on_buffer_full: OnBufferFull::Wait,
            buffer_wait_ms_max: 200,
            ..base
        })
        .unwrap();
        producer.send_forget(record()).await.unwrap();
        let record_bytes = 4_096 - producer.buffer_bytes_free();
        while producer.buffer_bytes_free() >= record_bytes {
            producer.send_forget(record()).await.unwrap();
        }
        let started = tokio::time::Instant::now();
        let timed_out = producer.send(record()).await.unwrap_err();
        assert!(matches!(timed_out, Error::BufferFull { .. }), "{timed_out}");
        assert!(started.elapsed() >= Duration::from_millis(200));

        // The topic's metadata is cached, so a send that found room would finish on its
        // first poll: pending there, it waits for memory.
        let mut blocked = std::pin::pin!(producer.send(record()));
        let first_poll =
            std::future::poll_fn(|context| Poll::Ready(blocked.as_mut().poll(context))).await;
        assert!(
            first_poll.is_pending(),
            "a send into a full buffer must wait"
        );
        let ((), sent) = tokio::join!(producer.flush(), blocked);
        sent.expect("the waiting send proceeds once memory is freed");
        producer.close().await;
    })
    .await;
}

#[tokio::test]
async fn seek_moves_the_position_and_discards_prefetched_records() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "seek", 1).await;
        let producer = Producer::new(ProducerConfig::new(&broker.address)).unwrap();
        for index in 0..10 {
            producer
                .send_forget(
                    ProducerRecord::new("seek", format!("v{index}"))
                        .timestamp(1_700_000_000_000 + index * 1_000),
                )
                .await
                .unwrap();
        }
        producer.flush().await;
        let tp = TopicPartition::new("seek", 0);
        let mut consumer = Consumer::new(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            poll_records_max: 3,
            fetch_wait_ms_max: 100,
            ..ConsumerConfig::new(&broker.address)
        })
        .unwrap();
        let not_assigned = consumer.seek(&tp, 1).unwrap_err();
        assert!(
            matches!(not_assigned, Error::NotAssigned { .. }),
            "{not_assigned}"
        );
        consumer.assign(std::slice::from_ref(&tp));

        consumer.seek(&tp, 5).unwrap();
        assert_eq!(consumer.position(&tp).await.unwrap(), 5);
        let offsets: Vec<u64> = read_records(&mut consumer, 3)
            .await
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, [5, 6, 7]);
        assert_eq!(consumer.position(&tp).await.unwrap(), 8);

        // Records 8 and 9 are buffered (and a prefetch may be in flight): a seek drops them.
        consumer.seek(&tp, 2).unwrap();
        let offsets: Vec<u64> = read_records(&mut consumer, 3)
            .await
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, [2, 3, 4]);

        consumer
            .seek_to_beginning(std::slice::from_ref(&tp))
            .await
            .unwrap();
        assert_eq!(consumer.position(&tp).await.unwrap(), 0);
        assert_eq!(read_records(&mut consumer, 1).await[0].offset, 0);

        let tps = std::slice::from_ref(&tp);
        assert_eq!(
            consumer.beginning_offsets(tps).await.unwrap(),
            [(tp.clone(), 0)]
        );
        assert_eq!(consumer.end_offsets(tps).await.unwrap(), [(tp.clone(), 10)]);
        consumer
            .seek_to_timestamp_ms(tps, 1_700_000_004_500)
            .await
            .unwrap();
        assert_eq!(
            consumer.position(&tp).await.unwrap(),
            5,
            "first record at or after the time"
        );
        assert_eq!(read_records(&mut consumer, 1).await[0].offset, 5);
        consumer
            .seek_to_timestamp_ms(tps, 1_800_000_000_000)
            .await
            .unwrap();
        assert_eq!(
            consumer.position(&tp).await.unwrap(),
            10,
            "after every record: the end"
        );

        consumer.seek_to_end(tps).await.unwrap();
        assert_eq!(consumer.position(&tp).await.unwrap(), 10);
        assert_polls_nothing(&mut consumer, "nothing past the end").await;
        let delivered = producer
            .send(ProducerRecord::new("seek", "v10"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(delivered.offset, Some(10));
        let record = &read_records(&mut consumer, 1).await[0];
        assert_eq!((record.offset, value(record).as_str()), (10, "v10"));
        assert_eq!(consumer.position(&tp).await.unwrap(), 11);
        producer.close().await;
    })
    .await;
}

#[tokio::test]
async fn auto_offset_reset_follows_earliest_latest_and_error() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "reset", 1).await;
        let producer = Producer::new(ProducerConfig::new(&broker.address)).unwrap();
        for index in 0..10 {
            producer
                .send_forget(ProducerRecord::new("reset", format!("v{index}")))
                .await
                .unwrap();
        }
        producer.flush().await;
        let tp = TopicPartition::new("reset", 0);
        let tps = std::slice::from_ref(&tp);

        // Earliest: no position starts at 0, and so does a position past the end.
        let mut earliest = consumer(&broker.address, AutoOffsetReset::Earliest);
        earliest.assign(tps);
        assert_eq!(read_records(&mut earliest, 1).await[0].offset, 0);
        earliest.seek(&tp, 1_000).unwrap();
        assert_eq!(read_records(&mut earliest, 1).await[0].offset, 0);

        // Latest: starts at the high watermark and sees only new records.
        let mut latest = consumer(&broker.address, AutoOffsetReset::Latest);
        latest.assign(tps);
        assert_eq!(latest.position(&tp).await.unwrap(), 10);
        assert_polls_nothing(&mut latest, "nothing before the high watermark").await;
        producer
            .send(ProducerRecord::new("reset", "v10"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(read_records(&mut latest, 1).await[0].offset, 10);
        latest.seek(&tp, 1_000).unwrap();
        assert_polls_nothing(&mut latest, "a position past the end resets to the end").await;
        assert_eq!(
            latest.position(&tp).await.unwrap(),
            11,
            "reset to the high watermark"
        );

        // Error: nothing is guessed; the application must seek.
        let mut strict = consumer(&broker.address, AutoOffsetReset::Error);
        strict.assign(tps);
        let no_position = strict.poll(Duration::from_secs(1)).await.unwrap_err();
        assert!(
            matches!(no_position, Error::NoPosition { .. }),
            "{no_position}"
        );
        assert!(matches!(
            strict.position(&tp).await,
            Err(Error::NoPosition { .. })
        ));
        strict.seek(&tp, 1_000).unwrap();
        let out_of_range = strict.poll(Duration::from_secs(5)).await.unwrap_err();
        assert!(
            matches!(out_of_range, Error::OffsetOutOfRange { offset: 1_000, .. }),
            "{out_of_range}"
        );
        assert!(!out_of_range.is_retriable());
        // Paused until a seek: polling again returns nothing rather than looping.
        assert!(
            strict
                .poll(Duration::from_millis(200))
                .await
                .unwrap()
                .is_empty()
        );
        strict.seek(&tp, 3).unwrap();
        assert_eq!(read_records(&mut strict, 1).await[0].offset, 3);
        producer.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_and_consumers_deliver_every_record_once_in_order() {
    const PRODUCERS: usize = 4;
    const RECORDS_PER_PRODUCER: usize = 500;
    const PARTITIONS: u32 = 4;
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "crowd", PARTITIONS).await;
        // Consumers first, reading from the start while producers write.
        let consumers: Vec<_> = (0..PARTITIONS)
            .map(|partition| {
                let mut consumer = consumer(&broker.address, AutoOffsetReset::Earliest);
                consumer.assign(&[TopicPartition::new("crowd", partition)]);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut stream = std::pin::pin!(consumer.stream());
                    // Each consumer stops when told the total it must see.
                    while let Some(record) = stream.next().await {
                        let record = record.unwrap();
                        let done = value(&record) == "end";
                        seen.push((record.offset, record.key.clone(), value(&record)));
                        if done {
                            return seen;
                        }
                    }
                    unreachable!("the record stream is endless")
                })
            })
            .collect();
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer_index| {
                let producer = Producer::new(ProducerConfig {
                    linger_ms: 1,
                    batch_bytes_max: 2_048,
                    ..ProducerConfig::new(&broker.address)
                })
                .unwrap();
                tokio::spawn(async move {
                    let mut deliveries = Vec::new();
                    for sequence in 0..RECORDS_PER_PRODUCER {
                        let key = format!("p{producer_index}-k{}", sequence % 8);
                        let record =
                            ProducerRecord::new("crowd", format!("p{producer_index}-{sequence}"))
                                .key(key);
                        deliveries.push(producer.send(record).await.unwrap());
                    }
                    for delivery in deliveries {
                        delivery.await.unwrap();
                    }
                    producer.close().await;
                })
            })
            .collect();
        for producer in producers {
            producer.await.unwrap();
        }
        let end = Producer::new(ProducerConfig::new(&broker.address)).unwrap();
        for partition in 0..PARTITIONS {
            end.send(ProducerRecord::new("crowd", "end").partition(partition))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        end.close().await;

        let mut all = Vec::new();
        for consumer in consumers {
            let seen = consumer.await.unwrap();
            let offsets: Vec<u64> = seen.iter().map(|(offset, _, _)| *offset).collect();
            assert_eq!(
                offsets,
                (0..offsets.len() as u64).collect::<Vec<_>>(),
                "dense offsets, no duplicates"
            );
            all.extend(seen.into_iter().filter(|(_, _, value)| value != "end"));
        }
        assert_eq!(
            all.len(),
            PRODUCERS * RECORDS_PER_PRODUCER,
            "every record delivered exactly once"
        );
        // Per key (each key lives on one partition), offsets follow send order.
        let mut by_partition_key: HashMap<Vec<u8>, Vec<(u64, usize)>> = HashMap::new();
        for (offset, key, value) in all {
            let sequence: usize = value.rsplit('-').next().unwrap().parse().unwrap();
            by_partition_key
                .entry(key.unwrap().to_vec())
                .or_default()
                .push((offset, sequence));
        }
        assert_eq!(by_partition_key.len(), PRODUCERS * 8);
        for (key, mut entries) in by_partition_key {
            entries.sort();
            let sequences: Vec<usize> = entries.iter().map(|(_, sequence)| *sequence).collect();
            assert!(
                sequences.windows(2).all(|pair| pair[0] < pair[1]),
                "key {key:?} out of order: {sequences:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn partitions_added_after_metadata_was_cached_are_found() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
        admin.create_topic(NewTopic::new("grow", 1)).await.unwrap();
        let producer = Producer::new(ProducerConfig::new(&broker.address)).unwrap();
        let mut consumer = consumer(&broker.address, AutoOffsetReset::Earliest);
        consumer.assign(&[TopicPartition::new("grow", 0)]);
        producer
            .send(ProducerRecord::new("grow", "p0").partition(0))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(read_records(&mut consumer, 1).await[0].offset, 0);

        admin.add_partitions("grow", 3).await.unwrap();
        let delivered = producer
            .send(ProducerRecord::new("grow", "p2").partition(2))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!((delivered.partition, delivered.offset), (2, Some(0)));
        let missing = producer
            .send(ProducerRecord::new("grow", "p5").partition(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                missing,
                Error::UnknownPartition {
                    partition: 5,
                    partition_count: 3,
                    ..
                }
            ),
            "{missing}"
        );

        consumer.assign(&[
            TopicPartition::new("grow", 0),
            TopicPartition::new("grow", 2),
        ]);
        let record = &read_records(&mut consumer, 1).await[0];
        assert_eq!((record.partition, value(record).as_str()), (2, "p2"));
        producer.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_prefetching_consumer_returns_each_record_once_in_order_and_none_from_before_a_seek() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    bounded(async {
        create(&broker.address, "ahead", 1).await;
        let mut config = ProducerConfig::new(&broker.address);
        config.linger_ms = 0;
        let producer = Producer::new(config).unwrap();
        // Many small batches: a record, or a few, per batch.
        for round in 0..40 {
            let mut deliveries = Vec::new();
            for index in 0..5 {
                let record = ProducerRecord::new("ahead", format!("{}", round * 5 + index));
                deliveries.push(producer.send(record).await.unwrap());
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
        }
        // One batch per answer: many answers, each fetched while the application sleeps
        // between polls and while the one before it is decoded.
        let mut consumer = Consumer::new(ConsumerConfig {
            partition_fetch_bytes_max: 1,
            fetch_wait_ms_max: 100,
            ..ConsumerConfig::new(&broker.address)
        })
        .unwrap();
        let tp = TopicPartition::new("ahead", 0);
        consumer.assign(std::slice::from_ref(&tp));
        consumer.seek(&tp, 0).unwrap();
        let values = read_values_slowly(&mut consumer, 50).await;
        let expected: Vec<String> = (0..values.len()).map(|offset| offset.to_string()).collect();
        assert_eq!(values, expected);

        // Answers past the old position are buffered, decoding or in flight; after the
        // seek none of their records comes back.
        consumer.seek(&tp, 20).unwrap();
        let values = read_values_slowly(&mut consumer, 180).await;
        let expected: Vec<String> = (20..200).map(|offset: u32| offset.to_string()).collect();
        assert_eq!(values, expected);
        assert_polls_nothing(&mut consumer, "nothing after the last record").await;
    })
    .await;
}

/// Polls until at least `count` values came, sleeping 2 ms after each poll so that answers
/// are fetched and decoded while the application is away.
async fn read_values_slowly(consumer: &mut Consumer, count: usize) -> Vec<String> {
    let mut values = Vec::new();
    while values.len() < count {
        let records = consumer.poll(Duration::from_secs(1)).await.unwrap();
        values.extend(records.iter().map(value));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    values
}
