//! The error codes a client receives inside a response that succeeded as a whole: per
//! partition (produce, fetch, list offsets, commits), per topic (admin results, metadata)
//! and per group. `strata_errors_total` counts these beside whole-request errors, so a
//! produce whose every partition failed is not a silent success in the metrics.

use strata_protocol::{ErrorCode, Response};

/// Calls `each` with every error code in `response` that is not `None`, in order.
pub fn for_each_error(response: &Response, mut each: impl FnMut(ErrorCode)) {
    let mut note = |code: ErrorCode| {
        if !code.is_ok() {
            each(code);
        }
    };
    match response {
        Response::Metadata(body) => {
            for topic in &body.topics {
                note(topic.error_code);
                topic.partitions.iter().for_each(|p| note(p.error_code));
            }
        }
        Response::CreateTopics(body) => body.topics.iter().for_each(|t| note(t.error_code)),
        Response::DeleteTopics(body) => body.topics.iter().for_each(|t| note(t.error_code)),
        Response::CreatePartitions(body) => body.topics.iter().for_each(|t| note(t.error_code)),
        Response::AlterTopicConfigs(body) => body.topics.iter().for_each(|t| note(t.error_code)),
        Response::DescribeTopics(body) => body.topics.iter().for_each(|t| note(t.error_code)),
        Response::Produce(body) => {
            for topic in &body.topics {
                topic.partitions.iter().for_each(|p| note(p.error_code));
            }
        }
        Response::Fetch(body) => {
            for topic in &body.topics {
                topic.partitions.iter().for_each(|p| note(p.error_code));
            }
        }
        Response::ListOffsets(body) => {
            for topic in &body.topics {
                topic.partitions.iter().for_each(|p| note(p.error_code));
            }
        }
        Response::OffsetCommit(body) => {
            for topic in &body.topics {
                topic.partitions.iter().for_each(|p| note(p.error_code));
            }
        }
        Response::OffsetFetch(body) => {
            for topic in &body.topics {
                topic.partitions.iter().for_each(|p| note(p.error_code));
            }
        }
        Response::DescribeGroups(body) => body.groups.iter().for_each(|g| note(g.error_code)),
        Response::DeleteGroups(body) => body.groups.iter().for_each(|g| note(g.error_code)),
        Response::InitProducerId(body) => note(body.error_code),
        Response::DescribeCluster(body) => note(body.error_code),
        // ApiVersions, FindCoordinator, ConsumerGroupHeartbeat and ListGroups carry no
        // error code: they fail as a whole. A new API with codes in its body goes above.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::messages::{
        CreateTopicsResponse, ProducePartitionResponse, ProduceResponse, ProduceTopicResponse,
        TopicResult,
    };

    use super::*;

    fn codes(response: &Response) -> Vec<ErrorCode> {
        let mut codes = Vec::new();
        for_each_error(response, |code| codes.push(code));
        codes
    }

    fn produced(partition: u32, error_code: ErrorCode) -> ProducePartitionResponse {
        ProducePartitionResponse {
            partition,
            error_code,
            error_message: None,
            base_offset: 0,
            log_append_time: -1,
            log_start_offset: 0,
        }
    }

    #[test]
    fn every_failed_partition_counts_and_successes_do_not() {
        let response = Response::Produce(ProduceResponse {
            topics: vec![ProduceTopicResponse {
                name: "t".into(),
                partitions: vec![
                    produced(0, ErrorCode::None),
                    produced(1, ErrorCode::UnknownTopicOrPartition),
                    produced(2, ErrorCode::MessageTooLarge),
                ],
            }],
        });
        assert_eq!(
            codes(&response),
            [
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::MessageTooLarge
            ]
        );
    }

    #[test]
    fn admin_results_count_per_topic() {
        let result = |name: &str, error_code| TopicResult {
            name: name.into(),
            error_code,
            error_message: None,
        };
        let response = Response::CreateTopics(CreateTopicsResponse {
            topics: vec![
                result("a", ErrorCode::TopicAlreadyExists),
                result("b", ErrorCode::None),
            ],
        });
        assert_eq!(codes(&response), [ErrorCode::TopicAlreadyExists]);
    }
}
