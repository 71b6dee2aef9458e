//! Produce and fetch round trip over many topics and partitions: records come back
//! byte-identical, in order, with dense offsets; long-poll fetch wakes on data and
//! honours max_wait; pipelined requests are answered in order; an answer never holds
//! records past the high watermark it reports, even while appends race the fetch.

use std::time::{Duration, Instant};

use strata_protocol::batch::BatchBuilder;
use strata_protocol::messages::*;
use strata_protocol::{ApiKey, ErrorCode, Request, Response};
use strata_tests::*;

type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

#[tokio::test]
async fn records_round_trip_in_order_with_dense_offsets() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    let topics = ["orders", "payments.v1", "audit_log-7"];
    for (index, topic) in topics.iter().enumerate() {
        client.create_topic(topic, index as u32 + 1, &[]).await;
    }
    let mut expected = Vec::new();
    for round in 0..5 {
        for (index, topic) in topics.iter().enumerate() {
            for partition in 0..=index as u32 {
                let prefix = format!("{topic}/{partition}/{round}");
                let batch = batch_of(&prefix, round + 1);
                let response = client.produce(topic, partition, Acks::Leader, batch).await;
                assert_eq!(
                    response.error_code,
                    ErrorCode::None,
                    "{:?}",
                    response.error_message
                );
                let base: u64 = (0..round as u64).map(|r| r + 1).sum();
                assert_eq!(response.base_offset, base, "dense offsets for {prefix}");
                expected.push((topic.to_string(), partition, prefix, round + 1));
            }
        }
    }
    for (index, topic) in topics.iter().enumerate() {
        for partition in 0..=index as u32 {
            let records = client.read_all(topic, partition, 0).await;
            let offsets: Vec<u64> = records.iter().map(|record| record.offset).collect();
            assert_eq!(
                offsets,
                (0..offsets.len() as u64).collect::<Vec<_>>(),
                "dense offsets in {topic}/{partition}"
            );
            let wanted: Vec<String> = expected
                .iter()
                .filter(|(t, p, _, _)| t == topic && *p == partition)
                .flat_map(|(_, _, prefix, count)| (0..*count).map(move |i| format!("{prefix}-{i}")))
                .collect();
            assert_eq!(values(&records), wanted);
            assert!(records.iter().all(
                |record| record.headers == vec![("origin".to_owned(), Some(b"test".to_vec()))]
            ));
        }
    }
}

#[tokio::test]
async fn binary_keys_values_and_nulls_come_back_byte_identical() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("bytes", 1, &[]).await;
    let big: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let cases: Vec<KeyValue> = vec![
        (None, Some(vec![0, 255, 10, 13])),
        (Some(vec![]), None),
        (Some(vec![1; 3]), Some(vec![])),
        (None, Some(big)),
    ];
    let mut builder = BatchBuilder::new();
    for (index, (key, value)) in cases.iter().enumerate() {
        builder.push(index as i64, key.as_deref(), value.as_deref(), &[]);
    }
    assert_eq!(
        client
            .produce("bytes", 0, Acks::Leader, builder.finish())
            .await
            .error_code,
        ErrorCode::None
    );
    let records = client.read_all("bytes", 0, 0).await;
    let got: Vec<KeyValue> = records
        .into_iter()
        .map(|record| (record.key, record.value))
        .collect();
    assert_eq!(got, cases);
}

