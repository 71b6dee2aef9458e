//! Every API limits how many topics, partitions and groups one request names; a repeat
//! is refused or answered once; an error never quotes a client's name whole; and a
//! response that would outgrow `frame_bytes_max` is refused before it is built. Each
//! attack is answered `LimitExceeded` or `InvalidRequest`, and a second connection still
//! produces and fetches after it.

use strata_protocol::frame::{self, ResponseResult};
use strata_protocol::limits::TOPIC_NAME_BYTES_MAX;
use strata_protocol::messages::*;
use strata_protocol::{ApiKey, ErrorCode, Request, Response, SHOWN_BYTES_MAX};
use strata_tests::attacks::{self, LONG_NAME_BYTES};
use strata_tests::*;

const HEALTHY: &str = "healthy";
/// The broker's default `frame_bytes_max`.
const FRAME_BYTES_MAX: usize = strata_protocol::limits::FRAME_BYTES_MAX_DEFAULT;
/// The longest a message that quotes a client string may be.
const MESSAGE_BYTES_MAX: usize = 200;

/// Sends a raw request frame and reads its response as `api`.
async fn send_frame(client: &mut Client, api: ApiKey, bytes: &[u8]) -> ResponseResult {
    client.send_raw(bytes).await;
    let payload = client
        .receive_frame()
        .await
        .expect("the broker answers, not disconnects");
    frame::decode_response(&payload, api as u16, 0)
        .expect("a well-formed response")
        .1
}

/// Asserts `result` is a whole-request refusal with `code` whose message says `reason`,
/// and is short.
fn assert_refused(result: ResponseResult, code: ErrorCode, reason: &str) {
    let Err((refused, message)) = result else {
        panic!("answered instead of refused ({reason}): {result:?}");
    };
    assert_eq!(refused, code, "{message}");
    assert!(message.contains(reason), "{message}");
    assert!(message.len() <= MESSAGE_BYTES_MAX, "{message}");
}

/// A new connection produces one record to [`HEALTHY`] and fetches it back.
async fn assert_serves(address: &str, round: &str) {
    let mut client = Client::connect(address).await;
    let produced = client
        .produce(HEALTHY, 0, Acks::All, batch_of(round, 1))
        .await;
    assert_eq!(produced.error_code, ErrorCode::None, "after {round}");
    let fetched = client.fetch(HEALTHY, 0, produced.base_offset, 0, 0).await;
    assert_eq!(fetched.error_code, ErrorCode::None, "after {round}");
    let records = decode_records(&fetched.records);
    assert_eq!(
        values(&records).first().map(String::as_str),
        Some(format!("{round}-0").as_str()),
        "after {round}"
    );
}

async fn healthy_broker(settings: &[&str]) -> (tempfile::TempDir, BrokerProcess) {
    let dir = data_dir();
    let broker = BrokerProcess::start(dir.path(), settings);
    let mut client = Client::connect(&broker.address).await;
    client.create_topic(HEALTHY, 1, &[]).await;
    (dir, broker)
}

/// Why a fan-out request is refused: for the memory it would take once decoded (a
/// partition entry with nothing in it takes several times its wire bytes), or, once
/// decoded, for its count.
const DECODED_TOO_LARGE: &str = "bytes of memory";
const PARTITIONS_OVER_LIMIT: &str = "partitions; request_partitions_max is 10000";

/// A frame small enough to decode within its memory budget, with more partition entries
/// than `request_partitions_max`.
const SMALL_FAN_OUT_BYTES: usize = 256 << 10;

