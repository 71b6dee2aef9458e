//! The checks a topic admin change passes before it is proposed to the metadata quorum,
//! against the metadata this broker applied: names, partition counts within
//! `topic_partitions_max` and `partitions_max`, the replication factor, and configs
//! within the broker's limits. The quorum checks again what a race could change (a name
//! taken meanwhile), so a stale view never lets a bad change in.

use strata_protocol::ErrorCode;
use strata_protocol::limits::{check_topic_name, message_fits_frame, topic_collision_key};
use strata_protocol::messages::ConfigEntry;

use super::{AdminError, unknown_topic};
use crate::cluster::metadata::{Image, TopicRecord};
use crate::config::{Config, TopicConfig};
use crate::group::store::OFFSETS_LOG;

/// What a create becomes once checked: the effective config and replication factor.
#[derive(Debug)]
pub struct CheckedCreate {
    /// The broker's defaults with the request's overrides.
    pub config: TopicConfig,
    /// The factor asked for, or for 0 `default_replication_factor` (at most the configured
    /// brokers).
    pub replication_factor: u16,
}

/// Checks a new topic `name` with `count` partitions.
///
/// # Errors
/// `InvalidTopic`, `TopicAlreadyExists`, `InvalidPartitions`, `InvalidReplicationFactor`
/// or `InvalidConfig`.
pub fn check_create(
    config: &Config,
    image: &Image,
    name: &str,
    count: u32,
    replication_factor: u16,
    overrides: &[ConfigEntry],
) -> Result<CheckedCreate, AdminError> {
    check_topic_name(name)?;
    check_new_name(image, name)?;
    check_partition_budget(config, image, name, count, count)?;
    let replication_factor = match replication_factor {
        0 => config.default_replication_factor_clamped(),
        factor => factor,
    };
    let alive = image.alive_brokers().len();
    if alive == 0 {
        return Err(AdminError::new(
            ErrorCode::LeaderNotAvailable,
            "no broker is alive to place the topic on; retry once brokers have registered",
        ));
    }
    if usize::from(replication_factor) > alive {
        return Err(AdminError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} needs that many alive brokers; the cluster has {alive}"
            ),
        ));
    }
    Ok(CheckedCreate {
        config: checked_config(config, &config.topic_defaults, overrides)?,
        replication_factor,
    })
}

/// Checks growing topic `name` to `count` partitions.
///
/// # Errors
/// `UnknownTopicOrPartition` or `InvalidPartitions`.
pub fn check_grow(
    config: &Config,
    image: &Image,
    name: &str,
    count: u32,
) -> Result<(), AdminError> {
    let current = existing(image, name)?.partitions.len() as u32;
    if count <= current {
        return Err(AdminError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "topic '{name}' has {current} partitions; the new count {count} must be larger"
            ),
        ));
    }
    check_partition_budget(config, image, name, count, count - current)
}

/// Checks `entries` on topic `name`; returns the config they give.
///
/// # Errors
/// `UnknownTopicOrPartition` or `InvalidConfig`.
pub fn check_alter(
    config: &Config,
    image: &Image,
    name: &str,
    entries: &[ConfigEntry],
) -> Result<TopicConfig, AdminError> {
    checked_config(config, &existing(image, name)?.config, entries)
}

/// The topic `name`, if clients may see it.
///
/// # Errors
/// `UnknownTopicOrPartition`.
pub fn existing<'a>(image: &'a Image, name: &str) -> Result<&'a TopicRecord, AdminError> {
    if name == OFFSETS_LOG {
        return Err(unknown_topic(name));
    }
    image
        .topics
        .get(name)
        .map(AsRef::as_ref)
        .ok_or_else(|| unknown_topic(name))
}