#[tokio::test]
async fn long_poll_returns_when_data_arrives_and_after_max_wait_when_none_does() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut setup = Client::connect(&broker.address).await;
    setup.create_topic("events", 1, &[]).await;

    // Nothing arrives: the fetch waits for max_wait and returns empty.
    let started = Instant::now();
    let empty = setup.fetch("events", 0, 0, 300, 1).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "returned after {:?}",
        started.elapsed()
    );
    assert!(empty.records.is_empty());

    // Data arrives while a fetch with a long max_wait is parked: it returns with it.
    let address = broker.address.clone();
    let waiting = tokio::spawn(async move {
        let mut consumer = Client::connect(&address).await;
        let started = Instant::now();
        let response = consumer.fetch("events", 0, 0, 15_000, 1).await;
        (started.elapsed(), response)
    });
    wait_for_metrics(&broker.metrics_address, &["strata_fetches_waiting 1"]).await;
    assert_eq!(
        setup
            .produce("events", 0, Acks::Leader, batch_of("wake", 2))
            .await
            .error_code,
        ErrorCode::None
    );
    let (elapsed, response) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert!(
        elapsed < Duration::from_secs(10),
        "long poll was not woken: {elapsed:?}"
    );
    assert_eq!(
        values(&decode_records(&response.records)),
        ["wake-0", "wake-1"]
    );
    assert_eq!(response.high_watermark, 2);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("pipeline", 1, &[]).await;
    // A parked fetch first, then produces behind it: the produce responses must wait for
    // the fetch's response, which the produces themselves complete.
    let fetch = Request::Fetch(FetchRequest {
        max_wait_ms: 10_000,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "pipeline".into(),
            partitions: vec![FetchPartition {
                partition: 0,
                current_leader_epoch: NO_EPOCH,
                fetch_offset: 0,
                last_fetched_epoch: NO_EPOCH,
                partition_max_bytes: 1 << 20,
            }],
        }],
    });
    let mut sent = vec![(client.send(fetch).await, ApiKey::Fetch)];
    wait_for_metrics(&broker.metrics_address, &["strata_fetches_waiting 1"]).await;
    for index in 0..20 {
        let produce = Request::Produce(ProduceRequest {
            acks: Acks::Leader,
            timeout_ms: 5_000,
            topics: vec![ProduceTopic {
                name: "pipeline".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: batch_of(&format!("p{index}"), 1).into(),
                }],
            }],
        });
        sent.push((client.send(produce).await, ApiKey::Produce));
    }
    for (correlation_id, api) in sent {
        let (received, result) = client.receive(api).await;
        assert_eq!(received, correlation_id);
        assert!(matches!(
            result,
            Ok(Response::Fetch(_) | Response::Produce(_))
        ));
    }
    let records = client.read_all("pipeline", 0, 0).await;
    assert_eq!(
        values(&records),
        (0..20).map(|i| format!("p{i}-0")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn list_offsets_finds_earliest_latest_and_by_time() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("clock", 1, &[]).await;
    for second in 0..5i64 {
        let mut builder = BatchBuilder::new();
        builder.push(second * 1000, None, Some(b"tick"), &[]);
        builder.push(second * 1000 + 500, None, Some(b"tock"), &[]);
        client
            .produce("clock", 0, Acks::Leader, builder.finish())
            .await;
    }
    let query = |timestamp| ListOffsetsRequest {
        topics: vec![ListOffsetsTopic {
            name: "clock".into(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                timestamp,
            }],
        }],
    };
    let mut answer = async |timestamp| {
        let Response::ListOffsets(mut response) = client.call(query(timestamp)).await else {
            panic!()
        };
        response.topics.remove(0).partitions.remove(0)
    };
    assert_eq!(answer(EARLIEST_TIMESTAMP).await.offset, 0);
    assert_eq!(answer(LATEST_TIMESTAMP).await.offset, 10);
    let found = answer(2_400).await;
    assert_eq!((found.offset, found.timestamp), (5, 2_500));
    assert_eq!(answer(99_999).await.offset, NONE);
    assert_eq!(answer(-7).await.error_code, ErrorCode::InvalidTimestamp);
}