#[tokio::test]
async fn a_frame_full_of_partition_entries_is_refused_before_any_is_handled() {
    bounded(async {
        let (_dir, broker) = healthy_broker(&[]).await;
        let mut attacker = Client::connect(&broker.address).await;
        let produce = attacks::produce_fan_out(FRAME_BYTES_MAX, LONG_NAME_BYTES, 1);
        assert!(attacks::payload_bytes(&produce) > FRAME_BYTES_MAX - 8);
        let attacks = [
            (ApiKey::Produce, produce, DECODED_TOO_LARGE),
            (
                ApiKey::Produce,
                attacks::produce_fan_out(SMALL_FAN_OUT_BYTES, 249, 2),
                PARTITIONS_OVER_LIMIT,
            ),
            (
                ApiKey::Fetch,
                attacks::fetch_fan_out(FRAME_BYTES_MAX, LONG_NAME_BYTES, 3),
                PARTITIONS_OVER_LIMIT,
            ),
            (
                ApiKey::ListOffsets,
                attacks::list_offsets_fan_out(FRAME_BYTES_MAX, LONG_NAME_BYTES, 4),
                PARTITIONS_OVER_LIMIT,
            ),
            (
                ApiKey::OffsetCommit,
                attacks::offset_commit_fan_out(FRAME_BYTES_MAX, "g", LONG_NAME_BYTES, 5),
                DECODED_TOO_LARGE,
            ),
            (
                ApiKey::OffsetCommit,
                attacks::offset_commit_fan_out(SMALL_FAN_OUT_BYTES, "g", 249, 6),
                PARTITIONS_OVER_LIMIT,
            ),
            (
                ApiKey::OffsetFetch,
                attacks::offset_fetch_fan_out(FRAME_BYTES_MAX, "g", LONG_NAME_BYTES, 7),
                PARTITIONS_OVER_LIMIT,
            ),
            (
                ApiKey::ConsumerGroupHeartbeat,
                attacks::heartbeat_fan_out(FRAME_BYTES_MAX, "g", LONG_NAME_BYTES, 8),
                PARTITIONS_OVER_LIMIT,
            ),
            (
                ApiKey::Metadata,
                attacks::names_repeated(ApiKey::Metadata, "a", (FRAME_BYTES_MAX - 20) / 3, 9),
                DECODED_TOO_LARGE,
            ),
        ];
        for (api, bytes, reason) in attacks {
            let result = send_frame(&mut attacker, api, &bytes).await;
            assert_refused(result, ErrorCode::LimitExceeded, reason);
            assert_serves(&broker.address, api.name()).await;
        }
    })
    .await;
}

#[tokio::test]
async fn too_many_topics_or_groups_in_one_request_are_refused() {
    bounded(async {
        let (_dir, broker) = healthy_broker(&[]).await;
        let mut attacker = Client::connect(&broker.address).await;
        let cases = [
            (
                ApiKey::Metadata,
                HEALTHY,
                "topics; request_topics_max is 1000",
            ),
            (
                ApiKey::DescribeTopics,
                HEALTHY,
                "topics; request_topics_max is 1000",
            ),
            (
                ApiKey::DescribeGroups,
                "g",
                "group ids; request_groups_max is 1000",
            ),
            (
                ApiKey::DeleteGroups,
                "g",
                "group ids; request_groups_max is 1000",
            ),
            (
                ApiKey::ListGroups,
                "stable",
                "group states; request_groups_max is 1000",
            ),
        ];
        for (api, name, reason) in cases {
            let bytes = attacks::names_repeated(api, name, 100_000, 7);
            let result = send_frame(&mut attacker, api, &bytes).await;
            assert_refused(result, ErrorCode::LimitExceeded, reason);
            assert_serves(&broker.address, api.name()).await;
        }
    })
    .await;
}

