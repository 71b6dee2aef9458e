//! Every request and response round-trips through a frame; every truncation of a valid
//! frame and arbitrary bytes of every API are rejected without a panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use strata_protocol::frame::{self, RequestHeader, ResponseHeader};
use strata_protocol::messages::*;
use strata_protocol::wire::{Sink, VectoredBuf, Wire};
use strata_protocol::{ApiKey, ErrorCode, Request, Response};

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._\u{e9}-]{0,24}"
}

fn blob() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from),
        proptest::collection::vec(any::<u8>(), 600..3000).prop_map(Bytes::from),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL)
}

fn vec<T: std::fmt::Debug>(element: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    proptest::collection::vec(element, 0..4)
}

fn topic_result() -> impl Strategy<Value = TopicResult> {
    (name(), error_code(), proptest::option::of(name())).prop_map(
        |(name, error_code, error_message)| TopicResult {
            name,
            error_code,
            error_message,
        },
    )
}

fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Leader), Just(Acks::All)]
}

fn requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        topic_requests().boxed(),
        group_requests().boxed(),
        Just(DescribeClusterRequest {}.into()).boxed(),
        replication_requests().boxed(),
    ]
}

fn responses() -> impl Strategy<Value = Response> {
    prop_oneof![
        topic_responses().boxed(),
        group_responses().boxed(),
        cluster_response().boxed(),
        replication_responses().boxed(),
    ]
}

fn cluster_response() -> impl Strategy<Value = Response> {
    let voter = (any::<u32>(), any::<i64>()).prop_map(|(id, lag)| ClusterVoter { id, lag });
    let broker = (
        any::<u32>(),
        name(),
        any::<u8>(),
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(
            |(id, address, state, incarnation, applied_lag)| ClusterBroker {
                id,
                address,
                state,
                incarnation,
                applied_lag,
            },
        );
    (
        (error_code(), proptest::option::of(name())),
        (any::<i32>(), any::<u64>(), vec(voter)),
        vec(broker),
        (any::<u32>(), any::<u32>(), any::<u32>()),
    )
        .prop_map(
            |(
                (error_code, error_message),
                (leader, term, voters),
                brokers,
                (total, offline, under_replicated),
            )| {
                DescribeClusterResponse {
                    error_code,
                    error_message,
                    controller: ClusterController {
                        leader,
                        term,
                        voters,
                    },
                    brokers,
                    partitions: ClusterPartitions {
                        total,
                        offline,
                        under_replicated,
                    },
                }
                .into()
            },
        )
}

/// An epoch field: often [`NO_EPOCH`], else any.
fn epoch() -> impl Strategy<Value = u32> {
    prop_oneof![Just(NO_EPOCH), any::<u32>()]
}

fn replica_fetch_partition() -> impl Strategy<Value = ReplicaFetchPartition> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<[u64; 2]>(),
        epoch(),
        any::<u32>(),
    )
        .prop_map(
            |(
                partition,
                current_leader_epoch,
                [fetch_offset, durable_offset],
                last_fetched_epoch,
                partition_max_bytes,
            )| ReplicaFetchPartition {
                partition,
                current_leader_epoch,
                fetch_offset,
                last_fetched_epoch,
                durable_offset,
                partition_max_bytes,
            },
        )
}

fn replica_fetch_partition_response() -> impl Strategy<Value = ReplicaFetchPartitionResponse> {
    (
        (any::<u32>(), error_code(), any::<u32>()),
        any::<[u64; 4]>(),
        epoch(),
        blob(),
    )
        .prop_map(
            |(
                (partition, error_code, leader_epoch),
                [
                    high_watermark,
                    log_start_offset,
                    log_end_offset,
                    diverging_end_offset,
                ],
                diverging_epoch,
                records,
            )| ReplicaFetchPartitionResponse {
                partition,
                error_code,
                leader_epoch,
                high_watermark,
                log_start_offset,
                log_end_offset,
                diverging_epoch,
                diverging_end_offset,
                records,
            },
        )
}

fn replication_requests() -> impl Strategy<Value = Request> {
    let fetch_topic = (name(), any::<u64>(), vec(replica_fetch_partition())).prop_map(
        |(name, topic_id, partitions)| ReplicaFetchTopic {
            name,
            topic_id,
            partitions,
        },
    );
    let elect_topic = (name(), vec(any::<u32>()))
        .prop_map(|(name, partitions)| ElectLeadersTopic { name, partitions });
    prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            any::<[u32; 2]>(),
            vec(fetch_topic)
        )
            .prop_map(
                |(replica_id, replica_incarnation, [max_wait_ms, max_bytes], topics)| {
                    ReplicaFetchRequest {
                        replica_id,
                        replica_incarnation,
                        max_wait_ms,
                        max_bytes,
                        topics,
                    }
                    .into()
                }
            ),
        (any::<bool>(), vec(elect_topic)).prop_map(|(unclean, topics)| ElectLeadersRequest {
            unclean,
            topics
        }
        .into()),
        vec((name(), vec((any::<u32>(), vec(any::<u32>()))))).prop_map(|topics| {
            let topics = topics
                .into_iter()
                .map(|(name, partitions)| ReassignableTopic {
                    name,
                    partitions: partitions
                        .into_iter()
                        .map(|(partition, replicas)| ReassignablePartition {
                            partition,
                            replicas,
                        })
                        .collect(),
                })
                .collect();
            AlterPartitionReassignmentsRequest { topics }.into()
        }),
    ]
}

