//! One topic's settings, their defaults, and how overrides are checked.

use serde::{Deserialize, Serialize};
use strata_protocol::messages::ConfigEntry;
use strata_storage::SEGMENT_BYTES_MAX;

use super::load::{blame, parse_value};
use super::{DurabilityPolicy, ValueError};

/// The settings of one topic: the broker defaults with the topic's overrides applied.
/// Persisted with the topic. The broker's defaults are a value of this type too
/// ([`Config::topic_defaults`]), so the two cannot drift apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Delete sealed segments older than this; -1 keeps data forever.
    pub retention_ms: i64,
    /// Delete the oldest sealed segments while a partition is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// Roll a segment at this size.
    pub segment_bytes: u64,
    /// Roll a segment at this age.
    pub segment_ms: u64,
    /// The durability policy.
    pub durability: DurabilityPolicy,
    /// The fsync interval for `durability = "interval"`.
    pub flush_interval_ms: u64,
    /// Largest record batch accepted, in bytes.
    pub max_message_bytes: u32,
    /// How many in-sync replicas an `acks = all` write needs, and below how many the high
    /// watermark stops; at most the partition's replicas count (see
    /// `PartitionRecord::min_isr`). Defaulted so configs stored before it was a key decode.
    #[serde(default = "min_insync_replicas_default")]
    pub min_insync_replicas: u16,
}

/// The default `min_insync_replicas`: with three replicas, a write survives one loss.
fn min_insync_replicas_default() -> u16 {
    2
}

impl Default for TopicConfig {
    /// The built-in topic defaults.
    fn default() -> Self {
        Self {
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            durability: DurabilityPolicy::Never,
            flush_interval_ms: 1_000,
            max_message_bytes: strata_protocol::limits::MESSAGE_BYTES_MAX_DEFAULT,
            min_insync_replicas: min_insync_replicas_default(),
        }
    }
}

/// Smallest `segment_bytes` a topic may use.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 14;

/// Why a topic config was refused. Clients see the message as the `InvalidConfig` reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// An override names no topic config.
    #[error(
        "unknown topic config '{}'; the topic configs are {}",
        strata_protocol::shown(.key),
        known.join(", ")
    )]
    UnknownKey {
        /// The key given.
        key: String,
        /// Every topic config key.
        known: Vec<String>,
    },
    /// An override names a key an earlier one named.
    #[error("topic config '{key}' is given twice")]
    RepeatedKey {
        /// The key, one of the topic configs.
        key: String,
    },
    /// An override's value has the wrong type or is not one of the allowed words.
    #[error(transparent)]
    Value(ValueError),
    /// A retention is below -1.
    #[error("retention_ms and retention_bytes must be -1 (unlimited) or non-negative")]
    NegativeRetention {
        /// `retention_ms`.
        retention_ms: i64,
        /// `retention_bytes`.
        retention_bytes: i64,
    },
    /// `segment_bytes` is outside what a segment file can hold.
    #[error("segment_bytes must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}")]
    SegmentBytes {
        /// `segment_bytes`.
        segment_bytes: u64,
    },
    /// A segment age or fsync interval is 0.
    #[error("segment_ms and flush_interval_ms must be at least 1")]
    ZeroInterval,
    /// `min_insync_replicas` is 0: a write would need no replica at all.
    #[error("min_insync_replicas must be at least 1")]
    ZeroMinInsyncReplicas,
    /// No batch could be that small.
    #[error("max_message_bytes is smaller than the smallest batch")]
    MessageBytesBelowBatch {
        /// `max_message_bytes`.
        max_message_bytes: u32,
    },
    /// A batch that large could not fit in a segment.
    #[error("max_message_bytes must not exceed segment_bytes")]
    MessageBytesAboveSegment {
        /// `max_message_bytes`.
        max_message_bytes: u32,
        /// `segment_bytes`.
        segment_bytes: u64,
    },
}

impl TopicConfig {
    /// Applies `key=value` overrides, each key at most once: so a request's list of
    /// overrides costs at most one parse per topic config, however long it is.
    ///
    /// # Errors
    /// [`TopicConfigError`] naming the unknown or repeated key or the invalid value.
    pub fn with_overrides(&self, entries: &[ConfigEntry]) -> Result<Self, TopicConfigError> {
        let Ok(toml::Value::Table(valid)) = toml::Value::try_from(self) else {
            unreachable!("TopicConfig serializes to a table")
        };
        let mut table = valid.clone();
        let mut given = Vec::new();
        for entry in entries {
            if !table.contains_key(&entry.key) {
                return Err(TopicConfigError::UnknownKey {
                    key: entry.key.clone(),
                    known: table.keys().cloned().collect(),
                });
            }
            if given.contains(&entry.key.as_str()) {
                return Err(TopicConfigError::RepeatedKey {
                    key: entry.key.clone(),
                });
            }
            given.push(entry.key.as_str());
            table.insert(entry.key.clone(), parse_value(&entry.value));
        }
        let Ok(config) = toml::Value::Table(table.clone()).try_into::<TopicConfig>() else {
            let mut error = blame::<TopicConfig>(&valid, &table);
            // A client's value, quoted once per topic of its request: cut it short.
            error.given = strata_protocol::shown(&error.given).to_string();
            return Err(TopicConfigError::Value(error));
        };
        config.check()?;
        Ok(config)
    }

