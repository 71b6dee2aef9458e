//! What one request may name, and how large its response may be. Each handler checks
//! these before any per-entry work or allocation, so a request's cost is bounded by the
//! limits, not by what a client managed to fit in a frame.
//!
//! - Topics: at most `request_topics_max` per request, of any API.
//! - Partition entries: at most `request_partitions_max` per request, over all topics.
//! - Group ids (and ListGroups states): at most `request_groups_max`.
//! - Names: a topic-partition request ([`check_topic_partitions`]) naming a topic longer
//!   than any topic can be is refused with `InvalidTopic`, since some handlers copy or
//!   hash the name once per partition entry.
//! - Repeats: a request that names a topic twice, or a partition of a topic twice, is
//!   refused with `InvalidRequest` ([`check_topic_partitions`], [`check_distinct_topics`]),
//!   except where naming one again is harmless and is answered once ([`distinct`]:
//!   Metadata, DescribeTopics, DescribeGroups, DeleteGroups).
//! - Responses: at most `frame_bytes_max` bytes, measured before they are built where
//!   one request could make them large (Metadata, DescribeTopics).

use std::collections::HashSet;

use strata_protocol::limits::TOPIC_NAME_BYTES_MAX;
use strata_protocol::messages::{
    FetchTopic, ListOffsetsTopic, OffsetCommitTopic, ProduceTopic, ReassignableTopic,
    TopicPartitions,
};
use strata_protocol::{ErrorCode, shown};

use super::Reply;
use crate::config::Config;

/// Refuses `count` entries over `limit`, the config key `key`; `what` names the entries.
fn within(count: usize, limit: usize, key: &str, what: &str) -> Result<(), Reply> {
    if count > limit {
        return Err(Reply::Error(
            ErrorCode::LimitExceeded,
            format!("the request names {count} {what}; {key} is {limit}"),
        ));
    }
    Ok(())
}

/// Refuses a request naming more than `request_topics_max` topics.
pub fn check_topic_count(config: &Config, count: usize) -> Result<(), Reply> {
    within(
        count,
        config.request_topics_max,
        "request_topics_max",
        "topics",
    )
}

/// Refuses a request naming more than `request_partitions_max` partition entries.
pub fn check_partition_count(config: &Config, count: usize) -> Result<(), Reply> {
    within(
        count,
        config.request_partitions_max,
        "request_partitions_max",
        "partitions",
    )
}

/// Refuses a request naming more than `request_groups_max` of `what` (group ids, or
/// group states).
pub fn check_group_count(config: &Config, count: usize, what: &str) -> Result<(), Reply> {
    within(count, config.request_groups_max, "request_groups_max", what)
}

/// A request's entry for one topic: its name and its partition indexes.
pub trait TopicEntry {
    /// The topic name.
    fn name(&self) -> &str;
    /// How many partition entries it has.
    fn partition_count(&self) -> usize;
    /// Its partition indexes, in request order.
    fn partitions(&self) -> impl Iterator<Item = u32>;
}

macro_rules! topic_entry {
    ($($entry:ty: $name:ident, |$partition:ident| $index:expr;)*) => {$(
        impl TopicEntry for $entry {
            fn name(&self) -> &str {
                &self.$name
            }

            fn partition_count(&self) -> usize {
                self.partitions.len()
            }

            fn partitions(&self) -> impl Iterator<Item = u32> {
                self.partitions.iter().map(|$partition| $index)
            }
        }
    )*};
}

topic_entry! {
    ProduceTopic: name, |partition| partition.partition;
    FetchTopic: name, |partition| partition.partition;
    ListOffsetsTopic: name, |partition| partition.partition;
    OffsetCommitTopic: name, |partition| partition.partition;
    TopicPartitions: topic, |partition| *partition;
    ReassignableTopic: name, |partition| partition.partition;
}

