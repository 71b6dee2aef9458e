//! Broker configuration: every key, its default, and how file, environment and flags
//! combine.
//!
//! Precedence, highest first: command-line flags, `STRATA_<KEY>` environment variables,
//! the TOML file given with `--config`, built-in defaults. Every key can be set all three
//! ways; the environment variable for `segment_bytes` is `STRATA_SEGMENT_BYTES`. Unknown
//! keys in the file are errors; unknown `STRATA_*` variables are ignored (the CLI uses
//! some too).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_protocol::messages::ConfigEntry;
use strata_storage::SEGMENT_BYTES_MAX;

/// How a partition's writes reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityPolicy {
    /// fsync after every batch (group-committed across concurrent producers).
    EveryBatch,
    /// fsync every `flush_interval_ms`.
    Interval,
    /// Never fsync; the OS writes back on its own schedule.
    Never,
}

/// Every broker setting. Limits are named `<noun>_max` with units last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This broker's id in the cluster.
    pub node_id: u32,
    /// Address the client protocol listens on.
    pub listen: SocketAddr,
    /// Host and port clients are told to connect to; defaults to `listen`.
    pub advertised_listen: Option<String>,
    /// Address the Prometheus `/metrics` endpoint listens on.
    pub metrics_listen: SocketAddr,
    /// Where topic metadata and partition logs live.
    pub data_dir: PathBuf,
    /// A tracing filter such as `info` or `strata_broker=debug`; `RUST_LOG` overrides it.
    pub log_level: String,

    /// Largest request frame accepted, in bytes; a larger length prefix closes the connection.
    pub frame_bytes_max: usize,
    /// Open client connections at once; further connections are closed at once.
    pub connections_max: usize,
    /// Requests read from one connection but not yet answered; reading pauses at the limit.
    pub connection_in_flight_requests_max: usize,
    /// A connection with no request for this long is closed.
    pub connection_idle_ms_max: u64,
    /// Longest a fetch may wait for `min_bytes` (a request's `max_wait_ms` is capped to it).
    pub fetch_wait_ms_max: u64,
    /// Largest fetch response, in bytes (a request's `max_bytes` is capped to it).
    pub fetch_response_bytes_max: usize,
    /// Longest an `acks = all` produce waits for durability (its `timeout_ms` is capped).
    pub produce_timeout_ms_max: u64,
    /// Partitions on this broker, over all topics.
    pub partitions_max: u32,
    /// Partitions of one topic.
    pub topic_partitions_max: u32,
    /// Topics in one admin request.
    pub request_topics_max: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_ms: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,

    /// Topic default: delete sealed segments older than this; -1 keeps data forever.
    pub retention_ms: i64,
    /// Topic default: delete the oldest sealed segments while a partition is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// Topic default: roll a segment once it reaches this many bytes.
    pub segment_bytes: u64,
    /// Topic default: roll a segment once its first batch is this old.
    pub segment_ms: u64,
    /// Topic default: the durability policy.
    pub durability: DurabilityPolicy,
    /// Topic default: the fsync interval for `durability = "interval"`.
    pub flush_interval_ms: u64,
    /// Topic default: largest record batch accepted, in bytes.
    pub max_message_bytes: u32,

    /// A group member that sends no heartbeat for this long is removed and its partitions
    /// move to other members.
    pub group_session_timeout_ms: u64,
    /// How often members heartbeat. A revoked partition reaches its new owner within
    /// about one interval after the old owner confirms.
    pub group_heartbeat_interval_ms: u64,
    /// How long a member may take to confirm a revocation before it is removed.
    pub group_rebalance_timeout_ms: u64,
    /// Members of one group.
    pub group_members_max: usize,
    /// Partitions of the internal offsets log (`__consumer_offsets`). Fixed when the data
    /// directory is first used: changing it would move groups between partitions.
    pub group_offsets_partitions: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 0,
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
            advertised_listen: None,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9401)),
            data_dir: PathBuf::from("./strata-data"),
            log_level: "info".into(),
            frame_bytes_max: strata_protocol::frame::FRAME_BYTES_MAX_DEFAULT,
            connections_max: 10_000,
            connection_in_flight_requests_max: 128,
            connection_idle_ms_max: 600_000,
            fetch_wait_ms_max: 30_000,
            fetch_response_bytes_max: 16 << 20,
            produce_timeout_ms_max: 60_000,
            partitions_max: 10_000,
            topic_partitions_max: 4_096,
            request_topics_max: 1_000,
            shutdown_timeout_ms: 30_000,
            retention_check_interval_ms: 60_000,
            retention_ms: 7 * 24 * 3_600_000,
            retention_bytes: -1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3_600_000,
            durability: DurabilityPolicy::Never,
            flush_interval_ms: 1_000,
            max_message_bytes: 1 << 20,
            group_session_timeout_ms: 45_000,
            group_heartbeat_interval_ms: 1_000,
            group_rebalance_timeout_ms: 60_000,
            group_members_max: 1_000,
            group_offsets_partitions: 8,
        }
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The merged settings are not valid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A setting given on the command line or in the environment, as `key` and raw text.
pub type Override = (String, String);

