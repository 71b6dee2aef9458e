//! Known broker bug reproducer: produce requests pipelined on one connection must be
//! applied in the order they were sent. The broker runs each request in its own task,
//! so two `acks = none` produces (which the client cannot wait for, as they get no
//! response) can be appended in either order. The producer keeps order for
//! `acks = leader | all` by having one request in flight per partition; with
//! `acks = none` it relies on the broker applying a connection's requests in order.

use std::time::Duration;

use strata_client::{
    Acks, Admin, AutoOffsetReset, ClientConfig, Consumer, ConsumerConfig, NewTopic, Producer,
    ProducerConfig, ProducerRecord, TopicPartition,
};
use strata_tests::{BrokerProcess, data_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_none_records_of_one_partition_keep_send_order() {
    const RECORDS: u32 = 2_000;
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    tokio::time::timeout(Duration::from_secs(60), async {
        let admin = Admin::new(ClientConfig::new(&broker.address)).unwrap();
        admin.create_topic(NewTopic::new("fire", 1)).await.unwrap();
        // Tiny batches and no linger: many produce requests pipelined on one connection.
        let producer = Producer::new(ProducerConfig {
            acks: Acks::None,
            linger_ms: 0,
            batch_bytes_max: 128,
            ..ProducerConfig::new(&broker.address)
        })
        .unwrap();
        for index in 0..RECORDS {
            producer
                .send_forget(ProducerRecord::new("fire", index.to_string()))
                .await
                .unwrap();
        }
        producer.close().await;

        let mut consumer = Consumer::new(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::new(&broker.address)
        })
        .unwrap();
        consumer.assign(&[TopicPartition::new("fire", 0)]);
        let mut values = Vec::new();
        while values.len() < RECORDS as usize {
            for record in consumer.poll(Duration::from_secs(1)).await.unwrap() {
                values.push(
                    std::str::from_utf8(record.value.as_deref().unwrap())
                        .unwrap()
                        .parse::<u32>()
                        .unwrap(),
                );
            }
        }
        let first_inversion = values.windows(2).position(|pair| pair[0] > pair[1]);
        assert_eq!(
            first_inversion, None,
            "records out of send order around index {first_inversion:?}"
        );
    })
    .await
    .expect("test time limit");
}
