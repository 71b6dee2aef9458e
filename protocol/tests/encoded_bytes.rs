//! The sizes a broker computes before building a response match real encodes: the
//! per-partition formulas of Metadata and DescribeTopics, and the counted payload of a
//! whole response frame.

use bytes::{Bytes, BytesMut};
use strata_protocol::frame::{self, RESPONSE_HEADER_BYTES};
use strata_protocol::messages::*;
use strata_protocol::wire::{STRING_BYTES_MAX, Wire, encoded_bytes};
use strata_protocol::{ErrorCode, Response};

fn encode<T: Wire>(value: &T) -> usize {
    let mut out = BytesMut::new();
    value.encode(&mut out);
    out.len()
}

fn nodes(count: usize) -> Vec<u32> {
    (0..count as u32).collect()
}

#[test]
fn a_metadata_partition_entry_is_as_long_as_its_formula_says() {
    for replicas in 0..6 {
        for in_sync_replicas in 0..=replicas {
            let entry = PartitionMetadata {
                error_code: ErrorCode::None,
                partition: u32::MAX,
                leader_id: -1,
                leader_epoch: 7,
                replicas: nodes(replicas),
                in_sync_replicas: nodes(in_sync_replicas),
            };
            assert_eq!(
                PartitionMetadata::encoded_bytes(replicas, in_sync_replicas),
                encode(&entry),
                "{replicas} replicas, {in_sync_replicas} in sync"
            );
        }
    }
}

#[test]
fn a_described_partition_entry_is_as_long_as_its_formula_says() {
    for replicas in 0..6 {
        for in_sync_replicas in 0..=replicas {
            for error_message in [None, Some(String::new()), Some("segment 0: crc".repeat(9))] {
                let entry = DescribedPartition {
                    error_code: ErrorCode::None,
                    partition: 3,
                    leader_id: 0,
                    leader_epoch: 1,
                    replicas: nodes(replicas),
                    in_sync_replicas: nodes(in_sync_replicas),
                    log_start_offset: u64::MAX,
                    high_watermark: 0,
                    log_end_offset: 9,
                    size_bytes: 1 << 40,
                    error_message,
                };
                assert_eq!(
                    DescribedPartition::encoded_bytes(
                        replicas,
                        in_sync_replicas,
                        entry.error_message.as_ref().map(String::len)
                    ),
                    encode(&entry),
                    "{replicas} replicas, {in_sync_replicas} in sync, {:?}",
                    entry.error_message
                );
            }
        }
    }
}

fn encoded_frame_payload(response: &Response, api_version: u16) -> usize {
    let mut out = BytesMut::new();
    frame::encode_response(&mut out, 1, api_version, response)
}

#[test]
fn a_counted_response_is_as_long_as_its_encoded_frame() {
    let long_name = "n".repeat(STRING_BYTES_MAX + 10);
    let responses: Vec<Response> = vec![
        MetadataResponse {
            cluster_id: "c".into(),
            controller_id: 0,
            brokers: vec![BrokerMetadata {
                node_id: 0,
                host: "127.0.0.1".into(),
                port: 9400,
            }],
            topics: vec![TopicMetadata {
                error_code: ErrorCode::None,
                name: long_name.clone(),
                partitions: Vec::new(),
            }],
        }
        .into(),
        FetchResponse {
            topics: vec![FetchTopicResponse {
                name: "t".into(),
                partitions: vec![FetchPartitionResponse {
                    partition: 0,
                    error_code: ErrorCode::None,
                    leader_epoch: 2,
                    high_watermark: 1,
                    log_start_offset: 0,
                    diverging_epoch: NO_EPOCH,
                    diverging_end_offset: 0,
                    records: Bytes::from(vec![7; 4096]),
                }],
            }],
        }
        .into(),
        ReplicaFetchResponse {
            topics: vec![ReplicaFetchTopicResponse {
                name: "t".into(),
                partitions: vec![ReplicaFetchPartitionResponse {
                    partition: 0,
                    error_code: ErrorCode::None,
                    leader_epoch: 3,
                    high_watermark: 1,
                    log_start_offset: 0,
                    log_end_offset: 2,
                    diverging_epoch: NO_EPOCH,
                    diverging_end_offset: 0,
                    records: Bytes::from(vec![7; 4096]),
                }],
            }],
        }
        .into(),
        ElectLeadersResponse {
            topics: vec![ElectLeadersTopicResponse {
                name: "t".into(),
                partitions: vec![ElectLeadersPartitionResponse {
                    partition: 0,
                    error_code: ErrorCode::EligibleLeadersNotAvailable,
                    error_message: Some("replicas 2 and 3 are fenced".into()),
                    leader: NO_ELECTED_LEADER,
                    leader_epoch: 4,
                }],
            }],
        }
        .into(),
        ProduceResponse {
            topics: vec![ProduceTopicResponse {
                name: long_name,
                partitions: vec![ProducePartitionResponse {
                    partition: 1,
                    error_code: ErrorCode::UnknownTopicOrPartition,
                    error_message: Some("no".into()),
                    base_offset: 0,
                    log_append_time: -1,
                    log_start_offset: 0,
                }],
            }],
        }
        .into(),
        ListGroupsResponse { groups: Vec::new() }.into(),
    ];
    for response in &responses {
        for api_version in response.api_key().versions() {
            assert_eq!(
                frame::response_payload_bytes(response, api_version),
                encoded_frame_payload(response, api_version),
                "{:?} version {api_version}",
                response.api_key()
            );
        }
    }
    let empty = ListGroupsResponse { groups: Vec::new() };
    assert_eq!(encoded_bytes(&empty) + RESPONSE_HEADER_BYTES, 10);
}