fn replication_responses() -> impl Strategy<Value = Response> {
    let fetch_topic = (name(), vec(replica_fetch_partition_response()))
        .prop_map(|(name, partitions)| ReplicaFetchTopicResponse { name, partitions });
    let elected = (
        any::<u32>(),
        error_code(),
        proptest::option::of(name()),
        prop_oneof![Just(NO_ELECTED_LEADER), any::<u32>()],
        any::<u32>(),
    )
        .prop_map(
            |(partition, error_code, error_message, leader, leader_epoch)| {
                ElectLeadersPartitionResponse {
                    partition,
                    error_code,
                    error_message,
                    leader,
                    leader_epoch,
                }
            },
        );
    let elect_topic = (name(), vec(elected))
        .prop_map(|(name, partitions)| ElectLeadersTopicResponse { name, partitions });
    prop_oneof![
        vec(fetch_topic).prop_map(|topics| ReplicaFetchResponse { topics }.into()),
        vec(elect_topic).prop_map(|topics| ElectLeadersResponse { topics }.into()),
        vec((
            name(),
            vec((any::<u32>(), error_code(), proptest::option::of(name())))
        ))
        .prop_map(|topics| {
            let topics = topics
                .into_iter()
                .map(|(name, partitions)| ReassignableTopicResponse {
                    name,
                    partitions: partitions
                        .into_iter()
                        .map(|(partition, error_code, error_message)| {
                            ReassignablePartitionResponse {
                                partition,
                                error_code,
                                error_message,
                            }
                        })
                        .collect(),
                })
                .collect();
            AlterPartitionReassignmentsResponse { topics }.into()
        }),
    ]
}

fn topic_requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        (name(), name()).prop_map(|(client_software_name, client_software_version)| {
            ApiVersionsRequest {
                client_software_name,
                client_software_version,
            }
            .into()
        }),
        proptest::option::of(vec(name())).prop_map(|topics| MetadataRequest { topics }.into()),
        (
            vec(
                (name(), any::<u32>(), any::<u16>(), vec((name(), name()))).prop_map(
                    |(name, partition_count, replication_factor, configs)| CreatableTopic {
                        name,
                        partition_count,
                        replication_factor,
                        configs: configs
                            .into_iter()
                            .map(|(key, value)| ConfigEntry { key, value })
                            .collect(),
                    }
                )
            ),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(|(topics, timeout_ms, validate_only)| CreateTopicsRequest {
                topics,
                timeout_ms,
                validate_only
            }
            .into()),
        (vec(name()), any::<u32>()).prop_map(|(names, timeout_ms)| DeleteTopicsRequest {
            names,
            timeout_ms
        }
        .into()),
        (
            vec(
                (name(), any::<u32>()).prop_map(|(name, partition_count)| PartitionCountChange {
                    name,
                    partition_count
                })
            ),
            any::<u32>(),
            any::<bool>()
        )
            .prop_map(
                |(topics, timeout_ms, validate_only)| CreatePartitionsRequest {
                    topics,
                    timeout_ms,
                    validate_only
                }
                .into()
            ),
        (
            acks(),
            any::<u32>(),
            vec((
                name(),
                vec(
                    // Batches a sender holds separately: zero to three chunks.
                    (any::<u32>(), proptest::collection::vec(blob(), 0..4)).prop_map(
                        |(partition, chunks)| {
                            ProducePartition {
                                partition,
                                records: RecordBatches::new(chunks),
                            }
                        }
                    )
                )
            ))
        )
            .prop_map(|(acks, timeout_ms, topics)| ProduceRequest {
                acks,
                timeout_ms,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| ProduceTopic { name, partitions })
                    .collect(),
            }
            .into()),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            vec((
                name(),
                vec((
                    any::<u32>(),
                    any::<u32>(),
                    any::<u64>(),
                    any::<u32>(),
                    any::<u32>()
                )
                    .prop_map(
                        |(
                            partition,
                            current_leader_epoch,
                            fetch_offset,
                            last_fetched_epoch,
                            partition_max_bytes,
                        )| FetchPartition {
                            partition,
                            current_leader_epoch,
                            fetch_offset,
                            last_fetched_epoch,
                            partition_max_bytes,
                        }
                    ))
            ))
        )
            .prop_map(|(max_wait_ms, min_bytes, max_bytes, topics)| FetchRequest {
                max_wait_ms,
                min_bytes,
                max_bytes,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| FetchTopic { name, partitions })
                    .collect(),
            }
            .into()),
        vec((
            name(),
            vec(
                (any::<u32>(), any::<i64>()).prop_map(|(partition, timestamp)| {
                    ListOffsetsPartition {
                        partition,
                        timestamp,
                    }
                })
            )
        ))
        .prop_map(|topics| ListOffsetsRequest {
            topics: topics
                .into_iter()
                .map(|(name, partitions)| ListOffsetsTopic { name, partitions })
                .collect(),
        }
        .into()),
        proptest::option::of(vec(name())).prop_map(|names| DescribeTopicsRequest { names }.into()),
        (vec((name(), vec((name(), name())))), any::<bool>()).prop_map(
            |(topics, validate_only)| AlterTopicConfigsRequest {
                topics: topics
                    .into_iter()
                    .map(|(name, configs)| TopicConfigChange {
                        name,
                        configs: configs
                            .into_iter()
                            .map(|(key, value)| ConfigEntry { key, value })
                            .collect(),
                    })
                    .collect(),
                validate_only,
            }
            .into()
        ),
    ]
}

