//! A request body decodes within a memory budget: twice its length, or 4 MiB if that is
//! more. A body that fits a frame but is made of millions of empty entries is refused
//! with `LimitExceeded` before the array is allocated; requests within a broker's default
//! limits decode whole.

use bytes::{BufMut, Bytes, BytesMut};
use strata_protocol::limits::{REQUEST_DECODED_BYTES_MIN, request_decoded_bytes_max};
use strata_protocol::messages::*;
use strata_protocol::wire::Wire;
use strata_protocol::{ApiKey, DecodeError, ErrorCode, Request};

const FRAME_BYTES: usize = 16 << 20;

fn decode(api: ApiKey, body: &BytesMut) -> Result<Request, DecodeError> {
    Request::decode(api as u16, 0, &Bytes::copy_from_slice(body))
}

fn refused(result: Result<Request, DecodeError>) -> DecodeError {
    match result {
        Err(error @ DecodeError::MemoryBudget { .. }) => {
            assert_eq!(error.error_code(), ErrorCode::LimitExceeded);
            error
        }
        other => panic!("not refused for its memory: {other:?}"),
    }
}

#[test]
fn the_budget_is_twice_the_body_or_4_mib() {
    assert_eq!(request_decoded_bytes_max(0), REQUEST_DECODED_BYTES_MIN);
    assert_eq!(
        request_decoded_bytes_max(1 << 20),
        REQUEST_DECODED_BYTES_MIN
    );
    assert_eq!(request_decoded_bytes_max(FRAME_BYTES), 2 * FRAME_BYTES);
    assert_eq!(request_decoded_bytes_max(usize::MAX), usize::MAX);
}

#[test]
fn millions_of_one_byte_names_are_refused() {
    let count = (FRAME_BYTES - 4) / 3;
    let mut body = BytesMut::with_capacity(FRAME_BYTES);
    body.put_u32(count as u32);
    for _ in 0..count {
        "a".to_owned().encode(&mut body);
    }
    let error = refused(decode(ApiKey::Metadata, &body));
    assert_eq!(
        error.to_string(),
        format!(
            "decoding the message would take more than {} bytes of memory (stopped at byte 4)",
            2 * body.len()
        )
    );
}

#[test]
fn millions_of_partitions_without_batches_are_refused() {
    let mut body = BytesMut::with_capacity(FRAME_BYTES);
    Acks::Leader.encode(&mut body);
    body.put_u32(10_000);
    body.put_u32(1);
    "t".to_owned().encode(&mut body);
    let count = (FRAME_BYTES - body.len() - 4) / 8;
    body.put_u32(count as u32);
    for partition in 0..count as u32 {
        body.put_u32(partition);
        body.put_u32(0);
    }
    refused(decode(ApiKey::Produce, &body));
}

/// A body of `count` topics with empty names and no partitions, behind `prefix`; each
/// topic after `name` is `topic_rest` bytes long.
fn empty_topics(prefix: &[u8], topic_rest: usize) -> BytesMut {
    let mut body = BytesMut::with_capacity(FRAME_BYTES);
    body.put_slice(prefix);
    let count = (FRAME_BYTES - prefix.len() - 4) / (2 + topic_rest);
    body.put_u32(count as u32);
    for _ in 0..count {
        String::new().encode(&mut body);
        body.put_bytes(0, topic_rest);
    }
    body
}

#[test]
fn millions_of_topics_without_partitions_are_refused_by_the_replication_apis() {
    // ReplicaFetch: replica, incarnation, wait and size, then topics of an id and an
    // empty partition array.
    let replica_fetch = empty_topics(&[0; 20], 8 + 4);
    refused(decode(ApiKey::ReplicaFetch, &replica_fetch));
    // ElectLeaders: `unclean`, then topics of an empty partition array.
    let elect_leaders = empty_topics(&[0], 4);
    refused(decode(ApiKey::ElectLeaders, &elect_leaders));
    // AlterPartitionReassignments: topics of an empty partition array.
    let reassignments = empty_topics(&[], 4);
    refused(decode(ApiKey::AlterPartitionReassignments, &reassignments));
}

#[test]
fn millions_of_fetch_topics_without_partitions_are_refused_at_every_version() {
    // Wait, minimum and maximum bytes, then topics of an empty partition array: the
    // versioned arrays of Fetch are charged as every other array is.
    let fetch = Bytes::copy_from_slice(&empty_topics(&[0; 12], 4));
    for api_version in ApiKey::Fetch.versions() {
        refused(Request::decode(ApiKey::Fetch as u16, api_version, &fetch));
    }
}

#[test]
fn requests_within_the_default_limits_decode() {
    let names = vec!["t".repeat(249); 1000];
    let metadata = Request::from(MetadataRequest {
        topics: Some(names),
    });
    let partitions = |count: u32| {
        (0..count)
            .map(|partition| ProducePartition {
                partition,
                records: Bytes::new().into(),
            })
            .collect()
    };
    let produce = Request::from(ProduceRequest {
        acks: Acks::All,
        timeout_ms: 1,
        topics: vec![ProduceTopic {
            name: "t".into(),
            partitions: partitions(10_000),
        }],
    });
    let commit = Request::from(OffsetCommitRequest {
        group_id: "g".into(),
        member_id: String::new(),
        member_epoch: ADMIN_COMMIT_EPOCH,
        topics: vec![OffsetCommitTopic {
            name: "t".repeat(249),
            partitions: (0..10_000)
                .map(|partition| OffsetCommitPartition {
                    partition,
                    offset: 1,
                    metadata: Some("m".repeat(100)),
                })
                .collect(),
        }],
    });
    let replica_fetch = Request::from(ReplicaFetchRequest {
        replica_id: 2,
        replica_incarnation: 1,
        max_wait_ms: 500,
        max_bytes: 1 << 20,
        topics: vec![ReplicaFetchTopic {
            name: "t".repeat(249),
            topic_id: 1,
            partitions: (0..10_000)
                .map(|partition| ReplicaFetchPartition {
                    partition,
                    current_leader_epoch: 0,
                    fetch_offset: 0,
                    last_fetched_epoch: NO_EPOCH,
                    durable_offset: 0,
                    partition_max_bytes: 1 << 20,
                })
                .collect(),
        }],
    });
    let elect_leaders = Request::from(ElectLeadersRequest {
        unclean: false,
        topics: vec![ElectLeadersTopic {
            name: "t".repeat(249),
            partitions: (0..10_000).collect(),
        }],
    });
    for request in [metadata, produce, commit, replica_fetch, elect_leaders] {
        let mut body = BytesMut::new();
        request.encode_body(0, &mut body);
        assert_eq!(decode(request.api_key(), &body), Ok(request));
    }
}

#[test]
fn responses_decode_without_a_budget() {
    let partitions = (0..200_000)
        .map(|partition| PartitionMetadata {
            error_code: ErrorCode::None,
            partition,
            leader_id: 0,
            leader_epoch: 0,
            replicas: Vec::new(),
            in_sync_replicas: Vec::new(),
        })
        .collect();
    let response = strata_protocol::Response::from(MetadataResponse {
        cluster_id: "c".into(),
        controller_id: 0,
        brokers: Vec::new(),
        topics: vec![TopicMetadata {
            error_code: ErrorCode::None,
            name: "t".into(),
            partitions,
        }],
    });
    let mut body = BytesMut::new();
    response.encode_body(0, &mut body);
    let decoded = strata_protocol::Response::decode(
        ApiKey::Metadata as u16,
        0,
        &Bytes::copy_from_slice(&body),
    );
    assert_eq!(decoded, Ok(response));
}