#[tokio::test]
async fn metrics_endpoint_reports_traffic() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("metered", 1, &[]).await;
    let batch = batch_of("m", 10);
    let bytes = batch.len();
    client.produce("metered", 0, Acks::Leader, batch).await;
    client.read_all("metered", 0, 0).await;

    let text = scrape_metrics(&broker.metrics_address).await;
    for expected in [
        format!("strata_bytes_in_total{{topic=\"metered\"}} {bytes}"),
        "strata_records_in_total{topic=\"metered\"} 10".to_owned(),
        "strata_records_out_total{topic=\"metered\"} 10".to_owned(),
        "strata_log_end_offset{topic=\"metered\",partition=\"0\"} 10".to_owned(),
        "strata_connections_active 1".to_owned(),
        "strata_request_duration_seconds_bucket{api=\"Produce\"".to_owned(),
    ] {
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test]
async fn a_roll_reports_the_sealed_segments_write_back_in_the_metrics() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client
        .create_topic(
            "rolled",
            1,
            &[("segment_bytes", "16384"), ("max_message_bytes", "16384")],
        )
        .await;
    // Four batches of about 10 KiB: each after the first rolls the 16 KiB segment.
    produce_long_values(&mut client, "rolled", 4, 10).await;
    let mut segments: Vec<_> = std::fs::read_dir(dir.path().join("rolled-0"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    // Named by base offset: the last is the active segment, which is not written back.
    segments.sort();
    segments.pop();
    assert!(!segments.is_empty(), "no roll");
    let sealed: u64 = segments
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum();
    // Whole lines: the counter is recorded before the histogram, so wait for both.
    let expected = [
        format!("strata_writeback_bytes_total {sealed}"),
        format!("strata_writeback_duration_seconds_count {}", segments.len()),
    ];
    wait_for_metrics(
        &broker.metrics_address,
        &expected.each_ref().map(String::as_str),
    )
    .await;
}

#[tokio::test]
async fn large_record_chunks_go_out_by_sendfile_and_arrive_intact() {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("zero-copy", 2, &[]).await;
    // Partition 0: two batches of 40 values of about 1 KiB; partition 1: a small batch.
    let wanted = produce_long_values(&mut client, "zero-copy", 2, 40).await;
    let response = client
        .produce("zero-copy", 1, Acks::Leader, batch_of("small", 3))
        .await;
    assert_eq!(response.error_code, ErrorCode::None);
    // One fetch of both: header bytes, partition 0's records, more header bytes and
    // partition 1's records, in one frame.
    let wanted_partitions = [0, 1].map(|partition| FetchPartition {
        partition,
        current_leader_epoch: NO_EPOCH,
        fetch_offset: 0,
        last_fetched_epoch: NO_EPOCH,
        partition_max_bytes: 16 << 20,
    });
    for _ in 0..2 {
        let request = FetchRequest {
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 32 << 20,
            topics: vec![FetchTopic {
                name: "zero-copy".into(),
                partitions: wanted_partitions.to_vec(),
            }],
        };
        let Response::Fetch(response) = client.call(request).await else {
            panic!("wrong response type")
        };
        let answers = &response.topics[0].partitions;
        assert_eq!(values(&decode_records(&answers[0].records)), wanted);
        assert_eq!(
            values(&decode_records(&answers[1].records)),
            ["small-0", "small-1", "small-2"]
        );
        assert!(answers[0].records.len() > 64 << 10);
        assert!(answers[1].records.len() < 1 << 10);
    }
    // Three fetches sent partition 0's records by sendfile; partition 1's were copied.
    let large = client.fetch("zero-copy", 0, 0, 0, 0).await.records.len();
    let text = scrape_metrics(&broker.metrics_address).await;
    let expected = format!("strata_sendfile_bytes_total {}", 3 * large);
    assert!(text.contains(&expected), "missing {expected} in\n{text}");

    // An answer far larger than the socket buffers: `sendfile` fills them, waits until
    // the client reads, and resumes where it stopped.
    client.create_topic("zero-copy-big", 1, &[]).await;
    let wanted = produce_long_values(&mut client, "zero-copy-big", 12, 1000).await;
    // A client with a small, fixed receive buffer: the answer cannot fit in the socket
    // queues, so `sendfile` must stop partway and go on as the client reads.
    let mut slow = Client::connect_with_receive_buffer(&broker.address, 64 << 10).await;
    let answer = slow.fetch("zero-copy-big", 0, 0, 0, 0).await;
    assert!(answer.records.len() > 10 << 20);
    assert_eq!(values(&decode_records(&answer.records)), wanted);
}

/// Produces `batches` batches of `count` values of about 1 KiB each to partition 0 of
/// `topic`; returns the values in log order.
async fn produce_long_values(
    client: &mut Client,
    topic: &str,
    batches: usize,
    count: usize,
) -> Vec<String> {
    let long = "v".repeat(1000);
    let mut values = Vec::new();
    for round in 0..batches {
        let prefix = format!("{long}{round}");
        values.extend((0..count).map(|index| format!("{prefix}-{index}")));
        let response = client
            .produce(topic, 0, Acks::Leader, batch_of(&prefix, count))
            .await;
        assert_eq!(response.error_code, ErrorCode::None);
    }
    values
}

#[tokio::test]
async fn a_fetch_racing_appends_never_ends_past_the_high_watermark_it_reports() {
    bounded(async {
        let dir = data_dir();
        let broker = BrokerProcess::start(dir.path(), &[]);
        Client::connect(&broker.address)
            .await
            .create_topic("race", 1, &[])
            .await;
        const BATCHES: u64 = 5_000;
        let address = broker.address.clone();
        let producer = tokio::spawn(async move {
            let mut client = Client::connect(&address).await;
            for round in 0..BATCHES {
                let batch = batch_of(&format!("r{round}"), 1);
                let response = client.produce("race", 0, Acks::Leader, batch).await;
                assert_eq!(response.error_code, ErrorCode::None);
            }
        });
        // Fetch right behind the appends, so appends land while fetches are served.
        let mut fetcher = Client::connect(&broker.address).await;
        let (mut offset, mut answers) = (0, 0);
        while offset < BATCHES {
            let answer = fetcher.fetch("race", 0, offset, 0, 0).await;
            assert_eq!(answer.error_code, ErrorCode::None);
            if let Some(last) = decode_records(&answer.records).last() {
                assert!(
                    last.offset < answer.high_watermark,
                    "records up to offset {} in an answer reporting high watermark {}",
                    last.offset,
                    answer.high_watermark
                );
                offset = last.offset + 1;
                answers += 1;
            }
        }
        producer.await.unwrap();
        assert!(answers > 1, "the fetches ran alongside the appends");
    })
    .await;
}