/// Checks a request's topics and their partitions: at most `request_topics_max` topics
/// and `request_partitions_max` partition entries, names no longer than a topic's can
/// be, each topic named once and each partition once within its topic. Costs one pass
/// over the names, so it runs before anything is done per entry.
///
/// # Errors
/// The reply: `LimitExceeded` naming the limit, `InvalidTopic` for a name too long, or
/// `InvalidRequest` naming the repeat.
pub fn check_topic_partitions<T: TopicEntry>(config: &Config, topics: &[T]) -> Result<(), Reply> {
    check_topic_count(config, topics.len())?;
    let partition_count = topics.iter().map(TopicEntry::partition_count).sum();
    check_partition_count(config, partition_count)?;
    if let Some(long) = topics
        .iter()
        .map(|topic| topic.name().len())
        .find(|length| *length > TOPIC_NAME_BYTES_MAX)
    {
        return Err(Reply::Error(
            ErrorCode::InvalidTopic,
            format!(
                "the request names a topic of {long} bytes; topic names are at most {TOPIC_NAME_BYTES_MAX} bytes"
            ),
        ));
    }
    check_distinct_topics(topics.iter().map(TopicEntry::name))?;
    let mut indexes = HashSet::new();
    for topic in topics {
        indexes.clear();
        if let Some(repeated) = topic.partitions().find(|index| !indexes.insert(*index)) {
            return Err(Reply::Error(
                ErrorCode::InvalidRequest,
                format!(
                    "the request names partition {repeated} of topic '{}' twice",
                    shown(topic.name())
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses a request that names a topic twice.
///
/// # Errors
/// The reply: `InvalidRequest` naming the topic.
pub fn check_distinct_topics<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), Reply> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(Reply::Error(
                ErrorCode::InvalidRequest,
                format!("the request names topic '{}' twice", shown(name)),
            ));
        }
    }
    Ok(())
}

/// `names` without repeats, each kept where it first appears.
pub fn distinct(names: Vec<String>) -> Vec<String> {
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(names.len());
        names
            .iter()
            .map(|name| seen.insert(name.as_str()))
            .collect()
    };
    names
        .into_iter()
        .zip(first)
        .filter_map(|(name, first)| first.then_some(name))
        .collect()
}

/// Refuses a response payload of `bytes` over `limit`, the limit named `key`.
pub fn check_response_bytes(bytes: usize, limit: usize, key: &str) -> Result<(), Reply> {
    if bytes > limit {
        return Err(Reply::Error(
            ErrorCode::LimitExceeded,
            format!("the response would be {bytes} bytes; {key} is {limit}"),
        ));
    }
    Ok(())
}

/// Refuses a response payload of `bytes` over `frame_bytes_max`.
pub fn check_response_frame(config: &Config, bytes: usize) -> Result<(), Reply> {
    check_response_bytes(bytes, config.frame_bytes_max, "frame_bytes_max")
}

#[cfg(test)]
mod tests {
    use strata_protocol::messages::{FetchPartition, NO_EPOCH, ProducePartition};

    use super::*;

    fn refusal(result: Result<(), Reply>) -> (ErrorCode, String) {
        match result {
            Err(Reply::Error(code, message)) => (code, message),
            other => panic!("not refused: {other:?}"),
        }
    }

    fn fetch_topic(name: &str, partitions: &[u32]) -> FetchTopic {
        FetchTopic {
            name: name.into(),
            partitions: partitions
                .iter()
                .map(|&partition| FetchPartition {
                    partition,
                    current_leader_epoch: NO_EPOCH,
                    fetch_offset: 0,
                    last_fetched_epoch: NO_EPOCH,
                    partition_max_bytes: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn counts_over_their_limits_are_refused_naming_the_key() {
        let config = Config {
            request_topics_max: 2,
            request_partitions_max: 3,
            ..Config::default()
        };
        let topics = [
            fetch_topic("a", &[0]),
            fetch_topic("b", &[0]),
            fetch_topic("c", &[0]),
        ];
        assert_eq!(
            refusal(check_topic_partitions(&config, &topics)),
            (
                ErrorCode::LimitExceeded,
                "the request names 3 topics; request_topics_max is 2".into()
            )
        );
        let topics = [fetch_topic("a", &[0, 1]), fetch_topic("b", &[0, 1])];
        assert_eq!(
            refusal(check_topic_partitions(&config, &topics)),
            (
                ErrorCode::LimitExceeded,
                "the request names 4 partitions; request_partitions_max is 3".into()
            )
        );
        let topics = [fetch_topic("a", &[0, 1]), fetch_topic("b", &[0])];
        assert!(check_topic_partitions(&config, &topics).is_ok());
    }

    #[test]
    fn a_name_no_topic_can_have_is_refused_by_its_length() {
        let longest = "t".repeat(TOPIC_NAME_BYTES_MAX);
        assert!(check_topic_partitions(&Config::default(), &[fetch_topic(&longest, &[0])]).is_ok());
        let long = "t".repeat(TOPIC_NAME_BYTES_MAX + 1);
        assert_eq!(
            refusal(check_topic_partitions(
                &Config::default(),
                &[fetch_topic(&long, &[0])]
            )),
            (
                ErrorCode::InvalidTopic,
                "the request names a topic of 250 bytes; topic names are at most 249 bytes".into()
            )
        );
    }

    #[test]
    fn a_repeated_topic_or_partition_is_refused_quoting_the_name_cut_short() {
        let config = Config::default();
        let long = "t".repeat(TOPIC_NAME_BYTES_MAX);
        let topics = [fetch_topic(&long, &[0]), fetch_topic(&long, &[1])];
        let (code, message) = refusal(check_topic_partitions(&config, &topics));
        assert_eq!(code, ErrorCode::InvalidRequest);
        assert!(message.ends_with("…' twice"), "{message}");
        assert!(message.len() < 120, "{message}");
        let produce = [ProduceTopic {
            name: "t".into(),
            partitions: vec![
                ProducePartition {
                    partition: 4,
                    records: Default::default(),
                };
                2
            ],
        }];
        assert_eq!(
            refusal(check_topic_partitions(&config, &produce)),
            (
                ErrorCode::InvalidRequest,
                "the request names partition 4 of topic 't' twice".into()
            )
        );
        let same_partition_other_topic = [fetch_topic("a", &[0, 1]), fetch_topic("b", &[1, 0])];
        assert!(check_topic_partitions(&config, &same_partition_other_topic).is_ok());
    }

    #[test]
    fn distinct_keeps_first_appearances_in_order() {
        let names = ["b", "a", "b", "c", "a"].map(String::from).to_vec();
        assert_eq!(distinct(names), ["b", "a", "c"]);
    }

    #[test]
    fn a_response_over_the_frame_limit_is_refused_with_both_sizes() {
        let config = Config {
            frame_bytes_max: 100,
            ..Config::default()
        };
        assert!(check_response_frame(&config, 100).is_ok());
        assert_eq!(
            refusal(check_response_frame(&config, 101)),
            (
                ErrorCode::LimitExceeded,
                "the response would be 101 bytes; frame_bytes_max is 100".into()
            )
        );
    }
}
