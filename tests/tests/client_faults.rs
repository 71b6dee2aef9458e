//! The client across broker restarts (kill -9 on a fixed port) and stalls: an idempotent
//! producer's retries neither reorder nor duplicate records, a producer without
//! idempotence keeps per-partition order, and producers and consumers reconnect and
//! resume where they were.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use strata_client::{
    Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, DeliveryFuture,
    NewTopic, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use strata_tests::{
    BrokerProcess, assert_polls_nothing, bounded, data_dir, read_records, wait_until,
};

/// A free port below Linux's ephemeral range (32768+), so that no outgoing connection
/// or `bind(0)` elsewhere can take it while the broker is down between a kill and a
/// restart.
fn fixed_port() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let start = (nanos ^ std::process::id()) % 12_000;
    (0..12_000)
        .map(|step| 20_000 + ((start + step) % 12_000) as u16)
        .find(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free port in 20000..32000")
}

/// A broker on a port that stays the same across restarts, so the client's bootstrap
/// address stays valid.
fn broker_on_fixed_port(dir: &std::path::Path) -> BrokerProcess {
    let port = fixed_port();
    let listen = format!("listen=127.0.0.1:{port}");
    let broker = BrokerProcess::start(dir, &[&listen]);
    assert_eq!(
        broker.address,
        format!("127.0.0.1:{port}"),
        "--set listen is honoured"
    );
    broker
}

/// Fast reconnects and retries, so a restart costs milliseconds, not seconds.
fn client_config(address: &str) -> ClientConfig {
    ClientConfig {
        request_timeout_ms: 3_000,
        connect_timeout_ms: 2_000,
        reconnect_backoff_ms: 20,
        reconnect_backoff_ms_max: 200,
        ..ClientConfig::new(address)
    }
}

fn producer(address: &str) -> Producer {
    producer_with(address, true)
}

fn producer_with(address: &str, idempotence: bool) -> Producer {
    Producer::new(ProducerConfig {
        client: client_config(address),
        linger_ms: 1,
        batch_bytes_max: 1_024,
        retries_max: 1_000,
        retry_backoff_ms: 20,
        retry_backoff_ms_max: 200,
        idempotence,
        ..ProducerConfig::default()
    })
    .unwrap()
}

fn consumer(address: &str) -> Consumer {
    Consumer::new(ConsumerConfig {
        client: client_config(address),
        auto_offset_reset: AutoOffsetReset::Earliest,
        fetch_wait_ms_max: 100,
        retry_backoff_ms: 20,
        ..ConsumerConfig::default()
    })
    .unwrap()
}

fn sequence(record: &ConsumerRecord) -> u64 {
    std::str::from_utf8(record.value.as_deref().unwrap())
        .unwrap()
        .parse()
        .unwrap()
}

