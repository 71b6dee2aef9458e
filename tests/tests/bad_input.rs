//! Garbage bytes, oversized length prefixes, truncated frames, unknown API keys and
//! corrupt batches are rejected with their documented error codes; other connections keep
//! working and no data is lost.

use strata_protocol::batch::{self, BatchBuilder};
use strata_protocol::frame;
use strata_protocol::messages::*;
use strata_protocol::{ApiKey, ErrorCode};
use strata_tests::*;

async fn seeded() -> (tempfile::TempDir, BrokerProcess, Client) {
    let dir = data_dir();
    let broker = BrokerProcess::start(
        dir.path(),
        &["frame_bytes_max=2097152", "max_message_bytes=1048576"],
    );
    let mut client = Client::connect(&broker.address).await;
    client.create_topic("safe", 1, &[]).await;
    assert_eq!(
        client
            .produce("safe", 0, Acks::Leader, batch_of("kept", 3))
            .await
            .error_code,
        ErrorCode::None
    );
    (dir, broker, client)
}

async fn still_serving(broker: &BrokerProcess, client: &mut Client) {
    assert_eq!(
        values(&client.read_all("safe", 0, 0).await),
        ["kept-0", "kept-1", "kept-2"]
    );
    let mut fresh = Client::connect(&broker.address).await;
    assert_eq!(
        values(&fresh.read_all("safe", 0, 0).await),
        ["kept-0", "kept-1", "kept-2"]
    );
}

fn error_of(payload: &bytes::Bytes) -> (u32, ErrorCode, String) {
    let (correlation_id, result) =
        frame::decode_response(payload, ApiKey::Metadata as u16, 0).expect("response frame");
    let (code, message) = result.expect_err("an error response");
    (correlation_id, code, message)
}

#[tokio::test]
async fn oversized_length_prefix_gets_frame_too_large_and_closes_only_that_connection() {
    let (_dir, broker, mut client) = seeded().await;
    let mut attacker = Client::connect(&broker.address).await;
    // Length prefix of 3 GiB followed by a header with correlation id 77.
    let mut frame = 3_000_000_000u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 77]);
    attacker.send_raw(&frame).await;
    let payload = attacker
        .receive_frame()
        .await
        .expect("an error response before closing");
    let (correlation_id, code, message) = error_of(&payload);
    assert_eq!((correlation_id, code), (77, ErrorCode::FrameTooLarge));
    assert!(message.contains("frame_bytes_max"), "{message}");
    assert!(
        attacker.receive_frame().await.is_none(),
        "connection closed"
    );
    still_serving(&broker, &mut client).await;
}

#[tokio::test]
async fn garbage_and_truncated_frames_never_hurt_the_broker() {
    let (_dir, broker, mut client) = seeded().await;
    let garbage: [&[u8]; 4] = [
        &[0, 0, 0, 3, 1, 2, 3], // a frame too short for a header
        &[0, 0, 0, 12, 0xFF, 0xFF, 0, 0, 0, 0, 0, 9, 0xFF, 0xFF, 0, 0], // null client id
        b"GET / HTTP/1.1\r\n\r\n", // the wrong protocol
        &[0, 0, 0, 40, 0, 1, 0, 0], // truncated: the peer hangs up mid-frame
    ];
    for bytes in garbage {
        let mut attacker = Client::connect(&broker.address).await;
        attacker.send_raw(bytes).await;
        drop(attacker);
    }
    still_serving(&broker, &mut client).await;
}

#[tokio::test]
async fn unknown_api_and_version_get_named_errors_and_the_connection_stays_usable() {
    let (_dir, broker, mut client) = seeded().await;
    let mut raw = Client::connect(&broker.address).await;
    raw.send_raw(&request_frame(999, 0, 5, &[])).await;
    let (id, code, _) = error_of(&raw.receive_frame().await.unwrap());
    assert_eq!((id, code), (5, ErrorCode::UnknownApiKey));
    raw.send_raw(&request_frame(
        ApiKey::Metadata as u16,
        42,
        6,
        &[0xFF, 0xFF, 0xFF, 0xFF],
    ))
    .await;
    let (id, code, _) = error_of(&raw.receive_frame().await.unwrap());
    assert_eq!((id, code), (6, ErrorCode::UnsupportedVersion));
    raw.send_raw(&request_frame(ApiKey::Metadata as u16, 0, 7, &[0xFF]))
        .await;
    let (id, code, message) = error_of(&raw.receive_frame().await.unwrap());
    assert_eq!((id, code), (7, ErrorCode::InvalidRequest), "{message}");
    let response = raw.call(MetadataRequest { topics: None }).await;
    assert!(matches!(response, strata_protocol::Response::Metadata(m) if m.topics.len() == 1));
    still_serving(&broker, &mut client).await;
}

