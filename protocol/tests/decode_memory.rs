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
    for request in [metadata, produce, commit] {
        let mut body = BytesMut::new();
        request.encode_body(&mut body);
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
    response.encode_body(&mut body);
    let decoded = strata_protocol::Response::decode(
        ApiKey::Metadata as u16,
        0,
        &Bytes::copy_from_slice(&body),
    );
    assert_eq!(decoded, Ok(response));
}