const RECORDS: u64 = 4_000;
const PARTITIONS: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_writes_every_record_once_in_order_across_a_broker_kill() {
    for (partition, log) in produce_across_a_kill(true).await {
        let expected: Vec<u64> = (0..RECORDS)
            .filter(|sequence| sequence % PARTITIONS == u64::from(partition))
            .collect();
        assert_eq!(
            log, expected,
            "partition {partition}: each record once, in order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idempotence_acknowledged_records_keep_partition_order_across_a_broker_kill() {
    for (partition, log) in produce_across_a_kill(false).await {
        // Retries after a lost acknowledgement may duplicate records, but a record never
        // appears before the first copy of one sent before it.
        let mut seen = HashSet::new();
        let mut highest = None;
        for value in log {
            if seen.insert(value) {
                assert!(
                    highest < Some(value),
                    "partition {partition}: {value} after {highest:?}"
                );
                highest = Some(value);
            }
        }
        assert_eq!(
            seen.len() as u64,
            RECORDS / PARTITIONS,
            "every record of partition {partition} is in the log"
        );
    }
}

/// Queues the records numbered `sequences`, round-robin over `PARTITIONS` partitions;
/// returns their deliveries.
async fn send_records(producer: &Producer, sequences: Range<u64>) -> Vec<(u64, DeliveryFuture)> {
    let mut deliveries = Vec::new();
    for sequence in sequences {
        let record = ProducerRecord::new("ordered", sequence.to_string())
            .partition((sequence % PARTITIONS) as u32);
        deliveries.push((sequence, producer.send(record).await.unwrap()));
    }
    deliveries
}

/// Sends `RECORDS` records round-robin over `PARTITIONS` partitions across a broker kill
/// and restart, checks that every acknowledged offset holds its record, in send
/// order, and returns each partition's log (the record sequence numbers).
async fn produce_across_a_kill(idempotence: bool) -> HashMap<u32, Vec<u64>> {
    let dir = data_dir();
    let mut broker = broker_on_fixed_port(dir.path());
    let address = broker.address.clone();
    Admin::new(client_config(&address))
        .unwrap()
        .create_topic(NewTopic::new("ordered", 2))
        .await
        .unwrap();
    let producer = producer_with(&address, idempotence);
    // Half the stream before the kill, a quarter while the broker is down, and the rest
    // after the restart.
    let mut deliveries = send_records(&producer, 0..RECORDS / 2).await;
    // Once a record is acknowledged the producer has its identity and the stream flows.
    (&mut deliveries[0].1)
        .await
        .expect("the first record is delivered");
    tokio::task::block_in_place(|| broker.kill_9());
    deliveries.extend(send_records(&producer, RECORDS / 2..RECORDS * 3 / 4).await);
    wait_until(
        || producer.retry_count() > 0,
        "the producer tries, and fails, while the broker is down",
    )
    .await;
    tokio::task::block_in_place(|| broker.restart());
    deliveries.extend(send_records(&producer, RECORDS * 3 / 4..RECORDS).await);
    let acknowledged = bounded(async {
        let mut acknowledged = Vec::new();
        for (sequence, delivery) in deliveries {
            let metadata = delivery
                .await
                .unwrap_or_else(|error| panic!("record {sequence} failed: {error}"));
            acknowledged.push((sequence, metadata.partition, metadata.offset.unwrap()));
        }
        acknowledged
    })
    .await;
    assert!(
        producer.retry_count() > 0,
        "the kill interrupted produce requests"
    );
    producer.close().await;

    let mut consumer = consumer(&address);
    let tps: Vec<TopicPartition> = (0..PARTITIONS as u32)
        .map(|p| TopicPartition::new("ordered", p))
        .collect();
    consumer.assign(&tps);
    let mut logs: HashMap<u32, Vec<u64>> = HashMap::new();
    // Read to the end: without idempotence a retry may have duplicated records.
    consumer.seek_to_end(&tps).await.unwrap();
    let mut ends = HashMap::new();
    for tp in &tps {
        ends.insert(tp.partition, consumer.position(tp).await.unwrap());
    }
    consumer.seek_to_beginning(&tps).await.unwrap();
    let total: u64 = ends.values().sum();
    for record in bounded(read_records(&mut consumer, total as usize)).await {
        let log = logs.entry(record.partition).or_default();
        assert_eq!(record.offset, log.len() as u64, "dense offsets");
        log.push(sequence(&record));
    }
    let mut last_offset: HashMap<u32, u64> = HashMap::new();
    for (sequence, partition, offset) in acknowledged {
        assert_eq!(
            logs[&partition][offset as usize], sequence,
            "acknowledged offset holds the record"
        );
        if let Some(last) = last_offset.insert(partition, offset) {
            assert!(offset > last, "acknowledged offsets follow send order");
        }
    }
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_consumer_resume_after_a_broker_restart() {
    let dir = data_dir();
    let mut broker = broker_on_fixed_port(dir.path());
    let address = broker.address.clone();
    bounded(async {
        Admin::new(client_config(&address))
            .unwrap()
            .create_topic(NewTopic::new("resume", 1))
            .await
            .unwrap();
        let producer = producer(&address);
        let mut consumer = consumer(&address);
        consumer.assign(&[TopicPartition::new("resume", 0)]);
        for round in 0..2u64 {
            let mut deliveries = Vec::new();
            for index in 0..100 {
                deliveries.push(
                    producer
                        .send(ProducerRecord::new(
                            "resume",
                            (round * 100 + index).to_string(),
                        ))
                        .await
                        .unwrap(),
                );
            }
            for delivery in deliveries {
                delivery.await.unwrap();
            }
            let records = read_records(&mut consumer, 100).await;
            let offsets: Vec<u64> = records.iter().map(|record| record.offset).collect();
            assert_eq!(
                offsets,
                (round * 100..round * 100 + 100).collect::<Vec<_>>(),
                "resumes exactly where it was"
            );
            assert!(
                records
                    .iter()
                    .all(|record| sequence(record) == record.offset)
            );
            if round == 0 {
                tokio::task::block_in_place(|| broker.restart());
            }
        }
        assert_polls_nothing(&mut consumer, "no duplicates").await;
        producer.close().await;
    })
    .await;
}

fn signal(broker: &BrokerProcess, signal: libc::c_int) {
    let pid = broker.pid() as libc::pid_t;
    // SAFETY: sending a signal to our own child's pid has no memory-safety effects.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(result, 0, "kill({signal})");
    if signal == libc::SIGSTOP {
        // kill() returns before every thread has stopped; waitpid reports the stop.
        let mut status = 0;
        // SAFETY: waitpid writes only the status integer we own; WUNTRACED reports the
        // stop without reaping the child, which BrokerProcess still owns.
        let waited = tokio::task::block_in_place(|| unsafe {
            libc::waitpid(pid, &mut status, libc::WUNTRACED)
        });
        assert_eq!(waited, pid, "waitpid");
        assert!(libc::WIFSTOPPED(status), "the broker stopped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_times_requests_out_and_the_client_recovers() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let address = broker.address.clone();
    let config = ClientConfig {
        request_timeout_ms: 500,
        connect_timeout_ms: 500,
        ..client_config(&address)
    };
    bounded(async {
        let admin = Admin::new(config.clone()).unwrap();
        admin.create_topic(NewTopic::new("stall", 1)).await.unwrap();
        let producer = Producer::new(ProducerConfig {
            client: config.clone(),
            linger_ms: 0,
            produce_timeout_ms: 500,
            retries_max: 1_000,
            retry_backoff_ms: 20,
            retry_backoff_ms_max: 200,
            ..ProducerConfig::default()
        })
        .unwrap();
        let first = producer
            .send(ProducerRecord::new("stall", "before"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(first.offset, Some(0));

        signal(&broker, libc::SIGSTOP);
        let started = tokio::time::Instant::now();
        let timed_out = admin.list_topics().await.unwrap_err();
        assert!(
            matches!(timed_out, strata_client::Error::RequestTimedOut { .. }),
            "{timed_out}"
        );
        assert!(timed_out.is_retriable());
        assert!(started.elapsed() >= Duration::from_millis(500));
        let retries_before = producer.retry_count();
        let delivery = producer
            .send(ProducerRecord::new("stall", "during"))
            .await
            .unwrap();
        wait_until(
            || producer.retry_count() > retries_before,
            "the produce times out before the broker wakes up",
        )
        .await;
        signal(&broker, libc::SIGCONT);

        let during = delivery
            .await
            .expect("delivered once the broker answers again");
        assert!(during.offset.unwrap() >= 1);
        assert!(
            producer.retry_count() > 0,
            "the stall made the produce time out"
        );
        assert_eq!(admin.list_topics().await.unwrap(), ["stall"]);
        producer.close().await;
        // The broker may have written the request that timed out once it woke up; the
        // retry was then recognised, not written again.
        let mut consumer = consumer(&address);
        consumer.assign(&[TopicPartition::new("stall", 0)]);
        let records = read_records(&mut consumer, 2).await;
        let values: Vec<&[u8]> = records
            .iter()
            .map(|record| record.value.as_deref().unwrap())
            .collect();
        assert_eq!(values, [&b"before"[..], b"during"]);
        assert_eq!(during.offset, Some(1));
        assert_polls_nothing(&mut consumer, "written once").await;
    })
    .await;
}