impl Config {
    /// Loads defaults, then the file, then `STRATA_*` variables from `environment`, then
    /// `flags`, each overriding the one before.
    ///
    /// # Errors
    /// [`ConfigError`] if the file is unreadable or a value is unknown or invalid.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        flags: &[Override],
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text)
                    .map_err(|error| ConfigError::Invalid(format!("{}: {error}", path.display())))?
            }
            None => toml::Table::new(),
        };
        let known = Self::keys();
        for (name, value) in environment {
            let Some(key) = name.strip_prefix("STRATA_").map(str::to_ascii_lowercase) else {
                continue;
            };
            if known.contains(&key) {
                table.insert(key, parse_value(&value));
            }
        }
        for (key, value) in flags {
            table.insert(key.clone(), parse_value(value));
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|error: toml::de::Error| ConfigError::Invalid(error.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Every configuration key.
    pub fn keys() -> Vec<String> {
        match toml::Value::try_from(Config::default()) {
            Ok(toml::Value::Table(table)) => table
                .keys()
                .cloned()
                .chain(["advertised_listen".to_owned()])
                .collect(),
            _ => unreachable!("Config serializes to a table"),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("frame_bytes_max", self.frame_bytes_max as u64),
            ("connections_max", self.connections_max as u64),
            (
                "connection_in_flight_requests_max",
                self.connection_in_flight_requests_max as u64,
            ),
            ("connection_idle_ms_max", self.connection_idle_ms_max),
            (
                "fetch_response_bytes_max",
                self.fetch_response_bytes_max as u64,
            ),
            ("partitions_max", self.partitions_max.into()),
            ("topic_partitions_max", self.topic_partitions_max.into()),
            ("request_topics_max", self.request_topics_max as u64),
            (
                "retention_check_interval_ms",
                self.retention_check_interval_ms,
            ),
            ("group_session_timeout_ms", self.group_session_timeout_ms),
            (
                "group_heartbeat_interval_ms",
                self.group_heartbeat_interval_ms,
            ),
            (
                "group_rebalance_timeout_ms",
                self.group_rebalance_timeout_ms,
            ),
            ("group_members_max", self.group_members_max as u64),
            (
                "group_offsets_partitions",
                self.group_offsets_partitions.into(),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
        }
        if self.group_heartbeat_interval_ms >= self.group_session_timeout_ms {
            return Err(ConfigError::Invalid(
                "group_heartbeat_interval_ms must be below group_session_timeout_ms, or members would time out between heartbeats".into(),
            ));
        }
        if (self.max_message_bytes as usize).saturating_add(1024) > self.frame_bytes_max {
            return Err(ConfigError::Invalid(
                "max_message_bytes must be at least 1 KiB below frame_bytes_max, or no batch that size could be sent".into(),
            ));
        }
        TopicConfig::from_defaults(self)
            .check()
            .map_err(ConfigError::Invalid)
    }

    /// The address clients should connect to, as `(host, port)`.
    pub fn advertised(&self) -> (String, u16) {
        self.advertised_listen
            .as_deref()
            .and_then(|text| text.rsplit_once(':'))
            .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
            .unwrap_or_else(|| (self.listen.ip().to_string(), self.listen.port()))
    }

    /// `connection_idle_ms_max` as a duration.
    pub fn connection_idle(&self) -> Duration {
        Duration::from_millis(self.connection_idle_ms_max)
    }
}

/// Reads a value as TOML (so numbers and booleans keep their type), else as a string.
fn parse_value(text: &str) -> toml::Value {
    format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("v"))
        .filter(|value| !value.is_table() && !value.is_array())
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// The settings of one topic: the broker defaults with the topic's overrides applied.
/// Persisted with the topic.
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
}

/// Smallest `segment_bytes` a topic may use.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 14;

impl TopicConfig {
    /// The broker's topic defaults.
    pub fn from_defaults(config: &Config) -> Self {
        Self {
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            segment_bytes: config.segment_bytes,
            segment_ms: config.segment_ms,
            durability: config.durability,
            flush_interval_ms: config.flush_interval_ms,
            max_message_bytes: config.max_message_bytes,
        }
    }

    /// Applies `key=value` overrides.
    ///
    /// # Errors
    /// A message naming the unknown key or invalid value.
    pub fn with_overrides(&self, entries: &[ConfigEntry]) -> Result<Self, String> {
        let Ok(toml::Value::Table(mut table)) = toml::Value::try_from(self) else {
            unreachable!("TopicConfig serializes to a table")
        };
        for entry in entries {
            if !table.contains_key(&entry.key) {
                let keys: Vec<&String> = table.keys().collect();
                return Err(format!(
                    "unknown topic config '{}'; known keys: {keys:?}",
                    entry.key
                ));
            }
            table.insert(entry.key.clone(), parse_value(&entry.value));
        }
        let config: TopicConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|error: toml::de::Error| {
                    format!("invalid topic config: {}", error.message())
                })?;
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

    fn check(&self) -> Result<(), String> {
        if self.retention_ms < -1 || self.retention_bytes < -1 {
            return Err(
                "retention_ms and retention_bytes must be -1 (unlimited) or non-negative".into(),
            );
        }
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(format!(
                "segment_bytes must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}"
            ));
        }
        if self.segment_ms == 0 || self.flush_interval_ms == 0 {
            return Err("segment_ms and flush_interval_ms must be at least 1".into());
        }
        if (self.max_message_bytes as usize)
            < strata_protocol::batch::HEADER_BYTES + strata_protocol::batch::RECORD_BYTES_MIN
        {
            return Err("max_message_bytes is smaller than the smallest batch".into());
        }
        if u64::from(self.max_message_bytes) > self.segment_bytes {
            return Err("max_message_bytes must not exceed segment_bytes".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn flags_beat_environment_beats_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(
            &file,
            "segment_bytes = 2000000\nretention_ms = 5\nnode_id = 3\n",
        )
        .unwrap();
        let environment = env(&[
            ("STRATA_RETENTION_MS", "6"),
            ("STRATA_NODE_ID", "4"),
            ("STRATA_BOOTSTRAP", "x"),
        ]);
        let flags = vec![("node_id".to_owned(), "5".to_owned())];
        let config = Config::load(Some(&file), environment, &flags).unwrap();
        assert_eq!(config.segment_bytes, 2_000_000);
        assert_eq!(config.retention_ms, 6);
        assert_eq!(config.node_id, 5);
        assert_eq!(
            config.max_message_bytes,
            Config::default().max_message_bytes
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, "segmnet_bytes = 1\n").unwrap();
        let error = Config::load(Some(&file), [], &[]).unwrap_err().to_string();
        assert!(error.contains("segmnet_bytes"), "{error}");
        let flags = vec![("durability".to_owned(), "sometimes".to_owned())];
        assert!(Config::load(None, [], &flags).is_err());
        let flags = vec![("frame_bytes_max".to_owned(), "0".to_owned())];
        assert!(
            Config::load(None, [], &flags)
                .unwrap_err()
                .to_string()
                .contains("frame_bytes_max")
        );
    }

    #[test]
    fn topic_overrides_are_validated() {
        let defaults = TopicConfig::from_defaults(&Config::default());
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
}