fn described_partition() -> impl Strategy<Value = DescribedPartition> {
    (
        error_code(),
        proptest::option::of(name()),
        any::<u32>(),
        any::<i32>(),
        any::<u32>(),
        vec(any::<u32>()),
        vec(any::<u32>()),
        any::<[u64; 4]>(),
    )
        .prop_map(
            |(
                error_code,
                error_message,
                partition,
                leader_id,
                leader_epoch,
                replicas,
                in_sync_replicas,
                [start, high, end, size],
            )| DescribedPartition {
                error_code,
                error_message,
                partition,
                leader_id,
                leader_epoch,
                replicas,
                in_sync_replicas,
                log_start_offset: start,
                high_watermark: high,
                log_end_offset: end,
                size_bytes: size,
            },
        )
}

fn topic_responses() -> impl Strategy<Value = Response> {
    prop_oneof![
        (vec((any::<u16>(), any::<u16>(), any::<u16>())), name()).prop_map(
            |(apis, broker_software_version)| {
                ApiVersionsResponse {
                    apis: apis
                        .into_iter()
                        .map(|(api_key, min_version, max_version)| ApiVersionRange {
                            api_key,
                            min_version,
                            max_version,
                        })
                        .collect(),
                    broker_software_version,
                }
                .into()
            }
        ),
        (
            name(),
            any::<i32>(),
            vec(
                (any::<u32>(), name(), any::<u16>()).prop_map(|(node_id, host, port)| {
                    BrokerMetadata {
                        node_id,
                        host,
                        port,
                    }
                })
            ),
            vec((
                error_code(),
                name(),
                vec((
                    error_code(),
                    any::<u32>(),
                    any::<i32>(),
                    any::<u32>(),
                    vec(any::<u32>()),
                    vec(any::<u32>())
                )
                    .prop_map(
                        |(
                            error_code,
                            partition,
                            leader_id,
                            leader_epoch,
                            replicas,
                            in_sync_replicas,
                        )| PartitionMetadata {
                            error_code,
                            partition,
                            leader_id,
                            leader_epoch,
                            replicas,
                            in_sync_replicas,
                        }
                    ))
            )
                .prop_map(|(error_code, name, partitions)| TopicMetadata {
                    error_code,
                    name,
                    partitions
                }))
        )
            .prop_map(
                |(cluster_id, controller_id, brokers, topics)| MetadataResponse {
                    cluster_id,
                    controller_id,
                    brokers,
                    topics
                }
                .into()
            ),
        vec(topic_result()).prop_map(|topics| CreateTopicsResponse { topics }.into()),
        vec(topic_result()).prop_map(|topics| DeleteTopicsResponse { topics }.into()),
        vec(topic_result()).prop_map(|topics| CreatePartitionsResponse { topics }.into()),
        vec((
            name(),
            vec((
                any::<u32>(),
                error_code(),
                proptest::option::of(name()),
                any::<u64>(),
                any::<i64>(),
                any::<u64>()
            )
                .prop_map(
                    |(
                        partition,
                        error_code,
                        error_message,
                        base_offset,
                        log_append_time,
                        log_start_offset,
                    )| {
                        ProducePartitionResponse {
                            partition,
                            error_code,
                            error_message,
                            base_offset,
                            log_append_time,
                            log_start_offset,
                        }
                    }
                ))
        ))
        .prop_map(|topics| ProduceResponse {
            topics: topics
                .into_iter()
                .map(|(name, partitions)| ProduceTopicResponse { name, partitions })
                .collect(),
        }
        .into()),
        vec((
            name(),
            vec((
                (any::<u32>(), error_code(), any::<u32>()),
                (any::<u64>(), any::<u64>()),
                (any::<u32>(), any::<u64>()),
                blob()
            )
                .prop_map(
                    |(
                        (partition, error_code, leader_epoch),
                        (high_watermark, log_start_offset),
                        (diverging_epoch, diverging_end_offset),
                        records,
                    )| {
                        FetchPartitionResponse {
                            partition,
                            error_code,
                            leader_epoch,
                            high_watermark,
                            log_start_offset,
                            diverging_epoch,
                            diverging_end_offset,
                            records,
                        }
                    }
                ))
        ))
        .prop_map(|topics| FetchResponse {
            topics: topics
                .into_iter()
                .map(|(name, partitions)| FetchTopicResponse { name, partitions })
                .collect(),
        }
        .into()),
        vec((
            name(),
            vec(
                (any::<u32>(), error_code(), any::<i64>(), any::<i64>()).prop_map(
                    |(partition, error_code, timestamp, offset)| ListOffsetsPartitionResponse {
                        partition,
                        error_code,
                        timestamp,
                        offset,
                    }
                )
            )
        ))
        .prop_map(|topics| ListOffsetsResponse {
            topics: topics
                .into_iter()
                .map(|(name, partitions)| ListOffsetsTopicResponse { name, partitions })
                .collect(),
        }
        .into()),
        vec((
            error_code(),
            proptest::option::of(name()),
            name(),
            vec((name(), name())),
            vec(name()),
            vec(described_partition())
        )
            .prop_map(
                |(error_code, error_message, name, configs, overridden_keys, partitions)| {
                    DescribedTopic {
                        error_code,
                        error_message,
                        name,
                        configs: configs
                            .into_iter()
                            .map(|(key, value)| ConfigEntry { key, value })
                            .collect(),
                        overridden_keys,
                        partitions,
                    }
                },
            ))
        .prop_map(|topics| DescribeTopicsResponse { topics }.into()),
        vec(topic_result()).prop_map(|topics| AlterTopicConfigsResponse { topics }.into()),
    ]
}

fn topic_partitions() -> impl Strategy<Value = TopicPartitions> {
    (name(), vec(any::<u32>()))
        .prop_map(|(topic, partitions)| TopicPartitions { topic, partitions })
}