fn produce_request(topics: Vec<(&str, Vec<u32>)>) -> ProduceRequest {
    ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 10_000,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| ProduceTopic {
                name: name.into(),
                partitions: partitions
                    .into_iter()
                    .map(|partition| ProducePartition {
                        partition,
                        records: batch_of("twice", 1).into(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn fetch_request(topics: Vec<(&str, Vec<u32>)>) -> FetchRequest {
    FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 1 << 20,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| FetchTopic {
                name: name.into(),
                partitions: partitions
                    .into_iter()
                    .map(|partition| FetchPartition {
                        partition,
                        current_leader_epoch: NO_EPOCH,
                        fetch_offset: 0,
                        last_fetched_epoch: NO_EPOCH,
                        partition_max_bytes: 1 << 20,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn commit_request_for(topic: &str, partitions: impl Iterator<Item = u32>) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: "g".into(),
        member_id: String::new(),
        member_epoch: ADMIN_COMMIT_EPOCH,
        topics: vec![OffsetCommitTopic {
            name: topic.into(),
            partitions: partitions
                .map(|partition| OffsetCommitPartition {
                    partition,
                    offset: 0,
                    metadata: None,
                })
                .collect(),
        }],
    }
}

#[tokio::test]
async fn a_topic_or_partition_named_twice_where_it_would_act_twice_is_refused() {
    bounded(async {
        let (_dir, broker) = healthy_broker(&[]).await;
        let mut client = Client::connect(&broker.address).await;
        let cases: Vec<(Request, &str)> = vec![
            (
                produce_request(vec![(HEALTHY, vec![0]), (HEALTHY, vec![0])]).into(),
                "names topic 'healthy' twice",
            ),
            (
                produce_request(vec![(HEALTHY, vec![0, 0])]).into(),
                "names partition 0 of topic 'healthy' twice",
            ),
            (
                fetch_request(vec![(HEALTHY, vec![0, 0])]).into(),
                "names partition 0 of topic 'healthy' twice",
            ),
            (
                commit_request_for(HEALTHY, [0, 0].into_iter()).into(),
                "names partition 0 of topic 'healthy' twice",
            ),
            (
                CreateTopicsRequest {
                    topics: vec![
                        CreatableTopic {
                            name: "new".into(),
                            partition_count: 1,
                            replication_factor: 1,
                            configs: Vec::new(),
                        };
                        2
                    ],
                    timeout_ms: 10_000,
                    validate_only: false,
                }
                .into(),
                "names topic 'new' twice",
            ),
            (
                DeleteTopicsRequest {
                    names: vec![HEALTHY.into(), HEALTHY.into()],
                    timeout_ms: 10_000,
                }
                .into(),
                "names topic 'healthy' twice",
            ),
        ];
        for (request, reason) in cases {
            let api = request.api_key();
            let result = client.try_call(request).await;
            assert_refused(result, ErrorCode::InvalidRequest, reason);
            assert_serves(&broker.address, api.name()).await;
        }
        // Nothing of the refused produces was appended: only the checks' own records.
        let records = client.read_all(HEALTHY, 0, 0).await;
        assert!(
            !values(&records)
                .iter()
                .any(|value| value.starts_with("twice")),
            "{records:?}"
        );
        let Response::Metadata(metadata) = client
            .call(MetadataRequest {
                topics: Some(vec!["new".into()]),
            })
            .await
        else {
            panic!("not a metadata response")
        };
        assert_eq!(
            metadata.topics[0].error_code,
            ErrorCode::UnknownTopicOrPartition
        );
    })
    .await;
}

#[tokio::test]
async fn a_name_or_group_asked_about_twice_is_answered_once() {
    bounded(async {
        let (_dir, broker) = healthy_broker(&[]).await;
        let mut client = Client::connect(&broker.address).await;
        let names = vec![HEALTHY.to_owned(), "missing".into(), HEALTHY.into()];
        let Response::Metadata(metadata) = client
            .call(MetadataRequest {
                topics: Some(names.clone()),
            })
            .await
        else {
            panic!("not a metadata response")
        };
        let answered: Vec<&str> = metadata.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(answered, [HEALTHY, "missing"]);
        let Response::DescribeTopics(described) = client
            .call(DescribeTopicsRequest { names: Some(names) })
            .await
        else {
            panic!("not a describe topics response")
        };
        let answered: Vec<&str> = described.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(answered, [HEALTHY, "missing"]);
        let group_ids = vec!["g".to_owned(), "g".into()];
        let Response::DescribeGroups(groups) = client
            .call(DescribeGroupsRequest {
                group_ids: group_ids.clone(),
            })
            .await
        else {
            panic!("not a describe groups response")
        };
        assert_eq!(groups.groups.len(), 1);
        let Response::DeleteGroups(deleted) = client.call(DeleteGroupsRequest { group_ids }).await
        else {
            panic!("not a delete groups response")
        };
        assert_eq!(deleted.groups.len(), 1);
        assert_eq!(deleted.groups[0].error_code, ErrorCode::GroupIdNotFound);
    })
    .await;
}

#[tokio::test]
async fn an_error_quotes_a_long_client_name_cut_short() {
    bounded(async {
        let (_dir, broker) = healthy_broker(&[]).await;
        let mut client = Client::connect(&broker.address).await;
        let shown = format!("{}…", "x".repeat(SHOWN_BYTES_MAX));
        // The longest name a topic can have, unknown, quoted once per partition.
        let longest = "x".repeat(TOPIC_NAME_BYTES_MAX);
        let Response::Produce(produced) = client
            .call(produce_request(vec![(&longest, (0..100).collect())]))
            .await
        else {
            panic!("not a produce response")
        };
        for partition in &produced.topics[0].partitions {
            assert_eq!(partition.error_code, ErrorCode::UnknownTopicOrPartition);
            let message = partition.error_message.as_deref().unwrap_or_default();
            assert!(message.contains(&shown), "{message}");
            assert!(message.len() <= MESSAGE_BYTES_MAX, "{message}");
        }
        // A name no topic can have is refused whole where a handler would copy it per
        // partition.
        let long = "x".repeat(LONG_NAME_BYTES);
        let result = client.try_call(commit_request_for(&long, 0..100)).await;
        assert_refused(
            result,
            ErrorCode::InvalidTopic,
            "a topic of 65000 bytes; topic names are at most 249 bytes",
        );
        // Quoted per topic where a topic's own entry says it is unknown.
        let Response::DescribeTopics(described) = client
            .call(DescribeTopicsRequest {
                names: Some(vec![long.clone()]),
            })
            .await
        else {
            panic!("not a describe topics response")
        };
        let message = described.topics[0]
            .error_message
            .as_deref()
            .unwrap_or_default();
        assert!(message.contains(&shown), "{message}");
        let Response::DeleteTopics(deleted) = client
            .call(DeleteTopicsRequest {
                names: vec![long.clone()],
                timeout_ms: 10_000,
            })
            .await
        else {
            panic!("not a delete topics response")
        };
        let message = deleted.topics[0]
            .error_message
            .as_deref()
            .unwrap_or_default();
        assert!(message.contains(&shown), "{message}");
        assert!(message.len() <= MESSAGE_BYTES_MAX, "{message}");
        let Response::DeleteGroups(deleted) = client
            .call(DeleteGroupsRequest {
                group_ids: vec![long],
            })
            .await
        else {
            panic!("not a delete groups response")
        };
        assert_eq!(deleted.groups[0].error_code, ErrorCode::InvalidGroupId);
        let message = deleted.groups[0]
            .error_message
            .as_deref()
            .unwrap_or_default();
        assert!(message.len() <= MESSAGE_BYTES_MAX, "{message}");
        assert_serves(&broker.address, "long names").await;
    })
    .await;
}

/// A 4096-partition topic's whole metadata fits 16 MiB, so the frame limit is scaled
/// down: at 8 KiB, one 512-partition topic's metadata (30 bytes a partition) or
/// description (60 bytes a partition) is already too large, as a 4096-partition topic's
/// would be at 16 MiB if it were answered once per time a request names it.
const SMALL_FRAME: &[&str] = &["frame_bytes_max=8192", "max_message_bytes=4096"];

#[tokio::test]
async fn a_response_that_would_outgrow_the_frame_limit_is_refused_before_it_is_built() {
    bounded(async {
        let (_dir, broker) = healthy_broker(SMALL_FRAME).await;
        let mut client = Client::connect(&broker.address).await;
        client.create_topic("wide", 512, &[]).await;
        let mut attacker = Client::connect(&broker.address).await;
        for api in [ApiKey::Metadata, ApiKey::DescribeTopics] {
            let bytes = attacks::names_repeated(api, "wide", 1000, 8);
            let result = send_frame(&mut attacker, api, &bytes).await;
            assert_refused(
                result,
                ErrorCode::LimitExceeded,
                "bytes; frame_bytes_max is 8192",
            );
            assert_serves(&broker.address, api.name()).await;
        }
        let everything = client.try_call(MetadataRequest { topics: None }).await;
        assert_refused(
            everything,
            ErrorCode::LimitExceeded,
            "bytes; frame_bytes_max is 8192",
        );
        let everything = client.try_call(DescribeTopicsRequest { names: None }).await;
        assert_refused(
            everything,
            ErrorCode::LimitExceeded,
            "bytes; frame_bytes_max is 8192",
        );
        assert_serves(&broker.address, "everything").await;
    })
    .await;
}

#[tokio::test]
async fn a_4096_partition_topic_named_a_thousand_times_is_answered_once() {
    bounded(async {
        let (_dir, broker) = healthy_broker(&[]).await;
        let mut client = Client::connect(&broker.address).await;
        client.create_wide_topic("wide", 4096).await;
        let mut attacker = Client::connect(&broker.address).await;
        // Answered per name, these would be 123 MB of metadata and 246 MB of
        // descriptions.
        let bytes = attacks::names_repeated(ApiKey::Metadata, "wide", 1000, 11);
        let Ok(Response::Metadata(metadata)) =
            send_frame(&mut attacker, ApiKey::Metadata, &bytes).await
        else {
            panic!("the metadata of one topic named 1000 times was refused")
        };
        assert_eq!(metadata.topics.len(), 1);
        assert_eq!(metadata.topics[0].partitions.len(), 4096);
        let bytes = attacks::names_repeated(ApiKey::DescribeTopics, "wide", 1000, 12);
        let Ok(Response::DescribeTopics(described)) =
            send_frame(&mut attacker, ApiKey::DescribeTopics, &bytes).await
        else {
            panic!("the description of one topic named 1000 times was refused")
        };
        assert_eq!(described.topics.len(), 1);
        assert_eq!(described.topics[0].partitions.len(), 4096);
        for api in [ApiKey::Metadata, ApiKey::DescribeTopics] {
            let bytes = attacks::names_repeated(api, "wide", 1001, 13);
            let result = send_frame(&mut attacker, api, &bytes).await;
            assert_refused(
                result,
                ErrorCode::LimitExceeded,
                "topics; request_topics_max is 1000",
            );
        }
        assert_serves(&broker.address, "wide").await;
    })
    .await;
}