/// Refuses a name that an existing topic has, or collides with: the same but for case,
/// or `.` versus `_`.
fn check_new_name(image: &Image, name: &str) -> Result<(), AdminError> {
    if image.topics.contains_key(name) {
        return Err(AdminError::new(
            ErrorCode::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        ));
    }
    let key = topic_collision_key(name);
    match image
        .topics
        .keys()
        .find(|existing| topic_collision_key(existing) == key)
    {
        Some(existing) => Err(AdminError::new(
            ErrorCode::InvalidTopic,
            format!(
                "topic '{name}' collides with existing topic '{existing}': names that differ only in case or in '.' versus '_' share a directory on some file systems and a metric name"
            ),
        )),
        None => Ok(()),
    }
}

fn check_partition_budget(
    config: &Config,
    image: &Image,
    topic: &str,
    count: u32,
    adding: u32,
) -> Result<(), AdminError> {
    let limit = config.topic_partitions_max;
    if count == 0 || count > limit {
        return Err(AdminError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "topic '{topic}' would have {count} partitions; allowed are 1 to topic_partitions_max = {limit}"
            ),
        ));
    }
    let existing: u64 = image
        .topics
        .iter()
        .filter(|(name, _)| *name != OFFSETS_LOG)
        .map(|(_, record)| record.partitions.len() as u64)
        .sum();
    let total = existing + u64::from(adding);
    if total > u64::from(config.partitions_max) {
        return Err(AdminError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "the cluster would have {total} partitions, above partitions_max = {}",
                config.partitions_max
            ),
        ));
    }
    Ok(())
}

/// `base` with `entries` applied, checked against the broker's limits.
fn checked_config(
    config: &Config,
    base: &TopicConfig,
    entries: &[ConfigEntry],
) -> Result<TopicConfig, AdminError> {
    let checked = base
        .with_overrides(entries)
        .map_err(|error| AdminError::new(ErrorCode::InvalidConfig, error.to_string()))?;
    if !message_fits_frame(checked.max_message_bytes, config.frame_bytes_max) {
        return Err(AdminError::new(
            ErrorCode::InvalidConfig,
            format!(
                "max_message_bytes {} must be at least 1 KiB below the broker's frame_bytes_max {}",
                checked.max_message_bytes, config.frame_bytes_max
            ),
        ));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::Command;
    use crate::config::Peer;

    /// An image with brokers `1..=alive` registered.
    fn image(alive: u32) -> Image {
        let mut image = Image::default();
        for id in 1..=alive {
            image.apply(
                u64::from(id),
                &Command::RegisterBroker {
                    id,
                    address: format!("127.0.0.1:{}", 9400 + id),
                    cluster_address: format!("127.0.0.1:{}", 9500 + id),
                    log_id: "test-log".to_owned(),
                    unclean: false,
                },
            );
        }
        image
    }

    fn factor(config: &Config, image: &Image, asked: u16) -> Result<u16, ErrorCode> {
        check_create(config, image, "orders", 1, asked, &[])
            .map(|checked| checked.replication_factor)
            .map_err(|error| error.code)
    }

    #[test]
    fn a_factor_above_one_needs_as_many_alive_brokers() {
        let config = Config::default();
        assert_eq!(factor(&config, &image(3), 3), Ok(3));
        assert_eq!(
            factor(&config, &image(2), 3),
            Err(ErrorCode::InvalidReplicationFactor)
        );
        assert_eq!(
            factor(&config, &image(0), 1),
            Err(ErrorCode::LeaderNotAvailable)
        );
    }

    #[test]
    fn the_default_factor_is_at_most_the_configured_brokers() {
        let one_node = Config::default();
        assert_eq!(factor(&one_node, &image(1), 0), Ok(1));
        let three_nodes = Config {
            node_id: 1,
            peers: (1..=3)
                .map(|id| Peer {
                    id,
                    address: format!("127.0.0.1:{}", 9500 + id),
                })
                .collect(),
            ..Config::default()
        };
        assert_eq!(factor(&three_nodes, &image(3), 0), Ok(3));
        // One broker down: the default factor is not lowered to fit.
        assert_eq!(
            factor(&three_nodes, &image(2), 0),
            Err(ErrorCode::InvalidReplicationFactor)
        );
    }
}