fn group_requests() -> impl Strategy<Value = Request> {
    prop_oneof![
        name().prop_map(|group_id| FindCoordinatorRequest { group_id }.into()),
        (
            (name(), name(), any::<i32>(), proptest::option::of(name())),
            proptest::option::of(vec(name())),
            proptest::option::of(name()),
            proptest::option::of(vec(topic_partitions())),
            any::<i32>(),
        )
            .prop_map(
                |(
                    (group_id, member_id, member_epoch, instance_id),
                    subscribed_topics,
                    assignor,
                    owned_partitions,
                    leaving_epoch,
                )| {
                    ConsumerGroupHeartbeatRequest {
                        group_id,
                        member_id,
                        member_epoch,
                        instance_id,
                        subscribed_topics,
                        assignor,
                        owned_partitions,
                        leaving_epoch,
                    }
                    .into()
                }
            ),
        (
            name(),
            name(),
            any::<i32>(),
            vec((
                name(),
                vec((any::<u32>(), any::<u64>(), proptest::option::of(name())))
            ))
        )
            .prop_map(|(group_id, member_id, member_epoch, topics)| {
                OffsetCommitRequest {
                    group_id,
                    member_id,
                    member_epoch,
                    topics: topics
                        .into_iter()
                        .map(|(name, partitions)| OffsetCommitTopic {
                            name,
                            partitions: partitions
                                .into_iter()
                                .map(|(partition, offset, metadata)| OffsetCommitPartition {
                                    partition,
                                    offset,
                                    metadata,
                                })
                                .collect(),
                        })
                        .collect(),
                }
                .into()
            }),
        (name(), proptest::option::of(vec(topic_partitions())))
            .prop_map(|(group_id, topics)| OffsetFetchRequest { group_id, topics }.into()),
        vec(name()).prop_map(|states_filter| ListGroupsRequest { states_filter }.into()),
        vec(name()).prop_map(|group_ids| DescribeGroupsRequest { group_ids }.into()),
        vec(name()).prop_map(|group_ids| DeleteGroupsRequest { group_ids }.into()),
        (any::<i64>(), any::<i16>()).prop_map(|(producer_id, producer_epoch)| {
            InitProducerIdRequest {
                producer_id,
                producer_epoch,
            }
            .into()
        }),
    ]
}

fn group_member() -> impl Strategy<Value = GroupMember> {
    (
        (name(), proptest::option::of(name()), name(), name()),
        any::<i32>(),
        vec(name()),
        [
            vec(topic_partitions()),
            vec(topic_partitions()),
            vec(topic_partitions()),
        ],
    )
        .prop_map(
            |(
                (member_id, instance_id, client_id, client_host),
                member_epoch,
                subscribed_topics,
                [assignment, pending_revocation, target_assignment],
            )| GroupMember {
                member_id,
                instance_id,
                client_id,
                client_host,
                member_epoch,
                subscribed_topics,
                assignment,
                pending_revocation,
                target_assignment,
            },
        )
}

fn group_offset_topic() -> impl Strategy<Value = GroupOffsetTopic> {
    (
        name(),
        vec((
            any::<u32>(),
            any::<[i64; 3]>(),
            proptest::option::of(name()),
        )),
    )
        .prop_map(|(name, partitions)| GroupOffsetTopic {
            name,
            partitions: partitions
                .into_iter()
                .map(
                    |(partition, [committed_offset, high_watermark, lag], owner)| {
                        GroupOffsetPartition {
                            partition,
                            committed_offset,
                            high_watermark,
                            lag,
                            owner,
                        }
                    },
                )
                .collect(),
        })
}

fn described_group() -> impl Strategy<Value = DescribedGroup> {
    (
        (name(), error_code(), name()),
        any::<[i32; 2]>(),
        name(),
        vec(group_member()),
        vec(group_offset_topic()),
    )
        .prop_map(
            |(
                (group_id, error_code, state),
                [group_epoch, assignment_epoch],
                assignor,
                members,
                offsets,
            )| DescribedGroup {
                group_id,
                error_code,
                state,
                group_epoch,
                assignment_epoch,
                assignor,
                members,
                offsets,
            },
        )
}

fn group_responses() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u32>(), name(), any::<u16>()).prop_map(|(node_id, host, port)| {
            FindCoordinatorResponse {
                node_id,
                host,
                port,
            }
            .into()
        }),
        (
            name(),
            any::<i32>(),
            any::<u32>(),
            proptest::option::of(vec(topic_partitions()))
        )
            .prop_map(
                |(member_id, member_epoch, heartbeat_interval_ms, assignment)| {
                    ConsumerGroupHeartbeatResponse {
                        member_id,
                        member_epoch,
                        heartbeat_interval_ms,
                        assignment,
                    }
                    .into()
                }
            ),
        vec((name(), vec((any::<u32>(), error_code())))).prop_map(|topics| {
            OffsetCommitResponse {
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| OffsetCommitTopicResponse {
                        name,
                        partitions: partitions
                            .into_iter()
                            .map(|(partition, error_code)| PartitionResult {
                                partition,
                                error_code,
                            })
                            .collect(),
                    })
                    .collect(),
            }
            .into()
        }),
        vec((
            name(),
            vec((
                any::<u32>(),
                any::<i64>(),
                proptest::option::of(name()),
                error_code()
            ))
        ))
        .prop_map(|topics| {
            OffsetFetchResponse {
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| OffsetFetchTopic {
                        name,
                        partitions: partitions
                            .into_iter()
                            .map(
                                |(partition, offset, metadata, error_code)| OffsetFetchPartition {
                                    partition,
                                    offset,
                                    metadata,
                                    error_code,
                                },
                            )
                            .collect(),
                    })
                    .collect(),
            }
            .into()
        }),
        vec((name(), name(), any::<u32>())).prop_map(|groups| {
            ListGroupsResponse {
                groups: groups
                    .into_iter()
                    .map(|(group_id, state, member_count)| ListedGroup {
                        group_id,
                        state,
                        member_count,
                    })
                    .collect(),
            }
            .into()
        }),
        vec(described_group()).prop_map(|groups| DescribeGroupsResponse { groups }.into()),
        vec((name(), error_code(), proptest::option::of(name()))).prop_map(|groups| {
            DeleteGroupsResponse {
                groups: groups
                    .into_iter()
                    .map(|(group_id, error_code, error_message)| GroupResult {
                        group_id,
                        error_code,
                        error_message,
                    })
                    .collect(),
            }
            .into()
        }),
        (
            error_code(),
            proptest::option::of(name()),
            any::<i64>(),
            any::<i16>(),
        )
            .prop_map(|(error_code, error_message, producer_id, producer_epoch)| {
                InitProducerIdResponse {
                    error_code,
                    error_message,
                    producer_id,
                    producer_epoch,
                }
                .into()
            }),
    ]
}