#[tokio::test]
async fn corrupt_and_invalid_batches_are_rejected_and_append_nothing() {
    let (_dir, broker, mut client) = seeded().await;
    let good = batch_of("good", 2).to_vec();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let response = client
        .produce("safe", 0, Acks::Leader, flipped.into())
        .await;
    assert_eq!(
        response.error_code,
        ErrorCode::CorruptBatch,
        "{:?}",
        response.error_message
    );

    let truncated = good[..good.len() - 3].to_vec();
    assert_eq!(
        client
            .produce("safe", 0, Acks::Leader, truncated.into())
            .await
            .error_code,
        ErrorCode::InvalidBatch
    );

    // A valid batch followed by a corrupt one: nothing of the request is appended.
    let mut mixed = good.clone();
    let mut bad = good.clone();
    bad[batch::CRC_START + 3] ^= 1;
    mixed.extend_from_slice(&bad);
    assert_eq!(
        client
            .produce("safe", 0, Acks::Leader, mixed.into())
            .await
            .error_code,
        ErrorCode::CorruptBatch
    );

    let mut builder = BatchBuilder::new();
    builder.push(0, None, Some(&vec![7u8; 1_100_000]), &[]);
    let oversized = client
        .produce("safe", 0, Acks::Leader, builder.finish())
        .await;
    assert_eq!(
        oversized.error_code,
        ErrorCode::MessageTooLarge,
        "{:?}",
        oversized.error_message
    );

    let empty = client
        .produce("safe", 0, Acks::Leader, bytes::Bytes::new())
        .await;
    assert_eq!(empty.error_code, ErrorCode::InvalidBatch);

    let unknown = client
        .produce("nope", 0, Acks::Leader, good.clone().into())
        .await;
    assert_eq!(unknown.error_code, ErrorCode::UnknownTopicOrPartition);
    let no_partition = client.produce("safe", 9, Acks::Leader, good.into()).await;
    assert_eq!(no_partition.error_code, ErrorCode::UnknownTopicOrPartition);

    still_serving(&broker, &mut client).await;
    let fetch = client.fetch("safe", 0, 0, 0, 0).await;
    assert_eq!(fetch.high_watermark, 3, "no rejected batch was appended");
}

#[tokio::test]
async fn fetch_out_of_range_and_admin_errors_are_named() {
    let (_dir, broker, mut client) = seeded().await;
    assert_eq!(
        client.fetch("safe", 0, 4, 0, 0).await.error_code,
        ErrorCode::OffsetOutOfRange
    );
    assert_eq!(
        client.fetch("ghost", 0, 0, 0, 0).await.error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    let create = |name: &str, partitions, replication_factor, configs: Vec<ConfigEntry>| {
        CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: name.into(),
                partition_count: partitions,
                replication_factor,
                configs,
            }],
            timeout_ms: 1000,
            validate_only: false,
        }
    };
    let cases = [
        (create("safe", 1, 1, vec![]), ErrorCode::TopicAlreadyExists),
        (create("bad/name", 1, 1, vec![]), ErrorCode::InvalidTopic),
        (create("zero", 0, 1, vec![]), ErrorCode::InvalidPartitions),
        (
            create("replicated", 1, 3, vec![]),
            ErrorCode::InvalidReplicationFactor,
        ),
        (
            create(
                "typo",
                1,
                1,
                vec![ConfigEntry {
                    key: "retension_ms".into(),
                    value: "1".into(),
                }],
            ),
            ErrorCode::InvalidConfig,
        ),
    ];
    for (request, expected) in cases {
        let strata_protocol::Response::CreateTopics(response) = client.call(request).await else {
            panic!()
        };
        assert_eq!(
            response.topics[0].error_code, expected,
            "{:?}",
            response.topics[0].error_message
        );
        assert!(response.topics[0].error_message.is_some());
    }
    still_serving(&broker, &mut client).await;
}

#[tokio::test]
async fn huge_unknown_topic_names_get_an_answer_not_a_dead_connection() {
    let (_dir, broker, mut client) = seeded().await;
    let name = "x".repeat(65_530);
    let strata_protocol::Response::DescribeTopics(described) = client
        .call(DescribeTopicsRequest {
            names: Some(vec![name.clone()]),
        })
        .await
    else {
        panic!("wrong response type")
    };
    let topic = &described.topics[0];
    assert_eq!(
        (topic.name.as_str(), topic.error_code),
        (name.as_str(), ErrorCode::UnknownTopicOrPartition)
    );
    let message = topic.error_message.as_deref().unwrap();
    assert!(
        message.starts_with("topic 'xxx")
            && message.len() <= strata_protocol::wire::STRING_BYTES_MAX
    );
    still_serving(&broker, &mut client).await;
}
