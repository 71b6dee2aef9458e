//! A power loss of a real broker process: `strata-recorded-broker` is killed with SIGKILL,
//! `power_loss::apply` drops what it had not fsync'd, and a real `strata-broker` recovers
//! on what is left. Under acks=all with `durability = every_batch` no acknowledged record
//! is lost; under acks=leader with `durability = never` acknowledged records are lost,
//! as that promise allows, and the test counts them.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use strata_protocol::ErrorCode;
use strata_protocol::batch::BatchBuilder;
use strata_protocol::messages::*;
use strata_protocol::{ApiKey, Response};
use strata_tests::power_loss::{self, PowerLossReport};
use strata_tests::*;

/// A batch of `count` records whose values start `"{batch}-{index}/"`, padded to
/// `value_bytes`, stamped now (so that time-based retention keeps them).
fn batch(batch: usize, count: usize, value_bytes: usize) -> Bytes {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64;
    let mut builder = BatchBuilder::new();
    for index in 0..count {
        let mut value = format!("{batch}-{index}/").into_bytes();
        value.resize(value_bytes.max(value.len()), b'.');
        builder.push(now_ms, None, Some(&value), &[]);
    }
    builder.finish()
}

fn produce_request(acks: Acks, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks,
        timeout_ms: 10_000,
        topics: vec![ProduceTopic {
            name: "events".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records: records.into(),
            }],
        }],
    }
}

/// Acknowledged records: offset to value.
type Acknowledged = BTreeMap<u64, Vec<u8>>;

fn acknowledge(acknowledged: &mut Acknowledged, records: &Bytes, base_offset: u64) {
    for (delta, record) in decode_records(records).into_iter().enumerate() {
        let value = record.value.expect("a value");
        acknowledged.insert(base_offset + delta as u64, value);
    }
}

/// SIGKILLs the recorded broker, applies the power loss, and restarts a real
/// `strata-broker` on what is left; returns the report and the partition's records.
async fn lose_power(
    mut broker: BrokerProcess,
    data_dir: &Path,
    sync_log: &Path,
    settings: &[&str],
) -> (PowerLossReport, Acknowledged) {
    broker.kill_9();
    let report = power_loss::apply(data_dir, sync_log).expect("apply the power loss");
    println!("{report}");
    let restarted = BrokerProcess::start(data_dir, settings);
    let mut client = Client::connect(&restarted.address).await;
    let records = client
        .read_all("events", 0, 0)
        .await
        .into_iter()
        .map(|record| (record.offset, record.value.expect("a value")))
        .collect();
    (report, records)
}

fn lost(acknowledged: &Acknowledged, survived: &Acknowledged) -> usize {
    acknowledged
        .iter()
        .filter(|(offset, value)| survived.get(offset) != Some(value))
        .count()
}

#[tokio::test]
async fn every_batch_and_acks_all_lose_no_acknowledged_record() {
    bounded(async {
        let dir = data_dir();
        let sync_log = dir.path().with_extension("sync-log");
        // Small segments: rolls, index and snapshot renames, and directory fsyncs all
        // happen while produces are in flight.
        let settings = [
            "durability=every_batch",
            "segment_bytes=16384",
            "max_message_bytes=16384",
        ];
        let broker = BrokerProcess::start_recorded(dir.path(), &sync_log, &settings);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("events", 1, &[]).await;
        // Many produces in flight, half of them answered, then the power goes: the
        // unanswered half may be lost, the answered half may not.
        let batches: Vec<Bytes> = (0..200).map(|index| batch(index, 20, 200)).collect();
        for records in &batches {
            client
                .send(produce_request(Acks::All, records.clone()).into())
                .await;
        }
        let mut acknowledged = Acknowledged::new();
        for records in batches.iter().take(100) {
            let (_, result) = client.receive(ApiKey::Produce).await;
            let Ok(Response::Produce(mut response)) = result else {
                panic!("produce failed: {result:?}")
            };
            let partition = response.topics.remove(0).partitions.remove(0);
            assert_eq!(partition.error_code, ErrorCode::None);
            acknowledge(&mut acknowledged, records, partition.base_offset);
        }
        let (_report, survived) = lose_power(broker, dir.path(), &sync_log, &settings).await;
        assert_eq!(
            lost(&acknowledged, &survived),
            0,
            "acknowledged records lost under acks=all and every_batch"
        );
        assert!(survived.len() >= acknowledged.len());
    })
    .await;
}

#[tokio::test]
async fn never_and_acks_leader_lose_acknowledged_records_as_the_promise_allows() {
    bounded(async {
        let dir = data_dir();
        let sync_log = dir.path().with_extension("sync-log");
        let settings = ["durability=never"];
        let broker = BrokerProcess::start_recorded(dir.path(), &sync_log, &settings);
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("events", 1, &[]).await;
        // Large writes that nothing fsyncs, then the power goes at once.
        let mut acknowledged = Acknowledged::new();
        for index in 0..40 {
            let records = batch(index, 100, 1000);
            let response = client
                .produce("events", 0, Acks::Leader, records.clone())
                .await;
            assert_eq!(response.error_code, ErrorCode::None);
            acknowledge(&mut acknowledged, &records, response.base_offset);
        }
        let (report, survived) = lose_power(broker, dir.path(), &sync_log, &settings).await;
        let lost = lost(&acknowledged, &survived);
        println!(
            "expected loss under acks=leader and durability=never: {lost} of {} acknowledged records",
            acknowledged.len()
        );
        assert!(lost > 0, "a power loss under durability=never lost nothing");
        assert!(report.bytes_dropped() >= 40 * 100 * 1000, "{report:?}");
        let prefix = survived.keys().copied().eq(0..survived.len() as u64);
        assert!(prefix, "what survives is a prefix of the log");
    })
    .await;
}