    /// The settings as `key=value` pairs.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        match toml::Value::try_from(self) {
            Ok(toml::Value::Table(table)) => table
                .into_iter()
                .map(|(key, value)| ConfigEntry {
                    key,
                    value: value
                        .as_str()
                        .map_or_else(|| value.to_string(), str::to_owned),
                })
                .collect(),
            _ => unreachable!("TopicConfig serializes to a table"),
        }
    }

    pub(super) fn check(&self) -> Result<(), TopicConfigError> {
        if self.retention_ms < -1 || self.retention_bytes < -1 {
            return Err(TopicConfigError::NegativeRetention {
                retention_ms: self.retention_ms,
                retention_bytes: self.retention_bytes,
            });
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(TopicConfigError::SegmentBytes {
                segment_bytes: self.segment_bytes,
            });
        }
        if self.segment_ms == 0 || self.flush_interval_ms == 0 {
            return Err(TopicConfigError::ZeroInterval);
        }
        if (self.max_message_bytes as usize)
            < strata_protocol::batch::HEADER_BYTES + strata_protocol::batch::RECORD_BYTES_MIN
        {
            return Err(TopicConfigError::MessageBytesBelowBatch {
                max_message_bytes: self.max_message_bytes,
            });
        }
        if self.min_insync_replicas == 0 {
            return Err(TopicConfigError::ZeroMinInsyncReplicas);
        }
        if u64::from(self.max_message_bytes) > self.segment_bytes {
            return Err(TopicConfigError::MessageBytesAboveSegment {
                max_message_bytes: self.max_message_bytes,
                segment_bytes: self.segment_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use strata_protocol::SHOWN_BYTES_MAX;

    use super::*;

    #[test]
    fn an_override_is_quoted_cut_short() {
        let huge = "k".repeat(65_000);
        let refusal = |key: &str, value: &str| {
            TopicConfig::default()
                .with_overrides(&[ConfigEntry {
                    key: key.into(),
                    value: value.into(),
                }])
                .unwrap_err()
                .to_string()
        };
        let cut = format!("{}…", "k".repeat(SHOWN_BYTES_MAX));
        let unknown_key = refusal(&huge, "1");
        assert!(
            unknown_key.starts_with(&format!("unknown topic config '{cut}'")),
            "{unknown_key}"
        );
        let bad_value = refusal("retention_ms", &huge);
        assert!(bad_value.len() < 200, "{bad_value}");
        assert!(bad_value.starts_with("retention_ms: expected an integer, got \"kkk"));
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        let entry = |key: &str, value: &str| ConfigEntry {
            key: key.into(),
            value: value.into(),
        };
        let twice = TopicConfig::default().with_overrides(&[
            entry("retention_ms", "1"),
            entry("segment_ms", "2"),
            entry("retention_ms", "3"),
        ]);
        assert_eq!(
            twice.unwrap_err().to_string(),
            "topic config 'retention_ms' is given twice"
        );
    }

    #[test]
    fn topic_overrides_are_validated() {
        let defaults = crate::config::Config::default().topic_defaults;
        let entry = |key: &str, value: &str| ConfigEntry {
            key: key.into(),
            value: value.into(),
        };
        let custom = defaults
            .with_overrides(&[
                entry("retention_ms", "1000"),
                entry("durability", "every_batch"),
            ])
            .unwrap();
        assert_eq!(
            (custom.retention_ms, custom.durability),
            (1000, DurabilityPolicy::EveryBatch)
        );
        assert!(
            defaults
                .with_overrides(&[entry("retention", "1")])
                .unwrap_err()
                .to_string()
                .contains("unknown topic config")
        );
        assert!(
            defaults
                .with_overrides(&[entry("segment_bytes", "10")])
                .is_err()
        );
        assert!(
            defaults
                .with_overrides(&[entry("retention_ms", "soon")])
                .is_err()
        );
        let round_trip = defaults.with_overrides(&custom.entries()).unwrap();
        assert_eq!(round_trip, custom);
    }

    #[test]
    fn topic_config_errors_read_as_clients_see_them() {
        let defaults = TopicConfig::default();
        let reason = |key: &str, value: &str| {
            defaults
                .with_overrides(&[ConfigEntry {
                    key: key.into(),
                    value: value.into(),
                }])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            reason("retention", "1"),
            "unknown topic config 'retention'; the topic configs are durability, flush_interval_ms, max_message_bytes, min_insync_replicas, retention_bytes, retention_ms, segment_bytes, segment_ms"
        );
        assert_eq!(
            reason("retention_ms", "abc"),
            "retention_ms: expected an integer, got \"abc\""
        );
        assert_eq!(
            reason("durability", "7"),
            "durability: expected one of every_batch, interval, never, got 7"
        );
        assert_eq!(
            reason("retention_bytes", "-2"),
            "retention_ms and retention_bytes must be -1 (unlimited) or non-negative"
        );
        assert_eq!(
            reason("flush_interval_ms", "0"),
            "segment_ms and flush_interval_ms must be at least 1"
        );
        assert_eq!(
            reason("max_message_bytes", "1"),
            "max_message_bytes is smaller than the smallest batch"
        );
        assert_eq!(
            reason("max_message_bytes", "2000000000"),
            "max_message_bytes must not exceed segment_bytes"
        );
        assert_eq!(
            reason("min_insync_replicas", "0"),
            "min_insync_replicas must be at least 1"
        );
    }

    #[test]
    fn a_config_stored_before_min_insync_replicas_decodes_with_its_default() {
        // Topic records are stored as TOML on disk and as JSON in the metadata image.
        let mut table = toml::Table::try_from(TopicConfig::default()).unwrap();
        table.remove("min_insync_replicas");
        let config: TopicConfig = table.try_into().unwrap();
        assert_eq!(config.min_insync_replicas, 2);
        let mut json = serde_json::to_value(TopicConfig::default()).unwrap();
        json.as_object_mut().unwrap().remove("min_insync_replicas");
        let config: TopicConfig = serde_json::from_value(json).unwrap();
        assert_eq!(config.min_insync_replicas, 2);
    }
}