/// The newest version of `api` this build supports: the one whose bodies carry every
/// field the strategies fill.
fn newest(api: ApiKey) -> u16 {
    *api.versions().end()
}

fn request_frame(request: &Request, correlation_id: u32, client_id: String) -> Bytes {
    let header = RequestHeader {
        api_key: request.api_key() as u16,
        api_version: newest(request.api_key()),
        correlation_id,
        client_id,
    };
    let mut out = BytesMut::new();
    let length = frame::encode_request(&mut out, &header, request);
    assert_eq!(length + 4, out.len());
    out.freeze()
}

fn concat(chunks: &[Bytes]) -> Vec<u8> {
    chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect()
}

/// Decodes `body` as a request and as a response of `api`, alone and behind a header.
/// Both paths must agree, and a body that decodes must decode the same after encoding it
/// again.
fn decode_arbitrary_body(api: ApiKey, api_version: u16, body: &Bytes) -> Result<(), TestCaseError> {
    let api_key = api as u16;

    let request = Request::decode(api_key, api_version, body);
    let mut payload = BytesMut::new();
    RequestHeader {
        api_key,
        api_version,
        correlation_id: 1,
        client_id: "client".into(),
    }
    .encode(&mut payload);
    payload.extend_from_slice(body);
    let framed = frame::decode_request(&payload.freeze())
        .map(|(_, request)| request)
        .map_err(|(_, error)| error);
    prop_assert_eq!(&framed, &request);
    if let Ok(request) = request {
        let mut encoded = BytesMut::new();
        request.encode_body(api_version, &mut encoded);
        prop_assert_eq!(
            Request::decode(api_key, api_version, &encoded.freeze()),
            Ok(request)
        );
    }

    let response = Response::decode(api_key, api_version, body);
    let mut payload = BytesMut::new();
    ResponseHeader {
        correlation_id: 1,
        error_code: ErrorCode::None,
    }
    .encode(&mut payload);
    payload.extend_from_slice(body);
    let framed =
        frame::decode_response(&payload.freeze(), api_key, api_version).map(|(_, result)| result);
    prop_assert_eq!(&framed, &response.clone().map(Ok));
    if let Ok(response) = response {
        let mut encoded = BytesMut::new();
        response.encode_body(api_version, &mut encoded);
        prop_assert_eq!(
            Response::decode(api_key, api_version, &encoded.freeze()),
            Ok(response)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(request in requests(), correlation_id: u32, client_id in name()) {
        let frame = request_frame(&request, correlation_id, client_id.clone());
        let (header, decoded) = frame::decode_request(&frame.slice(4..)).unwrap();
        prop_assert_eq!(header.correlation_id, correlation_id);
        prop_assert_eq!(header.client_id, client_id);
        prop_assert_eq!(decoded, request);
    }

    #[test]
    fn requests_encode_the_same_through_both_sinks(request in requests(), correlation_id: u32) {
        let flat = request_frame(&request, correlation_id, "client".into());
        let header = RequestHeader {
            api_key: request.api_key() as u16,
            api_version: newest(request.api_key()),
            correlation_id,
            client_id: "client".into(),
        };
        let mut vectored = VectoredBuf::new();
        frame::encode_request(&mut vectored, &header, &request);
        prop_assert_eq!(vectored.written(), flat.len());
        prop_assert_eq!(concat(&vectored.into_chunks()), flat.to_vec());
    }

    #[test]
    fn responses_round_trip_through_both_sinks(response in responses(), correlation_id: u32) {
        let api_version = newest(response.api_key());
        let mut flat = BytesMut::new();
        frame::encode_response(&mut flat, correlation_id, api_version, &response);
        let mut vectored = VectoredBuf::new();
        frame::encode_response(&mut vectored, correlation_id, api_version, &response);
        prop_assert_eq!(vectored.written(), flat.len());
        prop_assert_eq!(concat(&vectored.into_chunks()), flat.to_vec());

        let payload = flat.freeze().slice(4..);
        let (id, decoded) =
            frame::decode_response(&payload, response.api_key() as u16, api_version).unwrap();
        prop_assert_eq!(id, correlation_id);
        prop_assert_eq!(decoded.unwrap(), response);
    }

    #[test]
    fn every_truncated_request_is_an_error(request in requests()) {
        let frame = request_frame(&request, 7, "client".into());
        let payload = frame.slice(4..);
        for length in 0..payload.len() {
            prop_assert!(frame::decode_request(&payload.slice(..length)).is_err(), "prefix {} decoded", length);
        }
    }

    #[test]
    fn every_truncated_response_is_an_error(response in responses()) {
        let api = response.api_key();
        for api_version in api.versions() {
            let mut out = BytesMut::new();
            frame::encode_response(&mut out, 7, api_version, &response);
            let payload = out.freeze().slice(4..);
            for length in 0..payload.len() {
                prop_assert!(frame::decode_response(&payload.slice(..length), api as u16, api_version).is_err());
            }
        }
    }

    #[test]
    fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let payload = Bytes::from(bytes);
        let _ = frame::decode_request(&payload);
        for api in ApiKey::ALL {
            // One version past the newest takes the refusal path too.
            for api_version in *api.versions().start()..=api.versions().end() + 1 {
                decode_arbitrary_body(*api, api_version, &payload)?;
            }
        }
    }
}

#[test]
fn error_responses_carry_code_and_message() {
    let mut out = BytesMut::new();
    frame::encode_error_response(
        &mut out,
        9,
        ErrorCode::UnsupportedVersion,
        "Produce v9 is not supported",
    );
    let payload = out.freeze().slice(4..);
    let (id, result) = frame::decode_response(&payload, 5, 0).unwrap();
    assert_eq!(id, 9);
    assert_eq!(
        result.unwrap_err(),
        (
            ErrorCode::UnsupportedVersion,
            "Produce v9 is not supported".to_owned()
        )
    );
}

#[test]
fn long_error_messages_are_cut_at_a_char_boundary() {
    let message = "é".repeat(40_000);
    let mut out = BytesMut::new();
    frame::encode_error_response(&mut out, 1, ErrorCode::Unknown, &message);
    let (_, result) = frame::decode_response(&out.freeze().slice(4..), 1, 0).unwrap();
    let (_, cut) = result.unwrap_err();
    assert!(cut.len() <= strata_protocol::wire::STRING_BYTES_MAX && message.starts_with(&cut));
}

#[test]
fn unknown_api_and_version_are_named_errors_that_keep_the_header() {
    let request = Request::Metadata(MetadataRequest { topics: None });
    for (api_key, api_version, expected) in [
        (999, 0, ErrorCode::UnknownApiKey),
        (1, 99, ErrorCode::UnsupportedVersion),
    ] {
        let header = RequestHeader {
            api_key,
            api_version,
            correlation_id: 5,
            client_id: String::new(),
        };
        let mut out = BytesMut::new();
        frame::write_frame(&mut out, |out| {
            Wire::encode(&header, out);
            request.encode_body(0, out);
        });
        let (kept, error) = frame::decode_request(&out.freeze().slice(4..)).unwrap_err();
        assert_eq!(kept.unwrap().correlation_id, 5);
        assert_eq!(error.error_code(), expected);
    }
}

#[test]
fn trailing_bytes_after_a_body_are_rejected() {
    let mut frame = request_frame(
        &Request::Metadata(MetadataRequest { topics: None }),
        1,
        "c".into(),
    )
    .to_vec();
    frame.push(0);
    let (_, error) = frame::decode_request(&Bytes::from(frame).slice(4..)).unwrap_err();
    assert!(matches!(
        error,
        strata_protocol::DecodeError::TrailingBytes { count: 1, .. }
    ));
}

#[test]
fn versions_negotiate_to_the_highest_shared_version() {
    use strata_protocol::api::{negotiate, supported_versions};
    let ours = supported_versions();
    assert_eq!(ours.len(), ApiKey::ALL.len());
    assert_eq!(negotiate(ApiKey::Fetch, &ours), Some(1));
    assert_eq!(negotiate(ApiKey::Produce, &ours), Some(0));
    let newer = [ApiVersionRange {
        api_key: ApiKey::Fetch as u16,
        min_version: 2,
        max_version: 4,
    }];
    assert_eq!(negotiate(ApiKey::Fetch, &newer), None);
    assert_eq!(negotiate(ApiKey::Produce, &newer), None);
    // A broker that knows only Fetch version 0 is sent version 0.
    let older = [ApiVersionRange {
        api_key: ApiKey::Fetch as u16,
        min_version: 0,
        max_version: 0,
    }];
    assert_eq!(negotiate(ApiKey::Fetch, &older), Some(0));
}

#[test]
fn describe_cluster_is_laid_out_as_the_protocol_document_draws_it() {
    let response = DescribeClusterResponse {
        error_code: ErrorCode::None,
        error_message: None,
        controller: ClusterController {
            leader: 1,
            term: 4,
            voters: vec![ClusterVoter { id: 1, lag: 0 }],
        },
        brokers: vec![ClusterBroker {
            id: 1,
            address: "127.0.0.1:9400".into(),
            state: BROKER_STATE_ALIVE,
            incarnation: 7,
            applied_lag: 0,
        }],
        partitions: ClusterPartitions {
            total: 12,
            offline: 0,
            under_replicated: 0,
        },
    };
    let mut body = BytesMut::new();
    Response::from(response.clone()).encode_body(0, &mut body);
    let mut expected = vec![0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4];
    expected.extend([0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend([0, 0, 0, 1, 0, 0, 0, 1, 0x00, 0x0e]);
    expected.extend(b"127.0.0.1:9400");
    expected.extend([0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend([0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(body.to_vec(), expected);
    assert_eq!(body.len(), 85);
    assert_eq!(
        Response::decode(ApiKey::DescribeCluster as u16, 0, &body.freeze()),
        Ok(Response::DescribeCluster(Box::new(response)))
    );
    let mut request = BytesMut::new();
    Request::from(DescribeClusterRequest {}).encode_body(0, &mut request);
    assert!(request.is_empty());
    assert_eq!(ApiKey::DescribeCluster as u16, 18);
    assert!(Request::decode(18, 0, &Bytes::from_static(&[0])).is_err());
}

/// Encodes a request body and checks it against `expected`, then decodes it back.
fn assert_request_layout(request: Request, expected: &[u8]) {
    let mut body = BytesMut::new();
    request.encode_body(0, &mut body);
    assert_eq!(body.to_vec(), expected, "{:?}", request.api_key());
    assert_eq!(
        Request::decode(request.api_key() as u16, 0, &body.freeze()),
        Ok(request)
    );
}

/// As [`assert_request_layout`], for a response body.
fn assert_response_layout(response: Response, expected: &[u8]) {
    let mut body = BytesMut::new();
    response.encode_body(0, &mut body);
    assert_eq!(body.to_vec(), expected, "{:?}", response.api_key());
    assert_eq!(
        Response::decode(response.api_key() as u16, 0, &body.freeze()),
        Ok(response)
    );
}

#[test]
fn replica_fetch_is_laid_out_as_the_protocol_document_draws_it() {
    assert_eq!(ApiKey::ReplicaFetch as u16, 19);
    let request = ReplicaFetchRequest {
        replica_id: 2,
        replica_incarnation: 3,
        max_wait_ms: 500,
        max_bytes: 1 << 20,
        topics: vec![ReplicaFetchTopic {
            name: "t".into(),
            topic_id: 7,
            partitions: vec![ReplicaFetchPartition {
                partition: 0,
                current_leader_epoch: 4,
                fetch_offset: 100,
                last_fetched_epoch: 4,
                durable_offset: 96,
                partition_max_bytes: 1 << 20,
            }],
        }],
    };
    let mut expected = vec![0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0x01, 0xf4];
    expected.extend([0x00, 0x10, 0, 0, 0, 0, 0, 1, 0x00, 0x01, b't']);
    expected.extend([0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4]);
    expected.extend([0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 4]);
    expected.extend([0, 0, 0, 0, 0, 0, 0, 96, 0x00, 0x10, 0, 0]);
    assert_eq!(expected.len(), 71);
    assert_request_layout(request.into(), &expected);

    let diverged = ReplicaFetchResponse {
        topics: vec![ReplicaFetchTopicResponse {
            name: "t".into(),
            partitions: vec![ReplicaFetchPartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                leader_epoch: 5,
                high_watermark: 90,
                log_start_offset: 0,
                log_end_offset: 120,
                diverging_epoch: 4,
                diverging_end_offset: 95,
                records: Bytes::new(),
            }],
        }],
    };
    let mut expected = vec![0, 0, 0, 1, 0x00, 0x01, b't', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    expected.extend([0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 90]);
    expected.extend([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 120]);
    expected.extend([0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 95, 0, 0, 0, 0]);
    assert_eq!(expected.len(), 61);
    assert_response_layout(diverged.into(), &expected);
    assert_eq!(NO_EPOCH.to_be_bytes(), [0xff; 4]);
}

#[test]
fn elect_leaders_is_laid_out_as_the_protocol_document_draws_it() {
    assert_eq!(ApiKey::ElectLeaders as u16, 20);
    let request = ElectLeadersRequest {
        unclean: false,
        topics: vec![ElectLeadersTopic {
            name: "orders".into(),
            partitions: vec![0, 2],
        }],
    };
    let mut expected = vec![0x00, 0, 0, 0, 1, 0x00, 0x06];
    expected.extend(b"orders");
    expected.extend([0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2]);
    assert_eq!(expected.len(), 25);
    assert_request_layout(request.into(), &expected);
    assert!(Request::decode(20, 0, &Bytes::from_static(&[2, 0, 0, 0, 0])).is_err());

    let elected = |partition, error_code, leader, leader_epoch| ElectLeadersPartitionResponse {
        partition,
        error_code,
        error_message: None,
        leader,
        leader_epoch,
    };
    let response = ElectLeadersResponse {
        topics: vec![ElectLeadersTopicResponse {
            name: "orders".into(),
            partitions: vec![
                elected(0, ErrorCode::None, 1, 3),
                elected(2, ErrorCode::ElectionNotNeeded, 1, 2),
            ],
        }],
    };
    let mut expected = vec![0, 0, 0, 1, 0x00, 0x06];
    expected.extend(b"orders");
    expected.extend([0, 0, 0, 2]);
    expected.extend([0, 0, 0, 0, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 3]);
    expected.extend([0, 0, 0, 2, 0x00, 0x2e, 0xff, 0xff, 0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(expected.len(), 48);
    assert_response_layout(response.into(), &expected);
    assert_eq!(NO_ELECTED_LEADER.to_be_bytes(), [0xff; 4]);
}

#[test]
fn alter_partition_reassignments_is_laid_out_as_the_protocol_document_draws_it() {
    assert_eq!(ApiKey::AlterPartitionReassignments as u16, 21);
    let request = AlterPartitionReassignmentsRequest {
        topics: vec![ReassignableTopic {
            name: "orders".into(),
            partitions: vec![ReassignablePartition {
                partition: 0,
                replicas: vec![2, 3],
            }],
        }],
    };
    let mut expected = vec![0, 0, 0, 1, 0x00, 0x06];
    expected.extend(b"orders");
    expected.extend([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]);
    assert_eq!(expected.len(), 32);
    assert_request_layout(request.into(), &expected);

    let response = AlterPartitionReassignmentsResponse {
        topics: vec![ReassignableTopicResponse {
            name: "orders".into(),
            partitions: vec![ReassignablePartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                error_message: None,
            }],
        }],
    };
    let mut expected = vec![0, 0, 0, 1, 0x00, 0x06];
    expected.extend(b"orders");
    expected.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x00, 0x00, 0xff, 0xff]);
    assert_eq!(expected.len(), 24);
    assert_response_layout(response.into(), &expected);
}

#[test]
fn replica_fetch_records_stay_shared_in_a_vectored_frame() {
    // The broker writes responses from a `VectoredBuf` and sends a chunk that is a
    // segment's bytes with `sendfile`: a follower's batches must be that chunk, as a
    // consumer's are.
    let records = Bytes::from(vec![7u8; 64 << 10]);
    let response = Response::from(ReplicaFetchResponse {
        topics: vec![ReplicaFetchTopicResponse {
            name: "t".into(),
            partitions: vec![ReplicaFetchPartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                leader_epoch: 0,
                high_watermark: 10,
                log_start_offset: 0,
                log_end_offset: 10,
                diverging_epoch: NO_EPOCH,
                diverging_end_offset: 0,
                records: records.clone(),
            }],
        }],
    });
    let mut out = VectoredBuf::new();
    frame::encode_response(&mut out, 1, 0, &response);
    let chunks = out.into_chunks();
    assert!(
        chunks
            .iter()
            .any(|chunk| std::ptr::eq(chunk.as_ref(), records.as_ref())),
        "the records were copied"
    );
}

fn fetch_request_of(current_leader_epoch: u32, last_fetched_epoch: u32) -> Request {
    Request::from(FetchRequest {
        max_wait_ms: 500,
        min_bytes: 1,
        max_bytes: 1 << 20,
        topics: vec![FetchTopic {
            name: "t".into(),
            partitions: vec![FetchPartition {
                partition: 2,
                current_leader_epoch,
                fetch_offset: 7,
                last_fetched_epoch,
                partition_max_bytes: 4096,
            }],
        }],
    })
}

fn fetch_response_of(
    leader_epoch: u32,
    diverging_epoch: u32,
    diverging_end_offset: u64,
) -> Response {
    Response::from(FetchResponse {
        topics: vec![FetchTopicResponse {
            name: "t".into(),
            partitions: vec![FetchPartitionResponse {
                partition: 2,
                error_code: ErrorCode::None,
                leader_epoch,
                high_watermark: 9,
                log_start_offset: 0,
                diverging_epoch,
                diverging_end_offset,
                records: Bytes::from_static(&[0xAB, 0xCD]),
            }],
        }],
    })
}

/// Encodes `request` at `api_version`, checks the bytes, and decodes them back.
fn fetch_request_layout(request: &Request, api_version: u16, expected: &[u8]) -> Request {
    let mut body = BytesMut::new();
    request.encode_body(api_version, &mut body);
    assert_eq!(body.to_vec(), expected, "version {api_version}");
    Request::decode(ApiKey::Fetch as u16, api_version, &body.freeze()).unwrap()
}

/// As [`fetch_request_layout`], for a response.
fn fetch_response_layout(response: &Response, api_version: u16, expected: &[u8]) -> Response {
    let mut body = BytesMut::new();
    response.encode_body(api_version, &mut body);
    assert_eq!(body.to_vec(), expected, "version {api_version}");
    Response::decode(ApiKey::Fetch as u16, api_version, &body.freeze()).unwrap()
}

#[test]
fn fetch_v1_adds_leader_epochs_and_v0_keeps_its_layout() {
    assert_eq!(ApiKey::Fetch.versions(), 0..=1);
    let head = [
        0, 0, 1, 0xF4, 0, 0, 0, 1, 0, 0x10, 0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1,
    ];
    let request = fetch_request_of(4, 3);

    let mut v0 = head.to_vec();
    v0.extend([0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0x10, 0]);
    // Version 0 has no epochs: they come back as "not given".
    assert_eq!(
        fetch_request_layout(&request, 0, &v0),
        fetch_request_of(NO_EPOCH, NO_EPOCH)
    );

    let mut v1 = head.to_vec();
    v1.extend([0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 7]);
    v1.extend([0, 0, 0, 3, 0, 0, 0x10, 0]);
    assert_eq!(fetch_request_layout(&request, 1, &v1), request);

    let response = fetch_response_of(5, 3, 6);
    let head = [0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 1, 0, 0, 0, 2, 0, 0];
    let offsets = [0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0];
    let records = [0, 0, 0, 2, 0xAB, 0xCD];

    let v0 = [&head[..], &offsets, &records].concat();
    assert_eq!(
        fetch_response_layout(&response, 0, &v0),
        fetch_response_of(NO_EPOCH, NO_EPOCH, 0)
    );

    let diverging = [0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 6];
    let v1 = [&head[..], &[0, 0, 0, 5], &offsets, &diverging, &records].concat();
    assert_eq!(fetch_response_layout(&response, 1, &v1), response);
}

#[test]
fn a_fetch_response_keeps_its_records_by_reference_at_every_version() {
    let records = Bytes::from(vec![7u8; 4096]);
    let response = Response::from(FetchResponse {
        topics: vec![FetchTopicResponse {
            name: "t".into(),
            partitions: vec![FetchPartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                leader_epoch: 1,
                high_watermark: 10,
                log_start_offset: 0,
                diverging_epoch: NO_EPOCH,
                diverging_end_offset: 0,
                records: records.clone(),
            }],
        }],
    });
    for api_version in ApiKey::Fetch.versions() {
        let mut out = VectoredBuf::new();
        let length = frame::encode_response(&mut out, 1, api_version, &response);
        assert_eq!(
            length,
            frame::response_payload_bytes(&response, api_version)
        );
        assert!(
            out.into_chunks()
                .iter()
                .any(|chunk| std::ptr::eq(chunk.as_ref(), records.as_ref())),
            "version {api_version} copied the records"
        );
    }
}
